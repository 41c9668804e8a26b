"""The database failing under a batch: PostgreSQL restarted, frozen, every backend terminated again and
again, and storage errors raised inside the procedures that checkpoint a run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataworkflows.db import Database
from dataworkflows.errors import DatabaseUnavailable
from tests.acceptance.test_connection_faults import OwnServer
from tests.conftest import publish as publish_in_process
from tests.conftest import record, start
from tests.faults.harness import (
    MIXED,
    NO_RETRIES,
    PAIR,
    Answer,
    ApiPoller,
    Probe,
    all_succeed,
    echo,
    first_event_after,
    last_end,
    publish,
    start_batch,
    start_stack,
    summarize,
    verify,
    verify_with_accepted,
    wait_terminal,
    workflow,
)

pytestmark = [pytest.mark.acceptance, pytest.mark.faults]


# -- PostgreSQL restarted --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServer]:
    """A PostgreSQL of this module's own: the session's server is shared with every other test."""
    from dataworkflows.migrations import migrate

    server = OwnServer(tmp_path_factory.mktemp("faults-pg"))
    try:
        migrate(server.dsn)
        yield server
    finally:
        server.stop()


def restart(server: OwnServer, mode: str, down_seconds: float) -> tuple[float, float, float, float]:
    """Stops the server (`pg_ctl -m fast` or `immediate`), leaves it down a while, starts it again.
    Returns (stop asked, server down, start asked, server up again) as epoch seconds: the server
    takes connections somewhere between the last two (`pg_ctl -w` polls, and returns later still on
    a busy machine)."""
    asked = time.time()
    server.pg_ctl("-w", "-m", mode, "stop")
    down = time.time()
    time.sleep(down_seconds)
    starting = time.time()
    server.pg_ctl("-w", "-o", '-h ""', "-o", f"-k {server.socket_dir}", "-l", str(server.server.log), "start")
    return asked, down, starting, time.time()


def answered_while_down(answers: list[Answer], down: float, starting: float) -> list[Answer]:
    """Requests sent and answered while the server was surely down: before its start was asked (a
    request answered later may have found it up before `pg_ctl -w` said so)."""
    return [a for a in answers if a.sent >= down and a.sent + a.seconds < starting]


def test_postgresql_restarted_fast_and_immediate_during_a_batch_of_500(
    restart_server: OwnServer, tmp_path: Path
) -> None:
    """Two restarts under a batch of 500 (each down 1.5 s): nothing exits, no one intervenes,
    every run finishes once; while the server is down the API answers 503 problem details and
    nothing else, and what it accepted before and after runs to the end."""
    began = time.monotonic()
    dsn = restart_server.dsn
    count = 500
    stack = start_stack(dsn, tmp_path, workers=2)
    probe = Probe(dsn)
    outages: list[dict[str, Any]] = []
    try:
        publish(stack, PAIR)
        ids = start_batch(dsn, PAIR["id"], count)
        with (
            ApiPoller(stack.url, PAIR["id"], kinds=("read", "execute")) as poller,
            ApiPoller(stack.url, PAIR["id"], kinds=("ready",)) as ready,
        ):
            for mode, share in (("fast", 0.1), ("immediate", 0.45)):
                wait_terminal(probe, ids, stack, at_least=int(count * share), timeout=60)
                # The runs a worker holds: their calls fail, they resume through their leases.
                in_flight = [
                    str(r[0])
                    for r in probe.rows(
                        "SELECT id FROM dw.executions WHERE id = ANY(%s::uuid[]) AND status = 'Running'", (ids,)
                    )
                ]
                probe.close()
                asked, down, starting, up = restart(restart_server, mode, down_seconds=1.5)
                outages.append(
                    {"mode": mode, "asked": asked, "down": down, "starting": starting, "up": up, "in_flight": in_flight}
                )
            wait_terminal(probe, ids, stack, timeout=60)
        checked, accepted = verify_with_accepted(probe, stack, ids, poller)
        answers = poller.answers + ready.answers
        for outage in outages:
            while_down = answered_while_down(answers, outage["down"], outage["starting"])
            outage["while_down"] = sorted({f"{a.what} {a.status}" for a in while_down})
            outage["answers_while_down"] = len(while_down)
            outage["first_progress_s"] = first_event_after(
                probe, ids + accepted, outage["up"], ("node_succeeded", "execution_succeeded")
            )
            outage["in_flight_done_s"] = last_end(probe, outage["in_flight"]) - outage["asked"]
            # The API's first success once the server was back (its pool reconnects with a backoff).
            outage["api_back_s"] = min(
                (
                    a.sent + a.seconds - outage["up"]
                    for a in answers
                    if a.sent >= outage["up"] and a.status and a.status < 300
                ),
                default=None,
            )
        refusals = poller.refusals() + ready.refusals()
        assert checked.problems() == []
        # Every answer is a success or a 503 with problem details: no 500, no hang-up.
        assert refusals == [], refusals[:5]
        for outage in outages:
            # While the server was down, the API answered, and only 503.
            assert outage["answers_while_down"] > 0, outage
            assert all(s.endswith(" 503") for s in outage["while_down"]), (outage["while_down"], outage)
            assert outage["first_progress_s"] is not None and outage["first_progress_s"] < 15, outage
        assert accepted, "the API accepted nothing during the batch"
        stack.assert_alive()
    finally:
        stack.stop()
        probe.close()
    statuses: dict[str, int] = {}
    for a in answers:
        key = f"{a.what} {a.status}"
        statuses[key] = statuses.get(key, 0) + 1
    summarize(
        "PostgreSQL restarted, pg_ctl -m fast then -m immediate (down 1.5 s each), batch of 500",
        checked,
        recovery_s=max(o["in_flight_done_s"] for o in outages),
        first_progress_s=max(o["first_progress_s"] for o in outages),
        test_s=time.monotonic() - began,
        recovery_note=(
            f"first checkpoint {max(o['first_progress_s'] for o in outages):.1f} s after the server is back, API"
            f" {max(o['api_back_s'] or 0 for o in outages):.1f} s; runs in flight ended"
            f" {max(o['in_flight_done_s'] for o in outages):.1f} s after the stop (behind the batch)"
        ),
        accepted_by_api=len(accepted),
        api_answers=statuses,
        outages=[
            {
                "mode": o["mode"],
                "stop_s": round(o["down"] - o["asked"], 2),
                "down_s": round(o["up"] - o["down"], 2),
                "in_flight": len(o["in_flight"]),
                "answers_while_down": o["answers_while_down"],
                "while_down": o["while_down"],
                "first_progress_after_up_s": round(o["first_progress_s"], 2),
                "in_flight_done_s": round(o["in_flight_done_s"], 2),
                "api_back_s": None if o["api_back_s"] is None else round(o["api_back_s"], 2),
            }
            for o in outages
        ],
    )


# -- PostgreSQL frozen -----------------------------------------------------------------------------------


def freeze_server(server: OwnServer) -> list[int]:
    """SIGSTOPs the postmaster, then its children (backends, checkpointer, walwriter, ...) until no new
    one is found (one forked before the postmaster stopped may appear late); returns their pids, the
    postmaster first. A child that exits meanwhile is passed over."""
    postmaster = int((Path(server.server.pgdata) / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    while True:
        found = [pid for pid in children_of(postmaster) if pid not in stopped]
        if not found:
            return stopped
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)


def children_of(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def thaw(pids: list[int]) -> None:
    """SIGCONTs every pid (children first), passing over those gone."""
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


FREEZE_SECONDS = 12.0
# PAIR under its own id: the module's server is shared with the restart test, which publishes PAIR.
FROZEN_PAIR = workflow("faults-frozen", echo("fast", "slow"), echo("slow", delay_ms=100), **NO_RETRIES)


def test_postgresql_frozen_then_thawed_during_a_batch(restart_server: OwnServer, tmp_path: Path) -> None:
    """Every PostgreSQL process stopped (SIGSTOP: a frozen VM or container; to its clients a server that
    answers nothing while TCP, or here the Unix socket, stays open) for 12 s under a batch, then
    continued. The workers give up their calls past DW_WORKER_ANSWER_SECONDS (2 s here), the API its
    requests past DW_STATEMENT_TIMEOUT_SECONDS and its grace (2.5 s here) with 503s; nothing exits, and
    once the server runs again every run ends once (before the answer bounds, they all waited on the
    frozen server, and a stopped backend's row locks are held either way until it runs)."""
    began = time.monotonic()
    dsn = restart_server.dsn
    count = 300
    stack = start_stack(dsn, tmp_path, workers=2, DW_WORKER_ANSWER_SECONDS="2", DW_STATEMENT_TIMEOUT_SECONDS="0.5")
    probe = Probe(dsn)
    frozen: list[int] = []
    try:
        publish(stack, FROZEN_PAIR)
        ids = start_batch(dsn, FROZEN_PAIR["id"], count)
        with ApiPoller(stack.url, FROZEN_PAIR["id"], kinds=("read", "execute")) as poller:
            wait_terminal(probe, ids, stack, at_least=int(count * 0.15), timeout=60)
            probe.close()
            at = time.time()
            frozen = freeze_server(restart_server)
            time.sleep(FREEZE_SECONDS)
            thawed = time.time()
            thaw(frozen)
            frozen = []
            wait_terminal(probe, ids, stack, timeout=90)
        checked, accepted = verify_with_accepted(probe, stack, ids, poller)
        first = first_event_after(probe, ids + accepted, thawed, ("node_succeeded", "execution_succeeded"))
        done = last_end(probe, ids + accepted) - thawed
        # The requests sent while the server was frozen, early enough to be answered before the thaw.
        while_frozen = [a for a in poller.answers if at + 0.5 <= a.sent <= thawed - 4]
        severed = sum(
            (tmp_path / f"worker{n}.log").read_text().count("gave up waiting for the database's answer")
            for n in range(len(stack.workers))
        )
        assert checked.problems() == []
        # Every answer a success or a 503 with problem details; while frozen, 503s within the bound.
        assert poller.refusals() == [], poller.refusals()[:5]
        # Each answered 503 within the bound (2.5 s) and the check's period: none waited for the thaw.
        assert len(while_frozen) >= 2, while_frozen
        assert all(a.status == 503 and a.seconds < 4 for a in while_frozen), while_frozen
        assert severed >= 1
        stack.assert_alive()
    finally:
        try:
            thaw(frozen)
        finally:
            stack.stop()
            probe.close()
    summarize(
        f"PostgreSQL frozen (SIGSTOP of every server process) {FREEZE_SECONDS:g} s, batch of {count}",
        checked,
        recovery_s=done,
        first_progress_s=first,
        test_s=time.monotonic() - began,
        recovery_note=(
            f"the workers gave {severed} calls up (bound 2 s), the API answered {len(while_frozen)} requests with 503"
            f" while it was frozen; first checkpoint {first or 0:.1f} s after the thaw, all runs ended {done:.1f} s"
            " after it"
        ),
        accepted_by_api=len(accepted),
        calls_given_up=severed,
        answers_while_frozen=len(while_frozen),
        slowest_answer_while_frozen_s=round(max(a.seconds for a in while_frozen), 2),
    )


# -- Every backend terminated, again and again ---------------------------------------------------------


def terminate_all(dsn: str) -> int:
    """pg_terminate_backend of every API and worker connection (application_name dw-…) of the
    test's database; returns how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE 'dw-%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_pg_terminate_backend_of_every_connection_every_300_ms(dsn: str, tmp_path: Path) -> None:
    """Every backend of the API and of both workers terminated every 300 ms for 3 s, under a batch:
    calls in flight fail, their runs resume through their leases, pools reconnect; nothing exits."""
    began = time.monotonic()
    count = 120
    stack = start_stack(dsn, tmp_path, workers=2)
    probe = Probe(dsn)
    kills: list[tuple[float, int]] = []
    try:
        publish(stack, MIXED)
        ids = start_batch(dsn, MIXED["id"], count)
        with ApiPoller(stack.url, MIXED["id"]) as poller:
            wait_terminal(probe, ids, stack, at_least=count // 10)
            first = time.time()
            while time.time() - first < 3.0:
                kills.append((time.time(), terminate_all(dsn)))
                time.sleep(0.3)
            last = time.time()
            wait_terminal(probe, ids, stack, timeout=60)
        checked, accepted = verify_with_accepted(probe, stack, ids, poller)
        progress = first_event_after(probe, ids + accepted, last, ("node_succeeded", "execution_succeeded"))
        done = last_end(probe, ids + accepted) - last
        refusals = poller.refusals()
        statuses = poller.seen()
        assert checked.problems() == []
        assert refusals == [], refusals[:5]
        assert sum(n for _, n in kills) >= 3 * len(kills), kills  # the API's and each worker's, every time
        stack.assert_alive()
    finally:
        stack.stop()
        probe.close()
    summarize(
        f"pg_terminate_backend of every API and worker connection, every 300 ms for 3 s ({len(kills)} rounds)",
        checked,
        recovery_s=done,
        first_progress_s=progress,
        test_s=time.monotonic() - began,
        recovery_note=f"first checkpoint {progress or 0:.1f} s after the last kill, all runs ended {done:.1f} s after",
        backends_terminated=sum(n for _, n in kills),
        accepted_by_api=len(accepted),
        api_answers=statuses,
    )


# -- Storage errors inside the procedures ----------------------------------------------------------------

# A test-only switch, installed in the test's own database (nothing of it ships): a BEFORE INSERT
# trigger on dw.execution_events, which every checkpointing procedure writes at its end, raises
# when the statement the client sent (current_query()) names an armed procedure, with the armed
# SQLSTATE and probability, at most max_faults times (counted by a sequence: a raise rolls the
# transaction back, a sequence's nextval is not). Raising there rolls back everything the
# procedure wrote before: the attempt row, the node's state, the edge decisions.
INJECTION = """
CREATE SCHEMA dw_faults;
CREATE TABLE dw_faults.injections (
    procedure   text PRIMARY KEY,
    sqlstate    text NOT NULL,
    probability double precision NOT NULL,
    max_faults  bigint NOT NULL,
    counter     regclass NOT NULL
);
CREATE FUNCTION dw_faults.inject() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT * FROM dw_faults.injections i WHERE strpos(current_query(), i.procedure) > 0 LOOP
        IF random() < v.probability THEN
            IF nextval(v.counter) <= v.max_faults THEN
                RAISE EXCEPTION 'injected storage error in % (test only)', v.procedure USING ERRCODE = v.sqlstate;
            END IF;
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;
CREATE TRIGGER dw_faults_inject BEFORE INSERT ON dw.execution_events
    FOR EACH ROW EXECUTE FUNCTION dw_faults.inject();
"""


class Injector:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(INJECTION)

    def arm(self, procedure: str, sqlstate: str, probability: float, max_faults: int) -> None:
        name = "dw_faults.n_" + re.sub(r"\W", "_", procedure)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SEQUENCE IF EXISTS {name}")
            conn.execute(f"CREATE SEQUENCE {name}")
            conn.execute(
                "INSERT INTO dw_faults.injections VALUES (%s, %s, %s, %s, %s::regclass)"
                " ON CONFLICT (procedure) DO UPDATE SET sqlstate = excluded.sqlstate,"
                " probability = excluded.probability, max_faults = excluded.max_faults, counter = excluded.counter",
                (procedure, sqlstate, probability, max_faults, name),
            )

    def disarm(self) -> dict[str, int]:
        """Stops every injection; returns how many faults each one raised."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            fired = {}
            for procedure, max_faults, counter in conn.execute(
                "SELECT procedure, max_faults, counter::text FROM dw_faults.injections"
            ).fetchall():
                row = conn.execute(f"SELECT last_value, is_called FROM {counter}").fetchone()
                fired[procedure] = min(int(row[0]), int(max_faults)) if row and row[1] else 0
            conn.execute("DELETE FROM dw_faults.injections")
        return fired


# The checkpointing procedures of a run, each with a storage error PostgreSQL raises for real. The
# lease is taken by the worker's fetch (dw.fetch_run_jobs_v2: a run's first lease set-based, others
# through dw.try_acquire_execution_v6): a fetch that fails rolls back, every job of its batch with it,
# and the worker fetches one job alone, its task then acquiring with dw.try_acquire_execution_v6
# itself, which fails too here (every time, up to 3 faults) so that the task's own retry of a refused
# acquire is exercised.
TRANSIENT = {
    "fetch_run_job": "40P01",  # deadlock_detected
    "try_acquire_execution": "40P01",
    "start_node_attempt": "53100",  # disk_full
    "record_attempt": "58030",  # io_error
    "complete_execution": "40001",  # serialization_failure
}
ONE = workflow("faults-one", echo("only"))
# MIXED with every checkpointing procedure in play: acquire and records start most nodes and end
# most runs in their own transactions (issue 17), so here one parallel slot makes a branch start on
# its own once the other ends, and outputs make the run end on its own after rendering them.
CHECKPOINTED = {
    **MIXED,
    "id": "faults-checkpointed",
    "orchestration": {**MIXED["orchestration"], "maxParallelActions": 1},
    "outputs": {"joined": "{{ nodes.join.echo }}"},
}


def worker_log_count(stack: Any, text: str) -> int:
    return sum(p.read_text(errors="replace").count(text) for p in stack.logs.glob("worker*.log"))


def test_storage_errors_raised_inside_the_checkpointing_procedures(dsn: str, tmp_path: Path) -> None:
    """A failed checkpoint transaction leaves nothing half-written and is tried again:
    A. transient storage errors (deadlock, disk full, I/O error, serialization failure) at random
       in the four procedures that checkpoint a run;
    B. record_attempt failing every time for 2 s, longer than the in-process retries last;
    C. a procedure refusing with a plain error (an engine bug): the run fails with the reason, a
       dead letter, and a redrive finishes it."""
    began = time.monotonic()
    stack = start_stack(dsn, tmp_path, workers=2)
    probe = Probe(dsn)
    injector = Injector(dsn)
    try:
        publish(stack, MIXED, ONE, CHECKPOINTED)
        # A: every procedure fails now and then.
        for procedure, sqlstate in TRANSIENT.items():
            if procedure in ("try_acquire_execution", "start_node_attempt", "complete_execution"):
                # Called only now and then in a batch (a task's acquire after a refused fetch; a node
                # that no acquire or record started, about once a run; a run's end that its last
                # record did not fold in): every call fails, up to 3 faults, so that each run of this
                # test has each fail. At random (0.08 a call), start_node_attempt once went a whole
                # batch without a fault (clean CI at 154d921), and complete_execution did at 68f60c0.
                injector.arm(procedure, sqlstate, probability=1.0, max_faults=3)
            elif procedure == "fetch_run_job":
                # Often enough that some fetch falls back to the task's acquire in every run.
                injector.arm(procedure, sqlstate, probability=0.15, max_faults=12)
            else:
                injector.arm(procedure, sqlstate, probability=0.08, max_faults=12)
        batch_a = start_batch(dsn, CHECKPOINTED["id"], 60)
        wait_terminal(probe, batch_a, stack, timeout=60)
        fired_a = injector.disarm()
        retried_a = worker_log_count(stack, "retrying a statement the server refused")
        # Jobs whose statement was refused past its in-process retries (four faults in a row on one
        # call: about 0.08**3 per fault, so now and then in a run of this test): the job fails and
        # the run resumes through its lease, as in B.
        gave_up_a = worker_log_count(stack, "ended with status: Error")
        checked_a = verify(probe, all_succeed(batch_a))

        # B: every record_attempt fails for 2 s, longer than a call's retries last (1.05 s).
        injector.arm("record_attempt", "58030", probability=1.0, max_faults=100_000)
        batch_b = start_batch(dsn, MIXED["id"], 24)
        time.sleep(2.0)
        fired_b = injector.disarm()
        off_b = time.time()
        wait_terminal(probe, batch_b, stack, timeout=60)
        checked_b = verify(probe, all_succeed(batch_b))
        # The runs that gave up in process: from the end of the fault to their being taken again,
        # and to their end.
        recovered_b = [
            str(r[0])
            for r in probe.rows(
                "SELECT id FROM dw.executions WHERE id = ANY(%s::uuid[]) AND recovery_count > 0", (batch_b,)
            )
        ]
        resumed_b = first_event_after(probe, recovered_b, off_b, ("execution_reacquired",))
        done_b = last_end(probe, recovered_b) - off_b if recovered_b else None

        # C: one record_attempt refused with a plain error (P0001: what a bug in a procedure raises).
        injector.arm("record_attempt", "P0001", probability=1.0, max_faults=1)
        [broken] = start_batch(dsn, ONE["id"], 1)
        wait_terminal(probe, [broken], stack)
        fired_c = injector.disarm()
        failed = verify(probe, {broken: "Failed"})
        error = probe.value("SELECT error FROM dw.executions WHERE id = %s", (broken,))
        letters = probe.rows(
            "SELECT id, kind FROM dw.dead_letters WHERE execution_id = %s AND redriven_at IS NULL", (broken,)
        )
        with stack.client() as client:
            redriven = client.post(f"/api/v1/dead-letters/{letters[0][0]}/redrive")
        wait_terminal(probe, [broken], stack)
        after_redrive = verify(probe, {broken: "Succeeded"})
    finally:
        stack.stop()
        probe.close()

    assert sum(fired_a.values()) > 0 and all(fired_a.values()), fired_a
    assert checked_a.problems() == []
    # Transient errors are retried where they happen: no run waited for its lease to expire, but
    # one whose job gave up past its retries (above).
    assert checked_a.recoveries <= gave_up_a and checked_a.interrupted_attempts <= gave_up_a, (checked_a, gave_up_a)
    assert fired_b["record_attempt"] >= 4
    assert checked_b.problems() == []
    # Longer than the in-process retries: those runs resumed through their leases (and their
    # interrupted attempts ran again), consistently.
    assert checked_b.recoveries > 0
    assert fired_c == {"record_attempt": 1}
    assert failed.problems() == [], failed
    assert error["code"] == "engine_error", error
    assert [kind for _, kind in letters] == ["node_failed"]
    assert redriven.status_code == 200, redriven.text
    assert after_redrive.problems() == []
    summarize(
        "storage errors at random in the 5 checkpointing procedures (deadlock, disk full, I/O error, serialization"
        " failure)",
        checked_a,
        recovery_s=None,
        first_progress_s=None,
        test_s=time.monotonic() - began,
        recovery_note=(
            f"in process: {sum(fired_a.values())} refusals, each retried after 0.05-0.75 s; "
            + (
                f"{checked_a.recoveries} run(s) recovered, whose statement was refused past its retries"
                if checked_a.recoveries
                else "no run recovered"
            )
        ),
        faults_raised=fired_a,
        retried_in_process=retried_a,
    )
    summarize(
        "record_attempt failing every time for 2 s (longer than the in-process retries)",
        checked_b,
        recovery_s=done_b,
        first_progress_s=resumed_b,
        test_s=0.0,
        recovery_note=(
            f"{len(recovered_b)} runs gave up in process and resumed through their leases: the first"
            f" {resumed_b or 0:.1f} s after the fault ended, all ended {done_b or 0:.1f} s after it"
        ),
        faults_raised=fired_b,
        runs_recovered=len(recovered_b),
    )
    summarize(
        "a procedure refusing with a plain error (P0001, a bug in it)",
        after_redrive,
        recovery_s=None,
        first_progress_s=None,
        test_s=0.0,
        recovery_note="the run fails (engine_error, a node_failed dead letter); its redrive Succeeds",
        error=error["code"],
    )


async def test_a_statement_the_server_refused_transiently_runs_again_and_records_once(
    db: Database, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data layer's retry on its own (dataworkflows.db.Database._statement), in process."""
    from dataworkflows import db as db_module

    monkeypatch.setattr(db_module, "STATEMENT_RETRY_DELAYS", (0.0, 0.0, 0.0))
    injector = Injector(dsn)
    await publish_in_process(db, workflow("faults-two", echo("a", "b"), echo("b")))
    execution_id = await start(db, "faults-two")
    token = int((await db.runs.acquire(execution_id, owner="w", lease_seconds=30)).lease_token or 0)
    await db.runs.start_node_attempt(execution_id, token, "a")

    async def rows() -> list[tuple[Any, ...]]:
        async with db.connection() as conn:
            cur = await conn.execute(
                "SELECT node_id, attempt, status FROM dw.action_executions WHERE execution_id = %s ORDER BY 1, 2",
                (execution_id,),
            )
            return await cur.fetchall()

    # Refused twice (a deadlock), then accepted: one attempt row, and b is Ready.
    injector.arm("record_attempt", "40P01", probability=1.0, max_faults=2)
    changes = await record(db, execution_id, token, "a", fired=[True])
    assert injector.disarm() == {"record_attempt": 2}
    assert [(c.node_id, c.status) for c in changes] == [("b", "Ready")]
    assert await rows() == [("a", 1, "Succeeded")]

    # Refused more often than it is tried (1 + 3 times): DatabaseUnavailable, and nothing written.
    await db.runs.start_node_attempt(execution_id, token, "b")
    injector.arm("record_attempt", "58030", probability=1.0, max_faults=100)
    with pytest.raises(DatabaseUnavailable):
        await record(db, execution_id, token, "b")
    assert injector.disarm() == {"record_attempt": 4}
    assert await rows() == [("a", 1, "Succeeded")]

    # Not tried again: a refusal that would come again (P0001, what a procedure's bug raises), and
    # a server shutting down (57P01: the connection is going, the caller's lease path decides).
    for sqlstate, raised in (("P0001", psycopg.errors.RaiseException), ("57P01", DatabaseUnavailable)):
        injector.arm("record_attempt", sqlstate, probability=1.0, max_faults=100)
        with pytest.raises(raised):
            await record(db, execution_id, token, "b")
        assert injector.disarm() == {"record_attempt": 1}, sqlstate
    await record(db, execution_id, token, "b")
    assert await rows() == [("a", 1, "Succeeded"), ("b", 1, "Succeeded")]


async def test_a_cancellation_the_wait_for_a_connection_swallowed_still_stops_the_caller(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pg_terminate_backend test found (see dataworkflows.db._stop_if_cancelled): Python
    3.11's asyncio.wait_for, with which psycopg_pool waits for a connection, hands over a connection
    that arrives together with a cancellation and drops the cancellation. Simulated here: the
    task is cancelled as it gets its connection, and the cancellation is swallowed."""
    from dataworkflows.db import CheckedPool

    real_getconn = CheckedPool.getconn

    async def getconn_swallowing_a_cancel(self: CheckedPool, timeout: float | None = None) -> Any:
        conn = await real_getconn(self, timeout)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # what 3.11's wait_for does when the result is already there
        return conn

    monkeypatch.setattr(CheckedPool, "getconn", getconn_swallowing_a_cancel)
    renewals = 0

    async def heartbeat() -> None:
        # The shape of a run's lease heartbeat: a failed renewal is a blip, tried again later.
        nonlocal renewals
        while True:
            with contextlib.suppress(Exception):
                await db.fetch_one("get_execution", id=uuid.uuid4())
                renewals += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(heartbeat())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert renewals == 0


async def test_the_checks_see_what_they_look_for(db: Database, dsn: str) -> None:
    """verify() itself: a state that breaks each guarantee, written behind the procedures' back."""
    await publish_in_process(db, workflow("faults-two", echo("a", "b"), echo("b")))
    execution_id = str(await start(db, "faults-two"))
    token = int((await db.runs.acquire(uuid.UUID(execution_id), owner="w", lease_seconds=30)).lease_token or 0)
    await db.runs.start_node_attempt(uuid.UUID(execution_id), token, "a")
    await record(db, uuid.UUID(execution_id), token, "a", fired=[True])
    probe = Probe(dsn)
    try:
        assert verify(probe, {execution_id: "Succeeded"}).problems() == [
            f"1 runs not terminal: ['{execution_id}']",
            "jobs_in_flight: 1",
        ]
        # a ran again after it Succeeded, and Succeeded again; an attempt row no start counted.
        probe.rows(
            "INSERT INTO dw.action_executions (tenant_id, execution_id, node_id, action_type, attempt, status,"
            " start_time, end_time) VALUES ('default', %s, 'a', 'core.echo', 2, 'Succeeded', now(), now())",
            (execution_id,),
        )
        missing = str(uuid.uuid4())
        checked = verify(probe, {execution_id: "Succeeded", missing: "Succeeded"})
    finally:
        probe.close()
    assert (checked.missing, checked.succeeded_twice, checked.ran_after_success, checked.attempts_lost) == (
        [missing],
        1,
        1,
        1,
    )
    assert checked.duplicated == 2 and checked.lost == 1
