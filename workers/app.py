"""The worker process: a Procrastinate worker draining the executions queue (FOR UPDATE SKIP
LOCKED), running each execution through the runtime, plus a recovery loop that re-queues runs
whose worker vanished. Scale out by starting more processes, on any host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import traceback
import uuid
from typing import Any

import procrastinate
import structlog
from procrastinate.job_context import JobContext
from prometheus_client import start_http_server

from dataworkflows import metrics
from dataworkflows.actions import ActionServices, default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.credentials import (
    ChainedCredentialProvider,
    Cipher,
    CredentialProvider,
    DatabaseCredentialProvider,
    EnvCredentialProvider,
)
from dataworkflows.db import Database, make_pool
from dataworkflows.errors import ConfigurationError, DataWorkflowsError
from dataworkflows.http_client import make_http_client
from dataworkflows.resources import DatabaseResources
from dataworkflows.runtime import Runtime, RuntimeSettings

log = structlog.get_logger("dataworkflows.worker")

RUN_EXECUTION_TASK = "dw.run_execution"


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


def build_app(runtime: Runtime) -> procrastinate.App:
    """A Procrastinate app whose one task runs an execution."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())

    @app.task(name=RUN_EXECUTION_TASK, queue=runtime.settings.queue, pass_context=True)
    async def run_execution(context: JobContext, execution_id: str) -> None:
        structlog.contextvars.bind_contextvars(execution_id=execution_id)
        try:
            await runtime.run_execution(uuid.UUID(execution_id))
        except Exception as exc:
            # The job failed (the run itself is resumed by recovery once its lease expires):
            # keep the evidence where an operator looks, then let Procrastinate mark it failed.
            await _record_job_failure(runtime, context, execution_id, exc)
            raise
        finally:
            structlog.contextvars.unbind_contextvars("execution_id")

    return app


def credential_provider(settings: Settings, db: Database) -> CredentialProvider:
    """Stored connections (when DW_CREDENTIALS_KEY is set) first, then DW_CONNECTION_<NAME>."""
    providers: list[CredentialProvider] = []
    if settings.credentials_key:
        providers.append(DatabaseCredentialProvider(db, Cipher.from_setting(settings.credentials_key)))
    providers.append(EnvCredentialProvider())
    return ChainedCredentialProvider(providers)


def build_services(settings: Settings, db: Database, http: Any) -> ActionServices:
    return ActionServices(
        credentials=credential_provider(settings, db),
        http=http,
        resources=DatabaseResources(db, claim_seconds=settings.resource_claim_seconds),
        endpoints={"slack": settings.slack_api_url, "monday": settings.monday_api_url},
    )


async def _record_job_failure(runtime: Runtime, context: JobContext, execution_id: str, exc: Exception) -> None:
    job = context.job
    try:
        execution = uuid.UUID(execution_id)
    except ValueError:
        execution = None
    error = {
        "code": "job_failed",
        "message": f"{type(exc).__name__}: {exc}"[:2000],
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }
    try:
        await runtime.db.fetch_one(
            "record_job_failure",
            job_id=job.id,
            execution_id=execution,
            payload={"task": job.task_name, "args": job.task_kwargs, "queue": job.queue},
            error=error,
            attempts=job.attempts + 1,
        )
    except DataWorkflowsError as record_error:
        log.error("could not record the failed job", job_id=job.id, error=str(record_error))


async def update_queue_metrics(db: Database) -> None:
    rows = await db.fetch_all("queue_depth")
    seen = set()
    for row in rows:
        metrics.QUEUE_DEPTH.labels(row["queue_name"], row["status"]).set(row["jobs"])
        seen.add((row["queue_name"], row["status"]))
    for queue, status in _known_queue_labels - seen:
        metrics.QUEUE_DEPTH.labels(queue, status).set(0)
    _known_queue_labels.update(seen)
    oldest: dict[str, float] = {}
    for row in rows:
        if row["status"] == "todo" and row["oldest_seconds"] is not None:
            oldest[row["queue_name"]] = float(row["oldest_seconds"])
    for queue in {q for q, _ in _known_queue_labels}:
        metrics.QUEUE_OLDEST.labels(queue).set(oldest.get(queue, 0.0))


_known_queue_labels: set[tuple[str, str]] = set()


async def recovery_loop(db: Database, settings: Settings) -> None:
    """Every worker runs this; SKIP LOCKED in the procedure keeps them from doubling up."""
    while True:
        await asyncio.sleep(settings.recovery_interval_seconds)
        try:
            rows = await db.fetch_all(
                "recover_executions",
                max_recoveries=settings.max_recoveries,
                stalled_worker_seconds=settings.stalled_worker_seconds,
                queue=settings.queue,
            )
        except Exception as exc:
            # Never let the loop die: it is what re-queues runs whose worker vanished.
            log.warning("recovery pass failed", error=str(exc), error_type=type(exc).__name__)
            continue
        for row in rows:
            metrics.RECOVERIES.labels(row["action"]).inc()
            log.warning("execution recovered", execution_id=str(row["execution_id"]), action=row["action"])
        try:
            await db.execute("prune_event_listeners", max_age_seconds=86400.0)
            await update_queue_metrics(db)
        except Exception as exc:
            log.warning("queue metrics update failed", error=str(exc))


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    install_signal_handlers: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs a worker until it is asked to stop (SIGINT/SIGTERM, or `stop` being set)."""
    if not settings.database_url:
        raise ConfigurationError("DATABASE_URL is not set")
    concurrency = concurrency or settings.worker_concurrency
    worker_id = new_worker_id()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        log.info("worker metrics", url=f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics")
    # Procrastinate keeps a listen connection and one per fetch; the runtime needs one per
    # concurrent database call. Size for both.
    pool = make_pool(
        settings.database_url, min_size=2, max_size=max(settings.pool_max_size, concurrency + 4), name="worker"
    )
    await pool.open(wait=True, timeout=30)
    db = Database(pool)
    conditions = ConditionPool(size=2)
    http = make_http_client(settings.allowed_hosts)
    services = build_services(settings, db, http)
    runtime = Runtime(
        db,
        default_registry(),
        RuntimeSettings(
            worker_id=worker_id,
            queue=settings.queue,
            lease_seconds=settings.lease_seconds,
            park_threshold_seconds=settings.park_threshold_seconds,
            throttle_delay_seconds=settings.throttle_delay_seconds,
        ),
        conditions,
        services,
    )
    app = build_app(runtime)
    structlog.contextvars.bind_contextvars(worker_id=worker_id)
    log.info("worker starting", concurrency=concurrency, queue=settings.queue)
    recovery = asyncio.create_task(recovery_loop(db, settings))
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_event.set)
    fetchers = max(1, min(settings.worker_fetchers, concurrency))
    try:
        async with app.open_async(pool=pool):
            common: dict[str, Any] = {
                "queues": [settings.queue],
                "shutdown_graceful_timeout": settings.shutdown_grace_seconds,
                # Signals are handled here, once, for every fetch loop.
                "install_signal_handlers": False,
                "delete_jobs": "successful",
                "update_heartbeat_interval": max(settings.stalled_worker_seconds / 3, 1.0),
                "stalled_worker_timeout": settings.stalled_worker_seconds,
            }
            shares = [concurrency // fetchers + (1 if i < concurrency % fetchers else 0) for i in range(fetchers)]
            loops = [
                asyncio.create_task(app.run_worker_async(**common, concurrency=share, name=f"{worker_id}#{i}"))
                for i, share in enumerate(shares)
            ]
            stop_task = asyncio.create_task(stop_event.wait())
            await asyncio.wait({*loops, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            # Procrastinate's graceful stop: running jobs get the grace period, then are cancelled
            # (the runtime hands their executions back).
            for task in loops:
                task.cancel()
            results = await asyncio.gather(*loops, return_exceptions=True)
            stop_task.cancel()
            failures = [
                r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
            ]
            if failures:
                raise failures[0]
    finally:
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovery
        await conditions.close()
        await http.aclose()
        await pool.close()
        log.info("worker stopped")
