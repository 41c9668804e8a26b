"""Following a run from the command line (`run --wait`, `logs`, `dead-letters redrive --wait`): each
event of the run's log as a line, with the time since the run was asked for and, when a node ends,
how long it ran; then the run's outcome as an exit code. Times are the server's (the events' `at`),
so a slow terminal or network does not stretch them.

The live stream is the API's server-sent events (GET /executions/{id}/events with Accept:
text/event-stream). `--timeout` bounds the whole wait: every read waits at most until the deadline,
and a stream that ends or breaks before the run does is resumed with Last-Event-ID. A server
without the stream (a proxy that buffers it) is polled instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

# Exit codes: see README "Exit codes".
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4

FINAL = {"Succeeded", "Failed", "Cancelled", "TimedOut"}
FINAL_EVENTS = {"execution_succeeded", "execution_failed", "execution_cancelled", "execution_timedout"}
_NODE_ENDS = {
    "node_succeeded": "Succeeded",
    "node_failed": "Failed",
    "node_skipped": "Skipped",
    "node_cancelled": "Cancelled",
}
# Events a read of the log asks for: the API's largest page.
EVENTS_PAGE = 1000
# The longest a single read of the stream waits (the server sends a keepalive every 15 s).
_READ_SECONDS = 30.0


def _print(text: str) -> None:
    print(text, flush=True)


def seconds_text(seconds: float) -> str:
    """0.042s, 1.5s, 2m05s, 1h02m."""
    if seconds < 10:
        return f"{seconds:.3f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _error_text(details: dict[str, Any]) -> str:
    error = details.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")
    return str(error or "")


class Printer:
    """Turns events into lines. `everything`: every event (logs); else what a person waiting for
    the run wants to see (run --wait): nodes starting and ending, retries, waits, control.
    (A plain class: dataclasses would cost this command's start-up 50 ms of imports.)"""

    def __init__(self, *, everything: bool = False, write: Callable[[str], None] | None = None) -> None:
        self.everything = everything
        self.write = write or _print
        self.first: datetime | None = None
        self.started: dict[str, datetime] = {}
        self.last_id = 0

    def show(self, event: dict[str, Any]) -> None:
        self.last_id = max(self.last_id, int(event.get("id") or 0))
        at = _when(event)
        if at is not None and self.first is None:
            self.first = at
        text = self.describe(event, at)
        if text is None:
            return
        offset = f"+{seconds_text((at - self.first).total_seconds())}" if at and self.first else ""
        stamp = f"{at:%H:%M:%S.%f}"[:12] if at else "-"
        self.write(f"{stamp} {offset:>8}  {text}".rstrip())

    def describe(self, event: dict[str, Any], at: datetime | None) -> str | None:
        kind = str(event.get("type"))
        node = str(event.get("nodeId") or "")
        details = event.get("details") or {}
        text = _node_text(kind, node, details, at, self._elapsed(kind, node, at))
        if text is None and kind in {"execution_suspended", "execution_resumed", "execution_recovered", "lease_lost"}:
            text = f"(run {kind.removeprefix('execution_').replace('_', ' ')})"
        if text is None and self.everything:
            text = f"{node or '(run)':<24} {kind} {json.dumps(details, separators=(',', ':'))[:300]}"
        return text

    def _elapsed(self, kind: str, node: str, at: datetime | None) -> str:
        if kind == "node_started" and at is not None:
            self.started[node] = at
            return ""
        begun = self.started.get(node)
        if kind in _NODE_ENDS or kind == "node_retry_scheduled":
            self.started.pop(node, None)
        if begun is None or at is None or kind not in {*_NODE_ENDS, "node_retry_scheduled"}:
            return ""
        return f" in {seconds_text((at - begun).total_seconds())}"


def _retry_in(details: dict[str, Any], at: datetime | None) -> str:
    """ " in 1.5s": when the next attempt is due, from the event's own time."""
    nxt = _when({"at": details.get("nextAttemptAt")}) if details.get("nextAttemptAt") else None
    if not nxt or not at:
        return ""
    delay = (nxt - at).total_seconds()
    return f" in {seconds_text(delay)}" if delay >= 0.001 else " now"


def _node_text(kind: str, node: str, details: dict[str, Any], at: datetime | None, elapsed: str) -> str | None:
    """One line for a node's event; None for the others."""
    attempt = details.get("attempt")
    if kind == "node_started":
        return f"{node:<24} started" + (f" (attempt {attempt})" if attempt and attempt > 1 else "")
    if kind in _NODE_ENDS:
        line = f"{node:<24} {_NODE_ENDS[kind]}{elapsed}"
        if kind == "node_failed":
            line += f": {_error_text(details)}"
        return line.rstrip(": ")
    if kind == "node_retry_scheduled":
        retry = f"retrying{_retry_in(details, at)}"
        error = details.get("error")
        if isinstance(error, dict) and error.get("code") == "attempt_interrupted":
            # Its worker stopped: no failure of the node, and not counted against its retries.
            return f"{node:<24} attempt {attempt} interrupted{elapsed}: {_error_text(details)} ({retry}, not counted)"
        return f"{node:<24} attempt {attempt} failed{elapsed}: {_error_text(details)} ({retry})"
    if kind == "wait_started":
        name = f" {details['name']}" if details.get("name") else ""
        until = details.get("dueAt") or details.get("expiresAt")
        return f"{node:<24} waiting for {details.get('kind', 'wait')}{name}" + (f" (until {until})" if until else "")
    if kind == "condition_error":
        return f"{node:<24} condition error: {_error_text(details) or details}"
    return None


def outcome(client: httpx.Client, execution_id: str, write: Callable[[str], None]) -> int | None:
    """The run's final line and exit code; None while it has not ended."""
    response = client.get(f"/api/v1/executions/{execution_id}")
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        # Asking again gets the same answer: say it (a run whose status the API could not read
        # was followed for ever).
        raise Refused(response)
    if response.status_code != 200:
        return None
    execution = response.json()
    if execution["status"] not in FINAL:
        return None
    error = execution.get("error") or {}
    suffix = f": {error.get('message')}" if error.get("message") else ""
    took = ""
    start, end = execution.get("startTime"), execution.get("endTime")
    if start and end:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        took = f" in {seconds_text(seconds)}"
    write(f"execution {execution_id} {execution['status']}{took}{suffix}")
    return EXIT_OK if execution["status"] == "Succeeded" else EXIT_RUN_FAILED


def timed_out(client: httpx.Client, execution_id: str, timeout: float, write: Callable[[str], None]) -> int:
    """EXIT_TIMEOUT, saying the run goes on; or, when the run ended as the time ran out, its outcome
    (it was "timeout: ... is still Succeeded; it goes on", exit 4)."""
    with contextlib.suppress(Exception):  # then the message below
        code = outcome(client, execution_id, write)
        if code is not None:
            return code
    status = "?"
    with contextlib.suppress(Exception):  # the message below is what matters
        response = client.get(f"/api/v1/executions/{execution_id}", timeout=5.0)
        status = response.json().get("status", "?") if response.status_code == 200 else status
    print(
        f"timeout: {timeout:g}s passed and execution {execution_id} is still {status}; it goes on "
        f"(`dataworkflows logs {execution_id} --follow` follows it again)",
        file=sys.stderr,
    )
    return EXIT_TIMEOUT


# Connections lost or refused in a row before a follow gives up (about a minute of waits).
_RECONNECTS = 35


class _NoStream(Exception):
    """The server answered the events request without a live stream."""


class Refused(Exception):
    """The API refused a request (its problem is in the response)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def follow(client: httpx.Client, execution_id: str, printer: Printer, *, timeout: float | None) -> int:
    """Prints the run's events until it ends; its exit code (EXIT_TIMEOUT once `timeout` passed)."""
    import httpx

    deadline = None if timeout is None else time.monotonic() + timeout
    broken = 0  # connections lost in a row
    connected = False  # an API that never answered is not waited for: the URL may be wrong
    while True:
        remaining = _READ_SECONDS if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return timed_out(client, execution_id, timeout or 0, printer.write)
        try:
            # A read timeout: nothing within the read window (at most until the deadline).
            with contextlib.suppress(httpx.ReadTimeout):
                _read_stream(client, execution_id, printer, deadline, min(remaining, _READ_SECONDS))
            connected = True
            code = outcome(client, execution_id, printer.write)
        except _NoStream:
            return poll(client, execution_id, printer, deadline=deadline, timeout=timeout)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError, httpx.ConnectTimeout, Refused) as exc:
            # The connection dropped, or none could be made: a server restarting (until this release
            # a refused connection ended the follow at once, exit 3, while the run went on); or the API
            # answered 503, its database away (a restart ends the streams, and they answer 503 until it
            # is back: that ended the follow too). Resume with Last-Event-ID, for about a minute.
            if isinstance(exc, Refused) and exc.response.status_code != 503:
                raise
            dropped = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | Refused)
            connected = connected or dropped or printer.last_id > 0
            broken += 1
            if not connected or broken > _RECONNECTS:
                raise
            time.sleep(min(0.2 * broken, 2.0))
            continue
        broken = 0
        if code is not None:
            return code
        # Not ended yet (a stream the server closed, stopping): look again a little later.
        time.sleep(0.1)


def _read_stream(
    client: httpx.Client, execution_id: str, printer: Printer, deadline: float | None, read: float
) -> None:
    """Prints events from one stream connection, until the final event, the stream's end (the
    server stopping) or the deadline."""
    import httpx

    headers = {"Accept": "text/event-stream"}
    if printer.last_id:
        headers["Last-Event-ID"] = str(printer.last_id)
    with client.stream(
        "GET",
        f"/api/v1/executions/{execution_id}/events",
        headers=headers,
        timeout=httpx.Timeout(10.0, read=max(read, 0.05)),
    ) as response:
        if response.status_code != 200:
            response.read()
            if response.status_code < 400 or _too_many_streams(response):
                # The caller holds the most live streams the API lets it (DW_MAX_STREAMS_PER_CALLER):
                # the log is read a page at a time instead.
                raise _NoStream
            raise Refused(response)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            raise _NoStream
        for line in response.iter_lines():
            if line.startswith("data:") and line[5:].strip():
                event = json.loads(line[5:].strip())
                printer.show(event)
                if event.get("type") in FINAL_EVENTS:
                    return
            if deadline is not None and time.monotonic() >= deadline:
                return


def _too_many_streams(response: httpx.Response) -> bool:
    """Whether the API refused the stream as one too many of its caller's (429 too_many_streams)."""
    if response.status_code != 429:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("code") == "too_many_streams"


def poll(
    client: httpx.Client,
    execution_id: str,
    printer: Printer,
    *,
    deadline: float | None,
    timeout: float | None,
    page_size: int = EVENTS_PAGE,
) -> int:
    """Without a live stream: reads the log every so often (the same lines, a little later), every
    page of it each time, so that a run that ended with more than a page unread is printed whole."""
    delay = 0.1
    while True:
        # The status first, then the log: a run seen ended has every event in the log read after.
        last_line: list[str] = []
        code = outcome(client, execution_id, last_line.append)
        # A run still going is read until the deadline (a long log's pages would outlast it); an
        # ended one is read whole.
        print_log(client, execution_id, printer, page_size=page_size, until=deadline if code is None else None)
        if code is not None:
            for line in last_line:
                printer.write(line)
            return code
        if deadline is not None and time.monotonic() + delay > deadline:
            return timed_out(client, execution_id, timeout or 0, printer.write)
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def log_events(
    client: httpx.Client,
    execution_id: str,
    *,
    after: int = 0,
    page_size: int = EVENTS_PAGE,
    until: float | None = None,
) -> Iterator[dict[str, Any]]:
    """The run's log after event `after`, every page: the API says a next page with a `Link: <…>;
    rel="next"` header. A full page without one is read past too (a server from before the header).
    With `until` (time.monotonic()), no page is asked for after it."""
    while until is None or time.monotonic() < until:
        response = client.get(f"/api/v1/executions/{execution_id}/events", params={"after": after, "limit": page_size})
        if response.status_code != 200:
            raise Refused(response)
        events = response.json()
        for event in events:
            after = max(after, int(event.get("id") or 0))
            yield event
        if not events or ("next" not in response.links and len(events) < page_size):
            return


def event_id_of(client: httpx.Client, execution_id: str, kind: str, **details: Any) -> int:
    """The id of the run's last event of this kind whose details hold `details` (0: none), its whole
    log read: where a follow that must not show what came before starts (`dead-letters redrive
    --wait` starts after its redrive's event, not at the failed run's first line)."""
    found = 0
    for event in log_events(client, execution_id):
        said = event.get("details") or {}
        if event.get("type") == kind and all(said.get(key) == value for key, value in details.items()):
            found = int(event.get("id") or 0)
    return found


def print_log(
    client: httpx.Client,
    execution_id: str,
    printer: Printer,
    *,
    page_size: int = EVENTS_PAGE,
    until: float | None = None,
) -> int:
    """The run's log so far, every page (log_events), from the printer's last event on. With `until`
    (time.monotonic()), no page is asked for after it: the caller's deadline decides what comes next."""
    for event in log_events(client, execution_id, after=printer.last_id, page_size=page_size, until=until):
        printer.show(event)
    return EXIT_OK
