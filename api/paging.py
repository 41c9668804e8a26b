"""Opaque cursors for keyset paging."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import MediaType, Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from .params import BIGINT_MAX, BadQueryValue, query_int

Row = TypeVar("Row")
Item = TypeVar("Item")

# The `limit` and `cursor` of the lists that page through a Link header (bare_page) since they came
# to page (the events' and the approvals' bounds are older): a page holds 1,000 rows (as the events'
# and the actions') unless asked for fewer: a client that read the whole list before reads as much.
PAGE_LIMIT = 1000
PageLimit = Annotated[int, query_int("limit", ge=1, le=1000)]
PageCursor = Annotated[str | None, QueryParameter(name="cursor", required=False)]

_INVALID = "the cursor is not valid; use the one a previous page gave (its nextCursor, or its Link header's)"


def invalid_cursor() -> BadQueryValue:
    """The refusal of a cursor that no page produced (a 400, like any bad query value)."""
    return BadQueryValue("cursor", _INVALID)


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = msgspec.json.decode(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, msgspec.DecodeError) as exc:
        raise invalid_cursor() from exc
    # No id holds a NUL, and PostgreSQL would refuse the text (a 422 from the database layer).
    if _holds_nul(value):
        raise invalid_cursor()
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, list) and any(_holds_nul(part) for part in value)


# What a cursor was made for: the list (a name of its own) and its path ids and filters, in the cursor
# besides the key, so that a cursor of another list, another workflow or another filter is refused
# instead of silently starting elsewhere (an empty or a partial page, and no word of it).
Scope = Sequence[str | None]
_NOT_THIS_LIST = (
    "the cursor is not one a page of this list made (for this path and these filters); "
    "use the one a previous page of it gave (its nextCursor, or its Link header's)"
)


def scoped(scope: Scope | None, key: Any) -> Any:
    """The value a cursor of `scope` encodes: its scope, then the key of the page's last row."""
    return key if scope is None else [*scope, key]


def encode_scoped(scope: Scope, key: Any) -> str:
    """The cursor of a page of `scope`'s list whose last row has `key`."""
    return encode_cursor(scoped(scope, key))


def key_of(cursor: str | None, scope: Scope | None) -> Any:
    """The key a cursor names, checked to be of `scope` (None: a cursor without one, the older lists')."""
    value = decode_cursor(cursor)
    if scope is None:
        return value
    if value is None:
        if cursor:
            raise invalid_cursor()  # a JSON null is no page's cursor
        return None
    if not (isinstance(value, list) and len(value) == len(scope) + 1 and value[:-1] == list(scope)):
        raise BadQueryValue("cursor", _NOT_THIS_LIST)
    return value[-1]


def decode_id_cursor(cursor: str | None, *, top: int = BIGINT_MAX, scope: Scope | None = None) -> int | None:
    """A cursor that is a row id (or a version, up to `top`): only an id a row can have, so that SQL
    never sees a numeric."""
    value = key_of(cursor, scope)
    if value is None:
        return None
    # bool is an int subclass, and JSON true is not an id.
    if type(value) is not int or not 1 <= value <= top:
        raise invalid_cursor()
    return value


def decode_name_cursor(cursor: str | None, *, scope: Scope | None = None) -> str | None:
    """A cursor that is a name or a text id (encode_cursor(scoped(scope, name))): the last row of a page."""
    value = key_of(cursor, scope)
    if value is not None and not isinstance(value, str):
        raise invalid_cursor()
    return value


def decode_names_cursor(cursor: str | None, parts: int, *, scope: Scope | None = None) -> tuple[str, ...] | None:
    """A cursor that is a key of `parts` texts (encode_cursor(scoped(scope, [a, b, ...]))): the last row of a page."""
    value = key_of(cursor, scope)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == parts and all(isinstance(part, str) for part in value)):
        raise invalid_cursor()
    return tuple(value)


def encode_time_cursor(at: datetime, row_id: uuid.UUID, *, scope: Scope | None = None) -> str:
    """The cursor of a list in (created_at, id) order: the last row of a page."""
    return encode_cursor(scoped(scope, [at.isoformat(), str(row_id)]))


def decode_time_cursor(cursor: str | None, *, scope: Scope | None = None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) an encode_time_cursor cursor names (a 400 for any other)."""
    after = key_of(cursor, scope)
    if after is None:
        return None
    try:
        if not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
            raise ValueError("cursor shape")
        at = datetime.fromisoformat(after[0])
        if at.tzinfo is None:
            raise ValueError("a page's cursor names its time with its offset")
        return at, uuid.UUID(after[1])
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise invalid_cursor() from exc


def _cursor_time(text: Any) -> datetime:
    """A time a cursor names, with its offset (ValueError otherwise)."""
    if not isinstance(text, str):
        raise ValueError("cursor shape")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a page's cursor names its time with its offset")
    return at


def encode_time_serial_cursor(at: datetime, row_id: int, *, scope: Scope) -> str:
    """The cursor of a list in (time, bigserial id) order: the last row of a page."""
    return encode_scoped(scope, [at.isoformat(), row_id])


def decode_time_serial_cursor(cursor: str | None, *, scope: Scope) -> tuple[datetime, int] | None:
    """The (time, id) an encode_time_serial_cursor cursor names (a 400 for any other)."""
    after = key_of(cursor, scope)
    if after is None:
        return None
    # bool is an int subclass, and JSON true is not an id; nor is anything past bigint.
    if not (isinstance(after, list) and len(after) == 2 and type(after[1]) is int and 1 <= after[1] <= BIGINT_MAX):
        raise invalid_cursor()
    try:
        return _cursor_time(after[0]), after[1]
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


def encode_instant_cursor(at: datetime, *, scope: Scope) -> str:
    """The cursor of a list in the order of a time unique in it (a schedule's ticks): the last row of a page."""
    return encode_scoped(scope, at.isoformat())


def decode_instant_cursor(cursor: str | None, *, scope: Scope) -> datetime | None:
    """The time an encode_instant_cursor cursor names (a 400 for any other)."""
    after = key_of(cursor, scope)
    if after is None:
        return None
    try:
        return _cursor_time(after)
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


def _next_page(
    request: Request[Any, Any, Any], rows: Sequence[Row], limit: int, cursor_of: Callable[[Row], str]
) -> dict[str, str]:
    """The headers of a page of a bare-list route, whose query read `limit` + 1 rows: when there was
    one more, an RFC 8288 Link to the next page (after the page's last row, cursor_of names it), with
    the request's other query parameters (its filters) and `limit`. The body stays a bare list, as
    existing clients read it; the path is the one the client sent (with an ASGI root_path's prefix)."""
    if len(rows) <= limit:
        return {}
    query = {key: value for key, value in request.query_params.items() if key not in ("cursor", "limit")}
    query["cursor"] = cursor_of(rows[limit - 1])
    query["limit"] = str(limit)
    return {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}


def body_page(
    rows: Sequence[Row], limit: int, read: Callable[[Row], Item], cursor_of: Callable[[Row], str]
) -> tuple[list[Item], str | None]:
    """A page of a list that gives its next page in the body (`nextCursor`), whose query read `limit`
    + 1 rows: the first `limit` of them, each as `read` makes it, and the cursor past the page's last
    row (cursor_of names it) when there was one more, else None."""
    return [read(row) for row in rows[:limit]], cursor_of(rows[limit - 1]) if len(rows) > limit else None


def bare_page(
    request: Request[Any, Any, Any],
    rows: Sequence[Row],
    limit: int,
    read: Callable[[Row], Any],
    cursor_of: Callable[[Row], str],
) -> Response[list[Any]]:
    """The answer of a bare-list route whose query read `limit` + 1 rows: the first `limit` of them,
    each as `read` makes it, and the next page's Link when there was one more (_next_page)."""
    items, _ = body_page(rows, limit, read, cursor_of)
    return Response(items, media_type=MediaType.JSON, headers=_next_page(request, rows, limit, cursor_of))


def next_page_header(example: str) -> list[ResponseHeader]:
    """The Link header of bare_page, as the route's OpenAPI documents it (`example`: the link's target)."""
    return [
        ResponseHeader(
            name="Link",
            description=f'More rows than `limit`: `<{example}>; rel="next"` is the next page (absent on the last page)',
            documentation_only=True,
        )
    ]
