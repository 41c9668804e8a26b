"""Bulk cancel with real processes (README "Bulk operations"): a workflow limited to two runs at a
time, two of them waiting for a signal (holding the slots) and eight held back, cancelled by
`dataworkflows executions cancel-all` a page of five at a time, as an operator runs it again until
nothing is left. No held-back run starts: the runs not started are cancelled first across the
pages, not only within one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Stack
from tests.acceptance.test_cli_control import Cli, cli
from tests.acceptance.test_cli_follow import execution_id

pytestmark = pytest.mark.acceptance
__all__ = ["cli"]

HELD: dict[str, Any] = {
    "id": "held-waiters",
    "displayName": "Waits for a signal, two at a time",
    "startNode": "wait",
    "orchestration": {"maxConcurrentExecutions": 2},
    "nodes": [
        {"id": "wait", "nodeType": "signal", "parameters": {"name": "go", "timeout": "PT10M"}},
        {"id": "done", "actionType": "core.echo", "parameters": {"message": "done"}},
    ],
}


def test_a_bulk_cancel_over_pages_starts_no_held_back_run(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(HELD))
    assert cli("workflows", "apply", str(path), "--publish").returncode == 0
    stack.start_worker(concurrency=4)
    holders = [execution_id(cli("run", "held-waiters").stdout) for _ in range(2)]
    for run in holders:
        stack.wait_for(run, {"Waiting"})
    held = [execution_id(cli("run", "held-waiters").stdout) for _ in range(8)]
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        # Every one held back by the limit (the worker took it and parked it on its row).
        deadline = time.monotonic() + 30
        while conn.execute(
            "SELECT count(*) FROM dw.executions WHERE id = ANY (%s) AND status = 'Pending' AND wake_at IS NOT NULL",
            (held,),
        ).fetchone() != (8,):
            assert time.monotonic() < deadline, stack.read_logs()
            time.sleep(0.1)
        pages = 0
        while True:
            result = cli("executions", "cancel-all", "held-waiters", "--limit", "5")
            assert result.returncode == 0, result.stdout + result.stderr
            pages += 1
            if "more:" not in result.stderr:
                break
            time.sleep(1.0)  # the operator reads the answer and runs it again; a worker goes on
        started = conn.execute(
            "SELECT count(*) FROM dw.executions WHERE id = ANY (%s) AND started_at IS NOT NULL", (held,)
        ).fetchone()
        statuses = conn.execute(
            "SELECT DISTINCT status FROM dw.executions WHERE id = ANY (%s)", ([*holders, *held],)
        ).fetchall()
    assert pages >= 2
    assert statuses == [("Cancelled",)]
    assert started == (0,)
