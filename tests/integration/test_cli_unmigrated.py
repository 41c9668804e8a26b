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
