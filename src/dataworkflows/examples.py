"""Loads the example workflows shipped in fixtures/ as Active workflows (used by `up`)."""

from __future__ import annotations

import importlib.resources
import json
from typing import Any

import structlog

from dataworkflows.actions import ActionRegistry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.publishing import collect_conditions, compile_for_publish, prepare_definition

log = structlog.get_logger("dataworkflows.examples")


def example_definitions() -> list[tuple[str, dict[str, Any]]]:
    """(file name, definition) for every fixture that is a workflow definition."""
    found = []
    root = importlib.resources.files("dataworkflows.fixtures")
    for bundle in sorted(root.iterdir(), key=lambda e: e.name):
        if not bundle.is_dir():
            continue
        for entry in sorted(bundle.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".json"):
                continue
            data = json.loads(entry.read_text("utf-8"))
            if isinstance(data, dict) and "nodes" in data and "startNode" in data:
                found.append((f"{bundle.name}/{entry.name}", data))
    return found


async def load_examples(db: Database, registry: ActionRegistry, conditions: ConditionPool) -> list[str]:
    """Creates or updates each example and publishes it; returns the workflow ids."""
    loaded = []
    for name, raw in example_definitions():
        expressions = collect_conditions(raw)
        errors = await conditions.check_many(expressions) if expressions else {}
        prepared = prepare_definition(raw, registry, errors)
        definition = prepared.definition
        existing = await db.fetch_one("get_workflow", id=definition.id)
        if existing is None:
            version = await db.create_workflow(
                workflow_id=definition.id,
                display_name=definition.display_name,
                description=definition.description,
                definition=prepared.raw,
                checksum=prepared.checksum,
                principal="system:examples",
            )
        else:
            version, _ = await db.add_version(
                workflow_id=definition.id,
                definition=prepared.raw,
                checksum=prepared.checksum,
                principal="system:examples",
            )
            # Leave alone what an operator decided: an archived example stays archived, and an
            # example already at this version needs nothing.
            if existing["status"] == "Archived" or existing["current_version"] == version:
                loaded.append(definition.id)
                continue
        await db.publish(
            workflow_id=definition.id,
            version=version,
            plan=compile_for_publish(definition, version),
            principal="system:examples",
        )
        log.info("example workflow ready", workflow_id=definition.id, version=version, file=name)
        loaded.append(definition.id)
    return loaded
