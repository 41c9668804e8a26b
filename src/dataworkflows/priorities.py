"""A run's priority (README "Run priority"): its jobs are fetched higher first, then oldest first.

Pure module (the CLI imports it): the same range is checked in dw.start_run_v1 and
dw.set_execution_priority_v1."""

from __future__ import annotations

MIN_RUN_PRIORITY = -100
MAX_RUN_PRIORITY = 100
