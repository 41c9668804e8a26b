"""The OpenAPI document and its docs page: the error answers every route may give (RFC 9457 problem
details), readable operation ids, examples, the workflow definition's schema, and a Swagger UI page
whose assets ship in the package (no CDN: it works offline).

The workflow definition's schema (dataworkflows.definition_schema) is served as a JSON Schema file
at /schema/workflow-definition.schema.json and is the `WorkflowDefinition` component (with its parts
as `WorkflowDefinition.*`) that the create and put bodies refer to. The handlers still take the raw
JSON, so that an invalid definition gets the validator's 422 with every problem, not a 400."""

from __future__ import annotations

import html
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Router, get
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import Components, Example, OpenAPI, Operation, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from dataworkflows.actions import default_registry
from dataworkflows.definition_schema import definition_schema

from .openapi_contract import finish_document
from .openapi_examples import OPERATION_EXAMPLES, PROBLEM_EXAMPLES
from .problems import PROBLEM_JSON
from .schemas import ProblemDetails

SWAGGER_UI_VERSION = "5.35.0"
ASSETS_DIR = Path(__file__).parent / "openapi_assets" / "swagger-ui"
OPENAPI_PATH = "/schema"
# Versioned, so that browsers may keep them for good.
ASSETS_PATH = f"{OPENAPI_PATH}/assets/swagger-ui-{SWAGGER_UI_VERSION}"
DEFINITION_SCHEMA_PATH = f"{OPENAPI_PATH}/workflow-definition.schema.json"
# The page's own script (not versioned with Swagger UI's assets: revalidated, never kept for good).
SWAGGER_INIT_PATH = f"{OPENAPI_PATH}/swagger-init.js"
# Reads the configuration render() puts in the page as JSON data (a script of type application/json
# runs nothing).
SWAGGER_INIT_JS = "window.ui = SwaggerUIBundle(JSON.parse(document.getElementById('swagger-config').textContent));\n"
DEFINITION_COMPONENT = "WorkflowDefinition"
SCHEMA_JSON = "application/schema+json"


def _spec(description: str, status: int) -> ResponseSpec:
    example = PROBLEM_EXAMPLES.get(status)
    return ResponseSpec(
        data_container=ProblemDetails,
        description=description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
        examples=None if example is None else [Example(summary=example[0], value=example[1])],
    )


PROBLEMS = {
    400: _spec(
        "Malformed request: not JSON, wrong types, unknown fields; or a query value the endpoint does not take "
        "(errors[].parameter names it)",
        400,
    ),
    401: _spec("No principal where DW_REQUIRE_PRINCIPAL requires one; strict mode: a missing or invalid token", 401),
    404: _spec("Unknown id", 404),
    409: _spec(
        "Conflicts with the current state (Draft, Archived or disabled workflow, duplicate id, redriven letter)", 409
    ),
    413: _spec("Request body larger than DW_MAX_BODY_BYTES", 413),
    422: _spec("Invalid definition or input: one entry per problem in errors[], each with a JSON pointer", 422),
    429: _spec("Over the caller's rate limit (DW_API_RATE_PER_MINUTE): see Retry-After and the RateLimit fields", 429),
    503: _spec("The database is unreachable; retry later", 503),
}
# GET …/events: a stream is refused past the caller's live streams too (api/stream_slots.py).
EVENT_STREAM_PROBLEMS = {
    **PROBLEMS,
    429: _spec(
        "Over the caller's rate limit (DW_API_RATE_PER_MINUTE); or, asking for a stream, the caller holds"
        " DW_MAX_STREAMS_PER_CALLER live streams already (too_many_streams): see Retry-After",
        429,
    ),
}

# (method, path) -> operationId. Every operation in the document has one (a test checks it): a new
# route adds its line here.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("GET", "/health/live"): "getLiveness",
    ("GET", "/health/ready"): "getReadiness",
    ("GET", "/metrics"): "getMetrics",
    ("GET", DEFINITION_SCHEMA_PATH): "getWorkflowDefinitionSchema",
    ("GET", "/api/v1/workflows"): "listWorkflows",
    ("POST", "/api/v1/workflows"): "createWorkflow",
    ("GET", "/api/v1/workflows/{workflow_id}"): "getWorkflow",
    ("PUT", "/api/v1/workflows/{workflow_id}"): "updateWorkflow",
    ("DELETE", "/api/v1/workflows/{workflow_id}"): "deleteWorkflow",
    ("POST", "/api/v1/workflows/{workflow_id}/archive"): "archiveWorkflow",
    ("POST", "/api/v1/workflows/{workflow_id}/disable"): "disableWorkflow",
    ("POST", "/api/v1/workflows/{workflow_id}/enable"): "enableWorkflow",
    ("POST", "/api/v1/workflows/{workflow_id}/publish"): "publishWorkflow",
    ("POST", "/api/v1/workflows/{workflow_id}/execute"): "executeWorkflow",
    ("PATCH", "/api/v1/workflows/{workflow_id}/limits"): "setWorkflowLimits",
    ("PATCH", "/api/v1/workflows/{workflow_id}/retention"): "setWorkflowRetention",
    ("GET", "/api/v1/workflows/{workflow_id}/versions"): "listWorkflowVersions",
    ("GET", "/api/v1/workflows/{workflow_id}/versions/{version}"): "getWorkflowVersion",
    ("GET", "/api/v1/workflows/{workflow_id}/triggers"): "listWorkflowTriggers",
    ("POST", "/api/v1/workflows/{workflow_id}/triggers"): "createWorkflowTrigger",
    ("GET", "/api/v1/workflow-templates"): "listWorkflowTemplates",
    ("POST", "/api/v1/workflow-templates"): "createWorkflowTemplate",
    ("GET", "/api/v1/workflow-templates/{template_id}"): "getWorkflowTemplate",
    ("POST", "/api/v1/workflow-templates/{template_id}/instantiate"): "instantiateWorkflowTemplate",
    ("GET", "/api/v1/template-sets"): "listTemplateSets",
    ("POST", "/api/v1/template-sets"): "createTemplateSet",
    ("GET", "/api/v1/template-sets/{set_id}"): "getTemplateSet",
    ("DELETE", "/api/v1/template-sets/{set_id}"): "deleteTemplateSet",
    ("GET", "/api/v1/templates"): "listDocumentTemplates",
    ("POST", "/api/v1/templates"): "createDocumentTemplate",
    ("GET", "/api/v1/templates/{set_id}/{name}"): "getDocumentTemplate",
    ("PUT", "/api/v1/templates/{set_id}/{name}"): "updateDocumentTemplate",
    ("DELETE", "/api/v1/templates/{set_id}/{name}"): "deleteDocumentTemplate",
    ("GET", "/api/v1/templates/{set_id}/{name}/versions"): "listDocumentTemplateVersions",
    ("GET", "/api/v1/templates/{set_id}/{name}/versions/{version}"): "getDocumentTemplateVersion",
    ("POST", "/api/v1/templates/{set_id}/{name}/render"): "renderDocumentTemplate",
    ("GET", "/api/v1/documents/{document_id}"): "getDocument",
    ("GET", "/api/v1/executions"): "listExecutions",
    ("GET", "/api/v1/executions/{execution_id}"): "getExecution",
    ("GET", "/api/v1/executions/{execution_id}/actions"): "listExecutionActions",
    ("GET", "/api/v1/executions/{execution_id}/events"): "listExecutionEvents",
    ("GET", "/api/v1/executions/{execution_id}/tree"): "getExecutionTree",
    ("GET", "/api/v1/executions/{execution_id}/children"): "listExecutionChildren",
    ("GET", "/api/v1/executions/{execution_id}/waits"): "listExecutionWaits",
    ("GET", "/api/v1/executions/{execution_id}/nodes/{node_id}/items"): "listNodeItems",
    ("POST", "/api/v1/executions/{execution_id}/cancel"): "cancelExecution",
    ("POST", "/api/v1/executions/{execution_id}/suspend"): "suspendExecution",
    ("PUT", "/api/v1/executions/{execution_id}/priority"): "setExecutionPriority",
    ("POST", "/api/v1/executions/{execution_id}/resume"): "resumeExecution",
    ("POST", "/api/v1/executions/{execution_id}/signals/{name}"): "signalExecution",
    ("POST", "/api/v1/signals/{name}"): "broadcastSignal",
    ("POST", "/api/v1/executions/bulk/cancel"): "bulkCancelExecutions",
    ("GET", "/api/v1/audit-log"): "listAuditLog",
    ("POST", "/api/v1/dead-letters/bulk/redrive"): "bulkRedriveDeadLetters",
    ("POST", "/api/v1/events"): "publishEvent",
    ("GET", "/api/v1/waits"): "listWaitsOfExecutions",
    ("GET", "/api/v1/approvals"): "listApprovals",
    ("GET", "/api/v1/approvals/{approval_id}"): "getApproval",
    ("POST", "/api/v1/approvals/{approval_id}/decision"): "decideApproval",
    ("GET", "/api/v1/dead-letters"): "listDeadLetters",
    ("GET", "/api/v1/workers"): "listWorkers",
    ("GET", "/api/v1/whoami"): "whoAmI",
    ("GET", "/api/v1/dead-letters/{dead_letter_id}"): "getDeadLetter",
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/redrive"): "redriveDeadLetter",
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/acknowledge"): "acknowledgeDeadLetter",
    ("GET", "/api/v1/actions"): "listActionTypes",
    ("GET", "/api/v1/connections"): "listConnections",
    ("GET", "/api/v1/connections/{name}"): "getConnection",
    ("PUT", "/api/v1/connections/{name}"): "putConnection",
    ("PATCH", "/api/v1/connections/{name}"): "updateConnectionAccess",
    ("DELETE", "/api/v1/connections/{name}"): "deleteConnection",
    ("GET", "/api/v1/resource-links"): "listResourceLinks",
    ("GET", "/api/v1/triggers"): "listTriggers",
    ("GET", "/api/v1/triggers/{trigger_id}"): "getTrigger",
    ("PATCH", "/api/v1/triggers/{trigger_id}"): "updateTrigger",
    ("DELETE", "/api/v1/triggers/{trigger_id}"): "deleteTrigger",
    ("POST", "/api/v1/triggers/{trigger_id}/secret"): "rotateTriggerSecret",
    ("GET", "/api/v1/triggers/{trigger_id}/deliveries"): "listTriggerDeliveries",
    ("GET", "/api/v1/triggers/{trigger_id}/ticks"): "listTriggerTicks",
    ("GET", "/api/v1/hooks/{trigger_id}"): "describeHook",
    ("POST", "/api/v1/hooks/{trigger_id}"): "deliverHook",
}

# Operations whose JSON body is a workflow definition.
DEFINITION_BODIES = ("createWorkflow", "updateWorkflow")
# Response components whose `definition` property is one.
DEFINITION_HOLDERS = ("WorkflowRead", "VersionRead")


@cache
def definition_schema_document() -> dict[str, Any]:
    """The JSON Schema the API serves: for the action types this installation has (the built-in
    ones, and those that installed packages add)."""
    return definition_schema(default_registry())


def _component_refs(value: Any) -> Any:
    """The schema with its local references ("#/$defs/X") pointing at OpenAPI components."""
    if isinstance(value, list):
        return [_component_refs(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: _component_refs(item) for key, item in value.items()}
    ref = result.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        result["$ref"] = f"#/components/schemas/{DEFINITION_COMPONENT}.{ref.removeprefix('#/$defs/')}"
    return result


def definition_components() -> dict[str, Any]:
    """The definition schema as OpenAPI components: WorkflowDefinition and its parts."""
    schema = {k: v for k, v in definition_schema_document().items() if k not in ("$schema", "$id", "$defs")}
    components = {DEFINITION_COMPONENT: _component_refs(schema)}
    for name, part in definition_schema_document()["$defs"].items():
        components[f"{DEFINITION_COMPONENT}.{name}"] = _component_refs(part)
    return components


class DocumentedComponents(Components):
    """The document's components, with the workflow definition's schema among them (Litestar
    generates the others from the handlers' types)."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        schemas = schema.setdefault("schemas", {})
        schemas.update(definition_components())
        definition_ref = {"anyOf": [{"$ref": f"#/components/schemas/{DEFINITION_COMPONENT}"}, {"type": "null"}]}
        for holder in DEFINITION_HOLDERS:
            properties = schemas.get(holder, {}).get("properties", {})
            if "definition" in properties:
                properties["definition"] = definition_ref
        return schema


def _json_content(operation: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    """The application/json content there, else the problem details' (a route's own example of
    one of its problems: deleteWorkflow's 409)."""
    node: Any = operation
    for key in (*keys, "content"):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    content = node.get("application/json", node.get(PROBLEM_JSON))
    return content if isinstance(content, dict) else None


def _optional_body(operation: dict[str, Any], body: dict[str, Any] | None) -> None:
    """A body the route takes or not (`JSONBody[X | None] = None`: cancel's and suspend's reason) is
    not required: Litestar wrote `required: true` with a schema of X or null, and generated clients
    (and "Try it out") insisted on a body that the route does without."""
    schema = body.get("schema") if body is not None else None
    choices = schema.get("oneOf") if isinstance(schema, dict) else None
    if body is None or not isinstance(choices, list) or {"type": "null"} not in choices:
        return
    given = [choice for choice in choices if choice != {"type": "null"}]
    if len(given) == 1:
        body["schema"] = given[0]
        operation["requestBody"]["required"] = False


def _document_operation(operation: dict[str, Any]) -> None:
    """Examples, and the definition schema for the bodies that are definitions."""
    operation_id = operation.get("operationId")
    body = _json_content(operation, "requestBody")
    _optional_body(operation, body)
    if operation_id in DEFINITION_BODIES and body is not None:
        body["schema"] = {"$ref": f"#/components/schemas/{DEFINITION_COMPONENT}"}
    examples = OPERATION_EXAMPLES.get(str(operation_id), {})
    if body is not None and "request" in examples:
        body["examples"] = examples["request"]
    for status, named in examples.get("responses", {}).items():
        content = _json_content(operation, "responses", status)
        if content is not None:
            content["examples"] = named


def _documented(base: type[Operation]) -> type[Operation]:
    def to_schema(self: Operation) -> dict[str, Any]:
        schema = base.to_schema(self)
        _document_operation(schema)
        return schema

    return type(f"{base.__name__}Documented", (base,), {"to_schema": to_schema})


def document_operations(app: Litestar) -> None:
    """Gives every documented operation its readable id (OPERATION_IDS) and its examples."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method in ("HEAD", "OPTIONS") or not handler.resolve_include_in_schema():
                continue
            operation_id = OPERATION_IDS.get((method, route.path_format))
            if operation_id is not None:
                handler.operation_id = operation_id
            handler.operation_class = _documented(handler.operation_class)


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from the assets in this package: the page loads nothing from another host."""

    def __init__(self, path: str | list[str]) -> None:
        favicon = f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>"
        super().__init__(path=path, favicon=favicon)

    def receive_router(self, router: Router) -> None:
        for route in openapi_routes():
            router.register(route)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        root = request.scope.get("root_path", "")
        assets = html.escape(f"{root}{ASSETS_PATH}", quote=True)
        config = {
            "url": f"{root}{self.get_openapi_json_route(request)}",
            "dom_id": "#swagger-ui",
            "deepLinking": True,
            "showExtensions": True,
            "showCommonExtensions": True,
            # No badge from the public validator (it would send the document to another host).
            "validatorUrl": None,
        }
        # </ cannot end the data block early ("\/" is "/" to JSON.parse).
        config_json = msgspec.json.encode(config).decode().replace("</", "<\\/")
        init = html.escape(f"{root}{SWAGGER_INIT_PATH}", quote=True)
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{self.favicon}
<link rel="stylesheet" href="{assets}/swagger-ui.css">
{self.style}
</head>
<body>
<div id="swagger-ui"></div>
<script id="swagger-config" type="application/json">{config_json}</script>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""
        return page.encode()


@get("/{path:str}", include_in_schema=False, sync_to_thread=False)
def schema_path_not_found(request: Request[Any, Any, Any]) -> None:
    """A path under /schema that serves nothing: a 404 in problem details, as everywhere else (it was
    Litestar's HTML page, "Error 404")."""
    raise NotFoundException(
        f"nothing is served at {request.url.path}: the docs page is {OPENAPI_PATH}, the document"
        f" {OPENAPI_PATH}/openapi.json, the workflow definition's schema {DEFINITION_SCHEMA_PATH}"
    )


class DocumentedOpenAPI(OpenAPI):
    """The document, finished as a whole once Litestar has built it (api/openapi_contract.py)."""

    def to_schema(self) -> dict[str, Any]:
        schema = super().to_schema()
        finish_document(schema)
        return schema


class DocumentedConfig(OpenAPIConfig):
    def to_openapi_schema(self) -> OpenAPI:
        built = super().to_openapi_schema()
        return DocumentedOpenAPI(**{f.name: getattr(built, f.name) for f in fields(built)})


def openapi_config(version: str) -> OpenAPIConfig:
    return DocumentedConfig(
        title="DataWorkflows",
        version=version,
        path=OPENAPI_PATH,
        description=(
            "A durable workflow engine where PostgreSQL is the coordinator. Errors are RFC 9457 problem "
            f"details. The workflow definition's JSON Schema: {DEFINITION_SCHEMA_PATH}."
        ),
        render_plugins=[SwaggerPage(path=["/", "/swagger"])],
        # Litestar adds to this router a handler of its own for the paths under /schema that serve nothing,
        # which answers an HTML page; this one, there first, takes them (tests/unit/test_openapi_docs.py).
        openapi_router=Router(
            OPENAPI_PATH, route_handlers=[schema_path_not_found], include_in_schema=False, dto=None, return_dto=None
        ),
        components=DocumentedComponents(
            security_schemes={
                "bearerAuth": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="Strict auth mode (DW_AUTH_MODE=strict); loose mode reads X-Principal-Id",
                )
            }
        ),
    )


@get(
    DEFINITION_SCHEMA_PATH.removeprefix(OPENAPI_PATH),
    tags=["schemas"],
    # The router that serves the document leaves its own routes out of it; this one is an operation.
    include_in_schema=True,
    summary="The workflow definition's JSON Schema (draft 2020-12), for editors",
    media_type=SCHEMA_JSON,
    cache_control=CacheControlHeader(no_cache=True),
    sync_to_thread=False,
)
def workflow_definition_schema() -> dict[str, Any]:
    return definition_schema_document()


@get(
    SWAGGER_INIT_PATH.removeprefix(OPENAPI_PATH),
    include_in_schema=False,
    media_type="text/javascript",
    cache_control=CacheControlHeader(no_cache=True),
    sync_to_thread=False,
)
def swagger_init() -> str:
    return SWAGGER_INIT_JS


def only_shipped_assets(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Serves the files in ASSETS_DIR and nothing else: a name the file system would refuse (a NUL,
    too long) is a 404 here, not an error from the file system (a 500)."""
    name = str(connection.path_params.get("file_path", "")).lstrip("/")
    if name not in _asset_names():
        raise NotFoundException("no such file")


@cache
def _asset_names() -> frozenset[str]:
    return frozenset(path.name for path in ASSETS_DIR.iterdir() if path.is_file())


def openapi_routes() -> list[Any]:
    """The docs page's assets and the definition schema, on the router that serves the document
    (public, like it)."""
    assets: Router = create_static_files_router(
        path=ASSETS_PATH.removeprefix(OPENAPI_PATH),
        directories=[ASSETS_DIR],
        name="openapi-assets",
        cache_control=CacheControlHeader(max_age=31_536_000, public=True),
        include_in_schema=False,
        guards=[only_shipped_assets],
    )
    return [workflow_definition_schema, swagger_init, assets]
