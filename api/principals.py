"""Who is calling, in which tenant, with which roles (DW_AUTH_MODE).

loose (the default, for local use): the caller names itself with X-Principal-Id / X-Principal-Type,
its tenant with X-Tenant-Id (default "default"), and holds every role.
strict: `Authorization: Bearer <JWT>`, verified by dataworkflows.tokens; the principal is the
token's `sub`, the tenant and roles come from its claims, and the loose headers are ignored.

A request's principal is resolved once, by `authenticate`, which keeps it (or the reason it could not
be resolved) on the request's state: the /api/v1 guard, the `principal` dependency and the request's
log context all read that one result."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException
from litestar.params import HeaderParameter
from litestar.types import ParametersMap

from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from dataworkflows.tenancy import DEFAULT_TENANT, enter_tenant
from dataworkflows.tokens import MAX_SUBJECT, ROLES, TokenRejected, TokenVerifier, valid_tenant
from dataworkflows.validation import header_text

from .problems import Unauthorized

PRINCIPAL_ID_HEADER = "X-Principal-Id"
PRINCIPAL_TYPE_HEADER = "X-Principal-Type"
TENANT_HEADER = "X-Tenant-Id"
# As long as a token's sub may be (strict mode), and the approvals ?principal= filter.
MAX_PRINCIPAL_ID = MAX_SUBJECT
MAX_PRINCIPAL_TYPE = 50
ALL_ROLES = frozenset(ROLES)
# Which roles each role includes: every role may read; admin may do everything. Operator (running
# things) and author (changing definitions) are independent: grant both to do both.
INCLUDES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"operator", "viewer"}),
    "author": frozenset({"author", "viewer"}),
    "admin": ALL_ROLES,
}
REALM = "dataworkflows"


@dataclass(frozen=True)
class Principal:
    id: str | None
    type: str | None = None
    tenant: str = DEFAULT_TENANT
    roles: frozenset[str] = ALL_ROLES
    # Strict mode: until when the token is accepted (epoch seconds). An event stream it opened ends then.
    valid_until: float | None = None

    def has_role(self, role: str) -> bool:
        """Whether one of the principal's roles includes `role`."""
        return any(role in INCLUDES.get(held, frozenset()) for held in self.roles)


# Strict mode, before (or without) a verified token: nobody, holding nothing.
ANONYMOUS = Principal(None, None, DEFAULT_TENANT, frozenset())


class InvalidToken(Unauthorized):
    """A missing or invalid bearer token (strict mode): answered 401 with WWW-Authenticate."""

    code = "invalid_token"

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        # RFC 6750 §3.1: a request without credentials gets no error code.
        self.missing = missing

    @property
    def www_authenticate(self) -> str:
        if self.missing:
            return f'Bearer realm="{REALM}"'
        # The reason may quote the token (an algorithm, a key id, a `crit` entry): only printable
        # ASCII without quotes or backslashes reaches the header, and not much of it.
        detail = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in self.message)[:200]
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{detail}"'


class PrincipalResolver(Protocol):
    strict: bool

    async def resolve(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        """The caller; raises InvalidToken (401) or a 400 when the request's credentials are bad."""
        ...


class HeaderPrincipalResolver:
    """Loose mode: the caller names itself, and holds every role."""

    strict = False

    async def resolve(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        for name in (PRINCIPAL_ID_HEADER, PRINCIPAL_TYPE_HEADER, TENANT_HEADER):
            # The first of two was taken without a word: behind a proxy that adds its own, the
            # client's copy would have won.
            if len(connection.headers.getall(name, [])) > 1:
                raise ClientException(f"give the header {name} once")
        principal_id = _header(connection, PRINCIPAL_ID_HEADER, MAX_PRINCIPAL_ID)
        principal_type = _header(connection, PRINCIPAL_TYPE_HEADER, MAX_PRINCIPAL_TYPE)
        tenant = (connection.headers.get(TENANT_HEADER) or "").strip() or DEFAULT_TENANT
        if not valid_tenant(tenant):
            raise ClientException(
                f"{TENANT_HEADER} must be 1-100 letters, digits, '_', '.' or '-', the first a letter or digit"
            )
        return Principal(principal_id, principal_type or ("user" if principal_id else None), tenant, ALL_ROLES)


def _header(connection: ASGIConnection[Any, Any, Any, Any], name: str, most: int) -> str | None:
    """A principal header's value as the client wrote it (None when absent or blank). One that is
    not UTF-8, too long or holds a control character is refused (400), never cut: the caller would
    be recorded as someone else."""
    value = connection.headers.get(name)
    if value is None:
        return None
    return header_text(name, value, most, strip=True) or None


class BearerPrincipalResolver:
    """Strict mode: a verified JWT, and nothing else."""

    strict = True

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    async def resolve(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        # Two are refused (RFC 6750 3.1: a repeated parameter is a 400, invalid_request), as the
        # loose mode's headers are: the first was taken, so behind a proxy that adds its own, the
        # client's copy could win.
        if len(connection.headers.getall("authorization", [])) > 1:
            raise ClientException("give the Authorization header once")
        header = connection.headers.get("authorization") or ""
        scheme, _, token = header.strip().partition(" ")
        if not header.strip():
            raise InvalidToken("this server requires a bearer token (Authorization: Bearer <JWT>)", missing=True)
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be 'Bearer <JWT>'")
        try:
            claims = await self.verifier.verify(token.strip())
        except TokenRejected as exc:
            raise InvalidToken(exc.message) from None
        return Principal(claims.subject, "user", claims.tenant, claims.roles, claims.valid_until)


def build_resolver(settings: Settings) -> PrincipalResolver:
    """The resolver DW_AUTH_MODE asks for; a strict mode that could not verify tokens refuses to
    start (ConfigurationError)."""
    mode = settings.auth_mode.strip().lower()
    if mode == "loose":
        return HeaderPrincipalResolver()
    if mode == "strict":
        return BearerPrincipalResolver(TokenVerifier.from_settings(settings))
    raise ConfigurationError(f"DW_AUTH_MODE must be loose or strict, not {settings.auth_mode!r}")


_PRINCIPAL = "principal"
_FAILURE = "auth_failure"


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], resolver: PrincipalResolver) -> Principal:
    """The request's principal, resolved (and a token verified) once per request: the result, or the
    exception that refused it, is kept on the request's state and given again to later callers."""
    state = connection.scope.setdefault("state", {})
    found = state.get(_PRINCIPAL)
    if isinstance(found, Principal):
        return found
    failure = state.get(_FAILURE)
    if isinstance(failure, Exception):
        raise failure
    try:
        principal = await resolver.resolve(connection)
    except Exception as exc:
        state[_FAILURE] = exc
        raise
    state[_PRINCIPAL] = principal
    # From here on (the guard's ownership check included: Litestar runs guards before the
    # before_request hook), the request's database work is the caller's tenant's.
    enter_tenant(principal.tenant)
    return principal


async def principal_for_logs(connection: ASGIConnection[Any, Any, Any, Any], resolver: PrincipalResolver) -> Principal:
    """The principal to name in the request's log lines, never raising: the one the guard resolved;
    for a route without the auth guard (health, hooks), the loose headers in loose mode, ANONYMOUS
    in strict mode (no token is verified for a public route)."""
    found = connection.scope.get("state", {}).get(_PRINCIPAL)
    if isinstance(found, Principal):
        return found
    if not resolver.strict:
        with contextlib.suppress(Exception):
            return await authenticate(connection, resolver)
    return ANONYMOUS


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
        description="The caller's tenant (loose auth mode; default 'default'). Strict mode reads it from the token.",
    ),
}
