"""Commands pointed at a database that was never migrated say to migrate it (a review: a worker and
an API ran there logging a traceback a pass, and `examples load` and `prune` printed PostgreSQL's
traceback)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dataworkflows.cli import EXIT_USAGE, main
from tests.fakes import free_port


@pytest.mark.parametrize(
    "argv",
    [["worker"], ["api", "--port", "0"], ["examples", "load"], ["prune", "--dry-run", "--older-than", "30d"]],
)
def test_a_command_on_a_database_never_migrated_says_so(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    postgresql.autocommit = True
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE DATABASE {name}")
    info = postgresql.info
    monkeypatch.setenv("DATABASE_URL", f"host={info.host} port={info.port} user={info.user} dbname={name}")
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    argv = [str(free_port()) if part == "0" else part for part in argv]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no DataWorkflows schema (it was never migrated)" in err and "Traceback" not in err, err


def test_a_login_that_acts_only_through_the_app_role_passes_the_probe(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: the probe read dw.schema_migrations as the login itself; a NOINHERIT member of
    dataworkflows_app (its pooled connections SET ROLE) has no right on schema dw, and prune, worker
    and api failed with a traceback. The catalog says it without one."""
    postgresql.autocommit = True
    login = f"noinherit_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {login} LOGIN NOINHERIT")
    postgresql.execute(f"GRANT dataworkflows_app TO {login}")
    info = postgresql.info
    monkeypatch.setenv("DATABASE_URL", f"host={info.host} port={info.port} user={login} dbname={info.dbname}")
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    assert main(["prune", "--dry-run", "--older-than", "30d"]) == 0
    assert "would prune 0 trees" in capsys.readouterr().out
