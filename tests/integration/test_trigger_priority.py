"""A trigger's own priority (README "Run priority"): the runs a webhook, an event trigger or a
schedule starts take it, else their workflow's orchestration.priority (planning's note: a schedule
or a webhook had no priority of its own). Set at creation, changed or cleared by PATCH, shown by
the API and the CLI."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.db import Database
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import sql
from tests.integration.test_webhooks import deliver, settings


async def make_workflow(client: AsyncTestClient[Any], workflow_id: str, priority: int | None = None) -> None:
    raw = {**load_fixture("bundle1/simple-echo-workflow.json"), "id": workflow_id}
    if priority is not None:
        raw["orchestration"] = {**raw.get("orchestration", {}), "priority": priority}
    made = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert made.status_code == 201, made.text


async def run_priority(db: Database, execution_id: str) -> tuple[int, int]:
    """The run's priority and its queued job's."""
    found = await sql(
        db,
        "SELECT e.priority, j.priority FROM dw.executions e JOIN procrastinate_jobs j"
        " ON j.args ->> 'execution_id' = e.id::text WHERE e.id = %s",
        uuid.UUID(execution_id),
    )
    return found[0][0], found[0][1]


async def test_an_event_triggers_runs_take_its_priority_and_then_the_workflows(dsn: str, db: Database) -> None:
    async with AsyncTestClient(create_app(settings(dsn))) as client:
        await make_workflow(client, "urgent-orders", priority=5)
        made = await client.post(
            "/api/v1/workflows/urgent-orders/triggers",
            json={"kind": "event", "name": "vip", "config": {"eventType": "shop.vip.*"}, "priority": 60},
        )
        assert made.status_code == 201, made.text
        trigger = made.json()
        assert trigger["priority"] == 60
        assert (await client.get(f"/api/v1/triggers/{trigger['id']}")).json()["priority"] == 60
        listed = (await client.get("/api/v1/triggers")).json()
        assert [t["priority"] for t in listed if t["id"] == trigger["id"]] == [60]

        def event(n: int) -> dict[str, Any]:
            return {"specversion": "1.0", "id": f"v-{n}", "source": "/shop", "type": "shop.vip.order"}

        first = (await client.post("/api/v1/events", json=event(1))).json()["deliveries"][0]["executionId"]
        assert await run_priority(db, first) == (60, 60)
        # A PATCH that leaves it out keeps it; null clears it: the workflow's again.
        kept = await client.patch(f"/api/v1/triggers/{trigger['id']}", json={"enabled": True})
        assert kept.json()["priority"] == 60
        cleared = await client.patch(f"/api/v1/triggers/{trigger['id']}", json={"priority": None})
        assert cleared.status_code == 200 and cleared.json()["priority"] is None
        second = (await client.post("/api/v1/events", json=event(2))).json()["deliveries"][0]["executionId"]
        assert await run_priority(db, second) == (5, 5)
        changed = await client.patch(f"/api/v1/triggers/{trigger['id']}", json={"priority": -20})
        assert changed.json()["priority"] == -20
        third = (await client.post("/api/v1/events", json=event(3))).json()["deliveries"][0]["executionId"]
        assert await run_priority(db, third) == (-20, -20)


@pytest.mark.parametrize("priority", [101, -101, "high", 1.5])
async def test_a_priority_out_of_range_is_refused(dsn: str, priority: Any) -> None:
    async with AsyncTestClient(create_app(settings(dsn))) as client:
        await make_workflow(client, "ranged")
        made = await client.post(
            "/api/v1/workflows/ranged/triggers",
            json={"kind": "event", "name": "r", "config": {"eventType": "*"}, "priority": priority},
        )
        # Refused as every body field out of its type or range is (400, naming it).
        assert [e["pointer"] for e in assert_problem(made, 400)["errors"]] == ["/priority"]
        ok = await client.post(
            "/api/v1/workflows/ranged/triggers", json={"kind": "event", "name": "r", "config": {"eventType": "*"}}
        )
        patched = await client.patch(f"/api/v1/triggers/{ok.json()['id']}", json={"priority": priority})
        assert [e["pointer"] for e in assert_problem(patched, 400)["errors"]] == ["/priority"]


async def test_a_webhooks_runs_take_its_priority(dsn: str, db: Database) -> None:
    async with AsyncTestClient(create_app(settings(dsn))) as client:
        await make_workflow(client, "hooked-priority")
        made = await client.post(
            "/api/v1/workflows/hooked-priority/triggers",
            json={"kind": "webhook", "name": "in", "config": {"signature": "none"}, "priority": 30},
        )
        assert made.status_code == 201, made.text
        response, _, _ = await deliver(client, made.json()["id"], {"n": 1})
        assert response.status_code == 202, response.text
        assert await run_priority(db, response.json()["executionId"]) == (30, 30)


async def test_a_schedules_tick_takes_its_priority(dsn: str, db: Database) -> None:
    async with AsyncTestClient(create_app(settings(dsn))) as client:
        await make_workflow(client, "ticking")
        made = await client.post(
            "/api/v1/workflows/ticking/triggers",
            json={"kind": "schedule", "name": "every", "config": {"cron": "* * * * *"}, "priority": 70},
        )
        assert made.status_code == 201, made.text
    trigger_id = uuid.UUID(made.json()["id"])
    started = await sql(
        db,
        "SELECT execution_id FROM dw.start_triggered_v1(%s, 'schedule:test-tick', '{}'::jsonb, 'executions')",
        trigger_id,
    )
    assert await run_priority(db, str(started[0][0])) == (70, 70)


async def test_the_triggers_priority_command(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dataworkflows.cli import EXIT_OK, EXIT_USAGE, cmd_triggers_create, cmd_triggers_priority
    from tests.integration.cli_api import cli_command, served_api

    async with AsyncTestClient(create_app(settings(dsn))) as client:
        await make_workflow(client, "by-cli-priority")
    async with served_api(dsn) as url:
        create = cli_command(url, capsys, cmd_triggers_create, "triggers", "create")
        code, out, err = await create(
            "by-cli-priority", "--kind", "event", "--name", "p", "--event-type", "x.*", "--priority", "40"
        )
        assert (code, err) == (EXIT_OK, ""), err
        line = out.splitlines()[-1]
        assert line.endswith("priority 40"), out
        trigger_id = line.split()[0]
        change = cli_command(url, capsys, cmd_triggers_priority, "triggers", "priority")
        code, out, err = await change(trigger_id, "none")
        assert (code, err) == (EXIT_OK, "") and out.splitlines()[-1].endswith("on x.*"), (out, err)
        code, out, err = await change(trigger_id, "-5")
        assert code == EXIT_OK and out.splitlines()[-1].endswith("priority -5"), out
    from dataworkflows.cli import build_parser

    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["triggers", "priority", trigger_id, "500"])
    assert refused.value.code == EXIT_USAGE
    assert "500: give -100 to 100" in capsys.readouterr().err
