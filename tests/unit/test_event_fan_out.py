"""The most enabled event triggers one event would match (README "Events", DW_MAX_EVENT_TRIGGERS):
events.busiest_event, checked against every type and source the triggers could be published with."""

from __future__ import annotations

import itertools

import pytest

from dataworkflows.events import Subscription, busiest_event, pattern_matches

S = Subscription


@pytest.mark.parametrize(
    ("new", "others", "expected"),
    [
        (S("x", None), [], (1, "x")),
        (
            S("a.b.c", None),
            [S("a.*", None), S("a.b.*", "/x"), S("a.b.*", "/y"), S("*", None), S("z", None)],
            (4, "a.b.c from /x"),
        ),
        (
            S("a.b.*", None),
            [S("a.*", None), S("a.b.c.*", None), S("a.b.c.d", None), S("a.b.c.d", None)],
            (5, "a.b.c.d"),
        ),
        # Under a prefix no trigger names exactly: the prefixes alone.
        (S("a.b.*", None), [S("a.*", None), S("a.b.c.*", None), S("q", None)], (3, "a type under a.b.c.")),
        (S("*", None), [S("*", None)], (2, "any type")),
        # A source only its own events get past: /x's triggers and /y's never meet.
        (S("t", "/x"), [S("t", "/y"), S("t", "/y"), S("t", None)], (2, "t from /x")),
        # "order.*" takes neither "order" nor "orders.x".
        (S("order.*", None), [S("order", None), S("orders.x", None)], (1, "a type under order.")),
    ],
)
def test_the_busiest_event(new: Subscription, others: list[Subscription], expected: tuple[int, str]) -> None:
    assert busiest_event(new, others) == expected


def test_no_event_matches_more_than_it_says() -> None:
    """Against brute force: every type and source the patterns could meet."""
    patterns = ["*", "a.*", "a.b.*", "a.b", "a.b.c", "a.bc", "b.*", "b"]
    sources = [None, "/x", "/y"]
    types = ["a", "a.b", "a.b.c", "a.bc", "a.b.d", "a.z", "b", "b.c", "c"]
    subscriptions = [S(p, s) for p in patterns for s in sources]
    for group in itertools.combinations(subscriptions, 4):
        *others, new = group
        count, _ = busiest_event(new, list(others))
        brute = max(
            sum(pattern_matches(sub.pattern, t) and sub.source in (None, source) for sub in group)
            for t in types
            for source in ("/fresh", "/x", "/y")
            if pattern_matches(new.pattern, t) and new.source in (None, source)
        )
        assert count == brute, group
