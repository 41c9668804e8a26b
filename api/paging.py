"""Opaque cursors for keyset paging."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from dataworkflows.errors import InvalidInput

from .params import BIGINT_MAX

_INVALID = "the cursor is not valid; use nextCursor from a previous page"


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput(_INVALID) from exc


def decode_id_cursor(cursor: str | None) -> int | None:
    """A cursor that is a row id: only an id a row can have, so that SQL never sees a numeric."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    # bool is an int subclass, and JSON true is not an id.
    if type(value) is not int or not 1 <= value <= BIGINT_MAX:
        raise InvalidInput(_INVALID)
    return value
