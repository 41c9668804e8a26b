"""Large results are walked by their containers, not their scalars: the worker checks an HTTP
response's depth and strings on its event loop, and a 24 MB array of numbers took about 8 s there (a
size review: three of them at once held the loop long enough that the worker gave up its leases, and
the runs' HTTP calls were made again). How long the walks take is measured in bench/, not here."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dataworkflows.actions import web
from dataworkflows.actions.web import decode_body
from dataworkflows.json_depth import json_depth


def test_the_depth_of_a_long_array_of_numbers() -> None:
    assert json_depth(json.loads("[" + ",".join(["0"] * 200_000) + "]"), 99) == 2


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


def test_a_json_response_of_many_strings_is_not_walked_for_what_no_escape_put_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walked: list[Any] = []
    storable = web.storable_strings
    monkeypatch.setattr(web, "storable_strings", lambda value: walked.append(value) or storable(value))
    body = json.dumps({"a": ["abc"] * 100_000}).encode()
    response = httpx.Response(200, headers={"content-type": "application/json"}, content=body)
    assert decode_body(response, body) == {"a": ["abc"] * 100_000}
    # Its strings were tested one by one for a NUL or a lone surrogate, which only an escape could
    # have put there (the text's own were replaced before it was parsed).
    assert walked == [], "a text without such an escape is not walked"
    escaped = rb'{"a": ["x\\u0000y", "x\u0000y"]}'
    answer = httpx.Response(200, headers={"content-type": "application/json"}, content=escaped)
    assert decode_body(answer, escaped) == {"a": ["x\\u0000y", "x\ufffdy"]}
    assert len(walked) == 1, "one with one is"


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
    assert "cannot hold a value this large" in str(translated(refused))
    assert isinstance(translated_state("XX000", "invalid memory alloc request size 1073741824"), InvalidInput)
    # Another internal error is still a bug.
    assert translated(psycopg.errors.InternalError_("cache lookup failed for type 0")) is None
