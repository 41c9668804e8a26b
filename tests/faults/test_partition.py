"""A network partition between a worker and PostgreSQL: packets dropped without a word, both ways.

The worker runs in a network namespace of its own, joined by a veth pair to a second one (the hub),
where a TCP proxy, a thread of this process moved into the hub, forwards its connections to the test
server's Unix socket. Taking the hub's end of the pair down drops every packet between them, as a
partition, a dead host or a failover to another address do: nothing answers, nothing refuses. No
link of the host's own namespace is added, changed or removed: Chromium fails the requests it has in
flight at such a change (net::ERR_NETWORK_CHANGED), and the browser tests running beside this one
saw their page's scripts fail to load (a CI run at a6e3bd1). Before libpq's keepalives and tcp_user_timeout were set
(dataworkflows.tcp_liveness), a worker noticed only when the kernel gave up retransmitting, about
15 minutes for a call in flight and never for its idle LISTEN connections.

Needs root and `ip netns` (skipped without them, saying so)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg.conninfo
import pytest

from dataworkflows.tcp_liveness import TCP_LIVENESS
from tests.acceptance.conftest import command
from tests.acceptance.test_connection_faults import create_workflow, start_named_stack, start_runs, wait_until
from tests.faults.harness import Probe, all_succeed, held_by, last_end, summarize, verify

pytestmark = pytest.mark.acceptance

# The lane worker's libpq TCP settings, in its DATABASE_URL as a user sets them (README, DATABASE_URL):
# the same mechanism as the defaults (TCP_LIVENESS, for whichever the URL leaves unset), shorter, so that
# the test waits 3 s for the worker to notice the partition rather than the default's 20 s (its longest
# wait, a CI run's longest test). What the test proves does not depend on the figure: that the worker's
# every connection, busy or an idle LISTEN, carries libpq's settings and is given up by them, and that
# it carries on once mended. That the defaults reach each connection when the URL sets none is
# tests/unit/test_tcp_liveness.py's. Probes every second on an idle connection: with tcp_user_timeout
# the kernel gives it up once nothing has been acknowledged for that long, whatever keepalives_count.
LANE_LIVENESS = {
    "keepalives_idle": "1",
    "keepalives_interval": "1",
    "keepalives_count": "2",
    "tcp_user_timeout": "3000",
}
assert set(LANE_LIVENESS) <= set(TCP_LIVENESS)
# How long the worker has to notice the partition: libpq's settings say when its connections are
# given up (tcp_user_timeout), and a few seconds more for the log line.
NOTICE_SECONDS = int(LANE_LIVENESS["tcp_user_timeout"]) / 1000 + 8


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


# setns(2)'s flag for a network namespace.
CLONE_NEWNET = 0x40000000


def _enter_namespace(namespace: str) -> None:
    """Moves the calling thread (only it) into the named network namespace (`ip netns add`'s)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
    finally:
        os.close(fd)


@dataclass
class Proxy:
    """Forwards TCP connections on (host, some free port) to a Unix socket, in a thread of its own
    inside network namespace `namespace` (the Unix socket is reached by its path from any)."""

    host: str
    target: str
    namespace: str
    port: int = 0
    errors: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, host=self.host, port=0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        def run() -> None:
            _enter_namespace(self.namespace)
            loop = self._loop = asyncio.new_event_loop()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(serve())
            # The connections' pipes, cancelled by stop(): let them close their sockets, then the loop.
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="lane-proxy", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_unix_connection(self.target)
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        finally:
            server_writer.close()
            client_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError as exc:
            # The worker's end reset the connection (it gave it up during the partition): the other
            # direction's pipe ends with it.
            self.errors.append(str(exc))
        finally:
            writer.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the thread has ended
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Lane:
    """A network namespace whose one way out is a veth pair to the hub, another one (`address` and
    `link` are the hub's end)."""

    namespace: str
    hub: str
    link: str
    address: str

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def cut(self) -> None:
        _ip("-n", self.hub, "link", "set", self.link, "down")

    def mend(self) -> None:
        _ip("-n", self.hub, "link", "set", self.link, "up")


@pytest.fixture
def lane() -> Iterator[Lane]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2's ip")
    pid = os.getpid()
    namespace, hub, link, peer = f"dwlane{pid}", f"dwhub{pid}", f"dwh{pid}", f"dwn{pid}"
    here, there = "10.213.0.1", "10.213.0.2"  # the namespaces are this test's own: no other user
    made: list[str] = []
    try:
        for name in (hub, namespace):
            _ip("netns", "add", name)
            made.append(name)
    except subprocess.CalledProcessError as exc:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        pytest.skip(f"no network namespaces here: {exc.stderr.decode(errors='replace').strip()}")
    try:
        # Made in the hub, its peer put straight into the lane: never a link in the host's namespace.
        _ip("-n", hub, "link", "add", link, "type", "veth", "peer", "name", peer, "netns", namespace)
        _ip("-n", hub, "addr", "add", f"{here}/30", "dev", link)
        _ip("-n", hub, "link", "set", link, "up")
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", namespace, "addr", "add", f"{there}/30", "dev", peer)
        _ip("-n", namespace, "link", "set", peer, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        yield Lane(namespace=namespace, hub=hub, link=link, address=here)
    finally:
        # Deleting a namespace deletes its end of the pair, and so the pair.
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


# What the worker says when it gives up an idle LISTEN connection: its control listener's, and its fetch
# loop's (Procrastinate's). Without keepalives neither was ever noticed.
LISTENERS_LOST = ("control listener lost its connection; reconnecting", "listening for new jobs failed; reconnecting")


def _listeners_lost(log: Path, since: float) -> set[str]:
    """Which of LISTENERS_LOST the worker's log says after `since` (epoch seconds)."""
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        stamp = datetime.fromisoformat(str(record.get("timestamp", "1970-01-01T00:00:00+00:00")).replace("Z", "+00:00"))
        if record.get("event") in LISTENERS_LOST and stamp.timestamp() >= since:
            found.add(str(record["event"]))
    return found


# How many of the runs are Running under a lease that has not run out (the database's clock).
_HELD_LEASES = (
    "SELECT count(*) FROM dw.executions WHERE id = ANY(%s::uuid[]) AND status = 'Running' AND lease_expires_at >= now()"
)


def test_a_worker_cut_off_from_the_database_gives_its_connections_up_and_carries_on(
    lane: Lane, dsn: str, tmp_path: Path
) -> None:
    """A worker in the lane, a batch of runs in flight; the lane is cut until the worker says it gave
    its idle LISTEN connections up (within the tcp_user_timeout its DATABASE_URL sets) and the leases
    of the runs it held have run out, then mended: every run ends, checked from
    the database as the other faults are (nothing lost or succeeded twice), and the worker lives on."""
    began = time.monotonic()
    stack = start_named_stack(dsn, tmp_path)
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    # The test server listens on a Unix socket: the proxy forwards to it.
    proxy = Proxy(host=lane.address, target=f"{params['host']}/.s.PGSQL.{params['port']}", namespace=lane.hub)
    proxy.start()
    probe = Probe(dsn)
    try:
        lane_dsn = psycopg.conninfo.make_conninfo(
            host=lane.address, port=proxy.port, user=params["user"], dbname=params["dbname"], **LANE_LIVENESS
        )
        log_path = stack.logs / "worker-lane.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed by stack.stop()
        stack.files.append(log)
        env = {**stack.env, "DATABASE_URL": lane_dsn, "PGAPPNAME": "dw-lane-worker"}
        worker = subprocess.Popen(
            lane.argv(*command(), "worker", "--concurrency", "6"), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        stack.workers.append(worker)
        create_workflow(stack.url)
        warm_up = start_runs(stack.url, 6)
        wait_until(dsn, warm_up, len(warm_up), stack, timeout=60)

        ids = start_runs(stack.url, 12)
        wait_until(dsn, ids, 2, stack)
        held = held_by(probe, worker)
        assert held, f"the lane worker holds none of the runs\n{stack.read_logs()}"
        cut_at = time.time()
        lane.cut()
        try:
            deadline = time.monotonic() + NOTICE_SECONDS
            while _listeners_lost(log_path, cut_at) != set(LISTENERS_LOST):
                assert worker.poll() is None, stack.read_logs()
                assert time.monotonic() < deadline, (
                    f"the worker noticed nothing {NOTICE_SECONDS:g} s into the partition\n{stack.read_logs()}"
                )
                time.sleep(0.5)
            noticed = time.time() - cut_at
            # Cut until the leases of the runs it held have run out too (DW_LEASE_SECONDS, 2 s): the
            # worker comes back to runs it may no longer hold, as after any long partition (with the
            # default's 20 s that was so by the time it noticed; with 3 s it may not be).
            while probe.value(_HELD_LEASES, (held,)):
                assert worker.poll() is None, stack.read_logs()
                assert time.monotonic() < deadline, f"leases {held} did not run out\n{stack.read_logs()}"
                time.sleep(0.2)
        finally:
            lane.mend()
        mended_at = time.time()
        # Back: every run finishes, the worker alive.
        wait_until(dsn, ids, len(ids), stack, timeout=60)
        ended = last_end(probe, ids) - mended_at
        checked = verify(probe, all_succeed([*warm_up, *ids]))
        assert checked.problems() == []
        assert worker.poll() is None, stack.read_logs()
    finally:
        stack.stop()
        proxy.stop()
        probe.close()
    summarize(
        "network partition between a worker and PostgreSQL (packets dropped both ways), mended once noticed",
        checked,
        recovery_s=ended,
        first_progress_s=None,
        test_s=time.monotonic() - began,
        recovery_note=(
            f"the worker gave its silent connections up {noticed:.1f} s into the partition (tcp_user_timeout"
            f" {int(LANE_LIVENESS['tcp_user_timeout']) / 1000:g} s,"
            f" the default {int(TCP_LIVENESS['tcp_user_timeout']) // 1000} s);"
            f" its runs all ended {ended:.1f} s after it was mended"
        ),
        noticed_s=round(noticed, 2),
    )
