"""`run --wait`, `logs [--follow]`, `executions list` and the exit codes, against a real API and
worker. Most commands run in the test's process (cli_in_process); the program itself runs where its
exit status, a closed pipe or its start-up is what is tested."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.acceptance.cli_in_process import in_process
from tests.acceptance.conftest import Stack, command, free_port
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance

Cli = Callable[..., subprocess.CompletedProcess[str]]

STEPS: dict[str, Any] = {
    "id": "cli-steps",
    "displayName": "Three steps, the middle one as slow as its trigger says",
    "metadata": {"sampleTrigger": {"delayMs": 200}},
    "startNode": "a",
    "nodes": [
        {"id": "a", "actionType": "core.echo", "parameters": {"message": "a"}},
        {"id": "b", "actionType": "core.echo", "parameters": {"message": "b", "delayMs": "{{ trigger.delayMs }}"}},
        {"id": "c", "actionType": "core.echo", "parameters": {"message": "c"}},
    ],
}
WAITER: dict[str, Any] = {
    "id": "cli-waiter",
    "displayName": "Waits for a signal",
    "startNode": "wait",
    "nodes": [
        {"id": "wait", "nodeType": "signal", "parameters": {"name": "go", "timeout": "PT10M"}},
        {"id": "done", "actionType": "core.echo", "parameters": {"message": "{{ nodes.wait.word }}"}},
    ],
}


@pytest.fixture
def cli(stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return in_process(stack, capsys, monkeypatch)


def program(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The `dataworkflows` program itself."""
    env = {**stack.env, "DW_API_URL": stack.url}
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=60)


def execution_id(output: str) -> str:
    match = re.search(r"execution ([0-9a-f-]{36}) ", output)
    assert match, output
    return match.group(1)


def lines_of(node: str, output: str) -> list[str]:
    """What the follow printed about a node: `started`, `Succeeded in 0.2s`, ... (its time stripped)."""
    return [line.split(f" {node} ", 1)[1].strip() for line in output.splitlines() if f" {node} " in line]


def test_run_wait_logs_follow_timeout_and_exit_codes(stack: Stack, cli: Cli) -> None:
    stack.start_worker()
    with stack.client() as client:
        for definition in (STEPS, WAITER, load_fixture("bundle2/permanent-failure-workflow.json")):
            created = client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition)
            assert created.status_code == 201, created.text

    # run --wait, as the program: no --trigger, so the workflow's sample trigger (and it says so);
    # each node when it starts and when it ends, with how long it ran; exit code 0.
    done = program(stack, "run", "cli-steps", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'using cli-steps\'s sample trigger (metadata.sampleTrigger): {"delayMs":200}' in done.stderr
    for node in ("a", "b", "c"):
        started, ended = lines_of(node, done.stdout)
        assert started == "started" and re.fullmatch(r"Succeeded in [0-9.]+m?s", ended), done.stdout
    assert re.search(r"execution [0-9a-f-]{36} Succeeded in [0-9.]+m?s$", done.stdout.strip()), done.stdout

    # The same run's log afterwards: every event, the run's own too; --follow on an ended run ends at once.
    steps_id = execution_id(done.stdout)
    log = cli("logs", steps_id)
    assert log.returncode == 0 and "execution_requested" in log.stdout and "execution_succeeded" in log.stdout
    assert lines_of("b", log.stdout) == lines_of("b", done.stdout)
    followed = cli("logs", steps_id, "--follow")
    assert followed.returncode == 0 and followed.stdout.splitlines()[-1].startswith(f"execution {steps_id} Succeeded")

    # A failed run: exit code 1, with the node's error.
    failed = cli("run", "permanent-failure", "--wait")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert lines_of("boom", failed.stdout)[-1].startswith("Failed in ")
    assert "Simulated permanent failure" in failed.stdout.splitlines()[-1]

    # --timeout while the run waits: exit code 4, the run goes on; logs --follow --timeout alike.
    waiting = cli("run", "cli-waiter", "--trigger", "{}", "--wait", "--timeout", "1")
    assert waiting.returncode == 4, waiting.stdout + waiting.stderr
    assert "waiting for signal go" in waiting.stdout
    waiter_id = execution_id(waiting.stdout)
    assert f"timeout: 1s passed and execution {waiter_id} is still Waiting; it goes on" in waiting.stderr
    assert cli("logs", waiter_id, "--follow", "--timeout", "0.5").returncode == 4
    # Once the signal comes, following it again ends with the run.
    assert cli("signal", waiter_id, "go", "--payload", '{"word": "now"}').returncode == 0
    resumed = cli("logs", waiter_id, "--follow", "--timeout", "60")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.fullmatch(r"Succeeded in [0-9.]+m?s", lines_of("done", resumed.stdout)[-1])

    # Usage errors (2) and an API that is not there (3).
    for args, text in (
        (("run", "cli-steps", "--timeout", "5"), "--timeout is how long --wait waits"),
        (("run", "cli-steps", "--trigger", "[1]"), "--trigger must be a JSON object"),
        (("run", "cli-steps", "--trigger", "{nope"), "--trigger is not valid JSON"),
        (("run", "nope", "--wait"), "not found"),
        (("logs", waiter_id, "--timeout", "5"), "give --follow too"),
        (("logs", "not-an-id"), "not found"),
        (("run", "cli-steps", "--wait", "--timeout", "0"), "give a positive number"),
    ):
        refused = cli(*args)
        assert (refused.returncode, text in refused.stderr) == (2, True), (args, refused.stderr)
    gone = cli("executions", "list", "--api-url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 3 and "cannot reach the API at http://127.0.0.1:" in gone.stderr

    _executions_list(cli, steps_id, waiter_id)
    _help_and_a_closed_pipe(stack)


def _executions_list(cli: Cli, steps_id: str, waiter_id: str) -> None:
    listed = json.loads(cli("executions", "list", "--json").stdout)
    assert [e["id"] for e in listed["items"]][-1] == steps_id and listed["nextCursor"] is None
    table = cli("executions", "list", "--workflow", "cli-steps").stdout.splitlines()
    assert table[0].split() == ["ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "TOOK", "TRIGGER"]
    assert table[1].split()[:4] == [steps_id, "cli-steps", "1", "Succeeded"] and len(table) == 2
    assert cli("executions", "list", "--status", "failed").stdout.splitlines()[1].split()[1] == "permanent-failure"
    assert cli("executions", "list", "--since", "1h").stdout.count("\n") == 4  # header + three runs
    assert cli("executions", "list", "--until", "2000-01-01T00:00:00Z").stdout.strip() == "no executions"
    first = cli("executions", "list", "--limit", "1")
    assert first.stdout.splitlines()[1].split()[0] == waiter_id
    cursor = re.search(r"more: add --cursor (\S+)", first.stderr)
    assert cursor, first.stderr
    second = cli("executions", "list", "--limit", "1", "--cursor", cursor.group(1))
    assert second.stdout.splitlines()[1].split()[0] not in (waiter_id, steps_id)
    refused = cli("executions", "list", "--since", "yesterday")
    assert refused.returncode == 2 and "neither an ISO 8601 time" in refused.stderr


def _help_and_a_closed_pipe(stack: Stack) -> None:
    # --help: defaults, environment, exit codes and an example.
    shown = program(stack, "executions", "list", "--help")
    assert shown.returncode == 0
    for text in ("(default: 50)", "DW_API_URL", "exit codes:", "example:\n  dataworkflows executions list"):
        assert text in shown.stdout, shown.stdout
    # A reader that goes away (`| head`): no traceback, exit code 1 (Python's for EPIPE).
    env = {**stack.env, "DW_API_URL": stack.url}
    for args in (["executions", "list"], ["--help"]):
        proc = subprocess.Popen([*command(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the program writes anything (it is still starting)
        error = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(60) in (0, 1), error  # argparse's --help ignores the error itself
        assert "Traceback" not in error and "BrokenPipe" not in error, error
