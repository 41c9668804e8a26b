"""Procrastinate's log context, built only for the log records that are made (workers.app.FetchLoop)."""

from __future__ import annotations

import logging

import procrastinate
import pytest
from procrastinate import jobs, testing
from procrastinate import worker as procrastinate_worker
from procrastinate.job_context import JobContext, JobResult
from workers.app import FetchLoop, LazyLogExtra


def test_the_extra_fields_are_built_when_a_record_is_made(caplog: pytest.LogCaptureFixture) -> None:
    built: list[str] = []

    def build(name: str) -> dict[str, object]:
        built.append(name)
        return {"action": name, "job": {"id": 7}}

    logger = logging.getLogger("tests.lazy_extra")
    with caplog.at_level(logging.WARNING, logger="tests.lazy_extra"):
        logger.info("not made", extra=LazyLogExtra(lambda: build("info")))
        logger.error("made", extra=LazyLogExtra(lambda: build("error")))
    assert built == ["error"]
    [record] = caplog.records
    assert (record.getMessage(), record.__dict__["action"], record.__dict__["job"]) == ("made", "error", {"id": 7})


def test_a_fetch_loop_logs_what_procrastinates_worker_logs() -> None:
    app = procrastinate.App(connector=testing.InMemoryConnector())
    ours = FetchLoop(app=app, name="loop", queues=["q"])
    theirs = procrastinate_worker.Worker(app=app, name="loop", queues=["q"])
    job = jobs.Job(id=3, queue="q", lock=None, queueing_lock=None, task_name="t", task_kwargs={"a": 1})
    context = JobContext(
        app=app, worker_name="loop", worker_queues=["q"], job=job, start_timestamp=1.0, abort_reason=lambda: None
    )
    result = JobResult(start_timestamp=1.0, end_timestamp=2.0, result=5)
    lazy = ours._log_extra(action="job_success", context=context, job_result=result, status="ok")
    assert isinstance(lazy, LazyLogExtra)
    assert dict(lazy) == theirs._log_extra(action="job_success", context=context, job_result=result, status="ok")


async def test_a_refused_job_end_is_one_warning_line_and_its_traceback_at_debug() -> None:
    """Expected after a lost lease (recovery removed the job of a worker it took for dead): each one
    wrote a 35-line traceback at warning."""
    import asyncio

    import structlog
    from workers.app import ResilientJobManager

    manager = ResilientJobManager(testing.InMemoryConnector(), asyncio.Event())
    job = jobs.Job(id=3, queue="q", lock=None, queueing_lock=None, task_name="t", task_kwargs={})

    async def refused() -> None:
        raise ValueError("Job was not found or not in 'doing' status")

    with structlog.testing.capture_logs() as logs:
        await manager._persist_with_retries(job, refused)
    assert [(e["log_level"], "exc_info" in e) for e in logs] == [("warning", False), ("debug", True)], logs


async def test_a_job_end_lost_to_a_forced_stop_is_a_warning_not_an_error() -> None:
    """A second SIGTERM closes the pool under a job's end: recovery closes the job, as expected; it
    was logged at error level."""
    import asyncio

    import psycopg
    import structlog
    from workers.app import ResilientJobManager

    stop = asyncio.Event()
    stop.set()
    manager = ResilientJobManager(testing.InMemoryConnector(), stop)
    job = jobs.Job(id=4, queue="q", lock=None, queueing_lock=None, task_name="t", task_kwargs={})

    async def lost() -> None:
        raise psycopg.OperationalError("the connection is closed")

    with structlog.testing.capture_logs() as logs:
        await manager._persist_with_retries(job, lost)
    assert [(e["log_level"], e["event"]) for e in logs] == [
        ("warning", "could not record the job's end; recovery will close it")
    ]
