from __future__ import annotations

import uuid

import pytest

from dataworkflows.actions import ActionContext, default_registry
from dataworkflows.actions.echo import EchoParams
from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from dataworkflows.planning import PlanRetry
from dataworkflows.retry import backoff_seconds
from dataworkflows.sqlfiles import QUERIES, load_migrations, parse_named_queries
from dataworkflows.statuses import AttemptStatus


def ctx(attempt: int) -> ActionContext:
    return ActionContext(uuid.uuid4(), "wf", 1, "n", attempt, 3, {})


def test_backoff_is_exponential_and_capped() -> None:
    policy = PlanRetry(max_attempts=5, initial_delay_seconds=1, backoff_multiplier=2, max_delay_seconds=5, jitter=False)
    assert [backoff_seconds(policy, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff_seconds(policy, 1, retry_after=3) == 3
    jittered = PlanRetry(
        max_attempts=5, initial_delay_seconds=4, backoff_multiplier=2, max_delay_seconds=60, jitter=True
    )
    assert all(2 <= backoff_seconds(jittered, 1) <= 4 for _ in range(50))


async def test_echo_transient_failure_is_decided_by_attempt_number() -> None:
    action = default_registry().get("core.echo")
    params = EchoParams(message="m", simulate_failure="transient")
    results = [await action.execute(ctx(n), params) for n in (1, 2, 3, 1)]
    assert [r.status for r in results] == [
        AttemptStatus.RETRIABLE_FAILURE,
        AttemptStatus.RETRIABLE_FAILURE,
        AttemptStatus.SUCCEEDED,
        AttemptStatus.RETRIABLE_FAILURE,
    ]
    assert results[2].outputs == {"echo": "m"}
    permanent = await action.execute(ctx(1), EchoParams(simulate_failure="permanent"))
    assert permanent.status == AttemptStatus.FAILED and permanent.error is not None


def test_named_queries_parse_and_cover_what_code_uses() -> None:
    parsed = parse_named_queries("-- name: a\n-- says a\nSELECT 1;\n\n-- name: b\n-- says b\nSELECT %(x)s;\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT %(x)s"}
    with pytest.raises(ValueError, match="twice"):
        parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    for name in ["start_execution", "try_acquire", "record_attempt", "complete_execution", "recover_executions"]:
        assert name in QUERIES


def test_migrations_are_numbered_uniquely() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == "0001"


def test_settings_from_environment() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x", "DW_API_PORT": "6000", "DW_LEASE_SECONDS": "2.5"})
    assert (settings.database_url, settings.api_port, settings.lease_seconds) == ("postgresql://x", 6000, 2.5)
    with pytest.raises(ConfigurationError, match="DW_API_PORT"):
        Settings.from_env({"DW_API_PORT": "many"})
