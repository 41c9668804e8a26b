"""What bench/limits.py and bench/auth.py share: two API apps in this process (Litestar's test client, so no
network or uvicorn in the figures) on one database, the same requests sent to each in alternating order,
one at a time, and their response times compared (p50/p95, and the difference of the p50s)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from throughput import fmt, percentile, progress


async def _timed(call: Any) -> float:
    began = time.perf_counter()
    response = await call
    assert response.status_code in (200, 202), response.text
    return (time.perf_counter() - began) * 1000


async def execute_and_get(
    apps: dict[str, tuple[Litestar, dict[str, str]]], workflow_id: str, rounds: int
) -> dict[str, list[float]]:
    """Each round: one `POST /api/v1/workflows/{id}/execute` and one `GET /api/v1/workflows/{id}` to
    each app (with its headers), the apps in alternating order; milliseconds per request."""
    (first, (app_a, headers_a)), (second, (app_b, headers_b)) = apps.items()
    times: dict[str, list[float]] = {f"{what} {mode}": [] for what in ("execute", "get") for mode in apps}
    progress(f"{rounds} rounds of execute and get, {first} and {second}, interleaved")
    async with AsyncTestClient(app_a) as client_a, AsyncTestClient(app_b) as client_b:
        pairs = [(first, client_a, headers_a), (second, client_b, headers_b)]
        for i in range(rounds):
            for mode, client, headers in pairs if i % 2 else reversed(pairs):
                execute = client.post(
                    f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {"i": i}}, headers=headers
                )
                times[f"execute {mode}"].append(await _timed(execute))
                times[f"get {mode}"].append(
                    await _timed(client.get(f"/api/v1/workflows/{workflow_id}", headers=headers))
                )
    return times


def figures(times: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    return {
        name: {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)} for name, values in times.items()
    }


def report(results: dict[str, Any], base: str, other: str, what_costs: str) -> None:
    """The table, then `what_costs` per request: other's p50 minus base's."""
    table = results["figures"]
    print(f"\n{'measurement':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in table.items():
        print(f"{name:<28} {fmt(values['p50_ms'], 3):>8} {fmt(values['p95_ms'], 3):>8}")
    for what in ("execute", "get"):
        cost, plain = table[f"{what} {other}"]["p50_ms"], table[f"{what} {base}"]["p50_ms"]
        print(f"{what_costs} per {what}: p50 {cost - plain:+.3f} ms ({fmt(cost / plain, 3)}x)")


def parse_args(description: str, name: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--total-timeout", type=float, default=300.0)
    parser.add_argument("--no-save", action="store_true", help=f"do not write bench/results/{name}-*.json")
    return parser.parse_args(argv)
