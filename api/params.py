"""Path and query parameters: integers are bounded before they reach SQL, and a query value an
endpoint does not take is refused the one way (400, BadQueryValue, naming the parameter).

psycopg sends a Python int past bigint as numeric, and a bigint column compared with it, or a function
taking bigint, then fails in PostgreSQL: a 500 for what is the client's mistake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import BodyKwarg, QueryParameter
from litestar.routes import HTTPRoute

from dataworkflows.errors import DataWorkflowsError, InvalidInput, NotFound
from dataworkflows.json_depth import nul_pointer
from dataworkflows.json_text import LONE_SURROGATE, lone_surrogate
from dataworkflows.validation import Problem

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class BadQueryValue(DataWorkflowsError):
    """A query parameter's value is not one the endpoint takes.

    400, like a value Litestar cannot parse (a `limit` that is not a number): every bad query value
    is a malformed request, whichever check finds it (api/problems.py)."""

    code = "bad_request"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


# The most of a client's value a problem's detail quotes: a query value may be thousands of
# characters long.
MAX_QUOTED = 100


def quoted(value: str, most: int = MAX_QUOTED) -> str:
    """A client's value as a problem quotes it: repr'd, at most `most` characters of it, and its
    length when it is longer."""
    if len(value) <= most:
        return repr(value)
    return f"{value[:most]!r}… ({len(value)} characters)"


def require_one_of(parameter: str, value: str | None, allowed: Iterable[str]) -> None:
    """An enum's value, or none: an unknown one is a mistake, not a filter that matches nothing."""
    choices = list(allowed)
    if value is not None and value not in choices:
        raise BadQueryValue(parameter, f"{parameter} must be one of {', '.join(choices)}, not {quoted(value)}")


def query_int(name: str, *, ge: int, le: int, required: bool | None = None) -> QueryParameter:
    """An int query parameter; both bounds are required so that none reaches SQL unbounded.

    A value outside them is a malformed request (400), not an unknown resource."""
    return QueryParameter(name=name, ge=ge, le=le, required=required)


# `?version=N` on the routes that read one version of something (versions are PostgreSQL integers).
VersionQuery = Annotated[int | None, query_int("version", ge=1, le=INT_MAX, required=False)]


# A route whose query is a payload (the webhook receiver's: it refuses a NUL itself, and records the
# refusal) says so in its opt; the route, not the path, so that a proxy's prefix changes nothing.
QUERY_IS_PAYLOAD = "query_is_payload"
# A route's opt: the query parameters it takes as a list, given once per value (?executionId=a&executionId=b).
REPEATABLE_QUERY = "repeatable_query"
# A route's opt, set when the app is made (note_query_names): the query parameters its OpenAPI documents.
QUERY_NAMES = "query_names"
# A route's opt, set with QUERY_NAMES: those of them that take an integer.
QUERY_INTS = "query_ints"
# An integer as a query writes one: digits, with a sign at most. Litestar's lenient parsing also took
# a number written as a float whose value is whole (`after=1e3` read as 1000, `limit=10e-1` as 1).
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)


# What note_query_names found, by route and handler: the same code documents the same query in every
# app a process makes (the test suite makes hundreds, and building the OpenAPI document was about
# half of making one).
_QUERY_NAMES_SEEN: dict[tuple[str, str, frozenset[str]], tuple[frozenset[str], frozenset[str]] | None] = {}


def note_query_names(app: Litestar) -> None:
    """Gives each /api/v1 route the names of the query parameters it takes (QUERY_NAMES), from the
    OpenAPI document, which a test keeps complete (tests/integration/test_query_values.py): what is
    documented is what is accepted."""
    handlers = [
        (route, handler)
        for route in app.routes
        # Not the webhook receiver's: what a provider puts in its URL is its own (the delivery
        # records it as the hook's query; a provider's GET that checks the URL must not be refused).
        if isinstance(route, HTTPRoute)
        and route.path.startswith("/api/v1/")
        and not route.path.startswith("/api/v1/hooks/")
        for handler in route.route_handlers
    ]
    # By name, not by function: a controller's handlers are bound to an instance made for each app.
    keys = [(route.path_format, _qualified(handler.fn), frozenset(handler.http_methods)) for route, handler in handlers]
    if any(key not in _QUERY_NAMES_SEEN for key in keys):
        paths = app.openapi_schema.paths or {}
        for (route, handler), key in zip(handlers, keys, strict=True):
            _QUERY_NAMES_SEEN[key] = _documented_query(paths.get(route.path_format), handler)
    for (_, handler), key in zip(handlers, keys, strict=True):
        documented = _QUERY_NAMES_SEEN[key]
        if documented is not None:
            handler.opt[QUERY_NAMES], handler.opt[QUERY_INTS] = documented


def _qualified(fn: Any) -> str:
    function = getattr(fn, "__func__", fn)
    return f"{function.__module__}.{function.__qualname__}"


def _documented_query(item: Any, handler: Any) -> tuple[frozenset[str], frozenset[str]] | None:
    """The query parameters the OpenAPI path item documents for the handler's methods, and those of
    them that take an integer; None for a route the document leaves out, and for the OPTIONS handler."""
    if item is None or "OPTIONS" in handler.http_methods:
        return None
    names: set[str] = set()
    ints: set[str] = set()
    for method in handler.http_methods:
        operation = getattr(item, method.lower(), None)
        for p in getattr(operation, "parameters", None) or ():
            if getattr(p, "param_in", None) == "query":
                names.add(p.name)
                if _integer_schema(getattr(p, "schema", None)):
                    ints.add(p.name)
    return frozenset(names), frozenset(ints)


def _integer_schema(schema: Any) -> bool:
    """Whether an OpenAPI schema takes an integer and nothing else (`int`, or `int | None`: an absent
    parameter); not one that also takes a string."""
    if schema is None:
        return False
    alternatives = [*(getattr(schema, "one_of", None) or ()), *(getattr(schema, "any_of", None) or ())]
    if alternatives:
        kinds = [_kinds(alternative) for alternative in alternatives]
        return all(k <= {"integer", "null"} for k in kinds) and any("integer" in k for k in kinds)
    return _kinds(schema) - {"null"} == {"integer"}


def _kinds(schema: Any) -> set[str]:
    kinds = getattr(schema, "type", None)
    kinds = kinds if isinstance(kinds, list | tuple) else [kinds]
    return {str(getattr(kind, "value", kind)) for kind in kinds if kind is not None}


def refuse_nul_query_values(connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler) -> None:
    """No query value the API takes holds a NUL (PostgreSQL text cannot): a 400 naming the parameter
    here, rather than the database's refusal (422) of a free-text filter such as workflowId. Nor is
    any given twice: every parameter takes one value, and Litestar would read the last one silently
    (?status=Succeeded&status=Failed listed only Failed runs), but those a route takes as a list
    (REPEATABLE_QUERY). Nor is one given that the route does not take (QUERY_NAMES)."""
    if route.opt.get(QUERY_IS_PAYLOAD):
        return
    seen: dict[str, int] = {}
    ints = route.opt.get(QUERY_INTS, ())
    for name, value in connection.query_params.multi_items():
        _check_query_item(name, value, takes_int=name in ints)
        seen[name] = seen.get(name, 0) + 1
    repeatable = route.opt.get(REPEATABLE_QUERY, ())
    for name, times in seen.items():
        if times > 1 and name not in repeatable:
            raise BadQueryValue(_named(name), f"give the query parameter {quoted(name)} once (it came {times} times)")
    known = route.opt.get(QUERY_NAMES)
    if known is None:
        return
    for name in seen:
        if name not in known:
            # A misspelt filter was ignored, and the answer held what it should have left out
            # (?stauts=Failed listed every run).
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise BadQueryValue(_named(name), f"this route has no query parameter {quoted(name)}: {takes}")


def _check_query_item(name: str, value: str, *, takes_int: bool) -> None:
    """One name=value of a query: no NUL in either, a name, and digits for an integer's value."""
    if "\x00" in value or "\x00" in name:
        what = "name" if "\x00" in name else "value"
        raise BadQueryValue(_named(name.replace("\x00", "\\0")), f"a query {what} must not hold a NUL character")
    if not name:
        # `?=x` (or `?&=x`): Litestar reads it as a parameter named "", which no route takes.
        raise BadQueryValue("", f"a query parameter needs a name ({quoted('=' + value)} has none)")
    if takes_int and not _INTEGER.fullmatch(value):
        # As Litestar says of `limit=abc`; it took `after=1e3` as 1000 (a review).
        raise BadQueryValue(_named(name), f"query parameter {name}={quoted(value)}: Expected `int`, got `str`")


def _named(name: str) -> str:
    """A client's query name as a problem's `parameter` gives it: at most MAX_QUOTED characters, and
    an ellipsis when it was longer (it was cut at 50 without a sign that it had been)."""
    return name if len(name) <= MAX_QUOTED else name[: MAX_QUOTED - 1] + "…"


def refuse_impossible_ids(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every int path parameter names a row id or a version, and both start at 1 and fit a bigint:
    any other value names nothing, so it is a 404 before a handler or SQL sees it.

    An app-level guard, because guards of every layer run (a controller's before_request would
    replace the app's), so a route added later is covered without opting in."""
    for name, value in connection.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold one: no name or id has it (it was the database's 422 on
            # some routes, a 404 on others).
            # Named as the path's parameter (a review: "no name has a name with a NUL character").
            raise NotFound(f"no {name.replace('_', ' ')} holds a NUL character")
        # Versions are integers in PostgreSQL, ids bigints.
        top = INT_MAX if name == "version" else BIGINT_MAX
        if isinstance(value, int) and not isinstance(value, bool):
            what = name.removesuffix("_id").replace("_", " ")
            if not 1 <= value <= top:
                # The value is not echoed: it may be thousands of digits long.
                raise NotFound(f"no {what} has that number (ids are 1 to {BIGINT_MAX}, versions 1 to {INT_MAX})")
            written = _path_segment(connection, name)
            if written and not _ASCII_DIGITS.fullmatch(written):
                # Python's int() read `1_0` as 10, and `+1` and a fullwidth one (U+FF11) as 1 (a query value's
                # are 400s: api/params.py, query_int).
                raise NotFound(f"no {what} is written that way: a number in a path is written in the digits 0-9")


_ASCII_DIGITS = re.compile(r"[0-9]+")


# A slash written inside a path segment (%2F, %2f), as the request sent it.
_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)


def encoded_slash_refusal(raw_path: bytes, route_paths: Iterable[str]) -> NotFoundException | None:
    """The 404 for a path whose segment holds an encoded slash (%2F), naming the parameter it fills
    in the route it would take; None for a path without one.

    No id in this API holds a slash (workflow, workflow template and connection ids, template sets
    and names, node ids: letters, digits, '.', '_', '-'; signal names add ':'; the others are UUIDs
    and numbers), so such a segment names nothing. It is refused before routing: the server decodes
    %2F into the path, and the router read `simple-echo%2Fversions` as two segments (the versions of
    simple-echo), `%2F` as the list itself, and a DELETE of `triggers/%2F` as a DELETE of the list
    (405)."""
    # Without its query: ASGI's raw_path has none, but some servers (and httpx's test transport) send
    # it with it, and a query value's %2F is the query's own.
    path = raw_path.partition(b"?")[0]
    if not _ENCODED_SLASH.search(path):
        return None
    segments = path.decode("latin-1").split("/")
    # The segment with the slash: the first one, should several have it.
    slashed = next(i for i, segment in enumerate(segments) if _ENCODED_SLASH.search(segment.encode("latin-1")))
    named = "id in this API"
    best = -1
    for route_path in route_paths:
        # The route's path with its parameters' types: `/api/v1/workflows/{workflow_id:str}`.
        template = route_path.split("/")
        # Counted from the end, as _path_segment counts: a proxy's prefix adds segments before the route's.
        offset = len(segments) - len(template)
        if offset < 0 or slashed < offset:
            continue
        literal = 0
        for part, segment in zip(template, segments[offset:], strict=True):
            if part.startswith("{"):
                continue
            if part != unquote(segment):
                break
            literal += 1
        else:
            name, _, kind = template[slashed - offset].strip("{}").partition(":")
            if literal > best:
                # The route with the most literal segments in common, as the router would choose;
                # a file's path (`{name:path}`) is no id, and its files have no slash in a name.
                best, named = literal, "id in this API" if kind == "path" else name.replace("_", " ")
    return NotFoundException(f"no {named} holds a slash ('/', written %2F): nothing is at this path")


def _path_segment(connection: ASGIConnection[Any, Any, Any, Any], name: str) -> str:
    """The path's segment that the route's template names {name}, as the request wrote it (decoded);
    "" when the template does not say (Litestar's scope holds it for every HTTP route). Counted from the end: a
    proxy's prefix adds segments before the route's."""
    template = str(connection.scope.get("path_template") or "").split("/")
    path = str(connection.scope.get("path") or "").split("/")
    for back, part in enumerate(reversed(template), start=1):
        if part.partition(":")[0] == "{" + name or part == "{" + name + "}":
            return path[-back] if back <= len(path) else ""
    return ""


def _known_path(where: str) -> str:
    """msgspec's path to a bad value (`.trigger[...][2]`: a field, a mapping's key it does not name, an
    index) as the dotted key api/problems.py makes a JSON pointer of, up to the first key msgspec does
    not name: `trigger`. (Each `[...]` was a slash of its own: "/trigger/////////2".)"""
    parts: list[str] = []
    for field, index, unnamed in _PATH_PART.findall(where):
        if unnamed:
            break
        parts.append(field or index)
    return ".".join(parts)


_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[(\.\.\.)\]")


async def refuse_coerced_body(connection: ASGIConnection[Any, Any, Any, Any], route: BaseRouteHandler) -> None:
    """A JSON body is read as JSON types it: a number written as a string is not a number. Litestar
    converts a body to the handler's type leniently (msgspec's strict=False, which its query
    parameters need), so `{"rateLimitPerMinute": "30"}` set 30, and `"1e1"` 10. Here the body is
    decoded strictly against the same type first, and a value of the wrong JSON type is the 400 a
    wrong value is (api/problems.py), naming where it is. An empty body and a body that is not JSON
    are left to Litestar's own answers, but a body of whitespace (which Litestar called "truncated")
    and a JSON `null` (which a route whose body may be left out read as no body) are 400s. A guard
    after the caller's (authorize): one who may not call the route learns nothing of its body's rules.

    A NUL character (`\u0000`) anywhere in the body is a 422 naming where it is (refuse_nul):
    PostgreSQL stores none, and its refusal named no field. A lone UTF-16 surrogate escape is a 400
    that says so (msgspec's words for it were "Input data was truncated")."""
    field = route.parsed_fn_signature.parameters.get("data") if hasattr(route, "parsed_fn_signature") else None
    if field is None:
        return
    definition = field.kwarg_definition
    if isinstance(definition, BodyKwarg) and definition.media_type != RequestEncodingType.JSON:
        return
    request = connection if isinstance(connection, Request) else Request(connection.scope, connection.receive)
    body = await request.body()
    if not body:
        return
    if not body.strip():
        # msgspec's words for it were "Input data was truncated".
        raise ClientException("the request body holds only whitespace: send a JSON object")
    if body.strip() == b"null":
        # Read as no body by a route whose body may be left out (resume, redrive): "no body, or
        # a JSON object" is what they take.
        raise ValidationException(extra=[{"message": "Expected `object`, got `null`", "key": "data", "source": "body"}])
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        key = _known_path(where.rstrip("`"))
        raise ValidationException(extra=[{"message": message, "key": key or "data", "source": "body"}]) from exc
    except msgspec.DecodeError as exc:
        if lone_surrogate(body):
            raise ClientException(f"the body is not valid JSON: {LONE_SURROGATE}") from exc
        return
    if b"\\u0000" in body:
        # The escape in the text; the decoded value says whether it is a NUL (not "\\\\u0000").
        refuse_nul(msgspec.json.decode(body), "")


def refuse_nul(value: Any, base: str) -> None:
    """InvalidInput (422) naming where a NUL character is: PostgreSQL stores none, and its refusal
    named no field ("the database refused a value")."""
    where = nul_pointer(value, base)
    if where is not None:
        message = f"{where}: a NUL character (\\u0000), which is not stored"
        raise InvalidInput(message, problems=[Problem(where, "nul_character", "a NUL character, which is not stored")])
