"""DW_LOG_FORMAT=json: every line on stderr is one JSON object, libraries' records and the stop
notice included (ops review: psycopg's pool warnings came out as two lines of text each while the
database was away, and the SIGTERM notice as plain text)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging
from dataworkflows.logs import configure_logging
from dataworkflows.serving import _say
configure_logging("json", "info")
logging.getLogger("psycopg.pool").warning("error connecting in 'api': connection is bad\\n\\tIs the server running?")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("procrastinate").exception("the job raised")
_say("SIGTERM: stopping (live event streams end now)")
"""


def test_every_stderr_line_is_a_json_object() -> None:
    ran = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    lines = ran.stderr.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r.get("logger"), r["level"]) for r in records] == [
        ("psycopg.pool", "warning"),
        ("procrastinate", "error"),
        (None, "warning"),
    ], lines
    assert records[0]["event"].endswith("\tIs the server running?")
    assert "ZeroDivisionError" in records[1]["exception"]
    assert records[2]["event"].startswith("SIGTERM: stopping")
