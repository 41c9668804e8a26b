"""The CLI's help, start-up, event lines and exit codes (no API: a mock transport where one is needed)."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_OK, EXIT_RUN_FAILED, TOKEN_ROLES, build_parser, main
from dataworkflows.cli_follow import Printer, Refused, outcome, seconds_text
from dataworkflows.cli_help import EXAMPLES, commands
from tests.unit.test_cli_tree import fake_api


def test_every_command_has_an_example_environment_exit_codes_and_defaults() -> None:
    parser = build_parser()
    found = commands(parser)
    assert {path for path, _ in found} <= set(EXAMPLES), "a command without an example in cli_help.EXAMPLES"
    for path, command in found:
        text = command.format_help()
        assert re.search(r"example:\n  .*dataworkflows " + path, text) and "exit codes:" in text, path
        if path:
            assert "environment:" in text, path
    shown = dict(found)["executions list"].format_help()
    assert "(default: 50)" in shown and "DW_API_URL" in shown and "--api-url URL" in shown
    assert "(default: None)" not in shown and "(default: False)" not in shown
    run = dict(found)["run"].format_help()
    assert "0    done; with --wait or --follow: the run Succeeded" in run and "4    --timeout passed" in run


def test_every_api_commands_help_names_the_codes_a_closed_pipe_and_ctrl_c_give() -> None:
    """Every command exits 1 when its reader goes (`| head`) and 130 on Ctrl-C (README "Exit codes");
    the API commands' help listed 0, 2 and 3 only, so `executions list --help` did not explain the 1
    that `executions list | head -1` gives."""
    for path, command in commands(build_parser()):
        if not path or path.split(" ")[0] in ("up", "migrate", "api", "worker", "psql", "prune", "token", "examples"):
            continue
        text = command.format_help()
        assert re.search(r"\n  1    .*stdout was closed early", text) and "\n  130  Ctrl-C" in text, path


def test_token_roles_are_the_engines() -> None:
    from dataworkflows.tokens import ROLES

    assert TOKEN_ROLES == ROLES


def test_the_cli_imports_nothing_heavy() -> None:
    """A command starts in a fraction of a second: importing the CLI imports no engine, web or
    database library (the commands import what they use when they run)."""
    heavy = ["httpx", "structlog", "litestar", "procrastinate", "jwt", "psycopg", "asyncio", "msgspec", "jinja2"]
    code = f"import sys, dataworkflows.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_command_runs_as_a_module_and_through_its_entry_point() -> None:
    """`python -m dataworkflows` is the command too, and the console script's entry point (which ends
    quietly on Ctrl-C while the CLI imports) hands it the arguments."""
    done = subprocess.run(
        [sys.executable, "-m", "dataworkflows", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_OK and done.stdout.startswith("dataworkflows "), done
    code = (
        "import sys; from dataworkflows.entry import main; sys.argv = ['dataworkflows', '--version']; sys.exit(main())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_OK and done.stdout.startswith("dataworkflows "), done


def at(seconds: float) -> str:
    return (datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_node_lines_with_elapsed_times() -> None:
    lines: list[str] = []
    printer = Printer(write=lines.append)
    events: list[dict[str, Any]] = [
        {"id": 1, "type": "execution_requested", "at": at(0), "details": {}},
        {"id": 2, "type": "node_started", "nodeId": "fetch", "at": at(0.5), "details": {"attempt": 1}},
        {
            "id": 3,
            "type": "node_retry_scheduled",
            "nodeId": "fetch",
            "at": at(0.75),
            "details": {"attempt": 1, "error": {"message": "503"}, "nextAttemptAt": at(2.25)},
        },
        {"id": 4, "type": "node_started", "nodeId": "fetch", "at": at(2.25), "details": {"attempt": 2}},
        {"id": 5, "type": "node_succeeded", "nodeId": "fetch", "at": at(75.25), "details": {"attempt": 2}},
        {"id": 6, "type": "wait_started", "nodeId": "pay", "at": at(76), "details": {"kind": "signal", "name": "paid"}},
        {"id": 70, "type": "node_failed", "nodeId": "pay", "at": at(80), "details": {"error": {"message": "late"}}},
        {"id": 80, "type": "execution_failed", "at": at(81), "details": {}},
    ]
    # A timer says "timer" once (it said "timer timer"), and an interrupted attempt is no failure.
    events[6:6] = [
        {"id": 61, "type": "wait_started", "nodeId": "nap", "at": at(77), "details": {"kind": "timer", "dueAt": "T"}},
        {"id": 62, "type": "node_started", "nodeId": "crash", "at": at(78), "details": {"attempt": 1}},
        {
            "id": 63,
            "type": "node_retry_scheduled",
            "nodeId": "crash",
            "at": at(79),
            "details": {
                "attempt": 1,
                "error": {"code": "attempt_interrupted", "message": "its worker stopped"},
                "nextAttemptAt": at(79),
            },
        },
    ]
    for event in events:
        printer.show(event)
    assert [line.split(None, 2)[1:] for line in lines] == [
        ["+0.500s", f"{'fetch':<24} started"],
        ["+0.750s", f"{'fetch':<24} attempt 1 failed in 0.250s: 503 (retrying in 1.5s)"],
        ["+2.2s", f"{'fetch':<24} started (attempt 2)"],
        ["+1m15s", f"{'fetch':<24} Succeeded in 1m13s"],
        ["+1m16s", f"{'pay':<24} waiting for signal paid"],
        ["+1m17s", f"{'nap':<24} waiting for timer (until T)"],
        ["+1m18s", f"{'crash':<24} started"],
        ["+1m19s", f"{'crash':<24} attempt 1 interrupted in 1.0s: its worker stopped (retrying now, not counted)"],
        ["+1m20s", f"{'pay':<24} Failed: late"],
    ]
    assert lines[0].startswith("08:00:00.500 ") and printer.last_id == 80
    everything: list[str] = []
    logs = Printer(everything=True, write=everything.append)
    for event in events:
        logs.show(event)
    assert len(everything) == len(events) and "(run)" in everything[0] and "execution_requested" in everything[0]
    assert [seconds_text(s) for s in (0.0421, 1.5, 42, 125, 7260)] == ["0.042s", "1.5s", "42s", "2m05s", "2h01m"]


@pytest.mark.parametrize(
    ("status", "code"),
    [("Succeeded", EXIT_OK), ("Failed", EXIT_RUN_FAILED), ("Cancelled", EXIT_RUN_FAILED), ("TimedOut", 1)],
)
def test_the_outcome_is_the_exit_code(status: str, code: int) -> None:
    body = {"status": status, "startTime": at(0), "endTime": at(2.5), "error": None}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    lines: list[str] = []
    with httpx.Client(base_url="http://api", transport=transport) as client:
        assert outcome(client, "e-1", lines.append) == code
    assert lines == [f"execution e-1 {status} in 2.5s"]


def test_running_is_no_outcome_yet() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "Running"}))
    with httpx.Client(base_url="http://api", transport=transport) as client:
        assert outcome(client, "e-1", print) is None


def test_a_status_the_api_refuses_ends_the_wait() -> None:
    """`run --wait` followed a run whose status read answered 4xx (a stored value too deep to read)
    for ever: the same request gets the same answer. A 503 or a 429 is still waited out."""
    problem = {"status": 422, "code": "stored_value_too_deep", "detail": "too deep"}
    refused = httpx.MockTransport(lambda request: httpx.Response(422, json=problem))
    with httpx.Client(base_url="http://api", transport=refused) as client, pytest.raises(Refused) as raised:
        outcome(client, "e-1", print)
    assert raised.value.response.status_code == 422
    for status in (429, 503):
        busy = httpx.MockTransport(lambda request, status=status: httpx.Response(status, json={"status": status}))
        with httpx.Client(base_url="http://api", transport=busy) as client:
            assert outcome(client, "e-1", print) is None


def test_since_and_until() -> None:
    moment = cli._moment("2026-12-01T08:00:00")
    assert moment == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert cli._moment("2026-12-01T09:00:00+01:00") == moment
    # RFC 3339's lowercase t and z (a z was refused, as a delay's until refused it).
    assert cli._moment("2026-12-01t08:00:00z") == moment
    ago = datetime.now(UTC) - cli._moment("90min")
    assert timedelta(minutes=89) < ago < timedelta(minutes=91)
    for bad in ("yesterday", "5m", "-2h", "99999999d", "3000000w"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._moment(bad)
    args = build_parser().parse_args(
        ["executions", "list", "--since", "2026-12-01T08:00:00Z", "--trigger-kind", "webhook"]
    )
    expected = {"limit": 50, "triggerKind": "webhook", "createdFrom": "2026-12-01T08:00:00+00:00"}
    assert cli._list_params(args) == expected
    with pytest.raises(SystemExit):
        build_parser().parse_args(["executions", "list", "--limit", "501"])


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, 200, [{"id": 1, "type": "execution_requested", "at": at(0), "details": {}}])
    monkeypatch.setattr(sys, "stdout", ClosedPipe())  # no file descriptor: nothing is redirected
    assert main(["logs", "e-1", "--api-url", "http://api"]) == EXIT_RUN_FAILED
    assert capsys.readouterr().err == ""


def test_up_says_how_to_point_the_cli_at_it() -> None:
    assert "dataworkflows run simple-echo --wait" in cli._cli_hint("127.0.0.1", 5131)
    assert "export DW_API_URL=http://127.0.0.1:5200" in cli._cli_hint("0.0.0.0", 5200)
    assert "export DW_API_URL=http://[::1]:5200" in cli._cli_hint("::1", 5200)
    # In strict mode the request to try carries the token it needs (it answered 401 as printed).
    assert "Authorization" not in cli._try_hint("http://127.0.0.1:5131", strict=False)
    strict = cli._try_hint("http://127.0.0.1:5131", strict=True)
    assert "dataworkflows token --sub you --role operator" in strict
    assert strict.endswith('-H "Authorization: Bearer $DW_API_TOKEN"')


def test_up_without_examples_says_the_hints_need_them() -> None:
    """`up --no-examples` printed the same request to try (simple-echo), which a new database answered
    404; it now says the examples were not loaded, and how to load them."""
    assert cli._examples_hint(loaded=True) == ""
    said = cli._examples_hint(loaded=False)
    assert "--no-examples" in said and "dataworkflows examples load" in said and said.endswith("\n")


def test_the_sample_trigger_is_read_from_the_definition(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = {"orderId": "A-1"}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"definition": {"metadata": {"sampleTrigger": sample}}})
        return httpx.Response(202, json={"executionId": "e-1", "status": "Pending", "workflowVersion": 3})

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    assert cli.cmd_run(build_parser().parse_args(["run", "orders"])) == EXIT_OK
    assert json.loads(seen[1].content) == {"trigger": sample}
    out = capsys.readouterr()
    assert 'using orders\'s sample trigger (metadata.sampleTrigger): {"orderId":"A-1"}' in out.err
    assert out.out == "execution e-1 (orders v3) Pending\n"
    # A trigger given wins, and the definition is not read.
    seen.clear()
    assert cli.cmd_run(build_parser().parse_args(["run", "orders", "--trigger", "{}"])) == EXIT_OK
    assert [r.method for r in seen] == ["POST"] and json.loads(seen[0].content) == {"trigger": {}}


def test_redrive_timeout_without_wait_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", "redrive", "7", "--timeout", "5"]) == 2
    assert "give --wait too" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("answer", "expected", "said"),
    [
        (httpx.Response(200, json={"definition": {"metadata": {"sampleTrigger": {"a": 1}}}}), {"a": 1}, ""),
        (httpx.Response(200, json={"definition": {"nodes": []}}), None, ""),
        # Not found: the execute request that follows says so.
        (httpx.Response(404, json={"title": "Not Found"}), None, ""),
        (httpx.Response(403, json={"title": "Forbidden"}), None, "could not be read (HTTP 403)"),
        (httpx.Response(200, text="<html>a proxy</html>"), None, "could not be read (HTTP 200)"),
    ],
)
def test_run_says_when_the_sample_trigger_cannot_be_read(
    capsys: pytest.CaptureFixture[str], answer: httpx.Response, expected: dict[str, Any] | None, said: str
) -> None:
    client = httpx.Client(base_url="http://api", transport=httpx.MockTransport(lambda request: answer))
    assert cli._sample_trigger(client, "wf") == expected
    err = capsys.readouterr().err
    assert said in err if said else err == ""


def test_a_long_age_is_a_usage_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """An age back past year 1 was an OverflowError's traceback and exit 1."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["executions", "list", "--since", "99999999d"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "goes back before year 1" in err and "Traceback" not in err


def test_dead_letters_list_says_there_is_more_and_takes_the_cursor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator saw the first 100 open letters, nothing said there were more, and had no way to
    ask for the next page."""
    letter = {
        "id": 7,
        "kind": "node_failed",
        "workflowId": "w",
        "nodeId": "n",
        "attempts": 3,
        "redrivenAt": None,
        "closeReason": None,
        "error": {"message": "boom"},
    }
    seen = fake_api(monkeypatch, 200, {"items": [letter], "nextCursor": "Nw"})
    assert main(["dead-letters", "list", "--limit", "1", "--api-url", "http://api"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[:2] == ["7", "node_failed"]
    assert err.strip() == "more: add --cursor Nw"
    assert main(["dead-letters", "list", "--cursor", "Nw", "--api-url", "http://api"]) == EXIT_OK
    assert dict(seen[-1].url.params) == {"limit": "100", "open": "true", "cursor": "Nw"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dead-letters", "list", "--limit", "600"])


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("postgresql://postgres:topsecret@/dw?host=/tmp", "postgresql://postgres:***@/dw?host=/tmp"),
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=x&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("host=h password='a b\\'c' user=u", "host=h password=*** user=u"),
        ("host=h user=u", "host=h user=u"),
    ],
)
def test_up_prints_the_database_without_its_password(conninfo: str, shown: str) -> None:
    # `up`'s banner printed DATABASE_URL whole, password and all (ops review).
    assert cli.shown_conninfo(conninfo) == shown


def test_a_follow_waits_for_an_api_that_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """`logs --follow` and `run --wait` ended at once (exit 3, "cannot reach the API") when the API
    restarted under them, while the run went on (ops review): a refused connection after the API
    answered is waited out, as a dropped one was."""
    from dataworkflows import cli_follow

    monkeypatch.setattr(cli_follow.time, "sleep", lambda seconds: None)
    calls = {"n": 0}
    body = {"status": "Succeeded", "startTime": at(0), "endTime": at(1), "error": None}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if request.url.path.endswith("/events"):
            if calls["n"] == 1:
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"")
            if calls["n"] < 6:
                raise httpx.ConnectError("connection refused", request=request)
            event = b'data: {"id": 3, "type": "execution_succeeded", "at": "' + at(1).encode() + b'"}\n\n'
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=event)
        if calls["n"] == 2:
            return httpx.Response(200, json={**body, "status": "Running"})
        return httpx.Response(200, json=body)

    lines: list[str] = []
    with httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)) as client:
        code = cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)
    assert code == EXIT_OK and lines[-1].startswith("execution e-1 Succeeded"), lines
    # An API that never answered is not waited for (its URL may be wrong).
    refused = httpx.MockTransport(lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)))
    with httpx.Client(base_url="http://api", transport=refused) as client, pytest.raises(httpx.ConnectError):
        cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)


def test_a_follow_waits_for_an_api_whose_database_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream whose database goes away ends with a comment, and the API answers 503 until it is back:
    the follow ended there (Refused, exit 3) while the run went on. It waits as for a dropped
    connection; any other refusal still ends it."""
    from dataworkflows import cli_follow

    monkeypatch.setattr(cli_follow.time, "sleep", lambda seconds: None)
    calls = {"n": 0}
    body = {"status": "Succeeded", "startTime": at(0), "endTime": at(1), "error": None}
    unavailable = {"type": "about:blank", "title": "Database unavailable", "status": 503, "detail": "restarting"}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if request.url.path.endswith("/events"):
            if calls["n"] == 1:
                comment = b": reconnect: the database is unavailable\n\n"
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=comment)
            if calls["n"] < 8:
                return httpx.Response(503, json=unavailable)
            event = b'data: {"id": 3, "type": "execution_succeeded", "at": "' + at(1).encode() + b'"}\n\n'
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=event)
        if calls["n"] < 8:
            return httpx.Response(503, json=unavailable)
        return httpx.Response(200, json=body)

    lines: list[str] = []
    with httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)) as client:
        code = cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)
    assert code == EXIT_OK and lines[-1].startswith("execution e-1 Succeeded"), lines
    forbidden = httpx.MockTransport(lambda request: httpx.Response(403, json={**unavailable, "status": 403}))
    with httpx.Client(base_url="http://api", transport=forbidden) as client, pytest.raises(cli_follow.Refused):
        cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)


def test_a_follow_refused_a_stream_as_one_too_many_reads_the_log_by_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that holds DW_MAX_STREAMS_PER_CALLER streams already is refused a new one (429
    too_many_streams): `run --wait` polls the log instead of ending (a rate limit's 429 still ends it)."""
    from dataworkflows import cli_follow

    monkeypatch.setattr(cli_follow.time, "sleep", lambda seconds: None)
    body = {"status": "Succeeded", "startTime": at(0), "endTime": at(1), "error": None}
    too_many = {"type": "about:blank", "title": "Too many requests", "status": 429, "detail": "d"}

    def answer(request: httpx.Request, code: str = "too_many_streams") -> httpx.Response:
        if request.url.path.endswith("/events"):
            if request.headers.get("accept") == "text/event-stream":
                return httpx.Response(429, headers={"Retry-After": "15"}, json={**too_many, "code": code})
            return httpx.Response(200, json=[{"id": 3, "type": "execution_succeeded", "at": at(1)}])
        return httpx.Response(200, json=body)

    lines: list[str] = []
    with httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer)) as client:
        code = cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)
    assert code == EXIT_OK and lines[-1].startswith("execution e-1 Succeeded"), lines
    limited = httpx.MockTransport(lambda request: answer(request, "rate_limited"))
    with httpx.Client(base_url="http://api", transport=limited) as client, pytest.raises(cli_follow.Refused):
        cli_follow.follow(client, "e-1", Printer(write=lines.append), timeout=None)


def test_the_next_page_hint_of_an_age_window_names_the_window_it_had(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API holds a cursor to its page's createdFrom/createdTo: `--since 2h` named another window at
    the next call, and every following page was a 400."""
    seen = fake_api(monkeypatch, 200, {"items": [], "nextCursor": "WyJ4Il0"})
    assert main(["executions", "list", "--since", "2h", "--api-url", "http://api"]) == EXIT_OK
    sent = seen[-1].url.params["createdFrom"]
    hint = capsys.readouterr().err.strip()
    assert hint == (
        f"more: add --cursor WyJ4Il0 with --since {sent} in place of --since 2h"
        " (the next page is of this page's window)"
    )
    # Given as the hint says, the next call sends the same window.
    assert main(["executions", "list", "--since", sent, "--cursor", "WyJ4Il0", "--api-url", "http://api"]) == EXIT_OK
    assert seen[-1].url.params["createdFrom"] == sent and seen[-1].url.params["cursor"] == "WyJ4Il0"
    assert capsys.readouterr().err.strip() == "more: add --cursor WyJ4Il0"
