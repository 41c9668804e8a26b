"""Real processes: `dataworkflows api` and `dataworkflows worker`, driven over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import free_port


def command() -> list[str]:
    script = shutil.which("dataworkflows", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "dataworkflows.cli"]


def wait_until_ready(proc: subprocess.Popen[bytes], base_url: str, log: Path, timeout: float = 60) -> None:
    """Waits for a started process's /health/ready; fails with its log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "not ready in time\n" + log.read_text(errors="replace")
        time.sleep(0.1)


@dataclass
class Stack:
    dsn: str
    port: int
    logs: Path
    env: dict[str, str]
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    files: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.files.append(log)
        return subprocess.Popen([*command(), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self) -> None:
        self.api = self._spawn("api", "api", "--port", str(self.port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.api.poll() is None, self.read_logs()
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the API did not become ready\n" + self.read_logs())

    def start_worker(self, concurrency: int = 10) -> subprocess.Popen[bytes]:
        worker = self._spawn(f"worker{len(self.workers)}", "worker", "--concurrency", str(concurrency))
        self.workers.append(worker)
        return worker

    def read_logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def wait_for(self, execution_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                body = client.get(f"/api/v1/executions/{execution_id}").json()
                if body["status"] in statuses:
                    return dict(body)
                if time.monotonic() > deadline:
                    raise AssertionError(f"execution stuck in {body['status']}\n{body}\n{self.read_logs()}")
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.api]:
            if proc is None:
                continue
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self.files:
            log.close()


@pytest.fixture
def stack(dsn: str, tmp_path: Path) -> Iterator[Stack]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DW_LOG_FORMAT": "json",
        # Fast failure detection so the kill -9 test finishes in seconds.
        "DW_LEASE_SECONDS": "2",
        "DW_RECOVERY_INTERVAL_SECONDS": "0.5",
        "DW_STALLED_WORKER_SECONDS": "3",
        "DW_SHUTDOWN_GRACE_SECONDS": "2",
    }
    stack = Stack(dsn=dsn, port=free_port(), logs=tmp_path, env=env)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.stop()
