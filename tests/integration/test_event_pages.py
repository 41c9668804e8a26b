"""GET /executions/{id}/events a page at a time: a cut page says where the next one is (a Link
header, rel="next"), and the CLI reads every page of a run's log, against the real API."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient, TestClient

from dataworkflows.api.app import create_app
from dataworkflows.cli_follow import EXIT_OK, EXIT_TIMEOUT, Printer, poll, print_log, timed_out
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.conftest import load_fixture
from tests.integration.test_control_api import sql
from tests.integration.test_runtime import make_runtime

NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
# More than the API's largest page (1,000).
EXTRA_EVENTS = 1_100


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def finished_run(client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, extra: int = 0) -> str:
    """A run of simple-echo that has ended, with `extra` more events in its log before its end."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)).status_code == 201
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
    assert started.status_code == 202, started.text
    execution_id = str(started.json()["executionId"])
    if extra:
        await sql(
            db,
            "INSERT INTO dw.execution_events (execution_id, type, details)"
            " SELECT %s, 'note', jsonb_build_object('n', n) FROM generate_series(1, %s) n",
            uuid.UUID(execution_id),
            extra,
        )
    await make_runtime(db, conditions).run_execution(uuid.UUID(execution_id))
    status = (await client.get(f"/api/v1/executions/{execution_id}")).json()["status"]
    assert status == "Succeeded"
    return execution_id


async def all_event_ids(db: Database, execution_id: str) -> list[int]:
    rows = await sql(
        db, "SELECT id FROM dw.execution_events WHERE execution_id = %s ORDER BY id", uuid.UUID(execution_id)
    )
    return [row[0] for row in rows]


async def test_a_cut_page_links_to_the_next_and_the_links_reach_the_end(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    execution_id = await finished_run(client, db, conditions)
    expected = await all_event_ids(db, execution_id)
    assert len(expected) > 4

    # A small page: each but the last names the next; following them gives the whole log, once.
    url: str | None = f"/api/v1/executions/{execution_id}/events?limit=2"
    seen: list[int] = []
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, list) and 1 <= len(body) <= 2, "the body is still a bare list"
        seen += [event["id"] for event in body]
        pages += 1
        link = response.headers.get("link")
        if link is None:
            break
        match = NEXT.match(link)
        assert match, link
        url = match["url"]
        assert url == f"/api/v1/executions/{execution_id}/events?after={body[-1]['id']}&limit=2"
    assert seen == expected and pages == (len(expected) + 1) // 2

    # A page that holds the rest of the log has no link, even when it is exactly full.
    whole = await client.get(f"/api/v1/executions/{execution_id}/events", params={"limit": len(expected)})
    assert [e["id"] for e in whole.json()] == expected and "link" not in whole.headers
    assert "link" not in (await client.get(f"/api/v1/executions/{execution_id}/events")).headers


async def test_a_log_longer_than_the_largest_page_says_so_at_the_default_size(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    execution_id = await finished_run(client, db, conditions, extra=EXTRA_EVENTS)
    expected = await all_event_ids(db, execution_id)
    first = await client.get(f"/api/v1/executions/{execution_id}/events")
    assert len(first.json()) == 1000
    match = NEXT.match(first.headers["link"])
    assert match, first.headers["link"]
    rest = await client.get(match["url"])
    assert [e["id"] for e in first.json() + rest.json()] == expected and "link" not in rest.headers


def _read_with_the_cli(dsn: str, execution_id: str) -> tuple[int, list[str], int, list[str]]:
    """`logs`' read of the log, then the polling follow (a server without the live stream), each
    against the API as the CLI's own httpx client talks to it."""
    with TestClient(create_app(Settings(database_url=dsn))) as api:
        logged: list[str] = []
        logs_code = print_log(api, execution_id, Printer(everything=True, write=logged.append))
        followed: list[str] = []
        follow_code = poll(
            api, execution_id, Printer(everything=True, write=followed.append), deadline=None, timeout=None
        )
    return logs_code, logged, follow_code, followed


async def test_the_cli_prints_every_event_of_a_log_longer_than_a_page(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, dsn: str
) -> None:
    execution_id = await finished_run(client, db, conditions, extra=EXTRA_EVENTS)
    expected = await all_event_ids(db, execution_id)
    assert len(expected) > 1000
    logs_code, logged, follow_code, followed = await asyncio.to_thread(_read_with_the_cli, dsn, execution_id)
    assert logs_code == EXIT_OK and len(logged) == len(expected)
    # Every event (each is a line, as `logs` prints them), then the run's outcome.
    assert follow_code == EXIT_OK and len(followed) == len(expected) + 1
    assert followed[-1].startswith(f"execution {execution_id} Succeeded")
    assert sum("note" in line for line in followed) == EXTRA_EVENTS


def _poll_past_the_deadline(dsn: str, execution_id: str) -> tuple[int, list[str]]:
    with TestClient(create_app(Settings(database_url=dsn))) as api:
        followed: list[str] = []
        past = time.monotonic() - 1
        code = poll(api, execution_id, Printer(everything=True, write=followed.append), deadline=past, timeout=1)
    return code, followed


async def test_the_polling_follow_keeps_its_deadline_on_a_long_log(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    """A run still going whose log is long: the follow stops at its --timeout, it does not read every
    page first (a long log's pages could outlast the deadline by far)."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)).status_code == 201
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
    execution_id = str(started.json()["executionId"])
    await sql(
        db,
        "INSERT INTO dw.execution_events (execution_id, type, details)"
        " SELECT %s, 'note', jsonb_build_object('n', n) FROM generate_series(1, %s) n",
        uuid.UUID(execution_id),
        EXTRA_EVENTS,
    )
    code, followed = await asyncio.to_thread(_poll_past_the_deadline, dsn, execution_id)
    assert code == EXIT_TIMEOUT
    assert followed == []


def _time_out_on(dsn: str, execution_id: str) -> tuple[int, list[str]]:
    with TestClient(create_app(Settings(database_url=dsn))) as api:
        lines: list[str] = []
        code = timed_out(api, execution_id, 2, lines.append)
    return code, lines


async def test_a_run_that_ended_as_the_wait_timed_out_gives_its_outcome(
    client: AsyncTestClient[Any], db: Database, dsn: str, conditions: ConditionPool
) -> None:
    """`run --wait --timeout 2` on a run that ended at about 2 s: its outcome and exit code, not
    "timeout: 2s passed and execution … is still Succeeded; it goes on" (exit 4)."""
    execution_id = await finished_run(client, db, conditions)
    code, lines = await asyncio.to_thread(_time_out_on, dsn, execution_id)
    assert code == EXIT_OK
    assert len(lines) == 1 and lines[0].startswith(f"execution {execution_id} Succeeded"), lines
