"""Opaque cursors for keyset paging."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import msgspec

from .params import BIGINT_MAX, BadQueryValue

_INVALID = "the cursor is not valid; use nextCursor from a previous page"


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


def decode_id_cursor(cursor: str | None) -> int | None:
    """A cursor that is a row id: only an id a row can have, so that SQL never sees a numeric."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    # bool is an int subclass, and JSON true is not an id.
    if type(value) is not int or not 1 <= value <= BIGINT_MAX:
        raise invalid_cursor()
    return value


def encode_time_cursor(at: datetime, row_id: uuid.UUID) -> str:
    """The cursor of a list in (created_at, id) order: the last row of a page."""
    return encode_cursor([at.isoformat(), str(row_id)])


def decode_time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) an encode_time_cursor cursor names (a 400 for any other)."""
    after = decode_cursor(cursor)
    if after is None:
        return None
    try:
        if not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
            raise ValueError("cursor shape")
        return datetime.fromisoformat(after[0]), uuid.UUID(after[1])
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise invalid_cursor() from exc
