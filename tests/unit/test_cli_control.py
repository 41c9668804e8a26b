"""The control commands' arguments (no API needed: these never reach it)."""

from __future__ import annotations

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
