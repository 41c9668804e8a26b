"""`dataworkflows executions|signal|approvals|approve|reject` against a running API (no worker: runs
stay where the commands put them). The commands run in the test's process (see cli_in_process)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.cli_in_process import in_process
from tests.acceptance.conftest import Stack
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return in_process(stack, capsys, monkeypatch)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert text in result.stderr, result.stderr


def test_executions_signals_and_approvals(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(load_fixture("bundle1/simple-echo-workflow.json")))
    ok(cli("workflows", "apply", str(path), "--publish"))
    started = ok(cli("run", "simple-echo"))
    match = re.search(r"execution ([0-9a-f-]{36}) ", started)
    assert match, started
    execution_id = match.group(1)

    listing = ok(cli("executions", "list", "--workflow", "simple-echo"))
    assert listing.splitlines()[1].split()[:4] == [execution_id, "simple-echo", "1", "Pending"]
    assert ok(cli("executions", "list", "--status", "suspended")).strip() == "no executions"
    refused(cli("executions", "list", "--status", "paused"), "unknown status")

    # Suspend, resume; a second resume is refused.
    suspended = ok(cli("executions", "suspend", execution_id, "--reason", "maintenance", "--principal", "ops"))
    assert "suspended" in suspended and "(status Suspended)" in suspended
    assert execution_id in ok(cli("executions", "list", "--status", "Suspended"))
    assert "suspended " in ok(cli("status", execution_id))
    assert "resumed (status Pending)" in ok(cli("executions", "resume", execution_id))
    refused(cli("executions", "resume", execution_id), "not Suspended")

    # Signals: buffered, then a duplicate; bad payloads never reach the API.
    signal = ["signal", execution_id, "order.paid", "--signal-id", "pay-1"]
    assert "buffered" in ok(cli(*signal, "--payload", '{"amount": 3}', principal="shop"))
    assert "duplicate" in ok(cli(*signal, "--payload", '{"amount": 3}'))
    refused(cli(*signal, "--payload", "[1, 2]"), "--payload must be a JSON object")
    refused(cli(*signal, "--payload", "{broken"), "--payload is not valid JSON")
    refused(cli(*signal, "--payload", '{"x": NaN}'), "--payload is not valid JSON")
    refused(cli("signal", str(uuid.uuid4()), "go"), "not found")

    # Approvals: an approval wait as an approval node leaves it.
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("UPDATE dw.executions SET status = 'Waiting', started_at = now() WHERE id = %s", (execution_id,))
        conn.execute(
            "UPDATE dw.node_states SET status = 'Waiting', attempts = 1 WHERE execution_id = %s AND node_id = 'echo1'",
            (execution_id,),
        )
        details = {"approvers": ["alice", "bob", "carol"], "required": 2, "quorum": 2, "title": "Refund"}
        row = conn.execute(
            "INSERT INTO dw.waits (tenant_id, execution_id, node_id, attempt, kind, details) "
            "VALUES ('default', %s, 'echo1', 1, 'approval', %s::jsonb) RETURNING id",
            (execution_id, json.dumps(details)),
        ).fetchone()
        assert row is not None
        approval_id = str(row[0])

    open_list = ok(cli("approvals", "list"))
    line = next(line for line in open_list.splitlines() if line.startswith(approval_id))
    assert line.split() == [approval_id, "open", "simple-echo", "echo1", "0/2", "alice,bob,carol", "Refund"]
    assert approval_id in ok(cli("approvals", "list", "--principal", "bob"))
    assert ok(cli("approvals", "list", "--principal", "mallory")).strip() == "no open approvals"

    refused(cli("approve", approval_id), "--principal NAME or DW_PRINCIPAL_ID")
    refused(cli("approve", approval_id, "--principal", "mallory"), "not an approver")
    first = ok(cli("approve", approval_id, "--principal", "alice", "--comment", "fine"))
    assert "your approval is recorded; approval" in first and "is open (1/2 approvals, 0 rejections)" in first
    refused(cli("reject", approval_id, "--principal", "alice"), "already decided")
    second = ok(cli("approve", approval_id, principal="bob"))
    assert "is approved (2/2 approvals" in second
    refused(cli("reject", approval_id, principal="carol"), "already approved")
    assert ok(cli("approvals", "list")).strip() == "no open approvals"
    assert "approved" in ok(cli("approvals", "list", "--all"))

    # Cancel, once; the second is a no-op.
    cancelled = ok(cli("executions", "cancel", execution_id, "--reason", "done", "--principal", "ops"))
    assert "cancelled (status Cancelled)" in cancelled
    assert "already cancelled" in ok(cli("executions", "cancel", execution_id))
    refused(cli("executions", "suspend", execution_id), "already ended")
    assert "Cancelled" in ok(cli("executions", "list")).splitlines()[1]
