"""monday.com's error answers as node error codes: monday's own code when it gives one, else the HTTP
status's, spelt alike for every status (a review: a 400 was monday_HTTP_400 beside monday_http_503,
and an error without a code on a 200 monday_ERROR beside the generic monday_error)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dataworkflows.actions import ActionServices
from dataworkflows.actions.monday import MondayError, _may_have_acted, _post, _raise_for_errors


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


async def test_only_a_failure_that_may_have_created_the_item_keeps_its_claim() -> None:
    """A create whose request may have reached monday.com (the answer timed out or was cut, could not
    be read, or was a 5xx, whatever code its body names) keeps its claim for the next attempt to look
    the item up; one that never went, or that monday.com refused (4xx, GraphQL errors on a 2xx),
    releases it (reviews: every failure released it; then a 500 naming InternalServerException and
    an unreadable 200 still did)."""

    async def failure(answer: Any) -> MondayError:
        def handler(request: httpx.Request) -> httpx.Response:
            if isinstance(answer, Exception):
                raise answer
            status, body = answer
            text, media_type = (body, "text/html") if isinstance(body, str) else (json.dumps(body), "application/json")
            return httpx.Response(status, headers={"Content-Type": media_type}, stream=httpx.ByteStream(text.encode()))

        services = ActionServices(
            credentials=None,  # type: ignore[arg-type]
            http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            resources=None,  # type: ignore[arg-type]
            endpoints={"monday": "http://monday.test/v2"},
        )
        with pytest.raises(MondayError) as caught:
            response, body = await _post(services, "token-1234", "mutation { x }", {})
            _raise_for_errors(response, body)
        return caught.value

    request = httpx.Request("POST", "http://monday.test/v2")
    coded_500 = {"errors": [{"message": "x", "extensions": {"code": "InternalServerException"}}]}
    kept = [
        httpx.ReadTimeout("timed out", request=request),
        httpx.RemoteProtocolError("peer closed", request=request),
        (502, "bad gateway"),
        (500, coded_500),
        (500, {"errors": [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}),
        (200, "<html>upstream reset</html>"),
    ]
    released = [
        httpx.ConnectError("refused", request=request),
        httpx.ConnectTimeout("no answer to SYN", request=request),
        (200, {"errors": [{"message": "no board", "extensions": {"code": "InvalidBoardIdException"}}]}),
        (429, {"errors": [{"message": "slow down", "extensions": {"code": "RATE_LIMIT_EXCEEDED"}}]}),
        (200, {"errors": [{"message": "budget", "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED"}}]}),
        (401, {"errors": [{"message": "who?"}]}),
        (400, "bad request"),
    ]
    assert [_may_have_acted(await failure(a)) for a in kept] == [True] * len(kept)
    assert [_may_have_acted(await failure(a)) for a in released] == [False] * len(released)
    assert (await failure((500, coded_500))).result.error.code == "monday_InternalServerException"  # type: ignore[union-attr]
