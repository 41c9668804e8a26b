"""`--json` on the lists that lacked it (workflows, approvals, dead letters): the API's rows as JSON,
for scripts, with the next page's cursor where the table says it (the API is faked with httpx's
MockTransport: no server is needed)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_OK, build_parser

WORKFLOW = {"id": "w", "status": "Active", "currentVersion": 1, "latestVersion": 1, "displayName": "W"}
APPROVAL = {"id": "a1", "state": "open", "workflowId": "w", "nodeId": "n", "decisions": [], "required": 1}
LETTERS = {"items": [{"id": 7, "kind": "execution"}], "nextCursor": "c2"}


def fake_api(monkeypatch: pytest.MonkeyPatch, body: Any, headers: dict[str, str] | None = None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body, headers=headers or {})

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args([*argv, "--json", "--api-url", "http://api"])
    return int(args.func(args))


def test_workflows_list_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, {"items": [WORKFLOW], "nextCursor": None})
    assert run(["workflows", "list"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [WORKFLOW]


def test_approvals_list_json_says_the_next_page_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api(monkeypatch, [APPROVAL], {"Link": '</api/v1/approvals?cursor=c2&limit=100>; rel="next"'})
    assert run(["approvals", "list"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert (json.loads(out), err) == ([APPROVAL], "more: add --cursor c2\n")


def test_dead_letters_list_json_is_the_page(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api(monkeypatch, LETTERS)
    assert run(["dead-letters", "list"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == LETTERS
