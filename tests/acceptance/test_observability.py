"""Issue 5 with real processes: the live event stream, worker metrics, logs without secrets, and
the dead-letter CLI."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import Stack, command, free_port

pytestmark = pytest.mark.acceptance


def create(stack: Stack, raw: dict[str, Any]) -> None:
    with stack.client() as client:
        response = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
        assert response.status_code == 201, response.text


def chain(workflow_id: str, delay_ms: int, **params: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": workflow_id,
        "startNode": "a",
        "nodes": [
            {"id": "a", "actionType": "core.echo", "parameters": {"message": "a", "delayMs": delay_ms, **params}},
            {"id": "b", "actionType": "core.echo", "parameters": {"message": "b", "delayMs": delay_ms}},
        ],
    }


def test_event_stream_is_live_and_closes_when_the_run_ends(stack: Stack) -> None:
    stack.start_worker()
    create(stack, chain("streamed", 1200))
    with stack.client() as client:
        started = client.post("/api/v1/workflows/streamed/execute", json={"trigger": {}}).json()
        received: list[tuple[float, dict[str, Any]]] = []
        began = time.monotonic()
        with client.stream(
            "GET",
            f"{started['statusUrl']}/events",
            headers={"Accept": "text/event-stream"},
            timeout=httpx.Timeout(10, read=30),
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    received.append((time.monotonic() - began, json.loads(line[5:])))
        closed_after = time.monotonic() - began
        logged = client.get(f"{started['statusUrl']}/events").json()
    types = [event["type"] for _, event in received]
    assert types == [e["type"] for e in logged], "the stream carries the whole log, in order"
    assert types[-1] == "execution_succeeded"
    first_done = next(t for t, e in received if e["type"] == "node_succeeded" and e["nodeId"] == "a")
    assert received[-1][0] - first_done > 0.8, "node a's event arrived while b was still running"
    assert closed_after - received[-1][0] < 2, "the stream closed when the run ended"

    # Reconnecting after the end replays from Last-Event-ID and closes at once.
    with stack.client() as client:
        last_but_one = logged[-2]["id"]
        response = client.get(
            f"{started['statusUrl']}/events",
            headers={"Accept": "text/event-stream", "Last-Event-ID": str(last_but_one)},
        )
        assert [line for line in response.text.splitlines() if line.startswith("event:")] == [
            "event: execution_succeeded"
        ]


def test_worker_metrics_port_and_logs_without_secrets(stack: Stack) -> None:
    port = free_port()
    stack.env["DW_WORKER_METRICS_PORT"] = str(port)
    stack.start_worker()
    create(
        stack,
        {
            "id": "secretive",
            "displayName": "secretive",
            "startNode": "a",
            "nodes": [
                {
                    "id": "a",
                    "actionType": "core.echo",
                    "parameters": {"message": "{{ trigger.apiToken }}", "simulateFailure": "{{ trigger.fail }}"},
                }
            ],
        },
    )
    secret = "sk-live-0123456789abcdef"
    with stack.client() as client:
        started = client.post(
            "/api/v1/workflows/secretive/execute", json={"trigger": {"apiToken": secret, "fail": "permanent"}}
        ).json()
    stack.wait_for(started["executionId"], {"Failed"})
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        if 'dataworkflows_executions_finished_total{status="Failed",workflow_id="secretive"} 1.0' in text:
            break
        time.sleep(0.2)
    assert 'dataworkflows_executions_finished_total{status="Failed",workflow_id="secretive"} 1.0' in text
    assert 'dataworkflows_attempts_total{action_type="core.echo",status="Failed"}' in text
    assert "dataworkflows_queue_depth" in text and "dataworkflows_queue_oldest_job_age_seconds" in text
    logs = stack.read_logs()
    assert started["executionId"] in logs, "the run was logged"
    assert secret not in logs, "trigger values and rendered parameters never reach the logs"
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{") and started["executionId"] in line]
    finished = next(line for line in lines if line.get("event") == "execution finished")
    assert {"execution_id", "workflow_id", "version", "worker_id", "principal"} <= set(finished)
    recorded = next(line for line in lines if line.get("event") == "attempt recorded")
    assert {"node_id", "attempt"} <= set(recorded)


def test_dead_letters_from_the_cli(stack: Stack) -> None:
    stack.start_worker()
    create(stack, chain("flaky-chain", 0, simulateFailure="transient", failUntilAttempt=4))
    env = {**stack.env, "DW_API_URL": stack.url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=60)

    with stack.client() as client:
        # Two quick attempts, then exhausted (the fixture's default policy would wait seconds).
        raw = chain("flaky-chain", 0, simulateFailure="transient", failUntilAttempt=4)
        raw["nodes"][0]["retryPolicy"] = {"maxAttempts": 2, "initialDelay": "PT0.05S", "jitter": False}
        client.put("/api/v1/workflows/flaky-chain", json=raw)
        client.post("/api/v1/workflows/flaky-chain/publish")
    failed = cli("run", "flaky-chain", "--wait")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "retrying" in failed.stdout, "run --wait follows the live stream (retries are shown)"
    listing = cli("dead-letters", "list")
    assert listing.returncode == 0 and "node_failed" in listing.stdout and "flaky-chain" in listing.stdout
    # By kind, as the API filters them.
    assert cli("dead-letters", "list", "--kind", "node_failed").stdout == listing.stdout
    assert "no open dead letters" in cli("dead-letters", "list", "--kind", "timed_out").stdout
    letter_id = listing.stdout.splitlines()[1].split()[0]
    redrive = cli("dead-letters", "redrive", letter_id, "--wait")
    # Attempts 3 fails again, 4 succeeds: the redriven node has a fresh budget of two attempts.
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert "Succeeded" in redrive.stdout
    # The re-run's lines, not the failed run's again (they came first, and its end stopped the stream).
    assert "(attempt 3)" in redrive.stdout and "(attempt 4)" in redrive.stdout, redrive.stdout
    assert "(attempt 2)" not in redrive.stdout and "attempt 1 failed" not in redrive.stdout, redrive.stdout
    twice = cli("dead-letters", "redrive", letter_id)
    assert twice.returncode == 2 and "already redriven" in twice.stderr
    assert "no open dead letters" in cli("dead-letters", "list").stdout

    # A second failure is let go: acknowledged once from the CLI, with a note.
    failed_again = cli("run", "flaky-chain", "--request-id", "second", "--wait")
    assert failed_again.returncode == 1, failed_again.stdout + failed_again.stderr
    second_id = cli("dead-letters", "list").stdout.splitlines()[1].split()[0]
    ack = cli("dead-letters", "ack", second_id, "--note", "known flaky upstream")
    assert ack.returncode == 0 and "acknowledged" in ack.stdout, ack.stdout + ack.stderr
    assert "no open dead letters" in cli("dead-letters", "list").stdout
    closed = cli("dead-letters", "list", "--all").stdout
    assert "acknowledged" in closed and "redriven" in closed
    again = cli("dead-letters", "ack", second_id)
    assert again.returncode == 2 and "already closed" in again.stderr


def _logged(stack: Stack, name: str) -> list[dict[str, Any]]:
    lines = (stack.logs / f"{name}.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_api_says_where_it_listens_and_logs_each_answered_request(stack: Stack) -> None:
    create(stack, chain("access-logged", 0))
    with stack.client() as client:
        started = client.post(
            "/api/v1/workflows/access-logged/execute", json={"trigger": {}}, headers={"X-Request-Id": "req-access-1"}
        )
        assert started.status_code == 202, started.text
        missing = client.get("/api/v1/no-such-thing", headers={"X-Request-Id": "req-access-2"})
        assert missing.status_code == 404
        assert client.get("/health/ready").status_code == 200
    deadline = time.monotonic() + 10
    while True:
        lines = _logged(stack, "api")
        requests = [line for line in lines if line.get("event") == "request"]
        by_id = {line.get("request_id"): line for line in requests}
        if {"req-access-1", "req-access-2"} <= by_id.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    listening = [line for line in lines if line.get("event") == "api listening"]
    assert listening and listening[0]["url"] == f"http://127.0.0.1:{stack.port}", lines[:5]
    execute = by_id.get("req-access-1")
    assert execute is not None, requests
    assert execute["method"] == "POST" and execute["status"] == 202 and execute["level"] == "info"
    assert execute["route"].startswith("/api/v1/workflows/{") and execute["route"].endswith("/execute")
    assert execute["path"] == "/api/v1/workflows/access-logged/execute"
    assert isinstance(execute["duration_ms"], float) and execute["duration_ms"] >= 0
    assert "principal" in execute and execute["tenant"] == "default", execute
    unknown = by_id.get("req-access-2")
    assert unknown is not None and unknown["route"] == "unmatched" and unknown["status"] == 404
    assert unknown["path"] == "/api/v1/no-such-thing"
    # Health checks below 400 are debug lines: at the default level, none.
    assert not [line for line in requests if line["route"] == "/health/ready"], requests
