"""Large results: what the worker's own walks of an HTTP response cost on its event loop.

Run from the repository root (no database needed, about 20 s):

    .venv/bin/python bench/large_results.py [--mb 24]

An `http.request` answer may be up to 50 MiB (`maxResponseBytes`). Before its outputs are recorded
the worker, on its event loop, decodes the body, checks its nesting depth (dataworkflows.json_depth)
and makes its strings storable (a NUL or a lone surrogate that an escape put there). A size review
found these walks at about 8 s for a 24 MB array of numbers (the depth walked an item at a time,
twice, and every string tested): three such answers at once held the loop long enough that the
worker gave up its leases. Measured here, best of three, for a JSON array of numbers, an array of
short strings and an array of small objects of about the size asked:

* json.loads of the body: the baseline, which no walk of the value can beat by much;
* the depth walk (json_depth), and the item-at-a-time walk it replaced, as ratios to the parse;
* decode_body as the action calls it (decode, parse, depth, strings), as a ratio to the parse.

Printed only (no target: the figures say what a large answer costs the loop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from dataworkflows.actions.web import decode_body
from dataworkflows.json_depth import MAX_RESULT_DEPTH, json_depth


def item_at_a_time_depth(value: Any, limit: int) -> int:
    """json_depth as it was before the size review: every item pushed and popped."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def best_of(work: Callable[[], Any], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def bodies(megabytes: float) -> dict[str, bytes]:
    target = int(megabytes * 1_000_000)
    return {
        "numbers": ("[" + ",".join(["0"] * (target // 2)) + "]").encode(),
        "strings": json.dumps(["abcdefgh"] * (target // 12)).encode(),
        "objects": json.dumps([{"id": n, "ok": True} for n in range(target // 24)]).encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=24.0, help="the size of each body, in MB (default 24)")
    args = parser.parse_args()
    print(f"{'body':<9} {'MB':>5} {'parse s':>8} {'depth':>7} {'depth, old':>11} {'decode_body':>12}")
    for name, body in bodies(args.mb).items():
        text = body.decode()
        value = json.loads(text)
        response = httpx.Response(200, headers={"content-type": "application/json"}, content=body)
        parse = best_of(lambda text=text: json.loads(text))  # type: ignore[misc]
        depth = best_of(lambda value=value: json_depth(value, MAX_RESULT_DEPTH))  # type: ignore[misc]
        old = best_of(lambda value=value: item_at_a_time_depth(value, MAX_RESULT_DEPTH))  # type: ignore[misc]
        decode = best_of(lambda response=response, body=body: decode_body(response, body))  # type: ignore[misc]
        print(
            f"{name:<9} {len(body) / 1e6:>5.1f} {parse:>8.3f} {depth / parse:>6.2f}x {old / parse:>10.2f}x"
            f" {decode / parse:>11.2f}x"
        )
    print("(ratios: time over json.loads of the same body, in the same run)")


if __name__ == "__main__":
    main()
