"""The OpenAPI document and its docs page: offline assets, readable operation ids, the workflow
definition's schema (the file in schemas/, the served one, the component), and examples that are true.

One app for the module, without a database: none of these routes reads it."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar.testing import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dataworkflows.actions import ActionRegistry, builtin_actions
from dataworkflows.api.app import create_app
from dataworkflows.api.openapi_docs import (
    ASSETS_DIR,
    ASSETS_PATH,
    DEFINITION_SCHEMA_PATH,
    OPERATION_IDS,
    SWAGGER_INIT_PATH,
)
from dataworkflows.api.openapi_examples import ORDER_GRAPH, SIMPLE_ECHO
from dataworkflows.api.services import services_of
from dataworkflows.config import Settings
from dataworkflows.definition_schema import definition_schema, render
from dataworkflows.examples import example_definitions
from dataworkflows.statuses import DeadLetterKind, ExecutionStatus
from dataworkflows.validation import registry_parameter_checker, validate_definition

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "workflow-definition.schema.json"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    # No server listens there: the pool retries in the background; these routes never need it.
    # Strict mode: the docs, their assets and the schema are public, like the document.
    settings = Settings(
        database_url="host=/nonexistent port=1 dbname=none connect_timeout=1",
        auth_mode="strict",
        jwt_secret="docs-test-secret-of-at-least-32-bytes!",
        jwt_issuer="https://issuer.test",
        jwt_audience="dataworkflows",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client: TestClient[Any]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def test_the_docs_page_and_its_assets_come_from_this_server(client: TestClient[Any]) -> None:
    for page in ("/schema", "/schema/swagger"):
        response = client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        text = response.text
        assert "http://" not in text and "https://" not in text and "//" not in re.sub(r"https?://", "", text)
        referenced = re.findall(r"""(?:src|href)=["']([^"']+)["']""", text)
        assert {f"{ASSETS_PATH}/swagger-ui-bundle.js", f"{ASSETS_PATH}/swagger-ui.css"} <= set(referenced)
        assert all(url.startswith("/") and not url.startswith("//") for url in referenced), referenced
        assert '"url":"/schema/openapi.json"' in text and '"validatorUrl":null' in text
        # The page runs no inline script: its configuration is data, its scripts are files of this
        # origin, and its policy says so.
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
        assert all("src=" in attributes or 'type="application/json"' in attributes for attributes, _ in scripts)
        config = next(body for attributes, body in scripts if 'id="swagger-config"' in attributes)
        assert json.loads(config)["url"] == "/schema/openapi.json"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-eval" not in policy
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    init = client.get(SWAGGER_INIT_PATH)
    assert init.status_code == 200 and init.headers["content-type"].startswith("text/javascript")
    assert "swagger-config" in init.text and "no-cache" in init.headers["cache-control"]
    for url in set(referenced) - {SWAGGER_INIT_PATH}:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert "max-age=31536000" in asset.headers["cache-control"]
    css = client.get(f"{ASSETS_PATH}/swagger-ui.css").text
    assert "@import" not in css
    assert not [u for u in re.findall(r"url\(([^)]*)\)", css) if not u.strip("'\"").startswith("data:")]
    # The assets' licence and where they came from ship with them.
    assert {"LICENSE", "NOTICE", "SOURCE.md"} <= {p.name for p in ASSETS_DIR.iterdir()}
    # The old CDN page is gone (an HTML 404, not a blank page).
    assert client.get("/schema/scalar").status_code == 404


def test_the_new_routes_never_answer_500(client: TestClient[Any]) -> None:
    probes: list[tuple[str, str]] = [
        ("POST", DEFINITION_SCHEMA_PATH),
        ("DELETE", "/schema"),
        ("HEAD", DEFINITION_SCHEMA_PATH),
        ("GET", f"{DEFINITION_SCHEMA_PATH}?x=%ff&x=1"),
        ("GET", f"{ASSETS_PATH}/nope.js"),
        ("GET", f"{ASSETS_PATH}/"),
        ("GET", f"{ASSETS_PATH}/..%2f..%2fapp.py"),
        ("GET", f"{ASSETS_PATH}/%2e%2e/%2e%2e/openapi_docs.py"),
        ("GET", f"{ASSETS_PATH}/swagger-ui.css%00.js"),
        ("GET", f"{ASSETS_PATH}/{'a' * 5000}"),
        ("POST", f"{ASSETS_PATH}/swagger-ui.css"),
        ("GET", "/schema/assets"),
        ("GET", "/schema/swagger?url=https://evil.example/x.json"),
    ]
    for method, url in probes:
        response = client.request(method, url)
        assert response.status_code < 500, (method, url, response.status_code)
        assert b"__future__" not in response.content, (method, url)
    # The routes above answered without a token in strict mode (an /api/v1 request would be a 401,
    # after the rate limiter's wait for the database this app does not have).
    assert services_of(client.app.state).settings.auth_mode == "strict"


def test_every_operation_has_a_readable_unique_id(document: dict[str, Any]) -> None:
    ids = {}
    for method, path, operation in operations(document):
        operation_id = operation.get("operationId")
        assert OPERATION_IDS.get((method, path)) == operation_id, f"add {method} {path} to OPERATION_IDS"
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", operation_id), operation_id
        assert operation_id not in ids, f"{operation_id}: {ids.get(operation_id)} and {method} {path}"
        ids[operation_id] = f"{method} {path}"
    # No line in the table names a route that is gone.
    assert set(OPERATION_IDS.values()) == set(ids)
    assert {"listExecutions", "getExecution", "createWorkflow", "executeWorkflow"} <= set(ids)


def test_an_optional_body_is_not_required(document: dict[str, Any]) -> None:
    """cancel's and suspend's reason is optional (no body is fine); the document said required, with
    a schema of the request or null, so generated clients insisted on one."""
    for action in ("cancel", "suspend"):
        body = document["paths"][f"/api/v1/executions/{{execution_id}}/{action}"]["post"]["requestBody"]
        assert body["required"] is False, body
        assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ControlRequest"}
    # A body a route needs stays required.
    assert document["paths"]["/api/v1/workflows/{workflow_id}/execute"]["post"]["requestBody"]["required"] is True
    nullable = [
        (path, method)
        for method, path, operation in operations(document)
        if {"type": "null"} in _json_schema(operation).get("oneOf", [])
    ]
    assert nullable == [], nullable


def _json_schema(operation: dict[str, Any]) -> dict[str, Any]:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = body.get("schema", {})
    return schema if isinstance(schema, dict) else {}


# The bare lists that page through a Link header, with the most rows a page holds and the default.
LINK_PAGED = {
    "/api/v1/approvals": (500, 100),
    "/api/v1/workflows/{workflow_id}/versions": (1000, 1000),
    "/api/v1/workflows/{workflow_id}/triggers": (1000, 1000),
    "/api/v1/triggers": (1000, 1000),
    "/api/v1/triggers/{trigger_id}/deliveries": (1000, 1000),
    "/api/v1/triggers/{trigger_id}/ticks": (1000, 1000),
    "/api/v1/workflow-templates": (1000, 1000),
    "/api/v1/connections": (1000, 1000),
    "/api/v1/executions/{execution_id}/actions": (1000, 1000),
    "/api/v1/executions/{execution_id}/children": (1000, 1000),
    "/api/v1/executions/{execution_id}/tree": (1000, 1000),
    "/api/v1/executions/{execution_id}/nodes/{node_id}/items": (1000, 1000),
    "/api/v1/templates/{set_id}/{name}/versions": (1000, 1000),
}


@pytest.mark.parametrize("path", sorted(LINK_PAGED))
def test_a_bare_list_that_pages_documents_its_link_limit_and_cursor(document: dict[str, Any], path: str) -> None:
    """The body is a bare list (existing clients read it so): the next page is a Link header, which
    a client learns of from the document, as the events' route documents its own."""
    operation = document["paths"][path]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    link = operation["responses"]["200"]["headers"]["Link"]
    assert 'rel="next"' in link["description"] and "cursor=" in link["description"], link
    query = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    assert (query["limit"]["minimum"], query["limit"]["maximum"], query["limit"]["default"]) == (
        1,
        *LINK_PAGED[path],
    )
    assert "cursor" in query


def test_the_schema_file_is_what_the_code_generates_and_what_the_api_serves(client: TestClient[Any]) -> None:
    generated = definition_schema(ActionRegistry(builtin_actions()))
    jsonschema.Draft202012Validator.check_schema(generated)
    assert SCHEMA_FILE.read_text() == render(generated), (
        "regenerate it: python -m dataworkflows.definition_schema schemas/workflow-definition.schema.json"
    )
    served = client.get(DEFINITION_SCHEMA_PATH)
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/schema+json")
    # This installation has no actions from other packages: the served schema is the file's.
    assert served.json() == generated


def test_every_fixture_workflow_and_example_validates(validator: jsonschema.Draft202012Validator) -> None:
    # What `up` loads as workflows, and every file named like one.
    fixtures = dict(example_definitions())
    for path in (ROOT / "fixtures").glob("**/*-workflow.json"):
        fixtures.setdefault(str(path.relative_to(ROOT / "fixtures")), json.loads(path.read_text()))
    assert len(fixtures) >= 18
    check = registry_parameter_checker(ActionRegistry(builtin_actions()))
    for name, definition in sorted(fixtures.items()):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(definition)]
        assert not errors, f"{name}: {errors}"
    for example in (SIMPLE_ECHO, ORDER_GRAPH):
        assert not list(validator.iter_errors(example))
        assert validate_definition(example, check_parameters=check) == []


def _mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    definition = copy.deepcopy(SIMPLE_ECHO)
    change(definition)
    return definition


def _kind(node: dict[str, Any], kind: str, parameters: dict[str, Any]) -> None:
    node.pop("actionType", None)
    node.update(nodeType=kind, parameters=parameters)


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    # name: (change to simple-echo, whether it stays valid)
    "unknown top-level field": (lambda d: d.update(extra=1), False),
    "id with a space": (lambda d: d.update(id="bad id"), False),
    "no nodes": (lambda d: d.update(nodes=[]), False),
    "unknown node kind": (lambda d: d["nodes"][0].update(nodeType="bogus"), False),
    "action without actionType": (lambda d: d["nodes"][0].pop("actionType"), False),
    "unknown action type": (lambda d: d["nodes"][0].update(actionType="nope.nothing"), False),
    "unknown parameter": (lambda d: d["nodes"][0]["parameters"].update(bogus=1), False),
    "http.request without parameters": (
        lambda d: (d["nodes"][0].update(actionType="http.request"), d["nodes"][0].pop("parameters")),
        False,
    ),
    "core.echo without parameters": (lambda d: d["nodes"][0].pop("parameters"), True),
    "parameter of the wrong type": (lambda d: d["nodes"][0]["parameters"].update(delayMs="slow"), False),
    "templated parameter": (lambda d: d["nodes"][0]["parameters"].update(delayMs="{{ trigger.ms }}"), True),
    "transform with an actionType": (lambda d: d["nodes"][0].update(nodeType="transform"), False),
    "transform": (lambda d: _kind(d["nodes"][0], "transform", {"expression": "trigger.n + 1"}), True),
    "transform without expression": (lambda d: _kind(d["nodes"][0], "transform", {"timeout": "PT1S"}), False),
    "retry maxAttempts 0": (lambda d: d["nodes"][0].update(retryPolicy={"maxAttempts": 0}), False),
    "retry policy": (lambda d: d["nodes"][0].update(retryPolicy={"maxAttempts": 5, "maxDelay": "PT1M"}), True),
    "duration in words": (lambda d: d["nodes"][0].update(timeout="5 minutes"), False),
    "timeout of zero": (lambda d: d["nodes"][0].update(timeout="PT0S"), False),
    "signal timeout of zero": (lambda d: _kind(d["nodes"][0], "signal", {"name": "go", "timeout": "PT0.0S"}), False),
    "delay of zero": (lambda d: _kind(d["nodes"][0], "delay", {"duration": "PT0S"}), True),
    "lower-case duration": (lambda d: d["nodes"][0].update(timeout="pt0.5s"), True),
    "delay with both": (
        lambda d: _kind(d["nodes"][0], "delay", {"duration": "PT1S", "until": "2030-01-01T00:00:00Z"}),
        False,
    ),
    "delay until a time without offset": (
        lambda d: _kind(d["nodes"][0], "delay", {"until": "2030-01-01T00:00:00"}),
        True,
    ),
    "templated delay": (lambda d: _kind(d["nodes"][0], "delay", {"duration": "{{ trigger.wait }}"}), True),
    "signal without name": (lambda d: _kind(d["nodes"][0], "signal", {"timeout": "PT1H"}), False),
    "forEach with action and subworkflow": (
        lambda d: _kind(
            d["nodes"][0],
            "forEach",
            {"items": [1], "action": {"actionType": "core.echo"}, "subworkflow": {"workflowId": "x"}},
        ),
        False,
    ),
    "forEach concurrency 0": (
        lambda d: _kind(
            d["nodes"][0], "forEach", {"items": [1], "action": {"actionType": "core.echo"}, "concurrency": 0}
        ),
        False,
    ),
    "subworkflow with a templated id": (
        lambda d: _kind(d["nodes"][0], "subworkflow", {"workflowId": "{{ trigger.wf }}"}),
        False,
    ),
    "edge when maybe": (lambda d: d["nodes"][0].update(edges=[{"targetNode": "echo2", "when": "maybe"}]), False),
    "blank condition": (lambda d: d["nodes"][0].update(edges=[{"targetNode": "echo2", "condition": " "}]), False),
    "maxParallelActions 0": (lambda d: d.update(orchestration={"maxParallelActions": 0}), False),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_schema_and_the_validator_agree(name: str, validator: jsonschema.Draft202012Validator) -> None:
    change, valid = MUTATIONS[name]
    definition = _mutate(change)
    check = registry_parameter_checker(ActionRegistry(builtin_actions()))
    assert validator.is_valid(definition) is valid
    assert (validate_definition(definition, check_parameters=check) == []) is valid


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_the_definition_is_a_component_that_the_bodies_use(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path, method in (("/api/v1/workflows", "post"), ("/api/v1/workflows/{workflow_id}", "put")):
        body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/WorkflowDefinition"}
    assert schemas["WorkflowDefinition"]["required"] == ["id", "displayName", "startNode", "nodes"]
    assert {"WorkflowDefinition.Node", "WorkflowDefinition.Parameters.http.request"} <= set(schemas)
    assert "#/components/schemas/WorkflowDefinition" in json.dumps(schemas["WorkflowRead"]["properties"]["definition"])
    # Every reference in the document names something in it.
    for ref in set(_refs(document)):
        kind, _, name = ref.removeprefix("#/components/").partition("/")
        assert kind in ("schemas", "headers") and name in document["components"][kind], ref
    assert all(name in schemas for name in ("ProblemDetails", "ExecuteRequest", "ExecutionRead"))


def test_the_examples_match_their_schemas(document: dict[str, Any]) -> None:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    seen = set()
    for method, path, operation in operations(document):
        pointer = f"urn:openapi#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}"
        media = [("requestBody", operation.get("requestBody", {}))]
        media += [(f"responses/{status}", answer) for status, answer in operation["responses"].items()]
        for where, holder in media:
            for media_type, content in holder.get("content", {}).items():
                for name, example in content.get("examples", {}).items():
                    schema = {"$ref": f"{pointer}/{where}/content/{media_type.replace('/', '~1')}/schema"}
                    validator = jsonschema.Draft202012Validator(schema, registry=registry)
                    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example["value"])]
                    assert not errors, f"{operation['operationId']} {where} {name}: {errors}"
                    seen.add((operation["operationId"], where.split("/")[-1]))
    expected = {("createWorkflow", "requestBody"), ("createWorkflow", "201"), ("executeWorkflow", "requestBody")}
    expected |= {("executeWorkflow", "202"), ("getExecution", "200"), ("listExecutions", "200")}
    expected |= {("createWorkflow", "422"), ("executeWorkflow", "409"), ("getExecution", "404")}
    expected |= {("deleteWorkflow", "409")}
    assert expected <= seen, expected - seen


def test_an_installed_action_whose_parameters_have_no_json_schema_is_an_object() -> None:
    import msgspec

    class OddParams(msgspec.Struct):
        ratio: complex

    class OddAction:
        type_name = "acme.odd"
        description = "Parameters msgspec cannot describe"
        connector = "acme"
        Params = OddParams

        async def execute(self, ctx: Any, params: Any) -> Any:
            raise NotImplementedError

    schema = definition_schema(ActionRegistry([*builtin_actions(), OddAction()]))
    assert schema["$defs"]["Parameters.acme.odd"]["type"] == "object"
    assert "acme.odd" in schema["$defs"]["ActionType"]["enum"]


@pytest.mark.parametrize("path", ["/schema/nope", "/schema/redoc", "/schema/openapi.yaml", "/schema/x.json"])
def test_a_path_under_schema_that_serves_nothing_is_a_problem_not_a_page(client: TestClient[Any], path: str) -> None:
    """Litestar answered /schema/<anything> with an HTML page ("Error 404"); every other 404 of the API
    is problem details, and says where the documents are."""
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json"), response.text[:200]
    body = response.json()
    assert body["status"] == 404 and "/schema/openapi.json" in body["detail"]
    # The documents and pages themselves are still served.
    assert client.get("/schema/openapi.json").status_code == 200
    assert client.get(DEFINITION_SCHEMA_PATH).status_code == 200
    assert client.get("/schema/swagger").status_code == 200


@pytest.mark.parametrize(
    ("path", "name", "values"),
    [
        ("/api/v1/executions", "status", {s.value for s in ExecutionStatus}),
        ("/api/v1/executions", "triggerKind", {"manual", "schedule", "webhook", "event", "subworkflow"}),
        ("/api/v1/dead-letters", "kind", {k.value for k in DeadLetterKind}),
    ],
)
def test_a_query_value_the_route_checks_against_a_list_documents_it(
    document: dict[str, Any], path: str, name: str, values: set[str]
) -> None:
    """Each is refused (400) outside its list; a client (and schemathesis) learnt the list only from
    the refusal."""
    (parameter,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert set(parameter["schema"]["enum"]) == values, parameter


def _bounds(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
                yield f"{where}/{key}", item
            elif key not in ("example", "examples"):
                yield from _bounds(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _bounds(item, f"{where}/{index}")


def test_bounds_are_exact_integers(client: TestClient[Any], document: dict[str, Any]) -> None:
    """Litestar wrote a parameter's bounds as floats: 2^63 - 1 as 9.223372036854776e+18 (2^63), past
    the largest event id a client may send."""
    floats = [(where, bound) for where, bound in _bounds(document) if isinstance(bound, float)]
    assert not floats, floats
    (after,) = [
        p
        for p in document["paths"]["/api/v1/executions/{execution_id}/events"]["get"]["parameters"]
        if p["name"] == "after"
    ]
    assert after["schema"]["maximum"] == 2**63 - 1
    assert b'"maximum":9223372036854775807' in client.get("/schema/openapi.json").content


def test_a_request_body_that_refuses_unknown_fields_is_a_closed_object(document: dict[str, Any]) -> None:
    """Every request struct refuses a field it does not have (400): its schema says so, and
    EmptyRequest takes no field at all."""
    schemas = document["components"]["schemas"]
    closed = {name for name, schema in schemas.items() if schema.get("additionalProperties") is False}
    bodies = set()
    for _, _, operation in operations(document):
        schema = _json_schema(operation)
        ref = schema.get("$ref", "") if schema else ""
        if ref.startswith("#/components/schemas/") and "WorkflowDefinition" not in ref:
            bodies.add(ref.rsplit("/", 1)[1])
    assert bodies and bodies <= closed, bodies - closed
    assert {"ExecuteRequest", "SignalRequest", "ConnectionWrite", "TriggerPatch", "EmptyRequest"} <= closed
    assert schemas["EmptyRequest"]["properties"] == {}
    assert not {name for name in closed if name.endswith("Read")}, "an answer is not closed"


def test_the_rules_the_handlers_enforce_are_documented(document: dict[str, Any]) -> None:
    """Each was a 400 or 422 that the document did not foresee (a schemathesis run)."""
    schemas = document["components"]["schemas"]
    assert schemas["TriggerWrite"]["properties"]["kind"]["enum"] == ["schedule", "webhook", "event"]
    assert {"http", "slack", "monday"} <= set(schemas["ConnectionWrite"]["properties"]["kind"]["enum"])
    key = schemas["SignalRequest"]["properties"]["correlationKey"]["oneOf"]
    assert {"type": "string", "minLength": 1, "maxLength": 500} in key and {"type": "integer"} in key
    assert schemas["WorkflowRetentionUpdate"]["properties"]["retentionDays"]["minimum"] == 0
    assert schemas["WorkflowRetentionUpdate"]["minProperties"] == schemas["WorkflowLimitsUpdate"]["minProperties"] == 1
    paths = document["paths"]

    def parameter(path: str, method: str, name: str) -> dict[str, Any]:
        (found,) = [p for p in paths[path][method]["parameters"] if p["name"] == name]
        return found["schema"]  # type: ignore[no-any-return]

    for method in ("get", "put", "patch", "delete"):
        assert parameter("/api/v1/connections/{name}", method, "name")["pattern"] == (
            "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
        )
    signal = parameter("/api/v1/executions/{execution_id}/signals/{name}", "post", "name")
    assert signal["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
    (ids,) = [c for c in parameter("/api/v1/waits", "get", "executionId")["oneOf"] if c.get("type") == "array"]
    assert (ids["minItems"], ids["maxItems"]) == (1, 100)


def _reachable(document: dict[str, Any], roots: list[Any]) -> set[str]:
    """The components the schemas in `roots` refer to, directly or through other components."""
    schemas = document["components"]["schemas"]
    found: set[str] = set()
    pending = list(roots)
    while pending:
        for ref in _refs(pending.pop()):
            name = ref.removeprefix("#/components/schemas/")
            if name in schemas and name not in found:
                found.add(name)
                pending.append(schemas[name])
    return found


def test_every_field_an_answer_always_has_is_required(document: dict[str, Any]) -> None:
    """Answers are encoded with every field (null when it has no value): a client generated from
    the document made them optional. No component is both a request's and an answer's, so a
    request's optional fields stay optional; problem details' members vary (built as dicts)."""
    requests, answers = [], []
    for _, _, operation in operations(document):
        requests.extend(c.get("schema") for c in operation.get("requestBody", {}).get("content", {}).values())
        for response in operation["responses"].values():
            answers.extend(c.get("schema") for c in response.get("content", {}).values())
    asked = {n for n in _reachable(document, requests) if not n.startswith("WorkflowDefinition")}
    answered = {n for n in _reachable(document, answers) if not n.startswith("WorkflowDefinition")}
    assert not asked & answered, asked & answered
    schemas = document["components"]["schemas"]
    for name in answered - {"ProblemDetails", "ProblemEntry"}:
        schema = schemas[name]
        assert set(schema.get("required", [])) == set(schema.get("properties", {})), name
    assert "disabledBy" in schemas["WorkflowRead"]["required"]
    assert "signalId" not in schemas["SignalRequest"]["required"], "a request keeps its optional fields"


def test_405_and_415_are_documented_where_they_are_answered(client: TestClient[Any], document: dict[str, Any]) -> None:
    """A schemathesis run met both undocumented: 405 (with Allow) on every path, 415 on every /api/v1
    write but the webhook receiver's (a DELETE with a non-JSON body too: api/cross_site.py)."""
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert "Allow" in responses["405"]["headers"], (method, path)
        writes = path.startswith("/api/v1/") and method != "GET" and operation["operationId"] != "deliverHook"
        assert ("415" in responses) == writes, (method, path)
    refused = client.delete("/api/v1/workflows")
    assert refused.status_code == 405 and "allow" in refused.headers


def test_the_headers_sent_and_read_are_documented(document: dict[str, Any]) -> None:
    headers = document["components"]["headers"]
    assert {"Retry-After", "WWW-Authenticate", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
        headers
    )
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            named = set(response.get("headers", {}))
            if status in ("429", "503"):
                assert "Retry-After" in named, (method, path, status)
            if status in ("401", "403") and operation.get("x-required-role") != "public":
                assert "WWW-Authenticate" in named, (method, path, status)
            if path.startswith("/api/v1/") and status != "405":
                assert "RateLimit-Remaining" in named, (method, path, status)
            if status == "405":
                # The router's answer: the limiter (route middleware) never runs for it.
                assert not any(name.startswith("RateLimit-") for name in named), (method, path)
    paths = document["paths"]

    def reads(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method]["parameters"] if p["in"] == "header"}

    assert "X-Correlation-Id" in reads("/api/v1/workflows/{workflow_id}/execute", "post")
    assert "Last-Event-ID" in reads("/api/v1/executions/{execution_id}/events", "get")
    assert {"X-DW-Signature", "X-Hub-Signature-256", "X-Slack-Signature", "X-Delivery-Id"} <= reads(
        "/api/v1/hooks/{trigger_id}", "post"
    )
    waits = paths["/api/v1/waits"]["get"]["responses"]["200"]
    assert "X-More-Waits" in waits["headers"]


def test_a_problems_extra_members_are_documented(document: dict[str, Any]) -> None:
    """A 403's requiredRole, and a template_error's template, line and column."""
    members = document["components"]["schemas"]["ProblemDetails"]["properties"]
    assert {"requiredRole", "template", "line", "column"} <= set(members)


def test_the_answers_a_handler_makes_itself_are_typed(document: dict[str, Any]) -> None:
    """Handlers that answer a Response (its status or type depends on the outcome) were documented
    with an empty `{}` body, or not at all (a schemathesis run)."""
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    hook = paths["/api/v1/hooks/{trigger_id}"]["post"]["responses"]
    assert hook["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HookAnswer"}
    assert {c["$ref"] for c in hook["200"]["content"]["application/json"]["schema"]["oneOf"]} == {
        "#/components/schemas/HookAnswer",
        "#/components/schemas/HookChallenge",
    }
    assert {"deliveryId", "activated", "duplicate", "executionId"} <= set(schemas["HookAnswer"]["required"])
    ready = paths["/health/ready"]["get"]["responses"]
    assert ready["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HealthRead"}
    assert "application/problem+json" in ready["503"]["content"] and "Retry-After" in ready["503"]["headers"]
    assert {"401", "403"} <= set(paths["/metrics"]["get"]["responses"])
    document_answers = paths["/api/v1/documents/{document_id}"]["get"]
    assert "If-None-Match" in {p["name"] for p in document_answers["parameters"]}
    for status in ("200", "304"):
        assert {"ETag", "X-Document-Checksum"} <= set(document_answers["responses"][status]["headers"])
    assert "content" not in document_answers["responses"]["304"]
    assert {"text/markdown", "text/html", "text/plain", "application/json"} == set(
        document_answers["responses"]["200"]["content"]
    )
    events = paths["/api/v1/executions/{execution_id}/events"]["get"]["responses"]["200"]["content"]
    assert events["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/EventRead"},
    }
    assert "text/event-stream" in events
    body = paths["/api/v1/workflow-templates"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    template = schemas[body["$ref"].rsplit("/", 1)[1]]
    assert set(template["required"]) == {"id", "displayName", "definition"} and "parameters" in template["properties"]
    assert template["additionalProperties"] is False


def _readme_api_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## HTTP API\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_the_readme_names_every_query_parameter_of_a_route_it_lists(document: dict[str, Any]) -> None:
    """The README's table is read before the document: a parameter it leaves out is one nobody uses
    (the dead letters' cursor and limit, the resource links' limit)."""
    listed: dict[str, set[str]] = {}
    for row in _readme_api_rows():
        for path, query in re.findall(r"`GET (/[^`\[\s]+)\[\?([^\]]+)\]", row):
            names = {part.split("=")[0] for part in query.replace("&", " ").split()}
            listed[re.sub(r"\{[^}]*\}", "{}", path)] = names
    checked = 0
    for method, path, operation in operations(document):
        key = re.sub(r"\{[^}]*\}", "{}", path)
        if method != "GET" or key not in listed:
            continue
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert documented <= listed[key], (path, documented - listed[key])
        checked += 1
    assert checked > 10


def test_the_readme_lists_the_document_and_schema_routes_and_the_hooks_answer(document: dict[str, Any]) -> None:
    rows = "\n".join(_readme_api_rows())
    assert "`GET /api/v1/documents/{id}`" in rows
    assert "`GET /schema/workflow-definition.schema.json`" in rows
    (hooks,) = [row for row in _readme_api_rows() if row.startswith("| `POST /api/v1/hooks/")]
    for field in document["components"]["schemas"]["HookAnswer"]["properties"]:
        assert field in hooks, field
    assert "challenge" in hooks
