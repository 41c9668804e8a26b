"""Workflows, their versions and publishing, and workflow templates."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from psycopg.types.json import Jsonb

from dataworkflows import errors
from dataworkflows.data.limits import apply_published_limits
from dataworkflows.statuses import WorkflowStatus
from dataworkflows.subworkflows import pinned_versions, referenced_workflows
from dataworkflows.validation import Problem

if TYPE_CHECKING:
    from dataworkflows.db import Database


class Workflow(msgspec.Struct, frozen=True):
    id: str
    display_name: str
    description: str | None
    status: WorkflowStatus
    current_version: int | None
    is_enabled: bool
    max_concurrent_executions: int | None
    rate_limit_per_minute: int | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    archived_at: datetime | None
    archived_by: str | None
    template_id: str | None
    template_version: int | None
    latest_version: int | None
    # Days its finished runs are kept (None: DW_RETENTION_DAYS; 0: forever).
    retention_days: int | None = None
    # Who disabled it, and when (None while it is enabled).
    disabled_at: datetime | None = None
    disabled_by: str | None = None


class Version(msgspec.Struct, frozen=True):
    workflow_id: str
    version: int
    checksum: str
    created_at: datetime
    created_by: str | None
    published_at: datetime | None
    published_by: str | None
    # Only when one version is read: listing versions leaves definitions out.
    definition: dict[str, Any] | None = None


class DeletedWorkflow(msgspec.Struct, frozen=True):
    """What a workflow's deletion removed besides its row: versions (with their plans), triggers
    (with their ticks and deliveries), and connections whose allow-lists named it."""

    workflow_id: str
    versions: int
    triggers: int
    connections: int


class WorkflowTemplate(msgspec.Struct, frozen=True):
    id: str
    version: int
    display_name: str
    description: str | None
    parameters: list[dict[str, Any]]
    checksum: str
    created_at: datetime
    created_by: str | None
    # Only when one template is read: the list leaves definitions out.
    definition: dict[str, Any] | None = None


class _Named(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def description(self) -> str | None: ...


class StorableDefinition(Protocol):
    """What saving a definition needs (publishing.PreparedDefinition is one), named here so that
    the data layer imports nothing above it."""

    @property
    def definition(self) -> _Named: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    @property
    def checksum(self) -> str: ...


class WorkflowData:
    """Workflow rows, versions, publishing and workflow templates."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, workflow_id: str) -> Workflow | None:
        return await self._db.fetch_one_as(Workflow, "get_workflow", id=workflow_id)

    async def page(self, *, after: str | None, status: str | None, limit: int) -> list[Workflow]:
        """Workflows ordered by id, after the cursor id."""
        return await self._db.fetch_all_as(Workflow, "list_workflows", after=after, status=status, limit=limit)

    async def create(
        self,
        *,
        workflow_id: str,
        display_name: str,
        description: str | None,
        definition: dict[str, Any],
        checksum: str,
        principal: str | None,
        max_concurrent_executions: int | None = None,
    ) -> int:
        """Creates a Draft workflow with version 1; returns the version."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_workflow", id=workflow_id) is not None:
                raise errors.WorkflowExists(
                    f"a workflow with id {workflow_id!r} already exists; PUT /api/v1/workflows/{workflow_id} "
                    "adds a version"
                )
            await tx.fetch_one(
                "insert_workflow",
                id=workflow_id,
                display_name=display_name,
                description=description,
                principal=principal,
                max_concurrent_executions=max_concurrent_executions,
            )
            row = await tx.fetch_one(
                "insert_version", id=workflow_id, definition=definition, checksum=checksum, principal=principal
            )
            assert row is not None
            return int(row["version"])

    async def add_version(
        self, *, workflow_id: str, definition: dict[str, Any], checksum: str, principal: str | None
    ) -> tuple[int, bool]:
        """Adds a version unless one with the same checksum exists; returns (version, created)."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_workflow", id=workflow_id) is None:
                raise errors.WorkflowNotFound(f"workflow {workflow_id!r} not found")
            existing = await tx.fetch_one("find_version_by_checksum", id=workflow_id, checksum=checksum)
            if existing is not None:
                return int(existing["version"]), False
            row = await tx.fetch_one(
                "insert_version", id=workflow_id, definition=definition, checksum=checksum, principal=principal
            )
            assert row is not None
            return int(row["version"]), True

    async def save_definition(self, prepared: StorableDefinition, principal: str | None) -> tuple[int, bool]:
        """Creates the workflow from a prepared definition, or adds it as a version (an unchanged
        definition returns its existing version); returns (version, whether it is new)."""
        definition = prepared.definition
        if await self.get(definition.id) is not None:
            return await self.add_version(
                workflow_id=definition.id, definition=prepared.raw, checksum=prepared.checksum, principal=principal
            )
        try:
            version = await self.create(
                workflow_id=definition.id,
                display_name=definition.display_name,
                description=definition.description,
                definition=prepared.raw,
                checksum=prepared.checksum,
                principal=principal,
            )
        except errors.WorkflowExists:
            # Created by someone else in the meantime: this definition becomes a version of it.
            return await self.add_version(
                workflow_id=definition.id, definition=prepared.raw, checksum=prepared.checksum, principal=principal
            )
        return version, True

    async def get_version(self, workflow_id: str, version: int) -> Version | None:
        """One version, with its definition."""
        return await self._db.fetch_one_as(Version, "get_version", id=workflow_id, version=version)

    async def list_versions(self, workflow_id: str, *, limit: int, before: int | None = None) -> list[Version]:
        """Newest first, without definitions; `before`: the last version of the page before."""
        return await self._db.fetch_all_as(Version, "list_versions", id=workflow_id, limit=limit, before=before)

    async def publish(self, *, workflow_id: str, version: int, plan: dict[str, Any], principal: str | None) -> None:
        """Stores the compiled plan and makes the version current (and the workflow Active). A
        subworkflow naming a workflow that does not exist at all is refused (DefinitionError); one
        that exists but cannot run (a Draft, archived, disabled) fails its node at run time, and a
        workflow may call itself (the nesting depth limit stops it). The limits the definition states
        become the workflow's (data.limits.apply_published_limits)."""
        await self.check_children_exist(workflow_id, plan)
        async with self._db.transaction() as tx:
            # The document template sets it renders from stay until it commits: a delete of one of
            # their templates waits, then finds this version among the uses that refuse it.
            sets = rendered_template_sets(plan.get("nodes") or [])
            if sets:
                await tx.fetch_all("lock_rendered_template_sets", ids=sets)
            await tx.fetch_one("publish_workflow", id=workflow_id, version=version, plan=plan, principal=principal)
            await apply_published_limits(tx, workflow_id, version)

    async def check_children_exist(self, workflow_id: str, plan: dict[str, Any]) -> None:
        """DefinitionError (unknown_workflow) when a subworkflow node names a workflow that does not
        exist; publish checks it, and a create that publishes at once checks it first."""
        referenced = referenced_workflows(plan.get("nodes") or [])
        wanted = sorted({ref for _, _, ref in referenced if ref != workflow_id})
        if not wanted:
            return
        rows = await self._db.fetch_all("existing_workflows", ids=wanted)
        known = {row["id"] for row in rows}
        problems = [
            Problem(f"/nodes/{index}{pointer}", "unknown_workflow", f"workflow {ref!r} does not exist")
            for index, pointer, ref in referenced
            if ref != workflow_id and ref not in known
        ]
        problems += await self._unpublished_pins(workflow_id, plan, known)
        if problems:
            raise errors.DefinitionError(problems)

    async def _unpublished_pins(self, workflow_id: str, plan: dict[str, Any], known: set[str]) -> list[Problem]:
        """unknown_version for each literal child version that was never published (each run failed
        at run time instead). A workflow that pins itself, or names no workflow, is left out."""
        pinned = [p for p in pinned_versions(plan.get("nodes") or []) if p[2] != workflow_id and p[2] in known]
        if not pinned:
            return []
        rows = await self._db.fetch_all(
            "published_versions", ids=[p[2] for p in pinned], versions=[p[3] for p in pinned]
        )
        published = {(row["workflow_id"], row["version"]) for row in rows}
        message = "workflow {!r} has no published version {}: publish it before pinning it"
        return [
            Problem(f"/nodes/{index}{pointer}", "unknown_version", message.format(ref, version))
            for index, pointer, ref, version in pinned
            if (ref, version) not in published
        ]

    async def set_enabled(self, workflow_id: str, enabled: bool, principal: str | None) -> bool:
        """Disables or enables the workflow (a disabled one refuses new executions; running ones go on);
        whether that changed it (False: it already was so). WorkflowNotFound for an unknown one."""
        row = await self._db.fetch_one("set_workflow_enabled", id=workflow_id, enabled=enabled, principal=principal)
        assert row is not None
        return bool(row["changed"])

    async def archive(self, workflow_id: str, principal: str | None) -> None:
        """New executions are refused from now on; a Draft cannot be archived (Conflict)."""
        await self._db.fetch_one("archive_workflow", id=workflow_id, principal=principal)

    async def delete(self, workflow_id: str, principal: str | None) -> DeletedWorkflow:
        """Deletes a workflow that has no executions, with its versions, plans and triggers, and takes
        its id out of the connections' allow-lists (dw.delete_workflow_v1, one transaction).
        WorkflowNotFound for an unknown one; WorkflowHasExecutions while any run of it exists."""
        deleted = await self._db.fetch_one_as(DeletedWorkflow, "delete_workflow", id=workflow_id, principal=principal)
        assert deleted is not None
        return deleted

    async def set_template(self, workflow_id: str, *, template_id: str, template_version: int) -> None:
        """Records which template version the workflow was instantiated from."""
        await self._db.execute(
            "set_workflow_template", id=workflow_id, template_id=template_id, template_version=template_version
        )

    async def add_template(
        self,
        *,
        template_id: str,
        display_name: str,
        description: str | None,
        parameters: list[Any],
        definition_template: dict[str, Any],
        checksum: str,
        principal: str | None,
    ) -> tuple[int, bool]:
        """Stores a template version unless one with the same checksum exists; (version, created)."""
        async with self._db.transaction() as tx:
            await tx.fetch_one("lock_workflow_template", id=template_id)
            existing = await tx.fetch_one("find_template_by_checksum", id=template_id, checksum=checksum)
            if existing is not None:
                return int(existing["version"]), False
            row = await tx.fetch_one(
                "insert_workflow_template",
                id=template_id,
                display_name=display_name,
                description=description,
                # A list is not turned into jsonb on its own (lists go to PostgreSQL as arrays).
                parameters=Jsonb(parameters),
                definition_template=definition_template,
                checksum=checksum,
                principal=principal,
            )
            assert row is not None
            return int(row["version"]), True

    async def try_lock_examples_load(self) -> bool:
        """Whether this transaction (Database.all_or_nothing's) now holds the examples' load lock
        (examples.load_all): False while another load holds it."""
        row = await self._db.fetch_one("try_lock_examples_load")
        return row is not None and bool(row["locked"])

    async def get_template(self, template_id: str, version: int | None = None) -> WorkflowTemplate | None:
        """One version of a template, with its definition (the latest when version is None)."""
        return await self._db.fetch_one_as(WorkflowTemplate, "get_workflow_template", id=template_id, version=version)

    async def list_templates(self, *, limit: int, after: str | None = None) -> list[WorkflowTemplate]:
        """The latest version of every template, by id, without definitions; `after`: the id of the
        last template of the page before."""
        return await self._db.fetch_all_as(WorkflowTemplate, "list_workflow_templates", limit=limit, after=after)


def rendered_template_sets(plan_nodes: list[dict[str, Any]]) -> list[str]:
    """The document template sets a plan's core.template.render nodes (or forEach actions) name
    literally (templateId "<set>/<name>", or set): as dw's template_uses query finds them."""
    found: set[str] = set()
    for node in plan_nodes:
        parameters = node.get("parameters") or {}
        found_action = parameters.get("action")
        action: dict[str, Any] = found_action if isinstance(found_action, dict) else {}
        renders = ((node.get("actionType"), parameters), (action.get("actionType"), action.get("parameters")))
        for kind, params in renders:
            if kind != "core.template.render" or not isinstance(params, dict):
                continue
            template_id = params.get("templateId")
            set_id = template_id.split("/", 1)[0] if isinstance(template_id, str) else params.get("set")
            if isinstance(set_id, str) and set_id and "{" not in set_id:
                found.add(set_id)
    return sorted(found)
