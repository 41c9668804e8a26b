"""Makes the upgrade fixture of a release: its database, with runs in flight, as a SQL dump.

    git worktree add --detach /tmp/release-0.1.0 <the release's commit>
    .venv/bin/python scripts/release_fixture.py --tree /tmp/release-0.1.0 --version 0.1.0

The release's own code (from --tree, ahead of this checkout on the path) migrates a fresh database
on an embedded PostgreSQL, then its `api` and `worker` processes, driven over HTTP, leave:
  - `succeeded`: a finished run (history an upgrade must keep readable);
  - `running`: a run whose worker was killed (SIGKILL) in the middle of node b, node a Succeeded;
  - `waiting`: a run parked on a signal (`go`, 10 min timeout) that nobody has sent yet;
  - `pending`: a run queued after the worker died.
Then pg_dump (the embedded server's, plain SQL with INSERTs, no owners) writes
tests/upgrade_data/release-<version>.sql, and release-<version>.json records the release, when the
dump was taken (tests move the rows' times to their own now), the runs, and every named query the
release sends (sql/queries), which tests/integration/test_upgrades.py plans against the upgraded
schema. Takes about half a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from dataworkflows.embedded import EmbeddedPostgres, bundled_binary
from dataworkflows.sqlfiles import parse_named_queries

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 2

STEPS = {
    "id": "upgrade-steps",
    "displayName": "Three steps, the middle one slow",
    "startNode": "a",
    "nodes": [
        {"id": "a", "actionType": "core.echo", "parameters": {"message": "a"}},
        {"id": "b", "actionType": "core.echo", "parameters": {"message": "b", "delayMs": 1000}},
        {"id": "c", "actionType": "core.echo", "parameters": {"message": "{{ nodes.b.echo }}c"}},
    ],
}
SIGNAL = {
    "id": "upgrade-signal",
    "displayName": "Waits for go",
    "startNode": "wait",
    "nodes": [
        {"id": "wait", "nodeType": "signal", "parameters": {"name": "go", "timeout": "PT10M"}},
        {"id": "done", "actionType": "core.echo", "parameters": {"message": "{{ nodes.wait.word }}"}},
    ],
}


def link_tree(tree: Path, into: Path) -> Path:
    """A package tree of the release's code (its layout maps api/, workers/, sql/ and fixtures/
    into the package), as scripts/check and the tests' run-tree script build it."""
    package = into / "dataworkflows"
    package.mkdir(parents=True)
    for entry in (tree / "src" / "dataworkflows").iterdir():
        (package / entry.name).symlink_to(entry)
    for name in ("api", "workers", "sql", "fixtures"):
        (package / name).symlink_to(tree / name)
    return into


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise SystemExit(f"timed out: {what}")


def node_status(client: httpx.Client, run: str, node: str) -> str:
    body = client.get(f"/api/v1/executions/{run}").json()
    return str(next((n["status"] for n in body["nodes"] if n["nodeId"] == node), ""))


def drive(client: httpx.Client, spawn: Callable[..., subprocess.Popen[bytes]]) -> dict[str, str]:
    for raw in (STEPS, SIGNAL):
        response = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
        assert response.status_code == 201, response.text

    def execute(workflow_id: str) -> str:
        response = client.post(f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {}})
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    worker = spawn("worker", "--concurrency", "4")
    runs = {"succeeded": execute("upgrade-steps")}
    until(lambda: client.get(f"/api/v1/executions/{runs['succeeded']}").json()["status"] == "Succeeded", "a run")
    runs["waiting"] = execute("upgrade-signal")
    runs["running"] = execute("upgrade-steps")
    until(lambda: client.get(f"/api/v1/executions/{runs['waiting']}").json()["status"] == "Waiting", "a wait")
    until(lambda: node_status(client, runs["running"], "b") == "Running", "node b running", seconds=10)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    runs["pending"] = execute("upgrade-steps")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", required=True, type=Path, help="a checkout of the release")
    parser.add_argument("--version", required=True, help="the release, as sql/releases.json names it")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "upgrade_data")
    args = parser.parse_args()
    tree = args.tree.resolve()
    commit = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        links = link_tree(tree, Path(tmp) / "links")
        server = EmbeddedPostgres(Path(tmp) / "pg", database="release_fixture")
        try:
            dsn = server.uri()
            env = {
                **os.environ,
                "PYTHONPATH": f"{links}{os.pathsep}{tree}",
                "DATABASE_URL": dsn,
                "DW_LEASE_SECONDS": str(LEASE_SECONDS),
                "DW_LOG_FORMAT": "json",
            }
            logs = open(Path(tmp) / "processes.log", "ab")  # noqa: SIM115 - closed below

            def spawn(*command: str) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-m", "dataworkflows.cli", *command], env=env, cwd=tree, stdout=logs, stderr=logs
                )

            subprocess.run([sys.executable, "-m", "dataworkflows.cli", "migrate"], env=env, cwd=tree, check=True)
            port = free_port()
            api = spawn("api", "--port", str(port))
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                    until(lambda: _ready(client), "the API")
                    runs = drive(client, spawn)
            finally:
                api.terminate()
                api.wait(15)
                logs.close()
            # The dead worker's lease runs out before the dump: the rows say it is gone.
            time.sleep(LEASE_SECONDS + 1)
            with psycopg.connect(dsn) as conn:
                made_at = conn.execute("SELECT now()").fetchone()
            dump = subprocess.run(
                [bundled_binary("pg_dump"), "--no-owner", "--inserts", "--dbname", dsn],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            server.stop()
    # psql-only lines (\restrict in recent dumps): the fixture is plain SQL for one execute().
    body = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    header = (
        f"-- The database of DataWorkflows {args.version} (commit {commit}) with runs in flight, made by\n"
        f"-- scripts/release_fixture.py; see release-{args.version}.json. Do not edit: make it again.\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"release-{args.version}.sql").write_text(header + body + "\n")
    queries: dict[str, str] = {}
    for path in sorted((tree / "sql" / "queries").glob("*.sql")):
        queries |= parse_named_queries(path.read_text("utf-8"))
    meta = {
        "version": args.version,
        "commit": commit,
        "madeAt": made_at[0].isoformat() if made_at else None,
        "runs": runs,
        "queries": queries,
    }
    (args.out / f"release-{args.version}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}/release-{args.version}.sql and .json")


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/health/ready").status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    main()
