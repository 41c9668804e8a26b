"""The console's files ship in the package and hold together: every file under api/ui is matched by
pyproject's package-data (else an installed console would 404), and every module a script imports
exists."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from dataworkflows.api.console import ASSETS

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "api" / "ui"
IMPORT = re.compile(r"""^\s*import\s+(?:[^'"]+\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


def test_every_console_file_is_package_data_and_served() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["dataworkflows.api"]
    files = sorted(p.relative_to(UI.parent).as_posix() for p in UI.rglob("*") if p.is_file())
    assert files, "api/ui is empty"
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not unshipped, f"add these to package-data for dataworkflows.api: {unshipped}"
    assert sorted(f"ui/{name}" for name in ASSETS) == files


def test_every_imported_module_exists() -> None:
    for script in UI.rglob("*.js"):
        for target in IMPORT.findall(script.read_text()):
            assert target.startswith("."), f"{script.name} imports {target!r}: only files of the console"
            assert (script.parent / target).resolve().is_file(), f"{script.name} imports a missing {target}"
