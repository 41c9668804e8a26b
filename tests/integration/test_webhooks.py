"""Webhook deliveries over HTTP (api/hooks.py, sql/procedures/webhooks.sql), with no worker running:
signatures, replays, activation conditions, templates, refusals and a storm of deliveries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows import webhooks
from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from dataworkflows.retention import Prune, prune_due
from dataworkflows.tenancy import all_tenants
from dataworkflows.workers.app import prune_webhook_deliveries
from tests.fakes import served
from tests.integration.test_api import assert_problem
from tests.integration.test_composition_api import publish_over_api
from tests.integration.test_control_api import sql
from tests.integration.test_runtime import echo, to, wf

KEY = Cipher.generate_key()
SECRET = "hook-secret-0123456789abcdef"
MAX_BODY = 64 * 1024


def settings(dsn: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "credentials_key": KEY,
        "max_body_bytes": MAX_BODY,
        "max_trigger_depth": 16,
        "pool_max_size": 25,
        # These tests are about deliveries; the per-trigger rate limit has its own (test_limits).
        "api_rate_per_minute": 0,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(settings(dsn))) as test_client:
        yield test_client


async def make_hook(
    db: Database, workflow_id: str = "hooked", *, name: str = "inbound", enabled: bool = True, **config: Any
) -> str:
    """A webhook trigger, its secret encrypted as the triggers API stores it."""
    trigger_id = uuid.uuid4()
    signed = config.get("signature", "hmac-sha256") != "none"
    secret = Cipher.from_setting(KEY).encrypt(SECRET, f"trigger:{trigger_id}") if signed else None
    await db.triggers.create(
        workflow_id=workflow_id,
        kind="webhook",
        name=name,
        enabled=enabled,
        config=config,
        principal="hook-owner",
        trigger_id=trigger_id,
        secret=secret,
    )
    return str(trigger_id)


def sign(body: bytes, *, timestamp: float | None = None, secret: str = SECRET, **extra: str) -> dict[str, str]:
    """X-DW-Timestamp and X-DW-Signature for the body (plus any other headers)."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    named = {name.replace("_", "-"): value for name, value in extra.items()}
    return {"X-DW-Timestamp": ts, "X-DW-Signature": f"sha256={digest}", "Content-Type": "application/json", **named}


async def deliver(
    client: AsyncTestClient[Any],
    hook: str,
    payload: Any,
    *,
    params: Any = None,
    timestamp: float | None = None,
    **headers: str,
) -> tuple[Any, bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    sent = sign(body, timestamp=timestamp, **headers)
    response = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=sent, params=params)
    return response, body, sent


async def rows(db: Database, hook: str) -> list[tuple[str, int, str | None]]:
    """(outcome, status code, reason) of the hook's deliveries, oldest first."""
    found = await db.webhooks.deliveries(uuid.UUID(hook), limit=10_000)
    return [(d.outcome, d.status_code, d.reason) for d in reversed(found)]


async def runs_of(db: Database, hook: str) -> int:
    return int((await sql(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", uuid.UUID(hook)))[0][0])


@pytest.fixture
async def hooked(client: AsyncTestClient[Any]) -> str:
    await publish_over_api(client, wf("hooked", echo("e")))
    return "hooked"


async def test_a_valid_delivery_starts_a_run_with_body_headers_query_and_fired_by(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db, headers=["X-Source", "X-Absent"])
    response, body, sent = await deliver(
        client, hook, {"order": 42}, params=[("a", "1"), ("a", "2"), ("b", "x")], X_Source="ci", X_Other="no"
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    execution_id = answer["executionId"]
    delivery_id = "sha256:" + hashlib.sha256(f"{sent['X-DW-Timestamp']}.".encode() + body).hexdigest()
    assert answer == {
        "deliveryId": delivery_id,
        "activated": True,
        "duplicate": False,
        "executionId": execution_id,
        "statusUrl": f"/api/v1/executions/{execution_id}",
        "note": None,
    }
    execution = (await client.get(answer["statusUrl"])).json()
    trigger = execution["trigger"]
    fired = trigger.pop("firedBy")
    assert trigger == {"body": {"order": 42}, "headers": {"x-source": "ci"}, "query": {"a": ["1", "2"], "b": "x"}}
    assert (fired["kind"], fired["triggerId"], fired["name"], fired["deliveryId"]) == (
        "webhook",
        hook,
        "inbound",
        delivery_id,
    )
    assert fired["receivedAt"].endswith("+00:00")
    found = await sql(
        db,
        "SELECT trigger_id::text, request_id, principal_id, principal_type, status FROM dw.executions WHERE id = %s",
        uuid.UUID(execution_id),
    )
    assert found == [(hook, f"hook:{hook}:{delivery_id}", "hook-owner", "webhook", "Pending")]
    [delivery] = await db.webhooks.deliveries(uuid.UUID(hook))
    assert (delivery.outcome, delivery.status_code, str(delivery.execution_id), delivery.body_bytes) == (
        "accepted",
        202,
        execution_id,
        len(body),
    )
    assert delivery.delivery_id == delivery_id and delivery.reason is None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "timestamp_missing"),
        ({"X-DW-Timestamp": "now"}, "timestamp_invalid"),
        ("no-signature", "signature_missing"),
        ("wrong", "signature_invalid"),
        ("other-secret", "signature_invalid"),
        ("stale", "timestamp_out_of_range"),
        ("future", "timestamp_out_of_range"),
    ],
)
async def test_missing_wrong_or_stale_signatures_are_refused_and_recorded(
    client: AsyncTestClient[Any], db: Database, hooked: str, headers: Any, code: str
) -> None:
    hook = await make_hook(db)
    body = b'{"x": 1}'
    if headers == "no-signature":
        headers = {"X-DW-Timestamp": str(int(time.time()))}
    elif headers == "wrong":
        headers = {**sign(body), "X-DW-Signature": "sha256=" + "0" * 64}
    elif headers == "other-secret":
        headers = sign(body, secret="not-the-secret-at-all")
    elif headers == "stale":
        headers = sign(body, timestamp=time.time() - 301)
    elif headers == "future":
        headers = sign(body, timestamp=time.time() + 400)
    response = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers)
    problem = assert_problem(response, 401)
    assert problem["code"] == code
    assert problem["instance"] == f"/api/v1/hooks/{hook}"
    [(outcome, status, reason)] = await rows(db, hook)
    assert (outcome, status) == ("refused", 401) and reason is not None and reason.startswith(code)
    assert await runs_of(db, hook) == 0


async def test_a_replayed_delivery_answers_the_first_execution_and_starts_nothing(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    body = b'{"n": 1}'
    headers = sign(body)
    first = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers)
    again = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.json()["duplicate"] is True and again.json()["activated"] is True
    assert again.json()["executionId"] == first.json()["executionId"]
    assert again.json()["deliveryId"] == first.json()["deliveryId"]
    # A sender's retry: re-signed later, but with the same delivery id header.
    for _ in range(2):
        retried = await client.post(
            f"/api/v1/hooks/{hook}", content=body, headers=sign(body, timestamp=time.time() + 1, X_Delivery_Id="d-7")
        )
        assert retried.status_code in (200, 202), retried.text
    assert retried.json()["duplicate"] is True
    assert await runs_of(db, hook) == 2
    outcomes = [(o, s) for o, s, _ in await rows(db, hook)]
    assert outcomes == [("accepted", 202), ("duplicate", 200), ("accepted", 202), ("duplicate", 200)]


async def test_a_signed_request_replayed_under_another_delivery_id_is_a_duplicate(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    body = b'{"n": 2}'
    captured = sign(body, X_Delivery_Id="d-1")
    first = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=captured)
    # The delivery id header is not signed: an attacker resends the signed request under a new one.
    replayed = await client.post(f"/api/v1/hooks/{hook}", content=body, headers={**captured, "X-Delivery-Id": "d-2"})
    assert first.status_code == 202 and replayed.status_code == 200, replayed.text
    assert replayed.json()["duplicate"] is True
    assert replayed.json()["executionId"] == first.json()["executionId"]
    assert await runs_of(db, hook) == 1


async def test_a_replay_under_an_id_the_sender_has_yet_to_use_does_not_take_that_id(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """A hash duplicate claims no delivery id (a decision: README "Webhooks", the comment of
    dw.claim_webhook_delivery_v1): the id of a replay is the replayer's choice."""
    hook = await make_hook(db)
    url = f"/api/v1/hooks/{hook}"
    body = b'{"order": 42}'
    captured = sign(body, X_Delivery_Id="order-42")
    first = await client.post(url, content=body, headers=captured)
    replayed = await client.post(url, content=body, headers={**captured, "X-Delivery-Id": "order-43"})
    assert first.status_code == 202 and replayed.status_code == 200, replayed.text
    assert replayed.json()["duplicate"] is True and replayed.json()["executionId"] == first.json()["executionId"]
    # The sender's own delivery under that id is a new event: it runs, and claims the id.
    own_body = b'{"order": 43}'
    own = await client.post(url, content=own_body, headers=sign(own_body, X_Delivery_Id="order-43"))
    assert own.status_code == 202 and own.json()["duplicate"] is False, own.text
    assert own.json()["executionId"] != first.json()["executionId"]
    # Its retry, re-signed later, is a duplicate of it, not of the replay's run.
    retried = await client.post(
        url, content=own_body, headers=sign(own_body, timestamp=time.time() + 1, X_Delivery_Id="order-43")
    )
    assert retried.status_code == 200 and retried.json()["duplicate"] is True, retried.text
    assert retried.json()["executionId"] == own.json()["executionId"]
    assert await runs_of(db, hook) == 2
    outcomes = [(o, s) for o, s, _ in await rows(db, hook)]
    assert outcomes == [("accepted", 202), ("duplicate", 200), ("accepted", 202), ("duplicate", 200)]


async def test_activation_condition_false_answers_200_and_starts_nothing(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(
        db,
        headers=["X-Event"],
        activationCondition="body.action === 'opened' && headers['x-event'] === 'pr' && query.env === 'prod'",
    )
    closed, body, headers = await deliver(client, hook, {"action": "closed"}, params={"env": "prod"}, X_Event="pr")
    assert closed.status_code == 200, closed.text
    assert closed.json() == {
        "deliveryId": closed.json()["deliveryId"],
        "activated": False,
        "duplicate": False,
        "executionId": None,
        "statusUrl": None,
        "note": None,
    }
    # Its replay is a duplicate of a delivery that did not activate.
    replay = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers, params={"env": "prod"})
    assert replay.status_code == 200
    assert (replay.json()["activated"], replay.json()["duplicate"]) == (False, True)
    # The query is not signed, so it is not part of a derived delivery id, and a signed body is taken
    # once whatever its query says: the same body again under another query (or delivery id) is a replay.
    # One signing second for both (the timestamp is signed: a later second is another request).
    stamp = time.time()
    wrong_query, _, _ = await deliver(
        client, hook, {"action": "opened"}, params={"env": "dev"}, timestamp=stamp, X_Event="pr", X_Delivery_Id="q-1"
    )
    assert wrong_query.json()["activated"] is False
    same_body, _, _ = await deliver(
        client, hook, {"action": "opened"}, params={"env": "prod"}, timestamp=stamp, X_Event="pr", X_Delivery_Id="q-2"
    )
    assert (same_body.status_code, same_body.json()["duplicate"]) == (200, True)
    opened, _, _ = await deliver(
        client, hook, {"action": "opened", "n": 2}, params={"env": "prod"}, X_Event="pr", X_Delivery_Id="q-3"
    )
    assert opened.status_code == 202, opened.text
    assert await runs_of(db, hook) == 1
    outcomes = [(o, s) for o, s, _ in await rows(db, hook)]
    assert outcomes == [
        ("not_activated", 200),
        ("duplicate", 200),
        ("not_activated", 200),
        ("duplicate", 200),
        ("accepted", 202),
    ]
    # The replay under q-2 says it met q-1's request (it said "delivery id first received at", with
    # q-1's time, as if q-2 had come before).
    reasons = [reason for _, _, reason in await rows(db, hook)]
    assert reasons[1] is not None and reasons[1].startswith("delivery id first received at"), reasons
    assert reasons[3] is not None and "same signed request was first received at" in reasons[3], reasons
    assert "under delivery id q-1 (not_activated)" in reasons[3], reasons


async def test_a_query_is_read_as_strictly_as_a_form(client: AsyncTestClient[Any], db: Database, hooked: str) -> None:
    """`?a=%FF` was taken as U+FFFD in the run's query, while the same in a form was a 400 (triggers
    review). Both are now; a query's UTF-8, repeated names and blank values are kept as before."""
    hook = await make_hook(db, signature="none")
    refused = assert_problem(await client.post(f"/api/v1/hooks/{hook}?a=%FF", json={}), 400)
    assert refused["code"] == "malformed_query" and "not UTF-8" in refused["detail"], refused
    taken = await client.post(f"/api/v1/hooks/{hook}?a=%C3%A9&b=1&b=2&c=&d+e=f+g", json={"n": 1})
    assert taken.status_code == 202, taken.text
    query = (await client.get(taken.json()["statusUrl"])).json()["trigger"]["query"]
    assert query == {"a": "é", "b": ["1", "2"], "c": "", "d e": "f g"}, query


async def test_the_activation_condition_sees_every_header_but_credentials(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """The condition saw only the headers the config copies into the run: `headers['x-github-event']
    === 'push'` was false for every delivery, each answered 200 not activated (triggers review). It
    sees every header now, but those that carry credentials; the run still gets the copied ones only."""
    hook = await make_hook(
        db,
        activationCondition="headers['x-event'] === 'push' && !('x-dw-signature' in headers)"
        " && !('authorization' in headers) && headers['x-dw-timestamp'] !== undefined",
    )
    pushed, _, _ = await deliver(client, hook, {"n": 1}, X_Event="push", Authorization="Bearer s3cr3t")
    assert pushed.status_code == 202, pushed.text
    run = (await client.get(pushed.json()["statusUrl"])).json()
    assert run["trigger"]["headers"] == {}, run["trigger"]
    other, _, _ = await deliver(client, hook, {"n": 2}, X_Event="ping")
    assert (other.status_code, other.json()["activated"]) == (200, False), other.text


async def test_a_condition_that_throws_is_refused_with_422(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db, activationCondition="body.missing.deeper === 1")
    response, _, _ = await deliver(client, hook, {"a": 1})
    assert assert_problem(response, 422)["code"] == "activation_condition_error"
    assert [(o, s) for o, s, _ in await rows(db, hook)] == [("refused", 422)]


async def test_payload_template_reshapes_the_trigger(client: AsyncTestClient[Any], db: Database, hooked: str) -> None:
    template = {
        "repo": "{{ body.repository.name }}",
        "event": "{{ headers['x-event'] }}",
        "page": "{{ query.page }}",
        "commits": "{{ body.commits | length }}",
        "firedBy": "cannot be spoofed",
    }
    hook = await make_hook(db, headers=["X-Event"], payloadTemplate=template)
    payload = {"repository": {"name": "dw"}, "commits": [1, 2, 3]}
    response, _, _ = await deliver(client, hook, payload, params={"page": "2"}, X_Event="push")
    assert response.status_code == 202, response.text
    trigger = (await client.get(response.json()["statusUrl"])).json()["trigger"]
    assert trigger.pop("firedBy")["kind"] == "webhook"
    assert trigger == {"repo": "dw", "event": "push", "page": "2", "commits": 3}
    broken = await make_hook(db, name="broken", payloadTemplate={"x": "{{ body.nope.deeper }}"})
    failed, _, _ = await deliver(client, broken, {"a": 1})
    assert assert_problem(failed, 422)["code"] == "payload_template_error"
    assert [(o, s) for o, s, _ in await rows(db, broken)] == [("refused", 422)]


async def test_unknown_disabled_deleted_or_other_triggers_answer_404(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    for target in (str(uuid.uuid4()), "not-a-uuid", "1"):
        assert_problem(await client.post(f"/api/v1/hooks/{target}", content=b"{}", headers=sign(b"{}")), 404)
        assert_problem(await client.get(f"/api/v1/hooks/{target}"), 404)
    # A schedule's id is not a hook.
    schedule_id = uuid.uuid4()
    await db.triggers.create(
        workflow_id="hooked",
        kind="schedule",
        name="nightly",
        enabled=True,
        config={"cron": "0 2 * * *"},
        principal=None,
        trigger_id=schedule_id,
        secret=None,
    )
    assert_problem(await client.post(f"/api/v1/hooks/{schedule_id}", content=b"{}", headers=sign(b"{}")), 404)
    # Disabled: refused at once (nothing cached), and enabled again accepted at once.
    assert (await deliver(client, hook, {"i": 1}))[0].status_code == 202
    await db.triggers.update(uuid.UUID(hook), name=None, enabled=False, config=None)
    assert_problem((await deliver(client, hook, {"i": 2}, **{"X-Delivery-Id": "while-disabled"}))[0], 404)
    assert_problem(await client.get(f"/api/v1/hooks/{hook}"), 404)
    # Recorded (README: every delivery is a row), so that an operator sees a sender still delivering.
    rows = await sql(
        db,
        "SELECT delivery_id, outcome, status_code, reason, body_bytes FROM dw.webhook_deliveries"
        " WHERE trigger_id = %s ORDER BY id DESC LIMIT 1",
        uuid.UUID(hook),
    )
    assert rows == [("while-disabled", "refused", 404, "trigger_disabled: the webhook is disabled", 8)], rows
    await db.triggers.update(uuid.UUID(hook), name=None, enabled=True, config=None)
    assert (await deliver(client, hook, {"i": 3}))[0].status_code == 202
    assert await db.triggers.delete(uuid.UUID(hook))
    assert_problem((await deliver(client, hook, {"i": 4}))[0], 404)
    # The runs it started keep their trigger id.
    found = await sql(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", uuid.UUID(hook))
    assert found == [(2,)]


async def test_oversized_and_malformed_bodies_are_refused_and_recorded(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    big = json.dumps({"blob": "x" * MAX_BODY}).encode()
    oversized = await client.post(f"/api/v1/hooks/{hook}", content=big, headers=sign(big))
    assert assert_problem(oversized, 413)["code"] == "body_too_large"
    malformed = b'{"unclosed": '
    bad = await client.post(f"/api/v1/hooks/{hook}", content=malformed, headers=sign(malformed))
    assert assert_problem(bad, 400)["code"] == "malformed_body"
    # A lone surrogate escape is said as such (msgspec's words were "Input data was truncated").
    lone = b'{"name": "\\ud800"}'
    surrogate = assert_problem(await client.post(f"/api/v1/hooks/{hook}", content=lone, headers=sign(lone)), 400)
    assert "lone UTF-16 surrogate" in surrogate["detail"] and "truncated" not in surrogate["detail"], surrogate
    deep = (b"[" * 20) + (b"]" * 20)
    assert assert_problem(await client.post(f"/api/v1/hooks/{hook}", content=deep, headers=sign(deep)), 400)
    long_id = await client.post(f"/api/v1/hooks/{hook}", content=b"{}", headers=sign(b"{}", X_Delivery_Id="d" * 201))
    assert assert_problem(long_id, 400)["code"] == "invalid_delivery_id"
    recorded = await db.webhooks.deliveries(uuid.UUID(hook))
    assert sorted((d.outcome, d.status_code) for d in recorded) == [
        ("refused", 400),
        ("refused", 400),
        ("refused", 400),
        ("refused", 400),
        ("refused", 413),
    ]
    assert next(d.body_bytes for d in recorded if d.status_code == 413) == len(big)
    assert await runs_of(db, hook) == 0


async def test_a_delivery_id_given_twice_is_refused(dsn: str, db: Database, hooked: str) -> None:
    """Two X-Delivery-Id headers (a proxy added its own): the first one was taken, silently; which
    is the sender's is anyone's guess, as for two Authorization headers. Over a real server: the
    test client joins repeated headers into one."""
    hook = await make_hook(db)
    async with (
        served(create_app(settings(dsn))) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        twice = await http.post(
            f"/api/v1/hooks/{hook}",
            content=b"{}",
            headers=[*sign(b"{}").items(), ("X-Delivery-Id", "z1"), ("X-Delivery-Id", "z2")],
        )
        once = await http.post(f"/api/v1/hooks/{hook}", content=b"{}", headers=sign(b"{}", X_Delivery_Id="z1"))
    problem = assert_problem(twice, 400)
    assert (
        problem["code"] == "invalid_delivery_id" and "X-Delivery-Id header is given more than once" in problem["detail"]
    ), problem
    assert once.status_code == 202 and once.json()["deliveryId"] == "z1", once.text
    assert await runs_of(db, hook) == 1


async def test_a_signature_or_timestamp_header_given_twice_is_refused(dsn: str, db: Database, hooked: str) -> None:
    """Two X-Hub-Signature-256 headers, the first valid and the second not, were accepted: the first
    copy was verified. Refused as a repeated delivery id header is (400, recorded), whichever copy is
    valid; also a repeated timestamp. Over a real server: the test client joins repeated headers."""
    github = await make_hook(db, name="gh-twice", signature="github")
    signed = await make_hook(db, name="dw-twice")
    digest = hmac.new(SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
    valid = ("X-Hub-Signature-256", f"sha256={digest}")
    junk = ("X-Hub-Signature-256", "sha256=00")
    async with (
        served(create_app(settings(dsn))) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        answers = [
            await http.post(f"/api/v1/hooks/{github}", content=b"{}", headers=[*pair, ("X-GitHub-Delivery", "g1")])
            for pair in ([valid, junk], [junk, valid])
        ]
        headers = sign(b"{}")
        twice = [*headers.items(), ("X-DW-Timestamp", headers["X-DW-Timestamp"])]
        answers.append(await http.post(f"/api/v1/hooks/{signed}", content=b"{}", headers=twice))
        once = await http.post(f"/api/v1/hooks/{github}", content=b"{}", headers=[valid, ("X-GitHub-Delivery", "g1")])
    details = [assert_problem(answer, 400) for answer in answers]
    assert [d["code"] for d in details] == ["repeated_header"] * 3, details
    assert "X-Hub-Signature-256 header is given more than once" in details[0]["detail"], details
    assert "X-DW-Timestamp header is given more than once" in details[2]["detail"], details
    assert [(o, code) for o, code, _ in await rows(db, github)] == [
        ("refused", 400),
        ("refused", 400),
        ("accepted", 202),
    ]
    assert [(o, code) for o, code, _ in await rows(db, signed)] == [("refused", 400)]
    assert once.status_code == 202, once.text


async def test_text_and_form_bodies(client: AsyncTestClient[Any], db: Database, hooked: str) -> None:
    hook = await make_hook(db, signature="none")
    text = await client.post(f"/api/v1/hooks/{hook}", content=b"plain words", headers={"Content-Type": "text/plain"})
    assert text.status_code == 202, text.text
    assert (await client.get(text.json()["statusUrl"])).json()["trigger"]["body"] == "plain words"
    form = await client.post(
        f"/api/v1/hooks/{hook}",
        content=b"command=%2Fdeploy&text=prod",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 202, form.text
    body = (await client.get(form.json()["statusUrl"])).json()["trigger"]["body"]
    assert body == {"command": "/deploy", "text": "prod"}


async def test_unsigned_hooks_need_no_signature_and_dedupe_by_body_or_delivery_id(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db, signature="none")
    url = f"/api/v1/hooks/{hook}"
    first = await client.post(url, json={"a": 1})
    same = await client.post(url, json={"a": 1})
    assert first.status_code == 202 and same.status_code == 200 and same.json()["duplicate"]
    one = await client.post(url, json={"a": 1}, headers={"X-Delivery-Id": "one"})
    two = await client.post(url, json={"a": 1}, headers={"X-Delivery-Id": "two"})
    assert (one.status_code, two.status_code) == (202, 202)
    assert len({first.json()["executionId"], one.json()["executionId"], two.json()["executionId"]}) == 3


async def test_an_unsigned_body_is_a_duplicate_for_the_hooks_window_only(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """An unsigned delivery without an id is known by its body's hash: the same body was a duplicate
    for as long as the first delivery's row was kept, then of its run through the run's request id,
    so a sender of alike events (an alert, a ping) started one run, ever. Past the hook's
    duplicateWindowSeconds (default 300) the same body is a new delivery; a delivery id named in a
    header is still claimed for good."""
    hook = await make_hook(db, signature="none")
    url = f"/api/v1/hooks/{hook}"
    first = await client.post(url, json={"alert": "disk full"})
    retry = await client.post(url, json={"alert": "disk full"})
    assert (first.status_code, retry.status_code, retry.json()["duplicate"]) == (202, 200, True)
    assert retry.json()["executionId"] == first.json()["executionId"]

    async def age(seconds: int) -> None:
        await sql(
            db,
            "UPDATE dw.webhook_deliveries SET received_at = received_at - make_interval(secs => %s)"
            " WHERE trigger_id = %s",
            seconds,
            uuid.UUID(hook),
        )

    await age(299)
    assert (await client.post(url, json={"alert": "disk full"})).json()["duplicate"] is True
    await age(2)
    later = await client.post(url, json={"alert": "disk full"})
    assert later.status_code == 202, later.text
    assert later.json()["duplicate"] is False and later.json()["executionId"] != first.json()["executionId"]
    # The new claim holds in its turn: a retry of it is its duplicate.
    again = await client.post(url, json={"alert": "disk full"})
    assert (again.json()["duplicate"], again.json()["executionId"]) == (True, later.json()["executionId"])
    assert await runs_of(db, hook) == 2
    lapsed = await sql(
        db,
        "SELECT count(*) FROM dw.webhook_deliveries WHERE trigger_id = %s AND lapsed_at IS NOT NULL",
        uuid.UUID(hook),
    )
    assert lapsed == [(1,)], lapsed
    # Its row pruned (DW_WEBHOOK_RETENTION_DAYS), the body still starts a run of its own (the run's
    # request id is the delivery row's, not the body's).
    await sql(db, "DELETE FROM dw.webhook_deliveries WHERE trigger_id = %s", uuid.UUID(hook))
    pruned = await client.post(url, json={"alert": "disk full"})
    assert (pruned.status_code, pruned.json()["duplicate"]) == (202, False), pruned.text
    # A delivery id from a header is claimed for good, aged or not.
    named = await client.post(url, json={"alert": "disk full"}, headers={"X-Delivery-Id": "alert-7"})
    await age(10_000)
    renamed = await client.post(url, json={"alert": "disk full"}, headers={"X-Delivery-Id": "alert-7"})
    assert (named.status_code, renamed.json()["duplicate"]) == (202, True), renamed.text
    assert await runs_of(db, hook) == 4
    # A sender's id cannot name a body's run: the run of the next id-less delivery (its row's id) is
    # not one an X-Delivery-Id makes (a forged "sha256:<hash>#<next row>" took the genuine body's run).
    body = {"alert": "db down"}
    raw = json.dumps(body).encode()
    digest = hashlib.sha256(raw).hexdigest()
    ((last,),) = await sql(db, "SELECT max(id) FROM dw.webhook_deliveries")
    # The forged delivery's row is the next one; the genuine body's, the one after.
    forged = await client.post(url, json={"forged": 1}, headers={"X-Delivery-Id": f"sha256:{digest}#{last + 2}"})
    assert forged.status_code == 202, forged.text
    genuine = await client.post(url, content=raw, headers={"Content-Type": "application/json"})
    assert (genuine.status_code, genuine.json()["duplicate"]) == (202, False), genuine.text
    assert genuine.json()["deliveryId"] == f"sha256:{digest}", genuine.text
    run = (await client.get(genuine.json()["statusUrl"])).json()
    assert run["trigger"]["body"] == body, run
    # The hook says how long, and a window of its own applies.
    info = (await client.get(url)).json()
    assert "duplicate for 300 s (duplicateWindowSeconds)" in info["deliveryIdFallback"], info
    hourly = await make_hook(db, name="hourly", signature="none", duplicateWindowSeconds=3600)
    hourly_url = f"/api/v1/hooks/{hourly}"
    assert (await client.post(hourly_url, json={"ping": 1})).status_code == 202
    await sql(
        db,
        "UPDATE dw.webhook_deliveries SET received_at = received_at - interval '10 minutes' WHERE trigger_id = %s",
        uuid.UUID(hourly),
    )
    assert (await client.post(hourly_url, json={"ping": 1})).json()["duplicate"] is True


async def test_github_and_slack_schemes_over_http(client: AsyncTestClient[Any], db: Database, hooked: str) -> None:
    github = await make_hook(db, name="gh", signature="github", headers=["X-GitHub-Event"])
    body = b'{"zen": "Keep it logically awesome."}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Event": "ping",
        "Content-Type": "application/json",
    }
    accepted = await client.post(f"/api/v1/hooks/{github}", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["deliveryId"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    redelivered = await client.post(f"/api/v1/hooks/{github}", content=body, headers=headers)
    assert redelivered.json()["duplicate"] is True
    assert_problem(await client.post(f"/api/v1/hooks/{github}", content=body + b" ", headers=headers), 401)

    slack = await make_hook(db, name="slack", signature="slack")
    form = b"command=%2Fdeploy&text=prod"
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + form, hashlib.sha256).hexdigest()
    slack_headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = await client.post(f"/api/v1/hooks/{slack}", content=form, headers=slack_headers)
    assert response.status_code == 202, response.text
    stale = {**slack_headers, "X-Slack-Request-Timestamp": str(int(ts) - 600)}
    assert assert_problem(await client.post(f"/api/v1/hooks/{slack}", content=form, headers=stale), 401)


def slack_signed(body: bytes, ts: int) -> dict[str, str]:
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature, "Content-Type": "application/json"}


async def test_slack_retries_are_one_delivery_and_its_url_verification_is_answered(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    slack = await make_hook(db, name="events", signature="slack")
    url = f"/api/v1/hooks/{slack}"
    handshake = b'{"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}'
    answered = await client.post(url, content=handshake, headers=slack_signed(handshake, int(time.time())))
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    event = b'{"type": "event_callback", "event_id": "Ev0PV52K21", "event": {"type": "app_mention"}}'
    first = await client.post(url, content=event, headers=slack_signed(event, int(time.time())))
    # Slack retries later, re-signed with a new timestamp: the same event, one run.
    retry = await client.post(
        url, content=event, headers={**slack_signed(event, int(time.time()) + 2), "X-Slack-Retry-Num": "1"}
    )
    assert first.status_code == 202 and retry.status_code == 200, retry.text
    assert retry.json()["duplicate"] is True and retry.json()["executionId"] == first.json()["executionId"]
    assert first.json()["deliveryId"] == "slack:Ev0PV52K21"
    assert await runs_of(db, slack) == 1


async def test_nul_characters_are_refused_with_400_and_recorded(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    body = b'{"n": 3}'
    bad_id = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=sign(body, X_Delivery_Id="a\x00b"))
    assert_problem(bad_id, 400)
    nul_body = b'{"text": "a\\u0000b"}'
    assert_problem(await client.post(f"/api/v1/hooks/{hook}", content=nul_body, headers=sign(nul_body)), 400)
    assert [(o, code) for o, code, _ in await rows(db, hook)] == [("refused", 400), ("refused", 400)]
    assert await runs_of(db, hook) == 0


async def test_a_delivery_id_a_request_id_could_not_hold_is_refused_and_recorded_escaped(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """A lone surrogate in Slack's event_id was a 500 (PostgreSQL cannot encode it), on a disabled
    hook and without a signature too; a NUL there a 422 with no row, where the signature's 401 was
    due; a terminal escape sequence or a bidi override in an id header was stored and became the
    run's request id, which the execute route refuses. Every one of them is a row, its id escaped."""
    slack = await make_hook(db, name="slack-ids", signature="slack")
    url = f"/api/v1/hooks/{slack}"
    surrogate, nul = b'{"event_id": "a\\ud800b"}', b'{"event_id": "a\\u0000b"}'
    for body in (surrogate, nul):
        unsigned = await client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert assert_problem(unsigned, 401)["code"] == "timestamp_missing"  # the first thing slack checks
    signed = await client.post(url, content=surrogate, headers=slack_signed(surrogate, int(time.time())))
    assert assert_problem(signed, 400)["code"] == "invalid_delivery_id"

    hook = await make_hook(db)
    escape = "\x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE accepted"
    sent = await client.post(f"/api/v1/hooks/{hook}", content=b"{}", headers=sign(b"{}", X_Delivery_Id=escape))
    assert assert_problem(sent, 400)["code"] == "invalid_delivery_id"
    github = await make_hook(db, name="gh-ids", signature="github")
    digest = hmac.new(SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
    bidi = {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": "order-\u202e24".encode()}
    assert assert_problem(await client.post(f"/api/v1/hooks/{github}", content=b"{}", headers=bidi), 400)

    await db.triggers.update(uuid.UUID(slack), name=None, enabled=False, config=None)
    disabled = await client.post(url, content=surrogate, headers=slack_signed(surrogate, int(time.time())))
    assert_problem(disabled, 404)

    found = await sql(
        db,
        "SELECT status_code, delivery_id, reason FROM dw.webhook_deliveries WHERE trigger_id = ANY(%s) ORDER BY id",
        [uuid.UUID(slack), uuid.UUID(hook), uuid.UUID(github)],
    )
    assert [(code, delivery) for code, delivery, _ in found] == [
        (401, "slack:a\\ud800b"),
        (401, "slack:a\\u0000b"),
        (400, "slack:a\\ud800b"),
        (400, "\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31mFAKE accepted"),
        (400, "order-\\u202e24"),
        (404, "slack:a\\ud800b"),
    ], found
    assert all(reason.endswith(webhooks.ESCAPED_ID_NOTE) for _, _, reason in found), found
    assert found[0][2].startswith("timestamp_missing") and found[-1][2].startswith("trigger_disabled"), found
    assert await runs_of(db, slack) + await runs_of(db, hook) + await runs_of(db, github) == 0


async def test_a_signed_hook_without_the_credentials_key_answers_503(dsn: str, db: Database) -> None:
    async with AsyncTestClient(create_app(settings(dsn, credentials_key=""))) as keyless:
        await publish_over_api(keyless, wf("hooked", echo("e")))
        hook = await make_hook(db)
        response, _, _ = await deliver(keyless, hook, {"a": 1})
        problem = assert_problem(response, 503)
        assert problem["code"] == "signature_unverifiable" and "DW_CREDENTIALS_KEY" in problem["detail"]
        assert response.headers.get("retry-after") == "5"
    # Another key cannot decrypt it either.
    async with AsyncTestClient(create_app(settings(dsn, credentials_key=Cipher.generate_key()))) as other:
        assert_problem((await deliver(other, hook, {"a": 1}))[0], 503)
    assert [(o, s) for o, s, _ in await rows(db, hook)] == [("refused", 503), ("refused", 503)]


async def test_a_workflow_that_cannot_run_refuses_the_delivery(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    assert (await client.post("/api/v1/workflows/hooked/archive")).status_code == 200
    response, _, _ = await deliver(client, hook, {"a": 1})
    assert assert_problem(response, 409)["code"] == "workflow_not_runnable"
    [(outcome, status, reason)] = await rows(db, hook)
    assert (outcome, status) == ("refused", 409) and reason is not None and "Archived" in reason
    assert await runs_of(db, hook) == 0


async def test_a_disabled_workflow_refuses_the_delivery_until_it_is_enabled(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    assert (await client.post("/api/v1/workflows/hooked/disable")).status_code == 200
    response, _, _ = await deliver(client, hook, {"a": 1})
    assert assert_problem(response, 409)["code"] == "workflow_not_runnable"
    [(outcome, status, reason)] = await rows(db, hook)
    assert (outcome, status) == ("refused", 409) and reason is not None and "disabled" in reason
    assert await runs_of(db, hook) == 0
    assert (await client.post("/api/v1/workflows/hooked/enable")).status_code == 200
    response, _, _ = await deliver(client, hook, {"a": 2})
    assert response.status_code == 202, response.text
    assert await runs_of(db, hook) == 1


async def test_a_storm_of_1000_deliveries_with_50_duplicates_starts_950_runs(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    url = f"/api/v1/hooks/{hook}"
    originals = []
    for i in range(950):
        body = json.dumps({"i": i}).encode()
        originals.append((body, sign(body)))
    rng = random.Random(13)
    deliveries = originals + rng.sample(originals, 50)
    rng.shuffle(deliveries)
    gate = asyncio.Semaphore(20)

    async def send(body: bytes, headers: dict[str, str]) -> Any:
        async with gate:
            return await client.post(url, content=body, headers=headers)

    responses = await asyncio.gather(*(send(body, headers) for body, headers in deliveries))
    assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses if r.status_code >= 300]
    by_delivery: dict[str, list[Any]] = {}
    for response in responses:
        by_delivery.setdefault(response.json()["deliveryId"], []).append(response.json())
    assert len(by_delivery) == 950
    for answers in by_delivery.values():
        assert [a["duplicate"] for a in answers].count(False) == 1
        assert len({a["executionId"] for a in answers}) == 1
    assert sum(r.status_code == 202 for r in responses) == 950
    assert await runs_of(db, hook) == 950
    outcomes = await sql(
        db,
        "SELECT outcome, count(*) FROM dw.webhook_deliveries WHERE trigger_id = %s GROUP BY 1 ORDER BY 1",
        uuid.UUID(hook),
    )
    assert outcomes == [("accepted", 950), ("duplicate", 50)]


async def test_get_tells_what_the_hook_expects_without_the_secret(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db, headers=["X-Event"], activationCondition="body.ok", deliveryIdHeader="X-Request-Id")
    response = await client.get(f"/api/v1/hooks/{hook}")
    assert response.status_code == 200, response.text
    info = response.json()
    assert SECRET not in response.text and "secret" not in {k.lower() for k in info}
    assert (info["triggerId"], info["workflowId"], info["name"], info["method"], info["url"]) == (
        hook,
        "hooked",
        "inbound",
        "POST",
        f"/api/v1/hooks/{hook}",
    )
    assert info["signature"] == "hmac-sha256"
    assert info["requiredHeaders"] == ["X-DW-Timestamp", "X-DW-Signature"]
    assert info["signedContent"] == "<X-DW-Timestamp>.<raw body>"
    assert info["timestampToleranceSeconds"] == 300
    assert info["deliveryIdHeaders"] == ["X-Request-Id", "X-Delivery-Id"]
    assert info["copiedHeaders"] == ["x-event"]
    assert (info["activationCondition"], info["payloadTemplate"], info["maxBodyBytes"]) == (True, False, MAX_BODY)
    github = await make_hook(db, name="gh", signature="github")
    info = (await client.get(f"/api/v1/hooks/{github}")).json()
    assert info["requiredHeaders"] == ["X-Hub-Signature-256"] and info["timestampToleranceSeconds"] is None
    assert info["deliveryIdHeaders"] == ["X-GitHub-Delivery", "X-Delivery-Id"]
    unsigned = await make_hook(db, name="open", signature="none")
    info = (await client.get(f"/api/v1/hooks/{unsigned}")).json()
    assert info["requiredHeaders"] == [] and info["signatureFormat"] is None
    # Slack's retries are re-signed: named by their event id, else the body's hash (it said the
    # signed content's, which a retry's new timestamp changes).
    slack = await make_hook(db, name="sl", signature="slack")
    info = (await client.get(f"/api/v1/hooks/{slack}")).json()
    assert info["deliveryIdFallback"].startswith("slack: + the Events API's event_id"), info


async def test_old_deliveries_are_pruned(client: AsyncTestClient[Any], db: Database, hooked: str) -> None:
    hook = await make_hook(db)
    first, body, headers = await deliver(client, hook, {"i": 0})
    for i in range(1, 3):
        assert (await deliver(client, hook, {"i": i}))[0].status_code == 202
    assert_problem(await client.post(f"/api/v1/hooks/{hook}", content=b"{}"), 401)
    await sql(
        db,
        "UPDATE dw.webhook_deliveries SET received_at = received_at - %s WHERE id IN "
        "(SELECT id FROM dw.webhook_deliveries ORDER BY id LIMIT 2)",
        timedelta(days=8),
    )
    assert await prune_webhook_deliveries(db, settings("", webhook_retention_days=0)) == 0
    assert await prune_webhook_deliveries(db, settings("", webhook_retention_days=7)) == 2
    assert len(await rows(db, hook)) == 2
    assert await db.webhooks.prune(keep_seconds=0.0, limit=1) == 1
    assert len(await rows(db, hook)) == 1
    # The pruned deliveries' runs remain; a replay of a pruned accepted delivery starts nothing new.
    assert await runs_of(db, hook) == 3
    replay = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["duplicate"], replay.json()["executionId"]) == (True, first.json()["executionId"])
    assert await runs_of(db, hook) == 3


async def test_a_duplicate_of_a_delivery_whose_run_retention_removed_names_no_run(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """The delivery rows outlive the run (their retention is their own): a resend answered the
    removed run's executionId, and its statusUrl was a 404."""
    hook = await make_hook(db, signature="none")
    url = f"/api/v1/hooks/{hook}"
    first = await client.post(url, json={"n": 1}, headers={"X-Delivery-Id": "d1"})
    assert first.status_code == 202, first.text
    run = first.json()["executionId"]
    await sql(
        db,
        "UPDATE dw.executions SET status = 'Succeeded', created_at = now() - interval '40 days',"
        " started_at = now() - interval '40 days', ended_at = now() - interval '40 days' WHERE id = %s",
        uuid.UUID(run),
    )
    with all_tenants():
        await prune_due(db, Prune(default_seconds=30 * 86400.0))
    assert_problem(await client.get(f"/api/v1/executions/{run}"), 404)
    again = await client.post(url, json={"n": 1}, headers={"X-Delivery-Id": "d1"})
    assert again.status_code == 200, again.text
    answer = again.json()
    assert (answer["duplicate"], answer["executionId"], answer["statusUrl"]) == (True, None, None), answer
    assert "removed (retention)" in answer["note"], answer
    assert first.json()["note"] is None
    [(outcome, status, reason), *_] = reversed(await rows(db, hook))
    assert (outcome, status) == ("duplicate", 200) and f"its run {run} was removed" in (reason or ""), reason
    assert await runs_of(db, hook) == 0


async def test_the_same_delivery_sent_20_times_at_once_starts_one_run(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    hook = await make_hook(db)
    body = b'{"once": true}'
    headers = sign(body)
    responses = await asyncio.gather(
        *(client.post(f"/api/v1/hooks/{hook}", content=body, headers=headers) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    assert len({r.json()["executionId"] for r in responses}) == 1
    assert await runs_of(db, hook) == 1


async def test_a_hook_created_through_the_triggers_api_accepts_deliveries_signed_with_its_secret(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    created = await client.post(
        "/api/v1/workflows/hooked/triggers", json={"kind": "webhook", "name": "from-api", "config": {}}
    )
    assert created.status_code == 201, created.text
    secret, url = created.json()["secret"], created.json()["hookUrl"]
    body = b'{"via": "api"}'
    accepted = await client.post(url, content=body, headers=sign(body, secret=secret))
    assert accepted.status_code == 202, accepted.text
    refused = await client.post(url, content=body, headers=sign(body, secret=SECRET))
    assert assert_problem(refused, 401)["code"] == "signature_invalid"
    assert SECRET not in (await client.get(url)).text and secret not in (await client.get(url)).text


@pytest.mark.parametrize("root_path", ["", "/dw"])
async def test_a_nul_in_a_deliverys_query_is_the_receivers_to_refuse_behind_a_prefix_too(
    dsn: str, db: Database, hooked: str, root_path: str
) -> None:
    """The delivery's query is its payload: a NUL there is refused by the receiver, which records
    the refusal, not by the API's query guard; served under a proxy's prefix (an ASGI root_path)
    as well, where the path the guard used to test began with the prefix."""
    hook = await make_hook(db)
    body = b'{"n": 3}'
    async with AsyncTestClient(create_app(settings(dsn)), root_path=root_path) as prefixed:
        answer = await prefixed.post(
            f"{root_path}/api/v1/hooks/{hook}", params={"q": "a\x00b"}, content=body, headers=sign(body)
        )
    assert answer.status_code < 500, answer.text
    assert len(await rows(db, hook)) == 1, answer.text


async def test_a_copied_header_reaches_the_run_as_the_sender_wrote_it(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """Header bytes come decoded as latin-1 (ASGI): a UTF-8 value copied into the run's trigger used
    to arrive as mojibake (José as JosÃ©)."""
    hook = await make_hook(db, headers=["X-Source"])
    body = json.dumps({"order": 1}).encode()
    sent: dict[str, Any] = {**sign(body), "X-Source": "José 田中".encode()}
    response = await client.post(f"/api/v1/hooks/{hook}", content=body, headers=sent)
    assert response.status_code == 202, response.text
    execution = (await client.get(response.json()["statusUrl"])).json()
    assert execution["trigger"]["headers"] == {"x-source": "José 田中"}


async def test_a_signed_webhooks_secret_is_rotated_in_place_with_an_overlap(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """A leaked secret meant deleting the trigger and making one under a new URL (triggers review)."""
    hook = await make_hook(db)

    async def post(payload: dict[str, Any], secret: str) -> int:
        body = json.dumps(payload).encode()
        return int(
            (await client.post(f"/api/v1/hooks/{hook}", content=body, headers=sign(body, secret=secret))).status_code
        )

    assert await post({"i": 0}, SECRET) == 202
    rotated = await client.post(f"/api/v1/triggers/{hook}/secret", json={"previousValidSeconds": 60})
    assert rotated.status_code == 200, rotated.text
    first = rotated.json()
    new_secret = first["secret"]
    assert len(new_secret) >= 32 and first["hookUrl"] == f"/api/v1/hooks/{hook}" and first["previousSecretUntil"]
    # While the overlap lasts, the old and the new secret both verify; another one does not.
    assert (await post({"i": 1}, SECRET), await post({"i": 2}, new_secret)) == (202, 202)
    assert await post({"i": 3}, "not-the-secret-0123456789") == 401
    # Shown once; the trigger says until when the old one holds.
    shown = (await client.get(f"/api/v1/triggers/{hook}")).json()
    assert shown["secret"] is None and shown["previousSecretUntil"] == first["previousSecretUntil"]
    # A given secret, the old one cut off at once.
    given = "rotated-by-hand-0123456789abcdef"
    again = await client.post(f"/api/v1/triggers/{hook}/secret", json={"secret": given})
    assert again.status_code == 200 and again.json()["secret"] == given and again.json()["previousSecretUntil"] is None
    assert (await post({"i": 4}, new_secret), await post({"i": 5}, given)) == (401, 202)
    # Too short, a schedule, an unsigned hook, an overlap past a week: refused.
    assert_problem(await client.post(f"/api/v1/triggers/{hook}/secret", json={"secret": "short"}), 422)
    # All spaces, a pasted line end, a control character, a file's worth (a review: all were taken).
    for bad in (" " * 16, given + "\n", "tab\tinside-0123456789", "zero\u200bwidth-0123456789", "x" * 1025):
        refused = assert_problem(await client.post(f"/api/v1/triggers/{hook}/secret", json={"secret": bad}), 422)
        assert "a webhook secret has" in refused["detail"], refused
    # Inner spaces and characters of any script are a secret's own (a review: isprintable() refused them).
    for good in ("abc\u00a0def ghi jkl mno", "aaaaaaaaaa\U0001f469\u200d\U0001f4bbbbbbbbbbbb"):
        taken = await client.post(f"/api/v1/triggers/{hook}/secret", json={"secret": good})
        assert taken.status_code == 200 and taken.json()["secret"] == good, taken.text
    again = await client.post(f"/api/v1/triggers/{hook}/secret", json={"secret": given})
    assert again.status_code == 200, again.text
    created = await client.post(
        "/api/v1/workflows/hooked/triggers",
        json={"kind": "webhook", "name": "spaces", "config": {}, "secret": " " * 20},
    )
    assert assert_problem(created, 422)["detail"].startswith("a webhook secret has no whitespace at either end")
    assert (await post({"i": 6}, given)) == 202  # the refusals changed nothing
    assert_problem(await client.post(f"/api/v1/triggers/{hook}/secret", json={"previousValidSeconds": 8 * 86_400}), 400)
    unsigned = await make_hook(db, name="open", signature="none")
    assert_problem(await client.post(f"/api/v1/triggers/{unsigned}/secret"), 409)
    assert_problem(await client.post(f"/api/v1/triggers/{uuid.uuid4()}/secret"), 404)


async def test_a_payload_template_rendering_a_lone_surrogate_is_refused(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """A review: the delivery's row could not be stored (the rendered payload held a lone surrogate, from a
    string literal's escape), and the receiver answered 500, which a sender retries for ever."""
    hook = await make_hook(db, signature="none", payloadTemplate={"s": "{{ '\\ud800' }}"})
    response = await client.post(f"/api/v1/hooks/{hook}", json={"n": 1})
    assert response.status_code == 422, response.text
    assert "lone UTF-16 surrogate" in response.text


async def test_no_condition_helper_is_503_for_an_activation_condition_a_trigger_and_a_publish(
    client: AsyncTestClient[Any], db: Database, hooked: str
) -> None:
    """No condition helper can be started in the API (fork refused: the process limit; EMFILE;
    ENOMEM). A delivery's activation condition answers 503, as an unavailable payload template does;
    so do a trigger's and a workflow's condition checks, which answered 500 ("unhandled domain
    error") and 422 (the definition's conditions "could not be checked"), blaming the caller."""
    hook = await make_hook(db, activationCondition="body.a === 1")
    conditions = client.app.state.services.conditions
    await conditions.close()  # no idle helper left, and none can start

    async def refused() -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    conditions._pool._closed = False
    conditions._pool._spawn = refused  # type: ignore[method-assign]
    response, _, _ = await deliver(client, hook, {"a": 1})
    assert assert_problem(response, 503)["code"] == "condition_unavailable"
    trigger = await client.post(
        "/api/v1/workflows/hooked/triggers",
        json={"kind": "webhook", "name": "conditional", "config": {"activationCondition": "body.a === 1"}},
    )
    assert assert_problem(trigger, 503)["code"] == "condition_unavailable", trigger.text
    raw = wf("conditional", echo("a", to("b", condition="nodes.a.echo == 'a'")), echo("b"))
    published = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert assert_problem(published, 503)["code"] == "condition_unavailable", published.text
