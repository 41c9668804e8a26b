"""JSON values named and quoted in messages as JSON says them (null, true, {"a": 1}), not as
Python does (None, True, {'a': 1}): the messages are read by people who wrote JSON."""

from __future__ import annotations

from typing import Any

import msgspec


def json_type(value: Any) -> str:
    """`null`, `a boolean`, `a number`, `a string`, `an array` or `an object`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an object"


def json_preview(value: Any, limit: int = 200) -> str:
    """The value as JSON text, cut to `limit` characters (with an ellipsis when cut)."""
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
