"""Composition with real processes: a forEach of 200 items whose worker is killed with SIGKILL half
way resumes on another worker and no item succeeds twice; a parent and its child run over HTTP."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.acceptance.conftest import Stack
from tests.acceptance.test_spine import create, execute

pytestmark = pytest.mark.acceptance


def test_kill_9_during_a_for_each_of_200_items_resumes_and_no_item_succeeds_twice(stack: Stack) -> None:
    create(
        stack,
        {
            "id": "two-hundred",
            "displayName": "Two hundred",
            "startNode": "all",
            "nodes": [
                {
                    "id": "all",
                    "nodeType": "forEach",
                    "parameters": {
                        "items": "{{ trigger.items }}",
                        "concurrency": 10,
                        "action": {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": 200}},
                    },
                }
            ],
        },
    )
    doomed = stack.start_worker()
    started = execute(stack, "two-hundred", {"trigger": {"items": list(range(200))}})
    items_url = f"{started['statusUrl']}/nodes/all/items"
    deadline = time.monotonic() + 30
    with stack.client() as client:
        while True:
            items = client.get(items_url).json()
            done = sum(1 for item in items if item["status"] == "Succeeded")
            # Killed while items are in flight (on a loaded machine a kill between two batches
            # found none, once in a full suite run).
            if done >= 60 and any(item["status"] == "Running" for item in items):
                break
            assert time.monotonic() < deadline, f"only {done} items done\n{stack.read_logs()}"
            time.sleep(0.02)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(5)
    stack.start_worker()
    execution = stack.wait_for(started["executionId"], {"Succeeded", "Failed"}, timeout=60)
    assert execution["status"] == "Succeeded", execution
    with stack.client() as client:
        attempts = client.get(f"{started['statusUrl']}/actions").json()
        items = client.get(items_url).json()
    succeeded = sorted(a["itemIndex"] for a in attempts if a["itemIndex"] is not None and a["status"] == "Succeeded")
    assert succeeded == list(range(200)), "every item succeeded exactly once"
    interrupted = [a for a in attempts if (a["error"] or {}).get("code") == "attempt_interrupted"]
    assert 1 <= len(interrupted) <= 10, interrupted
    assert [item["status"] for item in items] == ["Succeeded"] * 200
    outputs = next(n for n in execution["nodes"] if n["nodeId"] == "all")["outputs"]
    assert [o["echo"] for o in outputs["items"]] == list(range(200))


def test_a_parent_gets_its_childs_outputs_over_http(stack: Stack) -> None:
    create(
        stack,
        {
            "id": "child-live",
            "displayName": "Child",
            "startNode": "double",
            "nodes": [{"id": "double", "actionType": "core.echo", "parameters": {"message": "{{ trigger.x * 2 }}"}}],
            "outputs": {"doubled": "{{ nodes.double.echo }}"},
        },
    )
    create(
        stack,
        {
            "id": "parent-live",
            "displayName": "Parent",
            "startNode": "call",
            "nodes": [
                {
                    "id": "call",
                    "nodeType": "subworkflow",
                    "parameters": {"workflowId": "child-live", "input": {"x": "{{ trigger.n }}"}},
                }
            ],
            "outputs": {"answer": "{{ nodes.call.doubled }}"},
        },
    )
    stack.start_worker()
    started = execute(stack, "parent-live", {"trigger": {"n": 21}})
    execution = stack.wait_for(started["executionId"], {"Succeeded", "Failed"}, timeout=30)
    assert execution["status"] == "Succeeded" and execution["outputs"] == {"answer": 42}, execution
    (child,) = execution["children"]
    assert child["workflowId"] == "child-live" and child["status"] == "Succeeded"
