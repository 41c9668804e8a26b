"""Renders the README's table of faults (section "Faults and guarantees") from the fault suite's
one-line JSON summaries (tests/faults, appended to $DW_FAULT_RESULTS when it is set): for each
fault its last summary, in the order of the last run.

    DW_FAULT_RESULTS=bench/results/faults.jsonl .venv/bin/pytest tests/faults
    .venv/bin/python bench/faults_table.py bench/results/faults.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HEADER = (
    "| fault injected | runs | executions lost | duplicated Succeeded attempts | stuck runs "
    "| recovery | test |\n"
    "|---|---:|---:|---:|---:|---|---:|"
)


def last_summaries(lines: list[str]) -> list[dict[str, Any]]:
    """The last summary of each fault, ordered as the last run wrote them."""
    last: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        summary = json.loads(line)
        last.pop(summary["fault"], None)  # re-inserted at the end: the order of the last run
        last[summary["fault"]] = summary
    return list(last.values())


def _seconds(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def row(summary: dict[str, Any]) -> str:
    recovery = summary.get("recovery_note") or (
        f"first progress {_seconds(summary.get('first_progress_s'))}, all ended {_seconds(summary.get('recovery_s'))}"
    )
    test = f"{summary['test_s']:.0f} s" if summary.get("test_s") else "(with the above)"
    return (
        f"| {summary['fault']} | {summary['runs']:,} | {summary['lost']} | {summary['duplicated_succeeded']} "
        f"| {summary['stuck']} | {recovery} | {test} |"
    )


def render(lines: list[str]) -> str:
    return "\n".join([HEADER, *(row(s) for s in last_summaries(lines))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON lines file ($DW_FAULT_RESULTS)")
    args = parser.parse_args()
    print(render(args.results.read_text().splitlines()))


if __name__ == "__main__":
    main()
