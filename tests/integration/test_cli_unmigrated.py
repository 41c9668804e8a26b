"""Commands pointed at a database that was never migrated say to migrate it (a review: a worker and
an API ran there logging a traceback a pass, and `examples load` and `prune` printed PostgreSQL's
traceback)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataworkflows.cli import EXIT_USAGE, main
from tests.fakes import free_port

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"

# The commands that probe the database before they start (cli._require_schema).
PROBED = [["worker"], ["api", "--port", "0"], ["examples", "load"], ["prune", "--dry-run", "--older-than", "30d"]]


def url_of(postgresql: Any, *, user: str | None = None, dbname: str | None = None) -> str:
    """The test server's conninfo, as another user or for another database."""
    info = postgresql.info
    return f"host={info.host} port={info.port} user={user or info.user} dbname={dbname or info.dbname}"


@pytest.mark.parametrize("argv", PROBED)
def test_a_command_on_a_database_never_migrated_says_so(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    postgresql.autocommit = True
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, dbname=name))
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
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, user=login))
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    assert main(["prune", "--dry-run", "--older-than", "30d"]) == 0
    assert "would prune 0 trees" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["worker"],
        ["api", "--port", "0"],
        ["migrate"],
        ["prune", "--dry-run", "--older-than", "30d"],
        ["up", "--no-examples", "--port", "0"],
    ],
)
def test_a_login_the_server_refuses_is_said_at_once(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A review: a worker retried a login the server refuses for good (no such database) for 30 s, a
    pool warning every 2 s, then said "is it running"; an API started and answered 503 to everything.
    Both now stop at once with the server's words (exit 2). migrate and prune said such a login "cannot
    be reached" (exit 3), and up with DATABASE_URL ended in a traceback (exit 1): the same now."""
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, dbname="no_such_db"))
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    argv = [str(free_port()) if part == "0" else part for part in argv]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the database refused the login" in err and 'database "no_such_db" does not exist' in err, err
    assert "check DATABASE_URL" in err and "Traceback" not in err


def test_a_db_role_the_login_cannot_act_as_is_said_at_once(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: a DW_DB_ROLE that does not exist, or that the login is no member of, made the worker
    retry for 30 s and then say "is it running" (every connection's SET ROLE failed)."""
    postgresql.autocommit = True
    stranger = f"stranger_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {stranger} NOLOGIN")
    login = f"login_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {login} LOGIN")
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, user=login))
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    monkeypatch.setenv("DW_DB_ROLE", "ghost_role")
    assert main(["worker"]) == EXIT_USAGE
    assert "DW_DB_ROLE names the role 'ghost_role', which does not exist" in capsys.readouterr().err
    monkeypatch.setenv("DW_DB_ROLE", stranger)
    assert main(["worker"]) == EXIT_USAGE
    assert f"the database user may not act as {stranger!r} (DW_DB_ROLE): GRANT {stranger} TO" in capsys.readouterr().err
    # prune too (a review: "the database is unavailable" 10 s later, exit 3).
    assert main(["prune", "--dry-run", "--older-than", "30d"]) == EXIT_USAGE
    assert f"the database user may not act as {stranger!r} (DW_DB_ROLE)" in capsys.readouterr().err
    # A role the login may act as, without the application's rights (a review: the API answered 500
    # to every request, a worker logged a traceback at every pass).
    postgresql.execute(f"GRANT {stranger} TO {login}")
    for argv in (["worker"], ["api", "--port", str(free_port())], ["prune", "--dry-run", "--older-than", "30d"]):
        assert main(argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert f"the role {stranger!r} (DW_DB_ROLE) lacks the application's rights" in err, err
        assert "Traceback" not in err, err
    # `up` too, by a login that may migrate (a review: a traceback, exit 1).
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql))
    assert main(["up", "--port", str(free_port()), "--no-examples"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the role {stranger!r} (DW_DB_ROLE) lacks the application's rights" in err, err
    assert "Traceback" not in err, err


def test_the_role_probe_asks_what_set_role_does(postgresql: Any) -> None:
    """A review: the probe asked the catalog whether current_user is a member, which refused a login
    whose default role differs (SET ROLE goes by the session's user) and passed a grant WITH SET FALSE
    (PostgreSQL 16), whose every pooled connection then failed. It now does what the pool does."""
    from dataworkflows.cli import _require_schema
    from dataworkflows.config import Settings
    from dataworkflows.errors import ConfigurationError

    postgresql.autocommit = True
    other = f"other_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {other} NOLOGIN")
    defaulted = f"defaulted_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {defaulted} LOGIN")
    postgresql.execute(f"GRANT {other} TO {defaulted}")
    postgresql.execute(f"GRANT dataworkflows_app TO {defaulted}")
    postgresql.execute(f"ALTER ROLE {defaulted} SET role = {other}")
    url = url_of(postgresql, user=defaulted)
    _require_schema(url, Settings(database_url=url), unreachable_ok=True)  # passes
    if postgresql.info.server_version >= 160000:
        no_set = f"noset_{uuid.uuid4().hex[:8]}"
        postgresql.execute(f"CREATE ROLE {no_set} LOGIN")
        postgresql.execute(f"GRANT dataworkflows_app TO {no_set} WITH SET FALSE")
        url = url_of(postgresql, user=no_set)
        with pytest.raises(ConfigurationError, match="may not act as 'dataworkflows_app'"):
            _require_schema(url, Settings(database_url=url), unreachable_ok=True)


@pytest.mark.parametrize("argv", PROBED)
def test_a_command_on_a_database_migrated_part_way_says_so(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A review: a database whose migrate stopped half way, or still at the previous release, passed the
    probe (it has dw.schema_migrations): the API answered 200 to /health/ready and 500 to everything
    else, a worker logged a missing function at every pass, examples load printed a traceback."""
    postgresql.autocommit = True
    # From 0060 to this release's last (a migration added later counts too).
    later = sorted(p.name[:4] for p in MIGRATIONS.glob("[0-9]*.sql") if p.name[:4] >= "0060")
    postgresql.execute("DELETE FROM dw.schema_migrations WHERE version >= '0060'")
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql))
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    argv = [str(free_port()) if part == "0" else part for part in argv]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    expected = f"the database lacks {len(later)} of this release's migrations (0060 to {later[-1]}; its last is 0059)"
    assert expected in err and "run `dataworkflows migrate` first" in err and "Traceback" not in err, err


def test_migrate_by_a_login_that_may_not_or_on_another_applications_schema_says_so(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: both ended in a traceback, exit 1 (the first even on a database migrated already)."""
    postgresql.autocommit = True
    login = f"lowpriv_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {login} LOGIN")
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, user=login))
    assert main(["migrate"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the database user may not create the schema dw or its tables (permission denied" in err, err
    assert "Traceback" not in err
    other = f"otherapp_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE DATABASE {other}")
    with psycopg.connect(url_of(postgresql, dbname=other), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA dw")
        conn.execute("CREATE TABLE dw.schema_migrations (id int, name text)")
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, dbname=other))
    assert main(["migrate"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "dw.schema_migrations is not DataWorkflows'" in err and "Traceback" not in err, err


def test_a_login_that_is_no_superuser_migrates_a_database_of_its_own(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: migration 0062 gave the reporting views to dataworkflows_views, which a login that
    is no superuser could not do ("permission denied for schema dw": a new owner must be able to
    create in the schema); superusers are not asked, so the embedded database and the tests passed.
    The cluster's roles exist already (earlier migrations made them): on PostgreSQL 16 and later such
    a login needs their ADMIN option (README, "Roles that own nothing")."""
    postgresql.autocommit = True
    login, database = f"owner_{uuid.uuid4().hex[:8]}", f"own_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {login} LOGIN CREATEROLE")
    postgresql.execute(
        f"GRANT dataworkflows_app, dataworkflows_maintenance, dataworkflows_all_tenants, dw_reporting,"
        f" dataworkflows_views TO {login} WITH ADMIN OPTION"
    )
    postgresql.execute(f"CREATE DATABASE {database} OWNER {login}")
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql, user=login, dbname=database))
    assert main(["migrate"]) == 0, capsys.readouterr().err
    with psycopg.connect(url_of(postgresql, user=login, dbname=database), autocommit=True) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.relnamespace = 'dw'::regnamespace"
            " AND c.relkind = 'v' AND c.relname LIKE 'v\\_%%' AND c.relname <> 'v_queue_depth'"
        ).fetchall()
        assert owners == [("dataworkflows_views",)]
        # The role's right to create in the schema was for the change of owner only.
        assert conn.execute("SELECT has_schema_privilege('dataworkflows_views', 'dw', 'CREATE')").fetchone() == (False,)


def test_a_database_lacking_a_procrastinate_pre_migration_says_so(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second review: a newer Procrastinate's pre migration, not applied yet, passed the probe."""
    postgresql.autocommit = True
    [(stem,)] = postgresql.execute(
        "SELECT version FROM dw.schema_migrations WHERE version LIKE 'procrastinate/%%_pre_%%' ORDER BY version DESC"
        " LIMIT 1"
    ).fetchall()
    postgresql.execute("DELETE FROM dw.schema_migrations WHERE version = %s", (stem,))
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql))
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    assert main(["worker"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the database lacks Procrastinate's migrations {stem.removeprefix('procrastinate/')}" in err, err


def test_a_row_the_probe_cannot_read_leaves_the_question_to_the_command(postgresql: Any) -> None:
    """A third review: a Procrastinate row edited by hand (its name no version) made the probe raise
    ValueError, a traceback for worker, api and examples load, which had started before."""
    from dataworkflows.cli import _migrations_behind

    postgresql.autocommit = True
    postgresql.execute(
        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES ('procrastinate/x', 'manual fix', '')"
    )
    assert _migrations_behind(postgresql, None) is None


def test_up_whose_worker_has_a_bad_setting_exits_as_a_bad_setting(
    postgresql: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: `up` on a busy DW_WORKER_METRICS_PORT started the API, then its worker refused the
    port (ConfigurationError, which `worker` alone exits 2 for), and `up` exited 3, "the database
    cannot be reached", which a supervisor retries as an outage rather than reporting a bad setting."""
    import socket

    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    monkeypatch.setenv("DATABASE_URL", url_of(postgresql))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("DW_WORKER_METRICS_PORT", str(busy.getsockname()[1]))
        assert main(["up", "--no-examples", "--port", str(free_port())]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the worker's metrics endpoint cannot listen on" in err and "Traceback" not in err, err


class _Failing:
    """A probe's connection whose statement containing `where` fails `how`: interrupted while in
    flight (Ctrl-C, or a stop signal `up` turns into one), on a connection its server ended, or in a
    transaction (the statement fails, the transaction is aborted)."""

    def __init__(self, conn: psycopg.Connection[Any], where: str, how: str, admin: psycopg.Connection[Any]) -> None:
        self.conn, self.where, self.how, self.admin = conn, where, how, admin

    def execute(self, query: Any, *args: Any) -> Any:
        if self.where not in str(query):
            return self.conn.execute(query, *args)
        if self.how == "interrupted":
            self.conn.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # in flight when the interruption comes
            raise KeyboardInterrupt
        if self.how == "lost":
            self.admin.execute("SELECT pg_terminate_backend(%s)", (self.conn.info.backend_pid,))
            return self.conn.execute(query, *args)
        return self.conn.execute("SELECT 1 / 0")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.mark.parametrize("how", ["interrupted", "lost", "aborted"])
@pytest.mark.parametrize("probe", ["_applied_versions", "_role_problem"])
def test_a_probe_whose_query_fails_says_what_stopped_it(postgresql: Any, probe: str, how: str) -> None:
    """The start-up probes act as DW_DB_ROLE and ran RESET ROLE in a `finally`, as migrate's unlock
    did: on a session left busy by an interruption its error ("another command is already in
    progress") replaced the interruption, on a lost one "the connection is closed" replaced the
    server's reason, and in an aborted transaction "current transaction is aborted" replaced the
    failure (for _applied_versions, an unreadable table it answers None for). What stopped the probe
    now goes on, and a session that cannot take RESET ROLE is closed instead."""
    from dataworkflows import cli

    postgresql.autocommit = True
    with psycopg.connect(url_of(postgresql), autocommit=how != "aborted") as conn:
        failing = _Failing(conn, "pg_has_role" if probe == "_role_problem" else "schema_migrations", how, postgresql)
        call = getattr(cli, probe)
        if how == "interrupted":
            with pytest.raises(KeyboardInterrupt):
                call(failing, "dataworkflows_app")
        elif probe == "_applied_versions":
            assert call(failing, "dataworkflows_app") is None
        elif how == "lost":
            with pytest.raises(psycopg.OperationalError, match="terminat"):
                call(failing, "dataworkflows_app")
        else:
            with pytest.raises(psycopg.errors.DivisionByZero):
                call(failing, "dataworkflows_app")
        # Left acting as nobody: reset, or closed.
        assert conn.closed or conn.execute("SELECT current_user = session_user").fetchone() == (True,)


def test_an_interrupted_start_up_probe_is_an_interruption(postgresql: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`api`, `worker` and `up` probe the database before they start, a database that cannot be
    reached left to them (unreachable_ok): Ctrl-C while the probe's query was in flight was turned
    into "another command is already in progress" by its RESET ROLE, read as that, and the command
    went on starting. The interruption now ends the probe (exit 130)."""
    from dataworkflows import cli, procrastinate_schema
    from dataworkflows.config import Settings

    def interrupted(conn: psycopg.Connection[Any]) -> None:
        conn.pgconn.send_query(b"SELECT pg_sleep(0.2)")
        raise KeyboardInterrupt

    monkeypatch.setattr(procrastinate_schema, "read_state", interrupted)
    url = url_of(postgresql)
    with pytest.raises(KeyboardInterrupt):
        cli._require_schema(url, Settings(database_url=url), unreachable_ok=True)
