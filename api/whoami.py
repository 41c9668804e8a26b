"""/api/v1/whoami: the caller as the server resolved it. The console shows it in its header: with
a bearer token (strict mode) the token's subject, tenant and roles were nowhere to be seen."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, get

from .auth import ROLES
from .openapi_docs import PROBLEMS
from .schemas import WhoAmIRead
from .services import PrincipalDep, ServicesDep


class WhoAmIController(Controller):
    path = "/whoami"
    tags = ["auth"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="The caller: principal id and type, tenant, roles and auth mode",
        opt={"role": "viewer"},
    )
    async def whoami(self, svc: ServicesDep, principal: PrincipalDep) -> WhoAmIRead:
        until = principal.valid_until
        return WhoAmIRead(
            principal_id=principal.id,
            principal_type=principal.type,
            tenant=principal.tenant,
            roles=[name for name in ROLES if name in principal.roles],
            auth_mode="strict" if svc.principals.strict else "loose",
            valid_until=None if until is None else datetime.fromtimestamp(until, UTC),
        )
