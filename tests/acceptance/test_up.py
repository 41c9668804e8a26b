"""The main command: `dataworkflows up` on its own embedded database, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import command, free_port, wait_until_ready

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

pytestmark = pytest.mark.acceptance


def test_up_runs_everything_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"DW_DATA_DIR": str(tmp_path / "data"), "DW_API_PORT": str(port)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command(), "up"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(proc, base, log)
            workflows = {w["id"]: w["status"] for w in httpx.get(f"{base}/api/v1/workflows").json()["items"]}
            assert workflows["simple-echo"] == "Active" and workflows["fanout-fanin"] == "Active"
            assert workflows["project-brief"] == "Active"
            sets = [s["id"] for s in httpx.get(f"{base}/api/v1/template-sets").json()["items"]]
            assert "project-briefs" in sets
            sample = json.loads((FIXTURES / "documents" / "project-brief-sample.json").read_text())
            for workflow, body in (("fanout-fanin", {"trigger": {}}), ("project-brief", sample)):
                started = httpx.post(f"{base}/api/v1/workflows/{workflow}/execute", json=body).json()
                deadline = time.monotonic() + 30
                while httpx.get(f"{base}{started['statusUrl']}").json()["status"] != "Succeeded":
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
    output = log.read_text()
    assert code == 0, output
    assert "DataWorkflows" in output and "is up" in output
    assert "Traceback" not in output
    # The embedded server was stopped with the command.
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
