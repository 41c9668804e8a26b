"""The CLI's answers to what is wrong around it (a database it cannot reach, a port that is not one,
a data directory with no database, a server that is not the API): one line on stderr and the
documented exit code, never a traceback, and nothing made on the way."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

import psycopg
import pytest

from dataworkflows.cli import EXIT_UNAVAILABLE, EXIT_USAGE, main
from tests.fakes import free_port, loopback_http_server


@pytest.fixture(autouse=True)
def _tests_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """structlog's global set-up stays the tests': the CLI's would bind it to this test's captured
    stderr, closed once the test ends, and later tests' log lines would fail to be written."""
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *_: None)


def test_migrate_without_a_database_exits_3_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert main(["migrate"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot migrate: the database cannot be reached (") and "Traceback" not in err


def test_up_on_a_database_url_that_cannot_be_reached_exits_3_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ended in psycopg's traceback (exit 1)."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert main(["up", "--no-examples", "--port", str(free_port())]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot start: the database cannot be reached (") and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["api", "--port", "70000"], {}),
        (["api", "--port", "0"], {}),
        (["api"], {"DW_API_PORT": "70002"}),
        (["up", "--port", "65536"], {}),
        (["worker", "--metrics-port", "70000"], {}),
    ],
)
def test_a_port_that_is_not_one_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
) -> None:
    """The socket layer took 70000 as 4464 (modulo 65536) and 0 as any free port, while `up` printed
    the port as given in the DW_API_URL it tells the CLI to use."""
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "port" in err and "give 1 to 65535" in err, err
    assert not (tmp_path / "data").exists(), "nothing was started"


@pytest.mark.parametrize(
    "argv",
    [
        ["psql", "-c", "SELECT 1"],
        ["prune", "--dry-run", "--older-than", "30d"],
        ["migrate"],
        ["examples", "load"],
        ["worker"],
        ["api", "--port", str(free_port())],
    ],
)
def test_a_data_directory_without_a_database_gets_none_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    """A mistyped DW_DATA_DIR made a new embedded server there (46 MB), and psql then showed an
    empty database without a word; only `up` makes one."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path / "typo"))
    assert main(argv) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert "no embedded database under" in err
    assert "cutoff" not in out, "no cutoff said for a database that is not there"
    assert not (tmp_path / "typo").exists()


def test_prune_without_a_database_exits_3_saying_so_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the pool's warning for each of its retries, then 'pool initialization incomplete'."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert main(["prune", "--dry-run", "--older-than", "30d"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert "error: cannot prune: the database cannot be reached (" in err, err
    assert "error connecting" not in err and "initialization incomplete" not in err, err


@pytest.mark.parametrize("argv", [["psql", "-c", "SELECT 1"], ["up", "--no-examples"]])
def test_a_data_directory_of_another_postgresql_major_is_named_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    """An embedded database made by an older PostgreSQL (15) under DW_DATA_DIR: pg_ctl's
    CalledProcessError came out as a traceback; now the versions are named, and what to do."""
    from dataworkflows.embedded import bundled_major

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    (tmp_path / "old" / "pgdata").mkdir(parents=True)
    (tmp_path / "old" / "pgdata" / "PG_VERSION").write_text("15\n")
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path / "old"))
    assert main([*argv, *(["--port", str(free_port())] if argv[0] == "up" else [])]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"made by PostgreSQL 15, and this installation runs PostgreSQL {bundled_major()}" in err, err
    assert "pg_dump" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "old" / "pgdata").iterdir()) == ["PG_VERSION"], "nothing was started"


class _Files(http.server.SimpleHTTPRequestHandler):
    """A plain web server's answers: the files under the directory it is given (not the API)."""

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.mark.parametrize("argv", [["triggers", "list"], ["workflows", "list"], ["dead-letters", "list"]])
def test_a_server_that_is_not_the_api_is_said_to_be_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    """DW_API_URL pointing at another web server gave tracebacks (JSONDecodeError, TypeError) and
    exit 1, which is kept for a followed run that failed."""
    (tmp_path / "api" / "v1").mkdir(parents=True)
    (tmp_path / "api" / "v1" / "triggers").write_text("not json")
    with loopback_http_server(functools.partial(_Files, directory=str(tmp_path))) as url:  # type: ignore[arg-type]
        monkeypatch.setenv("DW_API_URL", url)
        assert main(argv) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert f"the server at {url} is not the DataWorkflows API" in err and "Traceback" not in err, err


@pytest.mark.parametrize("url", ["not a url", "postgresql://ops:s3cr3t pass@db.example/dw"])
def test_a_database_url_libpq_cannot_read_is_a_usage_error_that_quotes_none_of_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """It was retried for 10 s as an unreachable database (exit 3); libpq's own message would quote
    the part it could not read (here the password)."""
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["migrate"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "DATABASE_URL cannot be read as a PostgreSQL connection URL" in err, err
    assert "s3cr3t" not in err and "not a url" not in err


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("postgresql://postgres@/dataworkflows?host=/tmp/nowhere&port=abc", "abc"),
        ("postgresql://ops:s3cr3t@db.example:notaport/dw", "notaport"),
        ("host=a,b port=5432,70000 dbname=dw", "70000"),
    ],
)
@pytest.mark.parametrize("command", [["migrate"], ["worker"]])
def test_a_database_url_whose_port_is_no_number_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, port: str, command: list[str]
) -> None:
    """libpq reads a port only when it connects: the worker waited 30 s and said the database could
    not be reached (exit 3)."""
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(command) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"DATABASE_URL's port {port!r} is not a port number (1 to 65535)" in err, err
    assert "s3cr3t" not in err


class _JsonNotTheApi(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with JSON, but not the API's."""

    body = b"{}"
    status = 200

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.mark.parametrize(("body", "status"), [(b"{}", 200), (b"[1]", 200), (b"[1]", 404), (b'"x"', 500)])
@pytest.mark.parametrize("argv", [["workflows", "list"], ["status", "x"], ["run", "simple-echo"]])
def test_a_server_that_answers_json_but_not_the_apis_is_said_to_be_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], body: bytes, status: int, argv: list[str]
) -> None:
    """A review: JSON that is not the API's (another service, a proxy's JSON error) gave KeyError and
    AttributeError tracebacks with exit 1."""
    handler = type("Handler", (_JsonNotTheApi,), {"body": body, "status": status})
    with loopback_http_server(handler) as url:  # type: ignore[arg-type]
        monkeypatch.setenv("DW_API_URL", url)
        code = main(argv)
    err = capsys.readouterr().err
    assert code in (EXIT_USAGE, EXIT_UNAVAILABLE) and "error: " in err and "Traceback" not in err, (code, err)


def test_input_the_cli_cannot_use_is_said_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A review: JSON nested past Python's recursion was a RecursionError traceback; an empty
    --request-id dropped the idempotency key without a word; a port past 65535 was 'connection
    refused'; --keep-previous past the API's 7 days and limits out of range were the API's 400 about
    its body's fields."""
    monkeypatch.setenv("DW_API_URL", f"http://127.0.0.1:{free_port()}")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    nested = '{"a":' * 5000 + "1" + "}" * 5000
    for argv, said in [
        (["workflows", "apply", str(deep)], "is nested too deeply"),
        (["run", "simple-echo", "--trigger", nested], "--trigger is not valid JSON: it is nested too deeply"),
        (
            ["triggers", "create", "wf", "--kind", "schedule", "--name", "n", "--cron", "@daily", "--payload", nested],
            "nested too deeply",
        ),
        (["triggers", "rotate-secret", "00000000-0000-0000-0000-000000000001", "--keep-previous", "8d"], "at most 7d"),
        (["workflows", "list", "--api-url", "http://127.0.0.1:99999"], "is not valid"),
    ]:
        assert main(argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, (argv, err)
    for argv in (
        ["run", "simple-echo", "--request-id", ""],
        ["workflows", "limits", "wf", "--max-concurrent", "-1"],
        ["workflows", "limits", "wf", "--per-minute", "99999999999999"],
    ):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert refused.value.code == EXIT_USAGE, argv
        assert "error: argument" in capsys.readouterr().err


def test_a_data_directory_that_cannot_be_one_is_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *args: None)
    taken = tmp_path / "a-file"
    taken.write_text("")
    monkeypatch.setenv("DW_DATA_DIR", str(taken))
    assert main(["up", "--no-examples", "--port", str(free_port())]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the data directory {taken} (DW_DATA_DIR) cannot be made" in err and "Traceback" not in err, err
    # A data directory that is one, but whose pgdata initdb refuses (a file; a directory of other files):
    # a review found the wheel's traceback and its whole log (exit 1). initdb's own words, one line.
    for name, make, says in [
        ("pgdata-a-file", lambda pgdata: pgdata.write_text(""), "Not a directory"),
        (
            "pgdata-not-empty",
            lambda pgdata: (pgdata.mkdir(), (pgdata / "junk").write_text("x")),
            "exists but is not empty",
        ),
    ]:
        data_dir = tmp_path / name
        data_dir.mkdir()
        make(data_dir / "pgdata")
        monkeypatch.setenv("DW_DATA_DIR", str(data_dir))
        assert main(["up", "--no-examples", "--port", str(free_port())]) == EXIT_USAGE
        captured = capsys.readouterr()
        err = captured.err
        assert f"the embedded PostgreSQL could not be set up in {data_dir / 'pgdata'}: initdb: error:" in err, err
        assert says in err and "Traceback" not in err and "Failed postgres command" not in captured.out + err, err


def test_the_cli_bounds_are_the_apis() -> None:
    from api.schemas import MAX_PREVIOUS_SECRET_SECONDS

    from dataworkflows import cli, rate_limits

    assert cli.MAX_PREVIOUS_SECRET_SECONDS == MAX_PREVIOUS_SECRET_SECONDS
    assert (cli.MAX_CONCURRENT_EXECUTIONS, cli.MAX_RATE_PER_MINUTE) == (
        rate_limits.MAX_CONCURRENT_EXECUTIONS,
        rate_limits.MAX_RATE_PER_MINUTE,
    )


def test_a_password_in_the_api_url_is_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: every "cannot reach the API" (and "not the API") printed DW_API_URL whole."""
    url = f"http://admin:S3cretPW@127.0.0.1:{free_port()}"
    assert main(["status", "00000000-0000-0000-0000-000000000000", "--api-url", url]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the API at http://admin:***@127.0.0.1:"), err
    assert "S3cretPW" not in err


@pytest.mark.parametrize("version", ["15.8", "11.22"])
def test_psql_gets_the_password_through_its_environment_and_the_tcp_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str
) -> None:
    """A review: `dataworkflows psql` put DATABASE_URL, password and all, on psql's command line, which
    every local user reads in the process list. It gets libpq's TCP settings as every other connection
    does (tcp_user_timeout only for a psql of PostgreSQL 12 or later, whose libpq knows it)."""
    seen = tmp_path / "seen"
    fake = tmp_path / "psql"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then echo "psql (PostgreSQL) {version}"; exit 0; fi\n'
        f'printf "%s\\n" "$@" > {seen}\nprintf "PGPASSWORD=%s\\n" "$PGPASSWORD" >> {seen}\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("DATABASE_URL", "postgresql://dw:Pa55word@db.internal:5432/dataworkflows")
    assert main(["psql", "-c", "select 1"]) == 0
    lines = seen.read_text().splitlines()
    assert "Pa55word" not in " ".join(lines[:-1])
    assert "host=db.internal" in lines[0] and "dbname=dataworkflows" in lines[0]
    assert "keepalives=1" in lines[0] and "keepalives_idle=10" in lines[0]
    assert ("tcp_user_timeout=20000" in lines[0]) == (version == "15.8"), lines[0]
    assert lines[1:] == ["-c", "select 1", "PGPASSWORD=Pa55word"]


def test_psql_sees_every_tenant_when_the_url_sets_options_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A review: the session's tenant went through PGOPTIONS only, which libpq ignores when the URL sets
    options of its own: every view was empty, without a word. It goes with the URL's options then."""
    seen = tmp_path / "seen"
    fake = tmp_path / "psql"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "psql (PostgreSQL) 15.8"; exit 0; fi\n'
        f'printf "%s\\n" "$@" > {seen}\nprintf "PGOPTIONS=%s\\n" "$PGOPTIONS" >> {seen}\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("PGOPTIONS", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://dw@db.internal/dw?options=-c%20statement_timeout%3D60000")
    assert main(["psql"]) == 0
    conninfo, pgoptions = seen.read_text().splitlines()
    assert "options='-c statement_timeout=60000 -c dw.tenant_id=*'" in conninfo, conninfo
    assert pgoptions == "PGOPTIONS=-c dw.tenant_id=*"
    # A tenant chosen in PGOPTIONS goes with the URL's options too (a second review: it was lost).
    monkeypatch.setenv("PGOPTIONS", "-c dw.tenant_id=acme")
    assert main(["psql"]) == 0
    conninfo, _ = seen.read_text().splitlines()
    assert "options='-c statement_timeout=60000 -c dw.tenant_id=acme'" in conninfo, conninfo
    monkeypatch.delenv("PGOPTIONS")
    # Without options in the URL, PGOPTIONS carries it (libpq reads it then).
    monkeypatch.setenv("DATABASE_URL", "postgresql://dw@db.internal/dw")
    assert main(["psql"]) == 0
    conninfo, pgoptions = seen.read_text().splitlines()
    assert "options" not in conninfo and pgoptions == "PGOPTIONS=-c dw.tenant_id=*"


class _Problem(http.server.BaseHTTPRequestHandler):
    """An API answering every request with one problem document (`answer`: its status and body)."""

    answer: tuple[int, bytes] = (500, b"{}")

    def _problem(self) -> None:
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _problem

    def log_message(self, format: str, *args: object) -> None:
        return


class _Router404(_Problem):
    """The API's router answering a path it has no route for."""

    answer = (404, b'{"title":"Not found","status":404,"detail":"Not Found","code":"not_found","instance":"/x"}')


def test_an_api_url_with_a_path_of_its_own_is_said_to_be_the_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DW_API_URL=http://host:port/api (a path of its own), or .../api/v1, said only "HTTP 404: Not
    Found" (reviews)."""
    with loopback_http_server(_Router404) as url:
        monkeypatch.setenv("DW_API_URL", url + "/api")
        assert main(["workflows", "list"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "HTTP 404: Not Found (the API has no route GET /api/api/v1/workflows: DW_API_URL or --api-url" in err, err
    # The URL of /api/v1 itself: the path begins with /api/v1, twice.
    with loopback_http_server(_Router404) as url:
        monkeypatch.setenv("DW_API_URL", url + "/api/v1")
        assert main(["status", "0b7c6f4e-0000-4000-8000-000000000000"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "(the API has no route GET /api/v1/api/v1/executions/" in err and "DW_API_URL or --api-url" in err, err
    # The right URL, an id with a "/" (a %2F the router decodes, so no route): not the URL's fault.
    with loopback_http_server(_Router404) as url:
        monkeypatch.setenv("DW_API_URL", url)
        assert main(["status", "a/b"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "HTTP 404: Not Found" in err and "DW_API_URL" not in err, err


class _NeedsPrincipal(_Problem):
    """An API with DW_REQUIRE_PRINCIPAL on, asked without one."""

    answer = (
        401,
        b'{"title":"Unauthorized","status":401,"code":"unauthorized",'
        b'"detail":"this server requires a principal to change workflows (X-Principal-Id)"}',
    )


def test_a_refusal_for_want_of_a_principal_says_how_the_cli_names_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API's 401 names its header (X-Principal-Id), which a CLI user does not set by hand."""
    monkeypatch.delenv("DW_PRINCIPAL_ID", raising=False)
    with loopback_http_server(_NeedsPrincipal) as url:
        monkeypatch.setenv("DW_API_URL", url)
        assert main(["workflows", "archive", "wf"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "requires a principal to change workflows (X-Principal-Id)" in err, err
    assert "the CLI sends it from DW_PRINCIPAL_ID, or --principal where a command takes one" in err, err


class _NeedsToken(_Problem):
    """An API in strict mode, asked without a bearer token (its own words)."""

    answer = (
        401,
        b'{"title":"Unauthorized","status":401,"code":"invalid_token",'
        b'"detail":"this server requires a bearer token (Authorization: Bearer <JWT>)"}',
    )


def test_a_refusal_for_want_of_a_token_says_how_the_cli_sends_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A strict API's 401 names its header; the CLI sends $DW_API_TOKEN there, which a new user of a
    strict `up` has not set: the error line says so (it said only the API's words). A token that was
    sent and refused (expired, malformed) gets no such hint: the token is what is wrong."""
    monkeypatch.delenv("DW_API_TOKEN", raising=False)
    with loopback_http_server(_NeedsToken) as url:
        monkeypatch.setenv("DW_API_URL", url)
        assert main(["workflows", "list"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "requires a bearer token (Authorization: Bearer <JWT>)" in err, err
        assert "the CLI sends DW_API_TOKEN as its bearer token: set it" in err, err
        monkeypatch.setenv("DW_API_TOKEN", "a.b.c")
        assert main(["workflows", "list"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "requires a bearer token" in err and "set it" not in err, err


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DW_TENANT_ID", "租户", "DW_TENANT_ID must be 1-100 letters"),
        ("DW_API_TOKEN", "tök€n", "DW_API_TOKEN is not a token"),
        ("DW_PRINCIPAL_ID", "a\nb", "DW_PRINCIPAL_ID must not contain control, invisible or line-separator"),
        # As the API refuses it (a third review: the CLI sent it, the API answered 400).
        ("DW_PRINCIPAL_ID", "bob\u202egnp", "DW_PRINCIPAL_ID must not contain control"),
        # Bytes that are not UTF-8 (the environment's surrogateescape): a traceback, a third review.
        ("DW_PRINCIPAL_ID", "bob\udcff", "DW_PRINCIPAL_ID must be UTF-8 text"),
    ],
)
def test_a_client_setting_no_header_can_carry_is_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, says: str
) -> None:
    """A review: a non-ASCII tenant or token was a traceback (httpx cannot send it), and a line break in
    the principal was reported as "cannot reach the API" (exit 3)."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("DW_API_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["workflows", "list"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "principal", ["田中\u3000太郎", "José\xa0García", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"]
)
def test_a_principal_with_spaces_and_joiners_the_api_takes_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], principal: str
) -> None:
    """A second review: the check for a line break refused every character str.isprintable() does not
    take, an ideographic or no-break space and a ZWNJ among them, which principal ids may hold."""
    monkeypatch.setenv("DW_PRINCIPAL_ID", principal)
    monkeypatch.setenv("DW_API_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["workflows", "list"]) == EXIT_UNAVAILABLE  # sent, and nobody answered
    assert "must not contain" not in capsys.readouterr().err


def test_an_embedded_server_that_will_not_start_says_why(tmp_path: Path) -> None:
    """A second review: the first capture of the wheel's errors kept the server's log from the console
    and said only "pg_ctl failed", blaming DW_DATA_DIR. The server's FATAL line is said, and where its
    log is."""
    from dataworkflows.embedded import EmbeddedPostgres
    from dataworkflows.errors import ConfigurationError

    server = EmbeddedPostgres(tmp_path / "dd")
    # An earlier FATAL in the server's log (kept across starts), which is not the reason (a third review).
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(server.uri("no_such_database")).close()
    server.stop()
    with (tmp_path / "dd" / "pgdata" / "postgresql.auto.conf").open("a") as conf:
        conf.write("shared_buffers = 'not a size'\n")
    with pytest.raises(ConfigurationError) as refused:
        EmbeddedPostgres(tmp_path / "dd")
    said = str(refused.value)
    assert said.startswith(f"the embedded PostgreSQL in {tmp_path / 'dd' / 'pgdata'} did not start: FATAL:"), said
    assert "postgresql.auto.conf" in said and "DW_DATA_DIR" not in said, said
