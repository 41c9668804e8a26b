"""The triggers API (api/triggers.py): schedules and webhooks added to a workflow, listed, changed
and removed; a signed webhook's secret answered once and stored encrypted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from dataworkflows.templating import MAX_TEMPLATE_CHARS
from tests.integration.test_api import assert_problem
from tests.integration.test_composition_api import publish_over_api
from tests.integration.test_runtime import echo, wf

KEY = Cipher.generate_key()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, credentials_key=KEY))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_a_schedule_and_a_webhook_round_trip(client: AsyncTestClient[Any], db: Database) -> None:
    await publish_over_api(client, wf("nightly", echo("e")))
    schedule = {"kind": "schedule", "name": "every-night", "config": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}}
    created = await client.post("/api/v1/workflows/nightly/triggers", json=schedule, headers={"X-Principal-Id": "ops"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["kind"], body["name"], body["enabled"], body["hasSecret"], body["createdBy"]) == (
        "schedule",
        "every-night",
        True,
        False,
        "ops",
    )
    assert body["secret"] is None and body["hookUrl"] is None
    # Its next tick before any scheduler's pass (it was null, "next -", as for a schedule that never fires).
    due = datetime.fromisoformat(body["nextTickAt"])
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 2 and timedelta(0) < due - datetime.now(UTC) <= timedelta(
        days=1
    )
    assert body["nextTickAt"] == (await client.get(f"/api/v1/triggers/{body['id']}")).json()["nextTickAt"]

    hook = await client.post("/api/v1/workflows/nightly/triggers", json={"kind": "webhook", "name": "inbound"})
    assert hook.status_code == 201, hook.text
    answered = hook.json()
    assert answered["hasSecret"] and len(answered["secret"]) >= 32
    assert answered["hookUrl"] == f"/api/v1/hooks/{answered['id']}"
    # Stored encrypted (bound to the trigger), and never shown again.
    stored = await db.triggers.secret(uuid.UUID(answered["id"]))
    assert stored is not None and answered["secret"].encode() not in stored
    assert Cipher.from_setting(KEY).decrypt(stored, f"trigger:{answered['id']}") == answered["secret"]
    again = (await client.get(f"/api/v1/triggers/{answered['id']}")).json()
    assert again["secret"] is None and again["hasSecret"]

    listed = (await client.get("/api/v1/workflows/nightly/triggers")).json()
    assert [t["name"] for t in listed] == ["every-night", "inbound"]
    assert [t["name"] for t in (await client.get("/api/v1/triggers", params={"kind": "webhook"})).json()] == ["inbound"]

    disabled = await client.patch(f"/api/v1/triggers/{body['id']}", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert disabled.json()["nextTickAt"] is None  # a disabled schedule never fires
    changed = await client.patch(f"/api/v1/triggers/{body['id']}", json={"config": {"cron": "@hourly"}})
    assert changed.status_code == 200 and changed.json()["config"] == {"cron": "@hourly"}
    assert (await client.delete(f"/api/v1/triggers/{body['id']}")).status_code == 204
    assert_problem(await client.get(f"/api/v1/triggers/{body['id']}"), 404)
    assert_problem(await client.delete(f"/api/v1/triggers/{body['id']}"), 404)


async def test_bad_triggers_are_refused_with_reasons(client: AsyncTestClient[Any]) -> None:
    await publish_over_api(client, wf("target", echo("e")))
    url = "/api/v1/workflows/target/triggers"
    bad_cron = await client.post(url, json={"kind": "schedule", "name": "x", "config": {"cron": "61 * * * *"}})
    assert_problem(bad_cron, 422)
    assert any(e["pointer"].startswith("/config/cron") for e in bad_cron.json()["errors"])
    bad_zone = {"kind": "schedule", "name": "x", "config": {"cron": "@daily", "timezone": "Mars/Olympus"}}
    assert_problem(await client.post(url, json=bad_zone), 422)
    bad_overlap = {"kind": "schedule", "name": "x", "config": {"cron": "@daily", "overlap": "queueAll"}}
    refused_overlap = await client.post(url, json=bad_overlap)
    assert_problem(refused_overlap, 422)
    assert [e["pointer"] for e in refused_overlap.json()["errors"]] == ["/config/overlap"]
    # A payload deeper than an execute's trigger may be (DW_MAX_TRIGGER_DEPTH, 32): refused as there.
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"a": deep}
    too_deep = await client.post(
        url, json={"kind": "schedule", "name": "x", "config": {"cron": "@daily", "payload": deep}}
    )
    assert_problem(too_deep, 422)
    assert [e["pointer"] for e in too_deep.json()["errors"]] == ["/config/payload"]
    assert_problem(await client.post(url, json={"kind": "cron", "name": "x"}), 422)
    assert_problem(await client.post(url, json={"kind": "webhook", "name": "bad name!"}), 422)
    condition = {"kind": "webhook", "name": "y", "config": {"activationCondition": "body.x ==="}}
    refused = await client.post(url, json=condition)
    assert_problem(refused, 422)
    assert refused.json()["errors"][0]["pointer"] == "/config/activationCondition"
    assert_problem(await client.post("/api/v1/workflows/nope/triggers", json={"kind": "webhook", "name": "z"}), 404)
    short = {"kind": "webhook", "name": "z", "secret": "short"}
    assert_problem(await client.post(url, json=short), 422)
    first = await client.post(url, json={"kind": "webhook", "name": "dup", "config": {"signature": "none"}})
    assert first.status_code == 201 and first.json()["secret"] is None
    taken = assert_problem(
        await client.post(url, json={"kind": "webhook", "name": "dup", "config": {"signature": "none"}}), 409
    )
    assert taken["code"] == "trigger_name_taken" and "unique among the tenant's" in taken["detail"]
    assert "constraint" not in taken["detail"]
    # The kinds said as they are: an event trigger's name is unique among event triggers too.
    assert "schedules, webhooks or event triggers" in taken["detail"]
    # Signed and unsigned are different triggers.
    flip = await client.patch(f"/api/v1/triggers/{first.json()['id']}", json={"config": {"signature": "github"}})
    assert_problem(flip, 422)
    assert_problem(await client.get("/api/v1/triggers/not-a-uuid"), 404)


async def test_a_payload_template_is_bounded_and_compiled_off_the_event_loop(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a webhook's payloadTemplate had no bound, and was compiled on the API's event loop: 20,000
    lookups (600 kB, under the body limit) took 11 s to create or change, and every other request (the
    webhook receiver's too) waited as long. Past templating.MAX_TEMPLATE_CHARS it is refused before it is
    compiled; within it, compiled in a thread (not the event loop's: checked by where the compile runs, not
    by how long anything took)."""
    import threading

    from dataworkflows import webhooks

    await publish_over_api(client, wf("target", echo("e")))
    url = "/api/v1/workflows/target/triggers"
    compiled_on: list[threading.Thread] = []
    check_template = webhooks.templating.check_template

    def recorded(template: Any) -> str | None:
        compiled_on.append(threading.current_thread())
        return check_template(template)

    monkeypatch.setattr(webhooks.templating, "check_template", recorded)

    def hook(name: str, lookups: int) -> dict[str, Any]:
        template = {f"k{i}": "{{ body.a" + str(i) + " }}" for i in range(lookups)}
        return {"kind": "webhook", "name": name, "config": {"signature": "none", "payloadTemplate": template}}

    refused = assert_problem(await client.post(url, json=hook("huge", 20_000)), 422)
    assert compiled_on == []  # refused, not compiled (that took 11 s)
    [error] = refused["errors"]
    assert (error["pointer"], error["code"]) == ("/config/payloadTemplate", "too_large")
    assert f"at most {MAX_TEMPLATE_CHARS} characters of templates" in error["detail"]
    loop_thread = threading.current_thread()
    created = await client.post(url, json=hook("large", 4_000))
    assert created.status_code == 201, created.text
    changed = await client.patch(
        f"/api/v1/triggers/{created.json()['id']}", json={"config": hook("large", 4_001)["config"]}
    )
    assert changed.status_code == 200, changed.text
    assert len(compiled_on) >= 2
    assert all(thread is not loop_thread for thread in compiled_on)


async def test_a_signed_webhook_needs_a_credentials_key(dsn: str) -> None:
    app = create_app(Settings(database_url=dsn))
    async with AsyncTestClient(app) as plain:
        await publish_over_api(plain, wf("keyless", echo("e")))
        signed = await plain.post("/api/v1/workflows/keyless/triggers", json={"kind": "webhook", "name": "s"})
        assert_problem(signed, 409)
        assert "DW_CREDENTIALS_KEY" in signed.json()["detail"]
        unsigned = {"kind": "webhook", "name": "u", "config": {"signature": "none"}}
        assert (await plain.post("/api/v1/workflows/keyless/triggers", json=unsigned)).status_code == 201


async def test_the_trigger_list_carries_each_triggers_latest_runs(client: AsyncTestClient[Any], db: Database) -> None:
    """The console read each trigger's runs with a request of its own: with a hundred triggers it
    passed the API's per-caller rate limit, and those rows showed "?". GET /api/v1/triggers now
    carries each one's latest runs (at most 5, newest first) and whether it has more."""
    from tests.conftest import start

    await publish_over_api(client, wf("hooked", echo("e")))
    busy = (await client.post("/api/v1/workflows/hooked/triggers", json={"kind": "webhook", "name": "busy"})).json()
    idle = (await client.post("/api/v1/workflows/hooked/triggers", json={"kind": "webhook", "name": "idle"})).json()
    started = [await start(db, "hooked", {"n": n}) for n in range(7)]
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET trigger_id = %s WHERE id = ANY(%s)", (busy["id"], started))
    listed = {t["name"]: t for t in (await client.get("/api/v1/triggers")).json()}
    assert [r["id"] for r in listed["busy"]["recentRuns"]] == [str(e) for e in reversed(started)][:5]
    assert listed["busy"]["moreRuns"] is True and listed["busy"]["recentRuns"][0]["status"] == "Pending"
    assert (listed["idle"]["recentRuns"], listed["idle"]["moreRuns"]) == ([], False)
    one = (await client.get(f"/api/v1/triggers/{idle['id']}")).json()
    assert one["recentRuns"] is None, "the list only"


async def test_a_workflows_triggers_filter_by_kind(client: AsyncTestClient[Any]) -> None:
    """GET /workflows/{id}/triggers took ?kind= and ignored it, an unknown kind too."""
    await publish_over_api(client, wf("kinds", echo("e")))
    schedule = {"kind": "schedule", "name": "nightly-kinds", "config": {"cron": "0 2 * * *"}}
    assert (await client.post("/api/v1/workflows/kinds/triggers", json=schedule)).status_code == 201
    hook = {"kind": "webhook", "name": "hook-kinds", "config": {"signature": "none"}}
    assert (await client.post("/api/v1/workflows/kinds/triggers", json=hook)).status_code == 201
    for kind, names in (("schedule", ["nightly-kinds"]), ("webhook", ["hook-kinds"])):
        listed = await client.get("/api/v1/workflows/kinds/triggers", params={"kind": kind})
        assert [t["name"] for t in listed.json()] == names, listed.text
    assert len((await client.get("/api/v1/workflows/kinds/triggers")).json()) == 2
    assert (await client.get("/api/v1/workflows/kinds/triggers", params={"kind": "cron"})).status_code == 400
