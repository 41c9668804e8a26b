"""Processes that start together on a fresh data directory (two `up`s, `up` and a worker from one
script): each makes the engine's database if it is not there yet."""

from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace
from typing import Any

import psycopg

from dataworkflows.embedded import EmbeddedPostgres


def test_processes_making_the_database_at_once_all_start(postgresql: Any) -> None:
    """A review: the second of two `up`s started at once on a fresh data directory ended with
    PostgreSQL's traceback (duplicate key ... pg_database_datname_index): both had found no database,
    and both created it."""
    info = postgresql.info
    name = f"first_start_{uuid.uuid4().hex[:8]}"
    server = SimpleNamespace(
        database=name,
        uri=lambda database: f"host={info.host} port={info.port} user={info.user} dbname={database}",
    )
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def starting() -> None:
        start.wait()
        try:
            EmbeddedPostgres._ensure_database(server)  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=starting) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
    finally:
        with psycopg.connect(server.uri("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
