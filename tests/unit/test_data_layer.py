"""The data layer owns its boundary: every SQLSTATE our SQL raises has a name and an exception, and
only dataworkflows.db and dataworkflows.data spell query names."""

from __future__ import annotations

import re
from pathlib import Path

from dataworkflows.db import SQLSTATE_ERRORS
from dataworkflows.errors import DataWorkflowsError, SqlState
from dataworkflows.sqlfiles import QUERIES

ROOT = Path(__file__).resolve().parents[2]

RAISED = re.compile(r"(?:ERRCODE\s*=\s*|SQLSTATE\s+)'(DW\d{3})'", re.IGNORECASE)


def raised_codes() -> dict[str, list[str]]:
    """Each DWnnn code raised in sql/, with the files that raise it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "sql").rglob("*.sql")):
        for code in RAISED.findall(path.read_text("utf-8")):
            found.setdefault(code.upper(), []).append(str(path.relative_to(ROOT)))
    return found


def test_every_code_raised_in_sql_is_named_and_mapped_to_an_exception() -> None:
    raised = raised_codes()
    assert "DW001" in raised, "the scan of sql/ found nothing: is the pattern still right?"
    unnamed = {code: files for code, files in raised.items() if code not in set(SqlState)}
    assert not unnamed, f"add these codes to errors.SqlState: {unnamed}"
    unmapped = {code: files for code, files in raised.items() if code not in SQLSTATE_ERRORS}
    assert not unmapped, f"map these codes to an exception in db.SQLSTATE_ERRORS: {unmapped}"
    assert all(isinstance(key, SqlState) for key in SQLSTATE_ERRORS), "map by SqlState members, not strings"
    assert all(issubclass(cls, DataWorkflowsError) for cls in SQLSTATE_ERRORS.values())
    stale = sorted(set(SqlState) - set(raised))
    assert not stale, f"SqlState members no SQL raises any more: {stale}"


# A call of the generic helpers (also fetch_one_as(Struct, "name", ...)) or QUERIES["name"].
NAMED_CALL = re.compile(
    r"\.(?:fetch_one|fetch_all|execute)\w*\(\s*(?:[A-Za-z_][\w.]*\s*,\s*)?[\"']([a-z_][a-z0-9_]*)[\"']"
    r"|QUERIES\[\s*[\"']([a-z_][a-z0-9_]*)[\"']"
)
DATA_LAYER = ("src/dataworkflows/db.py", "src/dataworkflows/data/")


def query_names_spelled() -> dict[str, list[str]]:
    """Per file under api/, workers/ and src/: the query names it spells in a query call."""
    found: dict[str, list[str]] = {}
    for top in ("api", "workers", "src"):
        for path in sorted((ROOT / top).rglob("*.py")):
            names = [a or b for a, b in NAMED_CALL.findall(path.read_text("utf-8")) if (a or b) in QUERIES]
            if names:
                found[str(path.relative_to(ROOT))] = names
    return found


def test_only_the_data_layer_spells_query_names() -> None:
    found = query_names_spelled()
    assert any(path.startswith(DATA_LAYER) for path in found), "the scan found no query call at all"
    outside = {path: names for path, names in found.items() if not path.startswith(DATA_LAYER)}
    assert not outside, f"call a typed method of the data layer (db.workflows, db.executions, ...): {outside}"
