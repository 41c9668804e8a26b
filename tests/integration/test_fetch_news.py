"""The worker sends a fetch only when it may find a job (ResilientJobManager.fetch_job): after a fetch
that found the queue drained, the next one waits for news of a job (a notification, a job queued
again), and a fetch that found nothing while such news came looks again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

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
