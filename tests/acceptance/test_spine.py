"""The seeds' bundle 1 and 2 checkpoints and worker crash recovery, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Stack, command
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance


def create(stack: Stack, raw: dict[str, Any]) -> None:
    with stack.client() as client:
        response = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
        assert response.status_code == 201, response.text


def execute(stack: Stack, workflow_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with stack.client() as client:
        response = client.post(f"/api/v1/workflows/{workflow_id}/execute", json=body)
        assert response.status_code == 202, response.text
        return dict(response.json())


def test_bundle1_checkpoint(stack: Stack) -> None:
    stack.start_worker()
    create(stack, load_fixture("bundle1/simple-echo-workflow.json"))
    started = execute(stack, "simple-echo", load_fixture("bundle1/execute-request.json"))
    assert started["statusUrl"] == f"/api/v1/executions/{started['executionId']}"
    execution = stack.wait_for(started["executionId"], {"Succeeded", "Failed"})
    assert execution["status"] == "Succeeded"
    assert execution["trigger"]["userId"] == "test-user-123"
    assert execution["startTime"] and execution["endTime"]

    # The seeds' psql check: two ActionExecutions rows, both Succeeded, with the outputs.
    with psycopg.connect(stack.dsn) as conn:
        rows = conn.execute(
            "SELECT node_id, action_type, status, outputs FROM dw.action_executions WHERE execution_id = %s"
            " ORDER BY start_time",
            (started["executionId"],),
        ).fetchall()
    assert rows == [
        ("echo1", "core.echo", "Succeeded", {"echo": "Hello from node 1"}),
        ("echo2", "core.echo", "Succeeded", {"echo": "Hello from node 2"}),
    ]
    with stack.client() as client:
        assert client.get("/health/live").status_code == 200
        assert len(client.get(f"{started['statusUrl']}/actions").json()) == 2


def test_bundle2_retries_then_success_and_permanent_failure(stack: Stack) -> None:
    stack.start_worker()
    create(stack, load_fixture("bundle2/retry-workflow.json"))
    create(stack, load_fixture("bundle2/permanent-failure-workflow.json"))
    retry = execute(stack, "retry-test", {"trigger": {"source": "retry-test"}})
    failing = execute(stack, "permanent-failure", {"trigger": {}})

    execution = stack.wait_for(retry["executionId"], {"Succeeded", "Failed"}, timeout=60)
    assert execution["status"] == "Succeeded"
    with stack.client() as client:
        attempts = client.get(f"/api/v1/executions/{retry['executionId']}/actions").json()
    assert [(a["nodeId"], a["attempt"], a["status"]) for a in attempts] == [
        ("transient-fail", 1, "RetriableFailure"),
        ("transient-fail", 2, "RetriableFailure"),
        ("transient-fail", 3, "Succeeded"),
        ("success", 1, "Succeeded"),
    ]

    execution = stack.wait_for(failing["executionId"], {"Succeeded", "Failed"})
    assert execution["status"] == "Failed"
    assert {n["nodeId"]: n["status"] for n in execution["nodes"]} == {
        "first": "Succeeded",
        "boom": "Failed",
        "after": "Skipped",
    }
    assert execution["error"]["nodeId"] == "boom"


def test_kill_9_worker_mid_run_another_worker_finishes(stack: Stack) -> None:
    raw = {
        "id": "slow-chain",
        "displayName": "Slow chain",
        "startNode": "fast",
        "nodes": [
            {"id": "fast", "actionType": "core.echo", "parameters": {"message": "once"}},
            {"id": "slow", "actionType": "core.echo", "parameters": {"message": "slow", "delayMs": 4000}},
            {"id": "last", "actionType": "core.echo", "parameters": {"message": "done"}},
        ],
    }
    create(stack, raw)
    doomed = stack.start_worker()
    started = execute(stack, "slow-chain", {"trigger": {}})
    deadline = time.monotonic() + 20
    with stack.client() as client:
        while True:
            nodes = {n["nodeId"]: n["status"] for n in client.get(started["statusUrl"]).json()["nodes"]}
            if nodes["slow"] == "Running":
                break
            assert time.monotonic() < deadline, nodes
            time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(5)

    stack.start_worker()
    execution = stack.wait_for(started["executionId"], {"Succeeded", "Failed"}, timeout=40)
    assert execution["status"] == "Succeeded", execution
    assert execution["recoveryCount"] >= 1
    with stack.client() as client:
        attempts = client.get(f"{started['statusUrl']}/actions").json()
    succeeded = [a["nodeId"] for a in attempts if a["status"] == "Succeeded"]
    assert sorted(succeeded) == ["fast", "last", "slow"], "every node succeeded exactly once"
    assert [a["attempt"] for a in attempts if a["nodeId"] == "fast"] == [1], "fast never re-ran"
    slow = [(a["attempt"], a["status"], (a["error"] or {}).get("code")) for a in attempts if a["nodeId"] == "slow"]
    assert slow == [(1, "RetriableFailure", "attempt_interrupted"), (2, "Succeeded", None)]
    with stack.client() as client:
        events = [e["type"] for e in client.get(f"{started['statusUrl']}/events").json()]
    assert "execution_recovered" in events and events[-1] == "execution_succeeded"


def test_sighup_hands_running_work_back_like_sigterm(stack: Stack) -> None:
    # SIGTERM is the fault suite's (tests/faults); a closed terminal (SIGHUP) stops a worker the same way.
    raw = {
        "id": "graceful",
        "displayName": "Graceful",
        "startNode": "slow",
        "nodes": [{"id": "slow", "actionType": "core.echo", "parameters": {"message": "s", "delayMs": 3500}}],
    }
    create(stack, raw)
    worker = stack.start_worker()
    started = execute(stack, "graceful", {"trigger": {}})
    stack.wait_for(started["executionId"], {"Running"})
    time.sleep(0.5)
    worker.send_signal(signal.SIGHUP)
    assert worker.wait(15) == 0
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute(
            "SELECT lease_owner, status FROM dw.executions WHERE id = %s", (started["executionId"],)
        ).fetchone()
        assert row == (None, "Running"), "the lease was released, not left to expire"
        jobs = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' AND args->>'execution_id' = %s",
            (started["executionId"],),
        ).fetchone()
        assert jobs == (1,)
    stack.start_worker()
    done = stack.wait_for(started["executionId"], {"Succeeded", "Failed"}, timeout=30)
    assert done["status"] == "Succeeded"
    # The attempt the grace period cut short was interrupted, and cost no retry.
    assert [n["interruptions"] for n in done["nodes"]] == [1]


def test_cli_run_wait_and_status(stack: Stack) -> None:
    stack.start_worker()
    create(stack, load_fixture("bundle1/simple-echo-workflow.json"))
    env = {**stack.env, "DW_API_URL": stack.url}
    ok = subprocess.run(
        [*command(), "run", "simple-echo", "--trigger", '{"userId": "cli"}', "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "echo1" in ok.stdout and "echo2" in ok.stdout and "Succeeded" in ok.stdout
    execution_id = ok.stdout.split()[1]
    status = subprocess.run([*command(), "status", execution_id], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode == 0 and "Succeeded" in status.stdout

    # A failed run, bad input and an unknown workflow (exit codes 1, 2): test_cli_follow.py.
    # The table, and the reporting views too: psql's session sees every tenant (the views showed
    # nothing without one).
    for relation in ("dw.executions", "dw.v_executions"):
        psql = subprocess.run(
            [*command(), "psql", "-At", "-c", f"SELECT count(*) FROM {relation}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert psql.returncode == 0 and psql.stdout.strip() == "1", (relation, psql.stdout + psql.stderr)
