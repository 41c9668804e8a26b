"""Scrubbing: a run's trigger values and the secrets it resolved, kept out of error messages and
log lines.

A Scrubber is built per run (Runtime.run_execution) from the trigger's string values, nested ones
included, and learns each secret the run resolves (a connection's, from the database or from
DW_CONNECTION_<NAME>). It is the run's `current()` while the run executes (a contextvar, inherited
by its node tasks), and two sinks use it:
- the worker's data layer (dataworkflows.data.runs) scrubs every error it records: attempt and node
  errors, item errors, the run's error (v_executions.error_message), dead letters and events;
- a structlog processor (dataworkflows.logs) scrubs every log line written while the run executes.
Outputs are scrubbed of the secrets only: trigger values in outputs are the workflow's own data.

Matching is exact (ignoring case) on each value and on the forms it takes inside JSON strings,
Python reprs and percent-encoded URLs. Values shorter than MIN_LENGTH are not scrubbed (they would
blank out ordinary words), and anything transformed otherwise (base64, hashed, split, truncated)
is not recognised: see the README's "Scrubbing" section.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 4
MASK = "[redacted]"
# A trigger with more distinct strings than this has only its first ones scrubbed (bounds the
# cost of every scrubbed log line and error).
MAX_TRIGGER_VALUES = 256
# An error's fields that name things rather than carry values: kept from trigger values (a trigger
# value "prod" blanked no code), but scrubbed of secrets: a third-party action's error code is its own
# text, and one made of what its server said carried the credential into every record of the error (a
# review: a code `refused_<token>` was stored, answered and rendered into a failure handler's parameters).
_STRUCTURAL_KEYS = frozenset({"code", "nodeId", "retryAfter", "itemIndex", "index"})
# In an http.request connection's JSON, where the credential may be sent: not a secret.
_NON_SECRET_KEYS = frozenset({"hosts"})


# What JavaScript's encodeURI and encodeURIComponent leave as they are, beyond what quote always does
# (letters, digits and _.-~).
_ENCODE_URI_SAFE = ";,/?:@&=+$#!'()*"
_ENCODE_URI_COMPONENT_SAFE = "!'()*"


def _variants(value: str) -> set[str]:
    """The value and how it is spelled inside a JSON string (ASCII-escaped, as Python writes it, or
    not, as JavaScript's JSON.stringify and most servers do; with "/" escaped as "\\/", as PHP's
    json_encode writes it), a Python repr and a URL (percent-encoded as Python's quote, with "/" kept
    or not, and quote_plus write it, and as JavaScript's encodeURI and encodeURIComponent do: a
    redirect's Location with the token in its query kept "/" and was stored as it was, a review)."""
    in_json = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms = {
        value,
        *in_json,
        *(form.replace("/", "\\/") for form in in_json),
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote(value, safe=_ENCODE_URI_SAFE),
        quote(value, safe=_ENCODE_URI_COMPONENT_SAFE),
        quote_plus(value, safe=""),
    }
    # Lower-cased (found in a lower-cased text) and as written: lower() changes the length of some
    # letters ('İ' becomes 'i' and a combining dot), which a case-insensitive pattern of the
    # lower-cased form would then not match in the original text.
    return {variant for form in forms for variant in (form, form.lower()) if len(variant) >= MIN_LENGTH}


def string_values(value: Any, *, skip: frozenset[str] = frozenset(), limit: int | None = None) -> list[str]:
    """Every string in a JSON-like value (dict values, list items, nested), in order, distinct."""
    found: dict[str, None] = {}
    stack = [value]
    while stack and (limit is None or len(found) < limit):
        current = stack.pop()
        if isinstance(current, str):
            if len(current) >= MIN_LENGTH:
                found[current] = None
        elif isinstance(current, Mapping):
            stack.extend(reversed([v for k, v in current.items() if k not in skip]))
        elif isinstance(current, list | tuple):
            stack.extend(reversed(current))
    return list(found)


def secret_values(secret: str) -> list[str]:
    """A revealed secret and, when it is a JSON object (an http.request connection), the strings
    in it (its bearer token, header values) except the hosts it may go to."""
    values = [secret] if len(secret) >= MIN_LENGTH else []
    try:
        parsed = json.loads(secret)
    except ValueError:
        return values
    if isinstance(parsed, dict):
        values += string_values(parsed, skip=_NON_SECRET_KEYS)
        # As they are sent: "Bearer <token>" is scrubbed whole by the token itself.
    return values


class Scrubber:
    """Replaces a run's trigger values and secrets with [redacted]."""

    def __init__(self, trigger_values: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        # Lower-cased needles (matching ignores case), longest first, so that a value containing
        # another is replaced whole.
        self._trigger: set[str] = set()
        self._secrets: set[str] = set()
        self._all: list[str] = []
        self._secrets_only: list[str] = []
        for value in trigger_values:
            self._trigger |= _variants(value)
        for value in secrets:
            self.add_secret(value)
        self._sort()

    @classmethod
    def for_trigger(cls, trigger: Any) -> Scrubber:
        return cls(string_values(trigger, limit=MAX_TRIGGER_VALUES))

    def _sort(self) -> None:
        self._all = sorted(self._trigger | self._secrets, key=lambda n: (-len(n), n))
        self._secrets_only = sorted(self._secrets, key=lambda n: (-len(n), n))

    def add_secret(self, secret: str) -> None:
        """A secret the run resolved (scrubbed from its errors, logs and outputs from now on)."""
        new: set[str] = set()
        for value in secret_values(secret):
            new |= _variants(value)
        if not new <= self._secrets:
            self._secrets |= new
            self._sort()

    @property
    def empty(self) -> bool:
        return not self._all

    def text(self, text: str, *, secrets_only: bool = False) -> str:
        needles = self._secrets_only if secrets_only else self._all
        if not needles or len(text) < MIN_LENGTH:
            return text
        # Most texts hold none: a substring scan per needle is far cheaper than compiling one
        # pattern of every needle per run (which costs ~0.1 s for a thousand values). The pattern
        # also takes a dotless i and a dotted capital I (a Turkish locale's case mapping) for an i,
        # and a long s for an s: so does the scan, or it passed over a token so echoed.
        lowered = text.lower()
        folded = lowered if text.isascii() else text.translate(_ASCII_FOLD).lower()
        found = [n for n in needles if len(n) <= len(lowered) and (n in lowered or n in text or n in folded)]
        if not found:
            return text
        return _pattern(tuple(found)).sub(MASK, text)

    def value(self, value: Any, *, secrets_only: bool = False) -> Any:
        """Every string in a JSON-like value scrubbed (dict keys too)."""
        if isinstance(value, str):
            return self.text(value, secrets_only=secrets_only)
        if isinstance(value, Mapping):
            return {
                self.text(str(k), secrets_only=secrets_only): self.value(v, secrets_only=secrets_only)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v, secrets_only=secrets_only) for v in value]
        return value

    def error(self, error: Any, *, secrets_only: bool = False) -> Any:
        """A recorded error (code, message, details, cause, ...): every value scrubbed, the fields
        that name things (code, nodeId, ...) of the secrets alone. With secrets_only, of the secrets
        alone: an error as the run's own data (the `errors` scope, a forEach's outputs)."""
        if self.empty or (secrets_only and not self._secrets):
            return error
        if isinstance(error, Mapping):
            return {
                (k if k in _STRUCTURAL_KEYS else self.text(str(k), secrets_only=secrets_only)): (
                    self.secrets(v) if k in _STRUCTURAL_KEYS else self.error(v, secrets_only=secrets_only)
                )
                for k, v in error.items()
            }
        if isinstance(error, list | tuple):
            return [self.error(v, secrets_only=secrets_only) for v in error]
        return self.value(error, secrets_only=secrets_only)

    def secrets(self, value: Any) -> Any:
        """Outputs: the secrets scrubbed, trigger values kept (they are the workflow's data)."""
        return self.value(value, secrets_only=True) if self._secrets else value


# What a case-insensitive pattern (Python's re) takes for an ASCII letter besides its two cases.
_ASCII_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def _pattern(needles: tuple[str, ...]) -> re.Pattern[str]:
    """The needles found in a text (longest first), as one case-insensitive pattern."""
    return re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)


NO_SCRUBBING = Scrubber()
_CURRENT: contextvars.ContextVar[Scrubber] = contextvars.ContextVar("dataworkflows_scrubber", default=NO_SCRUBBING)


def current() -> Scrubber:
    """The scrubber of the run this code runs for (one that changes nothing outside a run)."""
    return _CURRENT.get()


@contextlib.contextmanager
def scrubbing(scrubber: Scrubber) -> Iterator[Scrubber]:
    """Makes `scrubber` current for the block (and for the tasks it starts)."""
    token = _CURRENT.set(scrubber)
    try:
        yield scrubber
    finally:
        _CURRENT.reset(token)


def scrub_log_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value of a log line, scrubbed with the current run's scrubber."""
    scrubber = current()
    if not scrubber.empty:
        for key, value in event_dict.items():
            if isinstance(value, str | Mapping | list | tuple):
                event_dict[key] = scrubber.value(value)
    return event_dict
