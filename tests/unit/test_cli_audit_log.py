"""`dataworkflows audit-log` (README "The audit log"): what an export says when a page fails."""

from __future__ import annotations

import json

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_UNAVAILABLE, build_parser


def _event(event_id: int) -> dict[str, object]:
    return {"id": event_id, "executionId": "e", "workflowId": "w", "nodeId": None, "type": "t", "at": "x"}


def test_an_export_cut_by_a_failing_page_still_says_where_to_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit-log --after ID >> audit.ndjson`: the first page was written, the second failed (a 503, the
    statement timeout): the export said only the error, not the id to go on from, so the next one
    started again from the old --after and wrote the first page's events twice."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["after"] == "5":
            return httpx.Response(200, json={"items": [_event(6), _event(7)], "nextAfter": 7})
        return httpx.Response(503, json={"title": "Service Unavailable", "detail": "statement timeout"})

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    code = cli.cmd_audit_log(build_parser().parse_args(["audit-log", "--after", "5", "--page-size", "2"]))
    out, err = capsys.readouterr()
    assert code == EXIT_UNAVAILABLE
    assert [json.loads(line)["id"] for line in out.splitlines()] == [6, 7]
    assert "statement timeout" in err
    assert "2 events; the next export: --after 7" in err, err


def test_an_export_cut_by_a_lost_connection_still_says_where_to_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["after"] == "0":
            return httpx.Response(200, json={"items": [_event(1)], "nextAfter": 1})
        raise httpx.ConnectError("refused", request=request)

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    with pytest.raises(httpx.ConnectError):
        cli.cmd_audit_log(build_parser().parse_args(["audit-log", "--page-size", "1"]))
    assert "1 events; the next export: --after 1" in capsys.readouterr().err


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
