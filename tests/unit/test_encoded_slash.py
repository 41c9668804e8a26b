"""An encoded slash (%2F) in a path segment names nothing: no id in this API holds a slash. The
server decodes it before routing, and a schemathesis run found requests that reached another
operation (`workflows/simple-echo%2Fversions` listed the versions, `workflows/%2F` the workflows,
and `DELETE triggers/%2F` met the list's 405).

One app for the module, without a database: the refusal comes before routing and before auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from dataworkflows.api.app import create_app
from dataworkflows.cli import _problem_text
from dataworkflows.config import Settings


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    # No server listens there: nothing here reaches the database.
    settings = Settings(database_url="host=/nonexistent port=1 dbname=none connect_timeout=1")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("GET", "/api/v1/workflows/simple-echo%2Fversions", "workflow id"),
        ("GET", "/api/v1/workflows/%2F", "workflow id"),
        ("HEAD", "/api/v1/workflows/%2f", "workflow id"),
        ("DELETE", "/api/v1/triggers/%2F", "trigger id"),
        ("POST", "/api/v1/executions/a%2Fb/cancel", "execution id"),
        # The run's own path takes no POST: still a 404, not the 405 of the path the router read.
        ("POST", "/api/v1/executions/a%2Fb", "execution id"),
        ("GET", "/api/v1/connections/a%2fb", "name"),
        ("GET", "/api/v1/templates/a%2Fb/page/versions", "set id"),
        ("GET", "/api/v1/templates/set/a%2Fb/versions", "name"),
        ("POST", "/api/v1/executions/0193a4c2-7d1e-7b3a-9f0e-5c2d8e4b1a60/signals/go%2Fnow", "name"),
        ("GET", "/api/v1/workflow-templates/a%2Fb", "template id"),
        ("GET", "/api/v1/documents/a%2Fb", "document id"),
        ("POST", "/api/v1/hooks/a%2Fb", "trigger id"),
        ("GET", "/schema/assets/swagger-ui-5.35.0/a%2Fswagger-ui.css", "id in this API"),
        ("GET", "/api%2Fv1/workflows", "id in this API"),
    ],
)
def test_an_encoded_slash_in_a_path_is_a_404_naming_what_holds_it(
    client: TestClient[Any], method: str, path: str, named: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 404, (path, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    if method == "HEAD":
        return
    body = response.json()
    # The shape of the router's own 404.
    unrouted = client.get("/api/v1/no-such-thing").json()
    assert set(body) == set(unrouted) and body["code"] == unrouted["code"] == "not_found", body
    assert body["detail"] == f"no {named} holds a slash ('/', written %2F): nothing is at this path", body


def test_the_cli_says_so_in_one_line(client: TestClient[Any]) -> None:
    """The CLI percent-encodes an id (`executions tree a/b` asks for executions/a%2Fb/tree): its error
    names the id's rule, in one line, and does not blame DW_API_URL."""
    said = _problem_text(client.get("/api/v1/executions/a%2Fb/tree"))
    assert said == "HTTP 404: no execution id holds a slash ('/', written %2F): nothing is at this path", said


def test_a_path_without_an_encoded_slash_is_routed_as_before(client: TestClient[Any]) -> None:
    # %252F is a percent sign and "2F": the file's name, which the assets' own check refuses.
    body = client.get("/schema/assets/swagger-ui-5.35.0/a%252Fb").json()
    assert body["status"] == 404 and body["detail"] == "no such file", body
    assert client.get("/schema/openapi.json").status_code == 200


def test_an_encoded_slash_in_the_query_is_the_querys_own(client: TestClient[Any]) -> None:
    # httpx's test transport puts the query in raw_path, as some servers do.
    body = client.get("/schema/assets/swagger-ui-5.35.0/nope.css?a=%2F").json()
    assert body["detail"] == "no such file", body
