"""Who is calling. Loose mode trusts X-Principal-Id / X-Principal-Type headers (local use); a
strict JWT resolver plugs in behind the same interface later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from litestar import Request
from litestar.params import HeaderParameter

PRINCIPAL_ID_HEADER = "X-Principal-Id"
PRINCIPAL_TYPE_HEADER = "X-Principal-Type"


@dataclass(frozen=True)
class Principal:
    id: str | None
    type: str | None = None


class PrincipalResolver(Protocol):
    def resolve(self, request: Request[Any, Any, Any]) -> Principal: ...


class HeaderPrincipalResolver:
    """Loose mode: the caller names itself."""

    def resolve(self, request: Request[Any, Any, Any]) -> Principal:
        principal_id = (request.headers.get(PRINCIPAL_ID_HEADER) or "").strip() or None
        principal_type = (request.headers.get(PRINCIPAL_TYPE_HEADER) or "").strip() or None
        if principal_id is not None:
            principal_id = principal_id[:200]
        if principal_type is not None:
            principal_type = principal_type[:50]
        return Principal(principal_id, principal_type or ("user" if principal_id else None))


# Documented in OpenAPI on every route that records who acted.
principal_id_param = HeaderParameter(
    name=PRINCIPAL_ID_HEADER, required=False, description="Who is calling (loose auth mode)."
)
principal_type_param = HeaderParameter(
    name=PRINCIPAL_TYPE_HEADER, required=False, description="Kind of caller: user, service, ..."
)
