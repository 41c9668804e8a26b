"""Loads the examples shipped in fixtures/ (used by `up`): the document template sets, the workflow
templates, and the workflows as Active workflows (after the template sets their actions render)."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from dataworkflows import documents
from dataworkflows.actions import ActionRegistry
from dataworkflows.conditions import ConditionPool
from dataworkflows.data.workflows import Workflow, rendered_template_sets
from dataworkflows.db import Database, transient_state
from dataworkflows.definitions import checksum
from dataworkflows.errors import DatabaseUnavailable, DefinitionError
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.workflow_templates import validate_template

log = structlog.get_logger("dataworkflows.examples")

# Who the loader writes as. What it loaded and nobody changed since is its own to update (a release
# that changes an example brings a new version); anything another principal wrote or published
# (a new version, a rollback, a workflow of that id made first) is left as it is: `up` runs the
# loader at every start, and it used to publish the fixture's version over an operator's.
EXAMPLES_PRINCIPAL = "system:examples"


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


def example_template_sets() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every fixture that is a document template set: {"templateSet":
    {id, displayName, description}, "templates": [{name, format, body, sampleData}]}, a body being a
    string or a list of lines."""
    return [(name, d) for name, d in _fixture_documents() if "templateSet" in d and "templates" in d]


@dataclass(frozen=True)
class Loaded:
    """What a load made ready or found as an operator left it, by id."""

    template_sets: list[str]
    workflows: list[str]
    templates: list[str]


# How often a load tries the examples' lock while another load holds it, and after how long it says so.
LOCK_TRY_SECONDS = 0.1
LOCK_NOTICE_SECONDS = 5.0


async def load_all(db: Database, registry: ActionRegistry, conditions: ConditionPool) -> Loaded:
    """Loads every example (`up` and `examples load`): the document template sets, then the workflows
    (which render them), then the workflow templates, all in one transaction. A load that fails or is
    killed midway leaves nothing of itself: it had left some examples at a release's new version and
    others at the old one (a workflow calling a subworkflow of another release), or saved Drafts, until
    a later load finished the work (a review). Two loads at once (two `up`s on one database, `up`
    beside compose's `examples`) take turns: the second waits for the first to commit, then finds its
    work done.

    A transient refusal of one of its statements (a deadlock, a moment out of memory: db.
    transient_state) aborts the transaction, and is not run again alone in it: the whole load is
    made again, after the waits of LOAD_RETRY_DELAYS, as each statement was when each was its own
    transaction (until this release one such refusal made `up` exit, where it had gone on). A load
    made again finds what it needs to do, as any later load does."""
    delays = iter(LOAD_RETRY_DELAYS)
    while True:
        try:
            return await _load_all_once(db, registry, conditions)
        except DatabaseUnavailable as exc:
            delay = next(delays, None) if _refused_transiently(exc) else None
            if delay is None:
                raise
            log.warning("loading the examples again: the database refused a statement", error=str(exc), retry_in=delay)
        await asyncio.sleep(delay)


# The waits before each new try of a whole load refused transiently (as db.STATEMENT_RETRY_DELAYS).
LOAD_RETRY_DELAYS = (0.05, 0.25, 0.75)


def _refused_transiently(exc: DatabaseUnavailable) -> bool:
    """Whether the server answered one of the load's statements with a transient refusal (the
    connection still open: nothing committed), not a lost connection or a server going away."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.Error) and cause.pgresult is not None and transient_state(cause.sqlstate or "")


async def _load_all_once(db: Database, registry: ActionRegistry, conditions: ConditionPool) -> Loaded:
    async with db.all_or_nothing() as loading:
        await _take_lock(loading)
        sets = await load_template_sets(loading)
        workflows = await load_examples(loading, registry, conditions)
        templates = await load_templates(loading)
    return Loaded(sets, workflows, templates)


async def _take_lock(db: Database) -> None:
    began = time.monotonic()
    said = False
    while True:
        if await db.workflows.try_lock_examples_load():
            return
        if not said and time.monotonic() - began >= LOCK_NOTICE_SECONDS:
            said = True
            log.info("waiting for another load of the examples to finish")
        await asyncio.sleep(LOCK_TRY_SECONDS)


async def load_template_sets(db: Database) -> list[str]:
    """Creates each example document template set and its templates; a changed template becomes a
    new version, an unchanged one stays at its version, and one whose latest version someone else
    saved is left alone."""
    loaded = []
    for file_name, raw in example_template_sets():
        info = raw["templateSet"]
        set_id = str(info["id"])
        existing = await db.document_templates.get_set(set_id)
        if existing is None:
            await db.document_templates.create_set(
                set_id=set_id,
                display_name=str(info.get("displayName") or set_id),
                description=info.get("description"),
                principal=EXAMPLES_PRINCIPAL,
            )
        elif existing.created_by != EXAMPLES_PRINCIPAL:
            # A set of this id that someone else made first is theirs (in strict mode its creator
            # changes it and its templates): filled with the examples' templates, it let that author
            # rewrite what the example workflows render (a review). Left as it is, as a workflow is.
            log.info("example document template set left as an operator made it", set_id=set_id)
            continue
        for template in raw["templates"]:
            await _load_document_template(db, set_id, template, file_name)
        loaded.append(set_id)
    return loaded


async def _load_document_template(db: Database, set_id: str, template: dict[str, Any], file_name: str) -> None:
    name, fmt = str(template["name"]), str(template["format"])
    body = template["body"]
    body = "\n".join(body) if isinstance(body, list) else str(body)
    sample = dict(template.get("sampleData") or {})
    if fmt not in documents.FORMATS:
        raise DefinitionError([], f"example template {set_id}/{name} in {file_name} has an unknown format {fmt!r}")
    documents.check(name, body)  # trusted fixture text: compiled here, not in a helper
    values: dict[str, Any] = {
        "set_id": set_id,
        "name": name,
        "format": fmt,
        "body": body,
        "sample_data": sample,
        "checksum": checksum({"format": fmt, "body": body, "sampleData": sample}),
        "principal": EXAMPLES_PRINCIPAL,
    }
    latest = await db.document_templates.get_version(set_id, name, None)
    if latest is None:
        await db.document_templates.create(**values)
    elif latest.created_by != EXAMPLES_PRINCIPAL:
        log.info("example document template left as an operator saved it", template_id=f"{set_id}/{name}")
        return
    else:
        await db.document_templates.add_version(**values)
    log.info("example document template ready", template_id=f"{set_id}/{name}", file=file_name)


async def load_templates(db: Database) -> list[str]:
    """Stores each example workflow template (a changed one becomes a new version; one whose latest
    version someone else saved is left alone)."""
    loaded = []
    for name, raw in example_templates():
        document, problems = validate_template(raw)
        if document is None or problems:
            raise DefinitionError(problems, f"example template {name} is invalid")
        latest = await db.workflows.get_template(document.id)
        if latest is not None and latest.created_by != EXAMPLES_PRINCIPAL:
            log.info("example workflow template left as an operator saved it", template_id=document.id)
            loaded.append(document.id)
            continue
        await db.workflows.add_template(
            template_id=document.id,
            display_name=document.display_name,
            description=document.description,
            parameters=list(raw.get("parameters", [])),
            definition_template=document.definition,
            checksum=checksum(raw),
            principal=EXAMPLES_PRINCIPAL,
        )
        loaded.append(document.id)
    return loaded


async def load_examples(db: Database, registry: ActionRegistry, conditions: ConditionPool) -> list[str]:
    """Creates or updates each example and publishes it; returns the workflow ids."""
    # Saved first, published next: an example may call another that comes later (a subworkflow's
    # workflow must exist when its caller is published).
    saved = []
    loaded = []
    for name, raw in example_definitions():
        prepared = await prepare_definition(raw, registry, conditions)
        existing = await db.workflows.get(prepared.definition.id)
        foreign = await _foreign_template_sets(db, raw)
        if foreign and (existing is None or existing.current_version is None):
            # It would render the templates of a set the loader did not make (load_template_sets
            # left it): not published, so no example sends what that set's creator writes.
            log.info(
                "example workflow not loaded: it renders an operator's template set",
                workflow_id=prepared.definition.id,
                template_sets=foreign,
            )
            continue
        if existing is not None and (foreign or not await _loaders_own(db, existing)):
            # Archived, published by someone else (a new version, a rollback), or a workflow of this
            # id that was not the loader's: an operator's decision, left as it is.
            log.info("example workflow left as an operator set it", workflow_id=existing.id)
            loaded.append(existing.id)
            continue
        version, _ = await db.workflows.save_definition(prepared, EXAMPLES_PRINCIPAL)
        saved.append((name, prepared, existing, version))
    for name, prepared, existing, version in saved:
        definition = prepared.definition
        # An example already at this version needs nothing.
        if existing is not None and existing.current_version == version:
            loaded.append(definition.id)
            continue
        await db.connections.check_uses(definition.id, prepared.connections)
        await db.workflows.publish(
            workflow_id=definition.id,
            version=version,
            plan=compile_for_publish(definition, version),
            principal=EXAMPLES_PRINCIPAL,
        )
        log.info("example workflow ready", workflow_id=definition.id, version=version, file=name)
        loaded.append(definition.id)
    return loaded


async def _foreign_template_sets(db: Database, raw: dict[str, Any]) -> list[str]:
    """The document template sets an example renders from that the loader did not make."""
    foreign = []
    for set_id in rendered_template_sets(list(raw.get("nodes") or [])):
        found = await db.document_templates.get_set(set_id)
        if found is not None and found.created_by != EXAMPLES_PRINCIPAL:
            foreign.append(set_id)
    return foreign


async def _loaders_own(db: Database, workflow: Workflow) -> bool:
    """Whether an existing example workflow is as the loader left it: at a version the loader
    published, not archived (archiving is an operator's decision); or never published, made by the
    loader and its latest version saved by it. The loader saves every example before it publishes
    them, and before load_all made a load one transaction, a load that died in between (an `up`
    killed while it loaded them, a helper that could not start for a later example's conditions) left
    Drafts that no later load published: every later `up` said they were "left as an operator set
    them" and the walkthrough answered 409. A database such a load left still has them."""
    if workflow.status == "Archived":
        return False
    if workflow.current_version is None:
        if workflow.created_by != EXAMPLES_PRINCIPAL or workflow.latest_version is None:
            return False
        latest = await db.workflows.get_version(workflow.id, workflow.latest_version)
        return latest is not None and latest.created_by == EXAMPLES_PRINCIPAL
    current = await db.workflows.get_version(workflow.id, workflow.current_version)
    return current is not None and current.published_by == EXAMPLES_PRINCIPAL
