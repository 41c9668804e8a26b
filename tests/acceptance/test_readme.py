"""The README's walkthrough runs as written (against real processes), so it cannot rot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Stack
from tests.conftest import ROOT, load_fixture

pytestmark = pytest.mark.acceptance


def walkthrough(name: str = "walkthrough") -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:start -->\s*```bash\n(.*?)```\s*<!-- {name}:end -->", text, re.DOTALL)
    assert block, f"README.md lost its {name} block"
    return block.group(1)


def test_readme_template_shows_the_loaded_template_parameters() -> None:
    """The README's template (shortened) declares the parameters of the template `up` loads."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Workflow templates") :]
    shown = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))  # type: ignore[union-attr]
    loaded = load_fixture("templates/approval-workflow-template.json")
    assert shown["parameters"] == [
        {key: value for key, value in p.items() if key != "description"} for p in loaded["parameters"]
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_readme_walkthrough(stack: Stack, tmp_path: Path) -> None:
    stack.start_worker()
    with stack.client() as client:
        created = client.post(
            "/api/v1/workflows", params={"autoActivate": "true"}, json=load_fixture("bundle1/simple-echo-workflow.json")
        )
        assert created.status_code == 201
        # The walkthrough gives the run one second: wait until the worker takes work (a machine
        # under load can take longer than that to start a process).
        warm = client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}).json()
    stack.wait_for(warm["executionId"], {"Succeeded"})
    script = walkthrough().replace("http://127.0.0.1:5131", stack.url)
    script = script.replace("/tmp/execution-response.json", str(tmp_path / "response.json"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"status":"Pending"' in out and '"statusUrl":"/api/v1/executions/' in out
    assert '"status":"Succeeded"' in out, out
    assert '"echo":"Hello from node 1"' in out and '"echo":"Hello from node 2"' in out
    assert out.count('"requestId":"order-42"') == 2
    ids = re.findall(
        r'"executionId":"([0-9a-f-]+)","status":"[A-Za-z]+","statusUrl":"[^"]+","workflowId":"simple-echo",'
        r'"workflowVersion":1,"requestId":"order-42"',
        out,
    )
    assert len(ids) == 2 and ids[0] == ids[1]

    # The workflow-template example, on the template `up` loads.
    with stack.client() as client:
        template = load_fixture("templates/approval-workflow-template.json")
        loaded = client.post("/api/v1/workflow-templates", json=template)
        assert loaded.status_code == 201, loaded.text
    script = walkthrough("template-example").replace("http://127.0.0.1:5131", stack.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    created, refused = (json.loads(line) for line in result.stdout.splitlines())
    assert (created["id"], created["status"], created["templateId"]) == ("expenses", "Draft", "approval-flow")
    assert refused["status"] == 422 and [e["pointer"] for e in refused["errors"]] == ["/config/reviewer"]
