"""`dataworkflows triggers ...`: what the commands send and print (the API is faked with httpx's
MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataworkflows.cli import EXIT_OK, EXIT_USAGE, build_parser
from tests.unit.test_cli_tree import fake_api

TRIGGER = {
    "id": "44444444-4444-4444-4444-444444444444",
    "workflowId": "nightly",
    "kind": "webhook",
    "name": "inbound",
    "enabled": True,
    "config": {"signature": "github"},
    "hasSecret": True,
    "hookUrl": "/api/v1/hooks/44444444-4444-4444-4444-444444444444",
    "nextTickAt": None,
    "error": None,
    "secret": "s3cr3t-s3cr3t-s3cr3t-s3cr3t",
}


def run(argv: list[str]) -> int:
    args = build_parser().parse_args([*argv, "--api-url", "http://api"])
    code = args.func(args)
    assert isinstance(code, int)
    return code


def test_create_a_schedule_sends_its_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule = {**TRIGGER, "kind": "schedule", "name": "night", "config": {"cron": "0 2 * * *"}, "secret": None}
    seen = fake_api(monkeypatch, 201, schedule)
    argv = ["triggers", "create", "nightly", "--kind", "schedule", "--name", "night", "--cron", "0 2 * * *"]
    assert run([*argv, "--timezone", "Europe/Berlin", "--payload", '{"report": "daily"}']) == EXIT_OK
    sent = json.loads(seen[0].content)
    assert seen[0].url.path == "/api/v1/workflows/nightly/triggers"
    assert sent == {
        "kind": "schedule",
        "name": "night",
        "enabled": True,
        "config": {
            "cron": "0 2 * * *",
            "timezone": "Europe/Berlin",
            "catchUp": "latest",
            "payload": {"report": "daily"},
        },
    }
    assert "night" in capsys.readouterr().out
    # The overlap policy only when given (the API's default, allow, otherwise).
    assert run([*argv, "--overlap", "skip"]) == EXIT_OK
    assert json.loads(seen[1].content)["config"]["overlap"] == "skip"


def test_create_a_webhook_prints_its_secret_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_api(monkeypatch, 201, TRIGGER)
    assert (
        run(["triggers", "create", "nightly", "--kind", "webhook", "--name", "inbound", "--signature", "github"]) == 0
    )
    assert json.loads(seen[0].content)["config"] == {"signature": "github"}
    assert "s3cr3t-s3cr3t-s3cr3t-s3cr3t" in capsys.readouterr().out


def test_a_schedule_without_cron_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_api(monkeypatch, 201, TRIGGER)
    assert run(["triggers", "create", "nightly", "--kind", "schedule", "--name", "n"]) == EXIT_USAGE
    assert seen == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--kind", "webhook", "--unsigned", "--signature", "github"], "give --signature or --unsigned, not both"),
        (["--kind", "webhook", "--cron", "* * * * *"], "--cron: not for a webhook"),
        (["--kind", "webhook", "--payload", "{}", "--timezone", "UTC"], "--timezone, --payload: not for a webhook"),
        (["--kind", "webhook", "--overlap", "skip"], "--overlap: not for a webhook"),
        (["--kind", "schedule", "--cron", "* * * * *", "--signature", "github"], "--signature: not for a schedule"),
        (["--kind", "schedule", "--cron", "* * * * *", "--header", "X-A"], "--header: not for a schedule"),
        (["--kind", "schedule", "--cron", "* * * * *", "--payload", "{bad"], "--payload is not JSON: Expecting"),
        (["--kind", "event"], "an event trigger needs --event-type"),
        (["--kind", "event", "--event-type", "x", "--cron", "* * * * *"], "--cron: not for an event trigger"),
        (["--kind", "webhook", "--event-type", "x"], "--event-type: not for a webhook"),
        (["--kind", "schedule", "--cron", "* * * * *", "--source", "/s"], "--source: not for a schedule"),
    ],
)
def test_an_option_of_the_other_kind_or_a_contradiction_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    """They were dropped without a word: --unsigned won over --signature (an unsigned hook), a
    webhook's --cron was lost, and a schedule took --signature and --header."""
    seen = fake_api(monkeypatch, 201, TRIGGER)
    assert run(["triggers", "create", "nightly", "--name", "n", *extra]) == EXIT_USAGE
    assert says in capsys.readouterr().err
    assert seen == [], "nothing was created"


def test_an_event_trigger_takes_its_type_and_source(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_api(monkeypatch, 201, TRIGGER)
    argv = ["triggers", "create", "nightly", "--kind", "event", "--name", "orders", "--event-type", "shop.order.*"]
    assert run(argv) == EXIT_OK
    assert run([*argv, "--source", "/shop"]) == EXIT_OK
    assert [json.loads(r.content)["config"] for r in seen] == [
        {"eventType": "shop.order.*"},
        {"eventType": "shop.order.*", "source": "/shop"},
    ]


def test_a_webhook_is_signed_with_hmac_sha256_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_api(monkeypatch, 201, TRIGGER)
    assert run(["triggers", "create", "nightly", "--kind", "webhook", "--name", "inbound"]) == EXIT_OK
    assert run(["triggers", "create", "nightly", "--kind", "webhook", "--name", "open", "--unsigned"]) == EXIT_OK
    assert [json.loads(r.content)["config"] for r in seen] == [{"signature": "hmac-sha256"}, {"signature": "none"}]


@pytest.mark.parametrize(
    ("action", "method", "body"),
    [("enable", "PATCH", {"enabled": True}), ("disable", "PATCH", {"enabled": False}), ("delete", "DELETE", None)],
)
def test_enable_disable_delete(monkeypatch: pytest.MonkeyPatch, action: str, method: str, body: Any) -> None:
    seen = fake_api(monkeypatch, 204 if method == "DELETE" else 200, TRIGGER)
    assert run(["triggers", action, TRIGGER["id"]]) == EXIT_OK
    assert (seen[0].method, seen[0].url.path) == (method, f"/api/v1/triggers/{TRIGGER['id']}")
    assert (json.loads(seen[0].content) if seen[0].content else None) == body


def test_list_and_a_refusal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, 200, [TRIGGER])
    assert run(["triggers", "list", "--kind", "webhook"]) == EXIT_OK
    assert "inbound" in capsys.readouterr().out
    fake_api(monkeypatch, 404, {"status": 404, "title": "Not Found", "detail": "trigger x not found"})
    assert run(["triggers", "disable", "x"]) == EXIT_USAGE
    assert "trigger x not found" in capsys.readouterr().err


def test_a_workflows_triggers_are_listed_of_the_kind_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """--kind with --workflow was dropped without a word: every trigger of the workflow was listed."""
    seen = fake_api(monkeypatch, 200, [])
    assert run(["triggers", "list", "--workflow", "simple-echo", "--kind", "schedule"]) == 0
    assert seen[-1].url.path == "/api/v1/workflows/simple-echo/triggers"
    assert dict(seen[-1].url.params) == {"kind": "schedule", "limit": "1000"}


def test_rotate_secret_sends_the_overlap_and_shows_the_new_secret_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated = {**TRIGGER, "previousSecretUntil": "2026-12-05T20:00:00+00:00"}
    seen = fake_api(monkeypatch, 200, rotated)
    assert run(["triggers", "rotate-secret", TRIGGER["id"], "--keep-previous", "1h"]) == EXIT_OK
    request = seen[-1]
    assert request.method == "POST" and request.url.path == f"/api/v1/triggers/{TRIGGER['id']}/secret"
    assert json.loads(request.content) == {"previousValidSeconds": 3600}
    out = capsys.readouterr().out
    assert "the previous secret verifies until 2026-12-05T20:00:00+00:00" in out
    assert f"signing secret (shown once; keep it with the sender): {TRIGGER['secret']}" in out
    assert run(["triggers", "rotate-secret", TRIGGER["id"], "--keep-previous", "5m"]) == EXIT_USAGE
    assert "--keep-previous" in capsys.readouterr().err


def test_rotate_secret_from_a_file_that_is_not_utf8_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """It was reported as a bad --keep-previous (UnicodeDecodeError is a ValueError)."""
    seen = fake_api(monkeypatch, 200, TRIGGER)
    bad = tmp_path / "secret"
    bad.write_bytes(b"\xff\xfe not text")
    assert run(["triggers", "rotate-secret", TRIGGER["id"], "--secret-file", str(bad)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot read the secret" in err and "--keep-previous" not in err and not seen
    good = tmp_path / "good"
    good.write_text("a-new-secret-0123456789abcdef\n")
    assert run(["triggers", "rotate-secret", TRIGGER["id"], "--secret-file", str(good)]) == EXIT_OK
    assert json.loads(seen[-1].content) == {"secret": "a-new-secret-0123456789abcdef"}
    assert "shown once" not in capsys.readouterr().out


DELIVERY = {
    "id": 7,
    "deliveryId": "order-43",
    "receivedAt": "2026-12-06T01:49:37.123456Z",
    "outcome": "refused",
    "reason": "malformed_body: not JSON",
    "statusCode": 400,
    "executionId": None,
    "bodyBytes": 13,
    "lapsedAt": None,
}
TICK = {"tickAt": "2026-12-06T02:00:00Z", "firedAt": "2026-12-06T02:03:00Z", "executionId": None, "missedTicks": 4}


def test_deliveries_send_the_filter_and_print_a_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_api(monkeypatch, 200, [DELIVERY])
    assert run(["triggers", "deliveries", TRIGGER["id"], "--outcome", "refused", "--limit", "20"]) == EXIT_OK
    assert seen[0].url.path == f"/api/v1/triggers/{TRIGGER['id']}/deliveries"
    assert dict(seen[0].url.params) == {"outcome": "refused", "limit": "20"}
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[:4] == ["2026-12-06T01:49:37.123456Z", "refused", "400", "-"]
    assert line.endswith("order-43  reason: malformed_body: not JSON")
    fake_api(monkeypatch, 200, [])
    assert run(["triggers", "deliveries", TRIGGER["id"], "--cursor", "abc"]) == EXIT_OK
    assert capsys.readouterr().out == "no more deliveries\n"


def test_an_unknown_outcome_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_api(monkeypatch, 200, [])
    with pytest.raises(SystemExit):
        run(["triggers", "deliveries", TRIGGER["id"], "--outcome", "delivered"])
    assert seen == []


def test_ticks_print_lateness_missed_ticks_and_a_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_api(monkeypatch, 200, [TICK])
    assert run(["triggers", "ticks", TRIGGER["id"], "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [TICK]
    assert run(["triggers", "ticks", TRIGGER["id"]]) == EXIT_OK
    assert seen[-1].url.path == f"/api/v1/triggers/{TRIGGER['id']}/ticks"
    line = capsys.readouterr().out
    assert "fired    3m00s late" in line and "no run" in line and line.rstrip().endswith("missed 4")
    # A tick the overlap policy skipped names the run still going; one that cancelled, the run it cancelled.
    going, mine = "0b0f2a9c-0000-4000-8000-000000000001", "0b0f2a9c-0000-4000-8000-000000000002"
    fake_api(monkeypatch, 200, [{**TICK, "overlappedBy": going}, {**TICK, "executionId": mine, "overlappedBy": going}])
    assert run(["triggers", "ticks", TRIGGER["id"]]) == EXIT_OK
    skipped, cancelling = capsys.readouterr().out.splitlines()
    assert f"- (overlap: no run beside {going})" in skipped
    assert f"{mine}  (overlap: cancels {going})" in cancelling
    # A buffered tick (bufferOne, cancelOther) waits for the run still going, or started after its end.
    fake_api(
        monkeypatch,
        200,
        [
            {**TICK, "overlappedBy": going, "buffered": True},
            {**TICK, "executionId": mine, "overlappedBy": going, "buffered": True},
        ],
    )
    assert run(["triggers", "ticks", TRIGGER["id"]]) == EXIT_OK
    waiting, waited = capsys.readouterr().out.splitlines()
    assert f"- (overlap: waits for {going} to end)" in waiting
    assert f"{mine}  (overlap: started after {going} ended)" in waited
    fake_api(monkeypatch, 409, {"status": 409, "title": "Conflict", "detail": "only a schedule has ticks"})
    assert run(["triggers", "ticks", TRIGGER["id"]]) == EXIT_USAGE
    assert "HTTP 409: only a schedule has ticks" in capsys.readouterr().err
