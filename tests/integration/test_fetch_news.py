"""The worker sends a fetch only when it may find a job (ResilientJobManager.fetch_job): after a fetch
that found the queue drained, the next one waits for news of a job (a notification, a job queued
again), and a fetch that found nothing while such news came looks again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from procrastinate import jobs

from dataworkflows import metrics
from dataworkflows.db import Database
from dataworkflows.workers import app as worker_app
from dataworkflows.workers.app import ResilientJobManager
from tests.conftest import publish, start
from tests.integration.test_folded_writes import job_manager
from tests.integration.test_runtime import echo, wf

QUEUES = ["executions"]


def fetches(outcome: str) -> float:
    return metrics.FETCHES.labels(outcome)._value.get()


@contextlib.asynccontextmanager
async def listening(manager: ResilientJobManager) -> AsyncIterator[asyncio.Queue[int]]:
    """The manager listening for new jobs, as a fetch loop's listener does; yields the job ids of the
    notifications that arrived (0 for a start's, which names no job). Its LISTEN is in place once a
    notification has come (started_and_heard)."""
    heard: asyncio.Queue[int] = asyncio.Queue()

    async def on_notification(*, channel: str, notification: jobs.Notification) -> None:
        if notification["type"] == "job_inserted":
            heard.put_nowait(notification["job_id"])

    listener = asyncio.create_task(manager.listen_for_jobs(on_notification=on_notification, queues=QUEUES))
    try:
        yield heard
    finally:
        # Cancelled until it ends: Procrastinate's listener waits with asyncio.wait_for, which in
        # Python 3.11 drops a cancellation that races with a notification's arrival (a CI run hung
        # here for the pytest timeout).
        while not listener.done():
            listener.cancel()
            await asyncio.wait({listener}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def started_and_heard(db: Database, heard: asyncio.Queue[int], workflow_id: str) -> Any:
    """Starts a run and waits for a notification after it (starting again while the listener's LISTEN
    is not in place yet: such a start's run is fetched all the same). The notifications heard before
    the start, late ones of earlier starts, are passed over (a start's notification names no job)."""
    for _ in range(20):
        while not heard.empty():
            heard.get_nowait()
        execution_id = await start(db, workflow_id)
        try:
            await asyncio.wait_for(heard.get(), 1.0)
            return execution_id
        except TimeoutError:
            continue
    raise AssertionError("no notification arrived")


async def test_a_fetch_after_the_queue_was_found_drained_waits_for_news_of_a_job(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 60.0)  # however slow the host
    await publish(db, wf("news", echo("a")))
    async with job_manager(db, batch=10, slots=10) as (manager, worker_id), listening(manager) as heard:
        await started_and_heard(db, heard, "news")
        taken = []
        while (job := await manager.fetch_job(QUEUES, worker_id)) is not None:
            taken.append(job)
        assert taken  # every run started so far (the listener's probes among them)

        # Drained, and nothing heard since: the next fetch is not sent.
        skipped = fetches("skipped")
        assert await manager.fetch_job(QUEUES, worker_id) is None
        assert fetches("skipped") == skipped + 1

        # A job queued again with no notification (another worker giving one back): unseen until
        # the drained fetch is NOTHING_NEW_SECONDS old, as a loop's poll comes later than that.
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL WHERE id = %s", (taken[0].id,)
            )
        assert await manager.fetch_job(QUEUES, worker_id) is None
        monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 0.0)
        again = await manager.fetch_job(QUEUES, worker_id)
        assert again is not None and again.id == taken[0].id
        monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 60.0)
        assert await manager.fetch_job(QUEUES, worker_id) is None

        # News of a job: the next fetch is sent, and takes it.
        execution_id = await started_and_heard(db, heard, "news")
        job = await manager.fetch_job(QUEUES, worker_id)
        assert job is not None and job.task_kwargs["execution_id"] == str(execution_id)

        # A job this process queues again itself is news too.
        await manager.retry_job(job)
        again = await manager.fetch_job(QUEUES, worker_id)
        assert again is not None and again.id == job.id


async def test_without_a_listener_every_fetch_is_sent(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 60.0)
    await publish(db, wf("deaf", echo("a")))
    async with job_manager(db, batch=10, slots=10) as (manager, worker_id):
        assert await manager.fetch_job(QUEUES, worker_id) is None
        execution_id = await start(db, "deaf")
        job = await manager.fetch_job(QUEUES, worker_id)
        assert job is not None and job.task_kwargs["execution_id"] == str(execution_id)


async def test_a_fetch_that_found_nothing_while_a_job_was_announced_looks_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job committed after the fetch's snapshot, its notification came before the fetch's answer:
    Procrastinate's loop forgets the notification once the fetch returns, so the fetch looks again."""
    monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 0.0)  # the first fetch is sent
    await publish(db, wf("late", echo("a")))
    async with job_manager(db, batch=10, slots=10) as (manager, worker_id), listening(manager) as heard:
        await started_and_heard(db, heard, "late")
        while await manager.fetch_job(QUEUES, worker_id) is not None:
            pass
        original = manager._fetch
        late: list[Any] = []

        async def fetch_then_a_job_arrives(queues: Any, worker: int) -> jobs.Job | None:
            found = await original(queues, worker)
            if not late:
                late.append(await started_and_heard(db, heard, "late"))
            return found

        manager._fetch = fetch_then_a_job_arrives  # type: ignore[method-assign]
        job = await manager.fetch_job(QUEUES, worker_id)
        assert job is not None and job.task_kwargs["execution_id"] == str(late[0])


async def test_loops_woken_by_one_notification_send_one_fetch(db: Database) -> None:
    """Every fetch loop hears every notification: while the queue is found drained, a loop's fetch
    waits for the one in flight that began after the news, and is not sent when that one found the
    queue drained again."""
    await publish(db, wf("woken", echo("a")))
    async with job_manager(db, batch=10, slots=10) as (manager, first), listening(manager) as heard:
        second = await manager.register_worker()
        await started_and_heard(db, heard, "woken")
        while await manager.fetch_job(QUEUES, first) is not None:
            pass
        execution_id = await started_and_heard(db, heard, "woken")
        sent, skipped = fetches("jobs") + fetches("empty"), fetches("skipped")
        answers = await asyncio.gather(manager.fetch_job(QUEUES, first), manager.fetch_job(QUEUES, second))
        assert [job.task_kwargs["execution_id"] for job in answers if job is not None] == [str(execution_id)]
        assert (fetches("jobs") + fetches("empty"), fetches("skipped")) == (sent + 1, skipped + 1)


async def listen_connections(dsn: str) -> int:
    """The connections on the test database whose last statement was a fetch loop's LISTEN (seen as the
    login: the application role sees no other role's statements)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN \"procrastinate%'"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_the_fetch_loops_of_a_process_share_one_listen_connection(db: Database, dsn: str) -> None:
    """Every fetch loop listens (Procrastinate starts a listener per loop), through one LISTEN connection
    per queue list: each notification wakes one backend and one listener, which hands it to every loop.
    A loop that stops leaves the others listening; the last one to stop closes the connection."""
    await publish(db, wf("shared", echo("a")))
    async with job_manager(db) as (manager, _):
        assert await listen_connections(dsn) == 0
        async with listening(manager) as first:
            async with listening(manager) as second:
                await started_and_heard(db, first, "shared")
                assert await listen_connections(dsn) == 1
                while not second.empty():
                    second.get_nowait()
                await start(db, "shared")
                await asyncio.wait_for(first.get(), 5.0)
                await asyncio.wait_for(second.get(), 5.0)
            # The second loop stopped: the first still hears, on the same connection.
            await started_and_heard(db, first, "shared")
            assert await listen_connections(dsn) == 1
        for _ in range(50):
            if await listen_connections(dsn) == 0:
                break
            await asyncio.sleep(0.1)
        assert await listen_connections(dsn) == 0
        # Listening again after that opens a connection again.
        async with listening(manager) as again:
            await started_and_heard(db, again, "shared")
            assert await listen_connections(dsn) == 1


async def test_a_failure_of_the_shared_listener_reaches_every_loop(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the connection's (a bug): each loop's listener ends with it, as each loop's own did, so that
    Procrastinate stops the loop and its supervisor starts it again."""
    async with job_manager(db) as (manager, _):

        async def broken(**_: Any) -> None:
            await asyncio.sleep(0.05)
            raise RuntimeError("a bug in the listener")

        monkeypatch.setattr(manager, "_listen_for_jobs", broken)

        async def ignore(*, channel: str, notification: jobs.Notification) -> None:
            return None

        loops = [asyncio.create_task(manager.listen_for_jobs(on_notification=ignore, queues=QUEUES)) for _ in range(2)]
        done, _ = await asyncio.wait(loops, timeout=5.0)
        assert len(done) == 2
        for loop in loops:
            with pytest.raises(RuntimeError, match="a bug in the listener"):
                loop.result()
        assert manager.listeners == [] and manager._shared_listens == {}


async def test_a_run_queued_while_the_listen_connection_was_lost_is_fetched_without_waiting_for_a_poll(
    db: Database, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Procrastinate opens a lost LISTEN connection again by itself, silently: a fetch loop that had
    found its queue drained went on trusting the listener, and a run queued in between waited for the
    next poll (up to 5 s). Now, from the loss until the LISTEN is in place again, every fetch is sent,
    and once it is in place the loops are woken to look for what nobody heard meanwhile."""
    monkeypatch.setattr(worker_app, "NOTHING_NEW_SECONDS", 60.0)  # no poll comes to the rescue
    await publish(db, wf("relisten", echo("a")))
    async with job_manager(db, batch=10, slots=10) as (manager, worker_id):
        connector = manager.connector
        original = connector._get_standalone_connection  # type: ignore[attr-defined]
        opened: list[int] = []
        reopen = asyncio.Event()

        @contextlib.asynccontextmanager
        async def held_back_after_the_first() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
            opened.append(1)
            if len(opened) > 1:
                await reopen.wait()
            async with original() as connection:
                yield connection

        monkeypatch.setattr(connector, "_get_standalone_connection", held_back_after_the_first)
        async with listening(manager) as heard:
            await started_and_heard(db, heard, "relisten")
            while await manager.fetch_job(QUEUES, worker_id) is not None:
                pass
            assert await manager.fetch_job(QUEUES, worker_id) is None  # drained: skipped from now on

            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'LISTEN \"procrastinate%'"
                )
            for _ in range(100):
                if len(opened) > 1:
                    break
                await asyncio.sleep(0.05)
            assert len(opened) == 2  # the listener noticed, and is held back before its LISTEN

            # Nobody listens: the start's notification is lost. The fetch is sent all the same.
            while not heard.empty():
                heard.get_nowait()
            first = await start(db, "relisten")
            job = await manager.fetch_job(QUEUES, worker_id)
            assert job is not None and job.task_kwargs["execution_id"] == str(first)
            assert await manager.fetch_job(QUEUES, worker_id) is None

            # Queued while still deaf; then the LISTEN is back: the loops are woken, the fetch is sent.
            second = await start(db, "relisten")
            reopen.set()
            assert await asyncio.wait_for(heard.get(), 10.0) == 0
            assert heard.empty()
            assert await listen_connections(dsn) == 1
            job = await manager.fetch_job(QUEUES, worker_id)
            assert job is not None and job.task_kwargs["execution_id"] == str(second)
