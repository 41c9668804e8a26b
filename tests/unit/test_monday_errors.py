"""monday.com's error answers as node error codes: monday's own code when it gives one, else the HTTP
status's, spelt alike for every status (a review: a 400 was monday_HTTP_400 beside monday_http_503,
and an error without a code on a 200 monday_ERROR beside the generic monday_error)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dataworkflows.actions.monday import MondayError, _raise_for_errors


def failure(status: int, body: Any) -> tuple[str, str, str]:
    with pytest.raises(MondayError) as raised:
        _raise_for_errors(httpx.Response(status, json=body), body)
    result = raised.value.result
    assert result.error is not None
    return result.status.value, result.error.code, result.error.message


def test_an_error_without_a_code_of_monday_is_named_by_its_status() -> None:
    unsupported = {"errors": [{"message": "Unsupported query"}]}
    assert failure(400, unsupported) == ("Failed", "monday_http_400", "monday.com: Unsupported query")
    assert failure(503, unsupported)[:2] == ("RetriableFailure", "monday_http_503")
    assert failure(200, unsupported)[:2] == ("Failed", "monday_error")
    assert failure(500, {"errors": [{"message": "x"}]})[:2] == ("RetriableFailure", "monday_http_500")


def test_mondays_own_code_names_the_error() -> None:
    coded = {"errors": [{"message": "no board", "extensions": {"code": "InvalidBoardIdException"}}]}
    assert failure(200, coded) == ("Failed", "monday_InvalidBoardIdException", "monday.com: no board")
    odd = {"errors": [{"message": "odd", "extensions": {"code": "not a code!"}}]}
    assert failure(200, odd) == ("Failed", "monday_error", "monday.com: odd (not a code!)")
