"""/api/v1/workflows: create, list, get, versions, publish, execute."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from dataworkflows.definitions import parse_definition
from dataworkflows.errors import InvalidInput, NotFound, WorkflowNotFound
from dataworkflows.publishing import compile_for_publish
from dataworkflows.validation import json_depth

from .openapi_docs import PROBLEMS
from .paging import decode_cursor, encode_cursor
from .params import INT_MAX, query_int
from .principals import principal_id_param, principal_type_param
from .problems import Unauthorized
from .schemas import ExecuteRequest, ExecuteResponse, VersionRead, VersionWritten, WorkflowList, WorkflowRead
from .services import services

PrincipalId = Annotated[str | None, principal_id_param]
PrincipalType = Annotated[str | None, principal_type_param]


async def read_workflow(
    request: Request[Any, Any, Any], workflow_id: str, *, with_definition: bool = True
) -> WorkflowRead:
    svc = services(request)
    row = await svc.db.fetch_one("get_workflow", id=workflow_id)
    if row is None:
        raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
    definition = checksum = None
    version = row["current_version"] or row["latest_version"]
    if with_definition and version is not None:
        version_row = await svc.db.fetch_one("get_version", id=workflow_id, version=version)
        if version_row is not None:
            definition, checksum = version_row["definition"], version_row["checksum"]
    return WorkflowRead(**_workflow_fields(row), definition=definition, checksum=checksum)


def _workflow_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "display_name": row["display_name"],
        "description": row["description"],
        "status": row["status"],
        "current_version": row["current_version"],
        "latest_version": row["latest_version"],
        "is_enabled": row["is_enabled"],
        "max_concurrent_executions": row["max_concurrent_executions"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
        "archived_at": row["archived_at"],
        "archived_by": row["archived_by"],
        "template_id": row["template_id"],
        "template_version": row["template_version"],
    }


class WorkflowController(Controller):
    path = "/api/v1/workflows"
    tags = ["workflows"]

    @post("/", status_code=HTTP_201_CREATED, responses=PROBLEMS, summary="Create a Draft workflow from a definition")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[dict[str, Any]],
        auto_activate: Annotated[bool, QueryParameter(name="autoActivate")] = False,
        max_concurrent_executions: Annotated[
            int | None, query_int("maxConcurrentExecutions", ge=1, le=INT_MAX, required=False)
        ] = None,
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> WorkflowRead:
        svc = services(request)
        principal = svc.principals.resolve(request)
        prepared = await svc.prepare(data)
        definition = prepared.definition
        version = await svc.db.create_workflow(
            workflow_id=definition.id,
            display_name=definition.display_name,
            description=definition.description,
            definition=prepared.raw,
            checksum=prepared.checksum,
            principal=principal.id,
            max_concurrent_executions=max_concurrent_executions,
        )
        if auto_activate:
            await svc.db.publish(
                workflow_id=definition.id,
                version=version,
                plan=compile_for_publish(definition, version),
                principal=principal.id,
            )
        return await read_workflow(request, definition.id)

    @get("/", responses=PROBLEMS, summary="List workflows")
    async def list_workflows(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[str | None, QueryParameter(name="status", required=False)] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> WorkflowList:
        after = decode_cursor(cursor)
        if after is not None and not isinstance(after, str):
            raise InvalidInput("the cursor is not valid; use nextCursor from a previous page")
        rows = await services(request).db.fetch_all("list_workflows", after=after, status=status, limit=limit + 1)
        items = [WorkflowRead(**_workflow_fields(r)) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
        return WorkflowList(items=items, next_cursor=next_cursor)

    @get("/{workflow_id:str}", responses=PROBLEMS, summary="Get a workflow with its current definition")
    async def get_workflow(self, request: Request[Any, Any, Any], workflow_id: FromPath[str]) -> WorkflowRead:
        return await read_workflow(request, workflow_id)

    @put(
        "/{workflow_id:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Add a draft version (the same definition returns its version)",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        data: JSONBody[dict[str, Any]],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> VersionWritten:
        svc = services(request)
        principal = svc.principals.resolve(request)
        if await svc.db.fetch_one("get_workflow", id=workflow_id) is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        prepared = await svc.prepare(data, expected_id=workflow_id)
        version, created = await svc.db.add_version(
            workflow_id=workflow_id, definition=prepared.raw, checksum=prepared.checksum, principal=principal.id
        )
        workflow = await svc.db.fetch_one("get_workflow", id=workflow_id)
        assert workflow is not None
        return VersionWritten(
            workflow_id=workflow_id,
            version=version,
            checksum=prepared.checksum,
            created=created,
            workflow_status=workflow["status"],
            current_version=workflow["current_version"],
        )

    @post("/{workflow_id:str}/archive", status_code=200, responses=PROBLEMS, summary="Archive: refuse new executions")
    async def archive(
        self,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> WorkflowRead:
        svc = services(request)
        principal = svc.principals.resolve(request)
        await svc.db.fetch_one("archive_workflow", id=workflow_id, principal=principal.id)
        return await read_workflow(request, workflow_id)

    @get("/{workflow_id:str}/versions/{version:int}", responses=PROBLEMS, summary="One version, with its definition")
    async def version(
        self, request: Request[Any, Any, Any], workflow_id: FromPath[str], version: FromPath[int]
    ) -> VersionRead:
        row = await services(request).db.fetch_one("get_version", id=workflow_id, version=version)
        if row is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {version}")
        return VersionRead(**row)

    @get("/{workflow_id:str}/versions", responses=PROBLEMS, summary="List a workflow's versions")
    async def versions(self, request: Request[Any, Any, Any], workflow_id: FromPath[str]) -> list[VersionRead]:
        svc = services(request)
        if await svc.db.fetch_one("get_workflow", id=workflow_id) is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        rows = await svc.db.fetch_all("list_versions", id=workflow_id)
        return [VersionRead(**r) for r in rows]

    @post(
        "/{workflow_id:str}/publish",
        status_code=200,
        responses=PROBLEMS,
        summary="Publish a version (default: the latest)",
    )
    async def publish(
        self,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        version: Annotated[int | None, query_int("version", ge=1, le=INT_MAX, required=False)] = None,
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> WorkflowRead:
        svc = services(request)
        principal = svc.principals.resolve(request)
        workflow = await svc.db.fetch_one("get_workflow", id=workflow_id)
        if workflow is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        target = version or workflow["latest_version"]
        version_row = await svc.db.fetch_one("get_version", id=workflow_id, version=target)
        if version_row is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {target}")
        # Validate again: the registry of action types may have changed since the draft.
        prepared = await svc.prepare(version_row["definition"], expected_id=workflow_id)
        await svc.db.publish(
            workflow_id=workflow_id,
            version=target,
            plan=compile_for_publish(parse_definition(prepared.raw), target),
            principal=principal.id,
        )
        return await read_workflow(request, workflow_id)

    @post("/{workflow_id:str}/execute", status_code=HTTP_202_ACCEPTED, responses=PROBLEMS, summary="Start an execution")
    async def execute(
        self,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        data: JSONBody[ExecuteRequest],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> ExecuteResponse:
        svc = services(request)
        principal = svc.principals.resolve(request)
        if svc.settings.require_principal and principal.id is None:
            raise Unauthorized("this server requires a principal to execute workflows (X-Principal-Id)")
        limit = svc.settings.max_trigger_depth
        if json_depth(data.trigger, limit) > limit:
            raise InvalidInput(f"the trigger payload is nested deeper than {limit} levels")
        if data.request_id is not None and not (0 < len(data.request_id) <= 200):
            raise InvalidInput("requestId must be 1-200 characters")
        request_id = data.request_id or str(uuid.uuid4())
        correlation_id = data.correlation_id or request.headers.get("X-Correlation-Id") or request_id
        row = await svc.db.start_execution(
            workflow_id=workflow_id,
            request_id=request_id,
            trigger=data.trigger,
            principal_id=principal.id,
            principal_type=principal.type,
            correlation_id=correlation_id[:200],
            queue=svc.settings.queue,
        )
        execution_id = row["execution_id"]
        return ExecuteResponse(
            execution_id=execution_id,
            status=row["status"],
            status_url=f"/api/v1/executions/{execution_id}",
            workflow_id=workflow_id,
            workflow_version=row["workflow_version"],
            request_id=request_id,
            created=row["created"],
        )
