"""A per-second schedule created from SQL (as an operator would in psql) with two real worker
processes, each running its scheduler: one run per tick, none twice, and every run ends."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import psycopg
import pytest

from tests.acceptance.conftest import Stack
from tests.acceptance.test_spine import create

pytestmark = pytest.mark.acceptance


def test_two_workers_fire_each_tick_of_a_per_second_schedule_once(stack: Stack) -> None:
    create(
        stack,
        {
            "id": "live-echo",
            "displayName": "Live echo",
            "startNode": "echo",
            "nodes": [{"id": "echo", "actionType": "core.echo", "parameters": {"message": "tick"}}],
        },
    )
    stack.start_worker()
    stack.start_worker()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        trigger_id = conn.execute("SELECT dw.schedule_v1('live', 'live-echo', '* * * * * *')").fetchone()[0]  # type: ignore[index]
        # The workers need a second or two to start (more on a loaded machine): from the first tick
        # on, every second once, four of them or as many as 30 s give.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fired = conn.execute("SELECT count(*) FROM dw.schedule_ticks WHERE trigger_id = %s", (trigger_id,))
            if fired.fetchone()[0] >= 4:  # type: ignore[index]
                break
            time.sleep(0.2)
        conn.execute("UPDATE dw.triggers SET enabled = false WHERE id = %s", (trigger_id,))
        # A batch being fired when it was disabled commits after it: let it.
        time.sleep(0.5)
        ticks = conn.execute(
            "SELECT tick_at, execution_id FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at", (trigger_id,)
        ).fetchall()
        runs = conn.execute("SELECT id, request_id FROM dw.executions WHERE trigger_id = %s", (trigger_id,)).fetchall()
    assert len(ticks) >= 4, stack.read_logs()
    at = [tick for tick, _ in ticks]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(at)), at
    assert len(runs) == len(ticks) == len({request_id for _, request_id in runs})
    assert sorted(str(e) for _, e in ticks) == sorted(str(r) for r, _ in runs)
    for execution_id, _ in runs:
        assert stack.wait_for(str(execution_id), {"Succeeded", "Failed"})["status"] == "Succeeded"
