"""/api/v1/workflow-templates: stored, versioned workflow templates and their instantiation."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from dataworkflows.errors import DefinitionError, NotFound
from dataworkflows.workflow_templates import instantiate, prefix_problems, template_checksum, validate_template

from .openapi_docs import PROBLEMS
from .principals import principal_id_param, principal_type_param
from .schemas import InstantiateRequest, WorkflowRead, WorkflowTemplateRead
from .services import services
from .workflows import read_workflow

PrincipalId = Annotated[str | None, principal_id_param]
PrincipalType = Annotated[str | None, principal_type_param]


def _template_read(row: dict[str, Any], *, with_definition: bool) -> WorkflowTemplateRead:
    return WorkflowTemplateRead(
        id=row["id"],
        version=row["version"],
        display_name=row["display_name"],
        description=row["description"],
        parameters=row["parameters"],
        checksum=row["checksum"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        definition=row.get("definition_template") if with_definition else None,
    )


class WorkflowTemplateController(Controller):
    path = "/api/v1/workflow-templates"
    tags = ["workflow templates"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=PROBLEMS,
        summary="Store a template (a changed one becomes a new version)",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[dict[str, Any]],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> WorkflowTemplateRead:
        svc = services(request)
        principal = svc.principals.resolve(request)
        document, problems = validate_template(data)
        if problems or document is None:
            raise DefinitionError(problems, "the workflow template is invalid")
        version, _ = await svc.db.add_workflow_template(
            template_id=document.id,
            display_name=document.display_name,
            description=document.description,
            parameters=list(data.get("parameters", [])),
            definition_template=document.definition,
            checksum=template_checksum(data),
            principal=principal.id,
        )
        row = await svc.db.fetch_one("get_workflow_template", id=document.id, version=version)
        assert row is not None
        return _template_read(row, with_definition=True)

    @get("/", responses=PROBLEMS, summary="List templates (latest versions)")
    async def list_templates(self, request: Request[Any, Any, Any]) -> list[WorkflowTemplateRead]:
        rows = await services(request).db.fetch_all("list_workflow_templates")
        return [_template_read(r, with_definition=False) for r in rows]

    @get("/{template_id:str}", responses=PROBLEMS, summary="A template (latest version unless ?version=)")
    async def get_template(
        self,
        request: Request[Any, Any, Any],
        template_id: FromPath[str],
        version: Annotated[int | None, QueryParameter(name="version", ge=1, le=2**31 - 1, required=False)] = None,
    ) -> WorkflowTemplateRead:
        row = await services(request).db.fetch_one("get_workflow_template", id=template_id, version=version)
        if row is None:
            raise NotFound(f"workflow template {template_id!r} not found")
        return _template_read(row, with_definition=True)

    @post(
        "/{template_id:str}/instantiate",
        status_code=HTTP_201_CREATED,
        responses=PROBLEMS,
        summary="Create a Draft workflow",
    )
    async def instantiate(
        self,
        request: Request[Any, Any, Any],
        template_id: FromPath[str],
        data: JSONBody[InstantiateRequest],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> WorkflowRead:
        svc = services(request)
        principal = svc.principals.resolve(request)
        row = await svc.db.fetch_one("get_workflow_template", id=template_id, version=data.template_version)
        if row is None:
            raise NotFound(f"workflow template {template_id!r} not found")
        document, problems = validate_template(
            {
                "id": row["id"],
                "displayName": row["display_name"],
                "description": row["description"],
                "parameters": row["parameters"],
                "definition": row["definition_template"],
            }
        )
        assert document is not None and not problems, problems
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
        await svc.db.create_workflow(
            workflow_id=prepared.definition.id,
            display_name=prepared.definition.display_name,
            description=prepared.definition.description,
            definition=prepared.raw,
            checksum=prepared.checksum,
            principal=principal.id,
        )
        await svc.db.execute(
            "set_workflow_template", id=prepared.definition.id, template_id=row["id"], template_version=row["version"]
        )
        return await read_workflow(request, prepared.definition.id)
