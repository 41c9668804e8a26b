"""Roles and ownership: the one guard of the /api/v1 router, and what OpenAPI says about them.

Every /api/v1 route declares, in its decorator, the role it needs: `opt={"role": "author"}` (see
ROLE_OPT), or `opt={"role": "public"}` for the webhook receiver, which its signatures authenticate.
`authorize` resolves the caller once (api.principals.authenticate), then refuses with
  401 a missing or invalid bearer token (strict mode), or no principal where DW_REQUIRE_PRINCIPAL
      asks for one (loose mode, the routes with the requires_principal opt);
  403 role_required: the caller's roles do not include the route's;
  403 not_owner (strict mode): an author changing a workflow (or its triggers), or a document
      template set (or its templates), created by someone else; admins change any.
`check_routes` makes the application refuse to start when an /api/v1 route declares no role, so a
new route cannot be left open by mistake."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.routes import HTTPRoute

from dataworkflows.errors import ConfigurationError, Forbidden, NotFound, WorkflowNotFound
from dataworkflows.tokens import KeysUnavailable

from .principals import PRINCIPAL_ID_HEADER, REALM, InvalidToken, Principal, authenticate
from .problems import PROBLEM_JSON, Unauthorized, problem
from .schemas import ProblemDetails
from .services import REQUIRES_PRINCIPAL, services_of

# The opt key a route's decorator sets to the role it needs.
ROLE_OPT = "role"
# The opt key that makes an author's change depend on owning what it changes: "workflow" (the path's
# workflow_id), "trigger" (the workflow of the path's trigger_id) or "template_set" (the path's
# set_id; POST /templates, whose set is in its body, checks it in its handler).
OWNER_OPT = "owner"
TEMPLATE_SET = "template_set"
PUBLIC = "public"
# The opt key of a second role a route needs as well: a trigger is a standing permission to run its
# workflow, so creating one or changing it needs the operator role besides the author role.
ALSO_OPT = "also"
ROLES = ("viewer", "operator", "author", "admin")
API_PREFIX = "/api/v1"


class RoleRequired(Forbidden):
    """The caller's roles do not allow this."""

    code = "role_required"


class NotOwner(Forbidden):
    """Only the workflow's (or the template set's) creator, or an admin, may change it."""

    code = "not_owner"


def required_roles(handler: BaseRouteHandler) -> str:
    """The roles a route needs, as the docs and refusals spell them: `author`, `author+operator`."""
    also = handler.opt.get(ALSO_OPT)
    needed = str(handler.opt.get(ROLE_OPT))
    return needed if also is None else f"{needed}+{also}"


def role(name: str, **more: Any) -> dict[str, Any]:
    """A route's opt: the role it needs (and anything else)."""
    return {ROLE_OPT: name, **more}


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The /api/v1 guard: authentication, the route's role, DW_REQUIRE_PRINCIPAL, ownership."""
    needed = handler.opt.get(ROLE_OPT)
    if needed == PUBLIC or _automatic_options(handler):
        return
    if needed not in ROLES:
        # check_routes refuses such an app at startup; this is the belt to its braces.
        raise RoleRequired(f"this route declares no role ({handler.handler_name}); nobody may call it")
    svc = services_of(connection.app.state)
    principal = await authenticate(connection, svc.principals)
    for required in (needed, handler.opt.get(ALSO_OPT)):
        if required is not None and not principal.has_role(required):
            held = ", ".join(sorted(principal.roles)) or "none"
            raise RoleRequired(
                f"this needs the {required_roles(handler)} role (the caller's roles: {held})", required_role=required
            )
    purpose = handler.opt.get(REQUIRES_PRINCIPAL)
    if purpose is not None and svc.settings.require_principal and principal.id is None:
        raise Unauthorized(f"this server requires a principal to {purpose} ({PRINCIPAL_ID_HEADER})")
    owned = handler.opt.get(OWNER_OPT)
    if owned is not None and svc.principals.strict and not principal.has_role("admin"):
        await _check_owner(connection, principal, owned)


def _automatic_options(handler: BaseRouteHandler) -> bool:
    """Litestar's own OPTIONS answer of a path (204 with its `Allow` methods, no data): open like
    the schema, not a route of ours without a role."""
    return (
        isinstance(handler, HTTPRouteHandler)
        and handler.http_methods == {"OPTIONS"}
        and handler.handler_name == "options_handler"
        and not handler.include_in_schema
    )


async def _check_owner(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal, owned: str) -> None:
    """Strict mode: an author changes only the workflows it created (created_by == sub). A workflow
    this server cannot see answers 404 here, as its handler would."""
    db = services_of(connection.app.state).db
    params = connection.path_params
    if owned == TEMPLATE_SET:
        if "set_id" in params:
            await check_template_set_owner(db, principal, str(params["set_id"]))
        return
    if owned == "trigger":
        try:
            trigger = await db.triggers.get(uuid.UUID(str(params["trigger_id"])))
        except ValueError:
            raise NotFound(f"trigger {params['trigger_id']!r} not found (not a UUID)") from None
        if trigger is None:
            raise NotFound(f"trigger {params['trigger_id']} not found")
        workflow_id = trigger.workflow_id
    else:
        workflow_id = str(params["workflow_id"])
    workflow = await db.workflows.get(workflow_id)
    if workflow is None:
        raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
    _require_creator(principal, workflow.created_by, f"workflow {workflow_id!r}", "it")


async def check_template_set_owner(db: Any, principal: Principal, set_id: str) -> None:
    """Strict mode, for an author who is not an admin: a document template set (its templates, their
    versions, the set itself) is changed only by the principal that created it, as a workflow is (a
    review: any author could rewrite another's invoice template, and every workflow that rendered
    it unpinned sent the new text). A set this server cannot see answers 404, as its handler would."""
    template_set = await db.document_templates.get_set(set_id)
    if template_set is None:
        raise NotFound(f"template set {set_id!r} not found")
    _require_creator(principal, template_set.created_by, f"template set {set_id!r}", "it or its templates")


def _require_creator(principal: Principal, created_by: str | None, what: str, changes: str) -> None:
    """NotOwner unless the principal created it (one whose creator is unknown: admins only)."""
    if created_by is None or created_by != principal.id:
        raise NotOwner(
            f"{what} was created by {created_by or 'an unknown principal'}; only its creator or an admin"
            f" may change {changes}",
            required_role="admin",
        )


async def authorize_metrics(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """/metrics is open unless DW_METRICS_REQUIRE_AUTH: then it needs the viewer role."""
    svc = services_of(connection.app.state)
    if not svc.settings.metrics_require_auth:
        return
    principal = await authenticate(connection, svc.principals)
    if not principal.has_role("viewer"):
        raise RoleRequired("/metrics needs the viewer role (DW_METRICS_REQUIRE_AUTH)", required_role="viewer")


# --- answers ---------------------------------------------------------------------------------------


def handle_invalid_token(request: Request[Any, Any, Any], exc: InvalidToken) -> Response[dict[str, Any]]:
    """401 with the RFC 6750 challenge."""
    response = problem(401, "Unauthorized", exc.message, code=exc.code, request=request)
    response.headers["WWW-Authenticate"] = exc.www_authenticate
    return response


def handle_forbidden_role(request: Request[Any, Any, Any], exc: RoleRequired | NotOwner) -> Response[dict[str, Any]]:
    """403 naming the role that would have been enough."""
    needed = getattr(exc, "required_role", None)
    response = problem(403, "Forbidden", exc.message, code=exc.code, request=request, requiredRole=needed)
    if services_of(request.app.state).principals.strict:
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}", error="insufficient_scope"'
    return response


def handle_keys_unavailable(request: Request[Any, Any, Any], exc: KeysUnavailable) -> Response[dict[str, Any]]:
    return problem(503, "Signing keys unavailable", exc.message, code=exc.code, request=request)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    InvalidToken: handle_invalid_token,
    RoleRequired: handle_forbidden_role,
    NotOwner: handle_forbidden_role,
    KeysUnavailable: handle_keys_unavailable,
}


# --- routes and OpenAPI ----------------------------------------------------------------------------


def api_handlers(app: Litestar) -> Iterable[tuple[str, str, HTTPRouteHandler]]:
    """(path, method, handler) of every /api/v1 route."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith(API_PREFIX):
            continue
        for method, (handler, _) in sorted(route.route_handler_map.items()):
            if method != "OPTIONS" and method != "HEAD":
                yield route.path, method, handler


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemDetails, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


_UNAUTHORIZED = _spec(
    "Strict mode: a missing or invalid bearer token (with WWW-Authenticate). Loose mode: no principal "
    "where DW_REQUIRE_PRINCIPAL requires one"
)


def check_routes(app: Litestar) -> None:
    """Refuses (ConfigurationError) an app with an /api/v1 route that declares no role, and writes
    each route's role into its OpenAPI operation: the description, an `x-required-role` extension,
    the bearer security requirement and the 401/403 answers."""
    undeclared = []
    for path, method, handler in api_handlers(app):
        needed = handler.opt.get(ROLE_OPT)
        if needed not in (*ROLES, PUBLIC):
            undeclared.append(f"{method} {path}")
            continue
        if handler.opt.get(ALSO_OPT) not in (None, *ROLES):
            undeclared.append(f"{method} {path} (also {handler.opt.get(ALSO_OPT)!r})")
            continue
        _document(handler, required_roles(handler) if needed != PUBLIC else PUBLIC)
    if undeclared:
        raise ConfigurationError(f"routes without a role (opt={{'role': ...}}): {', '.join(undeclared)}")


def _document(handler: HTTPRouteHandler, needed: str) -> None:
    if needed == PUBLIC:
        note = "Authentication: none (the webhook's signature authenticates a delivery; no bearer token)."
    else:
        note = (
            f"Required role: `{needed}` (strict mode; admin includes every role"
            f"{', and every role includes viewer' if needed == 'viewer' else ''})."
        )
        if handler.opt.get(OWNER_OPT):
            note += f" In strict mode an author may change only the {_owned(handler)} it created."
        forbidden = _spec(f"The caller lacks the {needed} role (role_required)" + _owner_note(handler))
        responses = dict(handler.responses or {})
        responses[401] = _UNAUTHORIZED
        if 403 in responses and responses[403].description:
            forbidden = _spec(f"{responses[403].description}; or the caller lacks the {needed} role (role_required)")
        responses[403] = forbidden
        handler.responses = responses
        handler.security = [{"bearerAuth": []}]
    handler.description = f"{handler.description}\n\n{note}" if handler.description else note
    handler.operation_class = _with_role(handler.operation_class, needed)


def _with_role(base: type[Operation], needed: str) -> type[Operation]:
    """The handler's operation class, answering `x-required-role` in its OpenAPI object too."""

    def to_schema(self: Operation) -> dict[str, Any]:
        schema = base.to_schema(self)
        schema["x-required-role"] = needed
        return schema

    return type(f"{base.__name__}WithRole", (base,), {"to_schema": to_schema})


def _owned(handler: HTTPRouteHandler) -> str:
    return "document template sets" if handler.opt.get(OWNER_OPT) == TEMPLATE_SET else "workflows"


def _owner_note(handler: HTTPRouteHandler) -> str:
    if not handler.opt.get(OWNER_OPT):
        return ""
    owned = "template set" if handler.opt.get(OWNER_OPT) == TEMPLATE_SET else "workflow"
    return f", or (strict mode) it does not own the {owned} (not_owner)"
