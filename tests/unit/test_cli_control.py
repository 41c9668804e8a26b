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
