"""Loads the examples shipped in fixtures/ (used by `up`): the workflow templates, and the workflows
as Active workflows."""

from __future__ import annotations

import importlib.resources
import json
from typing import Any

import structlog

from dataworkflows.actions import ActionRegistry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.definitions import checksum
from dataworkflows.errors import DefinitionError
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.workflow_templates import validate_template

log = structlog.get_logger("dataworkflows.examples")


def _fixture_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    root = importlib.resources.files("dataworkflows.fixtures")
    for bundle in sorted(root.iterdir(), key=lambda e: e.name):
        if not bundle.is_dir():
            continue
        for entry in sorted(bundle.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".json"):
                continue
            data = json.loads(entry.read_text("utf-8"))
            if isinstance(data, dict):
                found.append((f"{bundle.name}/{entry.name}", data))
    return found


def example_definitions() -> list[tuple[str, dict[str, Any]]]:
    """(file name, definition) for every fixture that is a workflow definition."""
    return [(name, d) for name, d in _fixture_documents() if "nodes" in d and "startNode" in d]


def example_templates() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every fixture that is a workflow template."""
    return [(name, d) for name, d in _fixture_documents() if "definition" in d and "parameters" in d]


async def load_templates(db: Database) -> list[str]:
    """Stores each example workflow template (a changed one becomes a new version)."""
    loaded = []
    for name, raw in example_templates():
        document, problems = validate_template(raw)
        if document is None or problems:
            raise DefinitionError(problems, f"example template {name} is invalid")
        await db.workflows.add_template(
            template_id=document.id,
            display_name=document.display_name,
            description=document.description,
            parameters=list(raw.get("parameters", [])),
            definition_template=document.definition,
            checksum=checksum(raw),
            principal="system:examples",
        )
        loaded.append(document.id)
    return loaded


async def load_examples(db: Database, registry: ActionRegistry, conditions: ConditionPool) -> list[str]:
    """Creates or updates each example and publishes it; returns the workflow ids."""
    # Saved first, published next: an example may call another that comes later (a subworkflow's
    # workflow must exist when its caller is published).
    saved = []
    for name, raw in example_definitions():
        prepared = await prepare_definition(raw, registry, conditions)
        existing = await db.workflows.get(prepared.definition.id)
        version, _ = await db.workflows.save_definition(prepared, "system:examples")
        saved.append((name, prepared, existing, version))
    loaded = []
    for name, prepared, existing, version in saved:
        definition = prepared.definition
        # Leave alone what an operator decided: an archived example stays archived, and an example
        # already at this version needs nothing.
        if existing is not None and (existing.status == "Archived" or existing.current_version == version):
            loaded.append(definition.id)
            continue
        await db.connections.check_allowed(definition.id, prepared.connections)
        await db.workflows.publish(
            workflow_id=definition.id,
            version=version,
            plan=compile_for_publish(definition, version),
            principal="system:examples",
        )
        log.info("example workflow ready", workflow_id=definition.id, version=version, file=name)
        loaded.append(definition.id)
    return loaded
