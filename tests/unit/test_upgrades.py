"""Upgrades without a database: which Procrastinate migrations `migrate` applies when, what our SQL
needs from Procrastinate's schema, and the release list (README "Upgrading")."""

from __future__ import annotations

import json
import re
from pathlib import Path

from procrastinate.schema import SchemaManager

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
    due = plan(state, MIGRATIONS, (3, 13, 0))
    assert stems(due.apply) == ["03.11.00_01_pre_a", "03.12.00_01_pre_b", "03.13.00_01_pre_c"]
    assert stems(due.held) == ["03.11.00_50_post_a", "03.13.00_50_post_c"]
    # --finish: every process runs the new release.
    assert stems(plan(state, MIGRATIONS, (3, 13, 0), finish=True).apply) == stems(MIGRATIONS)


def test_held_post_migrations_wait_for_the_next_upgrade_not_the_next_migrate() -> None:
    # 3.12 applied the pre migrations of 3.11 and 3.12; old 3.10 workers may still run.
    state = QueueSchemaState(
        baseline=(3, 10, 0), applied={"03.11.00_01_pre_a": (3, 12, 0), "03.12.00_01_pre_b": (3, 12, 0)}
    )
    again = plan(state, MIGRATIONS, (3, 12, 0))
    assert again.apply == [] and stems(again.held) == ["03.11.00_50_post_a"]
    # Upgrading to 3.13: the old workers run 3.12 now, whose schema has 3.11's post migration.
    upgrade = plan(state, MIGRATIONS, (3, 13, 0))
    assert stems(upgrade.apply) == ["03.11.00_50_post_a", "03.13.00_01_pre_c"]
    assert stems(upgrade.held) == ["03.13.00_50_post_c"]


def test_an_older_procrastinate_applies_nothing_newer_than_itself() -> None:
    state = QueueSchemaState(baseline=(3, 10, 0), applied={"03.11.00_01_pre_a": (3, 11, 0)})
    assert plan(state, MIGRATIONS, (3, 10, 0)).apply == []


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
