"""Loads the package's .sql files: migrations, procedures and named queries.

Named queries are blocks headed ``-- name: query_name`` followed by a one-line description, one
file per area (sql/queries/executions.sql). They are read once, at import time.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass

_NAME = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


def _code(text: str) -> str:
    """`text` without its whole-line comments and blank lines."""
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("--"))


def _sql_dir(sub: str) -> importlib.resources.abc.Traversable:
    return importlib.resources.files("dataworkflows.sql").joinpath(sub)


def parse_named_queries(text: str) -> dict[str, str]:
    """Splits a queries file into {name: sql}."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        lines = [line for line in body.splitlines() if not line.startswith("--")]
        name = match.group("name")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for entry in sorted(_sql_dir("queries").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, text in parse_named_queries(entry.read_text("utf-8")).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files")
                queries[name] = text
    # The files ship with the package: they are trusted, constant SQL.
    return queries


# Migrations edited after some databases had applied them (development builds between releases;
# no release carried these texts): the checksums of their earlier texts, which such a database
# recorded, are accepted. Each earlier text did what the current one does, or a later migration
# brings the database level: 0023 also marked earlier interrupted attempts (90f548c); 0024 built
# its indexes in place (7e1e928, ed99d1e; 0027 rebuilds them) and had older delete checks (0039
# replaces them); 0026 and 0034 built their index in place (c9db5e5, addc780); 0051 built its index
# in place (1a13f81); 0052's view had overlapped_by (45f5a7d; 0053 makes the view again).
EARLIER_CHECKSUMS: dict[str, frozenset[str]] = {
    "0023": frozenset({"fad5144b017687a434c4e88929b958f1de8c4912ff8e8c59e9fbc1f2eff7744b"}),
    "0024": frozenset(
        {
            "30c59e4427476cc34555dcbb24f7259cae3645dd89a8ee019164958ca4d052b0",
            "4ef05fde8cf9bee77ff2ffd1bc4917150ceafca9ba462c0fa65551f9d58dc2cd",
        }
    ),
    "0026": frozenset({"aff2bb85ade71b12ab6725f7b0ece06d674476419273298b13682dbc2010a3c5"}),
    "0034": frozenset({"40cedb1f218d8dcf326304f2006048a7f3741eb3cb61446b4e01bf7e94453527"}),
    "0051": frozenset({"af6c75434d63e42294c660f1062fcfd0037e1772b4050bd475def0a805d682c2"}),
    "0052": frozenset({"09a16aca985785bcdafcdeb97e24e1926d2e708f453bf4592d57f56c7b971aed"}),
}
# A recorded checksum may carry a mark after this: migration 0038 marks one so that the previous
# release, which compares the whole text, refuses the database.
MARK = "+"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    transactional: bool

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def accepts(self, recorded: str) -> bool:
        """Whether `recorded` (dw.schema_migrations.checksum) is this migration as applied: its
        checksum, or an earlier text's (EARLIER_CHECKSUMS), with or without a mark."""
        checksum = recorded.split(MARK, 1)[0]
        return checksum == self.checksum or checksum in EARLIER_CHECKSUMS.get(self.version, frozenset())

    @property
    def statements(self) -> list[str]:
        """What to execute, in order: the whole file as one (a transactional migration), or each
        statement on its own (a no-transaction one: PostgreSQL runs a string of several statements
        as one implicit transaction, where CREATE INDEX CONCURRENTLY is refused). Statements of a
        no-transaction migration end with `;` at the end of a line and hold no dollar quotes."""
        if self.transactional:
            return [self.sql]
        parts = (_code(part) for part in _STATEMENT_END.split(self.sql))
        return [part for part in parts if part]


def load_migrations() -> list[Migration]:
    migrations = []
    for entry in _sql_dir("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match is None:
            continue
        text = entry.read_text("utf-8")
        first_line = text.splitlines()[0] if text else ""
        migrations.append(
            Migration(
                version=match.group("version"),
                name=match.group("name"),
                sql=text,
                transactional="no-transaction" not in first_line,
            )
        )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version number: {versions}")
    return migrations


def load_procedures() -> list[tuple[str, str]]:
    return [
        (entry.name, entry.read_text("utf-8"))
        for entry in sorted(_sql_dir("procedures").iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    ]


QUERIES = load_queries()
