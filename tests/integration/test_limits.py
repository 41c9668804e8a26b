"""Rate limits against a real PostgreSQL: the API's token buckets shared by two API apps on one
database, and workflows' start limits at acquire (set in the definition, through the API)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.db import Database
from tests.conftest import load_fixture, publish, start

RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


@pytest.fixture
async def two_apps(dsn: str) -> AsyncIterator[list[AsyncTestClient[Any]]]:
    """Two API apps (each with its own pool) on one database, 60 requests a minute, burst 3."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(Settings(database_url=dsn, api_rate_per_minute=60, api_rate_burst=3))
            clients.append(await stack.enter_async_context(AsyncTestClient(app)))
        yield clients


async def test_one_bucket_per_caller_across_two_api_apps(two_apps: list[AsyncTestClient[Any]]) -> None:
    first, second = two_apps
    ana = {"X-Principal-Id": "ana"}
    answers = [await (first, second)[i % 2].get("/api/v1/workflows", headers=ana) for i in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    for answer in answers:
        assert answer.headers["RateLimit-Limit"] == "3" and answer.headers["RateLimit-Policy"] == "3;w=3"
    refused = answers[3]
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert (body["status"], body["code"], body["title"]) == (429, "rate_limited", "Too many requests")
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 1 and 1 <= int(refused.headers["RateLimit-Reset"]) <= 3

    # Another principal, an anonymous caller: buckets of their own.
    assert (await second.get("/api/v1/workflows", headers={"X-Principal-Id": "bo"})).status_code == 200
    assert (await first.get("/api/v1/workflows")).status_code == 200
    # Outside /api/v1: never limited, no RateLimit fields.
    for path in ("/health/live", "/health/ready", "/metrics", "/schema/openapi.json"):
        answer = await first.get(path, headers=ana)
        assert answer.status_code == 200, path
        assert not any(h in answer.headers for h in RATE_HEADERS)


async def test_a_bucket_refills_with_time(dsn: str) -> None:
    # One token a second: three requests fall within one even on a loaded machine (at 10 a second, a
    # run beside another suite's took 100 ms over two, and the third found a token back).
    app = create_app(Settings(database_url=dsn, api_rate_per_minute=60, api_rate_burst=2))
    async with AsyncTestClient(app) as client:
        answers = [(await client.get("/api/v1/actions")).status_code for _ in range(3)]
        assert answers == [200, 200, 429]
        await asyncio.sleep(2.1)  # both back
        again = [await client.get("/api/v1/actions") for _ in range(3)]
        assert [a.status_code for a in again] == [200, 200, 429]
        assert again[0].headers["RateLimit-Remaining"] == "1"


async def test_webhooks_draw_from_their_sender_then_their_trigger(
    two_apps: list[AsyncTestClient[Any]], dsn: str, db: Database
) -> None:
    first, second = two_apps
    async with AsyncTestClient(create_app(Settings(database_url=dsn, api_rate_per_minute=0))) as setup:
        raw = load_fixture("bundle1/simple-echo-workflow.json")
        created = await setup.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
        assert created.status_code == 201, created.text
        hook = await setup.post(
            "/api/v1/workflows/simple-echo/triggers",
            json={"kind": "webhook", "name": "open", "config": {"signature": "none"}},
        )
        assert hook.status_code == 201, hook.text
    trigger_id = hook.json()["id"]
    # A real delivery takes a token from its sender's bucket, then (verified) from its trigger's.
    assert (await first.post(f"/api/v1/hooks/{trigger_id}", json={"n": 1})).status_code == 202
    # Made-up trigger ids get no bucket of their own: they drain their sender's, shared by both
    # API processes, and then answer 429 whatever id they name.
    codes = [(await first.post(f"/api/v1/hooks/{uuid.uuid4()}", json={})).status_code for _ in range(2)]
    assert codes == [404, 404]
    assert (await second.post("/api/v1/hooks/made-up", json={})).status_code == 429
    assert (await second.post(f"/api/v1/hooks/{trigger_id}", json={"n": 2})).status_code == 429
    assert (await second.get("/api/v1/workflows")).status_code == 200, "other callers have their own buckets"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT tenant_id, subject FROM dw.api_rate_buckets ORDER BY subject")
        rows = await cur.fetchall()
    assert [subject for _, subject in rows if subject.startswith("hook")] == [
        "hook-sender:testclient",
        f"hook:{trigger_id}",
    ]


async def test_the_limiter_fails_open_and_is_off_at_zero(dsn: str, postgresql: psycopg.Connection) -> None:
    off = create_app(Settings(database_url=dsn, api_rate_per_minute=0))
    async with AsyncTestClient(off) as client:
        answers = [await client.get("/api/v1/actions") for _ in range(5)]
        assert {a.status_code for a in answers} == {200}
        assert "RateLimit-Limit" not in answers[0].headers
    # As the tables' owner: the application role may not drop a table.
    postgresql.execute("DROP TABLE dw.api_rate_buckets")
    postgresql.commit()
    broken = create_app(Settings(database_url=dsn, api_rate_per_minute=60, api_rate_burst=1))
    async with AsyncTestClient(broken) as client:
        answers = [await client.get("/api/v1/actions") for _ in range(3)]
        assert {a.status_code for a in answers} == {200}


async def test_a_503_for_want_of_a_database_is_counted_as_a_503(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the limiter's DatabaseUnavailable was raised through the metrics middleware, which
    counted the request, and wrote its access line, as a 500 while the client got a 503."""
    from dataworkflows.data.limits import LimitData
    from dataworkflows.errors import DatabaseUnavailable

    async def unavailable(self: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("the database is unavailable: no connection within 10 s")

    monkeypatch.setattr(LimitData, "take_token", unavailable)
    app = create_app(Settings(database_url=dsn, api_rate_per_minute=60, api_rate_burst=5))

    def counted(status: str) -> float:
        # The registry is the process's: other tests' requests are in it too.
        value = REGISTRY.get_sample_value(
            "dataworkflows_http_requests_total", {"method": "GET", "route": "/api/v1/actions", "status": status}
        )
        return value or 0.0

    before = {status: counted(status) for status in ("500", "503")}
    async with AsyncTestClient(app) as client:
        answer = await client.get("/api/v1/actions")
    assert answer.status_code == 503 and answer.json()["code"] == "database_unavailable", answer.text
    assert counted("503") == before["503"] + 1 and counted("500") == before["500"]


async def test_full_buckets_are_pruned(db: Database) -> None:
    await db.limits.take_token(tenant="default", subject="principal:quick", per_second=1000.0, burst=1)
    await db.limits.take_token(tenant="default", subject="principal:slow", per_second=0.001, burst=1)
    await asyncio.sleep(0.05)
    assert await db.limits.prune_buckets() == 1
    async with db.connection() as conn:
        cur = await conn.execute("SELECT subject FROM dw.api_rate_buckets")
        assert await cur.fetchall() == [("principal:slow",)]


# -- workflow limits ---------------------------------------------------------------------------


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def test_limits_through_the_api(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    path = "/api/v1/workflows/simple-echo/limits"
    changed = await client.patch(path, json={"maxConcurrentExecutions": 2, "rateLimitPerMinute": 30})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["maxConcurrentExecutions"], changed.json()["rateLimitPerMinute"]) == (2, 30)
    cleared = (await client.patch(path, json={"rateLimitPerMinute": None})).json()
    assert (cleared["maxConcurrentExecutions"], cleared["rateLimitPerMinute"]) == (2, None)
    for bad in [
        {"maxConcurrentExecutions": 0},
        {"rateLimitPerMinute": 60_001},
        {"rateLimitPerMinute": "x"},
        {"rateLimitPerMinute": 1.5},
        # A number written as a string is not a number (Litestar's lax decoding took "30" and "1e1").
        {"rateLimitPerMinute": "30"},
        {"maxConcurrentExecutions": "1e1"},
        {"rateLimitPerMinute": True},
        {"burst": 3},
    ]:
        answer = await client.patch(path, json=bad)
        assert answer.status_code == 400, bad
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await client.patch(path, json={})).status_code == 422
    assert (await client.patch("/api/v1/workflows/nope/limits", json={"rateLimitPerMinute": 1})).status_code == 404
    listed = (await client.get("/api/v1/workflows")).json()["items"][0]
    assert (listed["maxConcurrentExecutions"], listed["rateLimitPerMinute"]) == (2, None)


async def test_publishing_applies_the_limits_a_definition_states(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    raw["orchestration"] = {**raw.get("orchestration", {}), "rateLimitPerMinute": 30}
    assert (await client.post("/api/v1/workflows", json=raw, params={"autoActivate": "true"})).status_code == 201
    workflow = (await client.get("/api/v1/workflows/simple-echo")).json()
    assert (workflow["rateLimitPerMinute"], workflow["maxConcurrentExecutions"]) == (30, None)
    # Set through the API, kept by a version that does not mention it.
    await client.patch("/api/v1/workflows/simple-echo/limits", json={"maxConcurrentExecutions": 4})
    raw["orchestration"] = {"maxParallelActions": 5, "rateLimitPerMinute": None}
    assert (await client.put("/api/v1/workflows/simple-echo", json=raw)).status_code == 200
    published = (await client.post("/api/v1/workflows/simple-echo/publish")).json()
    assert (published["rateLimitPerMinute"], published["maxConcurrentExecutions"]) == (None, 4)
    raw["orchestration"] = {"rateLimitPerMinute": 0}
    assert (await client.put("/api/v1/workflows/simple-echo", json=raw)).status_code == 422


async def _acquire(db: Database, execution_id: Any, owner: str = "w") -> dict[str, Any]:
    row = await db.fetch_one("acquire_run", id=execution_id, owner=owner, lease_seconds=30, start=False)
    assert row is not None
    return row


async def test_a_concurrency_change_through_the_api_takes_effect(client: AsyncTestClient[Any], db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    path = "/api/v1/workflows/simple-echo/limits"
    assert (await client.patch(path, json={"maxConcurrentExecutions": 1})).status_code == 200
    first, second = await start(db, "simple-echo"), await start(db, "simple-echo")
    assert (await _acquire(db, first))["outcome"] == "acquired"
    throttled = await _acquire(db, second)
    assert throttled["outcome"] == "throttled"
    assert throttled["run"] == {"throttledBy": "concurrency", "retryAt": None}
    acquired = await db.runs.acquire(second, owner="w", lease_seconds=30)
    assert acquired.throttle is not None and acquired.throttle.throttled_by == "concurrency"
    assert (await client.patch(path, json={"maxConcurrentExecutions": 2})).status_code == 200
    assert (await _acquire(db, second))["outcome"] == "acquired"


async def test_the_rate_promises_start_times_in_arrival_order(client: AsyncTestClient[Any], db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await client.patch("/api/v1/workflows/simple-echo/limits", json={"rateLimitPerMinute": 60})
    runs = [await start(db, "simple-echo") for _ in range(3)]
    assert (await _acquire(db, runs[0]))["outcome"] == "acquired"
    second = await db.runs.acquire(runs[1], owner="w", lease_seconds=30)
    third = await db.runs.acquire(runs[2], owner="w", lease_seconds=30)
    assert second.throttle is not None and third.throttle is not None
    assert second.throttle.throttled_by == "rate" and second.throttle.retry_at is not None
    assert third.throttle.retry_at is not None
    assert third.throttle.retry_at - second.throttle.retry_at == timedelta(seconds=1)
    # Asking again early keeps the promise; a child is never held back (none here), a root is.
    again = await db.runs.acquire(runs[2], owner="w", lease_seconds=30)
    assert again.throttle is not None and again.throttle.retry_at == third.throttle.retry_at
    # A faster rate withdraws the old promises: their jobs are queued now, to be promised anew.
    for run in runs[1:]:
        await db.runs.defer(run, queue="executions", at=third.throttle.retry_at)
    await client.patch("/api/v1/workflows/simple-echo/limits", json={"rateLimitPerMinute": 6000})
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE rate_slot_at IS NOT NULL) FROM dw.executions WHERE id = ANY(%s)",
            (runs[1:],),
        )
        assert (await cur.fetchone()) == (0,)
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE args->>'execution_id' = ANY(%s)"
            " AND status = 'todo' AND scheduled_at IS NOT NULL AND scheduled_at > now()",
            ([str(r) for r in runs[1:]],),
        )
        assert (await cur.fetchone()) == (0,)
    await asyncio.sleep(0.02)
    assert (await _acquire(db, runs[1]))["outcome"] == "acquired"


async def test_starts_never_come_closer_than_the_rate_allows(db: Database) -> None:
    """Eight acquires racing for four seconds under 120 a minute: starts are 0.5 s apart or more."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    assert await db.limits.set_workflow_limits("simple-echo", WorkflowLimits(set_rate=True, rate_per_minute=120))
    runs = [await start(db, "simple-echo") for _ in range(8)]
    pending = list(runs)
    deadline = asyncio.get_running_loop().time() + 10
    while pending and asyncio.get_running_loop().time() < deadline:
        results = await asyncio.gather(*(_acquire(db, r, owner=f"w{i}") for i, r in enumerate(pending)))
        pending = [r for r, res in zip(pending, results, strict=True) if res["outcome"] != "acquired"]
        await asyncio.sleep(0.05)
    assert not pending
    async with db.connection() as conn:
        cur = await conn.execute("SELECT started_at FROM dw.executions WHERE id = ANY(%s) ORDER BY 1", (runs,))
        starts: list[datetime] = [r[0] for r in await cur.fetchall()]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.5, gaps


ACQUIRE = "SELECT outcome FROM dw.try_acquire_execution_v6(%s, 'w', 30, true, NULL)"


async def _rate_limited_runs(db: Database, count: int) -> list[UUID]:
    """`count` runs of simple-echo under 60 starts a minute."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    assert await db.limits.set_workflow_limits("simple-echo", WorkflowLimits(set_rate=True, rate_per_minute=60))
    return [await start(db, "simple-echo") for _ in range(count)]


@asynccontextmanager
async def _old_and_fresh(dsn: str) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], psycopg.AsyncConnection[Any]]]:
    """Two sessions of the default tenant: `old`, whose transaction is open (as a worker's fetch of a
    batch, or one waiting for a lock, is when it admits a run), and `fresh`, autocommit."""
    async with (
        await psycopg.AsyncConnection.connect(dsn) as old,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as fresh,
    ):
        for conn in (old, fresh):
            await conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        await old.commit()
        yield old, fresh


async def test_the_rate_spaces_admissions_by_when_they_happen_not_when_their_transaction_began(
    db: Database, dsn: str
) -> None:
    """A review: the admission took now(), its transaction's start; a worker's fetch that had worked
    (or waited for the workflow's lock) 1.5 s before admitting recorded its start 1.5 s early, and
    the next run was admitted 3.6 ms after it at 60 a minute."""
    first, second = await _rate_limited_runs(db, 2)
    admit = "SELECT throttled_by FROM dw.admit_root_run_v1((SELECT e FROM dw.executions e WHERE e.id = %s))"
    async with _old_and_fresh(dsn) as (old, fresh):
        await old.execute("SELECT pg_sleep(1.5)")  # a batch's earlier work, or a wait for the lock
        assert (await (await old.execute(admit, (first,))).fetchone()) == (None,)
        await old.commit()
        assert (await (await fresh.execute(admit, (second,))).fetchone()) == ("rate",)


async def test_recorded_starts_are_as_far_apart_as_their_admissions(db: Database, dsn: str) -> None:
    """A second review: with the admission spaced by its own time, a run's started_at was still its
    acquire's transaction's start, and two recorded starts came 0.5 s apart at 60 a minute."""
    first, second = await _rate_limited_runs(db, 2)
    async with _old_and_fresh(dsn) as (old, fresh):
        await old.execute("SELECT pg_sleep(0.5)")  # a batch's transaction, begun before
        assert (await (await fresh.execute(ACQUIRE, (first,))).fetchone()) == ("acquired",)
        await old.execute("SELECT pg_sleep(1.1)")
        assert (await (await old.execute(ACQUIRE, (second,))).fetchone()) == ("acquired",)
        await old.commit()
        cur = await fresh.execute(
            "SELECT started_at FROM dw.executions WHERE id = ANY(%s) ORDER BY 1", ([first, second],)
        )
        earlier, later = [row[0] for row in await cur.fetchall()]
    assert (later - earlier).total_seconds() >= 1.0


async def test_a_promised_run_that_ends_gives_its_turn_back(client: AsyncTestClient[Any], db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await client.patch("/api/v1/workflows/simple-echo/limits", json={"rateLimitPerMinute": 1})
    runs = [await start(db, "simple-echo") for _ in range(3)]
    assert (await _acquire(db, runs[0]))["outcome"] == "acquired"
    second = await db.runs.acquire(runs[1], owner="w", lease_seconds=30)
    assert second.throttle is not None and second.throttle.retry_at is not None
    # The second run is cancelled while it waits for its turn: the third takes that turn, not the next.
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET status = 'Cancelled', ended_at = now() WHERE id = %s", (runs[1],))
    third = await db.runs.acquire(runs[2], owner="w", lease_seconds=30)
    assert third.throttle is not None and third.throttle.retry_at == second.throttle.retry_at


async def test_a_suspended_run_keeps_its_place_under_a_concurrency_limit(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await client.patch("/api/v1/workflows/simple-echo/limits", json={"maxConcurrentExecutions": 1})
    first, second = await start(db, "simple-echo"), await start(db, "simple-echo")
    assert (await _acquire(db, first))["outcome"] == "acquired"
    # Suspended after it started: resuming it is not admitted again, so it holds its place meanwhile.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.executions SET status = 'Suspended', lease_owner = NULL, suspended_at = now() WHERE id = %s",
            (first,),
        )
    assert (await _acquire(db, second))["outcome"] == "throttled"


async def test_a_delivery_over_its_hooks_own_limit_is_a_row_and_says_whose_limit(dsn: str, db: Database) -> None:
    """Its sender's bucket has room, its hook's is empty (other senders used it): the 429 is a
    delivery row like every other refusal (there was none), and it says the hook's rate is over the
    limit (it said "this caller's", whose bucket had room)."""
    app = create_app(Settings(database_url=dsn, api_rate_per_minute=60, api_rate_burst=3))
    async with AsyncTestClient(app) as client:
        async with AsyncTestClient(create_app(Settings(database_url=dsn, api_rate_per_minute=0))) as setup:
            raw = load_fixture("bundle1/simple-echo-workflow.json")
            assert (await setup.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)).status_code == 201
            hook = await setup.post(
                "/api/v1/workflows/simple-echo/triggers",
                json={"kind": "webhook", "name": "busy", "config": {"signature": "none"}},
            )
            assert hook.status_code == 201, hook.text
        trigger_id = hook.json()["id"]
        for _ in range(3):  # other senders emptied the hook's bucket
            await db.limits.take_token(tenant="-", subject=f"hook:{trigger_id}", per_second=1.0, burst=3)
        refused = await client.post(f"/api/v1/hooks/{trigger_id}", json={"n": 1})
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"].startswith("this hook's delivery rate is over the limit"), refused.text
        # One set of RateLimit fields, the hook's bucket's (empty): the sender's (2 left) were added too.
        for name in RATE_HEADERS:
            assert len(refused.headers.get_list(name)) == 1, (name, refused.headers)
        assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
    deliveries = await db.webhooks.deliveries(uuid.UUID(trigger_id), limit=10)
    assert [(d.outcome, d.status_code, (d.reason or "").split(":")[0]) for d in deliveries] == [
        ("refused", 429, "rate_limited")
    ]


async def test_a_rate_admitted_runs_first_node_starts_no_earlier_than_the_run(db: Database, dsn: str) -> None:
    """A review of the admission's own time as the run's start: the acquire's transaction stamped the
    run's first node with its start (now()), a second before the run's."""
    (run,) = await _rate_limited_runs(db, 1)
    async with _old_and_fresh(dsn) as (old, _):
        await old.execute("SELECT pg_sleep(1.0)")  # a batch's transaction, begun before
        assert (await (await old.execute(ACQUIRE, (run,))).fetchone()) == ("acquired",)
        await old.commit()
        cur = await old.execute(
            "SELECT e.started_at, min(n.started_at) FROM dw.executions e"
            " JOIN dw.node_states n ON n.execution_id = e.id AND n.started_at IS NOT NULL"
            " WHERE e.id = %s GROUP BY e.started_at",
            (run,),
        )
        run_start, first_node_start = await cur.fetchone()  # type: ignore[misc]
    assert run_start <= first_node_start, (run_start, first_node_start)
