"""Errors of the worker's own (its database, its helpers) that reach a node's attempt: never the
node's failure for good, never blamed on the user's action or expression."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool, ConditionUnavailable
from dataworkflows.config import Settings
from dataworkflows.credentials import EnvCredentialProvider
from dataworkflows.db import Database
from dataworkflows.errors import DatabaseUnavailable
from dataworkflows.http_client import make_http_client
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.template_pool import TemplatePool
from dataworkflows.workers.app import build_services
from tests.conftest import publish, start
from tests.fakes import HTTP_TOKEN, FakeServers, fake_servers


@pytest.fixture
async def fakes() -> AsyncIterator[FakeServers]:
    async with fake_servers() as servers:
        yield servers


class _Blip:
    """A credential source whose database is away for its first `failures` lookups (a pool that had
    no connection to give in time, a connection lost, a statement cancelled)."""

    def __init__(self, inner: Any, failures: int = 1) -> None:
        self.inner = inner
        self.failures = failures

    async def get(self, name: str, *, workflow_id: str | None = None) -> Any:
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("the database is unavailable: couldn't get a connection after 30.00 sec")
        return await self.inner.get(name, workflow_id=workflow_id)


async def test_a_database_blip_in_an_actions_credential_lookup_is_not_the_actions_failure(
    db: Database, conditions: ConditionPool, templates: TemplatePool, fakes: FakeServers
) -> None:
    """The stored connections are read from the database: a lookup that met the database away failed
    the node for good as action_exception ("DatabaseUnavailable: ..."), not retried, blamed on the
    action. It is the worker's trouble: the run is resumed as after any lost database (its lease
    expires, the attempt is recorded as interrupted, not counted against the retry budget) and goes on."""
    secret = json.dumps({"hosts": [f"127.0.0.1:{fakes.port}"], "bearer": HTTP_TOKEN})
    settings = Settings(http_allowed_hosts=f"127.0.0.1:{fakes.port}")
    http = make_http_client(settings.allowed_hosts)
    services = build_services(settings, db, http)
    blip = _Blip(EnvCredentialProvider({"DW_CONNECTION_EXAMPLE_API": secret}))
    services = dataclasses.replace(services, credentials=blip)
    runtime = Runtime(
        db,
        default_registry(),
        RuntimeSettings(worker_id="w", lease_seconds=1.0),
        conditions,
        services,
        templates=templates,
    )
    node = {
        "id": "call",
        "actionType": "http.request",
        "parameters": {"url": f"{fakes.base}/http/json", "connection": "example-api"},
        "retryPolicy": {"maxAttempts": 1},
    }
    raw = {"id": "blip", "displayName": "blip", "startNode": "call", "nodes": [node]}
    try:
        await publish(db, raw)
        execution_id = await start(db, "blip")
        with pytest.raises(DatabaseUnavailable):
            await runtime.run_execution(execution_id)
        execution = await db.fetch_one("get_execution", id=execution_id)
        assert execution is not None and execution["status"] == "Running", execution["error"]
        await asyncio.sleep(1.5)  # the lease runs out; recovery would queue the run again
        assert await runtime.run_execution(execution_id) == "Succeeded"
        attempts = await db.fetch_all("list_attempts", id=execution_id)
        assert [(a["attempt"], a["status"], a["interrupted"]) for a in attempts] == [
            (1, "RetriableFailure", True),
            (2, "Succeeded", False),
        ]
    finally:
        await http.aclose()


def _no_helper_can_start(pool: ConditionPool) -> None:
    """The pool's helpers cannot be started: fork refused (EAGAIN, the process limit), no file
    descriptor left (EMFILE), no memory."""

    async def refused() -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    pool._pool._spawn = refused  # type: ignore[method-assign]


async def test_a_transform_whose_helper_cannot_start_is_retried_not_failed(db: Database) -> None:
    """A transform whose sandbox helper could not be started failed its node for good as
    transform_error ("the condition helper exited (memory limit or crash): could not start a
    helper: ..."), as if the expression were wrong. Nothing ran: the node retries by its policy."""
    from tests.integration.test_composition import transform
    from tests.integration.test_runtime import make_runtime, wf
    from tests.integration.test_waits import started

    broken = ConditionPool(size=1)
    _no_helper_can_start(broken)
    runtime = make_runtime(db, broken)
    node = transform("shape", expression="trigger.n * 2")
    node["retryPolicy"] = {"maxAttempts": 2, "initialDelay": "PT0.05S", "jitter": False}
    execution_id = await started(db, wf("no-helper", node), {"n": 21})
    try:
        assert await runtime.run_execution(execution_id) == "Failed"
    finally:
        await broken.close()
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [(a["attempt"], a["status"], a["error"]["code"]) for a in attempts] == [
        (1, "RetriableFailure", "transform_unavailable"),
        (2, "RetriableFailure", "transform_unavailable"),
    ]
    assert "could not start a helper" in attempts[0]["error"]["message"]


async def test_an_edge_condition_whose_helper_cannot_start_does_not_skip_its_branch(db: Database) -> None:
    """An edge condition whose sandbox helper could not be started was taken for a condition that
    threw: its edge did not fire, its target was Skipped and the run Succeeded without the branch.
    The worker's trouble decides no route: the run stops where it is and is resumed (the attempt
    recorded as interrupted), and once helpers start again the branch runs."""
    from dataworkflows.workers.app import build_app
    from tests.integration.test_observability import job_context
    from tests.integration.test_runtime import echo, make_runtime, nodes, to, wf
    from tests.integration.test_waits import started

    raw = wf("no-helper-edge", echo("a", to("b", condition="nodes.a.echo + '' == 'a'")), echo("b"))
    execution_id = await started(db, raw)  # published with helpers that start
    broken = ConditionPool(size=1)
    _no_helper_can_start(broken)
    try:
        runtime = make_runtime(db, broken, lease_seconds=1.0)
        with pytest.raises(ConditionUnavailable):
            await runtime.run_execution(execution_id)
        # As the worker's job runs it: not a failed job (a job_failed dead letter for a run that
        # then succeeds), as for a database that went away; recovery resumes the run.
        await asyncio.sleep(1.5)
        task = build_app(runtime).tasks["dw.run_execution"]
        await task.func(job_context(7, str(execution_id)), execution_id=str(execution_id))
    finally:
        await broken.close()
    state = await nodes(db, execution_id)
    assert state["b"]["status"] != "Skipped"
    assert await db.fetch_all("list_dead_letters", open=None, kind="job_failed", before=None, limit=10) == []
    await asyncio.sleep(1.5)
    good = ConditionPool(size=1)
    try:
        assert await make_runtime(db, good, lease_seconds=1.0).run_execution(execution_id) == "Succeeded"
    finally:
        await good.close()
    state = await nodes(db, execution_id)
    assert state["b"]["status"] == "Succeeded"


async def test_an_edge_condition_waits_a_moment_for_a_helper_rather_than_run_its_node_again(db: Database) -> None:
    """No helper could be started for an edge's condition for a moment (fork refused once, the
    process limit). Raised at once, it gave up the node's attempt, done already (an action's call
    made), as interrupted: the run was resumed a lease later and the node's action ran again. The
    condition waits a moment for a helper first."""
    from tests.integration.test_runtime import echo, make_runtime, nodes, to, wf
    from tests.integration.test_waits import started

    raw = wf("helper-moment", echo("a", to("b", condition="nodes.a.echo + '' == 'a'")), echo("b"))
    execution_id = await started(db, raw)
    pool = ConditionPool(size=1)
    spawn = pool._pool._spawn
    refusals = [BlockingIOError(11, "Resource temporarily unavailable")] * 2  # both of one call's tries

    async def sometimes() -> Any:
        if refusals:
            raise refusals.pop()
        return await spawn()

    pool._pool._spawn = sometimes  # type: ignore[method-assign]
    try:
        assert await make_runtime(db, pool).run_execution(execution_id) == "Succeeded"
    finally:
        await pool.close()
    assert not refusals
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [(a["node_id"], a["attempt"], a["interrupted"]) for a in attempts] == [("a", 1, False), ("b", 1, False)]
    assert (await nodes(db, execution_id))["b"]["status"] == "Succeeded"
