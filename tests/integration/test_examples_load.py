"""`dataworkflows examples load` (docker compose's one-shot `examples` service): the examples `up`
loads, into DATABASE_URL, and a second run changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataworkflows import examples
from dataworkflows.cli import EXIT_OK, main
from dataworkflows.examples import example_definitions


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() would bind structlog to this test's captured stderr, which later tests find closed.
    monkeypatch.setattr("dataworkflows.cli.configure_logging", lambda *_: None)


def test_examples_load_into_database_url_and_again_changes_nothing(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    assert main(["examples", "load"]) == EXIT_OK
    assert "example workflows (Active):" in capsys.readouterr().out

    def versions() -> dict[str, tuple[str, int]]:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
            rows = conn.execute("SELECT id, status, current_version FROM dw.workflows").fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    first = versions()
    expected = {definition["id"] for _, definition in example_definitions()}
    assert expected <= set(first)
    assert all(first[workflow_id][0] == "Active" for workflow_id in expected)
    assert main(["examples", "load"]) == EXIT_OK
    assert versions() == first
    # An example an operator archived or disabled stays so, and is not listed as Active (a review).
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE dw.workflows SET status = 'Archived' WHERE id = 'first-match'")
        conn.execute("UPDATE dw.workflows SET is_enabled = false WHERE id = 'conditional'")
    capsys.readouterr()
    assert main(["examples", "load"]) == EXIT_OK
    out = capsys.readouterr().out
    active = next(line for line in out.splitlines() if line.startswith("example workflows (Active): "))
    assert "first-match" not in active and "conditional" not in active and "simple-echo" in active
    assert "left as an operator set them: " in out and "first-match (Archived)" in out
    assert "conditional (Active, disabled)" in out


def test_examples_load_needs_a_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """DATABASE_URL, else an embedded database under DW_DATA_DIR (none is made here)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path / "none"))
    assert main(["examples", "load"]) != EXIT_OK
    assert "no embedded database under" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_examples_a_load_that_died_saved_are_published_by_the_next(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The loader saves every example, then publishes them: a load that died in between (an `up`
    killed while it loaded them, a helper that could not start for a later one's conditions) left
    the ones it had saved as Drafts that no later load published ("left as an operator set them"),
    so the README's walkthrough answered 409 at every later `up`. Only the loader's own Drafts are
    taken up: one an operator made, or saved a version of, is still left as it is."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    real_prepare = examples.prepare_definition
    prepared: list[str] = []

    async def dies_at_the_fourth(raw: Any, *args: Any, **kwargs: Any) -> Any:
        if len(prepared) == 3:
            raise KeyboardInterrupt  # stopped here (a Ctrl-C; a kill -9 leaves the same rows)
        prepared.append(raw["id"])
        return await real_prepare(raw, *args, **kwargs)

    monkeypatch.setattr(examples, "prepare_definition", dies_at_the_fourth)
    assert main(["examples", "load"]) != EXIT_OK
    monkeypatch.setattr(examples, "prepare_definition", real_prepare)
    saved, operators, edited = prepared
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        rows = conn.execute("SELECT id, status FROM dw.workflows ORDER BY id").fetchall()
        assert sorted(rows) == sorted((workflow_id, "Draft") for workflow_id in prepared)
        # An operator's Draft of an example's id, and a Draft an operator saved a version of.
        conn.execute("UPDATE dw.workflows SET created_by = 'alice' WHERE id = %s", [operators])
        conn.execute("UPDATE dw.workflow_versions SET created_by = 'bob' WHERE workflow_id = %s", [edited])
    capsys.readouterr()
    assert main(["examples", "load"]) == EXIT_OK
    out = capsys.readouterr().out
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        status = dict(conn.execute("SELECT id, status FROM dw.workflows").fetchall())
    assert status[saved] == "Active"
    assert status[operators] == "Draft" and status[edited] == "Draft"
    others = {d["id"] for _, d in example_definitions()} - {operators, edited}
    assert {workflow_id: status[workflow_id] for workflow_id in others} == dict.fromkeys(others, "Active")
    assert f"{operators} (Draft)" in out and f"{edited} (Draft)" in out
