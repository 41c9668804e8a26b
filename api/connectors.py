"""/api/v1/actions (the action catalog), /api/v1/connections (credentials, write-only) and
/api/v1/resource-links (which runs touched which external resource)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from dataworkflows.credentials import Cipher
from dataworkflows.errors import Conflict, InvalidInput, NotFound

from .openapi_docs import PROBLEMS
from .params import query_int
from .principals import principal_id_param, principal_type_param
from .problems import Unauthorized
from .schemas import ActionTypeRead, ConnectionRead, ConnectionWrite, ResourceLinkRead
from .services import services

PrincipalId = Annotated[str | None, principal_id_param]
PrincipalType = Annotated[str | None, principal_type_param]
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


class CatalogController(Controller):
    path = "/api/v1/actions"
    tags = ["actions"]

    @get("/", responses=PROBLEMS, summary="Every action type, with its connector and parameter JSON schema")
    async def list_actions(self, request: Request[Any, Any, Any]) -> list[ActionTypeRead]:
        registry = services(request).registry
        result = []
        for type_name in registry.types():
            action = registry.get(type_name)
            result.append(
                ActionTypeRead(
                    type=type_name,
                    connector=getattr(action, "connector", "core"),
                    description=action.description,
                    parameters_schema=msgspec.json.schema(action.Params),
                )
            )
        return result


class ConnectionController(Controller):
    path = "/api/v1/connections"
    tags = ["connections"]

    @put(
        "/{name:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Store a connection's secret (encrypted; never returned)",
    )
    async def put_connection(
        self,
        request: Request[Any, Any, Any],
        name: FromPath[str],
        data: JSONBody[ConnectionWrite],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> ConnectionRead:
        svc = services(request)
        if not _NAME.match(name):
            raise InvalidInput("a connection name is 1-128 letters, digits, '.', '_' or '-'")
        if svc.settings.require_principal and svc.principals.resolve(request).id is None:
            raise Unauthorized("this server requires a principal to change connections (X-Principal-Id)")
        secret = data.secret.strip()
        if not secret:
            raise InvalidInput("secret must not be empty")
        if any(ord(c) < 32 for c in secret) and not _is_json_object(secret):
            # A token with a line break would be cut into a header; JSON connections may be pretty.
            raise InvalidInput("secret must not contain line breaks or other control characters")
        if not svc.settings.credentials_key:
            raise Conflict(
                "storing connections needs DW_CREDENTIALS_KEY (base64 of 32 random bytes); "
                "without it, give workers DW_CONNECTION_<NAME> environment variables instead"
            )
        cipher = Cipher.from_setting(svc.settings.credentials_key)
        row = await svc.db.fetch_one(
            "upsert_connection",
            name=name,
            kind=data.kind,
            secret=cipher.encrypt(secret, name),
            key_id=cipher.key_id,
            principal=svc.principals.resolve(request).id,
        )
        assert row is not None
        return ConnectionRead(**row)

    @get("/", responses=PROBLEMS, summary="Connections (names and kinds, never secrets)")
    async def list_connections(self, request: Request[Any, Any, Any]) -> list[ConnectionRead]:
        return [ConnectionRead(**r) for r in await services(request).db.fetch_all("list_connections")]

    @delete("/{name:str}", status_code=204, responses=PROBLEMS, summary="Remove a connection")
    async def delete_connection(self, request: Request[Any, Any, Any], name: FromPath[str]) -> None:
        svc = services(request)
        if svc.settings.require_principal and svc.principals.resolve(request).id is None:
            raise Unauthorized("this server requires a principal to change connections (X-Principal-Id)")
        if await svc.db.fetch_one("delete_connection", name=name) is None:
            raise NotFound(f"connection {name!r} not found")


class ResourceLinkController(Controller):
    path = "/api/v1/resource-links"
    tags = ["resource links"]

    @get("/", responses=PROBLEMS, summary="Which runs touched which external resource")
    async def list_links(
        self,
        request: Request[Any, Any, Any],
        resource_type: Annotated[str | None, QueryParameter(name="type", required=False)] = None,
        key: Annotated[str | None, QueryParameter(name="key", required=False)] = None,
        execution_id: Annotated[UUID | None, QueryParameter(name="executionId", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=1000)] = 100,
    ) -> list[ResourceLinkRead]:
        rows = await services(request).db.fetch_all(
            "list_resource_links", type=resource_type, key=key, execution_id=execution_id, limit=limit
        )
        return [ResourceLinkRead(**r) for r in rows]
