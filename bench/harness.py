"""What every benchmark script shares: a scratch database, a monitoring connection that counts its own
statements, CPU accounting of processes, child processes, machine facts, and run_main() (the common tail
of a benchmark's main()).

bench/throughput.py re-exports these names: the other scripts (waits.py, composition.py, ...) import them
from there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import procrastinate
import psutil
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dataworkflows.db import make_pool
from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope
from figures import progress, ratio

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
FINAL = ("Succeeded", "Failed", "Cancelled", "TimedOut")
QUEUE = "executions"
# Backends that have just disconnected flush their statistics as they exit.
STATS_SETTLE_SECONDS = 0.5


class BenchError(Exception):
    """A phase could not complete (timeout, worker crash); the run stops and cleans up."""


def safe_target(conninfo: str) -> str:
    """Where the database is, without credentials."""
    params = conninfo_to_dict(conninfo)
    return f"host={params.get('host', 'localhost')} port={params.get('port', 5432)} dbname={params.get('dbname')}"


# -- the database --------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[tuple[str, str]]:
    """(conninfo, description) of a fresh database, removed afterwards."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from dataworkflows.embedded import EmbeddedPostgres

        tmp = tempfile.mkdtemp(prefix="dw-bench-")
        server = None
        try:
            progress(f"starting an embedded PostgreSQL under {tmp}")
            server = EmbeddedPostgres(tmp, database="dw_bench")
            yield server.uri(), "embedded (unix socket, temporary directory)"
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    name = f"dw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        conninfo = make_conninfo(url, dbname=name)
        yield conninfo, f"DATABASE_URL server, scratch database ({safe_target(conninfo)})"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Monitor:
    """One autocommit connection for polling and statistics; counts its own statements so that
    they can be taken out of the pg_stat_database transaction counts."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.statements = 0

    async def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.statements += 1
        cur = await self.conn.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []

    async def value(self, query: str, params: Any = None) -> Any:
        rows = await self.rows(query, params)
        return rows[0][0] if rows else None

    async def checkpoint(self) -> None:
        """Start each timed phase with the same WAL state (needs superuser or pg_checkpoint; skipped otherwise)."""
        with contextlib.suppress(psycopg.Error):
            await self.rows("CHECKPOINT")

    async def transactions(self) -> tuple[int, int]:
        """(statements issued here so far, committed + rolled back transactions of this database).

        Backends flush their counters to pg_stat_database lazily (when idle, at most once a second, else
        after 10 s idle) and at exit. So callers read this only when every other client of the phase has
        disconnected, and this connection forces its own flush first."""
        await asyncio.sleep(STATS_SETTLE_SECONDS)
        with contextlib.suppress(psycopg.Error):  # PostgreSQL 15+
            await self.rows("SELECT pg_stat_force_next_flush()")
        counted = self.statements
        total = await self.value(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        return counted, int(total)

    @staticmethod
    def transactions_between(before: tuple[int, int], after: tuple[int, int]) -> int:
        # This connection's statements in the window: the "before" read up to the "after" flush.
        own = after[0] - before[0]
        return after[1] - before[1] - own


class CpuSampler:
    """CPU seconds used by one process and by every PostgreSQL server process on this host, from /proc.

    Call sample() often (the poll loops do, every 0.1 s): a backend that exits loses its time since the last
    sample. mark() restarts the count, e.g. once the worker has started up and the first execution runs."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.marked = False
        self._reset()

    def _scan(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    text = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                comm = text[text.find("(") + 1 : text.rfind(")")]
                if comm != "postgres" and pid != self.pid:
                    continue
                fields = text[text.rfind(")") + 2 :].split()
                seen[pid] = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return seen

    def _reset(self) -> None:
        self.first = self._scan()
        self.last = dict(self.first)

    def mark(self) -> None:
        self._reset()
        self.marked = True

    def sample(self) -> None:
        self.last.update(self._scan())

    def result(self, seconds: float | None) -> dict[str, Any]:
        self.sample()
        used = {pid: value - self.first.get(pid, 0.0) for pid, value in self.last.items()}
        worker = used.pop(self.pid, None) if self.pid is not None else None
        server = sum(used.values())
        return {
            "worker_cpu_seconds": worker,
            "postgres_cpu_seconds": server,
            "worker_cores": ratio(worker, seconds),
            "postgres_cores": ratio(server, seconds),
        }


class ProcessCpu:
    """CPU seconds (user + system) of a set of worker processes (with their helper processes) and of
    the PostgreSQL server's processes, through psutil, over a window: mark() starts it, sample() keeps the last
    figure of each process (call it often: a backend that exits loses its time since the last sample),
    result() ends it. Only meaningful when the server runs on this host (the embedded one does)."""

    def __init__(self, worker_pids: Iterable[int], postmaster: int | None = None) -> None:
        self.worker_pids = set(worker_pids)
        # With the server's postmaster known, only its processes count: other PostgreSQL servers on a shared
        # machine (other people's tests) do not.
        self.postmaster = postmaster
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.marked = False
        self.first = self._scan()
        self.last = dict(self.first)

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        # Each process's own time: live helper children are scanned as processes of their own (a reaped
        # process's time in its parent's children_* would count twice).
        times = process.cpu_times()
        return float(times.user + times.system)

    def _server_processes(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return [p for p in psutil.process_iter(["name"]) if p.info.get("name") == "postgres"]
        try:
            root = psutil.Process(self.postmaster)
            return [root, *root.children()]
        except psutil.Error:
            return []

    def _scan(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        workers = []
        for pid in list(self.worker_pids):
            with contextlib.suppress(psutil.Error):
                workers.append(psutil.Process(pid))
        for process in [*workers, *self._server_processes()]:
            with contextlib.suppress(psutil.Error):
                seen[process.pid] = self._seconds(process)
                if process.pid in self.worker_pids:  # helper processes (JS conditions, templates) count too
                    for child in process.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            seen[child.pid] = self._seconds(child)
                            self.worker_pids.add(child.pid)
        return seen

    def mark(self) -> None:
        self.first = self._scan()
        self.last = dict(self.first)
        self.marked = True

    def sample(self) -> None:
        self.last.update(self._scan())

    def result(self, seconds: float | None) -> dict[str, Any]:
        self.sample()
        used = {pid: value - self.first.get(pid, 0.0) for pid, value in self.last.items()}
        worker = sum(value for pid, value in used.items() if pid in self.worker_pids)
        server = sum(value for pid, value in used.items() if pid not in self.worker_pids)
        return {
            "worker_cpu_seconds": worker,
            "postgres_cpu_seconds": server,
            "worker_cores": ratio(worker, seconds),
            "postgres_cores": ratio(server, seconds),
        }


async def postmaster_pid(monitor: Monitor) -> int | None:
    """The PostgreSQL server's main process, when it runs on this host (the parent of our backend)."""
    backend = await monitor.value("SELECT pg_backend_pid()")
    try:
        parent = psutil.Process(int(backend)).parent()
    except (psutil.Error, TypeError, ValueError):
        return None
    return parent.pid if parent is not None and parent.name() == "postgres" else None


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process (its helper child processes apart), or None once it has gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def git_state() -> str | None:
    """The commit measured, and whether the working tree had changes (benchmarks run on work in progress)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    changed = len(status.stdout.splitlines())
    return head.stdout.strip() + (f" + {changed} modified files" if changed else "")


def memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def usable_cores() -> int | None:
    """The CPUs this process may run on (its affinity), or None where the platform cannot say."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


async def machine_info(monitor: Monitor, description: str) -> dict[str, Any]:
    settings = {}
    for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"):
        settings[name] = await monitor.value("SELECT current_setting(%s)", (name,))
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": usable_cores(),
        "memory_gb": memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": await monitor.value("SELECT version()"),
        "postgresql_settings": settings,
        "procrastinate": procrastinate.__version__,
        "psycopg": psycopg.__version__,
        "database": description,
        "git": git_state(),
    }


# -- processes -----------------------------------------------------------------------------------


class Subprocess:
    """A child process with its output in a file; always stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.spawned_at = time.perf_counter()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def wait(self, limit_seconds: float) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), limit_seconds)
        except TimeoutError:
            raise BenchError(f"{self.name} did not exit within {limit_seconds:g}s") from None

    async def stop(self, grace: float = 20.0) -> tuple[int | None, float]:
        """SIGTERM, wait up to `grace`, then SIGKILL. Returns (exit code, seconds to stop)."""
        if self.process is None or self.process.returncode is not None:
            return self.returncode, 0.0
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            code = await self.process.wait()
        return code, time.perf_counter() - started

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def worker_command() -> list[str]:
    script = Path(sys.executable).with_name("dataworkflows")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dataworkflows.cli"]


def child_env(conninfo: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": conninfo, "DW_LOG_FORMAT": "json", "DW_LOG_LEVEL": "warning"})
    # The engine's figures, not the API rate limiter's (bench/limits.py measures that): off unless set.
    env.setdefault("DW_API_RATE_PER_MINUTE", "0")
    return env


def summarize_log(path: Path) -> dict[str, Any]:
    """Counts of log lines by level (JSON lines from structlog; anything else is 'other')."""
    levels: dict[str, int] = {}
    samples: list[str] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "jobs" in record and "span_seconds" in record:
                continue  # the no-op worker's figures
            level = str(record.get("level", "other")) if isinstance(record, dict) else "other"
            levels[level] = levels.get(level, 0) + 1
            if len(samples) < 8 and level not in ("debug", "info"):
                samples.append(line[:300])
    return {"lines_by_level": levels, "samples": samples}


@contextlib.asynccontextmanager
async def open_pool(conninfo: str, size: int, *, min_size: int = 2) -> AsyncIterator[psycopg_pool.AsyncConnectionPool]:
    """The benchmark's own pool (its start calls, its monitoring): `min_size` connections opened at once,
    more on demand up to `size`."""
    pool = make_pool(conninfo, min_size=min(min_size, size), max_size=size, name="bench")
    await pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        await pool.close()


async def interruptible(total_timeout: float, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """A whole benchmark run under one overall time limit (the phases have their own). SIGTERM and SIGINT
    cancel it, so that the processes are stopped and the database removed on the way out."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        async with asyncio.timeout(total_timeout):
            return await work()
    except TimeoutError:
        raise BenchError(f"the benchmark ran past --total-timeout ({total_timeout:g}s)") from None
    except asyncio.CancelledError:
        raise BenchError("interrupted") from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_main(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, str, str, Path], Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, Any]], None],
    *,
    errors: tuple[type[Exception], ...] = (BenchError,),
    exit_code: Callable[[dict[str, Any]], int] = lambda results: 0,
) -> int:
    """The shared tail of every benchmark's main(): run against a bench database within
    --total-timeout, report, and save bench/results/<name>-<UTC timestamp>.json unless --no-save."""
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="dw-bench-logs-"))
    try:
        with bench_database() as (conninfo, description):
            try:
                # The engine's pools act as the application role (row-level security): the
                # benchmark's own database work is the default tenant's.
                with tenant_scope(DEFAULT_TENANT):
                    results = asyncio.run(
                        interruptible(args.total_timeout, lambda: run(args, conninfo, description, workdir))
                    )
            except errors as exc:
                detail = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                print(f"error: {detail}", file=sys.stderr)
                for log in sorted(workdir.glob("*.log")):
                    print(f"--- last lines of {log.name}:", file=sys.stderr)
                    print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - began
    report(results)
    print(f"total run time {results['total_seconds']:.1f}s")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {path.relative_to(BENCH_DIR.parent)}")
    return exit_code(results)
