"""JSON values named and quoted in messages as JSON says them (null, true, {"a": 1}), not as
Python does (None, True, {'a': 1}): the messages are read by people who wrote JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from dataworkflows.json_depth import any_string

# Said of a JSON text refused for a lone surrogate escape (msgspec's own words are "Input data was
# truncated", which sends its writer looking for a cut body).
LONE_SURROGATE = "it escapes a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which is no character"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(body: bytes) -> bool:
    """Whether msgspec refused a JSON text for a lone surrogate escape: Python's json reads the text
    (without NaN or Infinity, which it takes and msgspec does not) and a string in it holds a surrogate
    (a pair's escapes decode to one character, an escaped backslash before "ud800" to none). A review:
    any surrogate escape in a text Python's json reads was taken for one, a pair beside a NaN too."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False
    return _holds_surrogate(value)


_encoder = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    """The value as JSON text (msgspec). A string (or key) holding a lone UTF-16 surrogate, which UTF-8,
    JSON text and PostgreSQL hold none of, raises msgspec.EncodeError saying so, as every other value
    JSON cannot hold does: it raised UnicodeEncodeError, which the callers that turn an unstorable
    value into a failed node (unrecordable_result, outputs_error) did not expect (a review: the node
    task crashed, engine_error; in a run's outputs, its job failed at every try until worker_lost)."""
    try:
        return _encoder.encode(value)
    except UnicodeEncodeError as exc:
        raise msgspec.EncodeError(surrogate_refused(exc, "JSON text")) from None
    except RecursionError:
        raise msgspec.EncodeError("the value is nested too deep to encode as JSON") from None


def surrogate_refused(exc: UnicodeEncodeError, what: str) -> str:
    """Says that a string holds a lone surrogate, which `what` cannot hold (exc: UTF-8's refusal)."""
    found = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
    escaped = "".join(f"\\u{ord(c):04x}" for c in found) or "a surrogate"
    return f"a string holds a lone UTF-16 surrogate ({escaped}, half of a character), which {what} cannot hold"


def unencodable(value: Any) -> str | None:
    """Why the value cannot be stored as JSON (None when it can)."""
    try:
        encode_json(value)
    except (TypeError, msgspec.EncodeError) as exc:
        return str(exc)
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _holds_surrogate(value: Any) -> bool:
    return any_string(value, lambda text: _SURROGATE.search(text) is not None)


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
        text = encode_json(value).decode()
    except msgspec.EncodeError:
        # A lone surrogate (a review: it raised UnicodeEncodeError here, and the node quoting the value
        # in its error crashed): Python's json escapes it, as ASCII. str() would carry it on.
        text = json.dumps(value, default=str)
    except TypeError:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
