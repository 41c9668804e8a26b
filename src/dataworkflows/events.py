"""Event triggers (README "Events"): a CloudEvent (https://cloudevents.io, structured JSON mode,
specversion 1.0) published to POST /api/v1/events starts a run of each workflow whose enabled
trigger of kind `event` subscribes to its type. This module checks an event trigger's config and a
published event's attributes; dw.publish_event_v1 matches and starts. Pure module."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

# An eventType: a CloudEvents type as producers write them ("com.example.order.created"), or a
# prefix ending in ".*" ("com.example.order.*": every type under it), or "*" (every type).
EVENT_TYPE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}\Z")
_PATTERN = re.compile(r"\A(?:\*|[A-Za-z0-9][A-Za-z0-9._:/-]{0,197}\.\*|[A-Za-z0-9][A-Za-z0-9._:/-]{0,199})\Z")
MAX_SOURCE = 500
# And in UTF-8 bytes: the (tenant, source, id) key of dw.events' unique index must fit an index row
# (2,704 bytes). 500 characters of four bytes and an id of 200 did not: a 422 quoting the index.
MAX_SOURCE_BYTES = 1500
MAX_ID = 200
MAX_SUBJECT = 500
_CONFIG_KEYS = ("eventType", "source")


def check_config(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """An event trigger's config: {"eventType": a type, "prefix.*" or "*", "source"?: the only
    source it takes}. Problems as (pointer, code, message)."""
    found: list[tuple[str, str, str]] = []
    for key in config:
        if key not in _CONFIG_KEYS:
            found.append(
                (f"/{key}", "unknown_field", f"unknown field {key!r} (an event trigger takes eventType, source)")
            )
    pattern = config.get("eventType")
    if pattern is None:
        found.append(("/eventType", "required", "the event type it starts a run for ('order.created', 'order.*', '*')"))
    elif not isinstance(pattern, str) or not _PATTERN.match(pattern):
        found.append(
            (
                "/eventType",
                "format",
                "an event type (1-200 letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit), "
                "a prefix ending in '.*', or '*'",
            )
        )
    source = config.get("source")
    if source is not None and (
        not isinstance(source, str)
        or not 1 <= len(source) <= MAX_SOURCE
        or not source.strip()
        or len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES
    ):
        found.append(
            (
                "/source",
                "format",
                f"the source it takes: 1 to {MAX_SOURCE} characters, at most {MAX_SOURCE_BYTES} bytes in UTF-8 "
                "(or left out: any)",
            )
        )
    return found


def check_event(event: dict[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with a published CloudEvent's context attributes, as (attribute, message)."""
    found: list[tuple[str, str]] = []
    if event.get("specversion") != "1.0":
        found.append(("specversion", 'must be "1.0" (CloudEvents 1.0, structured JSON mode)'))
    for name, most in (("id", MAX_ID), ("source", MAX_SOURCE)):
        value = event.get(name)
        if value is None:
            found.append((name, f"is required: 1 to {most} characters"))
        elif not isinstance(value, str) or not 1 <= len(value) <= most or not value.strip():
            found.append((name, f"must be 1 to {most} characters, not all blank"))
        elif name == "source" and len(value.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
            found.append((name, f"is at most {MAX_SOURCE_BYTES} bytes in UTF-8 ({most} characters of up to 3 bytes)"))
    kind = event.get("type")
    if not isinstance(kind, str) or not EVENT_TYPE.match(kind):
        # Said as required only when it is missing (a type given as `bad type!` read as required).
        what = "is required" if kind is None else "must be"
        found.append(
            ("type", f"{what}: 1-200 letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit")
        )
    return found + _optional_problems(event)


def _optional_problems(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The optional attributes' problems (subject, time, data's form)."""
    found: list[tuple[str, str]] = []
    subject = event.get("subject")
    if subject is not None and (not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT):
        found.append(("subject", f"1 to {MAX_SUBJECT} characters"))
    if event.get("time") is not None and parse_time(event.get("time")) is None:
        found.append(
            ("time", "an RFC 3339 timestamp with its offset (2026-12-07T10:00:00Z), in years 1 to 9999 in UTC")
        )
    if "data_base64" in event:
        found.append(("data_base64", "binary data is not taken: send JSON data in `data`"))
    content_type = event.get("datacontenttype")
    if content_type is not None and not (isinstance(content_type, str) and _is_json(content_type)):
        found.append(("datacontenttype", "only JSON data is taken (application/json, or left out)"))
    return found


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset (Z or ±hh:mm; its T and Z may be lowercase, as RFC 3339
    allows and a delay's until takes); None when it is not one."""
    if not isinstance(value, str) or not re.match(
        r"\A\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", value
    ):
        return None
    # A leap second (23:59:60, which RFC 3339 allows) is the instant after :59, as PostgreSQL reads
    # it: Python's datetime has no second 60, and such an event was refused.
    leap = value[17:19] == "60"
    if leap:
        value = value[:17] + "59" + value[19:]
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
        # An instant of the years 1 to 9999 in UTC, as stored and as firedBy.time says it (in UTC):
        # "0001-01-01T00:00:00+14:00" was stored in 1 BC and handed to the run as
        # "0001-12-31T10:00:00+00:00 BC", not a timestamp; 9999-12-31 at -10:00 in year 10000.
        in_utc = parsed.astimezone(UTC)
        if leap:
            # Added in UTC: 9999-12-31T23:59:60+01:00 is 22:59:60 UTC, an instant of year 9999,
            # where the second added at +01:00 overflowed the local year (a review).
            parsed = in_utc + timedelta(seconds=1)
    except (ValueError, OverflowError):
        return None
    return parsed


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class Subscription(NamedTuple):
    """An enabled event trigger as matching sees it: its eventType pattern and the only source it
    takes (None: any)."""

    pattern: str
    source: str | None


def pattern_matches(pattern: str, event_type: str) -> bool:
    """dw.event_type_matches_v1: the type itself, a prefix ending in ".*", or "*"."""
    return pattern == "*" or pattern == event_type or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))


def takes_every_event_of(old: Subscription, new: Subscription) -> bool:
    """Whether every event `new` matches, `old` matches too: a trigger changed from old to new
    matches no event it did not, and no event's count of triggers grows."""
    return (old.source is None or old.source == new.source) and pattern_matches(old.pattern, new.pattern)


# A type under a prefix that no trigger names exactly (no type has this character): what a prefix
# pattern stands for when the busiest type under it is looked for.
_UNNAMED = "\x00"


def busiest_event(new: Subscription, others: list[Subscription]) -> tuple[int, str]:
    """The most of `others` and `new` together that one event `new` takes would match, and that
    event, said ("com.shop.order.created", "a type under com.shop.", "any type"; "from S" when only
    one source gets there). Only the types the patterns name, or one under a prefix that none names
    exactly, need looking at: any other type is matched by the same triggers as one of those."""
    everyone = [*others, new]
    by_pattern: dict[str, Counter[str | None]] = defaultdict(Counter)
    for sub in everyone:
        by_pattern[sub.pattern][sub.source] += 1
    best = (0, "")
    for candidate in {_stand_in(pattern) for pattern in by_pattern}:
        if not pattern_matches(new.pattern, candidate):
            continue
        counts: Counter[str | None] = Counter()
        for pattern in _patterns_taking(candidate):
            counts.update(by_pattern.get(pattern, Counter()))
        anywhere = counts.pop(None, 0)
        source: str | None
        if new.source is not None:
            source, most = new.source, counts.get(new.source, 0)
        else:
            source, most = max(counts.items(), key=lambda item: item[1], default=(None, 0))
        if anywhere + most > best[0]:
            best = (anywhere + most, _said(candidate) + (f" from {source}" if most else ""))
    return best


def _stand_in(pattern: str) -> str:
    if pattern == "*":
        return _UNNAMED
    return pattern[:-1] + _UNNAMED if pattern.endswith(".*") else pattern


def _patterns_taking(event_type: str) -> list[str]:
    """Every pattern that takes the type: "*", itself, and each prefix of it that ends in "."."""
    prefixes = [event_type[: i + 1] + "*" for i, c in enumerate(event_type) if c == "."]
    return ["*", event_type, *prefixes]


def _said(candidate: str) -> str:
    if candidate == _UNNAMED:
        return "any type"
    if candidate.endswith(_UNNAMED):
        return f"a type under {candidate[:-1]}"
    return candidate
