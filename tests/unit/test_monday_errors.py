"""monday.com's error answers as node error codes: monday's own code when it gives one, else the HTTP
status's, spelt alike for every status (a review: a 400 was monday_HTTP_400 beside monday_http_503,
and an error without a code on a 200 monday_ERROR beside the generic monday_error)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dataworkflows.actions.monday import MondayError, _may_have_acted, _raise_for_errors
from dataworkflows.actions.web import ResponseTooLarge, transport_failure


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


def test_only_a_failure_that_may_have_created_the_item_keeps_its_claim() -> None:
    """A create whose request may have reached monday.com (the answer timed out or was cut, could not
    be read, or was a 5xx) keeps its claim for the next attempt to look the item up; one that never
    went, or that monday.com refused, releases it (a review: every failure released it)."""
    request = httpx.Request("POST", "https://api.monday.com/v2")

    def raised(cause: BaseException | None, status: int = 200, body: Any = None) -> MondayError:
        if cause is None:
            with pytest.raises(MondayError) as caught:
                _raise_for_errors(httpx.Response(status, json=body), body)
            return caught.value
        error = MondayError(transport_failure(cause, "monday.com"))
        error.__cause__ = cause
        return error

    kept = [
        raised(httpx.ReadTimeout("timed out", request=request)),
        raised(httpx.RemoteProtocolError("peer closed", request=request)),
        raised(ConnectionResetError()),
        raised(ResponseTooLarge(10)),
        raised(None, 502, "bad gateway"),
        raised(None, 500, {"errors": [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}),
    ]
    released = [
        raised(httpx.ConnectError("refused", request=request)),
        raised(httpx.ConnectTimeout("no answer to SYN", request=request)),
        raised(None, 200, {"errors": [{"message": "no board", "extensions": {"code": "InvalidBoardIdException"}}]}),
        raised(None, 429, {"errors": [{"message": "slow down", "extensions": {"code": "RATE_LIMIT_EXCEEDED"}}]}),
        raised(None, 401, {"errors": [{"message": "who?"}]}),
    ]
    assert [_may_have_acted(e) for e in kept] == [True] * len(kept)
    assert [_may_have_acted(e) for e in released] == [False] * len(released)
