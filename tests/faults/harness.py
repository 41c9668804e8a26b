"""The fault-injection suite's harness (issue 16).

Real `dataworkflows api` and `dataworkflows worker` processes (tests.acceptance's NamedStack: each
process connects as application_name dw-<name>, so a test can terminate exactly its backends)
against a fresh database, workflows with slow and fast nodes, batches of runs, and what every test
checks afterwards, from the database only (`verify`):

- every execution reached a terminal state (else it is *stuck*), the one it deserved (else it is
  *lost*: an accepted run missing from the table, or one that a fault made fail);
- no node has more than one Succeeded attempt row, no attempt row follows a Succeeded one (a
  Succeeded node never ran again), at most one row per (execution, node, item, attempt), at most one
  node_succeeded event per node; together: *duplicated Succeeded attempts*;
- no attempt was lost: every attempt a node started (node_states.attempts) has its row;
- nothing is left Pending, Ready, Running or Waiting: node states of ended runs, the runs
  themselves, their Procrastinate jobs.

Batches are started straight in the database with dw.start_execution_v1 (the procedure the API's
execute calls), 500 in one transaction in about half a second, where 500 POSTs cost 2-3 s of a
2-core machine the suite has little of; the API's own path is exercised by the tests that poll it.

Times are wall-clock epoch seconds, read on one machine from the test (fault injected) and from
the database (events' `at`, runs' `ended_at`): recovery is measured from the rows, not by polling.

Each test ends with `summarize`: a one-line JSON summary, printed and appended to the file named by
$DW_FAULT_RESULTS (JSON lines) when set; bench/faults_table.py renders the README table from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.acceptance.conftest import free_port
from tests.acceptance.test_connection_faults import FAST_RECOVERY, NamedStack

TERMINAL = ("Succeeded", "Failed", "Cancelled", "TimedOut")
IN_FLIGHT_NODE = ("Pending", "Ready", "Running", "Waiting")

FAULT_ENV = {
    # Lease 2 s, recovery every 0.5 s, a worker silent 3 s is dead, 2 s of grace on stop, JSON logs.
    **FAST_RECOVERY,
    # The pollers below send hundreds of requests as one caller.
    "DW_API_RATE_PER_MINUTE": "0",
    # No schedules here: one loop less per worker on two cores.
    "DW_SCHEDULER_INTERVAL_SECONDS": "0",
    # While the database is down, answer 503 after 0.5 s of waiting for a connection (default 5 s).
    "DW_DB_TIMEOUT_SECONDS": "0.5",
    # Warnings and errors only (lost leases, recoveries, retries of the database): a line per
    # attempt costs the workers CPU that two cores do not have to spare.
    "DW_LOG_LEVEL": "warning",
}

# Every summary of this session, for the terminal summary (tests/faults/conftest.py).
SUMMARIES: list[dict[str, Any]] = []


# -- Workflows ---------------------------------------------------------------------------------------


def echo(node_id: str, *targets: str, delay_ms: int = 0, **params: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "actionType": "core.echo",
        "parameters": {"message": node_id, **({"delayMs": delay_ms} if delay_ms else {}), **params},
    }
    if targets:
        node["edges"] = [{"targetNode": t, "when": "success"} for t in targets]
    return node


def workflow(workflow_id: str, *nodes: dict[str, Any], **orchestration: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": workflow_id,
        "displayName": workflow_id,
        "startNode": nodes[0]["id"],
        "nodes": list(nodes),
    }
    if orchestration:
        raw["orchestration"] = orchestration
    return raw


# No retries: every interruption below would fail its node if it still used up the retry budget
# (issue 16, item 2: it does not).
NO_RETRIES = {"retryPolicy": {"maxAttempts": 1}}
SLOW_MS = 300
# A fan-out and a join: a fast node, a slow one (300 ms) beside a fast one, and a join. A run spans
# four checkpoints and about 0.35 s, so a fault lands in the middle of many.
MIXED = workflow(
    "faults-mixed",
    echo("start", "slow", "fast"),
    echo("slow", "join", delay_ms=SLOW_MS),
    echo("fast", "join"),
    echo("join"),
    **NO_RETRIES,
)
# Lighter, for the large batches: a fast node, then a slow one (100 ms).
PAIR = workflow("faults-pair", echo("fast", "slow"), echo("slow", delay_ms=100), **NO_RETRIES)


# -- Processes ---------------------------------------------------------------------------------------


class FaultStack(NamedStack):
    """An API and N workers; workers this test stopped on purpose are not expected to be alive."""

    stopped: set[int]

    def start_workers(self, count: int, concurrency: int = 20) -> list[subprocess.Popen[bytes]]:
        return [self.start_worker(concurrency=concurrency) for _ in range(count)]

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        self.stopped.add(worker.pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    def assert_alive(self) -> None:
        for proc in self.processes():
            if proc.pid not in self.stopped:
                assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}\n{self.read_logs()}"


def start_stack(dsn: str, logs: Path, *, workers: int = 2, concurrency: int = 20, **env: str) -> FaultStack:
    """Starts the API (ready when this returns) and `workers` workers (registered with Procrastinate
    when this returns, so that a batch's timing does not include their start)."""
    stack = FaultStack(
        dsn=dsn, port=free_port(), logs=logs, env={**os.environ, "DATABASE_URL": dsn, **FAULT_ENV, **env}
    )
    stack.stopped = set()
    try:
        # The workers' imports overlap the API's start.
        stack.start_workers(workers, concurrency)
        stack.start_api()
        wait_for_fetchers(dsn, stack, workers)
    except BaseException:
        stack.stop()
        raise
    return stack


def wait_for_fetchers(dsn: str, stack: FaultStack, workers: int, timeout: float = 30) -> None:
    """Until the live workers' fetch loops (DW_WORKER_FETCHERS, 2 each) are registered."""
    deadline = time.monotonic() + timeout
    while True:
        stack.assert_alive()
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - interval '10 seconds'"
            ).fetchone()
        if row is not None and row[0] >= 2 * workers:
            return
        assert time.monotonic() < deadline, "workers did not register in time\n" + stack.read_logs()
        time.sleep(0.1)


@dataclass
class Started:
    """A stack whose workflows are published."""

    stack: FaultStack
    began: float = field(default_factory=time.monotonic)


def publish(stack: FaultStack, *definitions: dict[str, Any]) -> None:
    with stack.client() as client:
        for raw in definitions:
            response = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
            assert response.status_code == 201, response.text


# -- The database, as the test sees it ------------------------------------------------------------------


class Probe:
    """One autocommit connection of the test's own (the login: a superuser, so it sees every tenant),
    opened again when the server went away."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        for tries in range(2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                cur = self._conn.execute(query, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self.close()
                if tries:
                    raise
        raise AssertionError("unreachable")

    def value(self, query: str, params: Any = None) -> Any:
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def try_value(self, query: str, params: Any = None) -> Any:
        """None while the database cannot be reached."""
        try:
            return self.value(query, params)
        except psycopg.OperationalError:
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def now(self) -> float:
        return float(self.value("SELECT extract(epoch FROM clock_timestamp())"))


def start_batch(dsn: str, workflow_id: str, count: int, trigger: dict[str, Any] | None = None) -> list[str]:
    """`count` runs of the workflow, started in one transaction through dw.start_execution_v1 (what
    the API's execute calls); returns their ids in start order."""
    prefix = f"faults-{uuid.uuid4().hex[:8]}-"
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("SELECT set_config('dw.tenant_id', 'default', true)")
        rows = conn.execute(
            "SELECT s.execution_id FROM generate_series(1, %(n)s) g,"
            " dw.start_execution_v1(%(wf)s, %(prefix)s || g, %(trigger)s, 'faults', 'user', NULL, 'executions') s"
            " ORDER BY g",
            {"n": count, "wf": workflow_id, "prefix": prefix, "trigger": psycopg.types.json.Jsonb(trigger or {})},
        ).fetchall()
    return [str(r[0]) for r in rows]


def terminal_count(probe: Probe, ids: list[str]) -> int | None:
    return probe.try_value(
        "SELECT count(*) FROM dw.executions WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)", (ids, list(TERMINAL))
    )


def wait_terminal(
    probe: Probe, ids: list[str], stack: FaultStack, at_least: int | None = None, timeout: float = 40
) -> float:
    """Until at least `at_least` (default: all) of the runs are terminal; returns the time it took.
    Waiting for all, it also waits (10 s at most) for their Procrastinate jobs to be done: a worker
    killed between ending a run and finishing its job leaves the job 'doing', which recovery
    removes once the dead worker's heartbeat is DW_STALLED_WORKER_SECONDS (3 s) old. verify()
    reports a job still there after that."""
    wanted = len(ids) if at_least is None else at_least
    began = time.monotonic()
    settle_until: float | None = None
    while True:
        stack.assert_alive()
        done = terminal_count(probe, ids)
        if done is not None and done >= wanted:
            if at_least is not None or not jobs_in_flight(probe, ids):
                return time.monotonic() - began
            settle_until = settle_until or time.monotonic() + 10
            if time.monotonic() > settle_until:
                return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(
                f"{done} of {len(ids)} runs terminal after {timeout} s (wanted {wanted})\n"
                f"{unfinished(probe, ids)}\n{stack.read_logs()}"
            )
        # Times are read from the rows afterwards: polling more often would only cost CPU.
        time.sleep(0.2)


def jobs_in_flight(probe: Probe, ids: list[str]) -> int:
    """The runs' Procrastinate jobs still to do or being done (0 while the database is away)."""
    return int(
        probe.try_value(
            "SELECT count(*) FROM procrastinate_jobs WHERE args ->> 'execution_id' = ANY(%s)"
            " AND status IN ('todo', 'doing')",
            (ids,),
        )
        or 0
    )


def unfinished(probe: Probe, ids: list[str]) -> str:
    """What an operator would look at for runs that did not finish (first 10)."""
    try:
        rows = probe.rows(
            "SELECT e.id, e.status, e.lease_owner, e.lease_expires_at, e.recovery_count,"
            " (SELECT json_agg(json_build_array(j.id, j.status, j.worker_id)) FROM procrastinate_jobs j"
            "   WHERE j.args ->> 'execution_id' = e.id::text),"
            " (SELECT json_agg(ev.type ORDER BY ev.id) FROM dw.execution_events ev WHERE ev.execution_id = e.id)"
            " FROM dw.executions e WHERE e.id = ANY(%s::uuid[]) AND e.status <> ALL(%s) LIMIT 10",
            (ids, list(TERMINAL)),
        )
    except psycopg.OperationalError as exc:
        return f"(database unreachable: {exc})"
    return "\n".join(map(str, rows))


def held_by(probe: Probe, worker: subprocess.Popen[bytes]) -> list[str]:
    """The runs whose lease the worker holds (worker ids are host/pid/random)."""
    rows = probe.rows(
        "SELECT id FROM dw.executions WHERE status = 'Running' AND lease_owner LIKE %s", (f"%/{worker.pid}/%",)
    )
    return [str(r[0]) for r in rows]


def first_event_after(probe: Probe, ids: list[str], after: float, types: tuple[str, ...]) -> float | None:
    """Seconds from `after` to the first event of these types on these runs (None: none came)."""
    value = probe.value(
        "SELECT extract(epoch FROM min(at)) FROM dw.execution_events"
        " WHERE execution_id = ANY(%s::uuid[]) AND at > to_timestamp(%s) AND type = ANY(%s)",
        (ids, after, list(types)),
    )
    return None if value is None else float(value) - after


def last_event_after(probe: Probe, ids: list[str], after: float, type_: str) -> float | None:
    """Seconds from `after` to the last event of this type on these runs (None: none came)."""
    value = probe.value(
        "SELECT extract(epoch FROM max(at)) FROM dw.execution_events"
        " WHERE execution_id = ANY(%s::uuid[]) AND at > to_timestamp(%s) AND type = %s",
        (ids, after, type_),
    )
    return None if value is None else float(value) - after


def last_end(probe: Probe, ids: list[str]) -> float:
    """Epoch seconds when the last of the runs ended."""
    return float(
        probe.value("SELECT extract(epoch FROM max(ended_at)) FROM dw.executions WHERE id = ANY(%s::uuid[])", (ids,))
    )


# -- What every test checks ---------------------------------------------------------------------------


@dataclass
class Checked:
    """What the database says about a batch once it has ended."""

    runs: int
    statuses: dict[str, int]
    missing: list[str]
    stuck: list[str]
    # Ended otherwise than it deserved: (id, status, error code).
    wrong: list[tuple[str, str, str | None]]
    succeeded_twice: int
    ran_after_success: int
    duplicate_attempt_rows: int
    succeeded_events_twice: int
    succeeded_mismatch: int
    attempts_lost: int
    nodes_in_flight: int
    jobs_in_flight: int
    interrupted_attempts: int
    recoveries: int
    # The most recoveries of one run (DW_MAX_RECOVERIES, 5 by default, fails a run with worker_lost).
    most_recoveries: int
    open_dead_letters: int
    attempts: int
    # Interruptions (an attempt its worker cut short, migration 0023): each node counts exactly its
    # interrupted rows, they are the attempt_interrupted ones, and they use up no retry budget.
    interruptions_miscounted: int
    failed_by_interruptions: int
    retries_miscounted: int

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.wrong)

    @property
    def duplicated(self) -> int:
        return self.succeeded_twice + self.ran_after_success + self.duplicate_attempt_rows + self.succeeded_events_twice

    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} accepted runs missing: {self.missing[:5]}")
        if self.stuck:
            found.append(f"{len(self.stuck)} runs not terminal: {self.stuck[:5]}")
        if self.wrong:
            found.append(f"{len(self.wrong)} runs ended otherwise than deserved: {self.wrong[:5]}")
        for name in (
            "succeeded_twice",
            "ran_after_success",
            "duplicate_attempt_rows",
            "succeeded_events_twice",
            "succeeded_mismatch",
            "attempts_lost",
            "nodes_in_flight",
            "jobs_in_flight",
            "interruptions_miscounted",
            "failed_by_interruptions",
            "retries_miscounted",
        ):
            if getattr(self, name):
                found.append(f"{name}: {getattr(self, name)}")
        return found


_COUNTS = """
WITH ids AS (SELECT unnest(%(ids)s::uuid[]) AS id),
a AS MATERIALIZED (
    SELECT x.execution_id, x.node_id, x.item_index, x.attempt, x.status, x.interrupted, x.error ->> 'code' AS code,
           min(x.attempt) FILTER (WHERE x.status = 'Succeeded')
               OVER (PARTITION BY x.execution_id, x.node_id, x.item_index) AS first_success
      FROM dw.action_executions x JOIN ids ON ids.id = x.execution_id),
-- Per node, or forEach item: its attempt rows.
g AS (SELECT execution_id, node_id, item_index,
             count(*) FILTER (WHERE status = 'Succeeded') AS succeeded,
             count(*) FILTER (WHERE attempt > first_success) AS after_success,
             count(*) - count(DISTINCT attempt) AS duplicate_rows,
             count(DISTINCT attempt) AS attempts,
             max(attempt) AS last_attempt,
             count(*) FILTER (WHERE interrupted) AS interrupted,
             count(*) FILTER (WHERE NOT interrupted) AS counted
        FROM a GROUP BY execution_id, node_id, item_index),
n AS MATERIALIZED (
    SELECT x.*, e.status AS run_status,
           EXISTS (SELECT 1 FROM dw.dead_letters d WHERE d.execution_id = x.execution_id
                                                     AND d.redriven_at IS NOT NULL) AS redriven,
           COALESCE(g.succeeded, 0) AS rows_succeeded, COALESCE(g.attempts, 0) AS rows_attempts,
           COALESCE(g.last_attempt, 0) AS rows_last_attempt, COALESCE(g.interrupted, 0) AS rows_interrupted,
           COALESCE(g.counted, 0) AS rows_counted
      FROM dw.node_states x JOIN ids ON ids.id = x.execution_id JOIN dw.executions e ON e.id = x.execution_id
      LEFT JOIN g ON g.execution_id = x.execution_id AND g.node_id = x.node_id AND g.item_index IS NULL)
SELECT
  -- A node (or forEach item) with more than one Succeeded attempt row.
  (SELECT count(*) FROM g WHERE succeeded > 1),
  -- An attempt row after a Succeeded one: the node ran again.
  (SELECT COALESCE(sum(after_success), 0) FROM g),
  -- Two rows for one attempt (the unique constraint makes it impossible: checked all the same).
  (SELECT COALESCE(sum(duplicate_rows), 0) FROM g),
  (SELECT count(*) FROM (SELECT 1 FROM dw.execution_events ev JOIN ids ON ids.id = ev.execution_id
                          WHERE ev.type = 'node_succeeded' GROUP BY ev.execution_id, ev.node_id
                          HAVING count(*) > 1) t),
  -- A Succeeded node without exactly one Succeeded row, or a Succeeded row of a node that is not.
  (SELECT count(*) FROM n WHERE (n.status = 'Succeeded') <> (n.rows_succeeded = 1)),
  -- An attempt started (node_states.attempts) without its row: attempts 1..n, each with one row.
  (SELECT count(*) FROM n WHERE n.attempts <> n.rows_attempts OR n.rows_last_attempt <> n.attempts),
  (SELECT count(*) FROM n WHERE n.run_status = ANY(%(terminal)s) AND n.status = ANY(%(in_flight)s)),
  (SELECT count(*) FROM procrastinate_jobs j WHERE j.args ->> 'execution_id' = ANY(%(ids)s::text[])
                                               AND j.status IN ('todo', 'doing')),
  (SELECT count(*) FROM a WHERE a.interrupted),
  (SELECT COALESCE(sum(e.recovery_count), 0) FROM dw.executions e JOIN ids ON ids.id = e.id),
  (SELECT COALESCE(max(e.recovery_count), 0) FROM dw.executions e JOIN ids ON ids.id = e.id),
  (SELECT count(*) FROM dw.dead_letters d JOIN ids ON ids.id = d.execution_id
    WHERE d.redriven_at IS NULL AND d.closed_at IS NULL),
  (SELECT count(*) FROM a),
  -- A node's interruptions are its interrupted rows, which are exactly its attempt_interrupted ones.
  (SELECT count(*) FROM n WHERE n.interruptions <> n.rows_interrupted)
   + (SELECT count(*) FROM a WHERE a.interrupted <> (a.code IS NOT DISTINCT FROM 'attempt_interrupted')),
  (SELECT count(*) FROM n WHERE n.status = 'Failed'
      AND n.error ->> 'code' IN ('attempt_interrupted', 'too_many_interruptions')),
  -- Retries counted = attempts - interruptions: the budget starts past every interrupted attempt
  -- (attempt_base), and the attempts that count are the others (runs never redriven: a redrive
  -- gives a fresh budget).
  (SELECT count(*) FROM n WHERE NOT n.redriven
      AND (n.attempt_base <> n.interruptions OR n.attempts - n.interruptions <> n.rows_counted))
"""


def verify(probe: Probe, expected: dict[str, str]) -> Checked:
    """Checks a batch from the database. `expected`: run id -> the status it deserves."""
    ids = list(expected)
    rows = probe.rows("SELECT id::text, status, error ->> 'code' FROM dw.executions WHERE id = ANY(%s::uuid[])", (ids,))
    found = {r[0]: (r[1], r[2]) for r in rows}
    statuses: dict[str, int] = {}
    for status, _ in found.values():
        statuses[status] = statuses.get(status, 0) + 1
    row = probe.rows(_COUNTS, {"ids": ids, "terminal": list(TERMINAL), "in_flight": list(IN_FLIGHT_NODE)})[0]
    counts = [int(value) for value in row]  # sum() answers numeric
    return Checked(
        runs=len(ids),
        statuses=statuses,
        missing=[i for i in ids if i not in found],
        stuck=[i for i, (s, _) in found.items() if s not in TERMINAL],
        wrong=[(i, s, code) for i, (s, code) in found.items() if s in TERMINAL and s != expected[i]],
        succeeded_twice=counts[0],
        ran_after_success=counts[1],
        duplicate_attempt_rows=counts[2],
        succeeded_events_twice=counts[3],
        succeeded_mismatch=counts[4],
        attempts_lost=counts[5],
        nodes_in_flight=counts[6],
        jobs_in_flight=counts[7],
        interrupted_attempts=counts[8],
        recoveries=counts[9],
        most_recoveries=counts[10],
        open_dead_letters=counts[11],
        attempts=counts[12],
        interruptions_miscounted=counts[13],
        failed_by_interruptions=counts[14],
        retries_miscounted=counts[15],
    )


def all_succeed(ids: list[str]) -> dict[str, str]:
    return dict.fromkeys(ids, "Succeeded")


def verify_with_accepted(
    probe: Probe, stack: FaultStack, ids: list[str], poller: ApiPoller
) -> tuple[Checked, list[str]]:
    """The batch and the runs the API accepted from the poller during the fault, once those have ended
    too, checked as all deserving to succeed; and the accepted runs."""
    accepted = poller.accepted
    wait_terminal(probe, accepted, stack, timeout=30)
    return verify(probe, all_succeed(ids + accepted)), accepted


# -- The API during a fault ------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # epoch seconds
    seconds: float
    what: str
    status: int | None  # None: no HTTP answer at all
    content_type: str
    error: str = ""


class ApiPoller:
    """Asks the API, one request after another, in a thread: readiness, a read, a start (execute).
    Records every answer; the runs it started (202) are part of the batch the test checks."""

    def __init__(self, base_url: str, workflow_id: str, kinds: tuple[str, ...] = ("ready", "read", "execute")) -> None:
        self.base_url = base_url
        self.workflow_id = workflow_id
        self.kinds = kinds
        self.answers: list[Answer] = []
        self.accepted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-poller", daemon=True)

    def __enter__(self) -> ApiPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _requests(self) -> Iterator[tuple[str, str, str, Any]]:
        requests = {
            "ready": ("GET", "/health/ready", None),
            "read": ("GET", f"/api/v1/workflows/{self.workflow_id}", None),
            "execute": ("POST", f"/api/v1/workflows/{self.workflow_id}/execute", {"trigger": {}}),
        }
        while True:
            for kind in self.kinds:
                yield (kind, *requests[kind])

    def _run(self) -> None:
        requests = self._requests()
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self._stop.is_set():
                what, method, path, body = next(requests)
                sent = time.time()
                try:
                    response = client.request(method, path, json=body)
                except httpx.HTTPError as exc:
                    self.answers.append(
                        Answer(sent, time.time() - sent, what, None, "", f"{type(exc).__name__}: {exc}")
                    )
                    time.sleep(0.05)
                    continue
                answer = Answer(
                    sent, time.time() - sent, what, response.status_code, response.headers.get("content-type", "")
                )
                self.answers.append(answer)
                if what == "execute" and response.status_code == 202:
                    self.accepted.append(response.json()["executionId"])
                time.sleep(0.1)

    def seen(self, start: float | None = None, end: float | None = None) -> dict[str, int]:
        """Counts of statuses (or transport errors) of requests sent in [start, end]."""
        counts: dict[str, int] = {}
        for a in self.answers:
            if (start is None or a.sent >= start) and (end is None or a.sent <= end):
                key = str(a.status) if a.status is not None else "no-answer"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def refusals(self) -> list[Answer]:
        """Answers that are neither a success nor a problem-details 503."""
        return [
            a
            for a in self.answers
            if a.status is None
            or (a.status >= 300 and not (a.status == 503 and a.content_type.startswith("application/problem+json")))
        ]


# -- Summaries -----------------------------------------------------------------------------------------


def summarize(
    fault: str,
    checked: Checked,
    *,
    recovery_s: float | None,
    first_progress_s: float | None,
    test_s: float,
    recovery_note: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The test's one-line JSON summary: printed, kept for the terminal summary, and appended to
    $DW_FAULT_RESULTS when set. recovery_s: fault -> the runs it affected all ended;
    first_progress_s: fault -> the first of them moved again; recovery_note: what the README table
    says about recovery, in words (bench/faults_table.py)."""
    line: dict[str, Any] = {
        "fault": fault,
        "runs": checked.runs,
        "lost": checked.lost,
        "duplicated_succeeded": checked.duplicated,
        "stuck": len(checked.stuck),
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        "first_progress_s": None if first_progress_s is None else round(first_progress_s, 2),
        "recovery_note": recovery_note,
        "test_s": round(test_s, 1),
        "attempts": checked.attempts,
        "interrupted": checked.interrupted_attempts,
        "recoveries": checked.recoveries,
        "most_recoveries_of_a_run": checked.most_recoveries,
        **extra,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(line, sort_keys=False)
    print(text)
    SUMMARIES.append(line)
    target = os.environ.get("DW_FAULT_RESULTS")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(text + "\n")
    return line
