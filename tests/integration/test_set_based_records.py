"""The group commit's batch written set-based (dw.record_attempts_v2, issue 17): the same batch gives
the same answer and leaves the same rows as dw.record_attempts_v1's record-by-record way, and only
the records the set-based statements cannot write go that way. Several records of one run (a
fan-out's parallel nodes) go set-based together when all of them can.

Each scenario is built twice, in two runs of the same workflow; one batch of all the scenarios'
records goes to dw.record_attempts_v1, the same batch over the other runs to dw.record_attempts_v2."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from dataworkflows.db import APP_ROLE, Database
from tests.conftest import publish, start
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import echo, to, wf


@dataclass
class Scenario:
    """A run brought to a state, and the record (or records) the batch carries for it."""

    name: str
    workflow_id: str
    # Nodes recorded alone before the batch, with their edges' decisions (each starts what it makes
    # Ready), in order.
    before: tuple[tuple[str, tuple[bool, ...]], ...] = ()
    # (node, outcome, fired, start_limit) of each record the batch carries for this run.
    records: tuple[tuple[str, str, tuple[bool, ...], int], ...] = ()
    token_offset: int = 0  # a stale token: the record's lease is lost
    cancel: bool = False  # a cancel pending when the batch comes
    ids: list[UUID] = field(default_factory=list)  # one run per world


FAN_IN = (("b1", "succeeded", (True,), 1), ("b2", "succeeded", (True,), 1), ("b3", "succeeded", (True,), 1))

SCENARIOS = [
    # Set-based: the next node starts; the last node ends the run; a node made Ready is not started
    # (no free slot); a join's first edge decides nothing yet; a cancel pending starts nothing.
    Scenario("next", "sb-pair", records=(("a", "succeeded", (True,), 1),)),
    Scenario("end", "sb-pair", before=(("a", (True,)),), records=(("b", "succeeded", (), 1),)),
    Scenario("ready", "sb-pair", records=(("a", "succeeded", (True,), 0),)),
    Scenario("join-first", "sb-join", before=(("s", (True, True)),), records=(("l", "succeeded", (True,), 1),)),
    Scenario("cancel-pending", "sb-pair", cancel=True, records=(("a", "succeeded", (True,), 1),)),
    # Two nodes made Ready, one free slot: the first in plan order starts, the other is left Ready.
    Scenario("one-slot", "sb-join", records=(("s", "succeeded", (True, True), 1),)),
    # Several records of one run: the last into the join completes it and starts it; the first
    # records nothing else.
    Scenario(
        "join-both",
        "sb-join",
        before=(("s", (True, True)),),
        records=(("l", "succeeded", (True,), 1), ("r", "succeeded", (True,), 1)),
    ),
    # Three parallel nodes of a fan-out, all in the batch; two of them (the join waits); the last
    # with no free slot (the join is left Ready).
    Scenario("fan-in", "sb-fan", before=(("s", (True, True, True)),), records=FAN_IN),
    Scenario("fan-in-part", "sb-fan", before=(("s", (True, True, True)),), records=FAN_IN[:2]),
    Scenario(
        "fan-in-no-slot",
        "sb-fan",
        before=(("s", (True, True, True)),),
        records=(*FAN_IN[:2], ("b3", "succeeded", (True,), 0)),
    ),
    # Two records of one run, each making its own next node Ready: each starts its own.
    Scenario(
        "two-branches",
        "sb-two",
        before=(("s", (True, True)),),
        records=(("a", "succeeded", (True,), 1), ("b", "succeeded", (True,), 1)),
    ),
    # Two records of one run that end it: only the last one ends it.
    Scenario(
        "both-last",
        "sb-ends",
        before=(("s", (True, True)),),
        records=(("a", "succeeded", (), 1), ("b", "succeeded", (), 1)),
    ),
    # Record by record: a retry; an edge not fired (its target Skipped); a lease lost; a run with a
    # retry among its records (its other record too).
    Scenario("retry", "sb-pair", records=(("a", "retry", (), 1),)),
    Scenario("skip", "sb-branch", records=(("a", "succeeded", (True, False), 1),)),
    Scenario("lease-lost", "sb-pair", token_offset=7, records=(("a", "succeeded", (True,), 1),)),
    Scenario(
        "mixed",
        "sb-fan",
        before=(("s", (True, True, True)),),
        records=(("b1", "succeeded", (True,), 1), ("b2", "retry", (), 1)),
    ),
]
# Records that go one by one, as PostgreSQL counts dw.record_attempt_v6's calls: a call that raises
# (the lease lost) is not counted.
RECORD_BY_RECORD = {"retry": 1, "skip": 1, "lease-lost": 0, "mixed": 2}
# Runs whose events the set-based way writes in another order (see dw.record_attempts_v2): the
# record's node, and the node it started.
REORDERED = {"two-branches": (("a", "x"), ("b", "y"))}


def _key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


async def prepare(db: Database, scenario: Scenario) -> tuple[UUID, int]:
    execution_id = await start(db, scenario.workflow_id)
    acquired = await db.runs.acquire(execution_id, owner="w", lease_seconds=30, start=True)
    assert acquired.outcome == "acquired" and acquired.lease_token is not None
    token = acquired.lease_token
    for node, fired in scenario.before:
        await db.runs.record_attempt(attempt_record(execution_id, token, node, fired=fired, start_limit=5))
    if scenario.cancel:
        await db.control.cancel(execution_id, principal="tests", reason=None)
    return execution_id, token + scenario.token_offset


# One time for every record: the two worlds' rows compare equal.
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def encoded(execution_id: UUID, token: int, node: str, outcome: str, fired: tuple[bool, ...], limit: int) -> dict:
    at = AT
    record: dict[str, Any] = {
        "execution_id": str(execution_id),
        "token": token,
        "node_id": node,
        "attempt": 1,
        "action_type": "core.echo",
        "attempt_status": "Succeeded" if outcome == "succeeded" else "Failed",
        "parameters": {"message": node},
        "outputs": {"echo": node},
        "start_time": at.isoformat(),
        "end_time": at.isoformat(),
        "worker": "w",
        "outcome": outcome,
        "fired": list(fired),
        "interrupted": False,
        "start_limit": limit,
        "complete": True,
    }
    if outcome == "retry":
        record["error"] = {"code": "boom", "message": "boom"}
        record["next_attempt_at"] = (at + timedelta(seconds=60)).isoformat()
    return record


# What a run's rows say, without ids, times and the request id its start made up.
STATE = {
    "nodes": "SELECT node_id, status, attempts, decided_incoming, satisfied_incoming, outputs, error, end_reason"
    " FROM dw.node_states WHERE execution_id = %s ORDER BY node_id",
    "run": "SELECT status, lease_owner IS NULL AS released FROM dw.executions WHERE id = %s",
    "events": "SELECT type, node_id, CASE WHEN type = 'execution_requested' THEN NULL ELSE details END AS details"
    " FROM dw.execution_events WHERE execution_id = %s ORDER BY id",
    "attempts": "SELECT node_id, attempt, status, outputs, error, interrupted FROM dw.action_executions"
    " WHERE execution_id = %s ORDER BY node_id, attempt",
    "waits": "SELECT node_id, kind, state, recorded_at IS NOT NULL AS recorded FROM dw.waits"
    " WHERE execution_id = %s ORDER BY node_id, attempt",
    # The run's own job is still queued (the tests take leases without a fetch): a run's end deletes it.
    "jobs": "SELECT task_name, status FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s::text ORDER BY id",
}


def state(conn: psycopg.Connection[dict[str, Any]], execution_id: UUID) -> dict[str, Any]:
    return {part: conn.execute(query, (execution_id,)).fetchall() for part, query in STATE.items()}


def single_calls(conn: psycopg.Connection[dict[str, Any]]) -> int:
    """Calls of dw.record_attempt_v6 (a record written alone) this session has made and not yet reported."""
    row = conn.execute(
        "SELECT COALESCE(sum(calls), 0) AS calls FROM pg_stat_xact_user_functions WHERE funcname = 'record_attempt_v6'"
    ).fetchone()
    assert row is not None
    return int(row["calls"])


async def test_a_batch_written_set_based_answers_and_writes_as_record_by_record(db: Database, dsn: str) -> None:
    await publish(db, wf("sb-pair", echo("a", to("b")), echo("b")))
    await publish(db, wf("sb-join", echo("s", to("l"), to("r")), echo("l", to("j")), echo("r", to("j")), echo("j")))
    await publish(db, wf("sb-branch", echo("a", to("b"), to("c", "failure")), echo("b"), echo("c")))
    fan = [f"b{i}" for i in (1, 2, 3)]
    await publish(db, wf("sb-fan", echo("s", *(to(b) for b in fan)), *(echo(b, to("j")) for b in fan), echo("j")))
    await publish(
        db, wf("sb-two", echo("s", to("a"), to("b")), echo("a", to("x")), echo("b", to("y")), echo("x"), echo("y"))
    )
    await publish(db, wf("sb-ends", echo("s", to("a"), to("b")), echo("a"), echo("b")))
    scenarios = [replace(s, ids=[]) for s in SCENARIOS]
    worlds: list[list[dict[str, Any]]] = [[], []]
    for scenario in scenarios:
        for world in worlds:
            execution_id, token = await prepare(db, scenario)
            scenario.ids.append(execution_id)
            world.extend(encoded(execution_id, token, *record) for record in scenario.records)
    # The worker sends a batch's records sorted by execution id.
    for world in worlds:
        world.sort(key=lambda record: record["execution_id"])

    answers: list[dict[str, list[tuple[Any, ...]]]] = []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET track_functions = 'pl'")
        conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(APP_ROLE)))
        conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        for version, world in zip(("v1", "v2"), worlds, strict=True):
            with conn.transaction():
                before = single_calls(conn)
                rows = conn.execute(
                    f"SELECT * FROM dw.record_attempts_{version}(%s::jsonb)", (json.dumps(world),)
                ).fetchall()
                singles = single_calls(conn) - before
            by_run: dict[str, list[tuple[Any, ...]]] = {}
            for row in rows:
                record = world[row["ordinal"] - 1]
                by_run.setdefault(record["execution_id"], []).append(
                    (
                        record["node_id"],
                        row["node_id"],
                        row["status"],
                        row["attempt"],
                        row["job_finished"],
                        row["error_state"],
                    )
                )
            answers.append(by_run)
            if version == "v2":
                # Only the records the set-based statements leave go one by one.
                assert singles == sum(RECORD_BY_RECORD.values())

        for scenario in scenarios:
            one, other = scenario.ids
            assert answers[0][str(one)] == answers[1][str(other)], scenario.name
            assert len(answers[0][str(one)]) >= len(scenario.records), scenario.name
            rows_v1, rows_v2 = state(conn, one), state(conn, other)
            if scenario.name in REORDERED:
                # Written together, the records' events come before the events of the nodes they
                # started; the same events, each still after the event of the record that caused it.
                events_v1, events_v2 = rows_v1.pop("events"), rows_v2.pop("events")
                assert sorted(map(_key, events_v1)) == sorted(map(_key, events_v2)), scenario.name
                order = [(e["type"], e["node_id"]) for e in events_v2]
                for cause, effect in REORDERED[scenario.name]:
                    assert order.index(("node_succeeded", cause)) < order.index(("node_started", effect))
            assert rows_v1 == rows_v2, scenario.name

        # What the scenarios were meant to be (so that the comparison above compares something).
        def outcome(name: str) -> list[tuple[Any, ...]]:
            scenario = next(s for s in scenarios if s.name == name)
            return answers[1][str(scenario.ids[1])]

        assert outcome("next") == [("a", "b", "Running", 1, None, None)]
        assert outcome("end") == [("b", None, "Succeeded", None, False, None)]
        assert outcome("ready") == [("a", "b", "Ready", None, None, None)]
        assert outcome("join-first") == [("l", None, "recorded", None, None, None)]
        assert outcome("cancel-pending") == [("a", "b", "Ready", None, None, None)]
        assert outcome("one-slot") == [("s", "l", "Running", 1, None, None), ("s", "r", "Ready", None, None, None)]
        assert state(conn, scenarios[1].ids[1])["jobs"] == [], "a run's end deletes its queued job"
        assert outcome("join-both") == [
            ("l", None, "recorded", None, None, None),
            ("r", "j", "Running", 1, None, None),
        ]
        assert outcome("fan-in") == [
            ("b1", None, "recorded", None, None, None),
            ("b2", None, "recorded", None, None, None),
            ("b3", "j", "Running", 1, None, None),
        ]
        assert [row[2] for row in outcome("fan-in-part")] == ["recorded", "recorded"]
        assert outcome("fan-in-no-slot")[2] == ("b3", "j", "Ready", None, None, None)
        assert outcome("two-branches") == [("a", "x", "Running", 1, None, None), ("b", "y", "Running", 1, None, None)]
        assert outcome("both-last") == [
            ("a", None, "recorded", None, None, None),
            ("b", None, "Succeeded", None, False, None),
        ]
        mixed = next(s for s in scenarios if s.name == "mixed")
        assert [row[2] for row in outcome("mixed")] == ["recorded", "recorded"]
        nodes = {row["node_id"]: row["status"] for row in state(conn, mixed.ids[1])["nodes"]}
        assert (nodes["b1"], nodes["b2"]) == ("Succeeded", "Waiting")
        assert sorted(outcome("skip")) == [
            ("a", "b", "Running", 1, None, None),
            ("a", "c", "Skipped", None, None, None),
        ]
        assert outcome("lease-lost")[0][5] == "DW010"


@pytest.mark.parametrize("fault", ["duplicate", "not-json-storable"])
async def test_a_batch_the_set_based_statements_refuse_goes_record_by_record(
    db: Database, dsn: str, fault: str
) -> None:
    """A refusal inside the set-based statements rolls them back whole; every record then goes the
    record-by-record way, where only the one at fault fails."""
    await publish(db, wf("sb-fault", echo("a", to("b")), echo("b")))
    runs = [await prepare(db, Scenario("x", "sb-fault")) for _ in range(3)]
    world = [encoded(execution_id, token, "a", "succeeded", (True,), 1) for execution_id, token in runs]
    world.sort(key=lambda record: record["execution_id"])
    faulty = world[1]
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(APP_ROLE)))
        conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        if fault == "duplicate":
            # The attempt's row is already there (its key: execution, node, item, attempt).
            conn.execute(
                "INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status,"
                " start_time, end_time) VALUES (%s, 'a', 'core.echo', 1, 'Succeeded', now(), now())",
                (faulty["execution_id"],),
            )
        else:
            faulty["attempt_status"] = "NotAStatus"  # the attempt row's CHECK refuses it
        rows = conn.execute("SELECT * FROM dw.record_attempts_v2(%s::jsonb)", (json.dumps(world),)).fetchall()
        by_ordinal = {row["ordinal"]: row for row in rows}
        assert by_ordinal[2]["error_state"] == ("23505" if fault == "duplicate" else "23514"), by_ordinal[2]
        for ordinal in (1, 3):
            assert (by_ordinal[ordinal]["node_id"], by_ordinal[ordinal]["status"]) == ("b", "Running")
        nodes = conn.execute(
            "SELECT execution_id::text, status FROM dw.node_states WHERE node_id = 'a' AND execution_id = ANY(%s)",
            ([UUID(r["execution_id"]) for r in world],),
        ).fetchall()
        statuses = {row["execution_id"]: row["status"] for row in nodes}
        assert statuses[faulty["execution_id"]] == "Running", "the refused record left its node in flight"
        assert sorted(statuses.values()) == ["Running", "Succeeded", "Succeeded"]
