"""Upgrades without a database: which Procrastinate migrations `migrate` applies when, what our SQL
needs from Procrastinate's schema, and the release list (README "Upgrading")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from procrastinate.schema import SchemaManager

from dataworkflows import cli
from dataworkflows.config import Settings
from dataworkflows.errors import DatabaseNewerError, MigrationError
from dataworkflows.migrations import unknown_migrations
from dataworkflows.procrastinate_schema import (
    QueueMigration,
    QueueSchemaState,
    load_queue_migrations,
    parse_version,
    plan,
)
from dataworkflows.sqlfiles import load_migrations

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "upgrade_data"


def files(*stems: str) -> list[QueueMigration]:
    return [QueueMigration(stem=s, version=parse_version(s), post="_post_" in s, sql=f"-- {s}") for s in sorted(stems)]


MIGRATIONS = files(
    "03.11.00_01_pre_a",
    "03.11.00_50_post_a",
    "03.12.00_01_pre_b",
    "03.13.00_01_pre_c",
    "03.13.00_50_post_c",
)


def stems(migrations: list[QueueMigration]) -> list[str]:
    return [m.stem for m in migrations]


def test_versions_parse_from_packages_and_file_names() -> None:
    assert parse_version("3.10.0") == (3, 10, 0)
    assert parse_version("03.02.00") == (3, 2, 0)
    assert parse_version("3.11.0b1") == (3, 11, 0)
    assert parse_version("4.0") == (4, 0, 0)


def test_the_installed_procrastinate_files_load_in_order_with_pre_and_post() -> None:
    loaded = load_queue_migrations()
    assert stems(loaded) == sorted(stems(loaded))
    by_stem = {m.stem: m for m in loaded}
    assert by_stem["03.02.00_01_pre_batch_defer_jobs"].post is False
    assert by_stem["03.02.00_50_post_batch_defer_jobs"].post is True
    assert by_stem["02.06.00_01_add_cancel_states"].post is False  # before 3.0: no marker, applied at once


def test_a_database_at_the_installed_version_has_nothing_to_apply() -> None:
    due = plan(QueueSchemaState(baseline=(3, 13, 0)), MIGRATIONS, (3, 13, 0))
    assert due.apply == [] and due.held == []


def test_an_upgrade_applies_pre_migrations_and_holds_post_ones_for_the_old_workers() -> None:
    state = QueueSchemaState(baseline=(3, 10, 0))
    due = plan(state, MIGRATIONS, (3, 11, 0))
    assert stems(due.apply) == ["03.11.00_01_pre_a"]
    assert stems(due.held) == ["03.11.00_50_post_a"]
    # --finish: every process runs the new release.
    assert stems(plan(state, MIGRATIONS, (3, 11, 0), finish=True).apply) == ["03.11.00_01_pre_a", "03.11.00_50_post_a"]


def test_an_upgrade_across_versions_with_migrations_needs_the_old_workers_stopped() -> None:
    """3.10 -> 3.13 would apply 3.12's pre migration before 3.11's post one, which the old workers
    still need: refused, unless --finish applies them all in version order."""
    state = QueueSchemaState(baseline=(3, 10, 0))
    with pytest.raises(
        MigrationError,
        match=r"03\.12\.00_01_pre_b must come after the post migration "
        r"03\.11\.00_50_post_a.*migrate --finish",
    ):
        plan(state, MIGRATIONS, (3, 13, 0))
    assert stems(plan(state, MIGRATIONS, (3, 13, 0), finish=True).apply) == stems(MIGRATIONS)
    # A jump over versions whose post migrations are already in (or that have none) is fine.
    done = QueueSchemaState(baseline=(3, 11, 0))
    due = plan(done, MIGRATIONS, (3, 13, 0))
    assert stems(due.apply) == ["03.12.00_01_pre_b", "03.13.00_01_pre_c"] and stems(due.held) == ["03.13.00_50_post_c"]


def test_held_post_migrations_wait_for_the_next_upgrade_not_the_next_migrate() -> None:
    # 3.11 applied its pre migration; old 3.10 workers may still run.
    state = QueueSchemaState(baseline=(3, 10, 0), applied={"03.11.00_01_pre_a": (3, 11, 0)})
    again = plan(state, MIGRATIONS, (3, 11, 0))
    assert again.apply == [] and stems(again.held) == ["03.11.00_50_post_a"]
    # Upgrading to 3.12: the old workers run 3.11 now, whose schema has 3.11's post migration.
    upgrade = plan(state, MIGRATIONS, (3, 12, 0))
    assert stems(upgrade.apply) == ["03.11.00_50_post_a", "03.12.00_01_pre_b"] and upgrade.held == []
    state.applied |= {"03.11.00_50_post_a": (3, 12, 0), "03.12.00_01_pre_b": (3, 12, 0)}
    upgrade = plan(state, MIGRATIONS, (3, 13, 0))
    assert stems(upgrade.apply) == ["03.13.00_01_pre_c"] and stems(upgrade.held) == ["03.13.00_50_post_c"]


def test_what_schema_sql_had_is_recorded_by_name_not_guessed_from_versions() -> None:
    """02.14.01_* shipped with 2.15.0: a schema.sql of 2.14.1 did not have it, though its version
    says otherwise. Databases installed since files are recorded go by name; older records (3.x
    baselines, where versions are exact) by version."""
    old = files("02.08.00_01_a", "02.14.01_01_b", "03.00.00_01_pre_c", "03.00.00_50_post_c")
    recorded = QueueSchemaState(baseline=(2, 14, 1), applied={"02.08.00_01_a": (2, 14, 1)}, files_recorded=True)
    assert stems(plan(recorded, old, (3, 0, 0), finish=True).apply) == stems(old)[1:]
    legacy = QueueSchemaState(baseline=(3, 0, 0))
    assert plan(legacy, old, (3, 0, 0), finish=True).apply == []


def test_an_older_procrastinate_applies_nothing_newer_than_itself() -> None:
    state = QueueSchemaState(baseline=(3, 10, 0), applied={"03.11.00_01_pre_a": (3, 11, 0)})
    assert plan(state, MIGRATIONS, (3, 10, 0)).apply == []


def test_a_procrastinate_file_named_unexpectedly_stops_migrate(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "03.11.00_01_pre_ok.sql").write_text("SELECT 1;")
    (tmp_path / "02.01.00_01_old_style.sql").write_text("SELECT 1;")
    assert stems(load_queue_migrations(tmp_path)) == ["02.01.00_01_old_style", "03.11.00_01_pre_ok"]
    (tmp_path / "03.11.00_02_neither.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="neither pre_ nor post_"):
        load_queue_migrations(tmp_path)
    (tmp_path / "03.11.00_02_neither.sql").unlink()
    (tmp_path / "3.12.0-Add-Things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"3\.12\.0-Add-Things\.sql"):
        load_queue_migrations(tmp_path)


def test_unknown_migrations_are_newer_or_diverged() -> None:
    known = ["0001", "0002", "0003"]
    assert unknown_migrations(["0000", "0001", "0002", "procrastinate/03.00.00_01_pre_x"], known) == ([], [])
    assert unknown_migrations(["0001", "0002", "0003", "0004", "0005"], known) == (["0004", "0005"], [])
    # Below our last one, or above it without all of ours: another branch.
    assert unknown_migrations(["0001", "0003", "0025"], ["0001", "0003", "0026"]) == ([], ["0025"])
    assert unknown_migrations(["0001", "0002", "0004"], known) == ([], ["0004"])


def test_up_finishes_on_its_embedded_server_and_lists_held_ones_on_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataworkflows import migrations

    calls: list[bool] = []
    monkeypatch.setattr(migrations, "migrate", lambda _url, *, finish, locks: calls.append(finish) or [])
    monkeypatch.setattr(migrations, "held_back", lambda _url: ["03.11.00_50_post_a"])
    cli._migrate_for_up(Settings(), "postgresql:///x", embedded=True)
    assert "held back" not in capsys.readouterr().out
    cli._migrate_for_up(Settings(), "postgresql:///x", embedded=False)
    assert calls == [True, False]
    assert "03.11.00_50_post_a" in capsys.readouterr().out

    def newer(_url: str, **_: object) -> list[str]:
        raise DatabaseNewerError("the database was migrated by a newer release (0099)")

    monkeypatch.setattr(migrations, "migrate", newer)
    cli._migrate_for_up(Settings(), "postgresql:///x", embedded=False)  # runs on, as in a rolling upgrade
    assert "newer release" in capsys.readouterr().err


def test_every_procrastinate_object_our_sql_names_is_in_the_installed_schema() -> None:
    """Our procedures and views name Procrastinate's tables, types and functions (PL/pgSQL bodies
    are not tracked by PostgreSQL's dependencies): a Procrastinate that drops one fails here."""
    schema = SchemaManager.get_schema()
    named = {
        name
        for path in (ROOT / "sql").glob("*/*.sql")
        for name in re.findall(r"(?<![a-z0-9_])procrastinate_[a-z0-9_]+", path.read_text())
    }
    assert {"procrastinate_jobs", "procrastinate_defer_jobs_v1", "procrastinate_workers"} <= named
    missing = {name for name in named if not re.search(rf"\b{name}\b", schema)}
    assert missing == set()


def test_the_release_list_names_real_migrations_and_the_newest_has_its_fixture() -> None:
    releases = json.loads((ROOT / "sql" / "releases.json").read_text())
    lasts = [r["lastMigration"] for r in releases["releases"]]
    assert lasts == sorted(set(lasts)), "releases are listed oldest first"
    assert set(lasts) <= {m.version for m in load_migrations()}
    newest = releases["releases"][-1]
    meta = json.loads((DATA / f"release-{newest['version']}.json").read_text())
    assert meta["version"] == newest["version"] and meta["commit"] == newest["commit"]
    assert (DATA / f"release-{newest['version']}.sql").exists()
    for entry in [*releases["releases"], releases["unreleased"]]:
        assert all(re.fullmatch(r"dw\.\w+\(.*\)", name) for name in entry["retires"]), entry


# The tables every start, fetch, acquire, record and wait writes: a plain CREATE INDEX on one holds
# those writes for its whole scan (README "Upgrading": 0026's held every start for about a second with
# 600,000 runs), and in a transaction that also ALTERs the table, its reads too.
_HOT_TABLES = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)\S+\s+ON\s+(dw\.executions|dw\.waits|procrastinate_jobs)\b"
)


def test_migrations_since_0071_build_indexes_on_the_hot_tables_concurrently() -> None:
    """A review: migration 0071 built two indexes on dw.executions and procrastinate_jobs in its
    transaction, after its ALTER TABLE dw.executions: every start, fetch and read of a run would wait
    for both scans during an upgrade that says the previous release keeps running."""
    for migration in load_migrations():
        if migration.version < "0071":
            continue
        code = "\n".join(line.split("--", 1)[0] for line in migration.sql.splitlines())
        found = _HOT_TABLES.findall(code)
        assert not found, f"migration {migration.version} builds an index on {found} without CONCURRENTLY"
        if "CONCURRENTLY" in code:
            assert not migration.transactional, migration.version
