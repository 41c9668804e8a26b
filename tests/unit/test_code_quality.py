"""Lint, format, strict types and a complexity limit are part of the test suite, so CI enforces them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parents[2]
# Above this many independent paths a function is split into named steps.
MAX_COMPLEXITY = 15


def test_ruff_and_mypy_are_clean() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_function_is_more_complex_than_the_limit() -> None:
    """Cyclomatic complexity as radon measures it (each `and`/`or` counts) of every function,
    method and nested function in src/, api/ and workers/."""
    offenders = []
    for folder in ("src", "api", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for block in add_inner_blocks(cc_visit(path.read_text("utf-8"))):
                # A class's figure summarizes its methods, which are checked one by one.
                if isinstance(block, Function) and block.complexity > MAX_COMPLEXITY:
                    where = f"{path.relative_to(ROOT)}:{block.lineno}"
                    offenders.append(f"{where} {block.fullname} ({block.complexity})")
    assert not offenders, f"complexity above {MAX_COMPLEXITY}:\n" + "\n".join(sorted(offenders))
