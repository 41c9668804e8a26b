"""Who is calling. Loose mode trusts X-Principal-Id / X-Principal-Type headers (local use); a
strict JWT resolver plugs in behind the same interface later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.params import HeaderParameter
from litestar.types import ParametersMap

from dataworkflows.errors import InvalidInput
from dataworkflows.tenancy import DEFAULT_TENANT, is_valid_tenant

PRINCIPAL_ID_HEADER = "X-Principal-Id"
PRINCIPAL_TYPE_HEADER = "X-Principal-Type"
TENANT_HEADER = "X-Tenant-Id"
ALL_ROLES = frozenset({"viewer", "operator", "author", "admin"})


@dataclass(frozen=True)
class Principal:
    id: str | None
    type: str | None = None
    tenant: str = DEFAULT_TENANT
    roles: frozenset[str] = ALL_ROLES


class PrincipalResolver(Protocol):
    def resolve(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal: ...


class HeaderPrincipalResolver:
    """Loose mode: the caller names itself."""

    def resolve(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        principal_id = (connection.headers.get(PRINCIPAL_ID_HEADER) or "").strip() or None
        principal_type = (connection.headers.get(PRINCIPAL_TYPE_HEADER) or "").strip() or None
        if principal_id is not None:
            principal_id = principal_id[:200]
        if principal_type is not None:
            principal_type = principal_type[:50]
        tenant = (connection.headers.get(TENANT_HEADER) or "").strip() or DEFAULT_TENANT
        if not is_valid_tenant(tenant):
            raise InvalidInput(
                f"{TENANT_HEADER} must be 1 to 100 letters, digits, '_', '.' or '-', starting alphanumeric"
            )
        return Principal(principal_id, principal_type or ("user" if principal_id else None), tenant)


# Declared once, on the /api/v1 router, so that OpenAPI documents them on every route there: each one
# binds the caller into its log lines, and those that change something record who did. Handlers
# never read them; they take the resolved `principal` dependency.
PRINCIPAL_HEADERS: ParametersMap = {
    "principal_id_header": HeaderParameter(
        name=PRINCIPAL_ID_HEADER, annotation=str, required=False, description="Who is calling (loose auth mode)."
    ),
    "principal_type_header": HeaderParameter(
        name=PRINCIPAL_TYPE_HEADER, annotation=str, required=False, description="Kind of caller: user, service, ..."
    ),
    "tenant_header": HeaderParameter(
        name=TENANT_HEADER,
        annotation=str,
        required=False,
        description="The caller's tenant (loose auth mode; default: default).",
    ),
}
