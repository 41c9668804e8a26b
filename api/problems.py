"""RFC 9457 problem details. HTTP status codes are chosen here, and only here."""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.enums import ParamType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import ParameterKwarg
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from dataworkflows import errors
from dataworkflows.conditions import ConditionUnavailable
from dataworkflows.templating import TemplateRenderError, TemplateUnavailable
from dataworkflows.validation import sent_text

from .params import BadQueryValue, quoted

log = structlog.get_logger("dataworkflows.api")

PROBLEM_JSON = "application/problem+json"


class CrossSiteRequest(errors.Forbidden):
    """A write a page of another origin made through a browser (api/cross_site.py)."""

    code = "cross_site_request"


class HostNotAllowed(errors.Forbidden):
    """A request for a host name DW_API_ALLOWED_HOSTS does not list (api/cross_site.py)."""

    code = "host_not_allowed"


class UnsupportedMediaType(errors.DataWorkflowsError):
    """A body that is not JSON where JSON is read (api/cross_site.py)."""

    code = "unsupported_media_type"


_STATUS: list[tuple[type[errors.DataWorkflowsError], int, str]] = [
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (BadQueryValue, 400, "Bad request"),
    (errors.HeaderRefused, 400, "Bad request"),
    (errors.InvalidTriggerConfig, 422, "Invalid trigger config"),
    (errors.DefinitionError, 422, "Invalid workflow definition"),
    (errors.InvalidInput, 422, "Invalid input"),
    (errors.Forbidden, 403, "Forbidden"),
    (errors.NotFound, 404, "Not found"),
    (errors.Conflict, 409, "Conflict"),
    (errors.DatabaseUnavailable, 503, "Database unavailable"),
    (TemplateUnavailable, 503, "Template helpers unavailable"),
    # No condition helper could be started to check a trigger's or a workflow's condition: the
    # server's trouble, not the caller's (it was a 500, and a publish's 422 blamed the definition).
    (ConditionUnavailable, 503, "Condition helpers unavailable"),
    # Document templates (previews): a template that cannot compile, fails or runs past its budget.
    (TemplateRenderError, 422, "Template error"),
]


class Unauthorized(errors.DataWorkflowsError):
    """Authentication is required."""

    code = "unauthorized"


class ClientDisconnected(Exception):
    """The client closed the connection before its request was answered."""


# nginx's "client closed request": not an HTTP status a client can see, but it keeps a hang-up apart
# from the server's own failures (500) in metrics.
CLIENT_CLOSED_REQUEST = 499


def loggable_path(path: str) -> str:
    """A request's path as a log line may carry it (its first 200 characters, control and format
    characters escaped)."""
    # Not through _loggable's header repair: the path was decoded as UTF-8 already, and reading it again
    # as latin-1 bytes logged /ui/Ã© as /ui/é (a review).
    return _escaped(path[:200])


def _loggable(value: str | None, limit: int) -> str | None:
    """A header's value as a log line may carry it: at most `limit` characters, control characters
    escaped (a line break in X-Correlation-Id would otherwise forge a line in the console format).
    Headers a handler reads are checked there (an over-long or control-character correlation id is
    refused); every request is logged, before any handler, so this only shapes what is written.
    UTF-8 is read as the client sent it (ASGI hands header bytes over decoded as latin-1), so the
    line names the correlation id the run stores; other bytes are written as latin-1, escaped."""
    if value is None:
        return None
    return _escaped((sent_text(value) or value)[:limit])


def _escaped(text: str) -> str:
    """The text with its control and format characters escaped (\\x1b, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    request: Request[Any, Any, Any] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://dataworkflows.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    if status == 503:
        headers = {"Retry-After": "5", **(headers or {})}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def rate_limited(
    request: Request[Any, Any, Any], headers: dict[str, str], retry_after: int, *, whose: str = "this caller's request"
) -> Response[Any]:
    """429: a token bucket is empty (the caller's, unless `whose` names another); `headers` carry
    Retry-After and the RateLimit fields."""
    return problem(
        429,
        "Too many requests",
        rate_limited_message(retry_after, whose=whose),
        code="rate_limited",
        request=request,
        headers=headers,
    )


def rate_limited_message(retry_after: int, *, whose: str = "this caller's request") -> str:
    return f"{whose} rate is over the limit; retry in {retry_after} s"


# Methods that only read: what the database cannot answer is not their input's fault.
_READS = frozenset({"GET", "HEAD"})
STORED_VALUE_TOO_LARGE = (
    "the values stored with this resource are too large for the database to answer in one piece (a value of"
    " 1 GB or more); its other routes, and smaller pages of this one where it has them (limit), may still answer"
)


def _extension_members(exc: errors.DataWorkflowsError) -> dict[str, Any]:
    """What a problem says besides its detail: one entry per problem, where the template failed, how
    many runs keep a workflow from being deleted."""
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.DefinitionError) or (isinstance(exc, errors.InvalidInput) and exc.problems):
        extra["errors"] = [{"pointer": p.pointer, "code": p.code, "detail": p.message} for p in exc.problems]
    if isinstance(exc, BadQueryValue):
        extra["errors"] = [_query_entry(exc.parameter, exc.message)]
    if isinstance(exc, TemplateRenderError):
        extra.update({k: exc.attributes[k] for k in ("template", "line", "column") if k in exc.attributes})
    if isinstance(exc, errors.WorkflowHasExecutions):
        extra["executionCount"] = exc.execution_count
    return extra


def handle_domain_error(request: Request[Any, Any, Any], exc: errors.DataWorkflowsError) -> Response[dict[str, Any]]:
    if isinstance(exc, Unauthorized):
        return problem(401, "Unauthorized", exc.message, code=exc.code, request=request)
    if isinstance(exc, errors.ValueTooLarge) and request.method in _READS:
        # A read sent nothing too large: "Invalid input" blamed a GET for what the database holds (as
        # a stored value too deep to read is not a bad request; a write's value is the input's fault).
        return problem(422, "Unprocessable", STORED_VALUE_TOO_LARGE, code="stored_value_too_large", request=request)
    for cls, status, title in _STATUS:
        if isinstance(exc, cls):
            extra = _extension_members(exc)
            if status == 503:
                log.warning("database unavailable", path=loggable_path(request.url.path), error=exc.message)
            return problem(status, title, exc.message, code=exc.code, request=request, **extra)
    log.error(
        "unhandled domain error", path=loggable_path(request.url.path), error=exc.message, error_type=type(exc).__name__
    )
    return problem(500, "Internal error", "an internal error occurred", code="internal_error", request=request)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    extra: dict[str, Any] = {}
    detail = _own_detail(request, exc.detail)
    if isinstance(exc, ValidationException):
        status = 400
        if isinstance(exc.extra, list):
            entries = [
                _validation_entry(request, item)
                for item in exc.extra
                if isinstance(item, dict) and not _optional_body_absent(request, item)
            ]
            extra["errors"] = [entry for entry, _ in entries]
            detail = "; ".join(said for _, said in entries) or detail
    titles = {
        400: "Bad request",
        401: "Unauthorized",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
        415: "Unsupported media type",
        429: "Too many requests",
    }
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        status, "http_error"
    )
    detail = detail or titles.get(status, "error")
    if status >= 500:
        log.error("http error", path=loggable_path(request.url.path), status=status, detail=detail)
    # The exception's headers go with its answer: a 405's Allow (RFC 9110 15.5.6), which the problem
    # dropped.
    headers = dict(exc.headers or {})
    return problem(status, titles.get(status, "Error"), detail, code=code, request=request, headers=headers, **extra)


# The most of a message quoting a client's value (a field name in a body) a problem repeats.
MAX_MESSAGE = 200


def _bounded(message: Any) -> str:
    text = str(message or "")
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}… ({len(text)} characters)"


def _own_detail(request: Request[Any, Any, Any], detail: Any) -> str:
    """Litestar's own detail, without the request's query string (its 400s repeat the whole URL:
    "Validation failed for GET /path?…") and bounded."""
    if not isinstance(detail, str):
        return ""
    query = request.url.query
    if query:
        detail = detail.replace(f"?{query}", "")
    return _bounded(detail)


def _optional_body_absent(request: Request[Any, Any, Any], item: dict[str, Any]) -> bool:
    """Litestar's entry for an absent body ("'data'") that the handler does not need (`data` has a
    default: resume, publish): it came with another field's failure (a bad query value), as if the
    missing body were wrong too."""
    if item.get("message") != "'data'":
        return False
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    return parameter is not None and parameter.has_default


def _validation_entry(request: Request[Any, Any, Any], item: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A parsing failure's errors[] entry and what the detail says of it: the parameter's name and
    at most MAX_QUOTED characters of its value."""
    message = _bounded(item.get("message"))
    if item.get("source") == ParamType.QUERY:
        name = _query_name(request, str(item.get("key")))
        values = request.query_params.getall(name, [])
        value = f"={quoted(values[0])}" if values else ""
        return _query_entry(name, message), f"query parameter {name}{value}: {message}"
    where = _pointer(item.get("key"))
    if item.get("source") == "body" or where == "/data":
        # Litestar names the body's fields under the handler's argument, `data`, and cuts msgspec's
        # " - at `$.path`" from the message: the pointer is rebuilt from its key (every pointer was
        # "/data"), and a missing body says so (it said "'data'").
        if message == "'data'":
            message = "the request has no body: send a JSON object"
            return {"pointer": "", "detail": message}, message
        key = str(item.get("key") or "")
        # The detail says where in the body (a signal's array payload read "the request body:
        # Expected `object`, got `array`", as if the body itself were an array).
        at = _body_pointer(key, "")
        where = f"the request body at {at}" if at else "the request body"
        return {"pointer": _body_pointer(key, message), "detail": message}, f"{where}: {message}"
    return {"pointer": where, "detail": message}, f"{where or 'the request'}: {message}"


# msgspec's words for a field that is missing or unknown ("Object missing required field `body`"),
# and the steps of the path Litestar keys a body's error by ("nodes[0].id"; "data": the body itself).
_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`")
_STEP = re.compile(r"(?:^|\.)(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def _body_pointer(key: str, message: str) -> str:
    """The JSON pointer (RFC 6901) of the body's value an error is about: "" for the whole body,
    "/nodes/0/id" for the key `nodes[0].id`, "/body" for a missing required field `body`."""
    steps: list[str] = []
    if key and key != "data":
        position = 0
        while position < len(key):
            step = _STEP.match(key, position)
            if step is None:
                steps = []
                break
            steps.append(step["key"] if step["key"] is not None else step["index"])
            position = step.end()
    field = _FIELD.match(message)
    if field is not None:
        steps.append(field["field"])
    return "".join("/" + step.replace("~", "~0").replace("/", "~1") for step in steps)


def _query_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name the client sent: Litestar names a query parameter it could not parse by the handler's
    argument (trigger_id), not by the name the query uses (triggerId)."""
    handler = request.scope.get("route_handler")
    field = handler.parsed_fn_signature.parameters.get(key) if handler is not None else None
    definition = field.kwarg_definition if field is not None else None
    if isinstance(definition, ParameterKwarg) and definition.name:
        return definition.name
    return key


def _query_entry(parameter: str, detail: Any) -> dict[str, Any]:
    """A bad query value's entry: `parameter` names it (`pointer`, "/<name>", is what older clients read:
    a JSON Pointer to the key of that name, escaped as RFC 6901 says, "/" for an empty name)."""
    pointer = "/" + parameter.replace("~", "~0").replace("/", "~1")
    return {"pointer": pointer, "parameter": parameter, "detail": detail}


def _pointer(key: Any) -> str:
    if not key:
        return ""
    return "/" + str(key).replace(".", "/")


def handle_client_disconnected(request: Request[Any, Any, Any], exc: ClientDisconnected) -> Response[dict[str, Any]]:
    # Nobody will read this response; it is answered so that its status is counted as the client's doing.
    log.info("client disconnected", path=loggable_path(request.url.path), method=request.method, detail=str(exc))
    return problem(
        CLIENT_CLOSED_REQUEST,
        "Client closed request",
        "the client closed the connection before the request was answered",
        code="client_closed_request",
        request=request,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # Raised while decoding a request body: the client's fault.
    if isinstance(exc, UnicodeDecodeError):
        return problem(400, "Bad request", "the request body is not valid UTF-8", code="bad_request", request=request)
    if isinstance(exc, RecursionError):
        if request.method in ("GET", "HEAD"):
            # No body to blame: a stored value (an attempt's outputs recorded before this release
            # capped their depth at MAX_RESULT_DEPTH) nests deeper than the JSON decoders go.
            return problem(
                422,
                "Unprocessable",
                "a value stored with this resource is nested too deeply to be read (an attempt recorded before"
                " this release could store one; its other routes may still answer)",
                code="stored_value_too_deep",
                request=request,
            )
        return problem(400, "Bad request", "the request body is nested too deeply", code="bad_request", request=request)
    log.exception("unhandled error", path=loggable_path(request.url.path), error_type=type(exc).__name__)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "an internal error occurred",
        code="internal_error",
        request=request,
    )


exception_handlers: dict[Any, Any] = {
    errors.DataWorkflowsError: handle_domain_error,
    HTTPException: handle_http_exception,
    ClientDisconnected: handle_client_disconnected,
    Exception: handle_unexpected,
}

__all__ = [
    "PROBLEM_JSON",
    "ClientDisconnected",
    "MediaType",
    "Unauthorized",
    "exception_handlers",
    "problem",
    "rate_limited",
]
