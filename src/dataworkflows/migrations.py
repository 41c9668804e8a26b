"""The migration runner: numbered files, a migrations table, one transaction each, under an
advisory lock so that two processes starting at once do not race. Also installs Procrastinate's
schema (as migration 0000), applies Procrastinate's own migrations when the installed Procrastinate
is newer than that schema (procrastinate_schema.py), and (re)creates the stored procedures, which
are CREATE OR REPLACE.

Order: Procrastinate's schema first (our migrations and procedures may use what it adds), then our
migrations, then the procedures. A database that has a migration this code does not know was
migrated by a newer release: nothing is applied and the procedures are left alone (an old
release's process started during a rolling upgrade must not put its procedures back).
"""

from __future__ import annotations

from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate.schema import SchemaManager

from dataworkflows import procrastinate_schema
from dataworkflows.errors import MigrationError
from dataworkflows.sqlfiles import Migration, load_migrations, load_procedures

log = structlog.get_logger("dataworkflows.migrations")

# pg_advisory_lock key: "dataworkflows migrations", stable across versions.
LOCK_KEY = 0x4457_4D49_4752


def _procrastinate_schema() -> str:
    return str(SchemaManager.get_schema())


def migrate(conninfo: str, *, finish: bool = False, **connect_kwargs: Any) -> list[str]:
    """Brings the database up to date; returns the versions applied by this call (Procrastinate's
    files as ``procrastinate/<file stem>``). `finish`: every process runs this release, so
    Procrastinate's post migrations held back for older workers are applied too."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        # Tables force row-level security (0018), on their owner too: a migration that moves data
        # works on every tenant's rows.
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS dw")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dw.schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM dw.schema_migrations")}
            if "0000" not in applied:
                with conn.transaction():
                    exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
                    if not (exists and exists[0]):
                        conn.execute(_procrastinate_schema())
                    conn.execute(
                        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES ('0000', %s, %s)",
                        (f"procrastinate_schema {procrastinate.__version__}", "procrastinate"),
                    )
                applied_now.append("0000")
            migrations = load_migrations()
            newer = _unknown_versions(applied, migrations)
            if newer:
                log.warning("the database was migrated by a newer release: nothing applied", unknown=newer)
                return applied_now
            applied_now += procrastinate_schema.apply_pending(conn, finish=finish)
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version}_{migration.name} changed after it was applied; "
                            "migrations are forward-only: add a new one instead"
                        )
                    continue
                log.info("applying migration", version=migration.version, name=migration.name)
                try:
                    if migration.transactional:
                        with conn.transaction():
                            _apply(conn, migration.sql)
                            _record(conn, migration.version, migration.name, migration.checksum)
                    else:
                        _apply(conn, migration.sql)
                        _record(conn, migration.version, migration.name, migration.checksum)
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.version}_{migration.name} failed: {exc}") from exc
                applied_now.append(migration.version)
            with conn.transaction():
                for name, text in load_procedures():
                    try:
                        _apply(conn, text)
                    except psycopg.Error as exc:
                        raise MigrationError(f"procedures in {name} failed: {exc}") from exc
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def _unknown_versions(applied: dict[str, str], migrations: list[Migration]) -> list[str]:
    known = {m.version for m in migrations}
    return sorted(v for v in applied if v.isdigit() and v != "0000" and v not in known)


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
    with psycopg.connect(conninfo, autocommit=True, **connect_kwargs) as conn:
        exists = conn.execute("SELECT to_regclass('dw.schema_migrations') IS NOT NULL").fetchone()
        return procrastinate_schema.held_back(conn) if exists and exists[0] else []


def load_for_tests(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: Any) -> None:
    """pytest-postgresql loader: migrates the template database that each test clones."""
    migrate("", host=host, port=port, user=user, dbname=dbname, password=password or "")
