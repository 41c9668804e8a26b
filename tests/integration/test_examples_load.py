"""`dataworkflows examples load` (docker compose's one-shot `examples` service): the examples `up`
loads, into DATABASE_URL, and a second run changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataworkflows import examples
from dataworkflows.actions import default_registry
from dataworkflows.cli import EXIT_OK, main
from dataworkflows.conditions import ConditionPool
from dataworkflows.data.workflows import WorkflowData
from dataworkflows.db import Database, make_pool
from dataworkflows.examples import example_definitions, example_template_sets, example_templates
from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() would bind structlog to this test's captured stderr, which later tests find closed.
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *_: None)


def test_examples_load_into_database_url_and_again_changes_nothing(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    assert main(["examples", "load"]) == EXIT_OK
    assert "example workflows (Active):" in capsys.readouterr().out

    def versions() -> dict[str, tuple[str, int]]:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
            rows = conn.execute("SELECT id, status, current_version FROM dw.workflows").fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    first = versions()
    expected = {definition["id"] for _, definition in example_definitions()}
    assert expected <= set(first)
    assert all(first[workflow_id][0] == "Active" for workflow_id in expected)
    assert main(["examples", "load"]) == EXIT_OK
    assert versions() == first
    # An example an operator archived or disabled stays so, and is not listed as Active (a review).
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE dw.workflows SET status = 'Archived' WHERE id = 'first-match'")
        conn.execute("UPDATE dw.workflows SET is_enabled = false WHERE id = 'conditional'")
    capsys.readouterr()
    assert main(["examples", "load"]) == EXIT_OK
    out = capsys.readouterr().out
    active = next(line for line in out.splitlines() if line.startswith("example workflows (Active): "))
    assert "first-match" not in active and "conditional" not in active and "simple-echo" in active
    assert "left as an operator set them: " in out and "first-match (Archived)" in out
    assert "conditional (Active, disabled)" in out


def test_examples_load_needs_a_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """DATABASE_URL, else an embedded database under DW_DATA_DIR (none is made here)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path / "none"))
    assert main(["examples", "load"]) != EXIT_OK
    assert "no embedded database under" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_examples_drafts_an_earlier_load_left_are_published_by_the_next(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Until loads were one transaction (load_all), the loader saved every example, then published
    them: a load that died in between (an `up` killed while it loaded them, a helper that could not
    start for a later one's conditions) left the ones it had saved as Drafts that no later load
    published ("left as an operator set them"), so the README's walkthrough answered 409 at every
    later `up`. A database such a load left is still taken up: only the loader's own Drafts; one an
    operator made, or saved a version of, is still left as it is."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    real_prepare = examples.prepare_definition
    prepared: list[str] = []

    async def dies_at_the_fourth(raw: Any, *args: Any, **kwargs: Any) -> Any:
        if len(prepared) == 3:
            raise KeyboardInterrupt  # stopped here (a Ctrl-C; a kill -9 leaves the same rows)
        prepared.append(raw["id"])
        return await real_prepare(raw, *args, **kwargs)

    async def load_as_earlier_releases_did() -> None:
        # load_examples on its own, each example's rows committed as it went.
        pool = make_pool(dsn, max_size=2, name="earlier-loader")
        await pool.open(wait=True)
        conditions = ConditionPool(size=1)
        try:
            with tenant_scope(DEFAULT_TENANT):
                await examples.load_examples(Database(pool), default_registry(), conditions)
        finally:
            await conditions.close()
            await pool.close()

    monkeypatch.setattr(examples, "prepare_definition", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(load_as_earlier_releases_did())
    monkeypatch.setattr(examples, "prepare_definition", real_prepare)
    saved, operators, edited = prepared
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        rows = conn.execute("SELECT id, status FROM dw.workflows ORDER BY id").fetchall()
        assert sorted(rows) == sorted((workflow_id, "Draft") for workflow_id in prepared)
        # An operator's Draft of an example's id, and a Draft an operator saved a version of.
        conn.execute("UPDATE dw.workflows SET created_by = 'alice' WHERE id = %s", [operators])
        conn.execute("UPDATE dw.workflow_versions SET created_by = 'bob' WHERE workflow_id = %s", [edited])
    capsys.readouterr()
    assert main(["examples", "load"]) == EXIT_OK
    out = capsys.readouterr().out
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        status = dict(conn.execute("SELECT id, status FROM dw.workflows").fetchall())
    assert status[saved] == "Active"
    assert status[operators] == "Draft" and status[edited] == "Draft"
    others = {d["id"] for _, d in example_definitions()} - {operators, edited}
    assert {workflow_id: status[workflow_id] for workflow_id in others} == dict.fromkeys(others, "Active")
    assert f"{operators} (Draft)" in out and f"{edited} (Draft)" in out


def _stored(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a load writes, by table (what a load that died may have left)."""
    queries = {
        "workflows": "SELECT id, status, current_version FROM dw.workflows",
        "workflow_versions": "SELECT workflow_id, version, checksum FROM dw.workflow_versions",
        "workflow_plans": "SELECT workflow_id, version FROM dw.workflow_plans",
        "workflow_templates": "SELECT id, version, checksum FROM dw.workflow_templates",
        "template_sets": "SELECT id FROM dw.template_sets",
        "document_template_versions": "SELECT set_id, name, version FROM dw.document_template_versions",
    }
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        return {table: sorted(conn.execute(query).fetchall()) for table, query in queries.items()}


def _next_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every example changed, as a release that brings a new version of each."""
    definitions = [(n, {**d, "description": f"{d.get('description') or ''} (next)"}) for n, d in example_definitions()]
    templates = [(n, {**d, "description": f"{d.get('description') or ''} (next)"}) for n, d in example_templates()]
    sets = [
        (
            n,
            {
                **d,
                "templates": [{**t, "sampleData": {**(t.get("sampleData") or {}), "next": 1}} for t in d["templates"]],
            },
        )
        for n, d in example_template_sets()
    ]
    monkeypatch.setattr(examples, "example_definitions", lambda: definitions)
    monkeypatch.setattr(examples, "example_templates", lambda: templates)
    monkeypatch.setattr(examples, "example_template_sets", lambda: sets)


@pytest.mark.parametrize(
    ("method", "fails_at"),
    [
        ("save_definition", 3),  # while the workflows are saved
        ("publish", 3),  # after every one was saved, some published
        ("add_template", 1),  # after every workflow was published
    ],
)
async def test_examples_a_load_that_fails_midway_leaves_nothing_of_itself(
    db: Database,
    conditions: ConditionPool,
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    fails_at: int,
) -> None:
    """A review: a load killed midway left some examples at a release's new version and others at
    the old one (a workflow calling a subworkflow of the other release), until a later load finished
    the work. A load is one transaction: it lands whole, or not at all, and the next does it all."""
    registry = default_registry()
    await examples.load_all(db, registry, conditions)
    before = _stored(dsn)
    _next_release(monkeypatch)
    real = getattr(WorkflowData, method)
    calls = 0

    async def fails(self: WorkflowData, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == fails_at:
            raise RuntimeError("the load dies here")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(WorkflowData, method, fails)
    with pytest.raises(RuntimeError, match="the load dies here"):
        await examples.load_all(db, registry, conditions)
    assert calls == fails_at
    assert _stored(dsn) == before, "a load that failed midway left part of itself"
    monkeypatch.setattr(WorkflowData, method, real)
    loaded = await examples.load_all(db, registry, conditions)
    after = _stored(dsn)
    workflows = {row[0]: row for row in after["workflows"]}
    assert {workflow_id: workflows[workflow_id][1:] for workflow_id in loaded.workflows} == dict.fromkeys(
        loaded.workflows, ("Active", 2)
    ), "the next load brings every example to the new release"
    assert len(after["workflow_templates"]) == 2 * len(before["workflow_templates"])
    assert len(after["document_template_versions"]) == 2 * len(before["document_template_versions"])


async def test_examples_two_loads_at_once_take_turns(db: Database, conditions: ConditionPool, dsn: str) -> None:
    """Two loads at once (two `up`s on one database, `up` beside compose's `examples`): each is one
    transaction, so the second could not see the first's uncommitted rows and collided with them (a
    duplicate workflow id). The second waits for the first to commit, then finds its work done."""
    registry = default_registry()
    first, second = await asyncio.gather(
        examples.load_all(db, registry, conditions), examples.load_all(db, registry, conditions)
    )
    assert sorted(first.workflows) == sorted(second.workflows)
    stored = _stored(dsn)
    assert {row[1:] for row in stored["workflows"]} == {("Active", 1)}
    assert len(stored["workflow_versions"]) == len(stored["workflows"])


async def test_examples_a_load_the_database_refuses_for_a_moment_is_made_again_whole(
    db: Database, conditions: ConditionPool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient refusal (a deadlock, a moment out of memory) of one of a load's statements: each
    statement was its own transaction, run again after a short wait (Database._statement). In the
    load's one transaction it aborts all of it and is not run again alone (db._refused_transiently):
    `up` and `examples load` failed where they had gone on. The whole load is made again instead."""
    from dataworkflows import db as db_module
    from dataworkflows.db import QUERIES

    registry = default_registry()
    await examples.load_all(db, registry, conditions)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE public.refusals")
        conn.execute(
            "CREATE FUNCTION public.refused_once() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
            " IF nextval('public.refusals') = 3 THEN"
            " RAISE EXCEPTION 'deadlock detected (injected)' USING ERRCODE = '40P01'; END IF;"
            " RETURN true; END $$"
        )
        conn.execute("GRANT USAGE, UPDATE ON SEQUENCE public.refusals TO PUBLIC")
    monkeypatch.setattr(db_module, "STATEMENT_RETRY_DELAYS", (0.0, 0.0, 0.0))
    monkeypatch.setattr(examples, "LOAD_RETRY_DELAYS", (0.0, 0.0, 0.0), raising=False)
    statement = QUERIES["get_workflow"].strip().rstrip(";")
    monkeypatch.setitem(QUERIES, "get_workflow", f"SELECT * FROM ({statement}) q WHERE public.refused_once()")
    loaded = await examples.load_all(db, registry, conditions)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT last_value FROM public.refusals").fetchone() > (3,)  # refused, then made again
    stored = _stored(dsn)
    assert {row[1:] for row in stored["workflows"]} == {("Active", 1)}
    assert sorted(row[0] for row in stored["workflows"]) == sorted(loaded.workflows)
