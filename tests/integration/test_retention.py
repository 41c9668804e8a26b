"""Retention: dw.prune_executions_v1 removes finished trees past their workflow's retention with
everything that hangs off them and keeps the rest; the event log stays append-only otherwise; the
API, the CLI and the workers' retention job."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows import errors
from dataworkflows.api.app import create_app
from dataworkflows.cli import EXIT_OK, EXIT_USAGE, build_parser, cmd_prune, cmd_workflows_retention, main
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.data.retention import Pruned
from dataworkflows.db import Database
from dataworkflows.retention import Prune, parse_age, prune_due
from dataworkflows.sqlfiles import load_migrations
from dataworkflows.tenancy import all_tenants, tenant_scope
from dataworkflows.workers.app import run_worker
from tests.acceptance.conftest import command
from tests.conftest import load_fixture, publish, start
from tests.integration.cli_api import cli_command, served_api
from tests.integration.test_runtime import echo, make_runtime, to, wf
from tests.integration.test_subworkflows import drain, sub
from tests.integration.test_waits import signal

DAY = 86400.0
# Every table a run's rows live in (resource_links: only its execution_id, see below).
TABLES = (
    "executions",
    "node_states",
    "action_executions",
    "execution_events",
    "waits",
    "signals",
    "dead_letters",
    "resource_touches",
)


async def owner(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """As the tables' owner (a superuser here: no row-level security), outside the data layer."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        # Rows it writes are the default tenant's.
        await conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        cur = await conn.execute(query, args)
        return await cur.fetchall() if cur.description else []


async def age(dsn: str, ids: list[UUID], days: float) -> None:
    """Moves runs `days` into the past (created, started and ended)."""
    await owner(
        dsn,
        "UPDATE dw.executions SET created_at = created_at - make_interval(secs => %s),"
        " started_at = started_at - make_interval(secs => %s), ended_at = ended_at - make_interval(secs => %s)"
        " WHERE id = ANY(%s)",
        days * DAY,
        days * DAY,
        days * DAY,
        ids,
    )


async def rows_of(dsn: str, ids: list[UUID]) -> dict[str, int]:
    """How many rows each table holds for these runs."""
    counts = {}
    for table in TABLES:
        column = "id" if table == "executions" else "execution_id"
        found = await owner(dsn, f"SELECT count(*) FROM dw.{table} WHERE {column} = ANY(%s)", ids)
        counts[table] = int(found[0][0])
    return counts


async def tree(dsn: str, root: UUID) -> list[UUID]:
    return [row[0] for row in await owner(dsn, "SELECT id FROM dw.executions WHERE root_execution_id = %s", root)]


async def prune(db: Database, default_days: float | None = 30, **options: Any) -> Pruned:
    with all_tenants():
        return await prune_due(
            db, Prune(default_seconds=None if default_days is None else default_days * DAY, **options)
        )


async def test_old_trees_go_with_everything_that_hangs_off_them_and_the_rest_stays(
    db: Database, dsn: str, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("plain", echo("a", to("b")), echo("b")), conditions)
    await publish(db, wf("child", signal("s", to("e"), name="go"), echo("e")), conditions)
    await publish(db, wf("parent", sub("call", "child", to("after")), echo("after")), conditions)
    await publish(db, wf("lingers", signal("s", name="never")), conditions)
    await publish(db, wf("detached", sub("spawn", "lingers", waitForCompletion=False)), conditions)
    fails = load_fixture("bundle1/simple-echo-workflow.json") | {"id": "fails", "startNode": "boom"}
    fails["nodes"] = [
        {"id": "boom", "actionType": "core.echo", "parameters": {"message": "x", "simulateFailure": "permanent"}}
    ]
    await publish(db, fails, conditions)

    old, young, tree_root, detached_root = (
        await start(db, "plain"),
        await start(db, "plain"),
        await start(db, "parent"),
        await start(db, "detached"),
    )
    open_letter, acked_long_ago, acked_lately = [await start(db, "fails") for _ in range(3)]
    await drain(db, runtime)
    (child,) = [run for run in await tree(dsn, tree_root) if run != tree_root]
    await db.control.signal(
        child, "go", payload={}, signal_id=None, correlation_key=None, principal="tests", queue="executions"
    )
    await drain(db, runtime)
    assert await owner(dsn, "SELECT count(*) FROM dw.executions WHERE status = 'Waiting'") == [(1,)], (
        "the detached child"
    )
    pending = await start(db, "plain")
    letters = {row[1]: row[0] for row in await owner(dsn, "SELECT id, execution_id FROM dw.dead_letters")}
    await db.operations.acknowledge(letters[acked_long_ago], principal="ops", note=None)
    await db.operations.acknowledge(letters[acked_lately], principal="ops", note=None)
    await owner(
        dsn, "UPDATE dw.dead_letters SET closed_at = now() - interval '40 days' WHERE id = %s", letters[acked_long_ago]
    )
    # A resource the old run created: the link stays for the next run that looks it up.
    await owner(
        dsn, "SELECT dw.link_external_resource_v1('default', 'doc', 'k1', 'ext-1', 'plain', %s, 'a', NULL)", old
    )

    trees = {name: await tree(dsn, root) for name, root in [("tree", tree_root), ("detached", detached_root)]}
    assert len(trees["tree"]) == 2 and len(trees["detached"]) == 2
    gone = [old, *trees["tree"], acked_long_ago]
    kept = [young, *trees["detached"], open_letter, acked_lately, pending]
    await age(dsn, [*gone, *kept[1:]], 40)
    before = await rows_of(dsn, gone)
    assert before["waits"] >= 2 and before["execution_events"] > 10 and before["dead_letters"] == 1
    kept_before = await rows_of(dsn, kept)

    # Two trees a batch: the loop goes on until a batch comes back short.
    pruned = await prune(db, batch=2)
    assert (pruned.trees, pruned.executions) == (3, 4)
    assert await rows_of(dsn, gone) == dict.fromkeys(TABLES, 0)
    assert await rows_of(dsn, kept) == kept_before
    assert (pruned.node_states, pruned.attempts, pruned.events, pruned.waits, pruned.dead_letters) == (
        before["node_states"],
        before["action_executions"],
        before["execution_events"],
        before["waits"],
        1,
    )
    assert await owner(dsn, "SELECT external_id, execution_id FROM dw.resource_links") == [("ext-1", None)]
    assert await prune(db) == Pruned(), "nothing else is due"


async def test_each_workflow_keeps_its_runs_as_long_as_it_says(db: Database, dsn: str) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    days = {"default": None, "quarter": 90, "week": 7, "forever": 0}
    runs = {}
    for name, retention in days.items():
        await publish(db, raw | {"id": name})
        assert await db.retention.set_workflow_retention(name, retention)
        runs[name] = await start(db, name)
    assert not await db.retention.set_workflow_retention("nope", 3)
    assert not await db.limits.set_workflow_limits("nope", WorkflowLimits(True, 1, False, None))
    # An operator's psql call that matches nothing says so (a review: it answered nothing, as if done).
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for call in (
            "SELECT * FROM dw.set_workflow_retention_v1('nope', 3)",
            "SELECT * FROM dw.set_workflow_limits_v1('nope', true, 1, false, NULL)",
        ):
            with pytest.raises(psycopg.Error, match="workflow nope not found in tenant default"):
                await conn.execute(call)
    await owner(dsn, "UPDATE dw.executions SET status = 'Succeeded', started_at = now(), ended_at = now()")
    await age(dsn, list(runs.values()), 40)
    with all_tenants():
        preview = await db.retention.preview(default_seconds=30 * DAY)
    assert (preview.trees, preview.executions, preview.events) == (2, 2, 2)

    # Retention off by default: only workflows with their own go.
    assert (await prune(db, None)).trees == 1
    assert [r[0] for r in await owner(dsn, "SELECT workflow_id FROM dw.executions ORDER BY 1")] == [
        "default",
        "forever",
        "quarter",
    ]
    assert (await prune(db, 30, workflow_id="quarter")).trees == 0
    assert (await prune(db, 30, workflow_id="default", tenant="other")).trees == 0
    assert (await prune(db, 30)).trees == 1
    await age(dsn, list(runs.values()), 1000)
    assert (await prune(db, 30)).trees == 1
    assert [r[0] for r in await owner(dsn, "SELECT workflow_id FROM dw.executions")] == ["forever"]


async def test_a_run_another_transaction_holds_is_skipped_not_waited_for(db: Database, dsn: str) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    held, free = await start(db, "simple-echo"), await start(db, "simple-echo")
    await owner(dsn, "UPDATE dw.executions SET status = 'Succeeded', started_at = now(), ended_at = now()")
    await age(dsn, [held, free], 40)
    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR UPDATE", (held,))
        started = time.monotonic()
        assert (await prune(db)).trees == 1
        # Waiting for the held row would last until the rollback below: never, within the prune.
        assert time.monotonic() - started < 5
        await holder.rollback()
    assert (await prune(db)).trees == 1


async def test_the_event_log_refuses_changes_outside_the_prune(db: Database, dsn: str) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    done, running = await start(db, "simple-echo"), await start(db, "simple-echo")
    await owner(
        dsn, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() - interval '40 days' WHERE id = %s", done
    )
    # The application role may not even try.
    async with db.connection() as conn:
        for statement in ("UPDATE dw.execution_events SET type = 'x'", "DELETE FROM dw.execution_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)
    # The owner meets the triggers: no DELETE without the prune's setting, and with it only events
    # of runs that ended before it.
    with pytest.raises(psycopg.DatabaseError, match="append-only"):
        await owner(dsn, "DELETE FROM dw.execution_events WHERE execution_id = %s", done)
    marked = "SELECT set_config('dw.pruning', extract(epoch FROM now() - interval '30 days')::text, true)"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(marked)
        with pytest.raises(psycopg.DatabaseError, match=f"events of execution {running}"):
            await conn.execute("DELETE FROM dw.execution_events WHERE execution_id IN (%s, %s)", (done, running))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(marked)
        deleted = await conn.execute("DELETE FROM dw.execution_events WHERE execution_id = %s", (done,))
        assert deleted.rowcount == 1
        await conn.rollback()
    # Not part of a run's log (the rest would stay), nor with a marker that is not a cutoff, nor by
    # a role that does not own the table (were it granted DELETE).
    await owner(dsn, "INSERT INTO dw.execution_events (execution_id, type) VALUES (%s, 'y')", done)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(marked)
        with pytest.raises(psycopg.DatabaseError, match="part of its log would stay"):
            await conn.execute("DELETE FROM dw.execution_events WHERE execution_id = %s AND type = 'y'", (done,))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SET dw.pruning = 'infinity'")  # session-wide, by hand
        with pytest.raises(psycopg.DatabaseError, match="not a prune's cutoff"):
            await conn.execute("DELETE FROM dw.execution_events WHERE execution_id = %s", (done,))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute("GRANT DELETE ON dw.execution_events TO dataworkflows_maintenance")
        await conn.execute("SET ROLE dataworkflows_maintenance")
        await conn.execute("SELECT set_config('dw.tenant_id', '*', true)")
        await conn.execute(marked)
        with pytest.raises(psycopg.DatabaseError, match="only its owner deletes"):
            await conn.execute("DELETE FROM dw.execution_events WHERE execution_id = %s", (done,))
    # Only the maintenance role may prune (the application role holds none of its rights).
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await db.retention.prune(default_seconds=DAY, batch=10)
    with tenant_scope("*"), pytest.raises(errors.InvalidInput):
        await db.retention.prune(default_seconds=DAY, batch=0)


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def test_retention_through_the_api(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    path = "/api/v1/workflows/simple-echo/retention"
    assert (await client.get("/api/v1/workflows/simple-echo")).json()["retentionDays"] is None
    changed = await client.patch(path, json={"retentionDays": 90})
    assert changed.status_code == 200, changed.text
    assert changed.json()["retentionDays"] == 90
    assert (await client.patch(path, json={"retentionDays": 0})).json()["retentionDays"] == 0
    for bad in [{"retentionDays": -1}, {"retentionDays": 36_501}, {"retentionDays": "30d"}, {"days": 3}]:
        answer = await client.patch(path, json=bad)
        assert answer.status_code == 400, bad
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await client.patch(path, json={})).status_code == 422
    assert (await client.patch("/api/v1/workflows/nope/retention", json={"retentionDays": 1})).status_code == 404
    cleared = await client.patch(path, json={"retentionDays": None})
    assert cleared.json()["retentionDays"] is None
    assert (await client.get("/api/v1/workflows")).json()["items"][0]["retentionDays"] is None


async def test_the_retention_command_goes_through_the_api(
    dsn: str, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    async with served_api(dsn) as url:
        run = cli_command(url, capsys, cmd_workflows_retention, "workflows", "retention")
        assert await run("simple-echo") == (
            EXIT_OK,
            "simple-echo  finished runs kept the default (DW_RETENTION_DAYS)",
            "",
        )
        assert await run("simple-echo", "--days", "90") == (EXIT_OK, "simple-echo  finished runs kept 90 days", "")
        assert (await run("simple-echo", "--forever"))[1] == "simple-echo  finished runs kept forever"
        assert (await run("simple-echo", "--default"))[1].endswith("the default (DW_RETENTION_DAYS)")
        code, _, err = await run("simple-echo", "--days", "-3")
        assert (code, err) == (EXIT_USAGE, "error: --days is 0 (keep forever) to 36500, not -3")
        code, _, err = await run("nope", "--days", "3")
        assert code == EXIT_USAGE and "HTTP 404" in err


def test_ages_parse_with_a_unit() -> None:
    assert [parse_age(text) for text in ("30d", "12h", "90min", "45s", "2w", " 1.5D ")] == [
        30 * DAY,
        12 * 3600.0,
        5400.0,
        45.0,
        14 * DAY,
        1.5 * DAY,
    ]
    # Digits of other scripts are not read as numbers (Arabic-Indic 30d was 30 days).
    for bad in ("30", "0d", "-1d", "d", "30 days", "100000d", "6mo", "1y", "\u0663\u0660d"):
        with pytest.raises(ValueError, match="age"):
            parse_age(bad)
    # `6m` used to mean six minutes (and pruned nearly everything): minutes or months? Refused.
    with pytest.raises(ValueError, match="ambiguous: say 6min for minutes or use days"):
        parse_age("6m")


def test_the_prune_command(
    postgresql: psycopg.Connection, dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.setenv("DW_RETENTION_DAYS", "off")
    postgresql.execute(
        "INSERT INTO dw.workflows (tenant_id, id, display_name, status, current_version) VALUES"
        " ('default', 'w', 'w', 'Active', 1), ('acme', 'w', 'w', 'Active', 1);"
        "INSERT INTO dw.workflow_versions (tenant_id, workflow_id, version, definition, checksum)"
        " SELECT t, 'w', 1, '{}', 'c' FROM unnest(ARRAY['default', 'acme']) t;"
        "INSERT INTO dw.executions (tenant_id, workflow_id, workflow_version, request_id, status, ended_at,"
        " root_execution_id, path, id)"
        " SELECT t, 'w', 1, 'r' || i, 'Succeeded', now() - make_interval(days => i * 10), x, ARRAY[x], x"
        " FROM (SELECT t, i, gen_random_uuid() AS x FROM unnest(ARRAY['default', 'acme']) t, generate_series(1, 4) i) s"
    )
    postgresql.commit()
    parser = build_parser()

    def run(*argv: str) -> tuple[int, str, str]:
        code = cmd_prune(parser.parse_args(["prune", *argv]))
        out, err = capsys.readouterr()
        return code, out, err

    for bad, message in [
        (["--older-than", "30"], "give a number and a unit"),
        (["--older-than", "0d"], "more than zero"),
        (["--batch-size", "0"], "batch size is 1 to 100,000 runs"),
        (["--older-than", "6m"], "say 6min for minutes"),
        (["--older-than", "30min"], "less than an hour ago: add --force"),
        (["--tenant", "*"], "not a tenant id"),
    ]:
        code, _, err = run(*bad)
        assert (code, message in err) == (EXIT_USAGE, True), err
    # Under an hour from DW_RETENTION_DAYS names it, not an --older-than that was not given.
    monkeypatch.setenv("DW_RETENTION_DAYS", "0.01")
    code, _, err = run("--dry-run")
    assert (code, err.strip()) == (
        EXIT_USAGE,
        "error: DW_RETENTION_DAYS=0.01 removes runs that ended less than an hour ago: add --force if that is what"
        " you mean",
    ), err
    monkeypatch.setenv("DW_RETENTION_DAYS", "off")
    code, out, err = run("--dry-run")
    assert (code, out.splitlines()) == (
        EXIT_OK,
        [
            "cutoff: runs of workflows without their own retention are kept (DW_RETENTION_DAYS is off)",
            "would prune 0 trees (0 executions, 0 events)",
        ],
    )
    assert "DW_RETENTION_DAYS is off" in err
    code, out, _ = run("--older-than", "30min", "--force", "--dry-run")
    assert out.splitlines()[1].startswith("would prune 8 trees")
    code, out, _ = run("--older-than", "25d", "--dry-run")
    cutoff, would = out.splitlines()
    assert cutoff.startswith("cutoff: trees whose runs all ended before ") and cutoff.endswith(
        " UTC (workflows with their own retention: theirs)"
    )
    assert would.startswith("would prune 4 trees (4 executions, 0 events); the oldest ended")
    code, out, _ = run("--older-than", "25d", "--tenant", "acme", "--batch-size", "1")
    assert (code, out.splitlines()[-1].split(" in ")[0]) == (EXIT_OK, "pruned 2 trees: 2 executions")
    code, out, _ = run("--older-than", "15d", "--workflow", "w")
    assert out.splitlines()[-1].split(" in ")[0] == "pruned 4 trees: 4 executions"
    # A mistyped workflow said "pruned 0 trees", exit 0, as if nothing were due (a review).
    for argv, where in [
        (["--workflow", "nope"], "in any tenant"),
        (["--workflow", "w", "--tenant", "zeta"], "in tenant zeta"),
    ]:
        for dry in ([], ["--dry-run"]):
            code, out, err = run("--older-than", "15d", *argv, *dry)
            assert (code, err.splitlines()[-1]) == (
                EXIT_USAGE,
                f"error: workflow {argv[1]} not found ({where}): nothing was pruned",
            ), err
            assert out == "", "no cutoff said for a workflow that is not there"
    postgresql.execute("DROP FUNCTION dw.preview_prune_v1")
    postgresql.commit()
    code, _, err = run("--dry-run")
    assert (code, err.splitlines()[-1]) == (
        EXIT_USAGE,
        "error: this database has no retention procedures: run `dataworkflows migrate` first",
    )
    assert postgresql.execute("SELECT tenant_id, count(*) FROM dw.executions GROUP BY 1 ORDER BY 1").fetchall() == [
        ("acme", 1),
        ("default", 1),
    ]


async def test_workers_prune_every_tenant_in_their_retention_job(db: Database, dsn: str) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    runs = []
    for tenant in ("default", "acme"):
        with tenant_scope(tenant):
            await publish(db, raw)
            runs.append(await start(db, "simple-echo"))
    await owner(dsn, "UPDATE dw.executions SET status = 'Succeeded', started_at = now(), ended_at = now()")
    await owner(dsn, "DELETE FROM procrastinate_jobs")
    await age(dsn, runs, 31)
    stop = asyncio.Event()
    settings = Settings(
        database_url=dsn, retention_days=30, retention_interval_seconds=0.1, scheduler_interval_seconds=0
    )
    task = asyncio.create_task(run_worker(settings, concurrency=2, install_signal_handlers=False, stop=stop))
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while await owner(dsn, "SELECT 1 FROM dw.executions"):
                    await asyncio.sleep(0.05)
        assert await owner(dsn, "SELECT id FROM dw.executions") == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_each_member_of_a_tree_keeps_it_for_its_own_workflow(
    db: Database, dsn: str, conditions: ConditionPool
) -> None:
    """A child's own workflow counts, not only the root's: a tree goes once every member's
    retention has passed, and a member whose workflow keeps its runs forever keeps the tree."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("audit", echo("a")), conditions)
    await publish(db, wf("quarterly", echo("q")), conditions)
    await publish(db, wf("caller", sub("call", "audit", to("after")), echo("after")), conditions)
    await publish(db, wf("other", sub("call", "quarterly", to("after")), echo("after")), conditions)
    assert await db.retention.set_workflow_retention("audit", 0)  # keep forever
    assert await db.retention.set_workflow_retention("quarterly", 90)
    for root_workflow in ("caller", "other"):
        assert await db.retention.set_workflow_retention(root_workflow, 7)
    forever, longer = await start(db, "caller"), await start(db, "other")
    await drain(db, runtime)
    members = [*await tree(dsn, forever), *await tree(dsn, longer)]
    assert len(members) == 4
    await age(dsn, members, 40)
    assert await prune(db, None) == Pruned()
    assert await prune(db, 30) == Pruned(), "a default does not override a workflow's own retention"
    await age(dsn, members, 60)  # 100 days: past the child's 90 days
    assert (await prune(db, 30)).executions == 2
    assert sorted(r[0] for r in await owner(dsn, "SELECT id FROM dw.executions")) == sorted(await tree(dsn, forever))
    # A child whose workflow follows a default that is off keeps its tree too.
    assert await db.retention.set_workflow_retention("audit", None)
    assert await prune(db, None) == Pruned()
    assert (await prune(db, 30)).trees == 1


async def test_a_child_that_ended_after_the_cutoff_keeps_its_old_root(
    db: Database, dsn: str, conditions: ConditionPool
) -> None:
    """Two workflows with different cutoffs in one batch: the guard (the newest cutoff) would not
    catch a tree whose member ended inside its retention; the choice must."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("kid", echo("k")), conditions)
    await publish(db, wf("mom", sub("spawn", "kid", waitForCompletion=False)), conditions)
    await publish(db, wf("short", echo("s")), conditions)
    assert await db.retention.set_workflow_retention("short", 1)
    root, other = await start(db, "mom"), await start(db, "short")
    await drain(db, runtime)
    members = await tree(dsn, root)
    child = next(m for m in members if m != root)
    await age(dsn, [root], 40)
    await age(dsn, [child], 10)  # the detached child ended 10 days ago: inside the 30-day retention
    await age(dsn, [other], 3)
    pruned = await prune(db, 30)
    assert pruned.trees == 1
    assert sorted(r[0] for r in await owner(dsn, "SELECT id FROM dw.executions")) == sorted([root, child])


async def test_prune_under_one_tenant_leaves_the_others(db: Database, dsn: str) -> None:
    """The procedure's explicit tenant filter: its owner here is a superuser, for whom SECURITY
    DEFINER bypasses row-level security, so the filter is the only isolation."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    runs = {}
    for tenant in ("default", "acme"):
        with tenant_scope(tenant):
            await publish(db, raw)
            runs[tenant] = await start(db, "simple-echo")
    await owner(dsn, "UPDATE dw.executions SET status = 'Succeeded', started_at = now(), ended_at = now()")
    await age(dsn, list(runs.values()), 40)
    assert await owner(dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SET ROLE dataworkflows_maintenance")
        await conn.execute("SELECT set_config('dw.tenant_id', 'acme', false)")
        cur = await conn.execute("SELECT trees FROM dw.prune_executions_v1(%s, 100)", (30 * DAY,))
        assert await cur.fetchone() == (1,)
    assert await owner(dsn, "SELECT tenant_id FROM dw.executions") == [("default",)]


async def test_a_batch_is_bounded_by_runs_and_a_larger_tree_goes_alone(db: Database, dsn: str) -> None:
    await owner(
        dsn,
        "INSERT INTO dw.workflows (tenant_id, id, display_name, status, current_version) VALUES"
        " ('default', 'w', 'w', 'Active', 1);"
        "INSERT INTO dw.workflow_versions (tenant_id, workflow_id, version, definition, checksum)"
        " VALUES ('default', 'w', 1, '{}', 'c');",
    )
    # Roots ended 50, 49, … days ago; the oldest holds 1 + 6 children, the others 1 + 1.
    await owner(
        dsn,
        "INSERT INTO dw.executions (tenant_id, workflow_id, workflow_version, request_id, status, ended_at,"
        " root_execution_id, path, id)"
        " SELECT 'default', 'w', 1, 'r' || r, 'Succeeded', now() - make_interval(days => 51 - r), x, ARRAY[x], x"
        " FROM (SELECT r, gen_random_uuid() AS x FROM generate_series(1, 4) r) s;"
        "INSERT INTO dw.executions (tenant_id, workflow_id, workflow_version, request_id, status, ended_at,"
        " root_execution_id, parent_execution_id, depth, path)"
        " SELECT 'default', 'w', 1, 'c' || e.request_id || ':' || i, 'Succeeded', e.ended_at, e.id, e.id, 1,"
        "        ARRAY[e.id]"
        " FROM dw.executions e, generate_series(1, CASE WHEN e.request_id = 'r1' THEN 6 ELSE 1 END) i",
    )
    with all_tenants():
        batches = [await db.retention.prune(default_seconds=30 * DAY, batch=5) for _ in range(4)]
    # 7 runs alone, then two trees of 2 (4 runs; a third would make 6), then the last one.
    assert [(b.trees, b.executions) for b in batches] == [(1, 7), (2, 4), (1, 2), (0, 0)]


def test_settings_are_checked_before_anything_opens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Settings().retention_days == 0, "retention is opt-in"
    assert Settings.from_env({"DW_RETENTION_DAYS": "off"}).retention_days == 0
    assert Settings.from_env({"DW_WORKER_GROUP_COMMIT": "1"}).worker_group_commit == 1  # a record per transaction
    assert Settings.from_env({"DW_WORKER_FETCH_BATCH": "1"}).worker_fetch_batch == 1  # a job per fetch
    for name, value in [
        ("DW_RETENTION_DAYS", "inf"),
        ("DW_RETENTION_DAYS", "nan"),
        ("DW_RETENTION_DAYS", "-1"),
        ("DW_RETENTION_DAYS", "36501"),
        ("DW_RETENTION_BATCH_SIZE", "0"),
        ("DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS", "inf"),
        ("DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS", "-5"),
        ("DW_WORKER_GROUP_COMMIT", "0"),
        ("DW_WORKER_GROUP_COMMIT", "61"),
        ("DW_WORKER_FETCH_BATCH", "0"),
        ("DW_WORKER_FETCH_BATCH", "101"),
        ("DW_MAX_RUNS_PER_TREE", "-1"),
        ("DW_MAX_RUNS_PER_TREE", str(2**31)),
        ("DW_MAX_RUN_SCOPE_BYTES", "0"),
        ("DW_MAX_RUN_SCOPE_BYTES", "1000000"),
        # lock_timeout in milliseconds holds at most 2,147,483 s.
        ("DW_MIGRATE_LOCK_TIMEOUT_SECONDS", "3000000"),
    ]:
        with pytest.raises(errors.ConfigurationError, match=f"^{name}="):
            Settings.from_env({name: value})
    # Sizes only this process compares are not held to PostgreSQL's integer.
    assert Settings.from_env({"DW_MAX_RUN_SCOPE_BYTES": str(4 * 2**30)}).max_run_scope_bytes == 4 * 2**30
    # A worker that could never run anything (0), or whose fetch loops failed every 2 s (below 0).
    for name, value, said in [
        ("DW_WORKER_CONCURRENCY", "0", "the worker's concurrency 0 (--concurrency or DW_WORKER_CONCURRENCY)"),
        ("DW_WORKER_CONCURRENCY", "-5", "the worker's concurrency -5"),
        ("DW_WORKER_FETCHERS", "0", "the worker's fetch loops 0 (--fetchers or DW_WORKER_FETCHERS)"),
    ]:
        with pytest.raises(errors.ConfigurationError, match=re.escape(said)):
            Settings.from_env({name: value})
    # In a process of its own: main() points logging at this test's captured stderr first.
    for argv in (["worker", "--concurrency", "0"], ["up", "--concurrency", "-5"], ["worker", "--fetchers", "0"]):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")} | {"DATABASE_URL": "postgresql:///none"}
        done = subprocess.run([*command(), *argv], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == EXIT_USAGE and "give 1 or more" in done.stderr, (argv, done)
    # The command line says so and exits 2 before any command starts.
    monkeypatch.setenv("DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS", "inf")
    assert main(["worker"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS=inf: give finite seconds")


def test_the_index_migration_runs_outside_a_transaction() -> None:
    """CREATE INDEX CONCURRENTLY is refused in a transaction, and in a string of several statements."""
    (indexes,) = [m for m in load_migrations() if m.version == "0027"]
    assert not indexes.transactional
    assert [statement.split(" ON ")[0] for statement in indexes.statements] == [
        "DROP INDEX CONCURRENTLY IF EXISTS dw.executions_retention_idx",
        "CREATE INDEX CONCURRENTLY executions_retention_idx",
        "DROP INDEX CONCURRENTLY IF EXISTS dw.resource_touches_execution_idx",
        "CREATE INDEX CONCURRENTLY resource_touches_execution_idx",
    ]
