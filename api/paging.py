"""Opaque cursors for keyset paging."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from dataworkflows.errors import InvalidInput


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("the cursor is not valid; use nextCursor from a previous page") from exc
