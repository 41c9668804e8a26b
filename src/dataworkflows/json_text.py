"""JSON values named and quoted in messages as JSON says them (null, true, {"a": 1}), not as
Python does (None, True, {'a': 1}): the messages are read by people who wrote JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

# Said of a JSON text refused for a lone surrogate escape (msgspec's own words are "Input data was
# truncated", which sends its writer looking for a cut body).
LONE_SURROGATE = "it escapes a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which is no character"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: bytes) -> bool:
    """Whether msgspec refused a JSON text only for a lone surrogate escape, which Python's json reads."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


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
