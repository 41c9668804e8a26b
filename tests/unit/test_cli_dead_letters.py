"""`dead-letters list` and `dead-letters show` on a compensation_failed letter: it has no node (it is
the run's), and its message, cut at 80 characters in the list, cut a failed child's run id in two.
The list names the failed steps in NODE and each failed child run on a line of its own, whole;
`show` prints the letter whole (the API is faked with httpx's MockTransport: no server is needed)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_OK, build_parser

RUN = "4b0f3a52-29c4-4d0e-9a63-0d6f6e1c9b01"
KID_B = "8f2d6c1e-3b47-4f0a-b1c9-2e5d7a9c0f11"
KID_C = "c1a9e7d3-5f20-4b8e-8d64-7a3b1e0c2d22"
LETTER: dict[str, Any] = {
    "id": 12,
    "kind": "compensation_failed",
    "executionId": RUN,
    "workflowId": "tour",
    "nodeId": None,
    "jobId": None,
    "payload": {
        "workflowId": "tour",
        "version": 1,
        "runStatus": "Failed",
        "failedSteps": ["stays", "stays"],
        "failedChildren": [
            {"nodeId": "stays", "childExecutionId": KID_B, "failedSteps": ["book-hotel"]},
            {"nodeId": "stays", "childExecutionId": KID_C, "failedSteps": ["book-hotel", "book-car"]},
        ],
    },
    "error": {
        "code": "compensation_failed",
        "message": f"2 of 3 compensation steps failed: stays child run {KID_B} (book-hotel (x: y)); "
        f"stays child run {KID_C} (book-hotel (x: y))",
    },
    "attempts": 2,
    "createdAt": "2026-12-08T02:00:00Z",
    "redrivenAt": None,
    "redrivenBy": None,
    "closedAt": None,
    "closedBy": None,
    "closeReason": None,
    "closeNote": None,
}
NODE_LETTER: dict[str, Any] = {
    **LETTER,
    "id": 11,
    "kind": "node_failed",
    "nodeId": "charge",
    "payload": {},
    "error": {"code": "boom", "message": "x" * 200},
}


def fake_api(monkeypatch: pytest.MonkeyPatch, body: Any) -> list[str]:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=body)

    def client(args: argparse.Namespace) -> httpx.Client:
        return httpx.Client(base_url=cli._api_url(args), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli, "_client", client)
    return paths


def run(argv: list[str]) -> int:
    args = build_parser().parse_args([*argv, "--api-url", "http://api"])
    return int(args.func(args))


def test_the_list_names_a_compensation_letters_steps_and_child_runs_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api(monkeypatch, {"items": [LETTER, NODE_LETTER], "nextCursor": None})
    assert run(["dead-letters", "list"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    _, letter, kid_b, kid_c, node_letter = lines
    assert letter.split()[:4] == ["12", "compensation_failed", "tour", "stays"]
    # Each child run on a line of its own, its id whole and a word by itself (a double-click copies it).
    assert kid_b.split()[:3] == ["child", "run", KID_B] and "undo of stays; failed in it: book-hotel)" in kid_b
    assert kid_c.split()[:3] == ["child", "run", KID_C] and "failed in it: book-hotel, book-car)" in kid_c
    # A node's letter is as it was: its node, its message cut at 80 characters, no lines under it.
    assert node_letter.split()[:4] == ["11", "node_failed", "tour", "charge"]
    assert node_letter.endswith(" " + "x" * 80)


def test_show_prints_the_letter_whole(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    paths = fake_api(monkeypatch, LETTER)
    assert run(["dead-letters", "show", "12"]) == EXIT_OK
    assert paths == ["/api/v1/dead-letters/12"]
    out = capsys.readouterr().out
    assert out.splitlines()[:9] == [
        "dead letter 12",
        "  kind      compensation_failed",
        f"  run       {RUN}",
        "  workflow  tour",
        "  node      stays",
        "  attempts  2",
        "  created   2026-12-08T02:00:00Z",
        "  state     open",
        f"  error     compensation_failed: {LETTER['error']['message']}",
    ]
    assert out.splitlines()[9:] == [
        f"  child run {KID_B}  (undo of stays; failed in it: book-hotel)",
        f"  child run {KID_C}  (undo of stays; failed in it: book-hotel, book-car)",
    ]


def test_show_json_is_the_letter(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, LETTER)
    assert run(["dead-letters", "show", "12", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == LETTER


def test_a_letter_from_before_failed_children_were_recorded_reads_as_before(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api(monkeypatch, {"items": [{**LETTER, "payload": {"workflowId": "tour"}}], "nextCursor": None})
    assert run(["dead-letters", "list"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[3] == "-"
