"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dataworkflows import __version__, traces
from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database, make_pool
from dataworkflows.deadlines import overdue_loop
from dataworkflows.errors import ConfigurationError, DataWorkflowsError
from dataworkflows.event_stream import EventHub
from dataworkflows.metrics import HTTP_DURATION, HTTP_REQUESTS
from dataworkflows.rate_limits import BucketPolicy
from dataworkflows.template_pool import TemplatePool
from dataworkflows.tenancy import enter_tenant, no_tenant

from .answer_newline import end_json_with_newline
from .approvals import ApprovalController
from .audit import AuditLogController
from .auth import EXCEPTION_HANDLERS as AUTH_EXCEPTION_HANDLERS
from .auth import authorize, authorize_metrics, check_routes
from .bulk import BulkController
from .connectors import CatalogController, ConnectionController, ResourceLinkController
from .console import console_router
from .cross_site import refuse_cross_site
from .dead_letters import DeadLetterController
from .document_templates import DocumentTemplateController, TemplateSetController
from .documents import DocumentController
from .events import EventController
from .executions import ExecutionController
from .head_requests import MARK as HEAD_AS_GET
from .head_requests import HeadAsGet
from .hooks import HooksController
from .openapi_docs import PROBLEMS, document_operations, openapi_config
from .params import note_query_names, refuse_coerced_body, refuse_impossible_ids, refuse_nul_query_values
from .principals import PRINCIPAL_HEADERS, build_resolver, principal_for_logs
from .problems import PROBLEM_JSON, ClientDisconnected, _loggable, exception_handlers, loggable_path, problem
from .rate_limits import rate_limit_middleware
from .schemas import HealthRead, ProblemDetails
from .security_headers import add_security_headers
from .services import DEPENDENCIES, DatabaseDep, Services, services_of
from .signals import SignalController
from .stream_slots import StreamSlots
from .triggers import TriggerController, WorkflowTriggerController
from .waits import WaitController
from .whoami import WhoAmIController
from .workers import WorkerController
from .workflow_templates import WorkflowTemplateController
from .workflows import WorkflowController


@get("/health/live", tags=["health"], summary="The process is up")
async def live() -> HealthRead:
    return HealthRead(status="ok")


@get(
    "/health/ready",
    tags=["health"],
    summary="The database answers",
    # The handler answers a Response (ready or not): both bodies are declared here.
    responses={
        200: ResponseSpec(
            data_container=HealthRead, description='Ready: {"status": "ok", "database": "ok"}', generate_examples=False
        ),
        503: PROBLEMS[503],
    },
)
async def ready(request: Request[Any, Any, Any], db: DatabaseDep) -> Response[Any]:
    try:
        await db.ping()
    except DataWorkflowsError as exc:
        return problem(503, "Not ready", exc.message, code="database_unavailable", request=request)
    return Response(HealthRead(status="ok", database="ok"), media_type=MediaType.JSON)


METRICS_UNAUTHORIZED = ResponseSpec(
    data_container=ProblemDetails,
    description="DW_METRICS_REQUIRE_AUTH: no caller (strict mode: a missing or invalid token, with WWW-Authenticate)",
    media_type=PROBLEM_JSON,
    generate_examples=False,
)
METRICS_FORBIDDEN = ResponseSpec(
    data_container=ProblemDetails,
    description="DW_METRICS_REQUIRE_AUTH: the caller lacks the viewer role (role_required)",
    media_type=PROBLEM_JSON,
    generate_examples=False,
)

# Prometheus's text format without its charset: Litestar adds "; charset=utf-8" to a text/ type
# itself (given here too, it was sent twice).
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics (the viewer role with DW_METRICS_REQUIRE_AUTH)",
    media_type=METRICS_MEDIA_TYPE,
    guards=[authorize_metrics],
    # Only with DW_METRICS_REQUIRE_AUTH (api/auth.py, authorize_metrics).
    responses={401: METRICS_UNAUTHORIZED, 403: METRICS_FORBIDDEN},
)
async def metrics() -> bytes:
    return generate_latest()


def metrics_middleware(app: ASGIApp, *, access_log: bool = False) -> ASGIApp:
    """Counts and times every routed request by its route template (not its raw path), and with
    `access_log` (DW_API_ACCESS_LOG) writes its line (log_request).

    A client that hangs up before its answer is counted apart from server errors: Litestar would
    turn the http.disconnect met while reading the body into a 500 (InternalServerException), so
    the disconnect is raised here, as ClientDisconnected, before Litestar sees it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def receive_wrapper() -> ReceiveMessage:
            message = await receive()
            # After the response has started, a disconnect is how a stream (SSE) learns that its
            # reader left: that is the stream's normal end, not a failed request.
            if message["type"] == "http.disconnect" and not response_started:
                raise ClientDisconnected("the client closed the connection while sending its request")
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            # No request starts in, or leaves behind, another request's tenant (dataworkflows.tenancy).
            with no_tenant():
                await app(scope, receive_wrapper, send_wrapper)
        finally:
            route = scope.get("path_template") or "unmatched"
            method = _request_method(scope)
            seconds = time.perf_counter() - started
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(seconds)
            if access_log:
                log_request(scope, status, seconds)

    return middleware


# Routes a load balancer or Prometheus probes every few seconds: their answers below 400 are logged
# at debug, not info, so that the access log is about the API's callers.
_PROBED_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics"})
access_logger = structlog.get_logger("dataworkflows.api.access")


def log_request(scope: Scope, status: int, seconds: float | None) -> None:
    """The access log's line for one answered request: its method, route template, path, status (499
    when the client hung up first) and milliseconds, with what bind_request_context bound (request
    id, caller, tenant, correlation id). A request refused before that hook ran (an unknown path, a
    missing token) names the X-Request-Id it sent, if any. The health checks' and /metrics' answers
    below 400 are debug lines."""
    route = scope.get("path_template") or "unmatched"
    fields: dict[str, Any] = {"method": _method_label(_request_method(scope)), "route": route, "status": status}
    if seconds is not None:
        fields["duration_ms"] = round(seconds * 1000, 1)
    bound = structlog.contextvars.get_contextvars()
    if "path" not in bound:
        fields["path"] = loggable_path(str(scope.get("path", "")))
    if "request_id" not in bound:
        sent = dict(scope.get("headers", ())).get(b"x-request-id")
        if sent:
            fields["request_id"] = _loggable(sent.decode("latin-1"), 100)
    if route in _PROBED_ROUTES and status < 400:
        access_logger.debug("request", **fields)
    else:
        access_logger.info("request", **fields)


def count_unrouted(exc: Exception, scope: Scope) -> None:
    """Counts what the router refused before any route's middleware ran: a path no route has (404)
    and a method the path's route does not take (405), as route "unmatched". metrics_middleware runs
    only for a matched route, so scanners and clients with a wrong path were counted nowhere."""
    if scope.get("type") != ScopeType.HTTP or scope.get("path_template"):
        return
    if isinstance(exc, NotFoundException | MethodNotAllowedException):
        HTTP_REQUESTS.labels(_method_label(_request_method(scope)), "unmatched", str(exc.status_code)).inc()
        # No middleware runs for these either: the access log's line is written here (no duration:
        # the router answered at once).
        services = scope["app"].state.get("services")
        if isinstance(services, Services) and services.settings.api_access_log:
            log_request(scope, exc.status_code, None)


# A label for any method, without one series per garbage method a client invents.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _request_method(scope: Scope) -> str:
    """The method the client sent: a HEAD that goes through its GET route (api/head_requests.py)
    is counted as HEAD."""
    return "HEAD" if scope.get(HEAD_AS_GET) else str(scope.get("method", "GET"))


def _method_label(method: str) -> str:
    return method if method in _METHODS else "other"


async def bind_request_context(request: Request[Any, Any, Any]) -> None:
    """Every log line about this request names it, its caller and its correlation id."""
    structlog.contextvars.clear_contextvars()
    # On /api/v1 the guard (or the rate limiter before it) has resolved the caller already, and
    # entered its tenant (guards run before this hook); on other routes this does.
    principal = await principal_for_logs(request, services_of(request.app.state).principals)
    # Every database call this request makes works in the caller's tenant (row-level security).
    enter_tenant(principal.tenant)
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    request.state.request_id = _loggable(request_id, 100)
    structlog.contextvars.bind_contextvars(
        request_id=request.state.request_id,
        principal=principal.id,
        correlation_id=_loggable(request.headers.get("X-Correlation-Id"), 200),
        # Escaped, as log_request writes a path no route took (a review: a path's %1b reached the console
        # log as a raw escape sequence, a title or a cleared screen for whoever tails it).
        path=loggable_path(request.url.path),
        tenant=principal.tenant,
    )


def end_live_streams(app: Litestar) -> None:
    """The process is stopping: live event streams end now, instead of holding the server open
    until their runs end (their clients reconnect with Last-Event-ID to the next server)."""
    services = app.state.get("services")
    if isinstance(services, Services):
        services.events.end_streams()


def create_app(settings: Settings) -> Litestar:
    settings.validate()  # before any pool or helper process opens
    if not settings.database_url:
        raise ConfigurationError("DATABASE_URL is not set")
    traces.start()  # OTLP traces when an endpoint is configured (README "Traces")
    rate_policy = BucketPolicy.from_settings(settings.api_rate_per_minute, settings.api_rate_burst)
    # Here, not in the lifespan: an installed package's action that cannot be loaded (ConfigurationError)
    # stops the command with one line, before the pool opens (in the lifespan, after it, the API
    # logged its startup failure and then hung for good, deaf to SIGTERM: a review).
    registry = default_registry()
    pool = make_pool(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        name="api",
        timeout=settings.db_timeout_seconds,
        role=settings.database_role,
        default_workflow_timeout=settings.default_workflow_timeout_seconds,
        idle_in_transaction_seconds=settings.idle_in_transaction_seconds,
        statement_timeout_seconds=settings.statement_timeout_seconds,
    )
    conditions = ConditionPool(size=2)
    templates = TemplatePool(
        size=2, timeout_seconds=settings.template_timeout_seconds, max_steps=settings.template_max_steps
    )
    events = EventHub(settings.database_url, role=settings.database_role)
    # Strict mode that could not verify a token refuses to start here (ConfigurationError).
    principals = build_resolver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # wait=False: the API starts (and /health/live answers) even while the database is
        # down; requests get 503 until it is back.
        await pool.open(wait=False)
        app.state.services = Services(
            db=Database(pool),
            settings=settings,
            registry=registry,
            conditions=conditions,
            principals=principals,
            events=events,
            templates=templates,
            rate_policy=rate_policy,
            streams=StreamSlots(settings.max_streams_per_caller),
        )
        # Runs past their deadline that no worker holds end also while no worker runs.
        overdue = asyncio.create_task(
            overdue_loop(app.state.services.db, settings.recovery_interval_seconds), name="overdue-runs"
        )
        try:
            yield
        finally:
            overdue.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await overdue
            await events.close()
            await templates.close()
            await conditions.close()
            await pool.close()
            await asyncio.to_thread(traces.flush)

    api_v1 = Router(
        path="/api/v1",
        route_handlers=[
            WorkflowController,
            WorkflowTemplateController,
            TemplateSetController,
            DocumentTemplateController,
            DocumentController,
            ExecutionController,
            ApprovalController,
            WaitController,
            SignalController,
            EventController,
            DeadLetterController,
            BulkController,
            AuditLogController,
            CatalogController,
            ConnectionController,
            ResourceLinkController,
            WorkflowTriggerController,
            TriggerController,
            HooksController,
            WorkerController,
            WhoAmIController,
        ],
        parameters=PRINCIPAL_HEADERS,
        guards=[authorize, refuse_coerced_body],
        middleware=[rate_limit_middleware],
    )
    # HEAD through the GET routes (api/head_requests.py).
    app = HeadAsGet(
        route_handlers=[live, ready, metrics, api_v1, console_router],
        dependencies=DEPENDENCIES,
        middleware=[functools.partial(metrics_middleware, access_log=settings.api_access_log)],
        before_send=[end_json_with_newline, add_security_headers],
        lifespan=[lifespan],
        exception_handlers={**exception_handlers, **AUTH_EXCEPTION_HANDLERS},
        before_request=bind_request_context,
        after_exception=[count_unrouted],
        # The cross-site checks first: before the caller is resolved (api/cross_site.py).
        guards=[refuse_cross_site, refuse_impossible_ids, refuse_nul_query_values],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(__version__),
        debug=False,
        # Logging is structlog's (dataworkflows.logs); Litestar's default config would take over
        # the root logger.
        logging_config=None,
    )
    # Every /api/v1 route declares its role (or the app refuses to start); OpenAPI documents it.
    check_routes(app)
    # Readable operation ids, examples and the workflow definition's schema (api/openapi_docs.py).
    document_operations(app)
    # Each /api/v1 route refuses a query parameter it does not document (api/params.py).
    note_query_names(app)
    return app
