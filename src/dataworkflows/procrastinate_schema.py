"""Procrastinate's own schema migrations, applied by `migrate`.

Procrastinate ships its schema changes as SQL files named ``xx.yy.zz_nn_{pre|post}_what.sql``
(``procrastinate/sql/migrations``; files before 3.0 have no pre/post and count as pre; a file named
otherwise stops `migrate`) and keeps no record of what a database has. Ours is in
dw.schema_migrations: migration '0000' names the Procrastinate version whose whole schema.sql it
installed (``procrastinate_schema 3.10.0``), with a row ``procrastinate/<file stem>`` named the same
for every file that Procrastinate shipped (its schema.sql has them); each file applied later is a
row ``procrastinate/<file stem>`` whose name says which Procrastinate applied it
(``procrastinate 3.12.0``). A file is pending when it has no row. Databases whose '0000' came before
the shipped files were recorded (all of them have a 3.x baseline) take every file up to the
baseline's version as in: file versions do not always name the release that shipped them
(02.14.01_* came with 2.15.0), but from 3.0 on they do.

A file's version is the Procrastinate release that ships it. Pre migrations add what the new release
needs and leave what the old one uses, so they are applied at once. Post migrations remove what only
older releases use (functions old workers call), so while old workers may still run they are held
back: a post migration is applied when it is not newer than the Procrastinate version this database
ran before the current one (that version's workers are the only old ones a rolling upgrade allows,
and their schema.sql already had it), that is by the `migrate` of the next Procrastinate upgrade,
or at once by ``migrate --finish`` once every process runs the new release, which applies every
pending file in version order. An upgrade across more than one Procrastinate version with
migrations would run a newer pre migration before an older post one: `migrate` refuses it and
asks for ``--finish`` with the old workers stopped.

Objects of ours (or yours) over Procrastinate's can block a migration that alters or drops what they
use. Each file first runs as it is, in a savepoint. Only when PostgreSQL refuses it because of a
dependent object (0A000 "cannot alter type of a column used by a view", 2BP01 "other objects
depend on it"), or when it took one of them along (CASCADE), is it rolled back to the savepoint and
run again with them detached:

- a view that uses Procrastinate's relations, types or functions is not dropped: its query is
  swapped (CREATE OR REPLACE VIEW) for a placeholder with the same columns and no dependencies,
  and put back afterwards with its options, so it keeps everything else (grants, owner, comments,
  column defaults, INSTEAD OF triggers, views over it, functions returning its row type). A
  materialized view cannot be swapped: it stops the migration (drop it first). A view whose
  columns change type with the migration cannot be put back: the migration fails, saying so;
- our triggers on Procrastinate's tables are dropped and created again as they were;
- our indexes on its tables are re-created if the file dropped them (a file that removed what one
  indexes fails then, instead of leaving it out silently), on either path.

Then the application roles get their grants on Procrastinate's relations again (a file may add a
table). File, detach and re-attach commit together, one transaction per file, under the lock
timeout of migration_locks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate.schema import SchemaManager

from dataworkflows.errors import MigrationError
from dataworkflows.migration_locks import LockRetry

log = structlog.get_logger("dataworkflows.migrations")

PREFIX = "procrastinate/"
BASELINE = "procrastinate_schema "
APPLIED_BY = "procrastinate "

_FILE = re.compile(r"^(?P<version>\d{2}\.\d{2}\.\d{2})_(?P<serial>\d{2})_(?P<rest>[a-z0-9_]+)\.sql$")
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")
# From this version on, every file is a pre or a post migration.
PRE_POST_SINCE = (3, 0, 0)

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """'3.10.0' -> (3, 10, 0); '03.02.00' -> (3, 2, 0); a pre-release counts as its release."""
    match = _VERSION.match(text)
    if match is None:
        raise ValueError(f"not a Procrastinate version: {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_text(version: Version) -> str:
    return ".".join(str(part) for part in version)


def installed_version() -> Version:
    return parse_version(procrastinate.__version__)


@dataclass(frozen=True)
class QueueMigration:
    stem: str
    version: Version
    post: bool
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_queue_migrations(directory: str | Path | None = None) -> list[QueueMigration]:
    """The installed Procrastinate's migration files, in the order they apply. Other files of the
    package (``__init__.py``) are not migrations; an SQL file named otherwise than expected stops
    here rather than being left out."""
    folder = Path(directory or SchemaManager.get_migrations_path())
    found = [_queue_migration(path) for path in folder.iterdir() if path.suffix == ".sql"]
    return sorted(found, key=lambda m: m.stem)


def _queue_migration(path: Path) -> QueueMigration:
    match = _FILE.match(path.name)
    if match is None:
        raise MigrationError(
            f"Procrastinate ships a migration named {path.name!r}, not xx.yy.zz_nn_name.sql: this release "
            "does not know how to apply it (which version it belongs to, whether it is pre or post)"
        )
    version = parse_version(match.group("version"))
    rest = match.group("rest")
    post = rest.startswith("post_")
    if version >= PRE_POST_SINCE and not (post or rest.startswith("pre_")):
        raise MigrationError(
            f"Procrastinate migration {path.name!r} is neither pre_ nor post_: this release does not know "
            "whether old workers can run with it"
        )
    return QueueMigration(stem=path.stem, version=version, post=post, sql=path.read_text("utf-8"))


@dataclass
class QueueSchemaState:
    """What dw.schema_migrations says about Procrastinate's schema."""

    baseline: Version
    # file stem -> the Procrastinate version that applied it (or whose schema.sql had it)
    applied: dict[str, Version] = field(default_factory=dict)
    # '0000' recorded the files its schema.sql had: no version comparison needed.
    files_recorded: bool = False

    def has(self, migration: QueueMigration) -> bool:
        if migration.stem in self.applied:
            return True
        # A '0000' from before files were recorded: a 3.x baseline, where file versions are exact.
        return not self.files_recorded and migration.version <= self.baseline

    def previous_version(self, current: Version) -> Version:
        """The newest Procrastinate version older than `current` that migrated this database: the
        one old workers run during a rolling upgrade to `current`."""
        older = [v for v in (self.baseline, *self.applied.values()) if v < current]
        return max(older, default=self.baseline)

    def newest(self) -> Version:
        """The newest Procrastinate that installed or migrated this database's schema."""
        return max((self.baseline, *self.applied.values()))


def read_state(conn: psycopg.Connection[Any]) -> QueueSchemaState | None:
    """None before migration '0000' (no Procrastinate schema recorded yet)."""
    rows = conn.execute(
        "SELECT version, name FROM dw.schema_migrations WHERE version = '0000' OR starts_with(version, %s)",
        (PREFIX,),
    ).fetchall()
    names = {str(version): str(name) for version, name in rows}
    if "0000" not in names:
        return None
    state = QueueSchemaState(baseline=parse_version(names.pop("0000").removeprefix(BASELINE)))
    for version, name in names.items():
        shipped = name.startswith(BASELINE)
        state.files_recorded |= shipped
        by = name.removeprefix(BASELINE) if shipped else name.removeprefix(APPLIED_BY)
        state.applied[version.removeprefix(PREFIX)] = parse_version(by)
    return state


def record_baseline(conn: psycopg.Connection[Any]) -> None:
    """With migration '0000': the installed Procrastinate's schema.sql has all its files."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            [(PREFIX + m.stem, BASELINE + procrastinate.__version__, m.checksum) for m in load_queue_migrations()],
        )


@dataclass(frozen=True)
class QueuePlan:
    apply: list[QueueMigration]
    held: list[QueueMigration]


def pending(state: QueueSchemaState, migrations: list[QueueMigration], current: Version) -> list[QueueMigration]:
    return [m for m in migrations if not state.has(m) and m.version <= current]


def plan(
    state: QueueSchemaState, migrations: list[QueueMigration], current: Version, *, finish: bool = False
) -> QueuePlan:
    """Which files to apply now, in order, and which post migrations wait for old workers to go.
    Refuses (MigrationError) a rolling upgrade that would apply a pre migration newer than a post
    one it holds back."""
    todo = pending(state, migrations, current)
    if finish:
        return QueuePlan(apply=todo, held=[])
    old_workers = state.previous_version(current)
    apply = [m for m in todo if not m.post or m.version <= old_workers]
    held = [m for m in todo if m not in apply]
    jumped = [m for m in apply if held and m.version > held[0].version]
    if jumped:
        raise MigrationError(
            f"this upgrade takes Procrastinate's schema from {version_text(old_workers)} to "
            f"{version_text(current)}, across more than one version with migrations: its pre migration "
            f"{jumped[0].stem} must come after the post migration {held[0].stem}, which removes what the "
            "previous release's workers use. Stop the previous release's API and workers, then run "
            "`dataworkflows migrate --finish`: it applies every migration in version order."
        )
    return QueuePlan(apply=apply, held=held)


def apply_pending(conn: psycopg.Connection[Any], retry: LockRetry, *, finish: bool = False) -> list[str]:
    """Applies the due files (the caller holds the migrations lock); returns their record versions."""
    state = read_state(conn)
    if state is None:
        return []
    current = installed_version()
    due = plan(state, load_queue_migrations(), current, finish=finish)
    applied = []
    for migration in due.apply:
        log.info("applying Procrastinate migration", migration=migration.stem)

        def work(m: QueueMigration = migration) -> None:
            _apply_file(conn, m, current)

        try:
            retry.run(f"Procrastinate migration {migration.stem}", work)
        except psycopg.Error as exc:
            raise MigrationError(f"Procrastinate migration {migration.stem} failed: {exc}") from exc
        applied.append(PREFIX + migration.stem)
    if due.held:
        log.info("Procrastinate post migrations held back for old workers", held=[m.stem for m in due.held])
    return applied


class _TookDependents(Exception):
    """The file dropped some of our objects along with its own (CASCADE)."""


def _apply_file(conn: psycopg.Connection[Any], migration: QueueMigration, current: Version) -> None:
    dependents = capture_dependents(conn)
    try:
        with conn.transaction():  # a savepoint: the file as it is, nothing detached
            conn.execute(migration.sql)
            lost = dependents.lost(conn)
            if lost:
                raise _TookDependents(f"it dropped {', '.join(lost)}")
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.DependentObjectsStillExist, _TookDependents) as exc:
        log.info(
            "Procrastinate migration runs again with dependent objects detached",
            migration=migration.stem,
            reason=str(exc).splitlines()[0],
        )
        _apply_detached(conn, migration, dependents)
    dependents.restore_indexes(conn)
    grant_queue_access(conn)
    conn.execute(
        "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
        (PREFIX + migration.stem, APPLIED_BY + version_text(current), migration.checksum),
    )


def _apply_detached(conn: psycopg.Connection[Any], migration: QueueMigration, dependents: Dependents) -> None:
    dependents.detach(conn)
    try:
        conn.execute(migration.sql)
    except psycopg.errors.LockNotAvailable:
        raise
    except psycopg.Error as exc:
        raise MigrationError(
            f"Procrastinate migration {migration.stem} failed even with {dependents.describe()} detached: {exc}"
        ) from exc
    try:
        dependents.attach(conn)
    except psycopg.errors.LockNotAvailable:
        raise
    except psycopg.Error as exc:
        raise MigrationError(
            f"after Procrastinate migration {migration.stem}, {dependents.describe()} cannot be put back as they "
            f"were (a view whose columns change type with it must be dropped before `migrate` and created "
            f"again after): {exc}"
        ) from exc


def held_back(conn: psycopg.Connection[Any]) -> list[str]:
    """Post migrations that `migrate --finish` would apply."""
    state = read_state(conn)
    if state is None:
        return []
    current = installed_version()
    old_workers = state.previous_version(current)
    return [m.stem for m in pending(state, load_queue_migrations(), current) if m.post and m.version > old_workers]


# Procrastinate's relations, types and functions: those named procrastinate_* in the schema of
# procrastinate_jobs. The queries below take them as arrays of oids.
_QUEUE_OBJECTS = """
SELECT ARRAY(SELECT c.oid FROM pg_class c
              WHERE c.relnamespace = %(ns)s AND c.relname LIKE 'procrastinate\\_%%') AS relations,
       ARRAY(SELECT t.oid FROM pg_type t
              WHERE t.typnamespace = %(ns)s AND t.typname LIKE 'procrastinate\\_%%') AS types,
       ARRAY(SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = %(ns)s AND p.proname LIKE 'procrastinate\\_%%') AS functions
"""

# Views (and materialized views) whose query uses them, each with the statement that swaps its
# query for a placeholder with the same columns (names, types, collations) and no dependencies,
# and the one that puts it back with its options (check_option is left out of the placeholder's:
# it applies to updatable views only). Views over those are not touched: their columns stay.
# Names come out schema-qualified (the caller empties search_path while this runs).
_DEPENDENT_VIEWS = """
WITH queue(classid, oid) AS (
    SELECT 'pg_class'::regclass, unnest(%(relations)s::oid[])
    UNION ALL SELECT 'pg_type'::regclass, unnest(%(types)s::oid[])
    UNION ALL SELECT 'pg_proc'::regclass, unnest(%(functions)s::oid[])
),
views AS (
    SELECT DISTINCT r.ev_class AS oid
      FROM pg_depend d
      JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
      JOIN queue q ON q.classid = d.refclassid AND q.oid = d.refobjid
     WHERE r.ev_class <> ALL(%(relations)s::oid[])
)
SELECT c.oid, c.oid::regclass::text AS name, c.relkind::text AS kind,
       format('CREATE OR REPLACE VIEW %%s%%s AS SELECT %%s WHERE false', c.oid::regclass,
              (SELECT coalesce(' WITH (' || string_agg(o, ', ') || ')', '')
                 FROM unnest(c.reloptions) o WHERE o NOT LIKE 'check\\_option=%%'),
              (SELECT coalesce(string_agg(
                          format('NULL::%%s%%s AS %%I', format_type(a.atttypid, a.atttypmod),
                                 CASE WHEN a.attcollation <> t.typcollation
                                      THEN (SELECT format(' COLLATE %%I.%%I', n.nspname, co.collname)
                                              FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
                                             WHERE co.oid = a.attcollation)
                                      ELSE '' END,
                                 a.attname), ', ' ORDER BY a.attnum), '')
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)) AS placeholder_sql,
       format('CREATE OR REPLACE VIEW %%s%%s AS %%s', c.oid::regclass,
              coalesce(' WITH (' || array_to_string(c.reloptions, ', ') || ')', ''),
              pg_get_viewdef(c.oid)) AS restore_sql
  FROM views v JOIN pg_class c ON c.oid = v.oid
 ORDER BY 2
"""

# Our indexes and triggers on Procrastinate's tables (theirs are all named procrastinate_* or
# idx_procrastinate_*; ours dw_*). Indexes never block a migration (PostgreSQL rebuilds them), but
# a dropped table or column takes them along; triggers block a change to a column their WHEN uses.
_DEPENDENT_INDEXES = """
SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text,
       format('DROP INDEX IF EXISTS %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = ANY(%(relations)s::oid[])
   AND c.relname NOT LIKE 'procrastinate\\_%%' AND c.relname NOT LIKE 'idx\\_procrastinate\\_%%'
 ORDER BY 1
"""

_DEPENDENT_TRIGGERS = """
SELECT t.oid, format('%%I on %%s', t.tgname, t.tgrelid::regclass),
       format('DROP TRIGGER %%I ON %%s', t.tgname, t.tgrelid::regclass),
       ARRAY[
           pg_get_triggerdef(t.oid),
           format('ALTER TABLE %%s %%s TRIGGER %%I', t.tgrelid::regclass,
                  CASE t.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
                                   WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END, t.tgname)]
  FROM pg_trigger t
 WHERE t.tgrelid = ANY(%(relations)s::oid[])
   AND NOT t.tgisinternal AND t.tgname NOT LIKE 'procrastinate\\_%%'
 ORDER BY 2
"""


@dataclass(frozen=True)
class DependentView:
    oid: int
    name: str
    kind: str
    placeholder_sql: str
    restore_sql: str


@dataclass(frozen=True)
class DependentTrigger:
    oid: int
    name: str
    drop_sql: str
    create_sql: list[str]


@dataclass(frozen=True)
class OurIndex:
    name: str
    table: str
    drop_sql: str
    create_sql: str


@dataclass
class Dependents:
    """Our objects over Procrastinate's, as they are now."""

    views: list[DependentView]
    triggers: list[DependentTrigger]
    indexes: list[OurIndex]

    def describe(self) -> str:
        names = [f"view {v.name}" for v in self.views] + [f"trigger {t.name}" for t in self.triggers]
        return ", ".join(names) or "nothing to detach"

    def lost(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Those that are gone."""
        if not self.views and not self.triggers:
            return []
        row = conn.execute(
            "SELECT ARRAY(SELECT oid FROM pg_class WHERE oid = ANY(%s::oid[])), "
            "ARRAY(SELECT oid FROM pg_trigger WHERE oid = ANY(%s::oid[]))",
            ([v.oid for v in self.views], [t.oid for t in self.triggers]),
        ).fetchone()
        assert row is not None
        views, triggers = set(row[0]), set(row[1])
        return [v.name for v in self.views if v.oid not in views] + [
            t.name for t in self.triggers if t.oid not in triggers
        ]

    def detach(self, conn: psycopg.Connection[Any]) -> None:
        for view in self.views:
            if view.kind != "v":
                raise MigrationError(
                    f"{view.name} depends on Procrastinate's schema and is not a plain view: a Procrastinate "
                    "migration needs it out of the way and it cannot be put back without its data. Drop it, "
                    "run `migrate`, then create it again"
                )
        for view in self.views:
            conn.execute(view.placeholder_sql)
        for trigger in self.triggers:
            conn.execute(trigger.drop_sql)

    def attach(self, conn: psycopg.Connection[Any]) -> None:
        for view in self.views:
            conn.execute(view.restore_sql)
        for trigger in self.triggers:
            for statement in trigger.create_sql:
                conn.execute(statement)

    def restore_indexes(self, conn: psycopg.Connection[Any]) -> None:
        for index in self.indexes:
            row = conn.execute(
                "SELECT i.indrelid = to_regclass(%s) FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                (index.table, index.name),
            ).fetchone()
            if row is None or not row[0]:
                # Gone with its table or column (or left on a renamed table): made again, so that a
                # file that removed what it indexes fails here instead of leaving it out silently.
                conn.execute(index.drop_sql)
                conn.execute(index.create_sql)


def capture_dependents(conn: psycopg.Connection[Any]) -> Dependents:
    row = conn.execute("SELECT relnamespace FROM pg_class WHERE oid = to_regclass('procrastinate_jobs')").fetchone()
    if row is None:
        return Dependents(views=[], triggers=[], indexes=[])
    objects = conn.execute(_QUEUE_OBJECTS, {"ns": row[0]}).fetchone()
    assert objects is not None
    params = dict(zip(("relations", "types", "functions"), objects, strict=True))
    search_path = conn.execute("SELECT current_setting('search_path')").fetchone()
    # Empty: definitions come out with every name schema-qualified.
    conn.execute("SELECT set_config('search_path', '', true)")
    views = [DependentView(*r) for r in conn.execute(_DEPENDENT_VIEWS, params).fetchall()]
    triggers = [
        DependentTrigger(oid, name, drop, list(create))
        for oid, name, drop, create in conn.execute(_DEPENDENT_TRIGGERS, params).fetchall()
    ]
    indexes = [OurIndex(*r) for r in conn.execute(_DEPENDENT_INDEXES, params).fetchall()]
    conn.execute("SELECT set_config('search_path', %s, true)", (search_path[0] if search_path else "",))
    return Dependents(views=views, triggers=triggers, indexes=indexes)


# The application roles' access to Procrastinate's queue, as migration 0018 gave it: its tables,
# views and sequences, including those a Procrastinate migration just created. Roles that do not
# exist yet (a database before 0018) are skipped; 0018 grants them.
_GRANTS = """
DO $$
DECLARE
    r record;
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['dataworkflows_app', 'dataworkflows_maintenance'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role);
        FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
                  WHERE c.relname LIKE 'procrastinate\\_%' AND c.relkind IN ('r', 'S', 'v')
                    AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'procrastinate_jobs'::regclass)
        LOOP
            IF r.relkind = 'S' THEN
                EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %s TO %I', r.name, v_role);
            ELSE
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', r.name, v_role);
            END IF;
        END LOOP;
    END LOOP;
END;
$$
"""


def grant_queue_access(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_GRANTS)
