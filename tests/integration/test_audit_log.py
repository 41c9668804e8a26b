"""The audit log (README "The audit log"): every run's log events of the tenant, in order, a page
at a time through GET /api/v1/audit-log, and `dataworkflows audit-log` writing them as NDJSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.db import Database
from tests.integration.test_control_api import OPS, client, sql
from tests.integration.test_run_priority import create, echo_workflow, execute

__all__ = ["client"]

ACME = {"X-Tenant-Id": "acme", "X-Principal-Id": "ana"}
# These tests read events they have just written: settled or not, every committed one.
NOW = {"settleSeconds": 0}


async def test_the_audit_log_pages_every_runs_events_in_order(client: AsyncTestClient[Any], db: Database) -> None:
    await create(client, echo_workflow("audited"))
    await create(client, echo_workflow("other"))
    first = await execute(client, "audited")
    second = await execute(client, "other")
    cancelled = await client.post(f"/api/v1/executions/{first}/cancel", json={"reason": "x"}, headers=OPS)
    assert cancelled.status_code == 202, cancelled.text
    expected = await sql(db, "SELECT id, execution_id::text, type FROM dw.execution_events ORDER BY id")
    assert len(expected) >= 3
    seen: list[tuple[int, str, str]] = []
    after = 0
    while True:
        page = (await client.get("/api/v1/audit-log", params={"after": after, "limit": 2, **NOW})).json()
        seen += [(item["id"], item["executionId"], item["type"]) for item in page["items"]]
        if page["nextAfter"] is None:
            break
        after = page["nextAfter"]
    assert seen == expected
    item = (await client.get("/api/v1/audit-log", params={"limit": 1, **NOW})).json()["items"][0]
    assert set(item) == {"id", "executionId", "workflowId", "nodeId", "type", "at", "principal", "details"}
    only = (await client.get("/api/v1/audit-log", params={"workflowId": "other", **NOW})).json()["items"]
    assert {i["executionId"] for i in only} == {second}
    cancels = (await client.get("/api/v1/audit-log", params={"type": "cancel_requested", **NOW})).json()["items"]
    assert [(i["executionId"], i["principal"], i["details"]["reason"]) for i in cancels] == [(first, "ops", "x")]
    # Another tenant's log is its own.
    await create_in(client, ACME)
    acme = (await client.get("/api/v1/audit-log", params=NOW, headers=ACME)).json()["items"]
    assert acme and {i["workflowId"] for i in acme} == {"acme-flow"}
    assert "acme-flow" not in {
        i["workflowId"] for i in (await client.get("/api/v1/audit-log", params=NOW)).json()["items"]
    }
    for bad in ({"limit": 0}, {"limit": 5001}, {"after": -1}):
        assert (await client.get("/api/v1/audit-log", params=bad)).status_code == 400, bad


async def create_in(client: AsyncTestClient[Any], headers: dict[str, str]) -> None:
    raw = echo_workflow("acme-flow")
    made = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=headers)
    assert made.status_code == 201, made.text
    started = await client.post("/api/v1/workflows/acme-flow/execute", json={"trigger": {}}, headers=headers)
    assert started.status_code == 202, started.text


async def test_the_audit_log_command_writes_ndjson(
    client: AsyncTestClient[Any], db: Database, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataworkflows.cli import EXIT_OK, cmd_audit_log
    from tests.integration.cli_api import cli_command, served_api

    await create(client, echo_workflow("exported"))
    for _ in range(3):
        await execute(client, "exported")
    ids = [row[0] for row in await sql(db, "SELECT id FROM dw.execution_events ORDER BY id")]
    async with served_api(dsn) as url:
        export = cli_command(url, capsys, cmd_audit_log, "audit-log")
        # By default only what was written 5 s ago or more: these are too fresh.
        code, out, err = await export()
        assert code == EXIT_OK and [line for line in out.splitlines() if line.startswith("{")] == [], out
        assert "0 events; the next export: --after 0" in err, err
        code, out, err = await export("--page-size", "2", "--settle", "0")
        assert code == EXIT_OK, err
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [line["id"] for line in lines] == ids
        assert err.strip().endswith(f"{len(ids)} events; the next export: --after {ids[-1]}"), err
        # The next export goes on from there: nothing new, nothing written.
        code, out, err = await export("--after", str(ids[-1]), "--settle", "0")
        assert [line for line in out.splitlines() if line.startswith("{")] == []
        assert f"0 events; the next export: --after {ids[-1]}" in err
        code, out, err = await export("--max", "2", "--page-size", "5", "--settle", "0")
        assert [json.loads(line)["id"] for line in out.splitlines() if line.startswith("{")] == ids[:2]


async def test_an_export_stops_at_the_first_event_not_settled(client: AsyncTestClient[Any], db: Database) -> None:
    """Ids and times follow each other only roughly: two sessions writing at once take their ids
    and their clock_timestamp()s in either order. settleSeconds left out each event written too
    recently and went on past it: an older event with a larger id was answered, and the export
    that went on from that id never saw the first one. The page now ends before the first event
    not settled yet."""
    await create(client, echo_workflow("settling"))
    execution_id = await execute(client, "settling")
    (last,) = await sql(db, "SELECT max(id) FROM dw.execution_events")
    # A fresh event, then one whose clock read earlier though its id came later.
    await sql(
        db,
        "INSERT INTO dw.execution_events (execution_id, type) VALUES (%s, 'fresh') RETURNING id",
        execution_id,
    )
    await sql(
        db,
        "INSERT INTO dw.execution_events (execution_id, type, at)"
        " VALUES (%s, 'older', clock_timestamp() - interval '1 minute') RETURNING id",
        execution_id,
    )
    page = (await client.get("/api/v1/audit-log", params={"after": last[0], "settleSeconds": 30})).json()
    assert page == {"items": [], "nextAfter": None}
    later = (await client.get("/api/v1/audit-log", params={"after": last[0], "settleSeconds": 0})).json()
    assert [i["type"] for i in later["items"]] == ["fresh", "older"]


async def test_the_api_answers_only_settled_events_unless_told_otherwise(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """settleSeconds defaulted to 0 in the API (the CLI's --settle to 5): a consumer paging with the
    defaults was answered an event whose id came after one of a transaction still open, and went on
    from it past that one. By default the API now waits as the CLI does; 0 is still allowed."""
    await create(client, echo_workflow("defaults"))
    execution_id = await execute(client, "defaults")
    assert (await client.get("/api/v1/audit-log")).json() == {"items": [], "nextAfter": None}
    (last,) = await sql(db, "SELECT max(id) FROM dw.execution_events")
    for kind, age in (("old", "1 minute"), ("fresh", "0 seconds"), ("old too", "1 minute")):
        await sql(
            db,
            "INSERT INTO dw.execution_events (execution_id, type, at)"
            " VALUES (%s, %s, clock_timestamp() - %s::interval) RETURNING id",
            execution_id,
            kind,
            age,
        )
    page = (await client.get("/api/v1/audit-log", params={"after": last[0]})).json()
    assert [i["type"] for i in page["items"]] == ["old"] and page["nextAfter"] is None
    later = (await client.get("/api/v1/audit-log", params={"after": last[0], "settleSeconds": 0})).json()
    assert [i["type"] for i in later["items"]] == ["old", "fresh", "old too"]


async def test_the_audit_log_is_the_tenants_in_a_session_that_sees_every_tenant(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    """A review: the events were chosen by row-level security alone, so an API whose sessions see
    every tenant (DW_DB_ROLE=none as a superuser) answered every tenant's log to a caller of one, as
    the bulk requests did before they took the session's tenant explicitly."""
    from dataworkflows.api.app import create_app
    from dataworkflows.config import Settings

    await create(client, echo_workflow("default-flow"))
    await execute(client, "default-flow")
    await create_in(client, ACME)
    app = create_app(Settings(database_url=dsn, db_role="none"))
    async with AsyncTestClient(app) as everything:
        theirs = (await everything.get("/api/v1/audit-log", params=NOW, headers=ACME)).json()["items"]
        ours = (await everything.get("/api/v1/audit-log", params=NOW)).json()["items"]
    assert theirs and {item["workflowId"] for item in theirs} == {"acme-flow"}
    assert ours and {item["workflowId"] for item in ours} == {"default-flow"}
