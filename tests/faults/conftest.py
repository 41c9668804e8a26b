"""The fault-injection suite (tests/faults): every summary line again at the end of the run."""

from __future__ import annotations

import json
from typing import Any

from tests.faults.harness import SUMMARIES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUMMARIES:
        terminalreporter.section("fault-injection summaries")
        for line in SUMMARIES:
            terminalreporter.write_line(json.dumps(line))
