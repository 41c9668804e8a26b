"""/api/v1/workflow-templates: stored, versioned workflow templates and their instantiation."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from dataworkflows.data.workflows import WorkflowTemplate
from dataworkflows.db import Database
from dataworkflows.definitions import checksum
from dataworkflows.errors import DefinitionError, NotFound
from dataworkflows.workflow_templates import instantiate, prefix_problems, validate_template

from .locations import LOCATION, created
from .openapi_docs import PROBLEMS
from .paging import (
    PAGE_LIMIT,
    PageCursor,
    PageLimit,
    bare_page,
    decode_name_cursor,
    encode_scoped,
    next_page_header,
)
from .params import VersionQuery
from .schemas import InstantiateRequest, WorkflowRead, WorkflowTemplateRead, WorkflowTemplateStored, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep
from .workflows import read_workflow

UNCHANGED = ResponseSpec(
    data_container=WorkflowTemplateStored,
    description="The same content as the template's latest version: nothing stored, that version (created false)",
)


async def _require(db: Database, template_id: str, version: int | None) -> WorkflowTemplate:
    template = await db.workflows.get_template(template_id, version)
    if template is None:
        latest = None if version is None else await db.workflows.get_template(template_id, None)
        if latest is not None:
            # The template is there; the version asked for is not (it said the template was not found).
            raise NotFound(
                f"workflow template {template_id!r} has no version {version} (its latest is {latest.version})"
            )
        raise NotFound(f"workflow template {template_id!r} not found")
    return template


class WorkflowTemplateController(Controller):
    path = "/workflow-templates"
    tags = ["workflow templates"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses={**PROBLEMS, HTTP_200_OK: UNCHANGED},
        summary="Store a template (a changed one becomes a new version; the latest's content again: 200)",
        opt={REQUIRES_PRINCIPAL: "change workflow templates", "role": "author"},
    )
    async def create(
        self, request: Request[Any, Any, Any], db: DatabaseDep, principal: PrincipalDep, data: JSONBody[dict[str, Any]]
    ) -> Response[WorkflowTemplateStored]:
        # In a thread: compiling a large template's text takes seconds (a review: 10 s for 660 kB, the
        # event loop serving nobody meanwhile).
        document, problems = await asyncio.to_thread(validate_template, data)
        if problems or document is None:
            raise DefinitionError(problems, "the workflow template is invalid")
        version, added = await db.workflows.add_template(
            template_id=document.id,
            display_name=document.display_name,
            description=document.description,
            parameters=list(data.get("parameters", [])),
            definition_template=document.definition,
            checksum=checksum(data),
            principal=principal.id,
        )
        template = from_row(WorkflowTemplateStored, await _require(db, document.id, version), created=added)
        if not added:
            # The same content as the latest version: nothing was stored, and the answer says so (until
            # this release a 201 either way, a review), as a workflow's unchanged PUT does.
            return Response(template, status_code=HTTP_200_OK)
        return created(request, template, "workflow-templates", document.id)

    @get(
        "/",
        responses=PROBLEMS,
        summary="List templates (latest versions), by id",
        response_headers=next_page_header("/api/v1/workflow-templates?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_templates(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[WorkflowTemplateRead]]:
        scope = ("workflow-templates",)
        rows = await db.workflows.list_templates(limit=limit + 1, after=decode_name_cursor(cursor, scope=scope))
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(WorkflowTemplateRead, row),
            lambda last: encode_scoped(scope, last.id),
        )

    @get(
        "/{template_id:str}",
        responses=PROBLEMS,
        summary="A template (latest version unless ?version=)",
        opt={"role": "viewer"},
    )
    async def get_template(
        self,
        db: DatabaseDep,
        template_id: FromPath[str],
        version: VersionQuery = None,
    ) -> WorkflowTemplateRead:
        return from_row(WorkflowTemplateRead, await _require(db, template_id, version))

    @post(
        "/{template_id:str}/instantiate",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses=PROBLEMS,
        summary="Create a Draft workflow",
        opt={REQUIRES_PRINCIPAL: "change workflow templates", "role": "author"},
    )
    async def instantiate(
        self,
        request: Request[Any, Any, Any],
        svc: ServicesDep,
        principal: PrincipalDep,
        template_id: FromPath[str],
        data: JSONBody[InstantiateRequest],
    ) -> Response[WorkflowRead]:
        template = await _require(svc.db, template_id, data.template_version)
        # Parsed, not compiled again: its templates were checked when it was stored, the instantiation
        # renders them in a helper, and the definition it makes is checked as any other (svc.prepare).
        # Compiling them here again froze the API for as long on every instantiation (a review).
        document, problems = validate_template(
            {
                "id": template.id,
                "displayName": template.display_name,
                "description": template.description,
                "parameters": template.parameters,
                "definition": template.definition,
            },
            compile_templates=False,
        )
        if problems or document is None:
            raise DefinitionError(problems, "the stored workflow template is not valid as it stands")
        definition, problems = await instantiate(document, data.workflow_id, data.config, svc.templates)
        if problems or definition is None:
            raise DefinitionError(problems, "the template cannot be instantiated with this request")
        try:
            prepared = await svc.prepare(definition)
        except DefinitionError as exc:
            raise DefinitionError(
                prefix_problems(exc.problems, "/definition"),
                "the instantiated definition is invalid (a problem with the template or its config)",
            ) from exc
        await svc.db.workflows.create(
            workflow_id=prepared.definition.id,
            display_name=prepared.definition.display_name,
            description=prepared.definition.description,
            definition=prepared.raw,
            checksum=prepared.checksum,
            principal=principal.id,
        )
        await svc.db.workflows.set_template(
            prepared.definition.id, template_id=template.id, template_version=template.version
        )
        workflow = await read_workflow(svc.db, prepared.definition.id)
        return created(request, workflow, "workflows", prepared.definition.id)
