"""Compensation with real processes (README "Compensation"): a run published and started through the
CLI fails at its last node; a `dataworkflows worker` runs the compensations of the nodes before it,
the later one first, through its dw.compensate job; the API, `dataworkflows status` and the views
show them. Then a worker killed in the middle of a step: another takes the step over."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Stack
from tests.acceptance.test_cli_control import Cli, cli

pytestmark = pytest.mark.acceptance
__all__ = ["cli"]

FAST = {"maxAttempts": 3, "initialDelay": "PT0.1S", "backoffMultiplier": 2, "maxDelay": "PT1S", "jitter": False}


def saga(workflow_id: str, charge_undo: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Book a trip",
        "startNode": "reserve",
        "nodes": [
            {
                "id": "reserve",
                "actionType": "core.echo",
                "parameters": {"message": "R-{{ trigger.trip }}"},
                "compensation": {
                    "actionType": "core.echo",
                    "parameters": {"message": "release {{ nodes.reserve.echo }}"},
                },
                "edges": [{"targetNode": "charge"}],
            },
            {
                "id": "charge",
                "actionType": "core.echo",
                "parameters": {"message": "C-{{ trigger.trip }}"},
                "compensation": charge_undo,
                "edges": [{"targetNode": "ship"}],
            },
            {"id": "ship", "actionType": "core.echo", "parameters": {"simulateFailure": "permanent"}},
        ],
    }


def started(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    match = re.search(r"execution ([0-9a-f-]{36}) ", result.stdout)
    assert match, result.stdout
    return match.group(1)


def compensated(stack: Stack, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once its compensation has ended (bounded)."""
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            body = client.get(f"/api/v1/executions/{execution_id}").json()
            comp = body.get("compensation")
            if comp is not None and comp["status"] in ("Compensated", "CompensationFailed"):
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"compensation not ended: {comp}\n{stack.read_logs()}")
            time.sleep(0.1)


def test_a_failed_run_is_compensated_by_a_worker(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    undo = {
        "actionType": "core.echo",
        "parameters": {
            "message": "refund {{ nodes.charge.echo }}",
            "simulateFailure": "transient",
            "failUntilAttempt": 2,
        },
        "retryPolicy": FAST,
    }
    path = tmp_path / "saga.json"
    path.write_text(json.dumps(saga("trip", undo)))
    assert cli("workflows", "apply", str(path), "--publish").returncode == 0
    run = started(cli("run", "trip", "--trigger", '{"trip": 88}'))
    stack.start_worker()
    assert stack.wait_for(run, {"Succeeded", "Failed", "Cancelled", "TimedOut"})["status"] == "Failed"
    body = compensated(stack, run)
    assert body["status"] == "Failed"
    steps = body["compensation"]["steps"]
    assert body["compensation"]["status"] == "Compensated"
    assert [(s["nodeId"], s["status"], s["attempts"], s["outputs"]) for s in steps] == [
        ("charge", "Succeeded", 2, {"echo": "refund C-88"}),
        ("reserve", "Succeeded", 1, {"echo": "release R-88"}),
    ]
    with stack.client() as client:
        listing = client.get("/api/v1/executions", params={"workflowId": "trip"}).json()
    assert [i["compensationStatus"] for i in listing["items"]] == ["Compensated"]

    status = cli("status", run)
    assert status.returncode == 0, status.stderr
    assert "  compensation Compensated" in status.stdout
    assert re.search(r"1\. undo charge\s+Succeeded\s+attempts=2", status.stdout), status.stdout
    with psycopg.connect(stack.dsn) as conn:
        # The views show the session's tenant's rows.
        conn.execute("SET dw.tenant_id = 'default'")
        rows = conn.execute(
            "SELECT node_id, status, attempts FROM dw.v_compensations WHERE execution_id = %s ORDER BY position",
            (run,),
        ).fetchall()
    assert rows == [("charge", "Succeeded", 2), ("reserve", "Succeeded", 1)]


def test_a_step_whose_worker_was_killed_is_taken_over(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    # The first attempt takes ten minutes (the worker is killed in it), the next none.
    undo = {
        "actionType": "core.echo",
        "parameters": {"message": "refund", "delayMs": "{{ 600000 if attempt == 1 else 0 }}"},
        "timeout": "PT15M",
    }
    path = tmp_path / "saga.json"
    path.write_text(json.dumps(saga("slow-undo", undo)))
    assert cli("workflows", "apply", str(path), "--publish").returncode == 0
    run = started(cli("run", "slow-undo", "--trigger", '{"trip": 1}'))
    worker = stack.start_worker()
    assert stack.wait_for(run, {"Failed"})["status"] == "Failed"
    deadline = time.monotonic() + 60
    with stack.client() as client:
        while (client.get(f"/api/v1/executions/{run}").json().get("compensation") or {}).get("steps", [{}])[0].get(
            "status"
        ) != "Running":
            assert time.monotonic() < deadline, stack.read_logs()
            time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    with psycopg.connect(stack.dsn) as conn:
        # Its claim would run out after the step's timeout and a minute: as if that time had passed.
        conn.execute(
            "UPDATE dw.compensations SET claimed_until = now() - interval '1 second' WHERE execution_id = %s",
            (run,),
        )
    stack.start_worker()
    body = compensated(stack, run)
    steps = body["compensation"]["steps"]
    assert body["compensation"]["status"] == "Compensated"
    assert [(s["nodeId"], s["status"], s["attempts"]) for s in steps] == [
        ("charge", "Succeeded", 2),
        ("reserve", "Succeeded", 1),
    ]
    with stack.client() as client:
        events = client.get(f"/api/v1/executions/{run}/events").json()
    interrupted = [e for e in events if e["type"] == "compensation_attempt_interrupted"]
    assert [(e["nodeId"], e["details"]["attempt"]) for e in interrupted] == [("charge", 1)]


def test_a_failed_parent_undoes_its_succeeded_child_through_a_worker(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    """A parent that failed after its child succeeded: the worker runs the child's compensation as the
    parent's first step, then the parent's own; the API, `status` and the view show the child's step."""
    child = saga(
        "hotel-child", {"actionType": "core.echo", "parameters": {"message": "refund {{ nodes.charge.echo }}"}}
    )
    # The child succeeds: its last node does not fail.
    child["nodes"][2]["parameters"] = {"message": "shipped"}
    parent = {
        "id": "trip-with-child",
        "displayName": "A trip with a hotel child",
        "startNode": "hold",
        "nodes": [
            {
                "id": "hold",
                "actionType": "core.echo",
                "parameters": {"message": "H"},
                "compensation": {"actionType": "core.echo", "parameters": {"message": "unhold"}},
                "edges": [{"targetNode": "book"}],
            },
            {
                "id": "book",
                "nodeType": "subworkflow",
                "parameters": {"workflowId": "hotel-child", "input": {"trip": 7}},
                "edges": [{"targetNode": "pay"}],
            },
            {"id": "pay", "actionType": "core.echo", "parameters": {"simulateFailure": "permanent"}},
        ],
    }
    for raw in (child, parent):
        path = tmp_path / f"{raw['id']}.json"
        path.write_text(json.dumps(raw))
        applied = cli("workflows", "apply", str(path), "--publish")
        assert applied.returncode == 0, applied.stderr
    run = started(cli("run", "trip-with-child"))
    stack.start_worker()
    assert stack.wait_for(run, {"Succeeded", "Failed", "Cancelled", "TimedOut"})["status"] == "Failed"
    body = compensated(stack, run)
    assert body["compensation"]["status"] == "Compensated"
    (kid,) = [c["id"] for c in body["children"]]
    steps = body["compensation"]["steps"]
    assert [(s["nodeId"], s["actionType"], s["status"], s["childExecutionId"]) for s in steps] == [
        ("book", "subworkflow", "Succeeded", kid),
        ("hold", "core.echo", "Succeeded", None),
    ]
    assert steps[0]["parameters"] == {"compensateAs": "Failed"}
    kid_body = compensated(stack, kid)
    assert kid_body["status"] == "Succeeded"
    assert [(s["nodeId"], s["outputs"]) for s in kid_body["compensation"]["steps"]] == [
        ("charge", {"echo": "refund C-7"}),
        ("reserve", {"echo": "release R-7"}),
    ]
    assert steps[0]["endTime"] <= steps[1]["startTime"]
    status = cli("status", run)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"1\. undo book\s+Succeeded\s+attempts=1 child={kid}", status.stdout), status.stdout
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("SET dw.tenant_id = 'default'")
        rows = conn.execute(
            "SELECT node_id, child_execution_id::text FROM dw.v_compensations"
            " WHERE execution_id = %s ORDER BY position",
            (run,),
        ).fetchall()
    assert rows == [("book", kid), ("hold", None)]
