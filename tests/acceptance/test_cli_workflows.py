"""`dataworkflows workflows apply|list|disable|enable|archive` against a running API (in the test's process, see
cli_in_process)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.cli_in_process import in_process
from tests.acceptance.conftest import Stack
from tests.conftest import load_fixture

pytestmark = pytest.mark.acceptance

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return in_process(stack, capsys, monkeypatch)


def test_workflows_apply_list_archive(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    path.write_text(json.dumps(raw))

    first = cli("workflows", "apply", str(path), "--publish")
    assert first.returncode == 0, first.stderr
    assert "simple-echo v1 created" in first.stdout and "published: Active" in first.stdout
    path.write_text(json.dumps(raw, indent=4, sort_keys=True))
    again = cli("workflows", "apply", str(path))
    assert again.returncode == 0 and "v1 unchanged" in again.stdout

    raw["nodes"][0]["parameters"]["message"] = "changed"
    path.write_text(json.dumps(raw))
    changed = cli("workflows", "apply", str(path), "--publish")
    assert changed.returncode == 0 and "simple-echo v2 created" in changed.stdout

    listing = cli("workflows", "list")
    assert listing.returncode == 0
    line = next(line for line in listing.stdout.splitlines() if line.startswith("simple-echo"))
    assert line.split()[:4] == ["simple-echo", "Active", "2", "2"]

    disabled = cli("workflows", "disable", "simple-echo")
    assert disabled.returncode == 0 and "simple-echo disabled: new executions are refused" in disabled.stdout
    listed = next(line for line in cli("workflows", "list").stdout.splitlines() if line.startswith("simple-echo"))
    assert listed.endswith("(disabled)"), listed
    refused = cli("run", "simple-echo")
    assert refused.returncode == 2 and "is disabled" in refused.stderr
    enabled = cli("workflows", "enable", "simple-echo")
    assert enabled.returncode == 0 and "simple-echo enabled: it takes new executions" in enabled.stdout
    assert cli("workflows", "disable", "nope").returncode == 2

    archived = cli("workflows", "archive", "simple-echo")
    assert archived.returncode == 0 and "Archived" in archived.stdout
    refused = cli("run", "simple-echo")
    assert refused.returncode == 2 and "Archived" in refused.stderr

    raw["nodes"][1]["actionType"] = "core.nope"
    path.write_text(json.dumps(raw))
    invalid = cli("workflows", "apply", str(path))
    assert invalid.returncode == 2 and "/nodes/1/actionType" in invalid.stderr
    missing = cli("workflows", "apply", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    path.write_text("{broken")
    broken = cli("workflows", "apply", str(path))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    assert cli("workflows", "archive", "nope").returncode == 2
