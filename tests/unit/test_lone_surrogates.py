"""Which JSON texts msgspec refuses for a lone surrogate escape, said as such (a review: a surrogate
pair beside a NaN, or an escaped backslash before "ud800", was said to be a lone surrogate)."""

from __future__ import annotations

import pytest

from dataworkflows.json_text import lone_surrogate


@pytest.mark.parametrize(
    ("body", "lone"),
    [
        (b'{"name": "\\ud800"}', True),
        (b'{"name": "x\\udc00y"}', True),
        (b'["\\ud83d"]', True),
        (b'{"\\ud800": 1}', True),
        # A pair is one character; beside what msgspec refuses for another reason, it is not the cause.
        (b'{"user": "ana \\ud83d\\ude00", "score": NaN}', False),
        (b'{"u": "\\ud83d\\ude00", "n": Infinity}', False),
        (b'{"u": "\\ud83d\\ude00", "n": 1e400}', False),
        # An escaped backslash, then the letters: no surrogate at all.
        (b'{"path": "C:\\\\ud800", "n": Infinity}', False),
        (b'{"path": "C:\\\\ud800"', False),
        (b'{"name": "\\ud800"', False),
    ],
)
def test_a_lone_surrogate_is_told_from_what_only_looks_like_one(body: bytes, lone: bool) -> None:
    assert lone_surrogate(body) is lone
