"""/api/v1/actions (the action catalog), /api/v1/connections (credentials, write-only) and
/api/v1/resource-links (which runs touched which external resource)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, put
from litestar.params import FromPath, JSONBody, QueryParameter

from dataworkflows.actions import ActionRegistry, connector_of
from dataworkflows.connection_kinds import connection_kinds, connection_problems
from dataworkflows.credentials import ALL_WORKFLOWS, Cipher, connection_binding
from dataworkflows.errors import Conflict, InvalidInput, NotFound
from dataworkflows.validation import Problem, is_valid_id

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
from .params import query_int, quoted
from .schemas import ActionTypeRead, ConnectionAccess, ConnectionRead, ConnectionWrite, ResourceLinkRead, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep

_CHANGE_CONNECTIONS = {REQUIRES_PRINCIPAL: "change connections"}
MAX_ALLOWED_WORKFLOWS = 1000
ALLOWED = "/allowedWorkflows"


def _invalid(*problems: Problem) -> InvalidInput:
    """422 with one errors[] entry per problem; the detail is the first one's message."""
    more = f" (and {len(problems) - 1} more: see errors)" if len(problems) > 1 else ""
    return InvalidInput(f"{problems[0].message}{more}", problems=list(problems))


def allowed_workflows(value: list[str]) -> list[str]:
    """An allow-list as stored: workflow ids, sorted and distinct, or ["*"] (every workflow).

    "*" comes alone: beside ids it would make them meaningless (every workflow may use the
    connection), and dropping them silently would hide that the caller meant something else."""
    if len(value) > MAX_ALLOWED_WORKFLOWS:
        raise _invalid(
            Problem(ALLOWED, "too_many", f"allowedWorkflows holds at most {MAX_ALLOWED_WORKFLOWS} workflow ids")
        )
    if ALL_WORKFLOWS in value:
        if any(w != ALL_WORKFLOWS for w in value):
            message = "allowedWorkflows is either ['*'] (every workflow) or workflow ids, not both"
            raise _invalid(Problem(f"{ALLOWED}/{value.index(ALL_WORKFLOWS)}", "all_with_ids", message))
        return [ALL_WORKFLOWS]
    problems = [
        Problem(f"{ALLOWED}/{index}", "invalid_id", f"allowedWorkflows must hold workflow ids or '*', not {quoted(w)}")
        for index, w in enumerate(value)
        if not is_valid_id(w)
    ]
    if problems:
        raise _invalid(*problems)
    return sorted(set(value))


def _connectors(registry: ActionRegistry) -> list[str]:
    return [connector_of(registry.get(name)) for name in registry.types()]


class CatalogController(Controller):
    path = "/actions"
    tags = ["actions"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="Every action type, with its connector and parameter JSON schema",
        opt={"role": "viewer"},
    )
    async def list_actions(self, svc: ServicesDep) -> list[ActionTypeRead]:
        registry = svc.registry
        result = []
        for type_name in registry.types():
            action = registry.get(type_name)
            result.append(
                ActionTypeRead(
                    type=type_name,
                    connector=connector_of(action),
                    description=action.description,
                    parameters_schema=msgspec.json.schema(action.Params),
                )
            )
        return result


class ConnectionController(Controller):
    path = "/connections"
    tags = ["connections"]

    @put(
        "/{name:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Store a connection's secret (encrypted; never returned)",
        opt={**_CHANGE_CONNECTIONS, "role": "admin"},
    )
    async def put_connection(
        self, svc: ServicesDep, principal: PrincipalDep, name: FromPath[str], data: JSONBody[ConnectionWrite]
    ) -> ConnectionRead:
        if not is_valid_id(name):
            raise InvalidInput("a connection name is 1-128 letters, digits, '.', '_' or '-'")
        # Pasted from a file, a secret often ends with a newline: never part of a token.
        secret = data.secret.strip()
        problems = connection_problems(data.kind, secret, connection_kinds(_connectors(svc.registry)))
        if problems:
            raise _invalid(*problems)
        if not svc.settings.credentials_key:
            raise Conflict(
                "storing connections needs DW_CREDENTIALS_KEY (base64 of 32 random bytes); "
                "without it, give workers DW_CONNECTION_<NAME> environment variables instead"
            )
        allowed = None if data.allowed_workflows is None else allowed_workflows(data.allowed_workflows)
        cipher = Cipher.from_setting(svc.settings.credentials_key)
        stored = await svc.db.connections.put(
            name,
            kind=data.kind,
            secret=cipher.encrypt(secret, connection_binding(name)),
            key_id=cipher.key_id,
            principal=principal.id,
            allowed_workflows=allowed,
        )
        return from_row(ConnectionRead, stored)

    @patch(
        "/{name:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Change which workflows may use a connection (allowedWorkflows: ids, or ['*'])",
        opt={**_CHANGE_CONNECTIONS, "role": "admin"},
    )
    async def change_access(
        self, db: DatabaseDep, name: FromPath[str], data: JSONBody[ConnectionAccess]
    ) -> ConnectionRead:
        changed = await db.connections.set_allowed_workflows(name, allowed_workflows(data.allowed_workflows))
        if changed is None:
            raise NotFound(f"connection {name!r} not found")
        return from_row(ConnectionRead, changed)

    @get(
        "/{name:str}",
        responses=PROBLEMS,
        summary="One connection (its name, kind and allow-list, never its secret)",
        opt={"role": "viewer"},
    )
    async def get_connection(self, db: DatabaseDep, name: FromPath[str]) -> ConnectionRead:
        found = await db.connections.get(name)
        if found is None:
            raise NotFound(f"connection {name!r} not found")
        return from_row(ConnectionRead, found)

    @get(
        "/",
        responses=PROBLEMS,
        summary="Connections (names and kinds, never secrets), by name",
        response_headers=next_page_header("/api/v1/connections?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_connections(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[ConnectionRead]]:
        scope = ("connections",)
        rows = await db.connections.list_all(limit=limit + 1, after=decode_name_cursor(cursor, scope=scope))
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(ConnectionRead, row),
            lambda last: encode_scoped(scope, last.name),
        )

    @delete(
        "/{name:str}",
        status_code=204,
        responses=PROBLEMS,
        summary="Remove a connection",
        opt={**_CHANGE_CONNECTIONS, "role": "admin"},
    )
    async def delete_connection(self, db: DatabaseDep, name: FromPath[str]) -> None:
        if not await db.connections.delete(name):
            raise NotFound(f"connection {name!r} not found")


class ResourceLinkController(Controller):
    path = "/resource-links"
    tags = ["resource links"]

    @get("/", responses=PROBLEMS, summary="Which runs touched which external resource", opt={"role": "viewer"})
    async def list_links(
        self,
        db: DatabaseDep,
        resource_type: Annotated[str | None, QueryParameter(name="type", required=False)] = None,
        key: Annotated[str | None, QueryParameter(name="key", required=False)] = None,
        execution_id: Annotated[UUID | None, QueryParameter(name="executionId", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=1000)] = 100,
    ) -> list[ResourceLinkRead]:
        links = await db.resources.links(resource_type=resource_type, key=key, execution_id=execution_id, limit=limit)
        return [from_row(ResourceLinkRead, link) for link in links]
