"""What a principal id may be: one rule for a token's `sub`, the X-Principal-Id header and an
approval's approvers, so that an approver named in a definition is one a caller can be. Pure module
(validation, tokens and waits import it; it imports none of them)."""

from __future__ import annotations

import unicodedata

MAX_PRINCIPAL_ID = 200

# Unicode categories a name or an id must not hold: controls, format characters (zero-width space,
# right-to-left override) and line and paragraph separators. Invisible, or a line break in a log line.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Format characters that are part of how names are written: the zero-width non-joiner and joiner
# (Persian, Hindi and other scripts, emoji sequences).
_WRITTEN_FORMAT = frozenset({"\u200c", "\u200d"})


def has_unprintable_character(text: str) -> bool:
    """Whether the text holds a control, format (zero-width space, bidirectional override) or line or
    paragraph separator character: has_control_character, and what looks like nothing or breaks a
    line without being a control. The zero-width (non-)joiner, which scripts write names with, is
    not one."""
    return any(unicodedata.category(c) in _UNPRINTABLE_CATEGORIES and c not in _WRITTEN_FORMAT for c in text)


def principal_id_problem(text: str) -> str | None:
    """Why a principal id (surrounding whitespace stripped) is not one a caller can present, or None."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_PRINCIPAL_ID:
        return f"must be 1-{MAX_PRINCIPAL_ID} characters"
    if has_unprintable_character(stripped):
        return "must not contain control, invisible or line-separator characters"
    return None
