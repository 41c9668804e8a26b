"""Rate limits with real processes: two `dataworkflows api` processes sharing one bucket per caller,
and a workflow limited to 60 runs a minute run by a `dataworkflows worker`: every request accepted,
every run succeeds, starts one second apart."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Stack, command, free_port, wait_until_ready
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance


@pytest.fixture
def limited(stack: Stack, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """The stack's API restarted with 15 requests a minute (burst 4), and a second API process.

    A token comes back every 4 s: at 60 a minute (one a second) a loaded machine's five requests
    took longer than a second in one run, and the fifth found a token again."""
    assert stack.api is not None
    stack.api.terminate()
    stack.api.wait(15)
    stack.env.update({"DW_API_RATE_PER_MINUTE": "15", "DW_API_RATE_BURST": "4"})
    stack.start_api()
    port = free_port()
    log = tmp_path / "api2.log"
    with open(log, "ab") as out:
        second = subprocess.Popen([*command(), "api", "--port", str(port)], env=stack.env, stdout=out, stderr=out)
    try:
        wait_until_ready(second, f"http://127.0.0.1:{port}", log)
        yield stack, f"http://127.0.0.1:{port}"
    finally:
        second.terminate()
        second.wait(15)


def test_two_api_processes_share_a_callers_bucket(limited: tuple[Stack, str]) -> None:
    stack, other = limited
    ana = {"X-Principal-Id": "ana"}
    answers = [httpx.get(f"{(stack.url, other)[i % 2]}/api/v1/workflows", headers=ana) for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == "4" and refused.headers["RateLimit-Policy"] == "4;w=16"
    assert int(refused.headers["RateLimit-Reset"]) >= int(refused.headers["Retry-After"])
    assert httpx.get(f"{other}/api/v1/workflows", headers={"X-Principal-Id": "bo"}).status_code == 200
    assert httpx.get(f"{other}/health/ready", headers=ana).status_code == 200
    time.sleep(int(refused.headers["Retry-After"]))
    assert httpx.get(f"{other}/api/v1/workflows", headers=ana).status_code == 200


def test_a_caller_cannot_choose_its_address_with_x_forwarded_for(limited: tuple[Stack, str]) -> None:
    """An anonymous caller's bucket (and a webhook sender's) is its client address. uvicorn took
    X-Forwarded-For from any loopback peer by default, so a caller that reached the API from the
    host chose its address: a fresh bucket for every request, or a victim's drained (auth review).
    Forwarded headers are honoured only from DW_API_TRUSTED_PROXIES (none by default)."""
    stack, _ = limited
    junk = f"{stack.url}/api/v1/hooks/00000000-0000-4000-8000-000000000000"
    answers = [httpx.post(junk, json={}, headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(3)]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1"]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "DW_API_URL": stack.url}
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_workflow_limited_to_60_a_minute_starts_its_runs_a_second_apart(stack: Stack) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    with stack.client() as client:
        assert client.post("/api/v1/workflows", json=raw, params={"autoActivate": "true"}).status_code == 201
    limits = _cli(stack, "workflows", "limits", "simple-echo", "--per-minute", "60", "--max-concurrent", "3")
    assert limits.returncode == 0, limits.stderr
    assert "maxConcurrentExecutions 3  rateLimitPerMinute 60" in limits.stdout
    stack.start_worker(concurrency=10)
    with stack.client() as client:
        answers = [client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {"i": i}}) for i in range(6)]
    assert [a.status_code for a in answers] == [202] * 6
    began = time.monotonic()
    finals = [stack.wait_for(a.json()["executionId"], {"Succeeded", "Failed"}, timeout=20) for a in answers]
    assert time.monotonic() - began < 20
    assert [f["status"] for f in finals] == ["Succeeded"] * 6
    starts = sorted(datetime.fromisoformat(f["startTime"]) for f in finals)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.999, gaps
    # Woken at their turn, not at Procrastinate's next poll (5 s).
    assert max(gaps) < 2.5, gaps

    cleared = _cli(stack, "workflows", "limits", "simple-echo", "--clear")
    assert cleared.returncode == 0 and "maxConcurrentExecutions none  rateLimitPerMinute none" in cleared.stdout
    # Out of range: said by the command, naming its option (the API's 400 named its body's field).
    bad = _cli(stack, "workflows", "limits", "simple-echo", "--per-minute", "0")
    assert bad.returncode == 2 and "argument --per-minute: 0: give 1 to 60,000" in bad.stderr
