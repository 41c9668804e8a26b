"""The worker's group commit (issue 17, dataworkflows.data.group_commit): the records of concurrent
runs go in one transaction, each still atomic and fenced on its own. A record refused inside a batch
fails alone, with the error it raises on its own; a batch PostgreSQL refuses as a whole goes again
record by record; a batch whose answer is lost fails every record in it as a lost answer does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec
import pytest

from dataworkflows.conditions import ConditionPool
from dataworkflows.data.group_commit import ALONE_WAIT_SECONDS, GroupCommit
from dataworkflows.db import Database, translated_state
from dataworkflows.errors import Conflict, DatabaseUnavailable, InvalidInput, LeaseLost, NodeNotRunnable
from dataworkflows.statuses import NodeStatus
from tests.conftest import publish, start
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import attempts, echo, events, make_runtime, to, wf

FetchAll = Callable[..., Awaitable[list[Any]]]


async def held(db: Database, workflow_id: str) -> tuple[UUID, int]:
    """A started run of the workflow, its first node in flight under this test's lease."""
    execution_id = await start(db, workflow_id)
    acquired = await db.runs.acquire(execution_id, owner="w", lease_seconds=30, start=True)
    assert acquired.outcome == "acquired" and acquired.lease_token is not None
    return execution_id, acquired.lease_token


async def batching(db: Database, workflow_id: str, count: int) -> list[tuple[UUID, int]]:
    """`count` held runs of a new two-node workflow, and group commit on for db.runs."""
    await publish(db, wf(workflow_id, echo("a", to("b")), echo("b")))
    runs = [await held(db, workflow_id) for _ in range(count)]
    db.runs.group_commit = GroupCommit(db, db.runs)
    return runs


def counted(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The named statements the records went out as: ("record_attempts", records in it) for a batch."""
    calls: list[tuple[str, int]] = []
    original = db.fetch_all

    async def fetch_all(name: str, /, **params: Any) -> Any:
        if name in ("record_attempt", "record_attempts"):
            calls.append((name, len(msgspec.json.decode(params["records"])) if name == "record_attempts" else 1))
        return await original(name, **params)

    monkeypatch.setattr(db, "fetch_all", fetch_all)
    return calls


def answering_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch, answer: Callable[[FetchAll, str], Awaitable[list[Any]]]
) -> list[str]:
    """Batches (record_attempts) are answered by `answer(the real fetch_all, the batch's document)`;
    other statements go as they are. Returns the names of the statements sent, in order."""
    original = db.fetch_all
    sent: list[str] = []

    async def fetch_all(name: str, /, **params: Any) -> Any:
        sent.append(name)
        if name == "record_attempts":
            return await answer(original, params["records"])
        return await original(name, **params)

    monkeypatch.setattr(db, "fetch_all", fetch_all)
    return sent


async def test_records_that_come_together_commit_together(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await publish(db, wf("gc-pair", echo("a", to("b")), echo("b")))
    runs = [await held(db, "gc-pair") for _ in range(5)]
    db.runs.group_commit = GroupCommit(db, db.runs, max_batch=3)
    calls = counted(db, monkeypatch)
    recorded = await asyncio.gather(
        *(db.runs.record_attempt(attempt_record(run, token, "a", fired=(True,), start_limit=1)) for run, token in runs)
    )
    # All five were queued before the first batch went: at most three a transaction.
    assert calls == [("record_attempts", 3), ("record_attempts", 2)]
    for changes in recorded:
        assert [(c.node_id, c.status, c.attempt) for c in changes.changes] == [("b", NodeStatus.RUNNING, 1)]
    ended = await asyncio.gather(
        *(db.runs.record_attempt(attempt_record(run, token, "b", start_limit=1, complete=True)) for run, token in runs)
    )
    assert all(end.run_succeeded for end in ended)
    for run, _ in runs:
        assert (await db.executions.get(run)).status == "Succeeded"
        assert [(r["node_id"], r["attempt"]) for r in await attempts(db, run)] == [("a", 1), ("b", 1)]
        assert (await events(db, run))[-3:] == ["node_started", "node_succeeded", "execution_succeeded"]
    # Ten records in all, in fewer transactions than records.
    assert sum(size for _, size in calls) == 10 and len(calls) < 10, calls


async def test_a_refused_record_fails_alone_with_its_own_error(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await publish(db, wf("gc-refused", echo("a", to("b")), echo("b")))
    (good, token), (fenced, fenced_token), (twice, twice_token) = [await held(db, "gc-refused") for _ in range(3)]
    # Recorded already: a second record of the same attempt is a Conflict, as on its own.
    await db.runs.record_attempt(attempt_record(twice, twice_token, "a", fired=(True,)))
    db.runs.group_commit = GroupCommit(db, db.runs)
    other, other_token = await held(db, "gc-refused")
    calls = counted(db, monkeypatch)
    results = await asyncio.gather(
        db.runs.record_attempt(attempt_record(other, other_token, "a", fired=(True,))),
        db.runs.record_attempt(attempt_record(good, token, "a", fired=(True,), start_limit=1)),
        db.runs.record_attempt(attempt_record(fenced, fenced_token + 1, "a", fired=(True,))),
        db.runs.record_attempt(attempt_record(twice, twice_token, "a", fired=(True,))),
        # Not in flight: other's a makes b Ready without starting it (no free slot given).
        db.runs.record_attempt(attempt_record(other, other_token, "b")),
        return_exceptions=True,
    )
    assert calls == [("record_attempts", 5)]
    assert [type(r).__name__ for r in results] == ["Recorded", "Recorded", "LeaseLost", "Conflict", "NodeNotRunnable"]
    assert isinstance(results[2], LeaseLost) and isinstance(results[3], Conflict)
    assert isinstance(results[4], NodeNotRunnable)
    # The refused records left nothing; the good one's record and the node it started stayed.
    assert [(r["node_id"], r["attempt"]) for r in await attempts(db, good)] == [("a", 1)]
    assert await attempts(db, fenced) == []
    assert [(r["node_id"], r["attempt"]) for r in await attempts(db, twice)] == [("a", 1)]
    assert (await events(db, good))[-2:] == ["node_succeeded", "node_started"]


async def test_a_value_postgresql_refuses_fails_only_its_own_record(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NUL character in one record's outputs makes PostgreSQL refuse the batch's whole JSON
    document: nothing of it committed, so each record goes again alone, and only that one fails,
    with the InvalidInput it raises on its own (the node then records unrecordable_result)."""
    runs = await batching(db, "gc-nul", 4)
    calls = counted(db, monkeypatch)
    records = [attempt_record(run, token, "a", fired=(True,)) for run, token in runs]
    records[2] = msgspec.structs.replace(records[2], outputs={"echo": "nul \x00 here"})
    results = await asyncio.gather(*(db.runs.record_attempt(r) for r in records), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Recorded", "Recorded", "InvalidInput", "Recorded"]
    assert [name for name, _ in calls] == ["record_attempts"] + ["record_attempt"] * 4
    for index, (run, _) in enumerate(runs):
        assert len(await attempts(db, run)) == (0 if index == 2 else 1)


async def test_a_value_json_cannot_carry_fails_only_its_own_record(db: Database) -> None:
    """An output that is not JSON cannot be encoded: that record goes alone and raises what it
    raises on its own (the TypeError the runtime records as unrecordable_result); the batch's other
    records commit."""
    runs = await batching(db, "gc-not-json", 3)
    records = [attempt_record(run, token, "a", fired=(True,)) for run, token in runs]
    records[1] = msgspec.structs.replace(records[1], outputs={"echo": object()})
    results = await asyncio.gather(*(db.runs.record_attempt(r) for r in records), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Recorded", "TypeError", "Recorded"]
    assert [len(await attempts(db, run)) for run, _ in runs] == [1, 0, 1]


async def test_a_batch_whose_answer_is_lost_fails_every_record_in_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await batching(db, "gc-lost", 3)

    async def lost(_: FetchAll, __: str) -> list[Any]:
        raise DatabaseUnavailable("the database is unavailable: the connection was lost")

    answering_batches(db, monkeypatch, lost)
    results = await asyncio.gather(
        *(db.runs.record_attempt(attempt_record(run, token, "a", fired=(True,))) for run, token in runs),
        return_exceptions=True,
    )
    # Each learns that its answer was lost, and none is sent again (a lost answer may have
    # committed: the run's lease and recovery decide).
    assert all(isinstance(r, DatabaseUnavailable) for r in results)
    assert [len(await attempts(db, run)) for run, _ in runs] == [0, 0, 0]


async def test_a_transient_refusal_in_a_batch_sends_that_record_again_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await batching(db, "gc-deadlock", 3)

    async def deadlocked(original: FetchAll, document: str) -> list[Any]:
        # What the batch answers when the second record's subtransaction was chosen as a deadlock
        # victim: the first and the third committed, the second rolled back alone.
        records = msgspec.json.decode(document)
        first = await original("record_attempts", records=msgspec.json.encode(records[:1]).decode())
        third = await original("record_attempts", records=msgspec.json.encode(records[2:]).decode())
        victim = dict.fromkeys(("node_id", "status", "attempt", "job_finished", "error_detail", "error_constraint"))
        refused = {"ordinal": 2, **victim, "error_state": "40P01", "error_message": "deadlock detected"}
        return [*first, refused, *({**row, "ordinal": 3} for row in third)]

    sent = answering_batches(db, monkeypatch, deadlocked)
    results = await asyncio.gather(
        *(db.runs.record_attempt(attempt_record(run, token, "a", fired=(True,))) for run, token in runs)
    )
    assert all(not r.run_succeeded for r in results)
    assert sent == ["record_attempts", "record_attempt"]
    assert [len(await attempts(db, run)) for run, _ in runs] == [1, 1, 1]


async def test_a_run_whose_row_is_locked_does_not_hold_the_others_back(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone holds one run's row (an operator's psql session left in a transaction): that run's
    record gives up its place in the batch after the batch's lock_timeout (55P03, a transient
    refusal) and waits alone, as it did before group commit; the others commit meanwhile, and so do
    records that come later."""
    runs = await batching(db, "gc-locked", 4)
    locked, _ = runs[1]
    calls = counted(db, monkeypatch)
    async with db.connection() as holder:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR UPDATE", (locked,))
        records = [
            asyncio.ensure_future(db.runs.record_attempt(attempt_record(run, token, "a", fired=(True,))))
            for run, token in runs[:3]
        ]
        others = [records[0], records[2]]
        done, _ = await asyncio.wait(others, timeout=10)
        assert done == set(others), "the other runs' records committed while one run's row was held"
        # A record that comes while the locked one waits is not queued behind it.
        later, later_token = runs[3]
        await asyncio.wait_for(db.runs.record_attempt(attempt_record(later, later_token, "a", fired=(True,))), 10)
        assert not records[1].done(), "the locked run's record waits, alone"
        assert calls == [("record_attempts", 3), ("record_attempt", 1), ("record_attempt", 1)]
        await holder.execute("ROLLBACK")
    await asyncio.wait_for(records[1], 10)
    assert [len(await attempts(db, run)) for run, _ in runs] == [1, 1, 1, 1]


async def test_a_record_left_waiting_alone_is_answered_when_the_lock_goes(db: Database) -> None:
    """The flusher stops waiting for a record it sent alone after ALONE_WAIT_SECONDS, and ends when
    nothing else is queued; the record, still waiting for its run's row, is answered when it gets
    the row, not dropped with the flusher."""
    runs = await batching(db, "gc-left", 2)
    locked, _ = runs[0]
    async with db.connection() as holder:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR UPDATE", (locked,))
        records = [
            asyncio.ensure_future(db.runs.record_attempt(attempt_record(run, token, "a", fired=(True,))))
            for run, token in runs
        ]
        await asyncio.wait_for(records[1], 10)
        await asyncio.sleep(ALONE_WAIT_SECONDS + 0.3)  # the flusher has ended
        assert not records[0].done()
        await holder.execute("ROLLBACK")
    recorded = await asyncio.wait_for(records[0], 10)
    assert [(c.node_id, c.status) for c in recorded.changes] == [("b", NodeStatus.READY)]
    assert [len(await attempts(db, run)) for run, _ in runs] == [1, 1]


async def test_a_worker_with_group_commit_runs_a_fan_out_once_per_node(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty parallel nodes of one run record about at once: their records batch, each node has one
    attempt and its events, and the run ends once."""
    branches = [echo(f"n{i}", to("join")) for i in range(50)]
    await publish(
        db,
        wf("gc-fan", echo("root", *(to(b["id"]) for b in branches)), *branches, echo("join"), maxParallelActions=50),
    )
    runtime = make_runtime(db, conditions)  # group commit on, as in a worker (RuntimeSettings.group_commit)
    assert db.runs.group_commit is not None
    calls = counted(db, monkeypatch)
    execution_id = await start(db, "gc-fan")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    assert len(rows) == 52 and len({r["node_id"] for r in rows}) == 52
    assert {r["status"] for r in rows} == {"Succeeded"}
    assert sum(size for name, size in calls) == 52
    assert any(name == "record_attempts" and size > 1 for name, size in calls), calls
    history = await events(db, execution_id)
    assert history.count("node_succeeded") == 52 and history.count("execution_succeeded") == 1


def test_errors_refused_inside_a_batch_are_the_errors_of_the_single_call() -> None:
    assert isinstance(translated_state("DW010", "lease lost"), LeaseLost)
    assert isinstance(translated_state("DW011", "not in flight"), NodeNotRunnable)
    conflict = translated_state("23505", "duplicate key", constraint="action_executions_pkey")
    assert isinstance(conflict, Conflict)
    assert isinstance(translated_state("22P05", "unsupported Unicode escape sequence"), InvalidInput)
    assert isinstance(translated_state("57P01", "terminating connection"), DatabaseUnavailable)
    bug = translated_state("42883", "function does not exist")
    assert type(bug).__name__ == "UndefinedFunction"
