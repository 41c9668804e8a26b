"""Every metric a process serves is named in the README's Metrics paragraph (a review found three that
were not)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

import dataworkflows.metrics  # noqa: F401 - registers the metrics

ROOT = Path(__file__).resolve().parents[2]


def test_every_metric_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    names = {
        sample.name.removesuffix("_created")
        for family in REGISTRY.collect()
        if family.name.startswith("dataworkflows_")
        for sample in family.samples
        if not sample.name.endswith(("_bucket", "_count", "_sum"))
    } | {family.name for family in REGISTRY.collect() if family.name.startswith("dataworkflows_")}
    # A counter's family is named without _total, its samples with it: the README names the samples'.
    documented = {name for name in names if name in readme or f"{name}_total" in readme}
    assert names - documented == set()
