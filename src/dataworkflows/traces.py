"""OpenTelemetry traces (README "Traces"): a span for each execute request, each time a worker holds
an execution, and each node attempt, in one trace with the caller's.

The W3C trace context (traceparent, tracestate) comes in with the execute request and is stored on
the execution (dw.executions.trace_context, migration 0030); the worker that holds the run, on any
host and after any park, starts the execution's span as a child of that context, each attempt's
span as a child of the execution's, and http.request sends the attempt's context on (a traceparent
header, unless the workflow set one). Children (subworkflows, forEach items) inherit their
parent's stored context, in the database.

Tracing is on when an OTLP endpoint is configured with the standard variables
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none turn it off): spans then go over OTLP/HTTP (protobuf) in batches, from a
background thread. Off, every helper here is one test of a module global and the SDK is not even
imported; the only work left is storing an incoming traceparent with the execution (a header
lookup), so that a traced worker can still continue the caller's trace.

Span attributes name things, never values: ids, versions, node ids, action types, attempt numbers,
statuses and error codes. No trigger value, parameter, output, header or error message goes into a
span (messages can quote inputs and, before scrubbing, secrets).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import structlog
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dataworkflows.errors import ConfigurationError, DataWorkflowsError

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from dataworkflows.db import Database

T = TypeVar("T")

SCOPE = "dataworkflows"
DEFAULT_SERVICE_NAME = "dataworkflows"
# The headers of the W3C Trace Context, and nothing else (no baggage: it would carry whatever
# callers put in it to every downstream service).
_PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")
EXECUTE_ROUTE = "/api/v1/workflows/{workflow_id}/execute"

# None: tracing is off. Set by start() (OTLP) or use() (tests, benchmarks).
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_lock = threading.Lock()
_log = structlog.get_logger("dataworkflows.traces")


def requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, and the SDK not turned off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    endpoints = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
    return any(endpoint.strip() for endpoint in endpoints)


def start(env: Mapping[str, str] = os.environ) -> bool:
    """Turns tracing on when the environment asks for it (see requested); returns whether it is on.
    Idempotent: `up` runs the API and a worker in one process, which share one exporter. The
    exporter reads the standard variables itself (endpoint, headers, timeout, compression,
    certificates); the resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name
    defaults to "dataworkflows"); the sampler reads OTEL_TRACES_SAMPLER (default: parent-based,
    always on). The provider flushes its last batch at interpreter exit."""
    if not requested(env):
        return enabled()
    with _lock:
        if _provider is not None:
            return True
        # Imported here: a process that does not trace never loads the SDK or the exporter.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # Not the SDK's own shutdown at exit, which waits for every queued batch (each up to
        # OTEL_EXPORTER_OTLP_TIMEOUT, 10 s) on a collector that does not answer: a bounded one.
        try:
            processor = BatchSpanProcessor(OTLPSpanExporter())
        except ValueError as exc:
            # An OTEL_BSP_* or exporter value the SDK refuses (OTEL_BSP_MAX_QUEUE_SIZE=-5) stopped the
            # worker and the API with its traceback, exit 1 (a review): a bad setting, said as one.
            raise ConfigurationError(f"the OpenTelemetry settings (OTEL_* variables) cannot be used: {exc}") from None
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        _use_locked(provider)
        atexit.register(_shutdown_at_exit, provider)
    return True


def _shutdown_at_exit(provider: TracerProvider) -> None:
    """The provider's shutdown at exit, bounded, unless stop() shut it down already."""
    if _provider is provider:
        _bounded(provider.shutdown, EXIT_SECONDS)


# How long the spans still buffered may hold a process that exits.
EXIT_SECONDS = 2.0


def _bounded(call: Callable[[], object], seconds: float) -> None:
    """`call` in a daemon thread, waited for at most `seconds`: the SDK's force_flush ignores its
    timeout (it sends every queued batch, each up to the exporter's timeout), and a collector that
    stalls made a SIGTERM of `up` a forced stop, exit 130 (a review). What is not sent by then is
    dropped with the process."""
    thread = threading.Thread(target=call, name="dw-trace-flush", daemon=True)
    thread.start()
    thread.join(seconds)


def use(provider: TracerProvider | None) -> None:
    """Sends spans to `provider` from now on (tests: an in-memory exporter); None turns tracing off.
    The global OpenTelemetry provider is left alone: the engine's spans go to its own."""
    with _lock:
        _use_locked(provider)


def _use_locked(provider: TracerProvider | None) -> None:
    global _tracer, _provider
    from dataworkflows import __version__

    _provider = provider
    _tracer = None if provider is None else provider.get_tracer(SCOPE, __version__)


def stop() -> None:
    """Sends what is buffered and turns tracing off (tests; the provider also stops at exit)."""
    with _lock:
        provider = _provider
        _use_locked(None)
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def flush(timeout_millis: int = 2000) -> None:
    """Sends the spans still buffered (a process that stops), waiting at most `timeout_millis`."""
    provider = _provider
    if provider is not None:
        _bounded(lambda: provider.force_flush(timeout_millis), timeout_millis / 1000)


# --- the execute request (API) ---------------------------------------------------------------------


def request_carrier(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's trace headers (a plain dict: what the propagator reads)."""
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}


def trace_context_to_store(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context to keep with an execution the request starts: the request span's when
    tracing is on (so the worker's spans hang under it), else the caller's own, checked (an
    invalid traceparent is dropped, as the W3C propagator drops it). None: there is none."""
    if _tracer is not None:
        context = None
    elif "traceparent" in headers:
        context = _PROPAGATOR.extract(request_carrier(headers))
    else:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier or None


def annotate_start(execution_id: UUID, created: bool) -> None:
    """The execute request's span says which execution it started (or found)."""
    if _tracer is None:
        return
    span = get_current_span()
    span.set_attribute("dw.execution.id", str(execution_id))
    span.set_attribute("dw.execution.created", created)


def request_middleware(app: ASGIApp) -> ASGIApp:
    """The execute route's span (SpanKind.SERVER, a child of the request's traceparent): method,
    route, workflow id and response status; ERROR for a 5xx or an exception (its type only)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _tracer
        if tracer is None:  # the route is HTTP only
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        parent = _PROPAGATOR.extract(request_carrier(headers))
        method = str(scope.get("method", "POST"))
        attributes: dict[str, Any] = {"http.request.method": method, "http.route": EXECUTE_ROUTE}
        workflow_id = (scope.get("path_params") or {}).get("workflow_id")
        if isinstance(workflow_id, str):
            attributes["dw.workflow.id"] = workflow_id
        with tracer.start_as_current_span(
            f"{method} {EXECUTE_ROUTE}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
                await send(message)

            try:
                await app(scope, receive, traced_send)
            except Exception as exc:
                _failed(span, type(exc).__name__)
                raise

    return middleware


# --- the worker ------------------------------------------------------------------------------------

_FAILED_OUTCOMES = frozenset({"Failed", "TimedOut"})


async def execution(
    db: Database, execution_id: UUID, workflow_id: str, version: int, worker_id: str, run: Callable[[], Awaitable[str]]
) -> str:
    """Runs `run` (one hold of the execution's lease) inside the execution's span, whose parent is
    the stored trace context; returns what `run` returned (how the hold ended)."""
    tracer = _tracer
    if tracer is None:
        return await run()
    stored = await _stored_context(db, execution_id)
    parent = _PROPAGATOR.extract(stored or {})
    attributes: dict[str, Any] = {
        "dw.execution.id": str(execution_id),
        "dw.workflow.id": workflow_id,
        "dw.workflow.version": version,
        "dw.worker.id": worker_id,
    }
    with tracer.start_as_current_span(
        f"execution {workflow_id}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if stored is None:
            await _keep_context(db, execution_id)
        try:
            ended = await run()
        except Exception as exc:
            _failed(span, type(exc).__name__)
            raise
        span.set_attribute("dw.execution.outcome", ended)
        if ended in _FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, ended))
        return ended


async def _keep_context(db: Database, execution_id: UUID) -> None:
    """A run without a stored context (a webhook's, a schedule's, an API's that did not trace) keeps
    this hold's, before its nodes run: its later holds and the children it starts (which inherit
    their parent's, migration 0030) join this trace. Each hold and each child was a trace of its own
    (a review: a webhook's forEach of 100 children made 101 traces)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if not carrier:
        return
    try:
        await db.executions.keep_trace_context(execution_id, carrier)
    except DataWorkflowsError as exc:
        _log.warning("could not keep the execution's trace context", execution_id=str(execution_id), error=str(exc))


async def _stored_context(db: Database, execution_id: UUID) -> dict[str, str] | None:
    """The execution's stored trace context; None when it has none or it cannot be read now (a
    trace that starts at the worker is better than a run that does not start: the run's own first
    write meets the same database and decides)."""
    try:
        return await db.executions.trace_context(execution_id)
    except DataWorkflowsError as exc:
        _log.warning("could not read the execution's trace context", execution_id=str(execution_id), error=str(exc))
        return None


async def attempt(node_id: str, action_type: str, number: int, work: Coroutine[Any, Any, T]) -> T:
    """Awaits one node attempt (the node kind's `attempt`) inside its span, a child of the
    execution's; the span says how it ended: the attempt's status and error code, or that the node
    waits, started a child or paused."""
    tracer = _tracer
    if tracer is None:
        return await work
    attributes: dict[str, Any] = {"dw.node.id": node_id, "dw.action.type": action_type, "dw.attempt": number}
    with tracer.start_as_current_span(
        f"node {node_id}", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            outcome = await work
        except Exception as exc:
            _failed(span, type(exc).__name__)
            raise
        _attempt_outcome(span, outcome)
        return outcome


_WAITING_OUTCOMES = {"WaitFor": "waiting", "StartChild": "child_started", "Paused": "paused"}


def _attempt_outcome(span: Span, outcome: Any) -> None:
    result = getattr(outcome, "result", None)
    if result is None:
        span.set_attribute("dw.attempt.status", _WAITING_OUTCOMES.get(type(outcome).__name__, "other"))
        return
    status = getattr(result.status, "value", str(result.status))
    span.set_attribute("dw.attempt.status", status)
    if result.error is not None:
        _failed(span, str(result.error.code))


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def inject(headers: dict[str, str]) -> None:
    """Adds the current span's traceparent (and tracestate) to outgoing headers, unless they name
    one already (any case): a workflow that sets its own traceparent keeps it."""
    if _tracer is None:
        return
    if any(name.lower() == "traceparent" for name in headers):
        return
    _PROPAGATOR.inject(headers)
