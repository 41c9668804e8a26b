"""Warnings that repeat while the database is away, said once per window (a review: a worker waiting
30 s for a database printed 16 copies of psycopg_pool's warning before its one-line error), and what
tells a login the server refuses for good from one that passes."""

from __future__ import annotations

import logging

from dataworkflows.cli import _first_line, login_refused
from dataworkflows.logs import RepeatFilter


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord("psycopg.pool", logging.WARNING, __file__, 1, text, None, None)


def test_a_repeated_warning_is_said_once_a_window_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=30.0, clock=lambda: now[0])
    said = []
    for second in range(0, 70, 2):
        now[0] = float(second)
        for text in ("error connecting in 'worker': refused", "error connecting in 'api': refused"):
            entry = record(text)
            if repeats.filter(entry):
                said.append((second, entry.getMessage()))
    assert said == [
        (0, "error connecting in 'worker': refused"),
        (0, "error connecting in 'api': refused"),
        (30, "error connecting in 'worker': refused (and 14 more like it since it was last said)"),
        (30, "error connecting in 'api': refused (and 14 more like it since it was last said)"),
        (60, "error connecting in 'worker': refused (and 14 more like it since it was last said)"),
        (60, "error connecting in 'api': refused (and 14 more like it since it was last said)"),
    ]
    # Another text is said at once.
    assert repeats.filter(record("error connecting in 'worker': timeout"))


def test_texts_without_end_keep_its_memory_bounded() -> None:
    repeats = RepeatFilter(window=30.0, clock=lambda: 0.0)
    assert all(repeats.filter(record(f"backend {pid} gone")) for pid in range(1000))
    assert len(repeats._said) <= 256


def test_lasting_refusals_of_a_login_are_told_from_passing_ones() -> None:
    prefix = 'connection failed: connection to server on socket "/tmp/.s.PGSQL.5432" failed: '
    lasting = [
        'FATAL:  database "nope" does not exist',
        'FATAL:  role "nobody" does not exist',
        'FATAL:  password authentication failed for user "ana"',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "ana", database "dw", no encryption',
        'FATAL:  role "ana" is not permitted to log in',
        'FATAL:  permission denied for database "dw"',
    ]
    passing = [
        "FATAL:  the database system is starting up",
        "FATAL:  the database system is shutting down",
        "FATAL:  the database system is in recovery mode",
        "FATAL:  sorry, too many clients already",
        "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
        "FATAL:  canceling authentication due to timeout",
        "FATAL:  terminating connection due to administrator command",
        # A review: a pooler's refusals, and a server's in another language, stopped what should wait.
        "FATAL:  no more connections allowed (max_client_conn)",
        "FATAL:  server login has been failing, cached error: connect failed (server_login_retry)",
        "FATAL:  tut mir leid, schon zu viele Verbindungen",
        "FATAL:  das Datenbanksystem startet",
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
        "timeout expired",
    ]
    assert [login_refused(prefix + reason) for reason in lasting] == [True] * len(lasting)
    assert [login_refused(prefix + reason) for reason in passing] == [False] * len(passing)


def test_a_host_with_an_at_sign_is_not_shown() -> None:
    """libpq reads an '@' of a password that is not percent-encoded as the password's end, and names
    the rest as a host (a review: the worker's last line showed "ss-secret@127.0.0.1")."""
    said = _first_line(Exception("connection failed: failed to resolve host 'ss-secret@127.0.0.1': [Errno -2] x"))
    assert "ss-secret" not in said and "write an @ in a password as %40" in said
    kept = 'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert _first_line(Exception(kept)) == kept
