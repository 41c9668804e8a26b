"""bench/faults_table.py: the README's table from the suite's summaries (no database)."""

from __future__ import annotations

import json

from bench.faults_table import last_summaries, render, replace_table


def summary(fault: str, lost: int = 0, **extra: object) -> str:
    return json.dumps(
        {
            "fault": fault,
            "runs": 1000,
            "lost": lost,
            "duplicated_succeeded": 0,
            "stuck": 0,
            "recovery_s": 2.345,
            "first_progress_s": None,
            "test_s": 12.3,
            **extra,
        }
    )


def test_the_table_shows_each_fault_once_from_its_last_run_in_that_run_order() -> None:
    lines = [summary("a", lost=1), summary("b"), "", summary("b"), summary("a", recovery_note="in process")]
    assert [s["fault"] for s in last_summaries(lines)] == ["b", "a"]
    table = render(lines).splitlines()
    assert table[0].startswith("| fault injected | runs | executions lost |")
    assert table[2:] == [
        "| b | 1,000 | 0 | 0 | 0 | first progress n/a, all ended 2.3 s | 12 s |",
        "| a | 1,000 | 0 | 0 | 0 | in process | 12 s |",
    ]


def test_the_table_replaces_the_one_between_the_readme_markers() -> None:
    readme = "intro\n<!-- faults:table -->\n| old |\n<!-- faults:table:end -->\nrest\n"
    assert (
        replace_table(readme, "| new |") == "intro\n<!-- faults:table -->\n| new |\n<!-- faults:table:end -->\nrest\n"
    )
