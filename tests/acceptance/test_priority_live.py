"""Run priority with real processes (README "Run priority"): runs started through the CLI at several
priorities, one moved in line with `dataworkflows executions priority`, then one
`dataworkflows worker` at concurrency 1 takes them higher first, oldest first within a priority."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Stack
from tests.acceptance.test_cli_control import Cli, cli
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance
__all__ = ["cli"]


def started(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    match = re.search(r"execution ([0-9a-f-]{36}) ", result.stdout)
    assert match, result.stdout
    return match.group(1)


def test_a_worker_takes_higher_priority_runs_first(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(load_fixture("bundle1/simple-echo-workflow.json")))
    assert cli("workflows", "apply", str(path), "--publish").returncode == 0

    low = [started(cli("run", "simple-echo", "--priority", "-10")) for _ in range(3)]
    plain = started(cli("run", "simple-echo"))
    high = started(cli("run", "simple-echo", "--priority", "50"))
    bumped = started(cli("run", "simple-echo"))

    moved = cli("executions", "priority", bumped, "90", "--principal", "ops")
    assert moved.returncode == 0, moved.stderr
    assert f"execution {bumped} priority 90 (was 0; its queued job moved in line; status Pending)" in moved.stdout
    again = cli("executions", "priority", bumped, "90")
    assert again.returncode == 0 and "priority 90 already" in again.stdout

    # Out of range: said by the command, naming its option; nothing is started or changed.
    bad = cli("run", "simple-echo", "--priority", "101")
    assert bad.returncode == 2 and "101: give -100 to 100 (higher runs first)" in bad.stderr
    bad = cli("executions", "priority", bumped, "high")
    assert bad.returncode == 2 and "'high' is not a whole number" in bad.stderr
    missing = cli("executions", "priority", "00000000-0000-0000-0000-000000000001", "5")
    assert missing.returncode != 0 and "not found" in missing.stderr

    stack.start_worker(concurrency=1)
    order = [bumped, high, plain, *low]
    finals = {run: stack.wait_for(run, {"Succeeded", "Failed"}, timeout=60) for run in order}
    assert {f["status"] for f in finals.values()} == {"Succeeded"}
    assert [finals[run]["priority"] for run in order] == [90, 50, 0, -10, -10, -10]
    by_start = sorted(order, key=lambda run: datetime.fromisoformat(finals[run]["startTime"]))
    assert by_start == order

    status = cli("status", bumped)
    assert status.returncode == 0 and "  priority  90" in status.stdout, status.stdout
    assert "priority" not in cli("status", plain).stdout

    ended = cli("executions", "priority", bumped, "1")
    assert ended.returncode != 0 and "has already ended" in ended.stderr


def test_a_higher_run_held_back_by_the_rate_later_starts_before_the_lower_ones(
    stack: Stack, cli: Cli, tmp_path: Path
) -> None:
    """A workflow limited to 20 starts a minute (one every 3 s) and a `dataworkflows worker`: three
    runs held back are promised the next three starts; a run of higher priority held back after them
    takes the first of those, and they start after it, each a turn later (until this release it
    started after all three)."""
    definition = {**load_fixture("bundle1/simple-echo-workflow.json"), "orchestration": {"rateLimitPerMinute": 20}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(definition))
    assert cli("workflows", "apply", str(path), "--publish").returncode == 0
    stack.start_worker(concurrency=2)
    first = started(cli("run", "simple-echo"))
    stack.wait_for(first, {"Succeeded"})
    low = [started(cli("run", "simple-echo")) for _ in range(3)]
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(
            "SELECT count(*) FROM dw.executions WHERE id = ANY (%s::uuid[]) AND rate_slot_at IS NOT NULL", (low,)
        ).fetchone() != (3,):
            assert time.monotonic() < deadline, stack.read_logs()
            time.sleep(0.05)
    high = started(cli("run", "simple-echo", "--priority", "50"))
    finals = {run: stack.wait_for(run, {"Succeeded", "Failed"}, timeout=60) for run in [high, *low]}
    assert {f["status"] for f in finals.values()} == {"Succeeded"}
    by_start = sorted(finals, key=lambda run: datetime.fromisoformat(finals[run]["startTime"]))
    assert by_start == [high, *low]
    starts = [datetime.fromisoformat(finals[run]["startTime"]) for run in by_start]
    assert all((b - a).total_seconds() >= 3.0 for a, b in itertools.pairwise(starts)), starts
