"""Renders the README's table of faults (section "Faults and guarantees") from the fault suite's
one-line JSON summaries (tests/faults, appended to $DW_FAULT_RESULTS when it is set): for each
fault its last summary, in the order of the last run.

    DW_FAULT_RESULTS=bench/results/faults.jsonl .venv/bin/pytest tests/faults
    .venv/bin/python bench/faults_table.py bench/results/faults.jsonl [--readme README.md]

With --readme, the table replaces the one between the README's `<!-- faults:table -->` and
`<!-- faults:table:end -->` lines instead of being printed.
"""

from __future__ import annotations

import argparse
import json
import re
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


START, END = "<!-- faults:table -->", "<!-- faults:table:end -->"


def replace_table(readme: str, table: str) -> str:
    """The README with the table between its markers replaced."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"the README has no {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", readme, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON lines file ($DW_FAULT_RESULTS)")
    parser.add_argument("--readme", type=Path, help="update the table in this README instead of printing it")
    args = parser.parse_args()
    table = render(args.results.read_text().splitlines())
    if args.readme is None:
        print(table)
    else:
        args.readme.write_text(replace_table(args.readme.read_text(), table))


if __name__ == "__main__":
    main()
