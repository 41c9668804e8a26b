"""Circuit breakers end to end: a run's http.request node against a local server that fails, in a
worker whose client opens a destination's circuit after two failures in a row."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dataworkflows.actions import default_registry
from dataworkflows.circuit_breaker import CircuitBreakers
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.http_client import make_http_client
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.template_pool import TemplatePool
from dataworkflows.workers.app import build_services
from tests.fakes import FakeServers, fake_servers
from tests.integration.test_connectors import connector_runtime, node, run_one

# Enough attempts for two failures, the refusals while the circuit is open, and the trial.
PATIENT = {"maxAttempts": 10, "initialDelay": "PT0.05S", "backoffMultiplier": 1, "maxDelay": "PT2S", "jitter": False}


@pytest.fixture
async def fakes() -> AsyncIterator[FakeServers]:
    async with fake_servers() as servers:
        yield servers


@pytest.fixture
async def runtime(
    db: Database, conditions: ConditionPool, templates: TemplatePool, fakes: FakeServers
) -> AsyncIterator[Runtime]:
    settings = Settings(http_allowed_hosts=f"127.0.0.1:{fakes.port},localhost:{fakes.port}")
    http = make_http_client(settings.allowed_hosts, circuits=CircuitBreakers(failures=2, open_seconds=0.5))
    try:
        yield connector_runtime(db, conditions, templates, settings, http)
    finally:
        await http.aclose()


async def test_an_open_circuit_fails_attempts_without_sending_them_until_a_trial_succeeds(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    # /http/flaky answers 503 twice, then 200: the two failures open the circuit; the attempts while it
    # is open are refused without a request (circuit_open, retried no sooner than it may close); the
    # first one after is the trial, which succeeds.
    _, execution, attempts = await run_one(
        db, runtime, "breaker", node("call", "http.request", retry=PATIENT, url=f"{fakes.base}/http/flaky/b")
    )
    assert execution["status"] == "Succeeded", attempts
    codes = [a["error"]["code"] if a["error"] else None for a in attempts]
    assert codes[:2] == ["http_503", "http_503"]
    assert codes[-1] is None
    refused = codes[2:-1]
    assert refused and set(refused) == {"circuit_open"}, codes
    assert "failed 2 times in a row (the last: HTTP 503)" in attempts[2]["error"]["message"]
    # Two failures and the trial reached the server; the refused attempts did not.
    assert fakes.state.calls["http:flaky:b"] == 3


async def test_a_destinations_circuit_does_not_hold_up_another_destination(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    failing = {
        "maxAttempts": 3,
        "initialDelay": "PT0.01S",
        "backoffMultiplier": 1,
        "maxDelay": "PT0.01S",
        "jitter": False,
    }
    _, execution, attempts = await run_one(
        db, runtime, "down", node("call", "http.request", retry=failing, url=f"{fakes.base}/http/status/500")
    )
    assert execution["status"] == "Failed"
    assert [a["error"]["code"] for a in attempts][-1] == "circuit_open"
    assert fakes.state.calls["http:status:500"] == 2
    # localhost is another destination (another host name) on the same server: its circuit is closed.
    other = fakes.base.replace("127.0.0.1", "localhost")
    _, execution, attempts = await run_one(db, runtime, "up", node("call", "http.request", url=f"{other}/http/json"))
    assert execution["status"] == "Succeeded", attempts


async def test_requests_cut_off_by_the_nodes_timeout_count_as_the_destinations_timeouts(
    db: Database, conditions: ConditionPool, templates: TemplatePool, fakes: FakeServers
) -> None:
    # A destination slower than the node's timeout: the node's deadline (asyncio's) cancels the request
    # before httpx's timeout fires, and the transport took the cancellation for the caller's own, so no
    # number of such timeouts opened the circuit (a review). Its connectors' requests carry it now.
    settings = Settings(http_allowed_hosts=f"127.0.0.1:{fakes.port}")
    http = make_http_client(settings.allowed_hosts, circuits=CircuitBreakers(failures=2, open_seconds=30.0))
    runtime = Runtime(
        db,
        default_registry(),
        RuntimeSettings(worker_id="w", lease_seconds=10),
        conditions,
        build_services(settings, db, http),
        templates=templates,
    )
    quick = {
        "maxAttempts": 3,
        "initialDelay": "PT0.01S",
        "backoffMultiplier": 1,
        "maxDelay": "PT0.01S",
        "jitter": False,
    }
    call = node("call", "http.request", retry=quick, url=f"{fakes.base}/http/record/slow?sleepMs=5000")
    try:
        _, execution, attempts = await run_one(db, runtime, "slow", {**call, "timeout": "PT0.2S"})
    finally:
        await http.aclose()
    assert execution["status"] == "Failed"
    assert [a["error"]["code"] for a in attempts] == ["action_timeout", "action_timeout", "circuit_open"]
    assert len(fakes.state.idempotency_keys["slow"]) == 2
