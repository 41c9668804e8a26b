"""The main command: `dataworkflows up` on its own embedded database, then Ctrl-C; and its process
life: signals with live event streams open, a leftover server, stale process ids, a busy port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.acceptance.conftest import Stack, command, free_port, wait_until_ready

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

pytestmark = pytest.mark.acceptance

SLOW = {
    "id": "slow",
    "displayName": "One long node",
    "startNode": "slow",
    "nodes": [{"id": "slow", "actionType": "core.echo", "parameters": {"message": "slow", "delayMs": 60000}}],
}


# How long up's stop may take past its grace: the API's, the worker's and PostgreSQL's (fast) stops,
# under the default grace (10 s) that a stop which did not hand its runs back would wait out. 7 s
# was passed once (7.5 s) with the whole suite and three other jobs on the two cores.
STOPPING = 9.0


def running(pid: int) -> bool:
    """Whether process `pid` runs (a server exits just after it removed its postmaster.pid; an
    orphan that nobody reaps stays a zombie)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.05)
    return True


_STARTED: list[Up] = []


@pytest.fixture(autouse=True)
def _no_up_left_behind() -> Iterator[None]:
    """An `up` that a failed test did not stop is stopped after it (SIGTERM: it stops its embedded
    server too; then killed): one was left running for an hour after an assertion failed."""
    yield
    while _STARTED:
        up = _STARTED.pop()
        if up.proc.poll() is None:
            up.proc.terminate()
            try:
                up.proc.wait(30)
            except subprocess.TimeoutExpired:
                up.proc.kill()
                up.proc.wait(10)
                if up.postmaster is not None and running(up.postmaster):
                    os.kill(up.postmaster, signal.SIGTERM)  # the server that killed `up` left


class Up:
    """One `dataworkflows up` process on a data directory, its output in a log file (stopped after
    the test if the test did not: _no_up_left_behind)."""

    def __init__(self, tmp_path: Path, port: int, name: str, *args: str, **env: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.pgdata = tmp_path / "data" / "pgdata"
        self.log = tmp_path / f"{name}.log"
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        environ |= {"DW_DATA_DIR": str(tmp_path / "data"), "DW_API_PORT": str(port), **env}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*command(), "up", *args], env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
            )
        self.postmaster: int | None = None
        _STARTED.append(self)

    def ready(self) -> Up:
        wait_until_ready(self.proc, self.base, self.log)
        self.postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal_and_wait(self, sig: int, within: float) -> tuple[int, float]:
        """Sends `sig`; the exit code and how long the process took to exit (at most `within`)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"not stopped within {within}s\n{self.output()}") from None
        return code, time.monotonic() - started

    def assert_postgres_stopped(self) -> None:
        assert not (self.pgdata / "postmaster.pid").exists(), self.output()
        assert self.postmaster is not None and not running(self.postmaster), self.output()

    def start(self, workflow: str, body: dict[str, Any]) -> str:
        response = httpx.post(f"{self.base}/api/v1/workflows/{workflow}/execute", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    def wait_for_node(self, execution_id: str, node: str, status: str) -> None:
        deadline = time.monotonic() + 20
        while True:
            nodes = httpx.get(f"{self.base}/api/v1/executions/{execution_id}").json()["nodes"]
            if {n["nodeId"]: n["status"] for n in nodes}.get(node) == status:
                return
            assert time.monotonic() < deadline, (nodes, self.output())
            time.sleep(0.05)


class Stream:
    """An SSE client following one execution's events in a thread."""

    def __init__(self, base: str, execution_id: str) -> None:
        self.lines: list[str] = []
        self.ended_at: float | None = None
        self.error: str | None = None
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(base, execution_id), daemon=True)
        self._thread.start()
        assert self._open.wait(10), "the stream did not open"

    def _follow(self, base: str, execution_id: str) -> None:
        headers = {"Accept": "text/event-stream"}
        try:
            url = f"{base}/api/v1/executions/{execution_id}/events"
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=30)) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                self._open.set()
                for line in response.iter_lines():
                    self.lines.append(line)
        except Exception as exc:
            self.error = repr(exc)
        finally:
            self.ended_at = time.monotonic()
            self._open.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@contextmanager
def followed_url(base: str, execution_id: str) -> Iterator[Stream]:
    stream = Stream(base, execution_id)
    try:
        yield stream
    finally:
        stream.join(5)


def followed(up: Up, execution_id: str) -> contextlib.AbstractContextManager[Stream]:
    return followed_url(up.base, execution_id)


def test_up_runs_everything_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    up = Up(tmp_path, free_port(), "up", DW_SHUTDOWN_GRACE_SECONDS="30")
    try:
        up.ready()
        base = up.base
        workflows = {w["id"]: w["status"] for w in httpx.get(f"{base}/api/v1/workflows").json()["items"]}
        assert workflows["simple-echo"] == "Active" and workflows["fanout-fanin"] == "Active"
        assert workflows["project-brief"] == "Active"
        # Loose mode trusts every caller, so `up` answers only the loopback names: a page whose name
        # is rebound to 127.0.0.1 gets nothing (on the embedded database the allow-list was lost).
        for host in ("attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io"):
            refused = httpx.get(f"{base}/api/v1/workflows", headers={"Host": host})
            assert refused.status_code == 403 and refused.json()["code"] == "host_not_allowed", (host, refused.text)
        sets = [s["id"] for s in httpx.get(f"{base}/api/v1/template-sets").json()["items"]]
        assert "project-briefs" in sets
        # migrate and examples load take the embedded database as psql does (they asked for a
        # DATABASE_URL, exit 2, though the README's table says only api and worker need one).
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DW_DATA_DIR": str(tmp_path / "data")}
        for argv, says in ((["migrate"], "none (up to date)"), (["examples", "load"], "example workflows (Active):")):
            done = subprocess.run([*command(), *argv], env=environ, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and says in done.stdout, (argv, done.stdout, done.stderr)
        sample = json.loads((FIXTURES / "documents" / "project-brief-sample.json").read_text())
        for workflow, body in (("fanout-fanin", {"trigger": {}}), ("project-brief", sample)):
            started = httpx.post(f"{base}/api/v1/workflows/{workflow}/execute", json=body).json()
            deadline = time.monotonic() + 30
            while httpx.get(f"{base}{started['statusUrl']}").json()["status"] != "Succeeded":
                assert time.monotonic() < deadline, up.output()
                time.sleep(0.1)

        # Ctrl-C with a live event stream open and an attempt running (for up to 30 s of grace):
        # the stream ends at once; a second Ctrl-C stops the process at once.
        assert httpx.post(f"{base}/api/v1/workflows", params={"autoActivate": "true"}, json=SLOW).status_code == 201
        slow = up.start("slow", {"trigger": {}})
        up.wait_for_node(slow, "slow", "Running")
        with followed(up, slow) as stream:
            interrupted = time.monotonic()
            up.proc.send_signal(signal.SIGINT)
            stream.join(5)
            assert stream.ended_at is not None and stream.ended_at - interrupted < 3, up.output()
            assert stream.error is None and ": server stopping" in stream.lines, stream.lines
            assert up.proc.poll() is None, "the running attempt has its grace period"
    finally:
        code, took = up.signal_and_wait(signal.SIGINT, within=20)
    output = up.output()
    # At once: well inside the running attempt's 30 s of grace (the embedded PostgreSQL's stop
    # included, which took 5.7 s once on a loaded machine).
    assert code == 130 and took < 15, output
    assert "DataWorkflows" in output and "is up" in output
    # On a port of its own, it says how to point the CLI at it.
    assert f"CLI:       export DW_API_URL={up.base}   (the CLI talks to $DW_API_URL, or --api-url URL" in output
    assert "SIGINT: stopping" in output and "SIGINT again: stopping at once" in output
    assert "Traceback" not in output
    # The embedded server was stopped with the command.
    up.assert_postgres_stopped()


def test_up_process_life_busy_port_leftover_server_stale_pid_term_and_hangup(tmp_path: Path) -> None:
    port = free_port()

    # A busy port: one line, exit code 2, before anything starts (no data directory is made).
    # Meanwhile (in parallel, to save time) an `up` starts and dies without stopping anything,
    # which leaves its PostgreSQL running.
    (tmp_path / "busy").mkdir()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy_port = holder.getsockname()[1]
        busy = Up(tmp_path / "busy", busy_port, "busy")
        died = Up(tmp_path, port, "died", "--no-examples")
        assert busy.proc.wait(30) == 2
    assert busy.output().strip().splitlines() == [
        f"error: port {busy_port} is already in use on 127.0.0.1 (another `dataworkflows up` or `api`?): "
        "stop that process, or choose another port with --port N or DW_API_PORT"
    ]
    assert not (tmp_path / "busy" / "data").exists()
    died.ready()
    died.proc.kill()
    died.proc.wait(10)
    assert died.postmaster is not None and psutil.Process(died.postmaster).status() != psutil.STATUS_ZOMBIE

    # The next `up` reuses that server, and stops it when it stops: SIGTERM with a live event
    # stream and a running attempt exits within the grace period (0.5 s, then the hand-back).
    term = Up(tmp_path, port, "term", "--no-examples", DW_SHUTDOWN_GRACE_SECONDS="0.5").ready()
    assert term.postmaster == died.postmaster
    assert f"reusing the embedded PostgreSQL (process {died.postmaster})" in term.output()
    assert httpx.post(f"{term.base}/api/v1/workflows", params={"autoActivate": "true"}, json=SLOW).status_code == 201
    slow = term.start("slow", {"trigger": {}})
    term.wait_for_node(slow, "slow", "Running")
    pid_file = (term.pgdata / "postmaster.pid").read_text()
    with followed(term, slow) as stream:
        code, took = term.signal_and_wait(signal.SIGTERM, within=20)
    # Within the 0.5 s grace and the stops of the API, the worker and PostgreSQL: not the default
    # grace (10 s), nor the node's 60 s. The stops took up to 4.6 s with four test processes on two
    # loaded cores.
    assert code == 0 and took < 0.5 + STOPPING, (took, term.output())
    assert stream.ended_at is not None and stream.error is None, stream.lines
    assert "execution released for another worker (shutdown)" in term.output()
    assert "Traceback" not in term.output()
    term.assert_postgres_stopped()

    # Stale records: postmaster.pid and the socket's lock file name a live process that is not
    # PostgreSQL (PostgreSQL would refuse to start; the wheel would take it for the server), and
    # the list of the server's users names it and a process that is gone.
    with subprocess.Popen(["sleep", "60"]) as impostor:
        try:
            lines = pid_file.splitlines()
            (term.pgdata / "postmaster.pid").write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
            (Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock").write_text(f"{impostor.pid}\n")
            handles = term.pgdata / ".handle_pids.json"
            handles.write_text(json.dumps([impostor.pid, died.proc.pid]))
            os.utime(handles, (time.time() - 3600, time.time() - 3600))

            # Cleaned at the next start; SIGHUP (a closed terminal) with a live stream (on the run
            # handed back above, which this `up` takes up again) stops it all within the grace period.
            hup = Up(tmp_path, port, "hup", "--no-examples", DW_SHUTDOWN_GRACE_SECONDS="0.5").ready()
            output = hup.output()
            assert f"removed a stale postmaster.pid from {hup.pgdata} (process {impostor.pid} is 'sleep'" in output
            assert (
                f"forgot the embedded PostgreSQL's users that are gone (processes {impostor.pid}, {died.proc.pid})"
                in output
            )
            with followed(hup, slow) as stream:
                code, took = hup.signal_and_wait(signal.SIGHUP, within=20)
            assert code == 0 and took < 0.5 + STOPPING, (took, hup.output())
            assert stream.ended_at is not None and stream.error is None, stream.lines
            assert "SIGHUP: stopping" in hup.output() and "Traceback" not in hup.output()
            hup.assert_postgres_stopped()
            assert impostor.poll() is None, "the impostor was left alone"
        finally:
            impostor.kill()

    # A stop signal while `up` starts (its PostgreSQL starting: the signal waits for that start) is
    # said, and the server it started is stopped (a review: it exited 130 without a word).
    early = Up(tmp_path, port, "early", "--no-examples")
    deadline = time.monotonic() + 30
    while "starting the embedded PostgreSQL" not in early.output():
        assert early.proc.poll() is None and time.monotonic() < deadline, early.output()
        time.sleep(0.01)
    code, _ = early.signal_and_wait(signal.SIGTERM, within=30)
    assert code == 130, early.output()
    assert "SIGTERM: stopping before the start has finished (exit code 130)" in early.output()
    assert "Traceback" not in early.output()
    assert not (early.pgdata / "postmaster.pid").exists(), early.output()


def test_api_ends_live_streams_on_sigterm_and_reports_a_busy_port(stack: Stack) -> None:
    # `dataworkflows api` on the port this API holds: one line, exit code 2.
    args = [*command(), "api", "--port", str(stack.port)]
    busy = subprocess.run(args, env=stack.env, capture_output=True, timeout=30)
    assert busy.returncode == 2, busy
    assert busy.stdout == b""
    assert busy.stderr.decode().startswith(f"error: port {stack.port} is already in use on 127.0.0.1"), busy

    # A request uvicorn cannot parse never reaches the application: its 400 is still a problem
    # document, and the connection is closed after it.
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as raw:
        raw.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/problem+json" in head.lower(), answer
    assert body.endswith(b"}\n") and f"content-length: {len(body)}".encode() in head.lower(), answer
    # With the headers every answer carries (a review: this one had none).
    for header in (b"x-content-type-options: nosniff", b"x-frame-options: deny", b"referrer-policy: no-referrer"):
        assert header in head.lower(), answer
    assert b"content-security-policy: default-src 'none'" in head.lower(), answer
    assert json.loads(body) == {
        "type": "https://dataworkflows.dev/problems/malformed_request",
        "title": "Bad Request",
        "status": 400,
        "detail": "Invalid HTTP request received. Its request line or a header is not valid HTTP/1.1.",
        "code": "malformed_request",
    }

    # No worker runs: the execution stays Pending, and its event stream would stay open.
    with stack.client() as client:
        created = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json={**SLOW, "id": "api-stop"})
        assert created.status_code == 201, created.text
        started = client.post("/api/v1/workflows/api-stop/execute", json={"trigger": {}})
        assert started.status_code == 202, started.text
        # HEAD of the live stream: its headers, then the answer ends (the run goes on, Pending).
        head = client.head(
            f"/api/v1/executions/{started.json()['executionId']}/events",
            headers={"Accept": "text/event-stream"},
            timeout=5,
        )
        assert (head.status_code, head.content) == (200, b""), head
        assert head.headers["content-type"].startswith("text/event-stream"), head.headers
    assert stack.api is not None
    with followed_url(stack.url, started.json()["executionId"]) as stream:
        stack.api.send_signal(signal.SIGTERM)
        assert stack.api.wait(10) == 0, stack.read_logs()
    # Ended by the server at the signal, with its last words (no time bound here: on a loaded machine
    # the process's own exit took more than 3 s once, in a full suite run, the stream ended at once).
    assert stream.error is None and ": server stopping" in stream.lines, stream.lines


def test_a_worker_and_an_api_beside_up_take_its_database_without_database_url(tmp_path: Path) -> None:
    """Beside `up` on one host, `worker` and `api` needed DATABASE_URL (a README walk): they take the
    embedded database under DW_DATA_DIR, as `psql` and `prune` do, and leave it running for `up`."""
    up = Up(tmp_path, free_port(), "up", "--no-examples").ready()
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ |= {"DW_DATA_DIR": str(tmp_path / "data"), "DW_WORKER_FETCHERS": "1"}
    api_port = free_port()
    with (tmp_path / "beside.log").open("wb") as out:
        worker = subprocess.Popen([*command(), "worker"], env=environ, stdout=out, stderr=subprocess.STDOUT)
        api = subprocess.Popen(
            [*command(), "api", "--port", str(api_port)], env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    log = tmp_path / "beside.log"
    try:
        wait_until_ready(api, f"http://127.0.0.1:{api_port}", log)
        # up's worker's fetch loop and this worker's, in the same database (DW_WORKER_FETCHERS 1 here).
        deadline = time.monotonic() + 30
        while len(httpx.get(f"{up.base}/api/v1/workers").json()["fetchLoops"]) < 3:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        other = f"http://127.0.0.1:{api_port}/api/v1/workflows"
        assert httpx.post(other, params={"autoActivate": "true"}, json=SLOW).status_code == 201
        assert "slow" in {w["id"] for w in httpx.get(f"{up.base}/api/v1/workflows").json()["items"]}
        for proc in (worker, api):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text(errors="replace")
    finally:
        for proc in (worker, api):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert "Traceback" not in log.read_text(errors="replace")
    # Their ends left up's server running: up still answers from it, then stops it as it stops.
    assert up.postmaster is not None and running(up.postmaster)
    assert httpx.get(f"{up.base}/health/ready").status_code == 200
    code, _ = up.signal_and_wait(signal.SIGTERM, within=30)
    assert code == 0, up.output()
    up.assert_postgres_stopped()


@pytest.mark.parametrize("kind", ["worker", "api"])
def test_a_worker_or_an_api_stopped_as_it_starts_the_embedded_database_stops_it_too(tmp_path: Path, kind: str) -> None:
    """Without `up` and DATABASE_URL, `worker` and `api` start the embedded database for as long as
    they run. A SIGTERM while they started (the server up, their own handlers not yet installed)
    ended them by its default action and left the server running, nobody's."""
    up = Up(tmp_path, free_port(), "up", "--no-examples").ready()
    code, _ = up.signal_and_wait(signal.SIGTERM, within=30)
    assert code == 0, up.output()
    up.assert_postgres_stopped()
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DW_DATA_DIR": str(tmp_path / "data")}
    pid_file = up.pgdata / "postmaster.pid"
    argv = ["worker"] if kind == "worker" else ["api", "--port", str(free_port())]
    with (tmp_path / "started.log").open("wb") as out:
        proc = subprocess.Popen([*command(), *argv], env=environ, stdout=out, stderr=subprocess.STDOUT)
    postmaster = None
    try:
        deadline = time.monotonic() + 60
        while postmaster is None:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "started.log").read_text()
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                postmaster = int(pid_file.read_text().split()[0])
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    left = running(postmaster)
    if left:
        os.kill(postmaster, signal.SIGTERM)  # the server this test's process started
    assert not left, (tmp_path / "started.log").read_text(errors="replace")
    assert "Traceback" not in (tmp_path / "started.log").read_text(errors="replace")


def test_up_stops_its_server_when_a_worker_beside_it_was_killed(tmp_path: Path) -> None:
    """A worker beside `up` (no DATABASE_URL) is one more user of its embedded server. Killed (-9, the
    OOM killer), it stayed on the server's list of users, and `up`'s stop, not the last user as far
    as that list said, left the server running for nobody."""
    up = Up(tmp_path, free_port(), "up", "--no-examples").ready()
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DW_DATA_DIR": str(tmp_path / "data")}
    handles = up.pgdata / ".handle_pids.json"
    with (tmp_path / "beside.log").open("wb") as out:
        worker = subprocess.Popen([*command(), "worker"], env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while worker.pid not in json.loads(handles.read_text()):
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "beside.log").read_text()
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait(10)
    code, _ = up.signal_and_wait(signal.SIGTERM, within=30)
    assert code == 0, up.output()
    assert up.postmaster is not None
    left = running(up.postmaster)
    if left:
        os.kill(up.postmaster, signal.SIGTERM)  # the server this test's `up` started
    assert not left, up.output()
