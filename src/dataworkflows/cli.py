"""The `dataworkflows` command: up, migrate, prune, api, worker, run, logs, status, token; and, through
the API, workflows, executions (list, tree, cancel, suspend, resume), signal, approvals, approve, reject,
dead-letters, triggers, connections.

It starts fast: the commands that talk to the API import httpx (and little else) when they run, and
only the commands that run the engine here (up, api, worker, migrate, prune, psql, token) read the
server settings, configure logging and import the engine."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qs, quote, urlsplit

from dataworkflows import __version__
from dataworkflows.cli_follow import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FINAL,
    Printer,
    Refused,
    event_id_of,
    follow,
    print_log,
    seconds_text,
)
from dataworkflows.cli_help import LOCAL, decorate
from dataworkflows.errors import ConfigurationError, DatabaseUnavailable, DataWorkflowsError
from dataworkflows.priorities import MAX_RUN_PRIORITY, MIN_RUN_PRIORITY
from dataworkflows.statuses import DeadLetterKind, ExecutionStatus, WebhookOutcome

if TYPE_CHECKING:
    import socket

    import httpx

    from dataworkflows.config import Settings
    from dataworkflows.serving import Stopper

__all__ = ["EXIT_OK", "EXIT_RUN_FAILED", "EXIT_TIMEOUT", "EXIT_UNAVAILABLE", "EXIT_USAGE", "build_parser", "main"]

# The commands that run the engine in this process: they read (and check) the server settings and
# configure logging. The others only talk to the API.
LOCAL_COMMANDS = LOCAL


def configure_logging(log_format: str, level: str) -> None:
    from dataworkflows.logs import configure_logging as configure

    configure(log_format, level)


def _settings(args: argparse.Namespace) -> Settings:
    from dataworkflows.config import Settings

    return Settings.from_env(
        api_host=getattr(args, "host", None),
        api_port=getattr(args, "port", None),
        worker_concurrency=getattr(args, "concurrency", None),
        worker_metrics_port=getattr(args, "metrics_port", None),
        worker_fetchers=getattr(args, "fetchers", None),
    )


def _serving_settings(args: argparse.Namespace) -> Settings:
    """The settings of a command that serves the API (`up`, `api`): in loose auth mode, which trusts
    every caller, only the loopback host names are answered unless DW_API_ALLOWED_HOSTS names others
    (a page whose name is rebound to 127.0.0.1 would read and change everything: api/cross_site.py)."""
    from dataclasses import replace

    from dataworkflows.api.cross_site import LOOPBACK_HOSTS

    settings = _settings(args)
    # A value that names no host (",", " , ") is unset, not "any host" (a review: "," answered every
    # Host in loose mode); any host is "*".
    if settings.auth_mode == "loose" and not any(name.strip() for name in settings.api_allowed_hosts.split(",")):
        settings = replace(settings, api_allowed_hosts=",".join(LOOPBACK_HOSTS))
    return settings


def _require_database(settings: Settings) -> None:
    """DATABASE_URL, else the embedded database `up` made under DW_DATA_DIR (a worker or an API beside
    `up` on one host, as `psql` and `prune` take it): refused (exit 2) when there is neither."""
    from dataworkflows.embedded import has_cluster

    if not settings.database_url and not has_cluster(settings.data_dir):
        raise DataWorkflowsError(
            f"DATABASE_URL is not set, and there is no embedded database under {os.path.abspath(settings.data_dir)}"
            " (DW_DATA_DIR): set DATABASE_URL to your PostgreSQL server, or run `dataworkflows up`, which makes"
            " one there"
        )


@contextlib.contextmanager
def _database_settings(settings: Settings, stopper: Stopper | None = None) -> Iterator[tuple[Settings, str]]:
    """The settings and the database's URL: DATABASE_URL, else the embedded database's under
    DW_DATA_DIR, started for as long as the command runs unless `up` (or another process) serves it
    already. The embedded server is held as `up` holds its own: until the command's event loop takes
    the stop signals, SIGTERM and SIGHUP interrupt like Ctrl-C (their default action ended the process
    and left the server it had started running, nobody's: a review), they are held while the server
    starts and ignored while it stops, and a forced exit (`stopper`'s) stops it too."""
    from dataclasses import replace

    from dataworkflows import serving

    if settings.database_url:
        yield settings, settings.database_url
        return
    from dataworkflows.embedded import EmbeddedPostgres

    _require_database(settings)
    serving.interrupt_on_stop_signals()
    with serving.signals_held():
        embedded = EmbeddedPostgres(settings.data_dir)
    if stopper is not None:
        stopper.at_forced_exit(embedded.stop)
    try:
        url = embedded.uri()
        yield replace(settings, database_url=url), url
    finally:
        with serving.signals_ignored():
            embedded.stop()


# Whether the database has DataWorkflows' migrations table, from the catalog: a login that acts
# through dataworkflows_app (SET ROLE, even NOINHERIT) may have no right on schema dw itself, and
# to_regclass('dw.…') needs one (a review: such a worker, API and prune failed with a traceback).
_SCHEMA_MIGRATED = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'dw' AND c.relname = 'schema_migrations')"
)


def _require_schema(url: str, settings: Settings, *, unreachable_ok: bool) -> None:
    """Refuses (exit 2) a database that has no DataWorkflows schema, before the command starts: a
    worker or an API on an unmigrated database ran, logging a traceback for each loop's pass and
    never saying what was wrong, and `examples load` or `prune` printed PostgreSQL's traceback (a
    review). One attempt to connect: a server that cannot be reached is DatabaseUnavailable (exit
    3) at once, or, with unreachable_ok, left to the command (an API starts while the database is
    down, and answers 503 until it is back). A server that answered and refused the login (no such
    database or user, a wrong password) is a ConfigurationError (exit 2) either way, and so is a
    DW_DB_ROLE the login cannot act as: a worker retried such a login for 30 s, a warning every two
    seconds, then said "is it running", and an API started and answered 503 to everything (a review)."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, **_probe_settings(url, settings)) as conn:
            row = conn.execute(_SCHEMA_MIGRATED).fetchone()
            role = _role_problem(conn, settings.database_role) if row and row[0] else None
            behind = _migrations_behind(conn, settings.database_role) if row and row[0] and role is None else None
    except psycopg.OperationalError as exc:
        reason = _first_line(exc)
        if login_refused(reason):
            raise ConfigurationError(f"the database refused the login ({reason}): check DATABASE_URL") from None
        if unreachable_ok:
            return
        raise DatabaseUnavailable(f"the database cannot be reached ({reason})") from None
    except psycopg.Error:
        return  # the probe could not tell: the command's own connections say what is wrong
    if not (row and row[0]):
        raise DataWorkflowsError(
            "the database has no DataWorkflows schema (it was never migrated): run `dataworkflows migrate` "
            "first (`dataworkflows up` migrates its embedded database itself)"
        )
    if role is not None:
        raise ConfigurationError(role)
    if behind is not None:
        raise DataWorkflowsError(behind)


def _migrations_behind(conn: Any, role: str | None) -> str | None:
    """Says so when the database lacks migrations this release has (a migrate that stopped half way, a
    database still at the previous release), or None (up to date, newer, or not readable: the command's
    own connections say what is wrong). A review: such a database passed the probe, and the API
    answered 200 to /health/ready and 500 to everything else, a worker logged a missing function every
    pass. A newer database passes (a rolling upgrade runs the previous release beside the new one)."""
    from dataworkflows.sqlfiles import load_migrations

    read = _applied_versions(conn, role)
    if read is None:
        return None
    applied, queue = read
    missing = sorted(m.version for m in load_migrations() if m.version not in applied)
    # Procrastinate's pre migrations this release's Procrastinate needs (its post ones may wait for the
    # previous release's workers: `migrate --finish`), as a reviewer found a newer Procrastinate's passed.
    queue_missing = [] if queue is None else _queue_pre_migrations_missing(queue)
    lacks = []
    if missing:
        ours = sorted(v for v in applied if v.isdigit() and v != "0000")
        span = f"{missing[0]}{f' to {missing[-1]}' if len(missing) > 1 else ''}; its last is {(ours or ['none'])[-1]}"
        lacks.append(f"{len(missing)} of this release's migrations ({span})")
    if queue_missing:
        lacks.append(f"Procrastinate's migrations {', '.join(queue_missing)}")
    return f"the database lacks {' and '.join(lacks)}: run `dataworkflows migrate` first" if lacks else None


def _applied_versions(conn: Any, role: str | None) -> tuple[set[str], Any] | None:
    """The versions dw.schema_migrations records and Procrastinate's state in it, read as `role` (as the
    pools would); None when they cannot be read."""
    import psycopg
    import psycopg.sql

    from dataworkflows import procrastinate_schema

    try:
        if role is not None:
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        rows = conn.execute("SELECT version FROM dw.schema_migrations").fetchall()
        queue = procrastinate_schema.read_state(conn)
    except BaseException as exc:
        if role is not None:
            _reset_role_after_failure(conn)
        if isinstance(exc, (psycopg.Error, ValueError)):
            return None  # unreadable (a row edited by hand): migrate says what it makes of it
        raise
    if role is not None:
        conn.execute("RESET ROLE")
    return {str(version) for (version,) in rows}, queue


def _reset_role_after_failure(conn: Any) -> None:
    """RESET ROLE after a probe that acted as DW_DB_ROLE failed, never said over what stopped it (as
    migrate's unlock, migrations._let_go_after_failure). A session that cannot take it is closed
    instead (a closed session acts as nobody): one busy with a statement in flight (Ctrl-C, or a stop
    signal `up` turns into one, while the probe waited for its answer), lost, or in a failed
    transaction. Until this release the probes' `finally` ran RESET ROLE on such a session, and its
    error ("another command is already in progress", "the connection is closed") took the place of
    the interruption, which the start-up probe then read as a database it cannot reach: `api` and
    `worker` went on starting after Ctrl-C, `up` and `examples load` exited 3, not 130."""
    import psycopg

    if conn.closed:
        return
    if conn.info.transaction_status not in (psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS):
        conn.close()
        return
    try:
        conn.execute("RESET ROLE")
    except psycopg.Error:
        conn.close()


def _queue_pre_migrations_missing(queue: Any) -> list[str]:
    from dataworkflows import procrastinate_schema as schema

    due = schema.pending(queue, schema.load_queue_migrations(), schema.installed_version())
    return [m.stem for m in due if not m.post]


def _first_line(exc: Exception) -> str:
    """psycopg's first line about a failed connection, without a host name that holds an "@": libpq
    reads an "@" that is not percent-encoded in a URL's password as the end of it, and names the rest
    as the host it could not resolve (a review: "failed to resolve host 'ss-secret@127.0.0.1'")."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _HOST_WITH_AT.sub("'<not shown: it holds an @; write an @ in a password as %40>'", line)


_HOST_WITH_AT = re.compile(r"'[^'\s]*@[^'\s]*'|\"[^\"\s]*@[^\"\s]*\"")


# PostgreSQL's refusals of a login that stay until someone changes the configuration: no such
# database or role, a failed password or other authentication, no pg_hba.conf entry, a role that may
# not log in, no CONNECT right. Only these, in English: every other refusal (the server starting, in
# recovery, out of connection slots, a pooler's own, any text in another language) may pass by
# itself, and is waited for as before. libpq gives connection failures no SQLSTATE, hence the text
# (a review: the other way round, a German "too many connections" or a pooler's "no more
# connections allowed" stopped a worker that should have waited).
_LASTING_REFUSALS = (
    "does not exist",
    "password authentication failed",
    "authentication failed for user",
    "no pg_hba.conf entry",
    "is not permitted to log in",
    "permission denied for database",
)


def _probe_settings(url: str, settings: Settings) -> dict[str, Any]:
    """The connect arguments of the CLI's one-attempt probes: DW_DB_TIMEOUT_SECONDS to connect (whole
    seconds, libpq's), and libpq's TCP settings (dataworkflows.tcp_liveness)."""
    from dataworkflows.tcp_liveness import tcp_liveness

    return {"connect_timeout": max(1, int(settings.db_timeout_seconds)), **tcp_liveness(url)}


def connection_failed(what: str, exc: Exception) -> DataWorkflowsError:
    """A failed connection as the CLI says it: a login the server refuses for good (login_refused) is a
    ConfigurationError (exit 2: DATABASE_URL must change), anything else DatabaseUnavailable (exit 3:
    try again). `what`: the command's part ("cannot migrate"). Until this release migrate, prune and up
    said a refused login "cannot be reached" and exited 3, where api, worker and examples load said it
    was refused and exited 2 (a review)."""
    reason = _first_line(exc)
    if login_refused(reason):
        return ConfigurationError(f"{what}: the database refused the login ({reason}): check DATABASE_URL")
    return DatabaseUnavailable(f"{what}: the database cannot be reached ({reason})")


def login_refused(reason: str) -> bool:
    """Whether psycopg's reason for a failed connection is the server's lasting refusal of the login
    (_LASTING_REFUSALS): it answered FATAL (a server that cannot be reached, or a timeout, says no
    such thing) for one of those reasons."""
    return "FATAL:" in reason and any(lasting in reason for lasting in _LASTING_REFUSALS)


def _role_problem(conn: Any, role: str | None) -> str | None:
    """What keeps the login from acting as `role` (DW_DB_ROLE), or None: the probe does what each pooled
    connection does (SET ROLE), then undoes it. Asked of the catalog instead, the question came out
    wrong both ways (a review): membership of current_user, not of the session's user, refused a login
    whose default role differs; and PostgreSQL 16's SET option on a grant went unseen."""
    import psycopg
    import psycopg.sql

    if role is None:
        return None
    try:
        conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
    except psycopg.errors.InvalidParameterValue:
        return (
            f"DW_DB_ROLE names the role {role!r}, which does not exist in this database server: leave DW_DB_ROLE "
            "unset (dataworkflows_app, which `dataworkflows migrate` creates) or create the role"
        )
    except psycopg.errors.InsufficientPrivilege:
        return f"the database user may not act as {role!r} (DW_DB_ROLE): GRANT {role} TO <the user in DATABASE_URL>"
    try:
        # The application's rights are dataworkflows_app's (what `migrate` grants): a role without
        # them (dw_reporting, say) started an API whose every request was a 500, and a worker that
        # logged a traceback at every pass (a review). Not asked before `migrate` made the role.
        (lacking,) = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dataworkflows_app')"
            " AND NOT pg_has_role('dataworkflows_app', 'USAGE')"
        ).fetchone()
    except BaseException:
        _reset_role_after_failure(conn)
        raise
    conn.execute("RESET ROLE")
    if lacking:
        return (
            f"the role {role!r} (DW_DB_ROLE) lacks the application's rights (dataworkflows_app's, which a"
            " role has by being it, or a member of it that inherits its rights): leave DW_DB_ROLE unset"
            f" (dataworkflows_app), or GRANT dataworkflows_app TO {role} WITH INHERIT TRUE (PostgreSQL 16"
            f" and later; before, a plain GRANT, and ALTER ROLE {role} INHERIT for a NOINHERIT role)"
        )
    return None


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    settings = _settings(args)
    try:
        # DATABASE_URL, else the embedded database under DW_DATA_DIR (as psql and prune take it).
        with _engine_database(settings) as database:
            applied = _migrate(settings, database, finish=args.finish)
            print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
            _print_held_back(database)
    except psycopg.OperationalError as exc:
        # Unreachable, refused credentials, or lost on the way (a migration that did not finish rolled
        # back): psycopg's words, not a traceback; exit 2 for a refused login, else 3.
        raise connection_failed("cannot migrate", exc) from None
    return EXIT_OK


def _migrate(settings: Settings, database: str, *, finish: bool) -> list[str]:
    from dataworkflows.migration_locks import LockPolicy
    from dataworkflows.migrations import migrate

    return migrate(database, finish=finish, locks=LockPolicy(timeout_seconds=settings.migrate_lock_timeout_seconds))


def _print_held_back(database: str) -> None:
    """Procrastinate's post migrations that wait for `migrate --finish`."""
    from dataworkflows.migrations import held_back

    held = held_back(database)
    if held:
        print(
            f"Procrastinate post migrations held back while workers of the previous release may run: "
            f"{', '.join(held)} (`dataworkflows migrate --finish` applies them once every process runs this release)"
        )


def cmd_api(args: argparse.Namespace) -> int:
    import asyncio

    from dataworkflows import serving

    settings = _serving_settings(args)
    _require_database(settings)
    if settings.database_url:
        _require_schema(settings.database_url, settings, unreachable_ok=True)
    # The port first: a busy one is reported before anything starts (the embedded database too).
    sockets = serving.bind(settings.api_host, settings.api_port)
    stopper = serving.Stopper(settings.shutdown_grace_seconds)
    try:
        with _database_settings(settings, stopper) as (served, url):
            if not settings.database_url:
                _require_schema(url, served, unreachable_ok=True)
            code = asyncio.run(_api(served, sockets, stopper))
    finally:
        with serving.signals_ignored():
            serving.close(sockets)
    # A stop signal as the event loop closed is a forced stop, as under `up` (Stopper.hand_over).
    return stopper.exit_code(code)


async def _api(settings: Settings, sockets: list[socket.socket], stopper: Stopper) -> int:
    stopper.install()
    try:
        return await _serve_api(settings, sockets, stopper)
    finally:
        stopper.hand_over()


async def _serve_api(settings: Settings, sockets: list[socket.socket], stopper: Stopper) -> int:
    import structlog

    from dataworkflows import serving
    from dataworkflows.api.app import create_app, end_live_streams

    app = create_app(settings)
    # The one line that says where it serves (`up` prints its banner instead).
    structlog.get_logger("dataworkflows.api").info(
        "api listening",
        url=http_url(settings.api_host, settings.api_port),
        version=__version__,
        auth=settings.auth_mode,
        access_log=settings.api_access_log,
    )
    return await stopper.serve(serving.ApiServer(app, settings), sockets, on_stop=lambda: end_live_streams(app))


def cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    import psycopg_pool

    from dataworkflows.workers.app import run_worker

    settings = _settings(args)
    with _database_settings(settings) as (served, url):
        _require_schema(url, served, unreachable_ok=True)
        try:
            asyncio.run(run_worker(served, concurrency=args.concurrency))
        except psycopg_pool.PoolTimeout:
            # The worker waits for a database that is starting (30 s), then ends: said, not a
            # traceback, with the reason the last attempt met.
            question = (
                "is it running, and is DATABASE_URL right?"
                if settings.database_url
                else f"is the embedded database under {os.path.abspath(settings.data_dir)} still running?"
            )
            raise DatabaseUnavailable(
                f"the worker could not connect to the database within 30 s ({_connect_reason(served)}): {question}"
            ) from None
    return EXIT_OK


def _connect_reason(settings: Settings) -> str:
    """Why a connection to DATABASE_URL fails now (one attempt, as the pool makes them: the login, then
    SET ROLE to DW_DB_ROLE), in psycopg's first line or the role's problem."""
    import psycopg

    assert settings.database_url is not None
    try:
        with psycopg.connect(
            settings.database_url, autocommit=True, **_probe_settings(settings.database_url, settings)
        ) as conn:
            return _role_problem(conn, settings.database_role) or "it answers now"
    except psycopg.Error as exc:
        return _first_line(exc)


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import replace

    from dataworkflows import serving

    settings = _serving_settings(args)
    # The port first: a busy one is reported before PostgreSQL starts (and nothing is left behind).
    sockets = serving.bind(settings.api_host, settings.api_port)
    # Until the event loop takes them over, SIGTERM and SIGHUP interrupt like Ctrl-C: the
    # `finally` below stops the embedded PostgreSQL whatever ends the command.
    serving.interrupt_on_stop_signals()
    stopper = serving.Stopper(settings.shutdown_grace_seconds)
    embedded = None
    try:
        if not settings.database_url:
            from dataworkflows.embedded import EmbeddedPostgres

            print(f"starting the embedded PostgreSQL under {os.path.abspath(settings.data_dir)} ...", flush=True)
            # Stop signals are held while it starts (an interruption between the server's start
            # and this assignment would leave a server nobody stops), delivered once it is set.
            with serving.signals_held():
                embedded = EmbeddedPostgres(settings.data_dir)
            stopper.at_forced_exit(embedded.stop)
            for note in embedded.notes:
                print(note, flush=True)
            # The serving settings with the embedded server's URL: rebuilt from the environment,
            # they lost what _serving_settings added (loose mode's loopback-only host names, so
            # that `up` answered a page whose name was rebound to 127.0.0.1).
            settings = replace(settings, database_url=embedded.uri())
        if not settings.credentials_key:
            settings = replace(settings, credentials_key=_local_credentials_key(settings.data_dir))
        assert settings.database_url is not None
        _migrate_for_up(settings, settings.database_url, embedded=embedded is not None)
        # A DW_DB_ROLE the login cannot act as, or without the application's rights, as `api` and
        # `worker` say it (a review: `up` ended in a traceback, exit 1).
        _require_schema(settings.database_url, settings, unreachable_ok=False)
        code = asyncio.run(_up(settings, load=not args.no_examples, stopper=stopper, sockets=sockets))
    finally:
        # One more signal does not cut stopping the server short (pg_ctl ignores them too).
        with serving.signals_ignored():
            stopper.disarm()
            serving.close(sockets)
            if embedded is not None:
                embedded.stop()
    return stopper.exit_code(code)


def _migrate_for_up(settings: Settings, database: str, *, embedded: bool) -> None:
    """The embedded server is `up`'s own: no process of an older release can use it, so
    Procrastinate's post migrations go at once. On DATABASE_URL, `up` migrates like `migrate` (post
    migrations held back for the previous release's workers, and listed); a database a newer
    release migrated is left alone, and this release runs on it (as in a rolling upgrade)."""
    import psycopg

    from dataworkflows.errors import DatabaseNewerError

    try:
        _migrate(settings, database, finish=embedded)
        if not embedded:
            _print_held_back(database)
    except DatabaseNewerError as exc:
        print(f"warning: {exc.message}", file=sys.stderr)
    except psycopg.OperationalError as exc:
        # DATABASE_URL's server unreachable or refusing the login: said as `migrate` says it (it was a
        # traceback and exit 1, a review).
        raise connection_failed("cannot start", exc) from None


def _local_credentials_key(data_dir: str) -> str:
    """`up` without DW_CREDENTIALS_KEY: a key kept in the data directory (mode 0600), made on the
    first start, so that connections and signed webhooks work with no setup. Production sets
    DW_CREDENTIALS_KEY (the key must not live beside the data it protects)."""
    from dataworkflows.credentials import Cipher

    path = Path(data_dir) / "credentials.key"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(Cipher.generate_key())
            print(f"made a credentials key for this data directory: {path} (set DW_CREDENTIALS_KEY in production)")
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        # A directory not writable, the file a directory or unreadable (a review: a traceback, exit 1).
        why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise ConfigurationError(
            f"the credentials key file {path} cannot be made or read ({why}): set DW_CREDENTIALS_KEY, or fix"
            " the data directory (DW_DATA_DIR)"
        ) from None
    try:
        Cipher.from_setting(key)
    except ConfigurationError as exc:
        # An empty file turned stored connections and signed webhooks off without a word, and a bad one
        # was blamed on DW_CREDENTIALS_KEY, which was not set (a review).
        reason = str(exc).removeprefix("DW_CREDENTIALS_KEY ")
        raise ConfigurationError(
            f"the credentials key file {path} holds no usable key (it {reason}): remove it to have a new one made"
            " (connections stored with the old key cannot be read with a new one), or set DW_CREDENTIALS_KEY"
        ) from None
    return key


async def _load_examples(settings: Settings) -> None:
    from dataworkflows.actions import default_registry
    from dataworkflows.conditions import ConditionPool
    from dataworkflows.db import Database, make_pool
    from dataworkflows.examples import load_all
    from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope

    assert settings.database_url is not None
    pool = make_pool(
        settings.database_url,
        max_size=2,
        name="examples",
        role=settings.database_role,
        default_workflow_timeout=settings.default_workflow_timeout_seconds,
    )
    await pool.open(wait=True)
    conditions = ConditionPool(size=1)
    try:
        with tenant_scope(DEFAULT_TENANT):
            # All of them or none (one transaction).
            loaded = await load_all(Database(pool), default_registry(), conditions)
            # Those an operator archived or disabled stay so, and are said so (a review: they were
            # listed as Active).
            workflows = [await Database(pool).workflows.get(workflow_id) for workflow_id in loaded.workflows]
    finally:
        await conditions.close()
        await pool.close()
    active = [w.id for w in workflows if w is not None and w.status == "Active" and w.is_enabled]
    other = [
        f"{w.id} ({w.status}{'' if w.is_enabled else ', disabled'})"
        for w in workflows
        if w is not None and w.id not in active
    ]
    print(f"example workflows (Active): {', '.join(active) or 'none'}")
    if other:
        print(f"example workflows left as an operator set them: {', '.join(other)}")
    print(f"example workflow templates: {', '.join(loaded.templates)}")
    print(f"example document template sets: {', '.join(loaded.template_sets)}")


async def _up(settings: Settings, *, load: bool, stopper: Stopper, sockets: list[socket.socket]) -> int:
    # From here the event loop has the stop signals: the first stops, a second Ctrl-C forces; the loop
    # hands them over before it closes (Stopper.hand_over).
    stopper.install()
    try:
        return await _serve_up(settings, load=load, stopper=stopper, sockets=sockets)
    finally:
        stopper.hand_over()


async def _serve_up(settings: Settings, *, load: bool, stopper: Stopper, sockets: list[socket.socket]) -> int:
    import asyncio

    from dataworkflows import serving
    from dataworkflows.api.app import create_app, end_live_streams
    from dataworkflows.workers.app import run_worker

    if load:
        await _load_examples(settings)
    if stopper.stop.is_set():
        return EXIT_OK
    app = create_app(settings)
    base = http_url(settings.api_host, settings.api_port)
    print(
        f"\nDataWorkflows {__version__} is up.\n"
        f"  API:       {base}  (OpenAPI: {base}/schema)\n"
        f"  Database:  {shown_conninfo(settings.database_url or '')}\n"
        f"{_examples_hint(loaded=load)}"
        f"{_try_hint(base, strict=settings.auth_mode == 'strict')}\n"
        f"{_cli_hint(settings.api_host, settings.api_port)}\n"
        "  Ctrl-C stops the API and the worker (twice: at once); running executions are handed back and resume on "
        "the next start.\n",
        flush=True,
    )
    worker = asyncio.create_task(run_worker(settings, install_signal_handlers=False, stop=stopper.stop))
    return await stopper.serve(
        serving.ApiServer(app, settings), sockets, on_stop=lambda: end_live_streams(app), others=[worker]
    )


DEFAULT_API_URL = "http://127.0.0.1:5131"


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^@]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_KEY_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def shown_conninfo(conninfo: str) -> str:
    """A connection string as printed: its password as ***. `up` printed DATABASE_URL whole in its
    banner, which ends up in container logs and journald (ops review)."""
    if "://" in conninfo:
        return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", conninfo))
    return _KEY_PASSWORD.sub(r"\1***", conninfo)


def _examples_hint(*, loaded: bool) -> str:
    """A line before the hints that run simple-echo when this start loaded no examples: on a new
    database there is none, and the request to try answered 404 (a review)."""
    if loaded:
        return ""
    return (
        "  Examples:  not loaded by this start (--no-examples); `dataworkflows examples load` loads simple-echo and "
        "the others the lines below run\n"
    )


def _try_hint(base: str, *, strict: bool) -> str:
    """A first request to try; in strict mode with the token it needs (it answered 401 as printed),
    of the tenant the examples are loaded into."""
    curl = (
        f"curl -s -X POST {base}/api/v1/workflows/simple-echo/execute -H 'Content-Type: application/json' "
        """-d '{"trigger": {"userId": "me"}}'"""
    )
    if not strict:
        return f"  Try:       {curl}"
    return (
        "  Token:     export DW_API_TOKEN=$(dataworkflows token --sub you --role operator)   (strict mode: every "
        "/api/v1 call needs one; the examples are the tenant default's)\n"
        f'  Try:       {curl} -H "Authorization: Bearer $DW_API_TOKEN"'
    )


def http_url(host: str, port: int) -> str:
    """The URL of an API listening on host:port, an IPv6 address in brackets (a review: `up --host ::1`
    printed http://::1:5131, which no client reads)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _cli_hint(host: str, port: int) -> str:
    """How to point the CLI (in another terminal) at this API."""
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - a wildcard bind answers on loopback too
        host = "127.0.0.1"
    url = http_url(host, port)
    if url == DEFAULT_API_URL:
        return f"  CLI:       dataworkflows run simple-echo --wait   (the CLI's default API is {url})"
    return (
        f"  CLI:       export DW_API_URL={url}   (the CLI talks to $DW_API_URL, or --api-url URL; "
        f"default {DEFAULT_API_URL})"
    )


def cmd_psql(args: argparse.Namespace) -> int:
    """psql on the engine's database: DATABASE_URL, or the embedded server under DW_DATA_DIR; the
    session sees every tenant the login may (dw.tenant_id '*')."""
    import shutil
    import subprocess

    settings = _settings(args)
    binary = shutil.which("psql")
    if binary is None:
        from dataworkflows.embedded import bundled_binary

        binary = bundled_binary("psql")
    env = os.environ.copy()
    options = env.get("PGOPTIONS", "")
    if "dw.tenant_id" not in options:
        # The dw.v_* views show the tenant a session sets, and none without one: every tenant the
        # login may see, unless PGOPTIONS or a SET chooses one (they showed nothing, without a word).
        env["PGOPTIONS"] = f"{options} -c dw.tenant_id=*".strip()
    with _engine_database(settings) as url:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        # The password through the environment, not the command line, which every local user reads
        # in the process list (a review: `ps` showed DATABASE_URL whole).
        params = conninfo_to_dict(url)
        password = params.pop("password", None)
        if password is not None:
            env["PGPASSWORD"] = str(password)
        # libpq reads PGOPTIONS only when the URL sets no options of its own (a review: a URL with
        # options=-c statement_timeout=… showed every view empty): the tenant then goes with them.
        url_options = str(params.get("options") or "")
        if url_options and "dw.tenant_id" not in url_options:
            # PGOPTIONS whole (a tenant it chose, or ours), after the URL's own (a second review: a tenant
            # chosen in PGOPTIONS was lost the same way).
            params["options"] = f"{url_options} {env['PGOPTIONS']}"
        from dataworkflows.tcp_liveness import tcp_liveness

        # The TCP settings every other connection of ours gets (a silent server given up in about 20 s),
        # for psql's libpq: tcp_user_timeout only from PostgreSQL 12's.
        liveness = tcp_liveness(url)
        if _client_major(binary) < 12:
            liveness.pop("tcp_user_timeout", None)
        return subprocess.call([binary, make_conninfo("", **params, **liveness), *args.psql_args], env=env)


def _client_major(binary: str) -> int:
    """A PostgreSQL client program's major version (`psql --version`: "psql (PostgreSQL) 15.8"), 0 when it
    does not say."""
    import subprocess

    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.search(r"\b(\d+)(?:\.\d+)?", said)
    return int(found.group(1)) if found else 0


def _api_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "api_url", None) or os.environ.get("DW_API_URL") or DEFAULT_API_URL).rstrip("/")


def _shown_api_url(args: argparse.Namespace) -> str:
    """The API's URL as a message shows it: a password in it as *** (a review: every "cannot reach the
    API" printed it)."""
    url = _api_url(args)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url if "@" not in url else "<the API URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _client(args: argparse.Namespace) -> httpx.Client:
    """The API client. Loose mode: it names the caller (X-Principal-Id) from --principal, else
    $DW_PRINCIPAL_ID, and its tenant from $DW_TENANT_ID. Strict mode: it sends $DW_API_TOKEN as a
    bearer token (`dataworkflows token` makes a local one)."""
    from dataworkflows.principal_ids import principal_id_problem
    from dataworkflows.tenancy import is_valid_tenant

    headers: dict[str, str | bytes] = {}
    principal = getattr(args, "principal", None) or os.environ.get("DW_PRINCIPAL_ID")
    if principal:
        source = "--principal" if getattr(args, "principal", None) else "DW_PRINCIPAL_ID"
        # The API's rule (a review: a line break was said to be "cannot reach the API"; a second, that
        # the CLI refused spaces and joiners the API takes), and UTF-8 (bytes that are not: a traceback).
        problem = principal_id_problem(principal)
        try:
            encoded = principal.encode()
        except UnicodeEncodeError:
            problem = "must be UTF-8 text"
        if problem is not None:
            raise ConfigurationError(f"{source} {problem}: give the principal's id as it is")
        # As UTF-8 bytes: httpx sends a str header only when it is ASCII (José, 田中 are principals too).
        headers["X-Principal-Id"] = encoded
    tenant = os.environ.get("DW_TENANT_ID")
    if tenant:
        if not is_valid_tenant(tenant.strip()):
            # As the API would refuse it (a review: a non-ASCII one was a traceback).
            raise ConfigurationError(
                "DW_TENANT_ID must be 1-100 letters, digits, '_', '.' or '-', the first a letter or digit"
            )
        headers["X-Tenant-Id"] = tenant.strip()
    token = (os.environ.get("DW_API_TOKEN") or "").strip()
    if token:
        if not (token.isascii() and token.isprintable()):
            raise ConfigurationError("DW_API_TOKEN is not a token (a JWT is ASCII): `dataworkflows token` makes one")
        headers["Authorization"] = f"Bearer {token}"
    http = _httpx()
    url = _api_url(args)
    try:
        urlsplit(url).port  # noqa: B018 - raises for a port past 65535, which httpx sent on as "refused"
    except ValueError as exc:
        raise http.InvalidURL(str(exc)) from None
    verify: Any = True
    if not url.lower().startswith("https:"):
        # Plain HTTP uses no TLS: a context without the CA bundle (loading it costs ~0.1 s a call)
        # that still verifies, so that nothing could ever go unverified through it.
        import ssl

        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client: httpx.Client = http.Client(
        base_url=url, timeout=30.0, headers=headers, verify=verify, event_hooks={"response": [_answered_by_the_api]}
    )
    return client


# What the API answers with (JSON; problem details; an execution's event stream).
_API_CONTENT_TYPES = ("application/json", "application/problem+json", "text/event-stream")


class NotTheApi(Exception):
    """The server at DW_API_URL answered, but not as the DataWorkflows API does."""


def _answered_by_the_api(response: httpx.Response) -> None:
    """Every answer of the API is JSON (or its event stream): another server there (a web server, a
    proxy's error page) gave tracebacks from deep inside the commands that read it."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code != 204 and kind not in _API_CONTENT_TYPES:
        raise NotTheApi(f"HTTP {response.status_code}, {kind or 'no content type'}")


def _httpx() -> Any:
    """httpx, without its own command-line client: `import httpx` otherwise imports click, rich and
    pygments for `httpx.main` (a third of this command's start-up), which this process never uses."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    return httpx


def cmd_token(args: argparse.Namespace) -> int:
    """Prints an HS256 token signed with DW_JWT_SECRET, for strict mode on a laptop or in tests."""
    from dataworkflows.config import Settings
    from dataworkflows.tokens import mint_token

    print(
        mint_token(
            Settings.from_env(),
            subject=args.sub,
            tenant=args.tenant,
            roles=args.role,
            ttl_seconds=args.ttl,
            issuer=args.issuer,
            audience=args.audience,
        )
    )
    return EXIT_OK


# api.schemas.MAX_PREVIOUS_SECRET_SECONDS (a test keeps them equal): the longest --keep-previous.
MAX_PREVIOUS_SECRET_SECONDS = 7 * 86_400
# dataworkflows.rate_limits' bounds of a workflow's limits (a test keeps them equal).
MAX_CONCURRENT_EXECUTIONS = 2**31 - 1
MAX_RATE_PER_MINUTE = 60_000


def _bounded_int(least: int, most: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse type: an integer from `least` to `most` (the API's 400 named its body's field,
    not the option); `meaning` follows the range in the refusal."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not least <= number <= most:
            raise argparse.ArgumentTypeError(f"{number}: give {least} to {most:,}{meaning}")
        return number

    return parse


# dataworkflows.tokens.ROLES (a test keeps them equal): importing tokens (jwt, cryptography) would
# slow every command down.
TOKEN_ROLES = ("viewer", "operator", "author", "admin")


def _add_token(sub: Any) -> None:
    token = sub.add_parser(
        "token", help="print a local HS256 bearer token signed with DW_JWT_SECRET (strict auth mode)"
    )
    token.add_argument("--sub", required=True, help="the principal (the token's sub)")
    token.add_argument("--tenant", default="default", help="the tenant (default: default)")
    token.add_argument(
        "--role", action="append", required=True, choices=TOKEN_ROLES, help="a role to grant; repeat for several"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.add_argument("--issuer", help="iss (default $DW_JWT_ISSUER; none when unset)")
    token.add_argument("--audience", help="aud (default $DW_JWT_AUDIENCE; none when unset)")
    token.set_defaults(func=cmd_token)


def _refused(response: httpx.Response) -> int:
    """Prints the API's problem; the exit code says whose fault it was (4xx: the request's)."""
    print(f"error: {_problem_text(response)}", file=sys.stderr)
    return EXIT_USAGE if response.status_code < 500 else EXIT_UNAVAILABLE


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {response.text[:500]}"
    text = f"HTTP {response.status_code}: {body.get('detail') or body.get('title')}" + _problem_hint(response, body)
    errors = body.get("errors")
    for problem in errors if isinstance(errors, list) else []:
        if isinstance(problem, dict):
            text += f"\n  {problem.get('pointer') or '/'}: {problem.get('detail')}"
    return text


def _problem_hint(response: httpx.Response, body: dict[str, Any]) -> str:
    """What the CLI's user can do about a problem the API words for an HTTP client, if anything."""
    text = ""
    if response.status_code == 401 and "requires a principal" in str(body.get("detail")):
        # DW_REQUIRE_PRINCIPAL: the API names its header, which a CLI user does not set by hand (a review).
        text += " (the CLI sends it from DW_PRINCIPAL_ID, or --principal where a command takes one)"
    request = _request_of(response)
    if (
        response.status_code == 401
        and body.get("code") == "invalid_token"
        and request is not None
        and "authorization" not in request.headers
    ):
        # Strict mode, and no token sent: the API names its header, the CLI's user sets a variable.
        text += (
            " (the CLI sends DW_API_TOKEN as its bearer token: set it, e.g. `export DW_API_TOKEN=$(dataworkflows "
            "token --sub you --role operator)` with the server's DW_JWT_SECRET)"
        )
    if (
        response.status_code == 404
        and body.get("code") == "not_found"
        and body.get("detail") == "Not Found"
        and request is not None
        and _api_url_has_a_path(request.url.raw_path.decode("ascii", "replace"))
    ):
        # The router's own 404 (the API's are "workflow 'x' not found" and the like) for a path that
        # does not begin with /api/v1, or begins with it twice: DW_API_URL carries a path of its own
        # (a review: ".../api", and ".../api/v1", said only "HTTP 404"). An id with a "/" in it
        # meets the router's 404 too, under /api/v1: not this.
        text += (
            f" (the API has no route {request.method} {request.url.path}: DW_API_URL or --api-url is the URL"
            " the API serves /api/v1 under, such as http://127.0.0.1:5131)"
        )
    return text


def _api_url_has_a_path(path: str) -> bool:
    """Whether a request's path (as sent: an id's "/" is %2F) says that DW_API_URL carries a path."""
    return not path.startswith("/api/v1/") or path.startswith("/api/v1/api/v1/")


def _request_of(response: httpx.Response) -> httpx.Request | None:
    """The request an answer is to (None for one made without: a test's)."""
    try:
        return response.request
    except RuntimeError:
        return None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _path(value: str) -> str:
    """An id as one URL path segment (so 'a/b' or '../x' cannot address another resource). No id is
    empty, `.` or `..`, and those three would address another resource still: httpx resolves dot
    segments (`status .` read the executions list, `triggers delete ..` sent DELETE /api/v1)."""
    if value in ("", ".", ".."):
        from dataworkflows.errors import InvalidInput

        raise InvalidInput(f"{value!r} is not an id")
    return quote(value, safe="")


def _request_id(value: str) -> str:
    """--request-id: refused when empty (a script whose $ID came out empty started a new run each
    time, its idempotency gone without a word) or longer than the API takes."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "an empty request id would start a new run each time: give 1 to 200 characters"
        )
    if len(value) > 200:
        raise argparse.ArgumentTypeError(f"{len(value)} characters: give 1 to 200")
    return value


def _filter_value(value: str) -> str:
    """A filter's value (`--workflow W`, `--type T`): refused when empty or blank. The commands leave an
    empty one out of the request, and without it the request takes every one: `dead-letters
    redrive-all --workflow "$WF"` with $WF empty redrove the open letters of every workflow, and
    `signal-all go --workflow "$WF"` signalled every workflow's waiting runs (a review), where the
    API, given the empty id, matches none."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty: give a value, or leave the option out to take every one")
    return value


def _load_json(text: str) -> Any:
    """json.loads without NaN and Infinity; ValueError for what cannot be read, nesting too deep for
    Python's recursion included (a RecursionError was a traceback)."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def _json_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object from an option's value (ValueError with the message to print)."""
    try:
        value = _load_json(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object")
    _check_sendable(value, option)
    return value


def _check_sendable(value: Any, what: str) -> None:
    """ValueError unless a request body can carry the value read from `what`: json.loads reads a
    number past a float's range (1e999) as infinity, and keeps a lone surrogate (\ud800); both
    were tracebacks when the body was written."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds a lone surrogate, which is not text") from None
    except ValueError:
        raise ValueError(f"{what} holds a number too large for JSON") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None


def _sample_trigger(client: httpx.Client, workflow: str) -> dict[str, Any] | None:
    """The workflow's sample trigger: its definition's metadata.sampleTrigger (every example has
    one), or None."""
    response = client.get(f"/api/v1/workflows/{_path(workflow)}")
    if response.status_code == 404:
        return None  # the execute request says so
    try:
        definition = response.json().get("definition") if response.status_code == 200 else None
    except (ValueError, AttributeError):
        definition = None
    if not isinstance(definition, dict):
        # Not readable (a token that may execute but not read, a server error, a proxy's page):
        # say so, rather than send an empty trigger without a word.
        print(
            f"note: {workflow}'s sample trigger could not be read (HTTP {response.status_code}); "
            "sending an empty trigger",
            file=sys.stderr,
        )
        return None
    metadata = definition.get("metadata") or {}
    sample = metadata.get("sampleTrigger") if isinstance(metadata, dict) else None
    return sample if isinstance(sample, dict) else None


def cmd_run(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        print("error: --timeout is how long --wait waits: give --wait too", file=sys.stderr)
        return EXIT_USAGE
    try:
        trigger = _json_object(args.trigger, "--trigger") if args.trigger is not None else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with _client(args) as client:
        if trigger is None:
            trigger = _sample_trigger(client, args.workflow)
            if trigger is None:
                trigger = {}
            else:
                shown = json.dumps(trigger, separators=(",", ":"))
                print(
                    f"no --trigger given: using {args.workflow}'s sample trigger (metadata.sampleTrigger): "
                    f"{shown if len(shown) <= 200 else shown[:197] + '...'}",
                    file=sys.stderr,
                    flush=True,
                )
        body: dict[str, Any] = {"trigger": trigger}
        if args.request_id:
            body["requestId"] = args.request_id
        if args.priority is not None:
            body["priority"] = args.priority
        response = client.post(f"/api/v1/workflows/{_path(args.workflow)}/execute", json=body)
        if response.status_code != 202:
            return _refused(response)
        started = response.json()
        execution_id = started["executionId"]
        # A request id used before answers that run, started then: said, or it read as a new start.
        again = "" if started.get("created", True) else " (started before with this request id; not again)"
        print(
            f"execution {execution_id} ({args.workflow} v{started['workflowVersion']}) {started['status']}{again}",
            flush=True,
        )
        if not args.wait:
            return EXIT_OK
        timeout = DEFAULT_WAIT_SECONDS if args.timeout is None else args.timeout
        return follow(client, execution_id, Printer(), timeout=timeout)


# How long `run --wait` and `dead-letters redrive --wait` wait by default.
DEFAULT_WAIT_SECONDS = 3600.0


def cmd_logs(args: argparse.Namespace) -> int:
    """An execution's log; --follow: live until it ends (the exit code then tells how it ended)."""
    if args.timeout is not None and not args.follow:
        print("error: --timeout is how long --follow follows: give --follow too", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(everything=True)
    with _client(args) as client:
        execution_id = _path(args.execution_id)
        if not args.follow:
            return print_log(client, execution_id, printer)
        return follow(client, execution_id, printer, timeout=args.timeout)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.get(f"/api/v1/executions/{_path(args.execution_id)}")
        if response.status_code != 200:
            return _refused(response)
        execution = response.json()
    if args.json:
        print(json.dumps(execution, indent=2))
        return EXIT_OK
    print(f"execution {execution['id']}")
    print(
        f"  workflow  {execution['workflowId']} v{execution['workflowVersion']} ({execution['workflowChecksum'][:19]})"
    )
    print(f"  status    {execution['status']}")
    if execution.get("priority"):
        print(f"  priority  {execution['priority']}")
    print(f"  started   {execution['startTime'] or '-'}")
    print(f"  ended     {execution['endTime'] or '-'}")
    if execution.get("error"):
        print(f"  error     {execution['error'].get('message')}")
    if execution.get("cancelRequestedAt") and execution["status"] not in FINAL:
        print(f"  cancel    requested {execution['cancelRequestedAt']} by {execution.get('cancelRequestedBy') or '-'}")
    if execution.get("suspendedAt"):
        print(f"  suspended {execution['suspendedAt']}")
    for node in execution["nodes"]:
        print(f"  {node['nodeId']:<24} {node['status']:<10} attempts={node['attempts']}")
    _print_compensation(execution.get("compensation"))
    return EXIT_OK


def _print_compensation(compensation: Any) -> None:
    """A run's compensation steps, in the order they run (README "Compensation")."""
    if not isinstance(compensation, dict):
        return
    print(f"  compensation {compensation['status']}")
    for step in compensation["steps"]:
        error = step.get("error") or {}
        why = f" {error.get('code')}: {error.get('message')}" if error else ""
        child = f" child={step['childExecutionId']}" if step.get("childExecutionId") else ""
        print(
            f"    {step['position']}. undo {step['nodeId']:<17} {step['status']:<10} "
            f"attempts={step['attempts']}{child}{why}"
        )


def cmd_workflows_apply(args: argparse.Namespace) -> int:
    """Create the workflow or add a version (the same definition is not duplicated); --publish too."""
    try:
        raw = _load_json(Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError:
        print(f"error: {args.file} is not UTF-8 text", file=sys.stderr)
        return EXIT_USAGE
    except (json.JSONDecodeError, ValueError) as exc:
        print(f"error: {args.file} is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_sendable(raw, args.file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        print(f"error: {args.file} must be a workflow definition object with an id", file=sys.stderr)
        return EXIT_USAGE
    workflow_id = raw["id"]
    with _client(args) as client:
        existing = client.get(f"/api/v1/workflows/{_path(workflow_id)}")
        if existing.status_code == 404:
            response = client.post("/api/v1/workflows", json=raw)
            if response.status_code != 201:
                return _refused(response)
            version, created = 1, True
        elif existing.status_code == 200:
            response = client.put(f"/api/v1/workflows/{_path(workflow_id)}", json=raw)
            if response.status_code != 200:
                return _refused(response)
            version, created = response.json()["version"], response.json()["created"]
        else:
            return _refused(existing)
        print(f"{workflow_id} v{version} {'created' if created else 'unchanged (same definition)'}")
        if args.publish:
            published = client.post(f"/api/v1/workflows/{_path(workflow_id)}/publish", params={"version": version})
            if published.status_code != 200:
                return _refused(published)
            print(f"{workflow_id} v{version} published: Active")
    return EXIT_OK


def cmd_workflows_list(args: argparse.Namespace) -> int:
    rows = []
    with _client(args) as client:
        cursor = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/workflows", params=params)
            if response.status_code != 200:
                return _refused(response)
            page = response.json()
            rows.extend(page["items"])
            cursor = page["nextCursor"]
            if not cursor:
                break
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        # A header alone read as output cut short (executions list says so too).
        print("no workflows")
        return EXIT_OK
    print(f"{'ID':<28} {'STATUS':<9} {'CURRENT':>7} {'LATEST':>6}  NAME")
    for w in rows:
        current = w["currentVersion"] if w["currentVersion"] is not None else "-"
        # A disabled workflow refuses runs whatever its status: said where the status is read.
        name = w["displayName"] + ("" if w.get("isEnabled", True) else "  (disabled)")
        print(f"{w['id']:<28} {w['status']:<9} {current!s:>7} {w['latestVersion']!s:>6}  {name}")
    return EXIT_OK


def cmd_workflows_archive(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.post(f"/api/v1/workflows/{_path(args.workflow_id)}/archive")
    if response.status_code != 200:
        return _refused(response)
    print(f"{args.workflow_id} Archived: new executions are refused; running ones finish")
    return EXIT_OK


def cmd_workflows_delete(args: argparse.Namespace) -> int:
    """Deletes a workflow without runs, with its versions, plans and triggers (the API's 409 while it
    has runs says how to remove them)."""
    with _client(args) as client:
        response = client.delete(f"/api/v1/workflows/{_path(args.workflow_id)}")
    if response.status_code != 204:
        return _refused(response)
    print(
        f"{args.workflow_id} deleted, with its versions, plans and triggers; connections no longer name it"
        " in their allow-lists"
    )
    return EXIT_OK


def cmd_workflows_enabled(args: argparse.Namespace) -> int:
    """enable or disable (args.action) one workflow."""
    with _client(args) as client:
        response = client.post(f"/api/v1/workflows/{_path(args.workflow_id)}/{args.action}")
    if response.status_code != 200:
        return _refused(response)
    if args.action == "disable":
        print(f"{args.workflow_id} disabled: new executions are refused; running ones finish")
    else:
        status = response.json().get("status")
        takes = "takes new executions" if status == "Active" else f"is {status}: publish it to run it"
        print(f"{args.workflow_id} enabled: it {takes}")
    return EXIT_OK


def _limits_change(args: argparse.Namespace) -> dict[str, int | None]:
    """The PATCH body from the limits command's options (empty: only show them)."""
    change: dict[str, int | None] = {}
    for key, value, clear in (
        ("maxConcurrentExecutions", args.max_concurrent, args.clear_max_concurrent),
        ("rateLimitPerMinute", args.per_minute, args.clear_per_minute),
    ):
        if value is not None and (clear or args.clear):
            raise ValueError(f"{key}: give a value or clear it, not both")
        if value is not None:
            change[key] = value
        elif clear or args.clear:
            change[key] = None
    return change


def cmd_workflows_limits(args: argparse.Namespace) -> int:
    """Shows a workflow's limits, or sets or clears them."""
    try:
        change = _limits_change(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = f"/api/v1/workflows/{_path(args.workflow_id)}"
    with _client(args) as client:
        response = client.patch(f"{path}/limits", json=change) if change else client.get(path)
    if response.status_code != 200:
        return _refused(response)
    workflow = response.json()
    concurrent, rate = workflow.get("maxConcurrentExecutions"), workflow.get("rateLimitPerMinute")
    print(
        f"{workflow['id']}  maxConcurrentExecutions {concurrent if concurrent is not None else 'none'}"
        f"  rateLimitPerMinute {rate if rate is not None else 'none'}"
    )
    return EXIT_OK


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    """One page of dead letters; the next page's --cursor is said on stderr (it was left unsaid, so a
    list of 100 looked like all there was)."""
    params: dict[str, Any] = {"limit": args.limit}
    if not args.all:
        params["open"] = "true"
    if args.kind:
        params["kind"] = args.kind
    if args.cursor:
        params["cursor"] = args.cursor
    with _client(args) as client:
        response = client.get("/api/v1/dead-letters", params=params)
    if response.status_code != 200:
        return _refused(response)
    page = response.json()
    if args.json:
        # The page as the API answers it, as executions list --json prints it.
        print(json.dumps(page, indent=2))
        return EXIT_OK
    items = page["items"]
    if not items:
        print("no dead letters" if args.all else "no open dead letters")
        return EXIT_OK
    _print_dead_letters(items)
    if page.get("nextCursor"):
        sys.stdout.flush()
        print(f"more: add --cursor {page['nextCursor']}", file=sys.stderr)
    return EXIT_OK


def _print_dead_letters(items: list[dict[str, Any]]) -> None:
    print(f"{'ID':>6} {'KIND':<12} {'WORKFLOW':<20} {'NODE':<16} {'ATTEMPTS':>8}  {'STATE':<12} ERROR")
    for d in items:
        state = "redriven" if d["redrivenAt"] else (d.get("closeReason") or "open")
        message = ((d.get("error") or {}).get("message") or "")[:80]
        print(
            f"{d['id']:>6} {d['kind']:<12} {d['workflowId'] or '-':<20} {_letter_nodes(d):<16} "
            f"{d['attempts']:>8}  {state:<12} {message}"
        )
        # A compensation letter's failed children, one a line, whole: the message, cut at 80
        # characters, cut a child's run id in two (a review).
        for child in _failed_children(d):
            print(f"{'':>6} {_child_line(child)}")


def _letter_nodes(letter: dict[str, Any]) -> str:
    """The letter's node; a compensation_failed letter has none (it is the run's): its failed steps."""
    if letter.get("nodeId"):
        return str(letter["nodeId"])
    steps = (letter.get("payload") or {}).get("failedSteps") if letter["kind"] == "compensation_failed" else None
    if isinstance(steps, list) and steps:
        # A forEach's failed children are steps of one node: named once.
        return ",".join(dict.fromkeys(str(step) for step in steps))
    return "-"


def _failed_children(letter: dict[str, Any]) -> list[dict[str, Any]]:
    """A compensation_failed letter's failed child steps (payload failedChildren; none on a letter
    filed before it was recorded)."""
    children = (letter.get("payload") or {}).get("failedChildren") if letter["kind"] == "compensation_failed" else None
    return [c for c in children if isinstance(c, dict)] if isinstance(children, list) else []


def _child_line(child: dict[str, Any]) -> str:
    steps = ", ".join(str(step) for step in child.get("failedSteps") or []) or "-"
    return f"child run {child.get('childExecutionId')}  (undo of {child.get('nodeId')}; failed in it: {steps})"


def cmd_dead_letters_show(args: argparse.Namespace) -> int:
    """One dead letter, whole: its run, its error unabridged, and a compensation letter's failed steps
    and child runs, one a line."""
    with _client(args) as client:
        response = client.get(f"/api/v1/dead-letters/{args.dead_letter_id}")
    if response.status_code != 200:
        return _refused(response)
    letter = response.json()
    if args.json:
        print(json.dumps(letter, indent=2))
    else:
        _print_dead_letter(letter)
    return EXIT_OK


def _letter_state(d: dict[str, Any]) -> str:
    if d["redrivenAt"]:
        return f"redriven {d['redrivenAt']} by {d.get('redrivenBy') or '-'}"
    if d.get("closeReason"):
        return f"{d['closeReason']} {d.get('closedAt')} by {d.get('closedBy') or '-'}"
    return "open"


def _print_dead_letter(d: dict[str, Any]) -> None:
    print(f"dead letter {d['id']}")
    print(f"  kind      {d['kind']}")
    print(f"  run       {d.get('executionId') or '-'}")
    print(f"  workflow  {d.get('workflowId') or '-'}")
    print(f"  node      {_letter_nodes(d)}")
    print(f"  attempts  {d['attempts']}")
    print(f"  created   {d['createdAt']}")
    print(f"  state     {_letter_state(d)}")
    if d.get("closeNote"):
        print(f"  note      {d['closeNote']}")
    error = d.get("error") or {}
    if isinstance(error, dict) and error:
        print(f"  error     {error.get('code') or '-'}: {error.get('message') or ''}")
    elif error:
        print(f"  error     {error}")
    for child in _failed_children(d):
        print(f"  {_child_line(child)}")


def cmd_dead_letters_redrive(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        print("error: --timeout is how long --wait waits: give --wait too", file=sys.stderr)
        return EXIT_USAGE
    with _client(args) as client:
        response = client.post(f"/api/v1/dead-letters/{args.dead_letter_id}/redrive")
        if response.status_code != 200:
            return _refused(response)
        body = response.json()
        print(f"dead letter {body['deadLetterId']} redriven: execution {body['executionId']} {body['action']}")
        if args.wait:
            timeout = args.timeout if args.timeout is not None else DEFAULT_WAIT_SECONDS
            printer = Printer()
            # The re-run's lines only: from the redrive's own event on (the failed run's lines came
            # first, stamped with its times, and its end stopped the stream).
            printer.last_id = event_id_of(
                client, body["executionId"], "execution_redriven", deadLetterId=body["deadLetterId"]
            )
            return follow(client, body["executionId"], printer, timeout=timeout)
    return EXIT_OK


def _bulk_limit(value: str) -> int:
    return _page_size(value, most=1000)


# --after: a letter id, or 0 (from the first).
_letter_id = _bounded_int(0, 2**63 - 1)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"


def cmd_dead_letters_redrive_all(args: argparse.Namespace) -> int:
    """Redrives the open letters that match, oldest first, up to --limit, each as its own redrive."""
    body: dict[str, Any] = {"limit": args.limit, "afterId": args.after}
    if args.kind:
        body["kind"] = args.kind
    if args.workflow:
        body["workflowId"] = args.workflow
    return _bulk(
        args,
        "/api/v1/dead-letters/bulk/redrive",
        body,
        "dead letters",
        _redrive_line,
        more=lambda answer: f"add --after {answer['lastId']}",
    )


def _redrive_line(item: dict[str, Any]) -> str:
    return f"dead letter {item['deadLetterId']} {item['outcome']} (execution {item['executionId'] or '-'})"


def _cancel_line(item: dict[str, Any]) -> str:
    done = _CONTROL_OUTCOMES.get(("cancel", item["outcome"]), item["outcome"])
    return f"execution {item['executionId']} {done} (status {item['status'] or '-'})"


def _bulk(
    args: argparse.Namespace,
    path: str,
    body: dict[str, Any],
    noun: str,
    line: Callable[[dict[str, Any]], str],
    *,
    more: Callable[[dict[str, Any]], str],
) -> int:
    """A bulk request (README "Bulk operations"): a line per item (its reason after it, if any), the
    counts, how to go on when more match (`more`, on stderr), and the exit code (_bulk_exit)."""
    with _client(args) as client:
        response = client.post(path, json=body)
    if response.status_code != 200:
        return _refused(response)
    answer: dict[str, Any] = response.json()
    for item in answer["outcomes"]:
        why = f": {item['reason']}" if item.get("reason") else ""
        print(line(item) + why)
    print(f"{len(answer['outcomes'])} {noun}: {_counts_text(answer['counts'])}")
    if answer["more"]:
        print(f"more: {more(answer)}", file=sys.stderr)
    return _bulk_exit(answer)


def _bulk_exit(answer: dict[str, Any]) -> int:
    """0 when every item was done (or needed nothing: ended, gone, superseded, too late), 1 when some were refused
    or failed, said on stderr: a script's `&&` must not read a batch with refusals as done."""
    undone = sum(answer["counts"].get(outcome, 0) for outcome in ("refused", "failed"))
    if not undone:
        return EXIT_OK
    print(
        f"error: {undone} of {len(answer['outcomes'])} not done (refused or failed: see their lines)", file=sys.stderr
    )
    return EXIT_RUN_FAILED


def cmd_executions_cancel_all(args: argparse.Namespace) -> int:
    """Cancels a workflow's root runs that match, not started first, oldest first, up to --limit, each
    as its own cancel."""
    from dataworkflows.retention import parse_age

    body: dict[str, Any] = {"workflowId": args.workflow, "limit": args.limit}
    try:
        if args.older_than is not None:
            body["createdBefore"] = (datetime.now(UTC) - timedelta(seconds=parse_age(args.older_than))).isoformat()
    except ValueError as exc:
        print(f"error: --older-than: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.status:
        body["status"] = args.status
    if args.reason:
        body["reason"] = args.reason
    return _bulk(
        args,
        "/api/v1/executions/bulk/cancel",
        body,
        "executions",
        _cancel_line,
        more=lambda _: "the same command again cancels the next ones",
    )


def cmd_dead_letters_ack(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.post(
            f"/api/v1/dead-letters/{args.dead_letter_id}/acknowledge", json={"note": args.note} if args.note else None
        )
    if response.status_code != 200:
        return _refused(response)
    body = response.json()
    by = f" by {body['closedBy']}" if body.get("closedBy") else ""
    print(f"dead letter {body['id']} acknowledged{by}: closed, nothing will be re-run")
    return EXIT_OK


def _page_size(value: str, most: int = 500) -> int:
    number = _positive_int(value)
    if number > most:
        raise argparse.ArgumentTypeError(f"at most {most} a page, not {number}")
    return number


def _large_page_size(value: str) -> int:
    """A --limit of the lists whose pages hold up to 1,000 rows (triggers, connections)."""
    return _page_size(value, 1000)


def _next_cursor(response: httpx.Response) -> str | None:
    """The cursor of a bare list's next page, from the answer's Link header (None on the last page)."""
    following = response.links.get("next", {}).get("url")
    return parse_qs(urlsplit(following).query).get("cursor", [None])[0] if following else None


def _say_more(response: httpx.Response, keep: str = "") -> None:
    """The next page of a bare list, from the answer's Link header, as a `more: add --cursor C`
    line on stderr (stdout keeps the rows, or the JSON): the list was cut at its limit without a
    word before. `keep`: the filter options the cursor holds to (a cursor of one filter is refused
    with another), said with it."""
    cursor = _next_cursor(response)
    if cursor:
        sys.stdout.flush()
        print(f"more: add --cursor {cursor}" + (f" (keep {keep})" if keep else ""), file=sys.stderr)


def _page_params(args: argparse.Namespace, **params: Any) -> dict[str, Any]:
    """A list request's query: its filters (those given), --limit and --cursor."""
    given = {name: value for name, value in params.items() if value}
    return {**given, "limit": args.limit, **({"cursor": args.cursor} if args.cursor else {})}


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not positive")
    return number


# A run's priority: a whole number from -100 to 100.
_priority = _bounded_int(MIN_RUN_PRIORITY, MAX_RUN_PRIORITY, " (higher runs first)")


def _positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < number < 10**9:
        raise argparse.ArgumentTypeError(f"{value} seconds: give a positive number")
    return number


def _status_name(value: str) -> str:
    """An execution status, in any letter case (suspended -> Suspended)."""
    for status in ExecutionStatus:
        if status.value.lower() == value.lower():
            return status.value
    raise argparse.ArgumentTypeError(f"unknown status {value!r} (one of {', '.join(ExecutionStatus)})")


_AGE_UNITS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "d": 86400, "w": 604800}
TRIGGER_KINDS = ("manual", "schedule", "webhook", "event", "subworkflow")


class _Age(datetime):
    """A --since/--until given as an age: the moment it came to now, and the age as given (`age`)."""

    age: str
    seconds: float


def _same_now(since: datetime | None, until: datetime | None) -> datetime | None:
    """--until as of --since's now when both are ages: each was read from the clock in turn, so
    `--since 2h --until 2h` made a window of a few microseconds instead of an empty one."""
    if isinstance(since, _Age) and isinstance(until, _Age):
        moment = since + timedelta(seconds=since.seconds - until.seconds)
        rebased = _Age.fromtimestamp(moment.timestamp(), UTC)
        rebased.age, rebased.seconds = until.age, until.seconds
        return rebased
    return until


def _moment(value: str) -> datetime:
    """--since/--until: an ISO 8601 time (no offset: UTC) or an age back from now (90s, 30min, 2h, 7d, 2w)."""
    import re

    text = value.strip()
    age = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*(s|sec|min|h|d|w)", text)
    if age:
        try:
            seconds = float(age.group(1)) * _AGE_UNITS[age.group(2)]
            moment = datetime.now(UTC) - timedelta(seconds=seconds)
            resolved = _Age.fromtimestamp(moment.timestamp(), UTC)
            resolved.age, resolved.seconds = text, seconds
            return resolved
        except OverflowError:
            # 99999999d: before year 1.
            raise argparse.ArgumentTypeError(f"{value!r} goes back before year 1") from None
    try:
        from dataworkflows.clock import iso_time

        moment = iso_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO 8601 time (2026-12-01T08:00:00Z) nor an age (90s, 30min, 2h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _list_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": args.limit}
    for key, value in (
        ("status", args.status),
        ("workflowId", args.workflow),
        ("triggerKind", args.trigger_kind),
        ("cursor", args.cursor),
        ("createdFrom", args.since.isoformat() if args.since else None),
        ("createdTo", args.until.isoformat() if args.until else None),
    ):
        if value:
            params[key] = value
    return params


def _created(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(e["createdAt"]).replace("Z", "+00:00"))


def _in_window(args: argparse.Namespace, e: dict[str, Any]) -> bool:
    """The time window again, client side (the same answer from a server without createdFrom/To)."""
    created = _created(e)
    return (args.since is None or created >= args.since) and (args.until is None or created < args.until)


def _execution_row(e: dict[str, Any]) -> str:
    from dataworkflows.cli_follow import seconds_text

    status = e["status"]
    if e.get("cancelRequestedAt") and status not in FINAL:
        status += " (cancelling)"
    took = "-"
    if e.get("startTime") and e.get("endTime"):
        seconds = (datetime.fromisoformat(e["endTime"]) - datetime.fromisoformat(e["startTime"])).total_seconds()
        took = seconds_text(seconds)
    created = f"{_created(e):%Y-%m-%dT%H:%M:%SZ}"
    trigger = e.get("triggerKind") or "-"
    workflow = f"{e['workflowId']:<24} {e['workflowVersion']:>7}"
    return f"{e['id']:<36}  {workflow}  {status:<20} {created}  {took:>8}  {trigger}"


def cmd_executions_list(args: argparse.Namespace) -> int:
    """One page of executions, newest first; the next page's --cursor is said on stderr."""
    args.until = _same_now(args.since, args.until)
    if args.since is not None and args.until is not None and args.until <= args.since:
        # `--since 1h --until 2h` (the two swapped): it printed "no executions".
        print(
            f"error: --until ({args.until:%Y-%m-%dT%H:%M:%SZ}) is not after --since ({args.since:%Y-%m-%dT%H:%M:%SZ}):"
            " the window would hold nothing",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with _client(args) as client:
        response = client.get("/api/v1/executions", params=_list_params(args))
    if response.status_code != 200:
        return _refused(response)
    page = response.json()
    items = [e for e in page["items"] if _in_window(args, e)]
    if args.trigger_kind and any("triggerKind" not in e for e in items):
        print("error: this API does not filter executions by trigger kind (an older server)", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"items": items, "nextCursor": page.get("nextCursor")}, indent=2))
        return EXIT_OK
    if not items:
        print("no executions")
    else:
        print(f"{'ID':<36}  {'WORKFLOW':<24} {'VERSION':>7}  {'STATUS':<20} {'CREATED':<20}  {'TOOK':>8}  TRIGGER")
        for e in items:
            print(_execution_row(e))
    if page.get("nextCursor"):
        sys.stdout.flush()
        print(f"more: add --cursor {page['nextCursor']}{_window_hint(args)}", file=sys.stderr)
    return EXIT_OK


def _window_hint(args: argparse.Namespace) -> str:
    """A cursor holds to its page's window: an age (`--since 2h`) names another window at the next
    call, which the API refused, so the hint gives the window this page had."""
    given = [
        (flag, value) for flag, value in (("--since", args.since), ("--until", args.until)) if isinstance(value, _Age)
    ]
    if not given:
        return ""
    window = " ".join(f"{flag} {value.isoformat()}" for flag, value in given)
    ages = " and ".join(f"{flag} {value.age}" for flag, value in given)
    return f" with {window} in place of {ages} (the next page is of this page's window)"


def _tree_line(e: dict[str, Any]) -> str:
    """One execution of a tree, indented by its depth."""
    line = f"{'  ' * int(e.get('depth') or 0)}{e['id']}  {e['workflowId']}@{e['workflowVersion']}  {e['status']}"
    if e.get("parentNodeId"):
        line += f"  (node {e['parentNodeId']})"
    return line


def cmd_executions_tree(args: argparse.Namespace) -> int:
    """The tree an execution belongs to: its root and every execution started under it."""
    tree: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    with _client(args) as client:
        # Every page (a page holds 1,000 runs; its Link header names the next one).
        while True:
            response = client.get(f"/api/v1/executions/{_path(args.execution_id)}/tree", params=params)
            if response.status_code != 200:
                return _refused(response)
            tree.extend(response.json())
            cursor = _next_cursor(response)
            if cursor is None:
                break
            params = {"cursor": cursor}
    if args.json:
        print(json.dumps(tree, indent=2))
        return EXIT_OK
    for e in tree:
        print(_tree_line(e))
    return EXIT_OK


# What a control request did, by (action, outcome).
_CONTROL_OUTCOMES = {
    ("cancel", "cancelled"): "cancelled",
    ("cancel", "requested"): "cancel requested: the worker running it stops it",
    ("cancel", "already_requested"): "cancel already requested",
    ("cancel", "already_cancelled"): "already cancelled",
    ("cancel", "too_late"): "too late to cancel: the run's outcome is decided, it ends as it would have",
    ("suspend", "suspended"): "suspended: nothing runs until it is resumed",
    ("suspend", "requested"): "suspension requested: running attempts finish, nothing new starts",
    ("suspend", "already_suspended"): "already suspended",
    ("suspend", "too_late"): "too late to suspend: the run's outcome is decided, it ends as it would have",
    ("suspend", "already_requested"): "suspension already requested",
    ("resume", "resumed"): "resumed",
    ("resume", "withdrawn"): "suspension withdrawn before it took effect",
}


def cmd_executions_control(args: argparse.Namespace) -> int:
    """cancel, suspend or resume (args.action) one execution."""
    reason = getattr(args, "reason", None)
    with _client(args) as client:
        response = client.post(
            f"/api/v1/executions/{_path(args.execution_id)}/{args.action}",
            json={"reason": reason} if reason else None,
        )
    if response.status_code != 202:
        return _refused(response)
    body = response.json()
    done = _CONTROL_OUTCOMES.get((args.action, body["outcome"]), body["outcome"])
    print(f"execution {body['executionId']} {done} (status {body['status']})")
    return EXIT_OK


def cmd_executions_priority(args: argparse.Namespace) -> int:
    """Changes one execution's priority (--descendants: the unfinished runs below it too)."""
    body: dict[str, Any] = {"priority": args.priority}
    if args.descendants:
        body["descendants"] = True
    with _client(args) as client:
        response = client.put(f"/api/v1/executions/{_path(args.execution_id)}/priority", json=body)
    if response.status_code != 200:
        return _refused(response)
    body = response.json()
    if not body["changed"]:
        print(f"execution {body['executionId']} priority {body['priority']} already (status {body['status']})")
    else:
        moved = "its queued job moved in line" if body["jobs"] else "its next job takes it"
        print(
            f"execution {body['executionId']} priority {body['priority']} (was {body['previous']}; {moved}; "
            f"status {body['status']})"
        )
    below = body.get("descendants")
    if below is not None:
        skipped = (
            f"; {below['skipped']} busy at that moment, not changed: run it again for them" if below["skipped"] else ""
        )
        print(f"  runs below it: {below['changed']} changed, {below['jobs']} queued jobs moved{skipped}")
    return EXIT_OK


def cmd_signal(args: argparse.Namespace) -> int:
    try:
        payload = _json_object(args.payload, "--payload")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    body: dict[str, Any] = {"payload": payload}
    if args.signal_id:
        body["signalId"] = args.signal_id
    if args.correlation_key:
        body["correlationKey"] = args.correlation_key
    with _client(args) as client:
        response = client.post(f"/api/v1/executions/{_path(args.execution_id)}/signals/{_path(args.name)}", json=body)
        if response.status_code != 202:
            return _refused(response)
        sent = response.json()
        outcome = sent["outcome"]
        if outcome == "buffered":
            what = _buffered(client, args)  # reads the run's waits: only for a buffered signal
        else:
            what = {
                "consumed": f"consumed by node {sent['nodeId']}",
                "duplicate": "duplicate: delivered before, nothing changed",
            }.get(outcome, outcome)
    print(f"signal {args.name} ({sent['signalId']}) {what} (execution {sent['executionStatus']})")
    return EXIT_OK


def cmd_signal_all(args: argparse.Namespace) -> int:
    """A signal to every run waiting for it by name and correlation key (POST /api/v1/signals/NAME)."""
    try:
        payload = _json_object(args.payload, "--payload")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    body: dict[str, Any] = {"payload": payload, "limit": args.limit}
    for key, value in (("signalId", args.signal_id), ("correlationKey", args.correlation_key)):
        if value:
            body[key] = value
    if args.workflow:
        body["workflowId"] = args.workflow
    with _client(args) as client:
        response = client.post(f"/api/v1/signals/{_path(args.name)}", json=body)
        if response.status_code != 200:
            return _refused(response)
        sent = response.json()
    for delivery in sent["deliveries"]:
        node = f" node {delivery['nodeId']}" if delivery.get("nodeId") else ""
        print(f"{delivery['executionId']}  {delivery['workflowId'] or '-':<24} {delivery['outcome']}{node}")
    reached = len(sent["deliveries"])
    print(f"signal {args.name} ({sent['signalId']}) sent to {reached} run{'' if reached == 1 else 's'}", end="")
    if sent["remaining"]:
        print(f"; {sent['remaining']} more wait for it: send it again with --signal-id {sent['signalId']}")
    else:
        print()
    return EXIT_OK


def cmd_events_publish(args: argparse.Namespace) -> int:
    """Publishes a CloudEvent (POST /api/v1/events): each matching event trigger starts a run."""
    import uuid

    try:
        data = _load_json(args.data) if args.data is not None else None
    except (json.JSONDecodeError, ValueError) as exc:
        print(f"error: --data is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.type,
    }
    if args.subject:
        event["subject"] = args.subject
    if args.data is not None:
        event["data"] = data
    with _client(args) as client:
        response = client.post("/api/v1/events", json=event)
        if response.status_code != 202:
            return _refused(response)
        published = response.json()
    for delivery in published["deliveries"]:
        what = delivery["executionId"] if delivery["outcome"] == "started" else f"refused: {delivery['reason']}"
        print(f"{delivery['workflowId']:<24} {what}")
    runs = sum(1 for d in published["deliveries"] if d["outcome"] == "started")
    again = " (published before: nothing new started)" if published["duplicate"] else ""
    print(f"event {published['eventId']} ({published['type']}) started {runs} run{'' if runs == 1 else 's'}{again}")
    return EXIT_OK


def _buffered(client: httpx.Client, args: argparse.Namespace) -> str:
    """What a buffered signal is waiting for. A wait for this name that expects another correlation key
    is open, it says so: "no node waits for it yet" misled while the README's order-payment example
    waited for A-1003."""
    import httpx

    try:
        response = client.get(f"/api/v1/executions/{_path(args.execution_id)}/waits")
        waits = response.json() if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        waits = []
    keys = sorted(
        {
            str(w.get("correlationKey"))
            for w in waits
            if isinstance(w, dict)
            and w.get("kind") == "signal"
            and w.get("state") == "open"
            and w.get("name") == args.name
            and w.get("correlationKey") is not None
            and w.get("correlationKey") != args.correlation_key
        }
    )
    if not keys:
        return "buffered: no node waits for it yet"
    expected = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    given = f"correlation key {args.correlation_key}" if args.correlation_key else "no correlation key"
    return (
        f"buffered: the open {args.name} wait expects correlation key {expected} and this signal has {given}"
        " (send it with --correlation-key; it is kept for a wait it matches)"
    )


def cmd_approvals_list(args: argparse.Namespace) -> int:
    params = _page_params(args, status="all" if args.all else "open", principal=args.principal)
    with _client(args) as client:
        response = client.get("/api/v1/approvals", params=params)
    if response.status_code != 200:
        return _refused(response)
    items = response.json()
    if args.json:
        # A bare list, its next page on stderr, as triggers list --json prints them.
        print(json.dumps(items, indent=2))
        _say_more(response)
        return EXIT_OK
    if not items:
        print("no approvals" if args.all else "no open approvals")
        return EXIT_OK
    print(f"{'ID':<36}  {'STATE':<9} {'WORKFLOW':<20} {'NODE':<16} {'VOTES':>5}  {'APPROVERS':<24} TITLE")
    for a in items:
        approved = sum(1 for d in a["decisions"] if d["decision"] == "approve")
        votes = f"{approved}/{a['required'] if a['required'] is not None else '?'}"
        approvers = ",".join(a["approvers"])
        escalation = a.get("escalation")
        if escalation:
            # Who else may decide, from when (--principal lists those it brings in).
            approvers += f" (then {','.join(escalation['approvers'])} from {escalation['at']})"
        print(
            f"{a['id']:<36}  {a['state']:<9} {a['workflowId']:<20} {a['nodeId']:<16} {votes:>5}  "
            f"{approvers:<24} {a['title'] or ''}".rstrip()
        )
    _say_more(response)
    return EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    """approve or reject (args.decision) an approval, as --principal or $DW_PRINCIPAL_ID."""
    body: dict[str, Any] = {"decision": args.decision}
    if args.comment:
        body["comment"] = args.comment
    with _client(args) as client:
        response = client.post(f"/api/v1/approvals/{_path(args.approval_id)}/decision", json=body)
    if response.status_code == 401:
        print("error: say who decides: --principal NAME or DW_PRINCIPAL_ID", file=sys.stderr)
        return EXIT_USAGE
    if response.status_code != 200:
        return _refused(response)
    d = response.json()
    # "approved; it is now open" read as a contradiction: the decision is one person's, the state the
    # approval's (a walk through the README).
    said = "approval" if args.decision == "approve" else "rejection"
    rejections = f"{d['rejections']} rejection" + ("" if d["rejections"] == 1 else "s")
    print(
        f"your {said} is recorded; approval {d['approvalId']} is {d['state']} "
        f"({d['approvals']}/{d['required']} approvals, {rejections})"
    )
    return EXIT_OK


def _add_executions(sub: Any) -> None:
    executions = sub.add_parser(
        "executions", help="list executions; show one's tree; cancel, suspend, resume or reprioritize one"
    )
    esub = executions.add_subparsers(dest="executions_command", required=True)
    elist = esub.add_parser("list", help="executions, newest first, a page at a time")
    elist.add_argument(
        "--status", type=_status_name, help=f"only these ({', '.join(ExecutionStatus)}; any letter case)"
    )
    elist.add_argument("--workflow", metavar="ID", help="only this workflow's")
    elist.add_argument(
        "--since", type=_moment, metavar="WHEN", help="created at or after: ISO 8601 (UTC unless given) or an age: 2h"
    )
    elist.add_argument("--until", type=_moment, metavar="WHEN", help="created before: ISO 8601 or an age (30min)")
    elist.add_argument("--trigger-kind", choices=TRIGGER_KINDS, help="only runs started this way")
    elist.add_argument("--limit", type=_page_size, default=50, help="rows a page (1 to 500)")
    elist.add_argument("--cursor", help="the next page: the cursor a previous page gave")
    elist.add_argument("--json", action="store_true", help='print {"items": [...], "nextCursor": ...} as JSON')
    elist.add_argument("--api-url")
    elist.set_defaults(func=cmd_executions_list)
    tree = esub.add_parser("tree", help="an execution's tree: its root and the subworkflows under it")
    tree.add_argument("execution_id")
    tree.add_argument("--json", action="store_true")
    tree.add_argument("--api-url")
    tree.set_defaults(func=cmd_executions_tree)
    helps = {
        "cancel": "cancel an execution (at once, or its worker stops it)",
        "suspend": "suspend an execution: running attempts finish, nothing new starts",
        "resume": "resume a suspended execution",
    }
    for action, text in helps.items():
        control = esub.add_parser(action, help=text)
        control.add_argument("execution_id")
        if action != "resume":
            control.add_argument("--reason", help="why (kept in the execution's log)")
        control.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
        control.add_argument("--api-url")
        control.set_defaults(func=cmd_executions_control, action=action)
    everything = esub.add_parser(
        "cancel-all",
        help="cancel a workflow's root executions that match, not started first, oldest first, each as its own cancel",
    )
    everything.add_argument("workflow", type=_filter_value)
    everything.add_argument(
        "--status",
        action="append",
        # In any letter case, as `executions list --status suspended` takes it (it was refused here).
        type=_status_name,
        choices=("Pending", "Running", "Waiting", "Suspended"),
        help="only of this status, in any letter case (again for more; default every one not ended)",
    )
    everything.add_argument("--older-than", metavar="AGE", help="only those created longer ago (such as 1h or 2d)")
    everything.add_argument("--reason", help="why (kept in each execution's log)")
    everything.add_argument("--limit", type=_bulk_limit, default=100, help="executions a request (1 to 1000)")
    everything.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    everything.add_argument("--api-url")
    everything.set_defaults(func=cmd_executions_cancel_all)
    priority = esub.add_parser(
        "priority", help="change an execution's priority (-100 to 100, higher first): its queued job moves in line"
    )
    priority.add_argument("execution_id")
    priority.add_argument("priority", type=_priority)
    priority.add_argument(
        "--descendants", action="store_true", help="the unfinished runs below it (children, theirs) take it too"
    )
    priority.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    priority.add_argument("--api-url")
    priority.set_defaults(func=cmd_executions_priority)


def _trigger_line(t: dict[str, Any]) -> str:
    state = "enabled" if t["enabled"] else "disabled"
    config = t.get("config") or {}
    if t["kind"] == "schedule":
        what = f"{config.get('cron')} {config.get('timezone') or 'UTC'}  next {t.get('nextTickAt') or '-'}"
    elif t["kind"] == "event":
        what = f"on {config.get('eventType')}" + (f" from {config['source']}" if config.get("source") else "")
    else:
        what = f"{t.get('hookUrl')}  signature {config.get('signature') or 'hmac-sha256'}"
    line = f"{t['id']}  {t['workflowId']:<24} {t['kind']:<8} {t['name']:<24} {state:<8} {what}"
    if t.get("priority") is not None:
        line += f"  priority {t['priority']}"
    return line + (f"  error: {t['error']}" if t.get("error") else "")


def _print_page(args: argparse.Namespace, response: httpx.Response, what: str, line: Any) -> int:
    """A page of a bare list (the triggers, a trigger's deliveries or ticks): a line each (or the
    JSON), and the next page's cursor on stderr, with the filter it holds to (a review: the hint for
    `deliveries --outcome X` left --outcome out, and the cursor alone was refused)."""
    if response.status_code != 200:
        return _refused(response)
    rows = response.json()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        # Past a page that was the last, rows may have gone meanwhile: not "none at all".
        print(f"no more {what}" if args.cursor else f"no {what}")
    for row in [] if args.json else rows:
        print(line(row))
    kept = [f"--{name} {getattr(args, name)}" for name in ("outcome", "kind") if getattr(args, name, None)]
    _say_more(response, " ".join(kept))
    return EXIT_OK


def cmd_triggers_list(args: argparse.Namespace) -> int:
    path = f"/api/v1/workflows/{_path(args.workflow)}/triggers" if args.workflow else "/api/v1/triggers"
    with _client(args) as client:
        response = client.get(path, params=_page_params(args, kind=args.kind))
    return _print_page(args, response, "triggers", _trigger_line)


def _delivery_line(d: dict[str, Any]) -> str:
    run = d.get("executionId") or "-"
    delivery = d.get("deliveryId") or "-"
    size = "-" if d.get("bodyBytes") is None else f"{d['bodyBytes']}B"
    line = f"{d['receivedAt']:<32}  {d['outcome']:<13} {d['statusCode']:>3}  {run:<36}  {size:>8}  {delivery}"
    reason = f"  reason: {d['reason']}" if d.get("reason") else ""
    lapsed = f"  lapsed {d['lapsedAt']}" if d.get("lapsedAt") else ""
    return line + reason + lapsed


def _tick_line(t: dict[str, Any]) -> str:
    late = datetime.fromisoformat(t["firedAt"]) - datetime.fromisoformat(t["tickAt"])
    overlapped = t.get("overlappedBy")
    if t.get("buffered"):
        after = f" {overlapped}" if overlapped else " the schedule's runs"
        run = (
            f"{t['executionId']}  (overlap: started after{after} ended)"
            if t.get("executionId")
            else f"- (overlap: waits for{after} to end)"
        )
    elif t.get("executionId"):
        run = t["executionId"] + (f"  (overlap: cancels {overlapped})" if overlapped else "")
    elif overlapped:
        run = f"- (overlap: no run beside {overlapped})"
    else:
        run = "- (no run: see the schedule's error)"
    if t.get("runRemoved"):
        run += "  (its run was removed by retention)"
    missed = f"  missed {t['missedTicks']}" if t.get("missedTicks") else ""
    return f"{t['tickAt']:<32}  fired {seconds_text(late.total_seconds()):>8} late  {run}{missed}"


def cmd_triggers_deliveries(args: argparse.Namespace) -> int:
    """A webhook's deliveries, newest first (a page)."""
    with _client(args) as client:
        response = client.get(
            f"/api/v1/triggers/{_path(args.trigger_id)}/deliveries", params=_page_params(args, outcome=args.outcome)
        )
    return _print_page(args, response, "deliveries", _delivery_line)


def cmd_triggers_ticks(args: argparse.Namespace) -> int:
    """A schedule's fired ticks, newest first (a page)."""
    with _client(args) as client:
        response = client.get(f"/api/v1/triggers/{_path(args.trigger_id)}/ticks", params=_page_params(args))
    return _print_page(args, response, "ticks", _tick_line)


# The create command's options that belong to one kind (a webhook's --unsigned, a schedule's --cron...).
_SCHEDULE_OPTIONS = {
    "cron": "--cron",
    "timezone": "--timezone",
    "catch_up": "--catch-up",
    "overlap": "--overlap",
    "payload": "--payload",
}
_WEBHOOK_OPTIONS = {
    "signature": "--signature",
    "unsigned": "--unsigned",
    "activation": "--activation",
    "header": "--header",
}
_EVENT_OPTIONS = {"event_type": "--event-type", "source": "--source"}
_KIND_OPTIONS = {"schedule": _SCHEDULE_OPTIONS, "webhook": _WEBHOOK_OPTIONS, "event": _EVENT_OPTIONS}


def _trigger_config(args: argparse.Namespace) -> dict[str, Any]:
    """A schedule's or a webhook's config from the create command's options; ValueError for an
    option of the other kind, or two that contradict each other (they used to be dropped silently:
    --unsigned won over --signature, a webhook's --cron was lost)."""
    mine = _KIND_OPTIONS[args.kind]
    given = [
        flag
        for kind, options in _KIND_OPTIONS.items()
        if kind != args.kind
        for name, flag in options.items()
        if getattr(args, name) not in (None, False)
    ]
    if given:
        what = "an event trigger" if args.kind == "event" else f"a {args.kind}"
        raise ValueError(f"{', '.join(given)}: not for {what}; {what} takes {', '.join(mine.values())}")
    if args.kind == "event":
        if not args.event_type:
            raise ValueError("an event trigger needs --event-type (com.example.order.created, com.example.order.*, *)")
        return {"eventType": args.event_type} | ({"source": args.source} if args.source else {})
    return _schedule_config(args) if args.kind == "schedule" else _webhook_config(args)


def _schedule_config(args: argparse.Namespace) -> dict[str, Any]:
    if not args.cron:
        raise ValueError("a schedule needs --cron (e.g. '0 2 * * *' or @hourly)")
    config: dict[str, Any] = {
        "cron": args.cron,
        "timezone": args.timezone or "UTC",
        "catchUp": args.catch_up or "latest",
    }
    if args.overlap:
        config["overlap"] = args.overlap
    try:
        payload = _load_json(args.payload or "{}")
    except ValueError as exc:
        raise ValueError(f"--payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("--payload must be a JSON object")
    _check_sendable(payload, "--payload")
    return {**config, "payload": payload}


def _webhook_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.unsigned and args.signature:
        raise ValueError("give --signature or --unsigned, not both")
    config: dict[str, Any] = {"signature": "none" if args.unsigned else args.signature or "hmac-sha256"}
    if args.activation:
        config["activationCondition"] = args.activation
    if args.header:
        config["headers"] = args.header
    return config


def cmd_triggers_create(args: argparse.Namespace) -> int:
    try:
        config = _trigger_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    body = {"kind": args.kind, "name": args.name, "config": config, "enabled": not args.disabled}
    if args.priority is not None:
        body["priority"] = args.priority
    with _client(args) as client:
        response = client.post(f"/api/v1/workflows/{_path(args.workflow)}/triggers", json=body)
    if response.status_code != 201:
        return _refused(response)
    created = response.json()
    print(_trigger_line(created))
    if created.get("secret"):
        print(f"signing secret (shown once; keep it with the sender): {created['secret']}")
    return EXIT_OK


def cmd_triggers_change(args: argparse.Namespace) -> int:
    """enable, disable or delete (args.action) one trigger."""
    path = f"/api/v1/triggers/{_path(args.trigger_id)}"
    with _client(args) as client:
        if args.action == "delete":
            response = client.delete(path)
        else:
            response = client.patch(path, json={"enabled": args.action == "enable"})
    if response.status_code not in (200, 204):
        return _refused(response)
    print(f"trigger {args.trigger_id} {args.action}d")
    return EXIT_OK


def _trigger_priority(value: str) -> int | None:
    """`triggers priority`'s value: -100 to 100, or none (the workflow's again)."""
    return None if value.strip().lower() == "none" else _priority(value)


def cmd_triggers_priority(args: argparse.Namespace) -> int:
    """Sets (or, with none, clears) the priority of the runs a trigger starts."""
    with _client(args) as client:
        response = client.patch(f"/api/v1/triggers/{_path(args.trigger_id)}", json={"priority": args.priority})
    if response.status_code != 200:
        return _refused(response)
    print(_trigger_line(response.json()))
    return EXIT_OK


def cmd_triggers_rotate_secret(args: argparse.Namespace) -> int:
    """A signed webhook's new secret (generated, or from a file or stdin), shown once; the old one
    still verifies for --keep-previous."""
    from dataworkflows.retention import parse_age

    body: dict[str, Any] = {}
    try:
        if args.keep_previous is not None:
            body["previousValidSeconds"] = round(parse_age(args.keep_previous))
            if body["previousValidSeconds"] > MAX_PREVIOUS_SECRET_SECONDS:
                raise ValueError(f"{args.keep_previous} is longer than the API keeps a previous secret: at most 7d")
    except ValueError as exc:
        print(f"error: --keep-previous: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.secret_file is not None:
        secret = _read_secret(str(args.secret_file))
        if secret is None:
            return EXIT_USAGE
        body["secret"] = secret.strip()
    with _client(args) as client:
        response = client.post(f"/api/v1/triggers/{_path(args.trigger_id)}/secret", json=body)
    if response.status_code != 200:
        return _refused(response)
    rotated = response.json()
    print(_trigger_line(rotated))
    until = rotated.get("previousSecretUntil")
    print(f"the previous secret {'verifies until ' + until if until else 'no longer verifies'}")
    if args.secret_file is None:
        print(f"signing secret (shown once; keep it with the sender): {rotated['secret']}")
    return EXIT_OK


def _add_triggers(sub: Any) -> None:
    triggers = sub.add_parser(
        "triggers",
        help="schedules, webhooks and event triggers: list, create, enable, disable, delete, deliveries, ticks, "
        "priority, rotate-secret",
    )
    tsub = triggers.add_subparsers(dest="triggers_command", required=True)
    tlist = tsub.add_parser("list", help="every trigger, or a workflow's")
    tlist.add_argument("--workflow", help="only this workflow's")
    tlist.add_argument("--kind", choices=("schedule", "webhook", "event"))
    tlist.add_argument("--limit", type=_large_page_size, default=1000, help="rows a page (1 to 1000, the default)")
    tlist.add_argument("--cursor", help="the next page: the cursor a previous page gave")
    tlist.add_argument("--json", action="store_true")
    tlist.add_argument("--api-url")
    tlist.set_defaults(func=cmd_triggers_list)
    history = {
        "deliveries": ("a webhook's deliveries, newest first: outcome, status, run", cmd_triggers_deliveries),
        "ticks": ("a schedule's fired ticks, newest first: lateness, run, missed ticks", cmd_triggers_ticks),
    }
    for name, (text, func) in history.items():
        listing = tsub.add_parser(name, help=text)
        listing.add_argument("trigger_id")
        if name == "deliveries":
            listing.add_argument(
                "--outcome", choices=[o.value for o in WebhookOutcome], help="only deliveries with this outcome"
            )
        listing.add_argument(
            "--limit", type=_large_page_size, default=1000, help="rows a page (1 to 1000, the default)"
        )
        listing.add_argument("--cursor", help="the next page: the cursor a previous page gave")
        listing.add_argument("--json", action="store_true")
        listing.add_argument("--api-url")
        listing.set_defaults(func=func)
    create = tsub.add_parser(
        "create", help="add a schedule (--cron), a webhook or an event trigger (--event-type) to a workflow"
    )
    create.add_argument("workflow")
    create.add_argument("--kind", choices=("schedule", "webhook", "event"), required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--cron", help="schedule: 5 fields (or @hourly, @daily, ...), e.g. '0 2 * * *'")
    # No argparse defaults for the kinds' own options: one given for the other kind is refused, not
    # dropped (_trigger_config), so it must be told apart from one left out.
    create.add_argument("--timezone", help="schedule: an IANA time zone (default UTC)")
    create.add_argument(
        "--catch-up", choices=("none", "latest", "all"), help="schedule: after downtime (default latest)"
    )
    create.add_argument(
        "--overlap",
        choices=("allow", "skip", "bufferOne", "bufferAll", "cancelOther"),
        help="schedule: a tick while its previous run still goes (default allow)",
    )
    create.add_argument("--payload", help="schedule: the runs' trigger, a JSON object (default {})")
    create.add_argument(
        "--signature",
        choices=("hmac-sha256", "github", "slack"),
        help="webhook: how deliveries are signed (default hmac-sha256)",
    )
    create.add_argument("--unsigned", action="store_true", help="webhook: accept unsigned deliveries")
    create.add_argument("--activation", help="webhook: a JavaScript condition over body, headers, query")
    create.add_argument("--header", action="append", help="webhook: a request header to pass to the run")
    create.add_argument("--event-type", help="event: the type it starts a run for (a type, 'prefix.*' or '*')")
    create.add_argument("--source", help="event: only events of this source")
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    create.add_argument(
        "--priority",
        type=_priority,
        metavar="N",
        help="its runs' priority, -100 to 100, higher first (default: their workflow's)",
    )
    create.add_argument("--principal", help="who creates it (default $DW_PRINCIPAL_ID)")
    create.add_argument("--api-url")
    create.set_defaults(func=cmd_triggers_create)
    rotate = tsub.add_parser(
        "rotate-secret", help="a signed webhook's new secret (its hook URL stays; the old one may hold a while)"
    )
    rotate.add_argument("trigger_id")
    rotate.add_argument(
        "--keep-previous",
        metavar="AGE",
        help="how long the old secret still verifies deliveries (such as 1h or 2d, at most 7d; default: not at all)",
    )
    rotate.add_argument(
        "--secret-file", help="a file holding the new secret, or - for stdin (default: a generated one, shown once)"
    )
    rotate.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    rotate.add_argument("--api-url")
    rotate.set_defaults(func=cmd_triggers_rotate_secret)
    priority = tsub.add_parser("priority", help="set the priority of the runs a trigger starts (none: the workflow's)")
    priority.add_argument("trigger_id")
    priority.add_argument("priority", type=_trigger_priority, metavar="N|none")
    priority.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    priority.add_argument("--api-url")
    priority.set_defaults(func=cmd_triggers_priority)
    for action in ("enable", "disable", "delete"):
        change = tsub.add_parser(action, help=f"{action} a trigger")
        change.add_argument("trigger_id")
        change.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
        change.add_argument("--api-url")
        change.set_defaults(func=cmd_triggers_change, action=action)


def _connection_line(c: dict[str, Any]) -> str:
    allowed = c.get("allowedWorkflows") or []
    who = "every workflow" if allowed == ["*"] else (", ".join(allowed) or "no workflow (allow some first)")
    return f"{c['name']:<24} {c['kind']:<10} used by: {who}"


def cmd_connections_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.get("/api/v1/connections", params=_page_params(args))
    if response.status_code != 200:
        return _refused(response)
    connections = response.json()
    if args.json:
        print(json.dumps(connections, indent=2))
    elif not connections and args.cursor:
        print("no more stored connections")
    elif not connections:
        print("no stored connections (environment connections, DW_CONNECTION_<NAME>, are not listed)")
    for c in [] if args.json else connections:
        print(_connection_line(c))
    _say_more(response)
    return EXIT_OK


def _allowed(args: argparse.Namespace) -> list[str] | None:
    if args.all_workflows:
        return ["*"]
    return list(args.allow) if args.allow else None


STDIN = "-"


def _read_secret(source: str) -> str | None:
    """A secret from a file or stdin (`-`), never the command line (shell history, ps); None, said
    on stderr, when it cannot be read (a missing file, one that is not UTF-8)."""
    try:
        return sys.stdin.read() if source == STDIN else Path(source).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read the secret: {exc}", file=sys.stderr)
        return None


def cmd_connections_put(args: argparse.Namespace) -> int:
    """The secret comes from a file or stdin, never the command line (shell history, ps)."""
    secret = _read_secret(str(args.secret_file))
    if secret is None:
        return EXIT_USAGE
    body: dict[str, Any] = {"kind": args.kind, "secret": secret}
    allowed = _allowed(args)
    if allowed is not None:
        body["allowedWorkflows"] = allowed
    with _client(args) as client:
        response = client.put(f"/api/v1/connections/{_path(args.name)}", json=body)
    if response.status_code != 200:
        return _refused(response)
    print(_connection_line(response.json()))
    return EXIT_OK


def cmd_connections_allow(args: argparse.Namespace) -> int:
    """Replaces the connection's allow-list."""
    allowed = _allowed(args)
    if allowed is None and not args.none:
        print("error: name workflows with --allow, or give --all-workflows or --none", file=sys.stderr)
        return EXIT_USAGE
    allowed = allowed or []
    with _client(args) as client:
        response = client.patch(f"/api/v1/connections/{_path(args.name)}", json={"allowedWorkflows": allowed})
    if response.status_code != 200:
        return _refused(response)
    print(_connection_line(response.json()))
    return EXIT_OK


def cmd_connections_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.delete(f"/api/v1/connections/{_path(args.name)}")
    if response.status_code != 204:
        return _refused(response)
    print(f"connection {args.name} deleted")
    return EXIT_OK


def _add_connections(sub: Any) -> None:
    connections = sub.add_parser("connections", help="stored connections: list, put, allow, delete")
    csub = connections.add_subparsers(dest="connections_command", required=True)
    clist = csub.add_parser("list", help="stored connections and the workflows that may use them")
    clist.add_argument("--limit", type=_large_page_size, default=1000, help="rows a page (1 to 1000, the default)")
    clist.add_argument("--cursor", help="the next page: the cursor a previous page gave")
    clist.add_argument("--json", action="store_true")
    clist.add_argument("--api-url")
    clist.set_defaults(func=cmd_connections_list)
    put = csub.add_parser("put", help="store a connection's secret (a new one is usable by no workflow until allowed)")
    put.add_argument("name")
    put.add_argument(
        "--kind",
        required=True,
        help="the connector that uses it: http (a JSON secret), slack, monday (a token), or an installed "
        "action's connector (the API refuses others)",
    )
    put.add_argument("--secret-file", required=True, help="a file holding the secret, or - for stdin")
    allow = csub.add_parser("allow", help="set the workflows that may use a connection (replaces them)")
    for parser in (put, allow):
        # One of them: '*' beside ids would make the ids meaningless (the API refuses the mix).
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--allow", action="append", metavar="WORKFLOW", help="a workflow that may use it")
        who.add_argument("--all-workflows", action="store_true", help="every workflow may use it ('*')")
        if parser is allow:
            who.add_argument("--none", action="store_true", help="no workflow may use it")
        parser.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
        parser.add_argument("--api-url")
    put.set_defaults(func=cmd_connections_put)
    allow.add_argument("name")
    allow.set_defaults(func=cmd_connections_allow)
    remove = csub.add_parser("delete", help="remove a stored connection")
    remove.add_argument("name")
    remove.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    remove.add_argument("--api-url")
    remove.set_defaults(func=cmd_connections_delete)


def _add_signals_and_approvals(sub: Any) -> None:
    signal_parser = sub.add_parser("signal", help="send a named signal to an execution")
    signal_parser.add_argument("execution_id")
    signal_parser.add_argument("name")
    signal_parser.add_argument("--payload", default="{}", help="the signal's payload, a JSON object")
    signal_parser.add_argument("--signal-id", help="idempotency key: the same id again is the same signal")
    signal_parser.add_argument("--correlation-key", help="only a wait with this key (or none) takes it")
    signal_parser.add_argument("--principal", help="who sends it (default $DW_PRINCIPAL_ID)")
    signal_parser.add_argument("--api-url")
    signal_parser.set_defaults(func=cmd_signal)

    every = sub.add_parser(
        "signal-all", help="send a named signal to every run waiting for it (by correlation key, not by run)"
    )
    every.add_argument("name")
    every.add_argument("--correlation-key", help="only waits with this key (without it: only waits with none)")
    every.add_argument("--payload", default="{}", help="the signal's payload, a JSON object")
    every.add_argument("--signal-id", help="idempotency key: sent again, it reaches only the runs that lack it")
    every.add_argument("--workflow", type=_filter_value, help="only runs of this workflow")
    every.add_argument("--limit", type=_large_page_size, default=1000, help="at most this many runs (1 to 1000)")
    every.add_argument("--principal", help="who sends it (default $DW_PRINCIPAL_ID)")
    every.add_argument("--api-url")
    every.set_defaults(func=cmd_signal_all)

    events = sub.add_parser("events", help="publish CloudEvents to the workflows' event triggers")
    esub = events.add_subparsers(dest="events_command", required=True)
    publish = esub.add_parser("publish", help="publish an event: each matching event trigger starts a run")
    publish.add_argument("type", help="the event's type (com.example.order.created)")
    publish.add_argument("--source", required=True, help="who it comes from (a URI reference: /shop)")
    publish.add_argument("--id", help="its id, unique for its source (default: a new UUID); again: a duplicate")
    publish.add_argument("--subject", help="what in the source it is about")
    publish.add_argument("--data", help="its data, JSON (an object becomes the runs' trigger)")
    publish.add_argument("--principal", help="who publishes it (default $DW_PRINCIPAL_ID)")
    publish.add_argument("--api-url")
    publish.set_defaults(func=cmd_events_publish)

    approvals = sub.add_parser("approvals", help="approvals waiting for people's decisions")
    asub = approvals.add_subparsers(dest="approvals_command", required=True)
    alist = asub.add_parser("list", help="open approvals (--all: decided ones too)")
    alist.add_argument("--principal", help="only those this principal may decide")
    alist.add_argument("--all", action="store_true")
    alist.add_argument("--limit", type=_page_size, default=100, help="rows a page (1 to 500)")
    alist.add_argument("--cursor", help="the next page: the cursor a previous page gave")
    alist.add_argument("--json", action="store_true", help="print the page as a JSON list (the next cursor on stderr)")
    alist.add_argument("--api-url")
    alist.set_defaults(func=cmd_approvals_list)
    for decision in ("approve", "reject"):
        decide = sub.add_parser(decision, help=f"{decision} an approval, as --principal or $DW_PRINCIPAL_ID")
        decide.add_argument("approval_id")
        decide.add_argument("--comment", help="kept with the decision")
        decide.add_argument("--principal", help="who decides (default $DW_PRINCIPAL_ID)")
        decide.add_argument("--api-url")
        decide.set_defaults(func=cmd_decide, decision=decision)


def _retention_change(args: argparse.Namespace) -> dict[str, int | None] | None:
    """The PATCH body from the retention command's options (None: only show it)."""
    from dataworkflows.retention import MAX_RETENTION_DAYS

    if args.days is not None:
        if not 0 <= args.days <= MAX_RETENTION_DAYS:
            raise ValueError(f"--days is 0 (keep forever) to {MAX_RETENTION_DAYS}, not {args.days}")
        return {"retentionDays": args.days}
    if args.forever:
        return {"retentionDays": 0}
    if args.default:
        return {"retentionDays": None}
    return None


def _retention_text(days: int | None) -> str:
    if days is None:
        return "the default (DW_RETENTION_DAYS)"
    return "forever" if days == 0 else f"{days} days"


def cmd_workflows_retention(args: argparse.Namespace) -> int:
    """Shows how long a workflow's finished runs are kept, or sets it."""
    try:
        change = _retention_change(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = f"/api/v1/workflows/{_path(args.workflow_id)}"
    with _client(args) as client:
        response = client.patch(f"{path}/retention", json=change) if change is not None else client.get(path)
    if response.status_code != 200:
        return _refused(response)
    workflow = response.json()
    print(f"{workflow['id']}  finished runs kept {_retention_text(workflow.get('retentionDays'))}")
    return EXIT_OK


def _add_workflow_retention(wsub: Any) -> None:
    retention = wsub.add_parser(
        "retention", help="show how long a workflow's finished runs are kept, or set it (admin role)"
    )
    retention.add_argument("workflow_id")
    choice = retention.add_mutually_exclusive_group()
    choice.add_argument("--days", type=int, help="keep its finished runs this many days after they ended")
    choice.add_argument("--forever", action="store_true", help="never remove its finished runs")
    choice.add_argument("--default", action="store_true", help="follow DW_RETENTION_DAYS again")
    retention.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    retention.add_argument("--api-url")
    retention.set_defaults(func=cmd_workflows_retention)


@contextlib.contextmanager
def _engine_database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL, else the embedded database under DW_DATA_DIR (as `psql` does)."""
    if settings.database_url:
        yield settings.database_url
        return
    from dataworkflows.embedded import EmbeddedPostgres, has_cluster

    if not has_cluster(settings.data_dir):
        # Not made here: a mistyped DW_DATA_DIR would get a new, empty server (46 MB), and psql an
        # empty database without a word. `up` is what makes one.
        raise DataWorkflowsError(
            f"no embedded database under {os.path.abspath(settings.data_dir)}: `dataworkflows up` makes one "
            "there; set DW_DATA_DIR to the directory `up` uses (default .dataworkflows), or DATABASE_URL"
        )
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        yield embedded.uri()
    finally:
        embedded.stop()


def _prune_plan(args: argparse.Namespace, settings: Settings) -> Any:
    """What `prune` removes, from its options (ValueError with a message for bad input)."""
    from dataworkflows.retention import MIN_SAFE_AGE_SECONDS, Prune, default_seconds, parse_age
    from dataworkflows.tenancy import is_valid_tenant

    if args.tenant is not None and not is_valid_tenant(args.tenant):
        raise ValueError(f"--tenant {args.tenant!r} is not a tenant id")
    if args.workflow is not None and not args.workflow.strip():
        raise ValueError("--workflow needs a workflow id")
    seconds = parse_age(args.older_than) if args.older_than is not None else default_seconds(settings.retention_days)
    if seconds is not None and seconds < MIN_SAFE_AGE_SECONDS and not args.force:
        given = (
            f"--older-than {args.older_than}"
            if args.older_than is not None
            else (f"DW_RETENTION_DAYS={settings.retention_days:g}")
        )
        raise ValueError(f"{given} removes runs that ended less than an hour ago: add --force if that is what you mean")
    batch = settings.retention_batch_size if args.batch_size is None else args.batch_size
    return Prune(default_seconds=seconds, batch=batch, workflow_id=args.workflow, tenant=args.tenant)


def _cutoff_text(plan: Any) -> str:
    """The cutoff of workflows without their own retention, said before anything is removed."""
    if plan.default_seconds is None:
        return "cutoff: runs of workflows without their own retention are kept (DW_RETENTION_DAYS is off)"
    cutoff = datetime.now(UTC) - timedelta(seconds=plan.default_seconds)
    return (
        f"cutoff: trees whose runs all ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC "
        "(workflows with their own retention: theirs)"
    )


def cmd_prune(args: argparse.Namespace) -> int:
    """Removes finished runs past their retention now (every batch), or says what it would remove."""
    settings = _settings(args)
    try:
        plan = _prune_plan(args, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if plan.default_seconds is None:
        print(
            "note: DW_RETENTION_DAYS is off and no --older-than was given: only runs of workflows that set "
            "their own retention are pruned",
            file=sys.stderr,
        )
    import asyncio

    import psycopg

    with _engine_database(settings) as url:
        try:
            return asyncio.run(_prune(url, settings, plan, dry_run=args.dry_run))
        except psycopg.errors.UndefinedFunction:
            print(
                "error: this database has no retention procedures: run `dataworkflows migrate` first", file=sys.stderr
            )
            return EXIT_USAGE


def _preview_text(preview: Any) -> str:
    text = f"would prune {preview.trees:,} trees ({preview.executions:,} executions, {preview.events:,} events)"
    if preview.oldest_ended_at is not None:
        text += f"; the oldest ended {preview.oldest_ended_at:%Y-%m-%d %H:%M %Z}"
    return text


async def _prune(url: str, settings: Settings, plan: Any, *, dry_run: bool) -> int:
    import psycopg

    from dataworkflows.db import Database, make_pool, translate_errors
    from dataworkflows.retention import Progress, prune_due, summary
    from dataworkflows.tenancy import all_tenants

    # One attempt first: an unreachable server is said at once, in psycopg's words (the pool would
    # log a warning for each of its retries, then time out).
    try:
        probe = await psycopg.AsyncConnection.connect(url, **_probe_settings(url, settings))
    except psycopg.OperationalError as exc:
        raise connection_failed("cannot prune", exc) from None
    await probe.close()
    # Then what the worker and the API are asked (a review: a DW_DB_ROLE the login may not act as was
    # "the database is unavailable" 10 s later, exit 3; a database migrated part way, a traceback).
    import asyncio

    await asyncio.to_thread(_require_schema, url, settings, unreachable_ok=False)
    pool = make_pool(url, min_size=1, max_size=2, name="prune", role=settings.database_role)
    with translate_errors():
        await pool.open(wait=True, timeout=settings.db_timeout_seconds * 2)
    try:
        db = Database(pool)
        with all_tenants():
            if plan.workflow_id is not None and not await db.retention.workflow_known(plan.workflow_id, plan.tenant):
                where = f"in tenant {plan.tenant}" if plan.tenant else "in any tenant"
                print(f"error: workflow {plan.workflow_id} not found ({where}): nothing was pruned", file=sys.stderr)
                return EXIT_USAGE
            # Said once the database and the workflow are found (a missing one is said alone, a review),
            # before anything is removed.
            print(_cutoff_text(plan), flush=True)
            if dry_run:
                preview = await db.retention.preview(
                    default_seconds=plan.default_seconds, workflow_id=plan.workflow_id, tenant=plan.tenant
                )
                print(_preview_text(preview))
                return EXIT_OK
            started = time.monotonic()
            progress = Progress(lambda so_far: print(f"... {summary(so_far)}", flush=True), every=5.0)
            total = await prune_due(db, plan, on_batch=progress)
    finally:
        await pool.close()
    seconds = time.monotonic() - started
    rate = f", {total.rows / seconds:,.0f} rows/s" if seconds > 0 and total.rows else ""
    print(f"pruned {summary(total)} in {seconds:.1f} s{rate}")
    return EXIT_OK


def cmd_examples_load(args: argparse.Namespace) -> int:
    """The example workflows, templates and document template sets, as `up` loads them, into
    DATABASE_URL, else the embedded database under DW_DATA_DIR (docker compose's one-shot `examples`
    service). Safe to run again: unchanged examples stay at their versions."""
    import asyncio
    from dataclasses import replace

    settings = _settings(args)
    # DATABASE_URL, else the embedded database under DW_DATA_DIR (as psql and prune take it).
    with _engine_database(settings) as url:
        _require_schema(url, settings, unreachable_ok=False)
        asyncio.run(_load_examples(replace(settings, database_url=url)))
    return EXIT_OK


def _add_examples(sub: Any) -> None:
    examples = sub.add_parser("examples", help="the example workflows shipped with the engine")
    esub = examples.add_subparsers(dest="examples_command", required=True)
    load = esub.add_parser(
        "load",
        help="load them as Active, as `up` does, into DATABASE_URL (else DW_DATA_DIR's embedded database; safe "
        "to run again)",
    )
    load.set_defaults(func=cmd_examples_load)


class _StdoutFailed(Exception):
    """stdout could not take an event's line (a full disk, an I/O error; a closed pipe is a
    BrokenPipeError, said otherwise)."""


class _AuditExport:
    """What `audit-log` has written: each line is flushed before it counts, so that `last` is the last
    event whose line reached stdout whole, wherever the export stops (until this release it was the
    last whole page's, and a reader that stopped mid-page, or a full disk, was told an id before
    events already written, or after events that never were)."""

    def __init__(self, after: int) -> None:
        self.written = 0
        self.last = after
        self.reader_gone = False

    def write(self, item: dict[str, Any]) -> None:
        try:
            # ASCII, every other character a JSON escape: the terminal guard (_terminal_safe) wrote a
            # C1 control as `\x85`, no JSON escape, and the line could not be read back.
            sys.stdout.write(json.dumps(item, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.reader_gone = True
            raise
        except OSError as exc:
            raise _StdoutFailed(f"writing event {item['id']} to stdout failed ({exc})") from exc
        self.written += 1
        self.last = item["id"]

    def summary(self) -> str:
        if self.reader_gone:
            # What the pipe took is not what its reader read (`| head` leaves lines unread in it): an
            # id to go on from could pass over events nobody read.
            return (
                f"{self.written} events written before stdout's reader went (it may not have read them all);"
                " the next export: --after the last id it kept"
            )
        return f"{self.written} events; the next export: --after {self.last}"


def cmd_audit_log(args: argparse.Namespace) -> int:
    """Every run's log events after --after, in order, as NDJSON (a line each), a page at a time until
    none is left or --max are written; the last id on stderr, for the next export's --after."""
    params: dict[str, Any] = {"after": args.after, "limit": args.page_size, "settleSeconds": args.settle}
    if args.workflow:
        params["workflowId"] = args.workflow
    if args.type:
        params["type"] = args.type
    export = _AuditExport(args.after)
    # Said however the export ends: one cut by a failing page (a 503, a lost connection) has written
    # its first pages, and the next export goes on after them (it wrote them again from the old --after).
    try:
        with _client(args) as client:
            while args.max is None or export.written < args.max:
                if args.max is not None:
                    params["limit"] = min(args.page_size, args.max - export.written)
                response = client.get("/api/v1/audit-log", params={**params, "after": export.last})
                if response.status_code != 200:
                    return _refused(response)
                page = response.json()
                for item in page["items"]:
                    export.write(item)
                if page["nextAfter"] is None:
                    break
    except _StdoutFailed as exc:
        print(f"error: {exc}: its line may be cut short at the end of the output", file=sys.stderr)
        _stdout_to_devnull()  # the rest of that line, still buffered, would fail again at exit
        return EXIT_RUN_FAILED
    finally:
        print(export.summary(), file=sys.stderr)
    return EXIT_OK


def _add_audit_log(sub: Any) -> None:
    audit = sub.add_parser(
        "audit-log", help="every run's log events, in order, as NDJSON (for a SIEM or an archive; through the API)"
    )
    audit.add_argument("--after", type=_letter_id, default=0, help="after this event id (what the last export said)")
    audit.add_argument("--workflow", type=_filter_value, help="only events of runs of this workflow")
    audit.add_argument(
        "--type", type=_filter_value, help="only events of this type (execution_cancelled, approval_decided, ...)"
    )
    audit.add_argument("--max", type=_positive_int, help="at most this many events (default: all)")
    audit.add_argument(
        "--settle",
        type=_bounded_int(0, 3600),
        default=5,
        metavar="SECONDS",
        help="stop at the first event written less than this long ago (default 5: the next export's --after "
        "passes over none whose transaction was still open)",
    )
    audit.add_argument("--page-size", type=_bounded_int(1, 5000), default=1000, help="events a request (1 to 5000)")
    audit.add_argument("--api-url")
    audit.set_defaults(func=cmd_audit_log)


def _add_prune(sub: Any) -> None:
    prune = sub.add_parser(
        "prune",
        help="remove finished runs past their retention now, with their nodes, attempts and events "
        "(straight to the database, like migrate)",
    )
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        help="the age (30d, 12h, 90min, 3600s, 2w; `m` is refused: min or d?) for workflows without their own "
        "retention (default DW_RETENTION_DAYS); a workflow's own retention still applies",
    )
    prune.add_argument("--force", action="store_true", help="allow an --older-than under one hour")
    prune.add_argument("--workflow", metavar="ID", help="only this workflow's runs")
    prune.add_argument("--tenant", help="only this tenant's runs (default: every tenant)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    prune.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="runs a transaction, whole trees (default DW_RETENTION_BATCH_SIZE, 1000; a larger tree goes alone)",
    )
    prune.set_defaults(func=cmd_prune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataworkflows",
        description="A durable workflow engine on PostgreSQL. `dataworkflows COMMAND --help` tells more.",
    )
    parser.add_argument("--version", action="version", version=f"dataworkflows {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="embedded database (unless DATABASE_URL) + migrations + examples + API + worker")
    up.add_argument("--host", help="the API's host (default $DW_API_HOST, else 127.0.0.1)")
    up.add_argument(
        "--port", type=int, help="the API's port (default $DW_API_PORT, else 5131); point the CLI at it with DW_API_URL"
    )
    up.add_argument(
        "--concurrency", type=int, help="executions run at once by the worker (default $DW_WORKER_CONCURRENCY, else 40)"
    )
    up.add_argument("--no-examples", action="store_true", help="do not load the example workflows")
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply database migrations (safe while the previous release runs)")
    mig.add_argument(
        "--finish",
        action="store_true",
        help="every process runs this release: also apply Procrastinate's post migrations held back for old workers",
    )
    mig.set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", help="listen here (default $DW_API_HOST, else 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen here (default $DW_API_PORT, else 5131)")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a worker (start several to scale out)")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="executions run at once (default $DW_WORKER_CONCURRENCY, else 40)",
    )
    worker.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    worker.add_argument(
        "--fetchers", type=int, default=None, help="job fetch loops sharing the concurrency (default 2)"
    )
    worker.set_defaults(func=cmd_worker)

    run = sub.add_parser("run", help="start an execution through the API (--wait: follow it to its end)")
    run.add_argument("workflow")
    run.add_argument(
        "--trigger",
        metavar="JSON",
        help="the trigger, a JSON object (default: the workflow's metadata.sampleTrigger if it has one, else {})",
    )
    run.add_argument(
        "--request-id",
        type=_request_id,
        help="idempotency key (1 to 200 characters): the same one again is the same execution",
    )
    run.add_argument(
        "--priority",
        type=_priority,
        metavar="N",
        help="the run's priority, -100 to 100, higher first (default: the workflow's orchestration.priority, else 0)",
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="show nodes as they start and end, with elapsed times; the exit code tells how the run ended",
    )
    run.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"with --wait: give up after this long: exit code 4, the run goes on (default {DEFAULT_WAIT_SECONDS:g})",
    )
    run.add_argument("--api-url")
    run.set_defaults(func=cmd_run)

    logs = sub.add_parser("logs", help="an execution's log (--follow: live, until it ends)")
    logs.add_argument("execution_id")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="stream new events until the run ends; exit code as run --wait"
    )
    logs.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="with --follow: stop after this long, exit code 4 (default: until the run ends)",
    )
    logs.add_argument("--api-url")
    logs.set_defaults(func=cmd_logs)

    workflows = sub.add_parser("workflows", help="manage workflows through the API")
    wsub = workflows.add_subparsers(dest="workflows_command", required=True)
    apply = wsub.add_parser("apply", help="create a workflow from FILE, or add it as a new version")
    apply.add_argument("file")
    apply.add_argument("--publish", action="store_true", help="publish the version (make it Active)")
    apply.add_argument("--api-url")
    apply.set_defaults(func=cmd_workflows_apply)
    wlist = wsub.add_parser("list", help="list workflows")
    wlist.add_argument("--json", action="store_true", help="print every workflow's row as a JSON list")
    wlist.add_argument("--api-url")
    wlist.set_defaults(func=cmd_workflows_list)
    limits = wsub.add_parser(
        "limits", help="show a workflow's start limits, or set or clear them (root runs over them wait)"
    )
    limits.add_argument("workflow_id")
    limits.add_argument(
        "--max-concurrent",
        type=_bounded_int(1, MAX_CONCURRENT_EXECUTIONS),
        help="root runs Running or Waiting at once",
    )
    limits.add_argument(
        "--per-minute",
        type=_bounded_int(1, MAX_RATE_PER_MINUTE),
        help="root runs started per minute (one every 60/N s; at most 60,000)",
    )
    limits.add_argument("--clear-max-concurrent", action="store_true", help="no concurrency limit")
    limits.add_argument("--clear-per-minute", action="store_true", help="no rate limit")
    limits.add_argument("--clear", action="store_true", help="clear both")
    limits.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    limits.add_argument("--api-url")
    limits.set_defaults(func=cmd_workflows_limits)
    archive = wsub.add_parser("archive", help="archive a workflow (refuse new executions)")
    archive.add_argument("workflow_id")
    archive.add_argument("--api-url")
    archive.set_defaults(func=cmd_workflows_archive)
    remove = wsub.add_parser(
        "delete",
        help="delete a workflow that has no executions, with its versions, plans and triggers"
        " (refused while it has runs: prune them first)",
    )
    remove.add_argument("workflow_id")
    remove.add_argument("--api-url")
    remove.set_defaults(func=cmd_workflows_delete)
    for action, help_text in (
        ("disable", "disable a workflow: refuse new executions, whatever its status (running ones finish)"),
        ("enable", "enable a disabled workflow again"),
    ):
        toggle = wsub.add_parser(action, help=help_text)
        toggle.add_argument("workflow_id")
        toggle.add_argument("--api-url")
        toggle.set_defaults(func=cmd_workflows_enabled, action=action)
    _add_workflow_retention(wsub)

    dead = sub.add_parser("dead-letters", help="what needs a human: list, show, redrive, acknowledge")
    dsub = dead.add_subparsers(dest="dead_letters_command", required=True)
    dlist = dsub.add_parser("list", help="open dead letters (--all: also redriven and closed ones)")
    dlist.add_argument("--all", action="store_true", help="also those redriven or acknowledged")
    dlist.add_argument("--kind", choices=[k.value for k in DeadLetterKind], help="only letters of this kind")
    dlist.add_argument("--limit", type=_page_size, default=100, help="rows a page (1 to 500)")
    dlist.add_argument("--cursor", help="the next page: the cursor a previous page gave")
    dlist.add_argument("--json", action="store_true", help='print {"items": [...], "nextCursor": ...} as JSON')
    dlist.add_argument("--api-url")
    dlist.set_defaults(func=cmd_dead_letters_list)
    show = dsub.add_parser("show", help="one dead letter, whole: its run, error, failed steps and child runs")
    show.add_argument("dead_letter_id", type=int)
    show.add_argument("--json", action="store_true", help="print the letter as the API answers it")
    show.add_argument("--api-url")
    show.set_defaults(func=cmd_dead_letters_show)
    redrive = dsub.add_parser("redrive", help="re-run the failed part of a dead-lettered run (once)")
    redrive.add_argument("dead_letter_id", type=int)
    redrive.add_argument("--wait", action="store_true", help="follow the run until it ends (as run --wait)")
    redrive.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"with --wait: stop waiting after this long, exit code 4 (default {DEFAULT_WAIT_SECONDS:g})",
    )
    redrive.add_argument("--api-url")
    redrive.set_defaults(func=cmd_dead_letters_redrive)
    again = dsub.add_parser(
        "redrive-all", help="redrive the open dead letters that match, oldest first, each as its own redrive"
    )
    again.add_argument("--kind", choices=[k.value for k in DeadLetterKind], help="only letters of this kind")
    again.add_argument("--workflow", type=_filter_value, help="only letters of runs of this workflow")
    again.add_argument("--limit", type=_bulk_limit, default=100, help="letters a request (1 to 1000)")
    again.add_argument("--after", type=_letter_id, default=0, help="after this letter id (what the last one printed)")
    again.add_argument("--principal", help="who asks (default $DW_PRINCIPAL_ID)")
    again.add_argument("--api-url")
    again.set_defaults(func=cmd_dead_letters_redrive_all)
    ack = dsub.add_parser("ack", help="close a dead letter without a redrive (once)")
    ack.add_argument("dead_letter_id", type=int)
    ack.add_argument("--note", help="why nothing needs to be re-run")
    ack.add_argument("--api-url")
    ack.set_defaults(func=cmd_dead_letters_ack)

    _add_executions(sub)
    _add_signals_and_approvals(sub)
    _add_triggers(sub)
    _add_connections(sub)
    _add_token(sub)
    _add_prune(sub)
    _add_audit_log(sub)
    _add_examples(sub)

    psql = sub.add_parser("psql", help="psql on the engine's database (DATABASE_URL or the embedded one)")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER, help="passed to psql, e.g. -c 'SELECT ...'")
    psql.set_defaults(func=cmd_psql)

    status = sub.add_parser("status", help="show an execution")
    status.add_argument("execution_id")
    status.add_argument("--json", action="store_true")
    status.add_argument("--api-url")
    status.set_defaults(func=cmd_status)
    return decorate(parser)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        finally:
            # Here, not at exit (also after --help, whose SystemExit goes on): a reader that has
            # gone is handled below.
            sys.stdout.flush()
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        return 130  # while the arguments were read (once a command runs, _main says what it left)
    return code


# Characters a terminal acts on rather than shows: C0 controls but tab and newline (ESC starts the
# sequences that clear the screen, move the cursor or retitle the window; a carriage return rewrites
# the line), DEL and C1 controls, the bidirectional overrides and isolates (U+202E shows "exe.png" for
# "gnp.exe"), and the line and paragraph separators. Each is written as its escape.
_TERMINAL_UNSAFE = {
    code: f"\\x{code:02x}" for code in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))
} | {
    code: f"\\u{code:04x}"
    for code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


class _TerminalText(io.TextIOBase):
    """A text stream that writes through another, each character a terminal would act on written as
    its escape (_TERMINAL_UNSAFE)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text.translate(_TERMINAL_UNSAFE))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


@contextlib.contextmanager
def _terminal_safe(on: bool) -> Iterator[None]:
    """While a command that prints what the API answered runs, its stdout and stderr write no
    character a terminal acts on: a webhook's delivery id, a workflow's name or a run's error came
    from whoever sent them (a review: an X-Delivery-Id of escape sequences, shown by `triggers
    deliveries`, cleared the screen, retitled the window and printed a fake row; a display name with
    U+202E read reversed). JSON output is ASCII already (json.dumps escapes these)."""
    if not on:
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalText(out), _TerminalText(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def _pipe_closed() -> int:
    """stdout's reader has gone (`dataworkflows ... | head`): end quietly, as Python's documentation
    suggests (what is still buffered goes to /dev/null, so the exit flush does not fail again);
    exit code 1, Python's for EPIPE."""
    _stdout_to_devnull()
    return EXIT_RUN_FAILED


def _stdout_to_devnull() -> None:
    """stdout's descriptor, from now on /dev/null: what is still buffered for a stdout that failed
    (a closed pipe, a full disk) is dropped at exit instead of failing again there."""
    with contextlib.suppress(OSError, ValueError):
        descriptor = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["psql"] and not {"-h", "--help"} & set(argv[1:2]):
        # psql's own arguments pass through verbatim, in order (argparse would reorder them).
        args = argparse.Namespace(command="psql", func=cmd_psql, psql_args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    if args.command in LOCAL_COMMANDS:
        from dataworkflows.config import Settings

        try:
            # Settings are checked here, before any command opens a pool or starts a helper.
            settings = Settings.from_env()
        except ConfigurationError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        configure_logging(settings.log_format, settings.log_level)
    # The error lines too: a refused answer's detail, an error's message, come from the server.
    with _terminal_safe(args.command not in LOCAL_COMMANDS):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command, and what is said of what went wrong around it (one line, the documented exit code)."""
    try:
        return int(args.func(args))
    except DataWorkflowsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.code == "database_unavailable" else EXIT_USAGE
    except Refused as exc:
        return _refused(exc.response)
    except _http_errors() as exc:
        return _http_error(args, exc)
    except NotTheApi as exc:
        print(
            f"error: the server at {_shown_api_url(args)} is not the DataWorkflows API (it answered {exc}): "
            "set DW_API_URL or --api-url to the API's URL",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        if args.command not in LOCAL_COMMANDS:
            print("interrupted: nothing was stopped on the server (a started run goes on)", file=sys.stderr)
        return 130
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        if args.command in LOCAL_COMMANDS:
            raise
        # An answer in JSON, but not the API's (another service at that URL, a proxy's JSON error):
        # the commands read the API's fields, and were tracebacks (a review).
        print(
            f"error: the answer of the server at {_shown_api_url(args)} is not the DataWorkflows API's "
            f"({type(exc).__name__}: {exc}): set DW_API_URL or --api-url to the API's URL",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE


def _http_errors() -> tuple[type[Exception], ...]:
    """httpx's errors, if a command imported it (evaluated only when an exception is matched)."""
    httpx = sys.modules.get("httpx")
    return (httpx.TransportError, httpx.InvalidURL) if httpx is not None else ()


def _http_error(args: argparse.Namespace, exc: Exception) -> int:
    import httpx

    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        print(f"error: the API URL {_shown_api_url(args)!r} is not valid: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"error: cannot reach the API at {_shown_api_url(args)} ({exc or type(exc).__name__}): is `dataworkflows up` "
        "running there? (set DW_API_URL or --api-url)",
        file=sys.stderr,
    )
    return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
