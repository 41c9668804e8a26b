"""`dataworkflows audit-log` (README "The audit log"): what an export says when a page fails."""

from __future__ import annotations

import errno
import io
import json
import re
import sys

import httpx
import pytest

from dataworkflows import cli
from dataworkflows.cli import EXIT_RUN_FAILED, EXIT_UNAVAILABLE, build_parser


def _event(event_id: int) -> dict[str, object]:
    return {"id": event_id, "executionId": "e", "workflowId": "w", "nodeId": None, "type": "t", "at": "x"}


def test_an_export_cut_by_a_failing_page_still_says_where_to_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit-log --after ID >> audit.ndjson`: the first page was written, the second failed (a 503, the
    statement timeout): the export said only the error, not the id to go on from, so the next one
    started again from the old --after and wrote the first page's events twice."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["after"] == "5":
            return httpx.Response(200, json={"items": [_event(6), _event(7)], "nextAfter": 7})
        return httpx.Response(503, json={"title": "Service Unavailable", "detail": "statement timeout"})

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    code = cli.cmd_audit_log(build_parser().parse_args(["audit-log", "--after", "5", "--page-size", "2"]))
    out, err = capsys.readouterr()
    assert code == EXIT_UNAVAILABLE
    assert [json.loads(line)["id"] for line in out.splitlines()] == [6, 7]
    assert "statement timeout" in err
    assert "2 events; the next export: --after 7" in err, err


def test_an_export_cut_by_a_lost_connection_still_says_where_to_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["after"] == "0":
            return httpx.Response(200, json={"items": [_event(1)], "nextAfter": 1})
        raise httpx.ConnectError("refused", request=request)

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    with pytest.raises(httpx.ConnectError):
        cli.cmd_audit_log(build_parser().parse_args(["audit-log", "--page-size", "1"]))
    assert "1 events; the next export: --after 1" in capsys.readouterr().err


class _Stdout(io.StringIO):
    """A stdout that takes `lines` lines, then fails each write with `error`."""

    def __init__(self, lines: int, error: OSError) -> None:
        super().__init__()
        self.room = lines
        self.error = error

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise self.error
        self.room -= text.count("\n")
        return super().write(text)


def _pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pages of three events after 5: 6-8, then 9-11."""

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        ids = list(range(after + 1, after + 4))
        return httpx.Response(
            200, json={"items": [_event(i) for i in ids], "nextAfter": ids[-1] if after < 8 else None}
        )

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )


def test_an_export_whose_disk_fills_mid_page_says_the_last_event_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit-log --after 5 >> audit.ndjson` on a disk that fills after the fifth line: the export
    ended in a traceback, and said the last whole page's id (as it did for any stop mid-page), so the
    next export wrote again the events of the page already in the file. Each line now counts once it
    reached stdout: the next export goes on after the fifth event."""
    _pages(monkeypatch)
    stdout = _Stdout(5, OSError(errno.ENOSPC, "No space left on device"))
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli.main(["audit-log", "--after", "5", "--page-size", "3"])
    err = capsys.readouterr().err
    assert code == EXIT_RUN_FAILED, err
    assert [json.loads(line)["id"] for line in stdout.getvalue().splitlines()] == [6, 7, 8, 9, 10]
    assert "error: writing event 11 to stdout failed" in err and "No space left on device" in err, err
    assert err.strip().endswith("5 events; the next export: --after 10"), err
    assert "Traceback" not in err


def test_an_export_whose_reader_goes_mid_page_names_no_id_to_go_on_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit-log | head -n 4`: the lines a pipe took are not the lines its reader read, so no id the
    export can name is safe to go on from. It named the last whole page's (here 8), though the reader
    may have read fewer of that page (a page fits in a pipe's buffer): the next export passed over
    them. It now says how many it wrote and that the reader's last id is the one to go on from, and
    ends quietly (exit 1, as for any closed stdout)."""
    _pages(monkeypatch)
    stdout = _Stdout(4, BrokenPipeError(errno.EPIPE, "Broken pipe"))
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli.main(["audit-log", "--after", "5", "--page-size", "3"])
    err = capsys.readouterr().err
    assert code == EXIT_RUN_FAILED, err
    assert [json.loads(line)["id"] for line in stdout.getvalue().splitlines()] == [6, 7, 8, 9]
    assert "4 events written before stdout's reader went" in err, err
    assert "--after the last id it kept" in err and not re.search(r"--after \d", err), err
    assert "Traceback" not in err


def test_an_exported_line_is_json_whatever_characters_an_event_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's details come from whoever started it. The lines were written with their characters as
    they are, and the CLI's terminal guard then wrote a C1 control (U+0085, say) as `\\x85`, which is
    no JSON escape: the export's line could not be read back. The lines are ASCII now, each such
    character a JSON escape of itself."""
    details = {"reason": "a\x85b\u202ec\u2028d\x1be", "name": "Zoë"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [{**_event(1), "details": details}], "nextAfter": None})

    monkeypatch.setattr(
        cli, "_client", lambda args: httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    )
    assert cli.main(["audit-log", "--settle", "0"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.isascii() and json.loads(line)["details"] == details
