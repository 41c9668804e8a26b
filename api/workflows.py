"""/api/v1/workflows: create, list, get, delete, versions, publish, execute, limits, retention."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from dataworkflows import traces
from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.data.workflows import Workflow
from dataworkflows.db import Database
from dataworkflows.errors import Conflict, HeaderRefused, InvalidInput, NotFound, WorkflowNotFound
from dataworkflows.json_depth import json_depth
from dataworkflows.publishing import compile_for_publish
from dataworkflows.statuses import WorkflowStatus
from dataworkflows.validation import Problem, has_unprintable_character, header_text

from .locations import LOCATION, created
from .openapi_docs import PROBLEMS
from .paging import (
    PAGE_LIMIT,
    PageCursor,
    PageLimit,
    bare_page,
    body_page,
    decode_id_cursor,
    decode_name_cursor,
    encode_scoped,
    next_page_header,
)
from .params import INT_MAX, query_int, require_one_of
from .schemas import (
    EmptyRequest,
    ExecuteRequest,
    ExecuteResponse,
    VersionRead,
    VersionWritten,
    WorkflowLimitsUpdate,
    WorkflowList,
    WorkflowRead,
    WorkflowRetentionUpdate,
    from_row,
)
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep

# DW_REQUIRE_PRINCIPAL covers every write, not only starts and control: a workflow's versions record who
# created and published them (until this release anonymous creates, publishes and archives passed).
_CHANGE_WORKFLOWS = {REQUIRES_PRINCIPAL: "change workflows"}

log = structlog.get_logger("dataworkflows.api.workflows")


async def require_workflow(db: Database, workflow_id: str) -> Workflow:
    workflow = await db.workflows.get(workflow_id)
    if workflow is None:
        raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
    return workflow


async def read_workflow(db: Database, workflow_id: str) -> WorkflowRead:
    """The workflow with the definition and checksum of its current version (else its latest)."""
    workflow = await require_workflow(db, workflow_id)
    number = workflow.current_version or workflow.latest_version
    version = None if number is None else await db.workflows.get_version(workflow_id, number)
    if version is None:
        return from_row(WorkflowRead, workflow)
    return from_row(WorkflowRead, workflow, definition=version.definition, checksum=version.checksum)


# Request ids the engine derives for the runs it starts itself: subworkflow children, schedule
# ticks, webhook deliveries and events (`event:<row>:<trigger>`: a start that took one first would
# be the run an event's delivery answers with, its trigger data the caller's).
RESERVED_REQUEST_PREFIXES = ("child:", "item:", "schedule:", "hook:", "event:")
CORRELATION_HEADER = "X-Correlation-Id"
# As long as a request id may be.
MAX_CORRELATION_ID = 200


def _correlation_id(data: ExecuteRequest, request: Request[Any, Any, Any]) -> str | None:
    """The run's correlation id: the body's correlationId, else the X-Correlation-Id header (None:
    neither; the request id stands in). Either one, when sent, is taken as sent or refused (the
    body's 422 with a pointer, the header's 400 naming it), never cut: the run would be found under
    an id nobody sent. The header is checked even when the body's field overrides it, and given twice is
    refused as X-Principal-Id is (a review: behind a proxy that adds its own, the client's first copy won)."""
    if len(request.headers.getall(CORRELATION_HEADER, [])) > 1:
        raise HeaderRefused(f"give the header {CORRELATION_HEADER} once")
    header = request.headers.get(CORRELATION_HEADER)
    if header is not None:
        header = header_text(CORRELATION_HEADER, header, MAX_CORRELATION_ID)
    given = data.correlation_id
    if given is not None and len(given) > MAX_CORRELATION_ID:
        message = f"correlationId must be at most {MAX_CORRELATION_ID} characters (this one has {len(given)})"
        raise InvalidInput(message, problems=[Problem("/correlationId", "too_long", message)])
    if given is not None and has_unprintable_character(given):
        message = "correlationId must not contain control, invisible or line-separator characters"
        raise InvalidInput(message, problems=[Problem("/correlationId", "format", message)])
    return given or header


class WorkflowController(Controller):
    path = "/workflows"
    tags = ["workflows"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses=PROBLEMS,
        summary="Create a Draft workflow from a definition",
        opt={**_CHANGE_WORKFLOWS, "role": "author"},
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        svc: ServicesDep,
        principal: PrincipalDep,
        data: JSONBody[dict[str, Any]],
        auto_activate: Annotated[bool, QueryParameter(name="autoActivate")] = False,
        max_concurrent_executions: Annotated[
            int | None, query_int("maxConcurrentExecutions", ge=1, le=INT_MAX, required=False)
        ] = None,
    ) -> Response[WorkflowRead]:
        prepared = await svc.prepare(data)
        definition = prepared.definition
        if auto_activate:
            # What publishing refuses, before the Draft is written: a 422 leaves no workflow behind
            # (a plan's children do not depend on its version).
            await svc.db.connections.check_uses(definition.id, prepared.connections)
            await svc.db.workflows.check_children_exist(definition.id, compile_for_publish(definition, 1))
        version = await svc.db.workflows.create(
            workflow_id=definition.id,
            display_name=definition.display_name,
            description=definition.description,
            definition=prepared.raw,
            checksum=prepared.checksum,
            principal=principal.id,
            max_concurrent_executions=max_concurrent_executions,
        )
        try:
            if auto_activate:
                await svc.db.connections.check_uses(definition.id, prepared.connections)
                await svc.db.workflows.publish(
                    workflow_id=definition.id,
                    version=version,
                    plan=compile_for_publish(definition, version),
                    principal=principal.id,
                )
            return created(request, await read_workflow(svc.db, definition.id), "workflows", definition.id)
        except NotFound:
            # A DELETE came between the Draft's transaction and the publish's (or the read): said,
            # where a 404 told a create request that its workflow was never there. Also when another
            # create of the id came after the DELETE: the publish finds the workflow but not this
            # create's version (a deleted workflow's version numbers are never used again), a
            # NotFound that is not a WorkflowNotFound.
            raise Conflict(
                f"workflow {definition.id!r} was deleted before its creation was answered (a DELETE came between "
                "its create and its publish): create it again"
            ) from None

    @get("/", responses=PROBLEMS, summary="List workflows", opt={"role": "viewer"})
    async def list_workflows(
        self,
        db: DatabaseDep,
        status: Annotated[str | None, QueryParameter(name="status", required=False, enum=list(WorkflowStatus))] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> WorkflowList:
        require_one_of("status", status, WorkflowStatus)
        # What the cursor was made for: this list and this status filter (paging.scoped).
        scope = ("workflows", status)
        after = decode_name_cursor(cursor, scope=scope)
        rows = await db.workflows.page(after=after, status=status, limit=limit + 1)
        items, next_cursor = body_page(
            rows, limit, lambda row: from_row(WorkflowRead, row), lambda last: encode_scoped(scope, last.id)
        )
        return WorkflowList(items=items, next_cursor=next_cursor)

    @get(
        "/{workflow_id:str}",
        responses=PROBLEMS,
        summary="Get a workflow with its current definition",
        opt={"role": "viewer"},
    )
    async def get_workflow(self, db: DatabaseDep, workflow_id: FromPath[str]) -> WorkflowRead:
        return await read_workflow(db, workflow_id)

    @put(
        "/{workflow_id:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Add a draft version (the same definition returns its version)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def update(
        self, svc: ServicesDep, principal: PrincipalDep, workflow_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> VersionWritten:
        await require_workflow(svc.db, workflow_id)
        prepared = await svc.prepare(data, expected_id=workflow_id)
        version, created = await svc.db.workflows.add_version(
            workflow_id=workflow_id, definition=prepared.raw, checksum=prepared.checksum, principal=principal.id
        )
        workflow = await require_workflow(svc.db, workflow_id)
        return VersionWritten(
            workflow_id=workflow_id,
            version=version,
            checksum=prepared.checksum,
            created=created,
            workflow_status=workflow.status,
            current_version=workflow.current_version,
        )

    @delete(
        "/{workflow_id:str}",
        status_code=204,
        responses=PROBLEMS,
        summary="Delete a workflow without executions, with its versions, plans and triggers (409 while it has runs)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def delete_workflow(self, db: DatabaseDep, principal: PrincipalDep, workflow_id: FromPath[str]) -> None:
        deleted = await db.workflows.delete(workflow_id, principal.id)
        # Besides dw.deleted_workflows' row (who, when), the log says what went with it.
        log.info(
            "workflow deleted",
            workflow_id=workflow_id,
            principal=principal.id,
            versions=deleted.versions,
            triggers=deleted.triggers,
            connections=deleted.connections,
        )

    @post(
        "/{workflow_id:str}/archive",
        status_code=200,
        responses=PROBLEMS,
        summary="Archive: refuse new executions",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def archive(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        workflow_id: FromPath[str],
        data: JSONBody[EmptyRequest | None] = None,
    ) -> WorkflowRead:
        await db.workflows.archive(workflow_id, principal.id)
        return await read_workflow(db, workflow_id)

    @post(
        "/{workflow_id:str}/disable",
        status_code=200,
        responses=PROBLEMS,
        summary="Disable: refuse new executions, whatever the status (running ones go on; idempotent)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def disable(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        workflow_id: FromPath[str],
        data: JSONBody[EmptyRequest | None] = None,
    ) -> WorkflowRead:
        await db.workflows.set_enabled(workflow_id, False, principal.id)
        return await read_workflow(db, workflow_id)

    @post(
        "/{workflow_id:str}/enable",
        status_code=200,
        responses=PROBLEMS,
        summary="Enable a disabled workflow: it takes new executions again, as its status allows (idempotent)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def enable(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        workflow_id: FromPath[str],
        data: JSONBody[EmptyRequest | None] = None,
    ) -> WorkflowRead:
        await db.workflows.set_enabled(workflow_id, True, principal.id)
        return await read_workflow(db, workflow_id)

    @patch(
        "/{workflow_id:str}/limits",
        status_code=200,
        responses=PROBLEMS,
        summary="Set or clear maxConcurrentExecutions and rateLimitPerMinute (null clears; left out: unchanged)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def set_limits(
        self, db: DatabaseDep, workflow_id: FromPath[str], data: JSONBody[WorkflowLimitsUpdate]
    ) -> WorkflowRead:
        concurrent, rate = data.max_concurrent_executions, data.rate_limit_per_minute
        if concurrent is msgspec.UNSET and rate is msgspec.UNSET:
            raise InvalidInput("give maxConcurrentExecutions and/or rateLimitPerMinute (a number, or null to clear)")
        limits = WorkflowLimits(
            set_concurrent=concurrent is not msgspec.UNSET,
            max_concurrent=None if concurrent is msgspec.UNSET else concurrent,
            set_rate=rate is not msgspec.UNSET,
            rate_per_minute=None if rate is msgspec.UNSET else rate,
        )
        if not await db.limits.set_workflow_limits(workflow_id, limits):
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return await read_workflow(db, workflow_id)

    @patch(
        "/{workflow_id:str}/retention",
        status_code=200,
        responses=PROBLEMS,
        summary="Set how many days the workflow's finished runs are kept (0: forever; null: the default)",
        # Shortening it removes history (the run log is evidence): admins only.
        opt={**_CHANGE_WORKFLOWS, "role": "admin"},
    )
    async def set_retention(
        self, db: DatabaseDep, workflow_id: FromPath[str], data: JSONBody[WorkflowRetentionUpdate]
    ) -> WorkflowRead:
        days = data.retention_days
        if days is msgspec.UNSET:
            raise InvalidInput("give retentionDays: the days finished runs are kept (0: forever; null: the default)")
        if not await db.retention.set_workflow_retention(workflow_id, days):
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return await read_workflow(db, workflow_id)

    @get(
        "/{workflow_id:str}/versions/{version:int}",
        responses=PROBLEMS,
        summary="One version, with its definition",
        opt={"role": "viewer"},
    )
    async def version(self, db: DatabaseDep, workflow_id: FromPath[str], version: FromPath[int]) -> VersionRead:
        found = await db.workflows.get_version(workflow_id, version)
        if found is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {version}")
        return from_row(VersionRead, found)

    @get(
        "/{workflow_id:str}/versions",
        responses=PROBLEMS,
        summary="List a workflow's versions, newest first",
        response_headers=next_page_header("/api/v1/workflows/{workflow_id}/versions?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def versions(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[VersionRead]]:
        # Every PUT adds a version: the list was unbounded. A page is the versions before the last
        # one of the page before.
        scope = ("workflow-versions", workflow_id)
        before = decode_id_cursor(cursor, top=INT_MAX, scope=scope)
        await require_workflow(db, workflow_id)
        rows = await db.workflows.list_versions(workflow_id, limit=limit + 1, before=before)
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(VersionRead, row),
            lambda last: encode_scoped(scope, last.version),
        )

    @post(
        "/{workflow_id:str}/publish",
        status_code=200,
        responses=PROBLEMS,
        summary="Publish a version (default: the latest)",
        opt={**_CHANGE_WORKFLOWS, "role": "author", "owner": "workflow"},
    )
    async def publish(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        workflow_id: FromPath[str],
        version: Annotated[int | None, query_int("version", ge=1, le=INT_MAX, required=False)] = None,
        # None, or {}: the version is the query's (a body's {"version": 1} was ignored, and the latest
        # published instead: a review).
        data: JSONBody[EmptyRequest | None] = None,
    ) -> WorkflowRead:
        workflow = await require_workflow(svc.db, workflow_id)
        target = version or workflow.latest_version
        found = None if target is None else await svc.db.workflows.get_version(workflow_id, target)
        if target is None or found is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {target}")
        # Validate again: the registry of action types may have changed since the draft.
        prepared = await svc.prepare(found.definition, expected_id=workflow_id)
        # A stored connection the definition names must admit this workflow (connection_not_allowed)
        # and be of the kind of the action that names it (connection_kind_mismatch).
        await svc.db.connections.check_uses(workflow_id, prepared.connections)
        await svc.db.workflows.publish(
            workflow_id=workflow_id,
            version=target,
            plan=compile_for_publish(prepared.definition, target),
            principal=principal.id,
        )
        return await read_workflow(svc.db, workflow_id)

    @post(
        "/{workflow_id:str}/execute",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Start an execution",
        opt={REQUIRES_PRINCIPAL: "execute workflows", "role": "operator"},
        # A span for the request, a child of its traceparent (README "Traces"; free when off).
        middleware=[traces.request_middleware],
    )
    async def execute(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        data: JSONBody[ExecuteRequest],
    ) -> ExecuteResponse:
        limit = svc.settings.max_trigger_depth
        if json_depth(data.trigger, limit) > limit:
            raise InvalidInput(f"the trigger payload is nested deeper than {limit} levels")
        if data.request_id is not None and not (0 < len(data.request_id) <= 200):
            raise InvalidInput("requestId must be 1-200 characters")
        if data.request_id is not None and has_unprintable_character(data.request_id):
            # It is the run's correlation id when none is given: the same rule (see _correlation_id).
            message = "requestId must not contain control, invisible or line-separator characters"
            raise InvalidInput(message, problems=[Problem("/requestId", "format", message)])
        if data.request_id is not None and data.request_id.startswith(RESERVED_REQUEST_PREFIXES):
            # The engine derives its children's request ids from these (dw.begin_child_v1).
            raise InvalidInput(f"requestId must not start with {' or '.join(RESERVED_REQUEST_PREFIXES)}")
        request_id = data.request_id or str(uuid.uuid4())
        correlation_id = _correlation_id(data, request) or request_id
        started = await svc.db.executions.start(
            workflow_id=workflow_id,
            request_id=request_id,
            trigger=data.trigger,
            principal_id=principal.id,
            principal_type=principal.type,
            correlation_id=correlation_id,
            queue=svc.settings.queue,
            trace_context=traces.trace_context_to_store(request.headers),
            priority=data.priority,
        )
        traces.annotate_start(started.execution_id, started.created)
        return from_row(
            ExecuteResponse,
            started,
            status_url=f"/api/v1/executions/{started.execution_id}",
            workflow_id=workflow_id,
            request_id=request_id,
        )
