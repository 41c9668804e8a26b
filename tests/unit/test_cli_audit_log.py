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
