"""The control commands' arguments (no API needed: these never reach it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataworkflows.cli import EXIT_USAGE, build_parser, cmd_decide, cmd_executions_control, cmd_signal


def test_control_commands_parse() -> None:
    parser = build_parser()
    listed = parser.parse_args(["executions", "list", "--status", "suspended", "--workflow", "w", "--limit", "5"])
    assert (listed.status, listed.workflow, listed.limit) == ("Suspended", "w", 5)
    cancel = parser.parse_args(["executions", "cancel", "id-1", "--reason", "r", "--principal", "ops"])
    assert (cancel.func, cancel.action, cancel.reason, cancel.principal) == (
        cmd_executions_control,
        "cancel",
        "r",
        "ops",
    )
    resume = parser.parse_args(["executions", "resume", "id-1"])
    assert (resume.action, getattr(resume, "reason", None)) == ("resume", None)
    signal = parser.parse_args(["signal", "id-1", "go", "--signal-id", "s", "--correlation-key", "k"])
    assert (signal.payload, signal.signal_id, signal.correlation_key) == ("{}", "s", "k")
    approvals = parser.parse_args(["approvals", "list", "--principal", "alice", "--all"])
    assert (approvals.principal, approvals.all) == ("alice", True)
    for decision in ("approve", "reject"):
        decided = parser.parse_args([decision, "a-1", "--comment", "c"])
        assert (decided.func, decided.decision, decided.comment) == (cmd_decide, decision, "c")


def test_unknown_status_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["executions", "list", "--status", "paused"])
    assert exited.value.code == EXIT_USAGE
    assert "unknown status 'paused'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "--payload is not valid JSON"),
        ("[1, 2]", "--payload must be a JSON object"),
        ('"text"', "--payload must be a JSON object"),
        ('{"x": Infinity}', "--payload is not valid JSON"),
        # Read as infinity, and as a lone surrogate: tracebacks when the body was written.
        ('{"x": 1e999}', "--payload holds a number too large for JSON"),
        ('{"x": [{"y": -1e999}]}', "--payload holds a number too large for JSON"),
        ('{"x": "\\ud800"}', "--payload holds a lone surrogate, which is not text"),
        ('{"\\udfff": 1}', "--payload holds a lone surrogate, which is not text"),
    ],
)
def test_signal_payload_must_be_a_json_object(payload: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The API URL points nowhere: the payload is refused before any request. (Not through main(),
    # which would point the process's logging at this test's captured, soon closed, stderr.)
    args = build_parser().parse_args(["signal", "id-1", "go", "--payload", payload, "--api-url", "http://127.0.0.1:9"])
    assert args.func is cmd_signal
    code = cmd_signal(args)
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_approvals_list_says_when_there_is_more_and_takes_the_cursor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the first --limit (100) and nothing else, however many more were open."""
    import argparse

    import httpx

    from dataworkflows import cli

    seen: list[httpx.Request] = []
    approval = {
        "id": "a1",
        "state": "open",
        "workflowId": "w",
        "nodeId": "n",
        "decisions": [],
        "required": 1,
        "approvers": ["alice"],
        "title": "t",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        link = '</api/v1/approvals?limit=1&status=open&cursor=WyJ4Il0>; rel="next"'
        return httpx.Response(200, json=[approval], headers={"Link": link})

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    args = build_parser().parse_args(["approvals", "list", "--limit", "1", "--api-url", "http://api"])
    assert args.func(args) == 0
    assert capsys.readouterr().err.strip() == "more: add --cursor WyJ4Il0"
    args = build_parser().parse_args(["approvals", "list", "--cursor", "WyJ4Il0", "--api-url", "http://api"])
    assert args.func(args) == 0
    assert dict(seen[-1].url.params)["cursor"] == "WyJ4Il0"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["approvals", "list", "--limit", "501"])


TRIGGER = {
    "id": "t1",
    "workflowId": "w",
    "kind": "webhook",
    "name": "hook",
    "enabled": True,
    "config": {},
    "hookUrl": "/api/v1/hooks/t1",
}
CONNECTION = {"name": "crm", "kind": "http", "allowedWorkflows": ["*"]}


@pytest.mark.parametrize(
    ("argv", "path", "row"),
    [
        (["triggers", "list", "--kind", "webhook"], "/api/v1/triggers", TRIGGER),
        (["triggers", "list", "--workflow", "w"], "/api/v1/workflows/w/triggers", TRIGGER),
        (["triggers", "list", "--json"], "/api/v1/triggers", TRIGGER),
        (["connections", "list"], "/api/v1/connections", CONNECTION),
        (["connections", "list", "--json"], "/api/v1/connections", CONNECTION),
    ],
    ids=["triggers", "a-workflows-triggers", "triggers-json", "connections", "connections-json"],
)
def test_trigger_and_connection_lists_say_when_there_is_more_and_take_the_cursor(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str,
    row: dict[str, Any],
) -> None:
    """They printed what one answer held: since the API pages these lists (1000 a page unless
    --limit says otherwise), the rest would have been cut without a word."""
    import argparse

    import httpx

    from dataworkflows import cli

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        link = f'<{path}?limit=1&cursor=WyJ4Il0>; rel="next"' if "cursor" not in request.url.params else ""
        return httpx.Response(200, json=[row], headers={"Link": link} if link else {})

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    args = build_parser().parse_args([*argv, "--limit", "1", "--api-url", "http://api"])
    assert args.func(args) == 0
    printed = capsys.readouterr()
    # The cursor holds to the page's filter: the hint says so (a review: deliveries --outcome left it out).
    kept = " (keep --kind webhook)" if "--kind" in argv else ""
    assert printed.err.strip() == f"more: add --cursor WyJ4Il0{kept}"
    assert row["name"] in printed.out
    if "--json" in argv:
        assert json.loads(printed.out) == [row], "the JSON stays whole on stdout"
    assert (seen[-1].url.path, seen[-1].url.params["limit"]) == (path, "1")
    args = build_parser().parse_args([*argv, "--cursor", "WyJ4Il0", "--api-url", "http://api"])
    assert args.func(args) == 0
    assert dict(seen[-1].url.params)["cursor"] == "WyJ4Il0" and seen[-1].url.params["limit"] == "1000"
    assert capsys.readouterr().err == "", "the last page says nothing more"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--limit", "1001"])


@pytest.mark.parametrize(
    ("argv", "first", "past"),
    [
        (["triggers", "list"], "no triggers", "no more triggers"),
        (["connections", "list"], "no stored connections", "no more stored connections"),
    ],
)
def test_an_empty_page_past_a_cursor_says_no_more_not_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], first: str, past: str
) -> None:
    """Rows deleted between two page reads leave the next page empty: it said there were none at all."""
    import argparse

    import httpx

    from dataworkflows import cli

    def client(args: argparse.Namespace) -> httpx.Client:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
        return httpx.Client(base_url=cli._api_url(args), transport=transport)

    monkeypatch.setattr(cli, "_client", client)
    for extra, said in (([], first), (["--cursor", "WyJ4Il0"], past)):
        args = build_parser().parse_args([*argv, *extra, "--api-url", "http://api"])
        assert args.func(args) == 0
        assert capsys.readouterr().out.startswith(said)


@pytest.mark.parametrize("identifier", ["", ".", ".."])
def test_an_id_that_would_address_another_resource_is_refused(
    identifier: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # httpx resolves dot segments: `status .` read the executions list, `triggers delete ..` sent
    # DELETE /api/v1. Refused before any request (the API URL points nowhere).
    from dataworkflows.cli import main

    for argv in (["status", identifier], ["triggers", "delete", identifier], ["workflows", "archive", identifier]):
        assert main([*argv, "--api-url", "http://127.0.0.1:9"]) == EXIT_USAGE, argv
        assert f"error: {identifier!r} is not an id" in capsys.readouterr().err


@pytest.mark.parametrize(("since", "until"), [("1h", "2h"), ("2h", "2h"), ("120min", "2h")])
def test_a_window_that_holds_nothing_is_refused(capsys: pytest.CaptureFixture[str], since: str, until: str) -> None:
    # `--since 1h --until 2h` (swapped) printed "no executions". Refused before any request. So is
    # the same age twice: each was read from the clock in turn, a window of a few microseconds.
    from dataworkflows.cli import cmd_executions_list

    args = build_parser().parse_args(
        ["executions", "list", "--since", since, "--until", until, "--api-url", "http://127.0.0.1:9"]
    )
    assert cmd_executions_list(args) == EXIT_USAGE
    assert "is not after --since" in capsys.readouterr().err


def test_a_buffered_signal_names_the_correlation_key_an_open_wait_expects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "no node waits for it yet" while the order-payment example's node waited for A-1003."""
    import httpx

    from dataworkflows import cli

    waits: list[dict[str, Any]] = [
        {"kind": "signal", "state": "open", "name": "payment", "correlationKey": "A-1003"},
        {"kind": "signal", "state": "received", "name": "payment", "correlationKey": "A-1"},
    ]

    outcome: dict[str, Any] = {
        "signalId": "s-1",
        "outcome": "buffered",
        "waitId": None,
        "nodeId": None,
        "executionStatus": "Waiting",
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            return httpx.Response(202, json=outcome)
        return httpx.Response(200, json=waits)

    def client(args: Any) -> httpx.Client:
        return httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    args = build_parser().parse_args(["signal", "e-1", "payment", "--api-url", "http://api"])
    assert cmd_signal(args) == 0
    said = capsys.readouterr().out
    assert "the open payment wait expects correlation key A-1003 and this signal has no correlation key" in said, said
    waits.clear()
    assert cmd_signal(args) == 0
    assert "buffered: no node waits for it yet" in capsys.readouterr().out
    assert seen == ["POST", "GET", "POST", "GET"]
    # A signal that was consumed reads no waits.
    outcome["outcome"], outcome["nodeId"] = "consumed", "pay"
    assert cmd_signal(args) == 0
    assert "consumed by node pay" in capsys.readouterr().out and seen[-1] == "POST"


def test_what_an_answer_holds_cannot_drive_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: a webhook's X-Delivery-Id of escape sequences, printed by `triggers deliveries`,
    cleared the screen, retitled the window and printed a fake row; a display name with U+202E read
    reversed. What the commands print from an answer has such characters written as escapes; the JSON
    output was ASCII already."""
    import argparse

    import httpx

    from dataworkflows import cli

    name = "orders\x1b]0;pwned\x07\x1b[2J\r\u202egnp.exe"
    row = {**TRIGGER, "name": name}

    def client(args: argparse.Namespace) -> httpx.Client:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[row]))
        return httpx.Client(base_url=cli._api_url(args), transport=transport)

    monkeypatch.setattr(cli, "_client", client)
    assert cli.main(["triggers", "list", "--api-url", "http://api"]) == 0
    out = capsys.readouterr().out
    assert "orders\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\u202egnp.exe" in out, out
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    assert cli.main(["triggers", "list", "--json", "--api-url", "http://api"]) == 0
    assert json.loads(capsys.readouterr().out) == [row], "the JSON keeps the value, escaped as JSON does"

    # The error line of a refused answer too (said once the command has raised): its detail is the server's.
    problem = {"type": "about:blank", "title": "Bad request", "status": 400, "detail": f"no {name}"}
    response = httpx.Response(400, json=problem, headers={"Content-Type": "application/problem+json"})

    def refused(args: argparse.Namespace) -> int:
        raise cli.Refused(response)

    monkeypatch.setattr(cli, "cmd_status", refused)
    assert cli.main(["status", "x", "--api-url", "http://api"]) != 0
    err = capsys.readouterr().err
    assert "\\x1b]0;pwned" in err and not any(c in err for c in "\x1b\x07\r\u202e"), err


def test_approvals_list_names_an_escalations_approvers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`approvals list --principal dana` listed an approval dana may decide from its escalation, and
    its APPROVERS column named only alice: who else may decide, and from when, was not said."""
    import argparse

    import httpx

    from dataworkflows import cli

    approval = {
        "id": "a-1",
        "state": "open",
        "workflowId": "w",
        "nodeId": "ok",
        "required": 1,
        "decisions": [],
        "approvers": ["alice"],
        "title": "t",
        "escalation": {"approvers": ["dana", "erin"], "at": "2026-12-07T22:18:10+00:00"},
    }

    def client(args: argparse.Namespace) -> httpx.Client:
        answer = httpx.MockTransport(lambda request: httpx.Response(200, json=[approval]))
        return httpx.Client(base_url=cli._api_url(args), transport=answer)

    monkeypatch.setattr(cli, "_client", client)
    args = build_parser().parse_args(["approvals", "list", "--principal", "dana", "--api-url", "http://api"])
    assert args.func(args) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "alice (then dana,erin from 2026-12-07T22:18:10+00:00)" in row and row.endswith(" t"), row


@pytest.mark.parametrize(
    "argv",
    [
        ["dead-letters", "redrive-all", "--workflow", ""],
        ["signal-all", "go", "--workflow", " "],
        ["audit-log", "--workflow", ""],
        ["audit-log", "--type", ""],
        ["executions", "cancel-all", ""],
    ],
)
def test_an_empty_filter_is_refused_not_left_out(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`dead-letters redrive-all --workflow "$WF"` with $WF empty: the command left the empty filter
    out of its request, and redrove every workflow's open letters (signal-all signalled every
    workflow's waiting runs); an empty filter is a usage error (exit code 2) before anything is sent."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "empty: give a value, or leave the option out" in capsys.readouterr().err


def test_cancel_all_takes_a_status_in_any_letter_case() -> None:
    """`executions list --status suspended` works; `executions cancel-all W --status suspended` was
    refused (invalid choice: 'suspended')."""
    args = build_parser().parse_args(["executions", "cancel-all", "w", "--status", "suspended", "--status", "RUNNING"])
    assert args.status == ["Suspended", "Running"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["executions", "cancel-all", "w", "--status", "succeeded"])
