"""The migration runner: numbered files, a migrations table, one transaction each, under an
advisory lock so that two processes starting at once do not race. Also installs Procrastinate's
schema (as migration 0000), applies Procrastinate's own migrations when the installed Procrastinate
is newer than that schema (procrastinate_schema.py), and (re)creates the stored procedures, which
are CREATE OR REPLACE.

Order: Procrastinate's schema first (our migrations and procedures may use what it adds), then our
migrations, then the procedures. A database that has migrations this code does not know is left
alone, procedures included (an old release's process started during a rolling upgrade must not
put its procedures back): DatabaseNewerError when a newer release migrated it (unknown versions
above our last, or a newer Procrastinate), MigrationError when it diverged (unknown versions at or
below our last). Every migration transaction has a lock timeout (migration_locks).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate.schema import SchemaManager

from dataworkflows import procrastinate_schema
from dataworkflows.errors import DatabaseNewerError, MigrationError, first_line
from dataworkflows.migration_locks import LockPolicy, LockRetry
from dataworkflows.sqlfiles import Migration, load_migrations, load_procedures
from dataworkflows.tcp_liveness import tcp_liveness

log = structlog.get_logger("dataworkflows.migrations")

# pg_advisory_lock key: "dataworkflows migrations", stable across versions.
LOCK_KEY = 0x4457_4D49_4752
# How often a migrate waiting for that lock says so.
LOCK_NOTICE_SECONDS = 5.0


def _procrastinate_schema() -> str:
    return str(SchemaManager.get_schema())


def migrate(
    conninfo: str, *, finish: bool = False, locks: LockPolicy | None = None, **connect_kwargs: Any
) -> list[str]:
    """Brings the database up to date; returns the versions applied by this call (Procrastinate's
    files as ``procrastinate/<file stem>``). `finish`: every process runs this release, so
    Procrastinate's post migrations held back for older workers are applied too. `locks`: how long
    each migration transaction may wait for a lock, and how often it is tried (migration_locks).
    Raises DatabaseNewerError (a newer release migrated the database) or MigrationError, having
    left the procedures alone."""
    applied_now: list[str] = []
    connect_kwargs = {**tcp_liveness(conninfo), **connect_kwargs}
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        retry = LockRetry(
            conn, locks or LockPolicy(), lambda: psycopg.connect(conninfo, autocommit=True, **connect_kwargs)
        )
        _take_lock(conn)
        # Tables force row-level security (0018), on their owner too: a migration that moves data
        # works on every tenant's rows.
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        try:
            applied = _applied(conn)
            if "0000" not in applied:
                retry.run("Procrastinate's schema", lambda: _install_queue_schema(conn))
                applied_now.append("0000")
            migrations = load_migrations()
            _refuse_unknown(conn, applied, migrations)
            _refuse_changed(applied, migrations)
            applied_now += procrastinate_schema.apply_pending(conn, retry, finish=finish)
            applied_now += _apply_ours(retry, migrations, applied)
            retry.run("the procedures", lambda: _install_procedures(conn))
        except BaseException as exc:
            _let_go_after_failure(conn)
            if not isinstance(exc, KeyboardInterrupt) and _interruption_under(exc):
                # psycopg's own clean-up failed while the interruption went through it (a pipeline
                # that cannot end while busy), and its error took the interruption's place.
                raise KeyboardInterrupt from exc
            raise
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def _interruption_under(exc: BaseException) -> bool:
    """Whether an error was raised while a KeyboardInterrupt was being handled (its context)."""
    seen: BaseException | None = exc.__context__
    for _ in range(20):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _let_go_after_failure(conn: psycopg.Connection[Any]) -> None:
    """The lock, let go as what stopped the migrations goes on. An interruption (Ctrl-C, or a stop
    signal `up` turns into one) can come while a statement is in flight and leave the connection
    busy: the unlock failed ("another command is already in progress") and replaced the interruption,
    which `up` and `migrate` then said as a database they cannot reach (exit 3, not 130). A busy
    session is closed instead (its end lets the lock go), and an unlock that fails is not said over
    the error that stopped the migrations."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
        conn.close()
        return
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    except psycopg.Error:
        conn.close()


def _take_lock(conn: psycopg.Connection[Any]) -> None:
    """The migrations' advisory lock, polled for rather than waited for: a session blocked inside
    pg_advisory_lock holds a snapshot, and a no-transaction migration's CREATE INDEX CONCURRENTLY
    in the session holding the lock waits for every older snapshot (two `migrate` at once would
    deadlock). Between tries this session holds none."""
    began = time.monotonic()
    said = 0.0
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            return
        waited = time.monotonic() - began
        if waited - said >= LOCK_NOTICE_SECONDS:
            # A migrate that waits says for whom, rather than nothing (a killed one's session may
            # hold the lock until its server-side backend ends).
            said = waited
            log.warning("waiting for the migration lock", waited_seconds=round(waited), holder=_lock_holder(conn))
        time.sleep(0.1)


def _lock_holder(conn: psycopg.Connection[Any]) -> str:
    """Who holds the migrations' advisory lock, as pg_stat_activity shows it (pid, application, state,
    address, how long it has been connected), or that this role cannot see it."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.state, a.client_addr::text,"
        " round(extract(epoch FROM now() - a.backend_start)) FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = (%(key)s >> 32)::oid"
        " AND l.objid = (%(key)s & 4294967295)::oid AND l.objsubid = 1 LIMIT 1",
        {"key": LOCK_KEY},
    ).fetchone()
    if row is None:
        return "unknown (not visible to this role)"
    pid, application, state, address, age = row
    return f"pid {pid} ({application or 'no application_name'}, {state}, from {address or 'local'}, connected {age} s)"


def _install_queue_schema(conn: psycopg.Connection[Any]) -> None:
    """Procrastinate's schema.sql, unless its tables are there already (then taken to be the
    installed version's), recorded as '0000' with the files it has."""
    exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        conn.execute(_procrastinate_schema())
    conn.execute(
        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES ('0000', %s, %s)",
        (procrastinate_schema.BASELINE + procrastinate.__version__, "procrastinate"),
    )
    procrastinate_schema.record_baseline(conn)


def _applied(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The versions applied and their checksums, the schema and the table made first if need be. A login
    that may not make them, or a dw.schema_migrations of another application's, is a MigrationError
    saying so (a review: a traceback, exit 1, even on a database migrated already)."""
    try:
        conn.execute("CREATE SCHEMA IF NOT EXISTS dw")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS dw.schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        said = first_line(exc, or_else=type(exc).__name__)
        raise MigrationError(
            f"the database user may not create the schema dw or its tables ({said}): run `migrate`"
            " as the database's owner, or as a role that may CREATE in it"
        ) from None
    try:
        rows = conn.execute("SELECT version, checksum FROM dw.schema_migrations").fetchall()
    except psycopg.errors.UndefinedColumn:
        raise MigrationError(
            "dw.schema_migrations is not DataWorkflows' (it has no version and checksum columns): this database's"
            " schema dw belongs to another application; give DataWorkflows a database of its own"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        said = first_line(exc, or_else=type(exc).__name__)
        raise MigrationError(
            f"the database user may not read dw.schema_migrations ({said}): run `migrate` as the database's owner"
        ) from None
    return {str(row[0]): str(row[1]) for row in rows}


def unknown_migrations(applied: Iterable[str], known: Iterable[str]) -> tuple[list[str], list[str]]:
    """Our migration versions in `applied` that are not `known`: (newer, diverged). Newer: all above
    the highest known one, with every known one applied (a newer release migrated the database).
    Diverged: any other (another branch or build migrated it)."""
    known_set = set(known)
    applied_set = {v for v in applied if v.isdigit() and v != "0000"}
    unknown = sorted(applied_set - known_set)
    if not unknown:
        return [], []
    last = max(known_set, default="")
    if all(v > last for v in unknown) and known_set <= applied_set | {"0000"}:
        return unknown, []
    return [], unknown


def _refuse_unknown(conn: psycopg.Connection[Any], applied: dict[str, str], migrations: list[Migration]) -> None:
    """Stops before anything is applied (procedures included) when another release migrated the
    database: an old release's process that migrates at start must not undo an upgrade."""
    known = [m.version for m in migrations]
    newer, diverged = unknown_migrations(applied, known)
    last = max(known)
    if diverged:
        missing = sorted(set(known) - set(applied))
        why = (
            f"at or below this release's last one ({last})"
            if any(v <= last for v in diverged)
            else f"and lacks some of this release's ({', '.join(missing)})"
        )
        raise MigrationError(
            f"the database has migrations this release does not know ({', '.join(diverged)}) {why}: another "
            "branch or build migrated it. Nothing was applied and the procedures were left alone; migrate it "
            "with the build that made those migrations, or restore it."
        )
    state = procrastinate_schema.read_state(conn)
    queue = state.newest() if state is not None else None
    installed = procrastinate_schema.installed_version()
    if newer or (queue is not None and queue > installed):
        what = (
            f"migrations {', '.join(newer)} (this release ends at {last})"
            if newer
            else f"Procrastinate {procrastinate_schema.version_text(queue or installed)} (this release has "
            f"{procrastinate.__version__})"
        )
        raise DatabaseNewerError(
            f"the database was migrated by a newer release ({what}): nothing was applied and the procedures "
            "were left alone. Run `dataworkflows migrate` of that release; this release's API and workers "
            "may keep running during a rolling upgrade."
        )


def _refuse_changed(applied: dict[str, str], migrations: list[Migration]) -> None:
    """Stops before anything is applied (Procrastinate's migrations and the procedures included)
    when an applied migration's file is not the text the database applied (nor an earlier text of
    it this release knows: sqlfiles.EARLIER_CHECKSUMS)."""
    for migration in migrations:
        if migration.version in applied and not migration.accepts(applied[migration.version]):
            raise MigrationError(
                f"migration {migration.version}_{migration.name} changed after it was applied; "
                "migrations are forward-only: add a new one instead. Nothing was applied and the "
                "procedures were left alone"
            )


def _apply_ours(retry: LockRetry, migrations: list[Migration], applied: dict[str, str]) -> list[str]:
    conn = retry.conn
    done = []
    for migration in migrations:
        if migration.version in applied:
            continue  # as applied (_refuse_changed)
        log.info("applying migration", version=migration.version, name=migration.name)

        def work(m: Migration = migration) -> None:
            for statement in m.statements:
                _apply(conn, statement)
            _record(conn, m.version, m.name, m.checksum)

        try:
            retry.run(f"migration {migration.version}_{migration.name}", work, transactional=migration.transactional)
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.version}_{migration.name} failed: {exc}") from exc
        done.append(migration.version)
    return done


def _install_procedures(conn: psycopg.Connection[Any]) -> None:
    for name, text in load_procedures():
        try:
            _apply(conn, text)
        except psycopg.errors.LockNotAvailable:
            raise
        except psycopg.Error as exc:
            raise MigrationError(f"procedures in {name} failed: {exc}") from exc


def _apply(conn: psycopg.Connection[Any], text: str) -> None:
    # Trusted SQL shipped with the package; no parameters, so several statements are allowed.
    conn.execute(text)


def _record(conn: psycopg.Connection[Any], version: str, name: str, checksum: str) -> None:
    conn.execute(
        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (version, name, checksum),
    )


def held_back(conninfo: str, **connect_kwargs: Any) -> list[str]:
    """Procrastinate's post migrations that wait for the previous release's workers to be gone."""
    with psycopg.connect(conninfo, autocommit=True, **{**tcp_liveness(conninfo), **connect_kwargs}) as conn:
        exists = conn.execute("SELECT to_regclass('dw.schema_migrations') IS NOT NULL").fetchone()
        return procrastinate_schema.held_back(conn) if exists and exists[0] else []


def load_for_tests(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: Any) -> None:
    """pytest-postgresql loader: migrates the template database that each test clones."""
    migrate("", host=host, port=port, user=user, dbname=dbname, password=password or "")
