"""The migration runner: numbered files, a migrations table, one transaction each, under an
advisory lock so that two processes starting at once do not race. Also installs Procrastinate's
schema (as migration 0000) and (re)creates the stored procedures, which are CREATE OR REPLACE.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate.schema import SchemaManager

from dataworkflows.errors import MigrationError
from dataworkflows.sqlfiles import load_migrations, load_procedures

log = structlog.get_logger("dataworkflows.migrations")

# pg_advisory_lock key: "dataworkflows migrations", stable across versions.
LOCK_KEY = 0x4457_4D49_4752


def _procrastinate_schema() -> str:
    return str(SchemaManager.get_schema())


def migrate(conninfo: str, **connect_kwargs: Any) -> list[str]:
    """Brings the database up to date; returns the versions applied by this call."""
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
            for migration in load_migrations():
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


def _apply(conn: psycopg.Connection[Any], text: str) -> None:
    # Trusted SQL shipped with the package; no parameters, so several statements are allowed.
    conn.execute(text)


def _record(conn: psycopg.Connection[Any], version: str, name: str, checksum: str) -> None:
    conn.execute(
        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (version, name, checksum),
    )


def load_for_tests(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: Any) -> None:
    """pytest-postgresql loader: migrates the template database that each test clones."""
    migrate("", host=host, port=port, user=user, dbname=dbname, password=password or "")
