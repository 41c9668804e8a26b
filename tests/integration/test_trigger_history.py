"""What operators read of a trigger's history: a webhook's deliveries and a schedule's ticks, over
the API (GET /api/v1/triggers/{id}/deliveries and /ticks), the CLI (`triggers deliveries|ticks`) and
the reporting views (dw.v_webhook_deliveries, dw.v_schedule_ticks, migration 0050)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient, TestClient

from dataworkflows import cli
from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.statuses import WebhookOutcome
from dataworkflows.tenancy import all_tenants
from dataworkflows.workers.scheduler import Scheduler
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import sql

ACME = {"X-Tenant-Id": "acme", "X-Principal-Id": "ana"}
GLOBEX = {"X-Tenant-Id": "globex", "X-Principal-Id": "bo"}


def settings(dsn: str) -> Settings:
    # Deliveries and list pages in quick succession: the per-caller rate limit has its own tests.
    return Settings(database_url=dsn, api_rate_per_minute=0, api_access_log=False)


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings(dsn))) as test_client:
        yield test_client


async def workflow(client: AsyncTestClient[Any], headers: dict[str, str]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=headers)
    assert created.status_code == 201, created.text


async def trigger(client: AsyncTestClient[Any], headers: dict[str, str], kind: str, name: str, **config: Any) -> str:
    created = await client.post(
        "/api/v1/workflows/simple-echo/triggers", json={"kind": kind, "name": name, "config": config}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def three_deliveries(client: AsyncTestClient[Any], hook: str) -> list[Any]:
    """An accepted delivery, its duplicate and a refused one (a body that is not JSON), in that order."""
    url = f"/api/v1/hooks/{hook}"
    accepted = await client.post(url, json={"order": 42}, headers={"X-Delivery-Id": "order-42"})
    duplicate = await client.post(url, json={"order": 42}, headers={"X-Delivery-Id": "order-42"})
    refused = await client.post(
        url, content=b'{"unclosed": ', headers={"Content-Type": "application/json", "X-Delivery-Id": "order-43"}
    )
    assert (accepted.status_code, duplicate.status_code, refused.status_code) == (202, 200, 400)
    return [accepted.json(), duplicate.json(), refused.json()]


def next_link(response: Any) -> str | None:
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("link", ""))
    return match.group(1) if match else None


async def fire_three_hourly_ticks(
    db: Database, schedule: str, outcomes: tuple[str, ...] = ("started",) * 3
) -> list[datetime]:
    """An hourly schedule (catchUp all, maxCatchUp 3) two hours behind: a scheduler's pass fires the
    three ticks due, oldest first. Returns them newest first."""
    now = datetime.now(UTC)
    latest = now.replace(minute=0, second=0, microsecond=0)
    with all_tenants():
        await sql(
            db,
            "UPDATE dw.triggers SET next_tick_at = %s, last_tick_at = %s WHERE id = %s",
            latest - timedelta(hours=2),
            latest - timedelta(hours=3),
            uuid.UUID(schedule),
        )
        fired = await Scheduler(db, Settings(scheduler_interval_seconds=0.5)).run_pass()
    assert [t.outcome for t in fired] == list(outcomes), fired
    return [latest - timedelta(hours=h) for h in range(3)]


async def test_a_webhooks_deliveries_newest_first_filtered_and_paged(client: AsyncTestClient[Any]) -> None:
    await workflow(client, ACME)
    hook = await trigger(client, ACME, "webhook", "orders-in", signature="none")
    accepted, duplicate, _refused = await three_deliveries(client, hook)
    url = f"/api/v1/triggers/{hook}/deliveries"

    listed = await client.get(url, headers=ACME)
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    assert [(r["outcome"], r["statusCode"], r["deliveryId"]) for r in rows] == [
        ("refused", 400, "order-43"),
        ("duplicate", 200, "order-42"),
        ("accepted", 202, "order-42"),
    ]
    assert rows[2]["executionId"] == accepted["executionId"] == duplicate["executionId"]
    assert rows[0]["executionId"] is None and rows[0]["reason"], rows[0]
    assert rows[2]["bodyBytes"] == len(b'{"order":42}') and rows[0]["bodyBytes"] == len(b'{"unclosed": ')
    # The wire names; never the content hash (a hash of what a signature covers).
    assert set(rows[0]) == {
        "id",
        "deliveryId",
        "receivedAt",
        "outcome",
        "reason",
        "statusCode",
        "executionId",
        "bodyBytes",
        "lapsedAt",
    }
    assert rows[0]["id"] > rows[1]["id"] > rows[2]["id"] and "link" not in listed.headers

    only = await client.get(url, params={"outcome": "duplicate"}, headers=ACME)
    assert [r["id"] for r in only.json()] == [rows[1]["id"]]
    for outcome in WebhookOutcome:
        assert (await client.get(url, params={"outcome": outcome}, headers=ACME)).status_code == 200

    # A page of one, then the Link's next pages (the filter kept), to the end.
    seen: list[int] = []
    page = await client.get(url, params={"limit": 1}, headers=ACME)
    while True:
        assert page.status_code == 200, page.text
        seen += [r["id"] for r in page.json()]
        following = next_link(page)
        if following is None:
            break
        assert "limit=1" in following
        page = await client.get(following, headers=ACME)
    assert seen == [r["id"] for r in rows]
    # A cursor of another list (the unfiltered one) is refused for the filtered one.
    first = await client.get(url, params={"limit": 1}, headers=ACME)
    cursor = re.search(r"cursor=([^&>]+)", first.headers["link"])
    assert cursor is not None
    other = await client.get(url, params={"outcome": "refused", "cursor": cursor.group(1)}, headers=ACME)
    assert assert_problem(other, 400)["errors"][0]["parameter"] == "cursor"


async def test_a_schedules_ticks_newest_first_and_paged(client: AsyncTestClient[Any], db: Database) -> None:
    await workflow(client, ACME)
    schedule = await trigger(client, ACME, "schedule", "hourly", cron="0 * * * *", catchUp="all", maxCatchUp=3)
    expected = await fire_three_hourly_ticks(db, schedule)
    url = f"/api/v1/triggers/{schedule}/ticks"

    listed = await client.get(url, headers=ACME)
    assert listed.status_code == 200, listed.text
    ticks = listed.json()
    assert [datetime.fromisoformat(t["tickAt"]) for t in ticks] == expected
    assert set(ticks[0]) == {
        "tickAt",
        "firedAt",
        "executionId",
        "missedTicks",
        "overlappedBy",
        "buffered",
        "runRemoved",
    }
    assert all(t["overlappedBy"] is None and t["buffered"] is False and t["runRemoved"] is False for t in ticks)
    assert all(t["missedTicks"] == 0 and t["executionId"] for t in ticks)
    runs = (await client.get("/api/v1/executions", params={"triggerId": schedule}, headers=ACME)).json()["items"]
    assert {r["id"] for r in runs} == {t["executionId"] for t in ticks}

    first = await client.get(url, params={"limit": 2}, headers=ACME)
    following = next_link(first)
    assert [t["tickAt"] for t in first.json()] == [t["tickAt"] for t in ticks[:2]] and following
    rest = await client.get(following, headers=ACME)
    assert [t["tickAt"] for t in rest.json()] == [ticks[2]["tickAt"]] and next_link(rest) is None
    # A tick whose run retention removed since still names it, and says so (a review: the id was a
    # 404 without a word).
    with all_tenants():
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE dw.schedule_ticks SET execution_id = gen_random_uuid() WHERE trigger_id = %s AND tick_at = %s",
                (schedule, expected[0]),
            )
    removed, *kept = (await client.get(url, headers=ACME)).json()
    assert removed["runRemoved"] is True and removed["executionId"] is not None
    assert [t["runRemoved"] for t in kept] == [False, False]
    # So does dw.v_schedule_ticks for psql (it said nothing: a join to dw.v_executions found no row).
    with all_tenants():
        async with db.connection() as conn:
            cursor = await conn.execute(
                "SELECT run_removed FROM dw.v_schedule_ticks WHERE trigger_id = %s ORDER BY tick_at DESC", (schedule,)
            )
            assert [row[0] for row in await cursor.fetchall()] == [True, False, False]

    # Under overlap skip, the catch-up's first tick runs and the two after it (its run still going:
    # no worker here) are listed without a run, naming the run they met.
    skipping = await trigger(
        client, ACME, "schedule", "hourly-skip", cron="0 * * * *", catchUp="all", maxCatchUp=3, overlap="skip"
    )
    await fire_three_hourly_ticks(db, skipping, ("started", "overlapped", "overlapped"))
    newest, middle, oldest = (await client.get(f"/api/v1/triggers/{skipping}/ticks", headers=ACME)).json()
    assert oldest["executionId"] is not None and oldest["overlappedBy"] is None
    assert [(t["executionId"], t["overlappedBy"]) for t in (newest, middle)] == [(None, oldest["executionId"])] * 2


async def test_another_tenants_trigger_the_wrong_kind_and_bad_values(client: AsyncTestClient[Any]) -> None:
    await workflow(client, ACME)
    hook = await trigger(client, ACME, "webhook", "orders-in", signature="none")
    schedule = await trigger(client, ACME, "schedule", "nightly", cron="0 2 * * *")
    # Another tenant's trigger is unknown there, as its GET is.
    for path in (f"/api/v1/triggers/{hook}/deliveries", f"/api/v1/triggers/{schedule}/ticks"):
        assert assert_problem(await client.get(path, headers=GLOBEX), 404)["code"] == "not_found"
        assert (await client.get(path, headers=ACME)).status_code == 200
    missing = await client.get(f"/api/v1/triggers/{uuid.uuid4()}/ticks", headers=ACME)
    assert_problem(missing, 404)
    assert_problem(await client.get("/api/v1/triggers/not-a-uuid/deliveries", headers=ACME), 404)
    # The wrong kind: the trigger exists, it has no such history (409, as rotating a schedule's secret).
    ticks_of_hook = assert_problem(await client.get(f"/api/v1/triggers/{hook}/ticks", headers=ACME), 409)
    assert "is a webhook: only a schedule has ticks" in ticks_of_hook["detail"]
    deliveries_of_schedule = await client.get(f"/api/v1/triggers/{schedule}/deliveries", headers=ACME)
    assert "is a schedule: only a webhook has deliveries" in assert_problem(deliveries_of_schedule, 409)["detail"]
    # An unknown outcome is a mistake, not a filter that matches nothing.
    bad = assert_problem(
        await client.get(f"/api/v1/triggers/{hook}/deliveries", params={"outcome": "delivered"}, headers=ACME), 400
    )
    assert bad["code"] == "bad_request" and [e["parameter"] for e in bad["errors"]] == ["outcome"]
    assert "accepted, duplicate, not_activated, refused" in bad["detail"]


async def test_the_outcomes_are_the_tables_check_constraint(db: Database) -> None:
    [(definition,)] = await sql(
        db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'webhook_deliveries_outcome_check'"
    )
    assert sorted(WebhookOutcome) == sorted(definition.split("'")[1::2])


# The CLI against the API, in a thread (its client is synchronous), the app served by a TestClient.


@pytest.fixture
def cli_against(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def client(args: Any) -> TestClient[Any]:
        # The CLI's own client names the tenant from $DW_TENANT_ID; this one, as it would.
        served = TestClient(create_app(settings(dsn)))
        served.headers.update(ACME)
        return served

    monkeypatch.setattr(cli, "_client", client)
    yield


def printed_rows(out: str) -> list[str]:
    """The CLI's lines, each starting with its time (the app in the test writes its log lines there too)."""
    return [line for line in out.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]


def run_cli(*argv: str) -> int:
    args = cli.build_parser().parse_args(["triggers", *argv])
    code = args.func(args)
    assert isinstance(code, int)
    return code


@pytest.mark.usefixtures("cli_against")
async def test_the_cli_prints_deliveries_and_ticks(
    client: AsyncTestClient[Any], db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    await workflow(client, ACME)
    hook = await trigger(client, ACME, "webhook", "orders-in", signature="none")
    accepted, _, _ = await three_deliveries(client, hook)
    schedule = await trigger(client, ACME, "schedule", "hourly", cron="0 * * * *", catchUp="all", maxCatchUp=3)
    expected = await fire_three_hourly_ticks(db, schedule)

    assert await asyncio.to_thread(run_cli, "deliveries", hook) == cli.EXIT_OK
    lines = printed_rows(capsys.readouterr().out)
    assert [line.split()[1:3] for line in lines] == [["refused", "400"], ["duplicate", "200"], ["accepted", "202"]]
    assert accepted["executionId"] in lines[2] and "order-42" in lines[2] and "reason: " in lines[0]

    assert await asyncio.to_thread(run_cli, "deliveries", hook, "--outcome", "accepted", "--json") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert '"outcome": "accepted"' in out and '"refused"' not in out

    assert await asyncio.to_thread(run_cli, "deliveries", hook, "--limit", "2") == cli.EXIT_OK
    captured = capsys.readouterr()
    more = re.search(r"^more: add --cursor (\S+)$", captured.err, re.M)
    assert len(printed_rows(captured.out)) == 2 and more is not None, captured
    cursor = more.group(1)
    assert await asyncio.to_thread(run_cli, "deliveries", hook, "--limit", "2", "--cursor", cursor) == cli.EXIT_OK
    captured = capsys.readouterr()
    [last] = printed_rows(captured.out)
    assert last.split()[1] == "accepted" and "more:" not in captured.err

    assert await asyncio.to_thread(run_cli, "ticks", schedule) == cli.EXIT_OK
    lines = printed_rows(capsys.readouterr().out)
    assert [datetime.fromisoformat(line.split()[0]) for line in lines] == expected
    assert all("late" in line and "removed" not in line for line in lines)
    with all_tenants():
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE dw.schedule_ticks SET execution_id = gen_random_uuid() WHERE trigger_id = %s AND tick_at = %s",
                (schedule, expected[0]),
            )
    assert await asyncio.to_thread(run_cli, "ticks", schedule) == cli.EXIT_OK
    first = printed_rows(capsys.readouterr().out)[0]
    assert first.endswith("(its run was removed by retention)"), first

    # The wrong kind: the API's refusal, a usage error.
    assert await asyncio.to_thread(run_cli, "ticks", hook) == cli.EXIT_USAGE
    assert "HTTP 409" in capsys.readouterr().err


# The reporting views.


async def test_the_views_show_a_reporting_login_the_tenants_it_was_granted(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    await workflow(client, ACME)
    await workflow(client, GLOBEX)
    acme_hook = await trigger(client, ACME, "webhook", "orders-in", signature="none")
    globex_hook = await trigger(client, GLOBEX, "webhook", "orders-in", signature="none")
    await three_deliveries(client, acme_hook)
    assert (await client.post(f"/api/v1/hooks/{globex_hook}", json={"x": 1})).status_code == 202
    schedule = await trigger(client, ACME, "schedule", "hourly", cron="0 * * * *", catchUp="all", maxCatchUp=3)
    expected = await fire_three_hourly_ticks(db, schedule)
    reporter = f"reporter_{uuid.uuid4().hex[:8]}"

    async def as_reporter(tenant: str, query: str) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (tenant,))
            return await (await conn.execute(query)).fetchall()

    deliveries = (
        "SELECT tenant_id, trigger_name, trigger_kind, workflow_id, outcome, status_code, delivery_id "
        "FROM dw.v_webhook_deliveries ORDER BY tenant_id, received_at DESC, id DESC"
    )
    ticks = (
        "SELECT tenant_id, trigger_name, trigger_kind, workflow_id, tick_at, execution_id IS NOT NULL, missed_ticks, "
        "lateness_seconds >= 0 FROM dw.v_schedule_ticks ORDER BY tick_at DESC"
    )
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting")
    try:
        assert await as_reporter("acme", deliveries) == [], "no grant: nothing"
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(
                "INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, 'acme')", (reporter,)
            )
        acme_rows = [
            ("acme", "orders-in", "webhook", "simple-echo", "refused", 400, "order-43"),
            ("acme", "orders-in", "webhook", "simple-echo", "duplicate", 200, "order-42"),
            ("acme", "orders-in", "webhook", "simple-echo", "accepted", 202, "order-42"),
        ]
        assert await as_reporter("acme", deliveries) == acme_rows
        assert await as_reporter("*", deliveries) == acme_rows, "'*' shows only what it was granted"
        assert await as_reporter("globex", deliveries) == []
        assert await as_reporter("acme", ticks) == [
            ("acme", "hourly", "schedule", "simple-echo", at, True, 0, True) for at in expected
        ]
        assert await as_reporter("globex", ticks) == []
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, '*')", (reporter,))
        everything = await as_reporter("*", deliveries)
        assert [row[0] for row in everything] == ["acme"] * 3 + ["globex"]
        # A delivery without an id is known by its content hash: the API shows it (its sender was
        # answered with it), the view does not (a short body could be found from it).
        (listed,) = (await client.get(f"/api/v1/triggers/{globex_hook}/deliveries", headers=GLOBEX)).json()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", listed["deliveryId"])
        assert everything[-1][6] == "sha256:(content hash)"
        # Nor in a reason that names it: a signed request sent again under another id is a duplicate
        # "first received at ... under delivery id sha256:…" (dw.claim_webhook_delivery_v2).
        first = "the same signed request was first received at 2026-12-06T00:00:00Z under delivery id "
        reason = first + listed["deliveryId"]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(
                "INSERT INTO dw.webhook_deliveries (tenant_id, trigger_id, delivery_id, outcome, reason, status_code)"
                " VALUES ('globex', %s, 'resend-1', 'duplicate', %s, 200)",
                (uuid.UUID(globex_hook), reason),
            )
        reasons = await as_reporter("globex", "SELECT delivery_id, reason FROM dw.v_webhook_deliveries ORDER BY id")
        assert reasons[-1] == ("resend-1", first + "sha256:(content hash)")
        # Nor the body's values that a failed payloadTemplate's error quotes (a review): the API shows
        # the error whole, the view its code and what failed.
        quoting = await trigger(
            client,
            GLOBEX,
            "webhook",
            "looks-up",
            signature="none",
            payloadTemplate={"who": "{{ body.users[body.user] }}"},
        )
        secret_value = "ssn-078-05-1120"
        sent = await client.post(f"/api/v1/hooks/{quoting}", json={"users": {}, "user": secret_value})
        assert sent.status_code == 422, sent.text
        (refused,) = (await client.get(f"/api/v1/triggers/{quoting}/deliveries", headers=GLOBEX)).json()
        assert secret_value in refused["reason"]
        (seen,) = await as_reporter(
            "globex", f"SELECT reason FROM dw.v_webhook_deliveries WHERE trigger_id = '{quoting}'"
        )
        assert secret_value not in seen[0] and seen[0].startswith("payload_template_error: "), seen
        # The views, not the tables under them, nor a delivery's content hash.
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            for statement in (
                "SELECT * FROM dw.webhook_deliveries",
                "SELECT * FROM dw.schedule_ticks",
                "SELECT * FROM dw.triggers",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(statement)
            columns = await (
                await conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'dw' AND table_name = 'v_webhook_deliveries'"
                )
            ).fetchall()
            assert "content_hash" not in {c[0] for c in columns} and ("tenant_id",) in columns
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("DELETE FROM dw.reporting_tenants WHERE role_name = %s", (reporter,))
            await admin.execute(f"DROP ROLE {reporter}")
