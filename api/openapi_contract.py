"""What the OpenAPI document says beyond what Litestar generates from the handlers' types: rules the
API enforces that the types do not carry, and bounds written as the integers they are. Applied to the
whole document once it is built (api/openapi_docs.py, DocumentedOpenAPI).

A schemathesis run against the server found each of these: a client generated from the document
sent what the API refuses, or could not read what the API answers."""

from __future__ import annotations

from typing import Any

import msgspec

from dataworkflows.actions import connector_of, default_registry
from dataworkflows.connection_kinds import connection_kinds
from dataworkflows.definition_schema import ID_PATTERN, SIGNAL_NAME_PATTERN
from dataworkflows.documents import CONTENT_TYPES
from dataworkflows.webhooks import (
    DELIVERY_ID_HEADER,
    DW_SIGNATURE,
    DW_TIMESTAMP,
    GITHUB_DELIVERY,
    GITHUB_SIGNATURE,
    SLACK_SIGNATURE,
    SLACK_TIMESTAMP,
)
from dataworkflows.workflow_templates import WorkflowTemplateDocument

from .params import BIGINT_MAX, INT_MAX
from .problems import PROBLEM_JSON
from .schemas import Camel

_NUMERIC_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_COUNT_BOUNDS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"})
# Bounds a float cannot hold: Litestar writes a parameter's ge/le as floats, and 2^63 - 1 became
# 9.223372036854776e+18 (2^63), which a client generated from the document took as a valid id.
_EXACT = {float(n): n for n in (BIGINT_MAX, -BIGINT_MAX - 1, INT_MAX)}
API_PREFIX = "/api/v1/"
# The extension api/auth.py writes each /api/v1 operation's role in ("public": the webhook receiver).
ROLE_EXTENSION = "x-required-role"


def finish_document(document: dict[str, Any]) -> None:
    """The document as a client should read it (every step says what it adds)."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    close_request_bodies(schemas)
    require_answer_fields(schemas)
    enforced_rules(document, schemas)
    untyped_bodies(document, schemas)
    method_and_media_type_answers(document)
    documented_headers(document)
    exact_integers(document)


def camel_structs() -> dict[str, type[msgspec.Struct]]:
    """The API's request and response structs by component name (Litestar names a component after
    its struct)."""
    found: dict[str, type[msgspec.Struct]] = {}
    pending: list[type[msgspec.Struct]] = [Camel]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def is_request_struct(cls: type[msgspec.Struct]) -> bool:
    """Every request body's struct refuses an unknown field (a 400); no answer's struct does."""
    return bool(cls.__struct_config__.forbid_unknown_fields)


def close_request_bodies(schemas: dict[str, Any]) -> None:
    """A body with a field its struct does not have is a 400 (forbid_unknown_fields), so its schema
    is a closed object; EmptyRequest, which has no fields, takes none."""
    for name, cls in camel_structs().items():
        schema = schemas.get(name)
        if schema is not None and is_request_struct(cls):
            schema["additionalProperties"] = False


def require_answer_fields(schemas: dict[str, Any]) -> None:
    """Every field of an answer's struct is sent (omit_defaults=False: null when it has no value), so
    every property of its component is required: a client generated from the document made them
    optional, and checked for their absence. A request's struct keeps its optional fields. (Problem
    details are made as dicts, not from their struct: their optional members are left out.)"""
    for name, cls in camel_structs().items():
        schema = schemas.get(name)
        if schema is not None and not is_request_struct(cls) and not cls.__struct_config__.omit_defaults:
            schema["required"] = sorted(schema.get("properties", {}))


def enforced_rules(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Rules a handler checks that its types do not carry (each refusal is a 400 or a 422 that a
    client generated from the document could not foresee)."""
    # Imported here: api/triggers.py imports this module's importer (api/openapi_docs.py).
    from .triggers import KINDS

    _property(schemas, "TriggerWrite", "kind")["enum"] = list(KINDS)
    # The installed actions' connectors add kinds, as the definition schema's action types are the
    # installed ones (dataworkflows.definition_schema).
    kinds = connection_kinds(_connectors())
    _property(schemas, "ConnectionWrite", "kind")["enum"] = kinds
    # msgspec's lengths of a string in a union with an int were lost (the handler refuses "" and
    # 501 characters).
    _property(schemas, "SignalRequest", "correlationKey").update(
        {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 500}, {"type": "integer"}, {"type": "null"}]}
    )
    # Litestar drops a falsy bound (ge=0).
    _property(schemas, "WorkflowRetentionUpdate", "retentionDays")["minimum"] = 0
    # An empty PATCH changes nothing and is refused (422: "give retentionDays ...").
    for name in ("WorkflowLimitsUpdate", "WorkflowRetentionUpdate"):
        if name in schemas:
            schemas[name]["minProperties"] = 1
    paths: dict[str, Any] = document.get("paths", {})
    for path, item in paths.items():
        for operation in _operations(item):
            for parameter in operation.get("parameters", ()):
                _parameter_rule(path, parameter)


def _parameter_rule(path: str, parameter: dict[str, Any]) -> None:
    where, name, schema = parameter.get("in"), parameter.get("name"), parameter.get("schema")
    if not isinstance(schema, dict):
        return
    if where == "path" and name == "name" and path.startswith("/api/v1/connections/"):
        # A name outside it is refused when stored (422) and so names no connection (404).
        schema["pattern"] = ID_PATTERN
    elif where == "path" and name == "name" and "/signals/" in path:
        schema["pattern"] = SIGNAL_NAME_PATTERN
    elif where == "query" and name == "executionId" and path == "/api/v1/waits":
        # Imported here, as api/triggers.py above.
        from .waits import MAX_EXECUTIONS

        for choice in schema.get("oneOf", [schema]):
            if choice.get("type") == "array":
                choice.update({"minItems": 1, "maxItems": MAX_EXECUTIONS})


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


# getDocument's content types, without their charset.
DOCUMENT_TYPES = tuple(media.split(";")[0] for media in CONTENT_TYPES.values())
_DOCUMENT_HEADERS = {
    "ETag": _header("The document's checksum, quoted: a document never changes"),
    "X-Document-Checksum": _header("The document's checksum (sha256:...)"),
}


def untyped_bodies(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Bodies the handlers' types do not say: the event log's stream, a stored document's content
    types and validators, and a workflow template's body (the handler reads raw JSON, so that an
    invalid template gets every problem in one 422)."""
    for _, item in document.get("paths", {}).items():
        for _, operation in _methods(item):
            operation_id = operation.get("operationId")
            responses = operation.get("responses", {})
            if operation_id == "listExecutionEvents" and "200" in responses:
                responses["200"].setdefault("content", {})["text/event-stream"] = {
                    "schema": {"type": "string", "description": "Server-sent events: `id:`, `event:` and `data:` lines"}
                }
            elif operation_id == "getDocument":
                if "200" in responses:
                    responses["200"]["description"] = "The document, in its content type"
                    responses["200"]["content"] = {
                        media: {"schema": {} if media == "application/json" else {"type": "string"}}
                        for media in DOCUMENT_TYPES
                    }
                for status in ("200", "304"):
                    if status in responses:
                        responses[status].setdefault("headers", {}).update(_DOCUMENT_HEADERS)
            elif operation_id == "createWorkflowTemplate":
                _template_body(operation, schemas)


def _template_body(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    (body,), components = msgspec.json.schema_components(
        [WorkflowTemplateDocument], ref_template="#/components/schemas/{name}"
    )
    for name, component in components.items():
        # msgspec says nothing of a closed struct; the template refuses an unknown field (422).
        component["additionalProperties"] = False
        schemas[name] = component
    template = schemas["WorkflowTemplateDocument"]["properties"]
    template["id"]["pattern"] = ID_PATTERN
    definition = template["definition"]
    definition["description"] = "A workflow definition whose values may be [[ parameter ]] placeholders"
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        content["schema"] = body


def method_and_media_type_answers(document: dict[str, Any]) -> None:
    """405 on every operation: its path answers any other method so, with Allow naming the ones it
    takes (api/head_requests.py). 415 on every /api/v1 write but the webhook receiver's: a body, or
    a Content-Type, that is not JSON (api/cross_site.py), which a DELETE may send too."""
    for path, item in document.get("paths", {}).items():
        for method, operation in _methods(item):
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "405",
                _problem(
                    "The path does not take this method (method_not_allowed); Allow names those it takes",
                    {"Allow": _header("The methods the path takes, HEAD wherever GET is")},
                ),
            )
            if (
                path.startswith(API_PREFIX)
                and method not in ("get", "head")
                and operation.get(ROLE_EXTENSION) != "public"
            ):
                responses.setdefault(
                    "415",
                    _problem(
                        "The body, or the Content-Type named, is not JSON (unsupported_media_type): send "
                        "Content-Type: application/json"
                    ),
                )


# Sent on every /api/v1 answer while DW_API_RATE_PER_MINUTE is set (dataworkflows.rate_limits).
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": _header("The caller's bucket size (the burst)", {"type": "integer"}),
    "RateLimit-Remaining": _header("Whole requests left in the bucket", {"type": "integer"}),
    "RateLimit-Reset": _header("Seconds until the bucket is full again", {"type": "integer"}),
    "RateLimit-Policy": _header("`<burst>;w=<seconds to refill the whole bucket>`"),
}
_RETRY_AFTER = _header("Seconds to wait before trying again", {"type": "integer", "minimum": 1})
_CHALLENGE = _header(
    "Strict mode: the bearer challenge (RFC 6750): `Bearer realm=...` with error=invalid_token, or "
    "error=insufficient_scope on a 403"
)
# Request headers an operation reads beyond the caller's (X-Principal-*), by operationId.
REQUEST_HEADERS: dict[str, list[tuple[str, str]]] = {
    "executeWorkflow": [
        (
            "X-Correlation-Id",
            "The run's correlation id when the body has no correlationId (at most 200 printable characters; "
            "given twice: 400)",
        )
    ],
    "listExecutionEvents": [
        ("Last-Event-ID", "text/event-stream: resume after this event id (an EventSource sends it on reconnecting)")
    ],
    "getDocument": [("If-None-Match", "The ETag of the copy the client has: 304 when it is this one (or `*`)")],
    "deliverHook": [
        (DW_TIMESTAMP, "hmac-sha256 hooks: the Unix time signed with the body"),
        (DW_SIGNATURE, "hmac-sha256 hooks: `sha256=<hex HMAC-SHA256 of <timestamp>.<raw body>>`"),
        (GITHUB_SIGNATURE, "github hooks: `sha256=<hex HMAC-SHA256 of the raw body>`"),
        (GITHUB_DELIVERY, "github hooks: the delivery id (a redelivery is a duplicate)"),
        (SLACK_TIMESTAMP, "slack hooks: the Unix time signed with the body"),
        (SLACK_SIGNATURE, "slack hooks: `v0=<hex HMAC-SHA256 of v0:<timestamp>:<raw body>>`"),
        (DELIVERY_ID_HEADER, "The delivery id where the hook names no other header (a repeat is a duplicate)"),
    ],
}


def documented_headers(document: dict[str, Any]) -> None:
    """The headers the API sends and reads that no handler's type carries: Retry-After on 429 and
    503, the RateLimit fields on every /api/v1 answer but a 405, WWW-Authenticate on 401 and 403 (but the
    webhook receiver's, whose signature is no bearer token), and the request headers of
    REQUEST_HEADERS. Each answer's header is a reference to one in components.headers."""
    components = document.setdefault("components", {}).setdefault("headers", {})
    components.update({**RATE_LIMIT_HEADERS, "Retry-After": _RETRY_AFTER, "WWW-Authenticate": _CHALLENGE})
    for path, item in document.get("paths", {}).items():
        for _, operation in _methods(item):
            public = operation.get(ROLE_EXTENSION) == "public"
            for status, response in operation.get("responses", {}).items():
                names = ["Retry-After"] if status in ("429", "503") else []
                if status in ("401", "403") and not public:
                    names.append("WWW-Authenticate")
                # Not on a 405: the router answers it before any route's middleware runs, the
                # limiter's too (no token is taken, no field sent).
                if path.startswith(API_PREFIX) and status != "405":
                    names.extend(RATE_LIMIT_HEADERS)
                if names:
                    headers = response.setdefault("headers", {})
                    headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in names})
            _request_headers(operation)


def _request_headers(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    for name, description in REQUEST_HEADERS.get(str(operation.get("operationId")), ()):
        if not any(p.get("in") == "header" and p.get("name") == name for p in parameters):
            header = {"name": name, "in": "header", "required": False, "description": description}
            parameters.append({**header, "schema": {"type": "string"}})


def _connectors() -> list[str]:
    registry = default_registry()
    return [connector_of(registry.get(name)) for name in registry.types()]


def _property(schemas: dict[str, Any], component: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = schemas[component]["properties"][name]
    return found


def _operations(item: Any) -> list[dict[str, Any]]:
    return [operation for _, operation in _methods(item)]


def _methods(item: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(item, dict):
        return []
    return [(m, item[m]) for m in ("get", "put", "post", "delete", "patch") if isinstance(item.get(m), dict)]


def exact_integers(value: Any) -> None:
    """Bounds written as integers: 500 for 500.0, and 9223372036854775807 for the float 2^63 that
    stood for it. An example's values are the API's data, left as they are."""
    if isinstance(value, list):
        for item in value:
            exact_integers(item)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key in ("example", "examples"):
            continue
        if key in _NUMERIC_BOUNDS | _COUNT_BOUNDS and isinstance(item, float) and item.is_integer():
            value[key] = _EXACT.get(item, int(item))
        else:
            exact_integers(item)
