"""Walks of a JSON value without recursion: how deep it nests, whether a string in it matches
(light: the sandbox helpers import it too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# An attempt's parameters and outputs nest at most this deep (a transform's result too). The
# engine's JSON encoders and decoders, and psycopg's, recurse: about 960 levels crashed the
# worker that recorded such a value, or made the run unreadable through the API (sandbox review).
MAX_RESULT_DEPTH = 100


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early past `limit` (iterative: no recursion).

    A level at a time, visiting containers only: the scalars under a container are passed over in
    one C-level pass over their types (a 50 MB array of numbers from an HTTP response took 5 s to
    walk an item at a time, on the worker's event loop, twice per attempt: a size review saw its
    leases lost and its runs' HTTP calls made again)."""
    level = [value]
    depth = 1
    while level:
        below: list[Any] = []
        deeper = False
        for item in level:
            if isinstance(item, dict):
                children: Any = item.values()
            elif isinstance(item, list):
                children = item
            else:
                continue
            if not children:
                continue
            deeper = True
            if any(issubclass(kind, _CONTAINERS) for kind in set(map(type, children))):
                below.extend(child for child in children if isinstance(child, _CONTAINERS))
        if not deeper:
            return depth
        depth += 1
        if depth > limit:
            return depth
        level = below
    return depth


_CONTAINERS = (dict, list)


def too_deep(what: str, value: Any) -> str | None:
    """Why `value` (an attempt's `what`) cannot be recorded for its depth, if it cannot."""
    if value is None or (isinstance(value, dict) and not any(isinstance(v, dict | list) for v in value.values())):
        return None  # the common case, at every record: a flat object
    if json_depth(value, MAX_RESULT_DEPTH) <= MAX_RESULT_DEPTH:
        return None
    return f"the {what} are nested deeper than {MAX_RESULT_DEPTH} levels"


def any_string(value: Any, test: Callable[[str], bool]) -> bool:
    """Whether `test` holds for a string anywhere in the value: its strings and its objects' keys."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if test(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def has_nul(value: Any) -> bool:
    """Whether a NUL character is anywhere in the value's strings or keys (PostgreSQL stores none)."""
    return any_string(value, lambda text: "\x00" in text)


def nul_pointer(value: Any, base: str) -> str | None:
    """The JSON pointer (under `base`) of the first string or key in the value that holds a NUL
    character, which PostgreSQL stores in no text or JSON value; None when there is none. The
    pointers are made only for a value that has one (has_nul first: the common case walks once)."""
    if not has_nul(value):
        return None
    stack: list[tuple[Any, str]] = [(value, base)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                at = f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if "\x00" in str(key):
                    return at
                stack.append((child, at))
        elif isinstance(item, list):
            stack.extend((child, f"{where}/{index}") for index, child in enumerate(item))
    return None


def printable_pointer(pointer: str) -> str:
    """A pointer nul_pointer made, with a key's NUL characters written as the text `\\u0000`: a message
    naming where a NUL is can then be stored (a review: a NUL in an output's key made the message
    that said so unstorable too, and the run stuck as before)."""
    return pointer.replace("\x00", "\\u0000")
