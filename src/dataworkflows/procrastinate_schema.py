"""Procrastinate's own schema migrations, applied by `migrate`.

Procrastinate ships its schema changes as SQL files named ``xx.yy.zz_nn_{pre|post}_what.sql``
(``procrastinate/sql/migrations``; files before 3.0 have no pre/post and count as pre) and keeps no
record of what a database has. Ours is in dw.schema_migrations: migration '0000' names the
Procrastinate version whose whole schema.sql it installed (``procrastinate_schema 3.10.0``), so every
file up to that version is in; each file applied later is a row ``procrastinate/<file stem>`` whose
name says which Procrastinate applied it (``procrastinate 3.12.0``).

A file's version is the Procrastinate release that ships it. Pre migrations add what the new release
needs and leave what the old one uses, so they are applied at once. Post migrations remove what only
older releases use (functions old workers call), so while old workers may still run they are held
back: a post migration is applied when it is not newer than the Procrastinate version this database
ran before the current one (that version's workers are the only old ones a rolling upgrade allows,
and their schema.sql already had it), that is by the `migrate` of the next Procrastinate upgrade,
or at once by ``migrate --finish`` once every process runs the new release.

Objects that depend on Procrastinate's (views over its tables, indexes and triggers on them that
are not its own) would block a migration that alters or drops what they use, or vanish with it.
Around each file they are detached and put back as they were: views (and views over those) are
dropped and re-created from their definition, options, owner, comment and grants as read from the
catalog just before; triggers likewise; indexes are re-created if the file dropped them (a
materialized view stops the migration: it cannot be re-created without its data). Then the application
roles get their grants on Procrastinate's relations again (a file may add a table). File, detach and
re-attach commit together, one transaction per file.
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

log = structlog.get_logger("dataworkflows.migrations")

PREFIX = "procrastinate/"
BASELINE = "procrastinate_schema "
APPLIED_BY = "procrastinate "

_FILE = re.compile(r"^(?P<version>\d{2}\.\d{2}\.\d{2})_(?P<serial>\d{2})_(?P<rest>[a-z0-9_]+)\.sql$")
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """'3.10.0' -> (3, 10, 0); '03.02.00' -> (3, 2, 0); a pre-release counts as its release."""
    match = _VERSION.match(text)
    if match is None:
        raise ValueError(f"not a Procrastinate version: {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


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
    """The installed Procrastinate's migration files, in the order they apply."""
    folder = Path(directory or SchemaManager.get_migrations_path())
    found = []
    for path in folder.iterdir():
        match = _FILE.match(path.name)
        if match is None:
            continue
        found.append(
            QueueMigration(
                stem=path.stem,
                version=parse_version(match.group("version")),
                post=match.group("rest").startswith("post_"),
                sql=path.read_text("utf-8"),
            )
        )
    return sorted(found, key=lambda m: m.stem)


@dataclass
class QueueSchemaState:
    """What dw.schema_migrations says about Procrastinate's schema."""

    baseline: Version
    # file stem -> the Procrastinate version that applied it
    applied: dict[str, Version] = field(default_factory=dict)

    def has(self, migration: QueueMigration) -> bool:
        return migration.version <= self.baseline or migration.stem in self.applied

    def previous_version(self, current: Version) -> Version:
        """The newest Procrastinate version older than `current` that migrated this database: the
        one old workers run during a rolling upgrade to `current`."""
        older = [v for v in (self.baseline, *self.applied.values()) if v < current]
        return max(older, default=self.baseline)


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
        state.applied[version.removeprefix(PREFIX)] = parse_version(name.removeprefix(APPLIED_BY))
    return state


@dataclass(frozen=True)
class QueuePlan:
    apply: list[QueueMigration]
    held: list[QueueMigration]


def plan(
    state: QueueSchemaState, migrations: list[QueueMigration], current: Version, *, finish: bool = False
) -> QueuePlan:
    """Which files to apply now, in order, and which post migrations wait for old workers to go."""
    pending = [m for m in migrations if not state.has(m) and m.version <= current]
    old_workers = state.previous_version(current)
    apply = [m for m in pending if not m.post or finish or m.version <= old_workers]
    return QueuePlan(apply=apply, held=[m for m in pending if m not in apply])


def apply_pending(conn: psycopg.Connection[Any], *, finish: bool = False) -> list[str]:
    """Applies the due files (the caller holds the migrations lock); returns their record versions."""
    state = read_state(conn)
    if state is None:
        return []
    current = installed_version()
    due = plan(state, load_queue_migrations(), current, finish=finish)
    applied = []
    for migration in due.apply:
        log.info("applying Procrastinate migration", migration=migration.stem)
        try:
            with conn.transaction():
                dependents = capture_dependents(conn)
                dependents.detach(conn)
                conn.execute(migration.sql)
                dependents.attach(conn)
                grant_queue_access(conn)
                conn.execute(
                    "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (PREFIX + migration.stem, APPLIED_BY + procrastinate.__version__, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(f"Procrastinate migration {migration.stem} failed: {exc}") from exc
        applied.append(PREFIX + migration.stem)
    if due.held:
        log.info("Procrastinate post migrations held back for old workers", held=[m.stem for m in due.held])
    return applied


def held_back(conn: psycopg.Connection[Any]) -> list[str]:
    """Post migrations that `migrate --finish` would apply."""
    state = read_state(conn)
    if state is None:
        return []
    return [m.stem for m in plan(state, load_queue_migrations(), installed_version()).held]


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

# Views that use them, directly or through other views, shallowest first, each with the statements
# that drop it and that create it again as it is: definition, options, owner, comment, grants.
# Names come out schema-qualified (the caller empties search_path while this runs).
_DEPENDENT_VIEWS = """
WITH RECURSIVE queue(classid, oid) AS (
    SELECT 'pg_class'::regclass, unnest(%(relations)s::oid[])
    UNION ALL SELECT 'pg_type'::regclass, unnest(%(types)s::oid[])
    UNION ALL SELECT 'pg_proc'::regclass, unnest(%(functions)s::oid[])
),
views(oid, depth) AS (
    SELECT r.ev_class, 1
      FROM pg_depend d
      JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
      JOIN queue q ON q.classid = d.refclassid AND q.oid = d.refobjid
     WHERE r.ev_class <> ALL(%(relations)s::oid[])
    UNION
    SELECT r.ev_class, v.depth + 1
      FROM views v
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = v.oid
      JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     WHERE r.ev_class <> v.oid AND v.depth < 20
)
SELECT c.oid::regclass::text AS name, c.relkind::text AS kind,
       format('DROP VIEW %%s', c.oid::regclass) AS drop_sql,
       array_remove(ARRAY[
           format('CREATE VIEW %%s%%s AS %%s', c.oid::regclass,
                  CASE WHEN c.reloptions IS NULL THEN ''
                       ELSE format(' WITH (%%s)', array_to_string(c.reloptions, ', ')) END,
                  pg_get_viewdef(c.oid)),
           CASE WHEN c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                THEN format('ALTER VIEW %%s OWNER TO %%I', c.oid::regclass, pg_get_userbyid(c.relowner)) END,
           CASE WHEN obj_description(c.oid, 'pg_class') IS NOT NULL
                THEN format('COMMENT ON VIEW %%s IS %%L', c.oid::regclass, obj_description(c.oid, 'pg_class')) END
       ], NULL) || ARRAY(
           SELECT format('GRANT %%s ON %%s TO %%s%%s', a.privilege_type, c.oid::regclass,
                         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                         CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM aclexplode(c.relacl) WITH ORDINALITY a
            WHERE a.grantee <> c.relowner
            ORDER BY a.ordinality
       ) AS create_sql
  FROM (SELECT oid, max(depth) AS depth FROM views GROUP BY oid) v
  JOIN pg_class c ON c.oid = v.oid
 ORDER BY v.depth, 1
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
SELECT format('DROP TRIGGER %%I ON %%s', t.tgname, t.tgrelid::regclass),
       ARRAY[
           pg_get_triggerdef(t.oid),
           format('ALTER TABLE %%s %%s TRIGGER %%I', t.tgrelid::regclass,
                  CASE t.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
                                   WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END, t.tgname)]
  FROM pg_trigger t
 WHERE t.tgrelid = ANY(%(relations)s::oid[])
   AND NOT t.tgisinternal AND t.tgname NOT LIKE 'procrastinate\\_%%'
 ORDER BY 1
"""


_REVOKE_DEFAULTS = """
SELECT DISTINCT format('REVOKE ALL ON %%s FROM %%s', c.oid::regclass,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
  FROM pg_class c CROSS JOIN aclexplode(c.relacl) a
 WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner
"""


@dataclass(frozen=True)
class Detachable:
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

    views: list[Detachable]
    triggers: list[Detachable]
    indexes: list[OurIndex]

    def detach(self, conn: psycopg.Connection[Any]) -> None:
        for obj in [*reversed(self.views), *self.triggers]:
            conn.execute(obj.drop_sql)

    def attach(self, conn: psycopg.Connection[Any]) -> None:
        for view in self.views:
            conn.execute(view.create_sql[0])
            # Only the grants it had: not those default privileges give a new view.
            for (revoke,) in conn.execute(_REVOKE_DEFAULTS, (view.name,)).fetchall():
                conn.execute(revoke)
            for statement in view.create_sql[1:]:
                conn.execute(statement)
        for trigger in self.triggers:
            for statement in trigger.create_sql:
                conn.execute(statement)
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
    views = [
        Detachable(name, drop, list(create))
        for name, kind, drop, create in conn.execute(_DEPENDENT_VIEWS, params).fetchall()
        if _is_plain_view(name, kind)
    ]
    triggers = [
        Detachable(drop, drop, list(create)) for drop, create in conn.execute(_DEPENDENT_TRIGGERS, params).fetchall()
    ]
    indexes = [OurIndex(*r) for r in conn.execute(_DEPENDENT_INDEXES, params).fetchall()]
    conn.execute("SELECT set_config('search_path', %s, true)", (search_path[0] if search_path else "",))
    return Dependents(views=views, triggers=triggers, indexes=indexes)


def _is_plain_view(name: str, kind: str) -> bool:
    if kind != "v":
        raise MigrationError(f"{name} depends on Procrastinate's schema and is not a plain view: detach it by hand")
    return True


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
