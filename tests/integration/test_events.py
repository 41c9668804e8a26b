"""Event triggers (README "Events"): a CloudEvent published to POST /api/v1/events starts a run of
each workflow whose enabled event trigger matches its type (and source); a redelivery of the same
(source, id) starts nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows import events
from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import sql

OPS = {"X-Principal-Id": "ops"}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_trigger_depth=16))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def workflow(client: AsyncTestClient[Any], workflow_id: str, *, active: bool = True) -> None:
    raw = {**load_fixture("bundle1/simple-echo-workflow.json"), "id": workflow_id}
    made = await client.post("/api/v1/workflows", params={"autoActivate": str(active).lower()}, json=raw)
    assert made.status_code == 201, made.text


async def subscribe(client: AsyncTestClient[Any], workflow_id: str, name: str, **config: Any) -> str:
    made = await client.post(
        f"/api/v1/workflows/{workflow_id}/triggers", json={"kind": "event", "name": name, "config": config}, headers=OPS
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def event(event_id: str, type_: str = "com.shop.order.created", **more: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "/shop", "type": type_, **more}


async def test_an_event_starts_a_run_per_matching_trigger(client: AsyncTestClient[Any], db: Database) -> None:
    await workflow(client, "on-order")
    await workflow(client, "on-anything-shop")
    await workflow(client, "on-refund")
    exact = await subscribe(client, "on-order", "order-created", eventType="com.shop.order.created")
    prefix = await subscribe(client, "on-anything-shop", "shop-orders", eventType="com.shop.order.*", source="/shop")
    await subscribe(client, "on-refund", "refunds", eventType="com.shop.refund.created")
    await subscribe(client, "on-order", "elsewhere", eventType="*", source="/other")

    body = event("e-1", data={"orderId": "A-7", "total": 12}, subject="orders/A-7", time="2026-12-07T10:00:00Z")
    published = await client.post("/api/v1/events", json=body, headers=OPS)
    assert published.status_code == 202, published.text
    answer = published.json()
    assert (answer["eventId"], answer["source"], answer["type"], answer["duplicate"]) == (
        "e-1",
        "/shop",
        "com.shop.order.created",
        False,
    )
    by_trigger = {d["triggerId"]: d for d in answer["deliveries"]}
    assert set(by_trigger) == {exact, prefix}
    assert {d["outcome"] for d in answer["deliveries"]} == {"started"}

    run = (await client.get(f"/api/v1/executions/{by_trigger[exact]['executionId']}")).json()
    assert run["workflowId"] == "on-order" and run["triggerId"] == exact
    assert run["principalType"] == "event" and run["principalId"] == "ops"
    assert run["trigger"]["orderId"] == "A-7" and run["trigger"]["total"] == 12
    assert run["trigger"]["firedBy"] == {
        "kind": "event",
        "triggerId": exact,
        "name": "order-created",
        "eventId": "e-1",
        "source": "/shop",
        "type": "com.shop.order.created",
        "subject": "orders/A-7",
        "time": "2026-12-07T10:00:00+00:00",
    }
    listed = (await client.get("/api/v1/executions", params={"triggerKind": "event"})).json()["items"]
    assert {i["workflowId"] for i in listed} == {"on-order", "on-anything-shop"}

    # The producer delivers it again: nothing new, the first time's runs answered.
    again = await client.post("/api/v1/events", json=body, headers=OPS)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["deliveries"] == answer["deliveries"]
    assert len((await client.get("/api/v1/executions")).json()["items"]) == 2
    # The same (source, id) with other data is not the same event.
    reused = await client.post("/api/v1/events", json={**body, "data": {"orderId": "B"}})
    assert assert_problem(reused, 409)["code"] == "event_id_reused"

    rows = await sql(db, "SELECT type, triggers, runs_started, refused FROM dw.v_events ORDER BY id")
    assert rows == [("com.shop.order.created", 2, 2, 0)]


async def test_what_does_not_start_a_run(client: AsyncTestClient[Any]) -> None:
    await workflow(client, "draft-one", active=False)
    await workflow(client, "off")
    refused = await subscribe(client, "draft-one", "draft-orders", eventType="com.shop.order.created")
    disabled = await subscribe(client, "off", "off-orders", eventType="com.shop.order.created")
    assert (await client.patch(f"/api/v1/triggers/{disabled}", json={"enabled": False})).status_code == 200

    answer = (await client.post("/api/v1/events", json=event("e-2", data=[1, 2]))).json()
    assert [(d["triggerId"], d["outcome"]) for d in answer["deliveries"]] == [(refused, "refused")]
    assert "Draft" in answer["deliveries"][0]["reason"] or "not" in answer["deliveries"][0]["reason"]
    # No trigger for the type: accepted, nothing started.
    nothing = await client.post("/api/v1/events", json=event("e-3", "com.shop.cart.abandoned"))
    assert nothing.status_code == 202 and nothing.json()["deliveries"] == []
    # "order.*" is not "order" nor "orders.x".
    await workflow(client, "prefixed")
    await subscribe(client, "prefixed", "p", eventType="com.shop.order.*")
    for type_ in ("com.shop.order", "com.shop.orders.x"):
        answer = (await client.post("/api/v1/events", json=event(f"e-{type_}", type_))).json()
        assert answer["deliveries"] == [], type_


async def test_another_tenants_triggers_are_not_matched(client: AsyncTestClient[Any]) -> None:
    await workflow(client, "mine")
    await subscribe(client, "mine", "mine", eventType="com.shop.order.created")
    theirs = await client.post("/api/v1/events", json=event("e-4"), headers={"X-Tenant-Id": "acme"})
    assert theirs.status_code == 202 and theirs.json()["deliveries"] == []
    # The same (source, id) in this tenant is its own event.
    mine = (await client.post("/api/v1/events", json=event("e-4"))).json()
    assert mine["duplicate"] is False and len(mine["deliveries"]) == 1


async def test_a_non_object_payload_is_under_data(client: AsyncTestClient[Any]) -> None:
    await workflow(client, "listy")
    await subscribe(client, "listy", "listy", eventType="*")
    answer = (await client.post("/api/v1/events", json=event("e-5", data=["a", "b"]))).json()
    run = (await client.get(f"/api/v1/executions/{answer['deliveries'][0]['executionId']}")).json()
    assert run["trigger"]["data"] == ["a", "b"] and run["trigger"]["firedBy"]["eventId"] == "e-5"


async def test_bad_events_and_bad_configs_are_refused(client: AsyncTestClient[Any]) -> None:
    for bad, word in [
        ({**event("x"), "specversion": "0.3"}, "specversion"),
        ({k: v for k, v in event("x").items() if k != "source"}, "source"),
        (event(""), "id"),
        (event("x", "has space"), "type"),
        (event("x", time="yesterday"), "time"),
        (event("x", data_base64="AAAA"), "data_base64"),
        (event("x", datacontenttype="text/plain"), "datacontenttype"),
    ]:
        problem = assert_problem(await client.post("/api/v1/events", json=bad), 422)
        assert word in problem["detail"], (word, problem)
    # A value given but wrong is not said to be missing (a walk through the README: `type` "is
    # required" for `bad type!`); one left out is.
    wrong = assert_problem(await client.post("/api/v1/events", json=event("x", "bad type!")), 422)
    assert "type must be: 1-200 letters" in wrong["detail"] and "required" not in wrong["detail"], wrong
    blank = assert_problem(await client.post("/api/v1/events", json=event(" ")), 422)
    assert "id must be 1 to" in blank["detail"] and "required" not in blank["detail"], blank
    missing = {k: v for k, v in event("x").items() if k != "type"}
    assert "type is required" in assert_problem(await client.post("/api/v1/events", json=missing), 422)["detail"]
    assert_problem(await client.post("/api/v1/events", json=[1]), 400)
    await workflow(client, "cfg")
    for config, pointer in [
        ({}, "/config/eventType"),
        ({"eventType": "a b"}, "/config/eventType"),
        ({"eventType": "x", "extra": 1}, "/config/extra"),
        ({"eventType": "x", "source": ""}, "/config/source"),
    ]:
        made = await client.post(
            "/api/v1/workflows/cfg/triggers", json={"kind": "event", "name": "bad", "config": config}
        )
        problem = assert_problem(made, 422)
        assert pointer in {e["pointer"] for e in problem["errors"]}, (config, problem)


async def test_the_events_publish_command(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dataworkflows.cli import EXIT_OK, EXIT_USAGE, cmd_events_publish
    from tests.integration.cli_api import cli_command, served_api

    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as client:
        await workflow(client, "by-cli")
        await subscribe(client, "by-cli", "by-cli", eventType="com.cli.*")
    async with served_api(dsn) as url:
        run = cli_command(url, capsys, cmd_events_publish, "events", "publish")
        argv = ("com.cli.ping", "--source", "/cli", "--id", "c-1", "--data", '{"n": 1}')
        code, out, err = await run(*argv)
        assert (code, err) == (EXIT_OK, ""), err
        lines = out.splitlines()
        assert lines[-1] == "event c-1 (com.cli.ping) started 1 run" and lines[-2].startswith("by-cli "), out
        code, out, err = await run(*argv)
        assert out.splitlines()[-1] == "event c-1 (com.cli.ping) started 1 run (published before: nothing new started)"
        code, out, err = await run("com.cli.ping", "--source", "/cli", "--data", "{nope")
        assert code == EXIT_USAGE and "--data is not valid JSON" in err, err
        code, out, err = await run("bad type", "--source", "/cli")
        assert code == EXIT_USAGE and "type" in err, err


async def test_two_triggers_of_one_workflow_start_a_run_each(client: AsyncTestClient[Any]) -> None:
    """Every matching trigger starts a run, as the README says, each naming its trigger: two triggers
    of one workflow shared the event's request id, so the second was answered with the first's run
    (its delivery said `started`, a run whose triggerId and firedBy named the other trigger; a review)."""
    await workflow(client, "twice")
    exact = await subscribe(client, "twice", "exact", eventType="com.shop.order.created")
    prefix = await subscribe(client, "twice", "prefix", eventType="com.shop.order.*")
    answer = (await client.post("/api/v1/events", json=event("e-twice"))).json()
    by_trigger = {d["triggerId"]: d["executionId"] for d in answer["deliveries"]}
    assert set(by_trigger) == {exact, prefix} and len(set(by_trigger.values())) == 2, answer
    for trigger_id, execution_id in by_trigger.items():
        run = (await client.get(f"/api/v1/executions/{execution_id}")).json()
        assert run["triggerId"] == trigger_id and run["trigger"]["firedBy"]["triggerId"] == trigger_id
    # A redelivery still starts nothing.
    again = (await client.post("/api/v1/events", json=event("e-twice"))).json()
    assert again["duplicate"] is True and again["deliveries"] == answer["deliveries"]
    assert len((await client.get("/api/v1/executions")).json()["items"]) == 2


async def test_pruning_events_passes_over_rows_another_worker_prunes(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    """Workers share the retention's work, as with webhook deliveries (SKIP LOCKED): a worker's prune
    waited for another's batch to commit, and then deleted none of it (a review)."""
    import asyncio
    from datetime import timedelta

    import psycopg

    for i in range(3):
        assert (await client.post("/api/v1/events", json=event(f"old-{i}"))).status_code == 202
    await sql(db, "UPDATE dw.events SET received_at = received_at - %s", timedelta(days=30))
    other = await psycopg.AsyncConnection.connect(dsn)
    try:
        async with other.transaction():
            # Another worker's batch, not yet committed: the oldest event.
            await other.execute("SELECT 1 FROM dw.events WHERE event_id = 'old-0' FOR UPDATE")
            assert await asyncio.wait_for(db.events.prune(keep_seconds=86400.0), 10) == 2
    finally:
        await other.close()
    assert await db.events.prune(keep_seconds=86400.0) == 1


async def test_an_events_time_is_an_instant_of_the_years_1_to_9999(client: AsyncTestClient[Any]) -> None:
    """A time whose offset takes it out of the years 1 to 9999 in UTC is refused: "0001-01-01T00:00:00
    +14:00" was stored in 1 BC and its run's firedBy.time said "0001-12-31T10:00:00+00:00 BC", not a
    timestamp (and 9999-12-31 at -10:00, a year 10000). RFC 3339's lowercase t and z are taken, as a
    delay's until takes them (they were refused; a review)."""
    await workflow(client, "timed")
    await subscribe(client, "timed", "timed", eventType="*")
    for when in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-10:00"):
        problem = assert_problem(await client.post("/api/v1/events", json=event(f"t-{when}", time=when)), 422)
        assert "time" in problem["detail"], problem
    for event_id, when, said in [
        ("t-1", "0001-01-01T00:00:00-14:00", "0001-01-01T14:00:00+00:00"),
        ("t-2", "2026-12-07t10:00:00z", "2026-12-07T10:00:00+00:00"),
        # A leap second, which RFC 3339 allows, is the instant after :59 (as PostgreSQL reads it);
        # it was refused.
        ("t-3", "2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),
        ("t-4", "2016-12-31T23:59:60.5+00:00", "2017-01-01T00:00:00.5+00:00"),
        ("t-5", "9999-12-31T23:59:60+01:00", "9999-12-31T23:00:00+00:00"),
    ]:
        answer = (await client.post("/api/v1/events", json=event(event_id, time=when))).json()
        run = (await client.get(f"/api/v1/executions/{answer['deliveries'][0]['executionId']}")).json()
        assert run["trigger"]["firedBy"]["time"] == said, run["trigger"]


async def test_a_source_of_many_bytes_is_refused_by_name(client: AsyncTestClient[Any]) -> None:
    """A source of 500 four-byte characters with an id of 200 made the unique index's row too large
    for PostgreSQL: a 422 quoting the index ("index row size 2824 exceeds btree version 4 maximum
    2704 for index events_once"). A source is at most 1,500 bytes in UTF-8; such an id is taken."""
    wide = "".join(chr(0x20000 + i * 37) for i in range(500))
    problem = assert_problem(await client.post("/api/v1/events", json={**event(wide[:200]), "source": wide}), 422)
    assert problem["detail"].startswith("the event's source is at most 1500 bytes"), problem
    taken = await client.post("/api/v1/events", json={**event(wide[:200]), "source": "é" * 500})
    assert taken.status_code == 202, taken.text
    # A trigger's source that no event could have is refused too.
    await workflow(client, "wide")
    made = await client.post(
        "/api/v1/workflows/wide/triggers",
        json={"kind": "event", "name": "w", "config": {"eventType": "*", "source": wide}},
    )
    assert "/config/source" in {e["pointer"] for e in assert_problem(made, 422)["errors"]}


async def test_data_that_is_not_an_object_sits_a_level_down(client: AsyncTestClient[Any]) -> None:
    """Data that is not an object becomes the run's trigger under "data": it may be a level less deep
    than DW_MAX_TRIGGER_DEPTH (16 here), as a webhook's body, or the trigger was deeper than an
    execute's may be (a review)."""
    await workflow(client, "deep")
    await subscribe(client, "deep", "deep", eventType="*")

    def nested(levels: int, leaf: Any) -> Any:
        value = leaf
        for _ in range(levels - 1):
            value = [value] if isinstance(leaf, list) else {"x": value}
        return value

    problem = assert_problem(await client.post("/api/v1/events", json=event("d-1", data=nested(15, [1]))), 422)
    assert "15 levels" in problem["detail"], problem
    assert (await client.post("/api/v1/events", json=event("d-2", data=nested(14, [1])))).status_code == 202
    assert (await client.post("/api/v1/events", json=event("d-3", data=nested(15, {"y": 1})))).status_code == 202
    assert_problem(await client.post("/api/v1/events", json=event("d-4", data=nested(16, {"y": 1}))), 422)


async def test_one_event_matches_at_most_the_configured_number_of_triggers(dsn: str) -> None:
    """Each enabled event trigger an event matches starts a run in the publish's one transaction, and
    nothing bounded how many one event matched. An event trigger that would take one event past
    DW_MAX_EVENT_TRIGGERS is now refused when it is created, enabled or reconfigured, with the event
    it would be too many for; a trigger that matches other events, a rename, a disable pass."""
    async with AsyncTestClient(create_app(Settings(database_url=dsn, max_event_triggers=3))) as client:
        await workflow(client, "fan")
        first = await subscribe(client, "fan", "t1", eventType="a.b.c")
        await subscribe(client, "fan", "t2", eventType="a.b.c")
        await subscribe(client, "fan", "t3", eventType="a.*")

        async def add(name: str, enabled: bool = True, **config: Any) -> Any:
            body = {"kind": "event", "name": name, "enabled": enabled, "config": config}
            return await client.post("/api/v1/workflows/fan/triggers", json=body, headers=OPS)

        for config, said in (
            ({"eventType": "*"}, "an event of a.b.c would match 4"),
            ({"eventType": "a.b.*"}, "an event of a.b.c would match 4"),
            ({"eventType": "a.b.c", "source": "/other"}, "an event of a.b.c from /other would match 4"),
        ):
            body = assert_problem(await add("fourth", **config), 409)
            assert body["code"] == "too_many_event_triggers" and said in body["detail"], body
            assert "DW_MAX_EVENT_TRIGGERS" in body["detail"]
        # Other events: a.x matches t3 and this one.
        other = await add("elsewhere", eventType="a.x")
        assert other.status_code == 201, other.text
        # Disabled, it matches nothing; enabled, it is counted.
        idle = await add("everything", enabled=False, eventType="*")
        assert idle.status_code == 201, idle.text
        everything = f"/api/v1/triggers/{idle.json()['id']}"
        refused = assert_problem(await client.patch(everything, json={"enabled": True}, headers=OPS), 409)
        assert refused["code"] == "too_many_event_triggers"
        # A reconfiguration of an enabled one is counted too; a rename is not.
        t1 = f"/api/v1/triggers/{first}"
        assert (await client.patch(t1, json={"config": {"eventType": "q"}}, headers=OPS)).status_code == 200
        assert (await client.patch(t1, json={"name": "t1-renamed"}, headers=OPS)).status_code == 200
        # With t1 on "q", a.b.c has room for the catch-all; then none for t1 back under a.b.
        assert (await client.patch(everything, json={"enabled": True}, headers=OPS)).status_code == 200
        widened = assert_problem(await client.patch(t1, json={"config": {"eventType": "a.b.*"}}, headers=OPS), 409)
        assert "an event of a.b.c would match 4" in widened["detail"], widened
        published = await client.post("/api/v1/events", json=event("fan-1", "a.b.c"), headers=OPS)
        assert len(published.json()["deliveries"]) == 3
    async with AsyncTestClient(create_app(Settings(database_url=dsn, max_event_triggers=0))) as unbounded:
        made = await unbounded.post(
            "/api/v1/workflows/fan/triggers",
            json={"kind": "event", "name": "no-limit", "config": {"eventType": "a.b.c"}},
            headers=OPS,
        )
        assert made.status_code == 201, made.text


async def test_the_event_trigger_count_reads_only_overlapping_triggers_off_the_event_loop(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count behind DW_MAX_EVENT_TRIGGERS read every enabled event trigger of the tenant and
    counted them on the API's event loop: at 100,000 triggers a creation took 1.6 s, and a GET of
    another tenant's workflow waited 0.9 s behind it. Only the triggers one event could match with
    the new one (an overlapping pattern, a source it takes) are read now, and counted in a thread."""
    seen: list[tuple[list[events.Subscription], bool]] = []
    count = events.busiest_event

    def watched(new: events.Subscription, others: list[events.Subscription]) -> tuple[int, str]:
        try:
            asyncio.get_running_loop()
            on_the_loop = True
        except RuntimeError:
            on_the_loop = False
        seen.append((sorted(others), on_the_loop))
        return count(new, others)

    monkeypatch.setattr(events, "busiest_event", watched)
    async with AsyncTestClient(create_app(Settings(database_url=dsn, max_event_triggers=10))) as client:
        await workflow(client, "wide")
        for name, config in (
            ("unrelated", {"eventType": "z.y"}),
            ("sibling", {"eventType": "a.c.*"}),
            ("other-source", {"eventType": "a.b.c", "source": "/elsewhere"}),
            ("under", {"eventType": "a.b.c.d"}),
            ("over", {"eventType": "a.*", "source": "/shop"}),
            ("all", {"eventType": "*"}),
        ):
            await subscribe(client, "wide", name, **config)
        seen.clear()
        await subscribe(client, "wide", "new", eventType="a.b.*", source="/shop")
    assert seen == [
        (
            [
                events.Subscription("*", None),
                events.Subscription("a.*", "/shop"),
                events.Subscription("a.b.c.d", None),
            ],
            False,
        )
    ], seen


async def test_an_event_trigger_past_a_lowered_limit_may_still_be_narrowed(dsn: str) -> None:
    """A lowered DW_MAX_EVENT_TRIGGERS leaves the triggers already there alone, and its refusal says
    "disable one, or narrow it first"; but narrowing an enabled trigger of a group already past the
    limit was refused too, since the event it still matches is past it: only a disable passed. A
    change after which the trigger matches no event it did not match before is never refused now; a
    widening is, as before."""
    async with AsyncTestClient(create_app(Settings(database_url=dsn, max_event_triggers=0))) as unbounded:
        await workflow(unbounded, "narrow")
        ids = [await subscribe(unbounded, "narrow", f"n{i}", eventType="n.b.c") for i in range(4)]
    async with AsyncTestClient(create_app(Settings(database_url=dsn, max_event_triggers=3))) as client:
        first, second = (f"/api/v1/triggers/{ids[0]}", f"/api/v1/triggers/{ids[1]}")
        narrowed = await client.patch(first, json={"config": {"eventType": "n.b.c", "source": "/x"}}, headers=OPS)
        assert narrowed.status_code == 200, narrowed.text
        kept = await client.patch(second, json={"config": {"eventType": "n.b.c"}, "enabled": True}, headers=OPS)
        assert kept.status_code == 200, kept.text
        # Wider (another source, a prefix) is a new event for it: refused.
        for config in ({"eventType": "n.b.c", "source": "/y"}, {"eventType": "n.b.*", "source": "/x"}):
            widened = assert_problem(await client.patch(first, json={"config": config}, headers=OPS), 409)
            assert widened["code"] == "too_many_event_triggers", widened
        # Disabled, then enabled again: counted as new.
        assert (await client.patch(second, json={"enabled": False}, headers=OPS)).status_code == 200
        again = assert_problem(await client.patch(second, json={"enabled": True}, headers=OPS), 409)
        assert again["code"] == "too_many_event_triggers", again
