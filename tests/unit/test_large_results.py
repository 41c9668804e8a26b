"""Large results are walked in time proportional to their containers, not their scalars: the worker
checks an HTTP response's depth and strings on its event loop, and a 24 MB array of numbers took
about 8 s there (a size review: three of them at once held the loop long enough that the worker gave
up its leases, and the runs' HTTP calls were made again)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from dataworkflows.actions.web import decode_body
from dataworkflows.json_depth import json_depth


def _best_of(work: Callable[[], Any], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def test_the_depth_of_a_long_array_of_numbers_costs_less_than_parsing_it() -> None:
    text = "[" + ",".join(["0"] * 2_000_000) + "]"
    value = json.loads(text)
    assert json_depth(value, 99) == 2
    # Parsing is the yardstick (the machine's speed cancels out): the walk an item at a time took
    # about four times as long as the parse, the walk by containers about half as long.
    assert _best_of(lambda: json_depth(value, 99)) < 2 * _best_of(lambda: json.loads(text))


def test_the_depth_is_what_it_was() -> None:
    assert json_depth(5, 10) == 1
    assert json_depth([], 10) == 1
    assert json_depth({}, 10) == 1
    assert json_depth([1], 10) == 2
    assert json_depth([[]], 10) == 2
    assert json_depth({"a": [1, {"b": []}]}, 10) == 4
    assert json_depth({"a": [1, {"b": [None]}]}, 10) == 5
    deep: Any = 0
    for _ in range(50):
        deep = [1, deep, "x"]
    assert json_depth(deep, 100) == 51
    assert json_depth(deep, 20) == 21  # stops one past the limit


def test_a_json_response_of_many_strings_is_not_walked_for_what_no_escape_put_there() -> None:
    body = json.dumps({"a": ["abc"] * 1_000_000}).encode()
    response = httpx.Response(200, headers={"content-type": "application/json"}, content=body)
    assert decode_body(response, body) == {"a": ["abc"] * 1_000_000}
    # Its depth is checked and its text decoded and parsed; its million strings were also tested
    # one by one for a NUL or a lone surrogate, which only an escape could have put there.
    assert _best_of(lambda: decode_body(response, body)) < 4 * _best_of(lambda: json.loads(body))


def test_escaped_nuls_and_lone_surrogates_still_become_stand_ins() -> None:
    body = b'{"a": ["x\\u0000y", "\\ud800", "\\ud83d\\ude00"], "k\\u0000": 1}'
    response = httpx.Response(200, headers={"content-type": "application/json"}, content=body)
    assert decode_body(response, body) == {"a": ["x\ufffdy", "\ufffd", "\U0001f600"], "k\ufffd": 1}


def test_a_value_too_large_for_an_allocation_is_the_inputs_fault() -> None:
    """PostgreSQL says so as an internal error (XX000), not a program limit (54000): the 52 MB
    response's run failed engine_error, where its node now fails unrecordable_result."""
    import psycopg

    from dataworkflows.db import translated, translated_state
    from dataworkflows.errors import InvalidInput

    refused = psycopg.errors.InternalError_("invalid memory alloc request size 1073741824")
    assert "too large to store" in str(translated(refused))
    assert isinstance(translated_state("XX000", "invalid memory alloc request size 1073741824"), InvalidInput)
    # Another internal error is still a bug.
    assert translated(psycopg.errors.InternalError_("cache lookup failed for type 0")) is None
