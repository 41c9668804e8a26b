"""What every answer of the API shares: JSON ends with a newline; an unknown status filter is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from tests.integration.test_api import assert_problem


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def test_json_answers_end_with_a_newline_and_unknown_status_filters_are_refused(
    client: AsyncTestClient[Any],
) -> None:
    listed = await client.get("/api/v1/workflows")
    assert listed.content.endswith(b"}\n") and int(listed.headers["content-length"]) == len(listed.content)
    assert listed.json() == {"items": [], "nextCursor": None}
    missing = await client.get("/no/such/route")  # Litestar's own 404
    assert missing.status_code == 404 and missing.content.endswith(b"}\n")
    assert (await client.get("/schema/openapi.json")).content.endswith(b"}\n")
    for path, allowed in (
        ("/api/v1/workflows", "Draft, Active, Archived"),
        ("/api/v1/executions", "Pending, Running, Waiting, Suspended, Succeeded, Failed, Cancelled, TimedOut"),
        ("/api/v1/approvals", "open, all"),
    ):
        refused = assert_problem(await client.get(path, params={"status": "bogus"}), 400)
        assert f"status must be one of {allowed}, not 'bogus'" == refused["detail"]
        assert (await client.get(path, params={"status": "bogus"})).content.endswith(b"}\n")


async def test_an_answer_with_an_etag_is_served_byte_for_byte() -> None:
    """A stored JSON document (GET /api/v1/documents/{id}) is served as stored: its ETag and
    X-Document-Checksum are the checksum of exactly those bytes."""
    from dataworkflows.api.answer_newline import end_json_with_newline

    body = b'{"title": "brief"}'
    scope: dict[str, Any] = {"method": "GET"}
    for headers, expected in (
        ([(b"content-type", b"application/json"), (b"content-length", b"18"), (b"etag", b'"sha256:x"')], body),
        ([(b"content-type", b"application/json"), (b"content-length", b"18")], body + b"\n"),
    ):
        scope.clear()
        scope["method"] = "GET"
        start: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": list(headers)}
        await end_json_with_newline(start, scope)  # type: ignore[arg-type]
        sent: dict[str, Any] = {"type": "http.response.body", "body": body, "more_body": False}
        await end_json_with_newline(sent, scope)  # type: ignore[arg-type]
        assert sent["body"] == expected
        assert dict(start["headers"])[b"content-length"] == str(len(expected)).encode()
