"""`dataworkflows executions tree` (the API's tree printed indented by depth), and what `run` and
`workflows list` print (the API is faked with httpx's MockTransport: no server is needed)."""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_OK, EXIT_USAGE, build_parser, cmd_executions_tree

ROOT = "11111111-1111-1111-1111-111111111111"
CHILD = "22222222-2222-2222-2222-222222222222"
GRANDCHILD = "33333333-3333-3333-3333-333333333333"


def row(execution_id: str, depth: int, workflow: str, status: str, node: str | None) -> dict[str, Any]:
    return {
        "id": execution_id,
        "parentExecutionId": None,
        "parentNodeId": node,
        "depth": depth,
        "workflowId": workflow,
        "workflowVersion": depth + 1,
        "status": status,
        "createdAt": "2025-01-01T00:00:00Z",
        "startTime": None,
        "endTime": None,
        "errorCode": None,
    }


TREE = [
    row(ROOT, 0, "parent", "Waiting", None),
    row(CHILD, 1, "child", "Waiting", "call"),
    row(GRANDCHILD, 2, "grandchild", "Succeeded", "deeper"),
]


def fake_api(monkeypatch: pytest.MonkeyPatch, status: int, body: Any) -> list[httpx.Request]:
    """Points the CLI's client at a handler answering `status` and `body`; returns the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    return seen


def test_tree_parses() -> None:
    args = build_parser().parse_args(["executions", "tree", "id-1", "--json", "--api-url", "http://api"])
    assert (args.func, args.execution_id, args.json, args.api_url) == (cmd_executions_tree, "id-1", True, "http://api")


def test_tree_prints_each_execution_indented_by_depth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_api(monkeypatch, 200, TREE)
    args = build_parser().parse_args(["executions", "tree", CHILD, "--api-url", "http://api"])
    assert cmd_executions_tree(args) == EXIT_OK
    assert [str(r.url) for r in seen] == [f"http://api/api/v1/executions/{CHILD}/tree"]
    assert capsys.readouterr().out.splitlines() == [
        f"{ROOT}  parent@1  Waiting",
        f"  {CHILD}  child@2  Waiting  (node call)",
        f"    {GRANDCHILD}  grandchild@3  Succeeded  (node deeper)",
    ]


def test_tree_follows_every_page(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A tree of more runs than a page holds came cut at 1,000 without a word: every page is read."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = 0 if "cursor" not in request.url.params else int(request.url.params["cursor"][1:])
        headers = {"Link": f'</api/v1/executions/{ROOT}/tree?cursor=c{page + 1}&limit=1000>; rel="next"'}
        return httpx.Response(200, json=[TREE[page]], headers=headers if page < 2 else {})

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    args = build_parser().parse_args(["executions", "tree", ROOT, "--api-url", "http://api"])
    assert cmd_executions_tree(args) == EXIT_OK
    assert [r.url.params.get("cursor") for r in seen] == [None, "c1", "c2"]
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_tree_json_prints_the_api_rows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, 200, TREE[:1])
    args = build_parser().parse_args(["executions", "tree", ROOT, "--json", "--api-url", "http://api"])
    assert cmd_executions_tree(args) == EXIT_OK
    assert '"workflowId": "parent"' in capsys.readouterr().out


def test_tree_of_an_unknown_execution_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    problem = {"title": "Not Found", "detail": "execution a/b not found (not a UUID)", "status": 404}
    seen = fake_api(monkeypatch, 404, problem)
    args = build_parser().parse_args(["executions", "tree", "a/b", "--api-url", "http://api"])
    assert cmd_executions_tree(args) == EXIT_USAGE
    assert seen[0].url.raw_path == b"/api/v1/executions/a%2Fb/tree", "the id is one path segment"
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: HTTP 404: execution a/b not found" in captured.err


@pytest.mark.parametrize(
    ("created", "said"), [(True, ""), (False, " (started before with this request id; not again)")]
)
def test_run_says_when_its_request_id_was_used_before(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], created: bool, said: str
) -> None:
    """The same --request-id twice answers the first run (created: false), and printed it as a new start."""
    answer = {"executionId": ROOT, "status": "Succeeded", "workflowVersion": 1, "created": created}
    fake_api(monkeypatch, 202, answer)
    args = build_parser().parse_args(["run", "parent", "--request-id", "rq-1", "--api-url", "http://api"])
    assert args.func(args) == EXIT_OK
    assert capsys.readouterr().out == f"execution {ROOT} (parent v1) Succeeded{said}\n"


def test_an_empty_workflows_list_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A tenant with no workflows got the table's header alone."""
    fake_api(monkeypatch, 200, {"items": [], "nextCursor": None})
    args = build_parser().parse_args(["workflows", "list", "--api-url", "http://api"])
    assert args.func(args) == EXIT_OK
    assert capsys.readouterr().out == "no workflows\n"
