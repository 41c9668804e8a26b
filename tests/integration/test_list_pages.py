"""The lists that returned every row, unbounded, a page at a time: a workflow's versions (every PUT
adds one), its triggers and every trigger, the workflow templates and the connections. The body
stays a bare list; a cut page says where the next one is in a Link header (rel="next"), as the
approvals' and the events' do, with the request's filters kept; a cursor no page gave is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.api.paging import encode_cursor
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from tests.integration.test_api import assert_problem
from tests.integration.test_composition_api import publish_over_api
from tests.integration.test_runtime import echo, wf

KEY = Cipher.generate_key()
ROWS = 5
PAGE = 2


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn, credentials_key=KEY))) as test_client:
        yield test_client


async def pages(client: AsyncTestClient[Any], url: str) -> list[list[dict[str, Any]]]:
    """Every page, following the Link headers from `url` (a bare list each); the Link is there on
    every page but the last."""
    found: list[list[dict[str, Any]]] = []
    following: str | None = url
    while following is not None:
        answer = await client.get(following)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert isinstance(body, list), "the body is still a bare list"
        found.append(body)
        following = answer.links.get("next", {}).get("url")
        if following is not None:
            assert answer.headers["link"].endswith('>; rel="next"')
            assert parse_qs(urlsplit(following).query)["limit"] == [str(PAGE)], following
            assert len(body) == PAGE, "only a full page has a next one"
        assert len(found) <= ROWS + 1, "the links go round in a circle"
    return found


async def assert_pages(client: AsyncTestClient[Any], path: str, key: str, expected: list[Any]) -> None:
    """A list of ROWS rows, read PAGE at a time: every row once, in the whole list's order."""
    assert len(expected) == ROWS
    joined = "&" if "?" in path else "?"
    walked = await pages(client, f"{path}{joined}limit={PAGE}")
    assert [len(page) for page in walked] == [2, 2, 1]
    seen = [row[key] for page in walked for row in page]
    assert seen == expected, "every row exactly once, in the list's order"
    whole = await client.get(path)
    assert [row[key] for row in whole.json()] == expected and "link" not in whole.headers, "100 by default"
    # A page that holds the last row exactly says nothing more.
    exact = await client.get(f"{path}{joined}limit={ROWS}")
    assert len(exact.json()) == ROWS and "link" not in exact.headers


async def assert_cursor_refused(client: AsyncTestClient[Any], path: str, *cursors: str) -> None:
    for cursor in ("!!!", encode_cursor({"a": 1}), *cursors):
        body = assert_problem(await client.get(path, params={"cursor": cursor}), 400)
        assert [entry["parameter"] for entry in body["errors"]] == ["cursor"], body


async def test_a_workflows_versions_page_newest_first(client: AsyncTestClient[Any]) -> None:
    """Every PUT adds a version, and GET …/versions answered all of them."""
    await publish_over_api(client, wf("paged", echo("e")))
    for n in range(2, ROWS + 1):
        changed = await client.put("/api/v1/workflows/paged", json=wf("paged", echo("e", message=f"v{n}")))
        assert changed.status_code == 200, changed.text
    await assert_pages(client, "/api/v1/workflows/paged/versions", "version", [5, 4, 3, 2, 1])
    # A version cursor names a version: not a name, nor one past a PostgreSQL integer.
    await assert_cursor_refused(
        client, "/api/v1/workflows/paged/versions", encode_cursor("v1"), encode_cursor(0), encode_cursor(2**31)
    )
