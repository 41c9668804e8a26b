"""Process life of the serving commands, `up` and `api`.

- The API's port is taken first, before PostgreSQL starts or migrations run: a busy port is one
  line and exit code 2, not a traceback after a slow start. The bound sockets go to uvicorn, so no
  other process can take the port in between.
- SIGINT, SIGTERM and SIGHUP stop the process the same way: live event streams end at once (their
  clients reconnect to the next server with Last-Event-ID), the API finishes the requests it has,
  and the worker under `up` gives running attempts DW_SHUTDOWN_GRACE_SECONDS, then hands its runs
  back. A second SIGINT or SIGTERM forces the stop: the connections are dropped, the worker task
  is cancelled (its runs are re-queued by recovery once their leases expire), and the process exits
  after stopping the embedded PostgreSQL. A repeated SIGHUP does not force (a closed terminal may
  deliver it twice: from the kernel and from the shell). A stop still going on
  HANDBACK_SECONDS after the grace period is forced too.
- After a hangup, output that went to the terminal goes to /dev/null (writing to a hung-up
  terminal fails, and a failing log line must not break the stop).
- Before the event loop runs (PostgreSQL starting, migrations), SIGTERM and SIGHUP interrupt like
  Ctrl-C, so the `finally` that stops the embedded PostgreSQL runs. While PostgreSQL starts, the
  three are held, and delivered once the start has finished (or failed): an interruption between
  the server's start and `up` knowing of it would leave a server that nobody stops. (A Ctrl-C in
  the terminal also reaches initdb and pg_ctl, which are in the same process group; they abort
  the start, and clean up after themselves.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError, DataWorkflowsError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The exit code of a forced stop (128 + SIGINT, as a shell reports an interrupted command), and
# of a server or worker that failed (the CLI's EXIT_UNAVAILABLE).
EXIT_FORCED = 130
EXIT_FAILED = 3
# A failure that is a bad setting (ConfigurationError; the CLI's EXIT_USAGE).
EXIT_BAD_SETTING = 2
# A stop still going on this long after the grace period is forced: the worker's hand-back of the
# attempts it cancelled at the end of the grace period takes well under a second.
HANDBACK_SECONDS = 5.0
# After a forced stop, tasks get this long to end; then the event loop cancels what is left, and
# if that does not end either, WATCHDOG_SECONDS after the forced stop began the process exits
# anyway (after stopping the embedded PostgreSQL).
FORCE_SECONDS = 1.0
WATCHDOG_SECONDS = 5.0


class PortUnavailable(DataWorkflowsError):
    """The API cannot listen on its address."""

    code = "port_unavailable"


def bind(host: str, port: int) -> list[socket.socket]:
    """The API's listening sockets, one per address of `host` (as asyncio would bind them)."""
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {where}: {exc.strerror}; set --host or DW_API_HOST") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # Listening at once holds the port (SO_REUSEADDR lets another socket bind a port that
            # no socket listens on); connections wait in the backlog until the API serves them.
            sock.listen(128)
    except OSError as exc:
        close(sockets)
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"port {port} is already in use on {host} (another `dataworkflows up` or `api`?): "
                "stop that process, or choose another port with --port N or DW_API_PORT"
            ) from None
        # Not an address of this machine (EADDRNOTAVAIL) is the host's fault, not the port's (a review).
        choose = "--host or DW_API_HOST" if exc.errno == errno.EADDRNOTAVAIL else "--port or DW_API_PORT"
        raise PortUnavailable(f"cannot listen on {where}: {exc.strerror}; set {choose}") from None
    return sockets


def close(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def detach_from_terminal() -> None:
    """stdout and stderr that are a terminal (a character device) lead to /dev/null from now on."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        detach_from_terminal()
    # Said: a SIGTERM while `up` started ended it with exit code 130 and no word (a review).
    _say(f"{signal.Signals(signum).name}: stopping before the start has finished (exit code 130)")
    raise KeyboardInterrupt


def interrupt_on_stop_signals() -> None:
    """Until an event loop takes the signals over: SIGTERM and SIGHUP interrupt like Ctrl-C."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Holds the stop signals sent to this process while the block runs; they are delivered at
    its end."""
    if not _main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignores the stop signals while the block runs, in the programs it starts too: stopping the
    embedded PostgreSQL is not cut short by one more Ctrl-C."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: str) -> None:
    from dataworkflows.logs import notice

    with contextlib.suppress(OSError, ValueError):
        print(notice(text), file=sys.stderr, flush=True)


class ProblemH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol (h11), its answer to a request it cannot parse (a malformed
    request line or header, an invalid Content-Length) a problem document like the API's other 4xx,
    not uvicorn's `text/plain` "Invalid HTTP request received.". The request never reaches the
    application, so the answer is made here; the connection is closed after it, as uvicorn closes it."""

    def send_400_response(self, msg: str) -> None:
        # Ends with a newline, as every JSON answer of the API does (api/answer_newline.py).
        body = (
            json.dumps(
                {
                    "type": "https://dataworkflows.dev/problems/malformed_request",
                    "title": "Bad Request",
                    "status": 400,
                    # uvicorn's message ("Invalid HTTP request received."), and what it means.
                    "detail": f"{msg} Its request line or a header is not valid HTTP/1.1.",
                    "code": "malformed_request",
                }
            ).encode()
            + b"\n"
        )
        # The headers every answer of the app carries (the app's before-send hook never sees this
        # one: a review found it without them).
        from dataworkflows.api.security_headers import API_POLICY, EVERY_ANSWER

        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
            *EVERY_ANSWER,
            (b"content-security-policy", API_POLICY.encode()),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


class ApiServer(uvicorn.Server):
    """uvicorn's server without its own signal handling (the command's Stopper has it), answering a
    request it cannot parse with a problem document (ProblemH11Protocol)."""

    def __init__(self, app: Any, settings: Settings) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                access_log=False,
                # uvicorn's records go to the root handler configure_logging set up (JSON lines with
                # DW_LOG_FORMAT=json, scrubbed): its default config gave its loggers handlers of their
                # own, and any client's malformed request wrote plain text among the JSON (a review).
                log_config=None,
                # h11 always, with its 400 as a problem document (uvicorn's "auto" would take
                # httptools if it were installed, and answer in plain text).
                http=ProblemH11Protocol,
                # X-Forwarded-For is believed from DW_API_TRUSTED_PROXIES only. uvicorn's default
                # believed any loopback peer, so a caller on the host chose its address (its rate
                # bucket, a webhook sender's), and drained another's.
                proxy_headers=bool(settings.trusted_proxies),
                forwarded_allow_ips=settings.trusted_proxies or None,
                # Requests still running this long after the stop began are cancelled.
                timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def drop_connections(self) -> None:
        """A forced stop: requests are cancelled and connections closed, so that uvicorn's own
        stop goes on at once (the application's shutdown still runs: pools close cleanly)."""
        for task in list(self.server_state.tasks):
            task.cancel()
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()


class Stopper:
    """Stop requests: SIGINT, SIGTERM and SIGHUP stop; a second SIGINT or SIGTERM forces."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self._last_words: list[Callable[[], None]] = []
        self._watchdog: threading.Timer | None = None
        # A stop signal came after the event loop handed the signals over (hand_over): a forced stop.
        self.forced_late = False

    def install(self) -> None:
        """Takes the stop signals over, in the running event loop."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def hand_over(self) -> None:
        """The event loop is about to close, which puts each stop signal back to its default (SIGTERM:
        the process ends, exit 143, before the caller's last steps ignore them: a review). The signals
        go to a plain handler instead, which takes one as a second signal would: `forced_late`."""
        if not _main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._on_late_signal)

    def _on_late_signal(self, signum: int, frame: Any) -> None:
        sig = signal.Signals(signum)
        if sig == signal.SIGHUP:
            detach_from_terminal()
        elif not self.forced_late:
            _say(f"{sig.name} again: stopping at once")
            self.forced_late = True

    def exit_code(self, code: int) -> int:
        """The process's exit code: a signal during the last steps made the stop a forced one."""
        return EXIT_FORCED if self.forced_late and code == 0 else code

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            detach_from_terminal()
        if not self.stop.is_set():
            _say(
                f"{sig.name}: stopping (live event streams end now, running work gets up to "
                f"{self.grace_seconds:g}s); Ctrl-C again to stop at once"
            )
            self.stop.set()
        elif sig != signal.SIGHUP and not self.force.is_set():
            _say(f"{sig.name} again: stopping at once")
            self.force.set()

    def at_forced_exit(self, callback: Callable[[], None]) -> None:
        """Runs `callback` (stopping the embedded PostgreSQL) if a forced stop must end the process
        without unwinding."""
        self._last_words.append(callback)

    def _arm_watchdog(self, seconds: float) -> None:
        def hard_exit() -> None:
            _say("the stop did not finish in time: exiting")
            for callback in self._last_words:
                with contextlib.suppress(Exception):
                    callback()
            os._exit(EXIT_FORCED)

        self._watchdog = threading.Timer(seconds, hard_exit)
        self._watchdog.daemon = True
        self._watchdog.start()

    def disarm(self) -> None:
        """The event loop has ended: the caller stops what is left itself."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def _stopped_in_time(self, tasks: set[asyncio.Task[Any]]) -> bool:
        """Whether every task ended before a forced stop (a second signal, or the deadline)."""
        waiter = asyncio.create_task(asyncio.wait(tasks))
        forcing = asyncio.create_task(self.force.wait())
        timeout = self.grace_seconds + HANDBACK_SECONDS
        done, _ = await asyncio.wait({waiter, forcing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        forcing.cancel()
        if not done:
            _say(f"still stopping {timeout:g}s later: stopping at once")
        return waiter in done and not self.force.is_set()

    async def serve(
        self,
        server: ApiServer,
        sockets: Sequence[socket.socket],
        *,
        on_stop: Callable[[], None],
        others: Sequence[asyncio.Task[Any]] = (),
    ) -> int:
        """Serves the API on `sockets` beside `others` (the worker, which stops on self.stop) until
        a stop signal or until one of them ends; then stops them (see the module's docstring).
        `on_stop` runs first: it ends the live event streams."""
        api = asyncio.create_task(server.serve(sockets=list(sockets)), name="api")
        tasks = {api, *others}
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        self.stop.set()
        on_stop()
        server.should_exit = True
        forced = not await self._stopped_in_time(tasks)
        if forced:
            server.drop_connections()
            for task in others:
                task.cancel()
            # Whatever does not unwind in time (a task that swallows its cancellation), the
            # process still ends, and stops the embedded PostgreSQL on its way out.
            self._arm_watchdog(WATCHDOG_SECONDS)
            await asyncio.wait(tasks, timeout=FORCE_SECONDS)
        failures = [
            task.exception() for task in tasks if task.done() and not task.cancelled() and task.exception() is not None
        ]
        for failure in failures:
            _say(f"error: {failure}")
        if api.done() and not server.started and not forced:
            _say("error: the API did not start (see the lines above)")
            return EXIT_FAILED
        return EXIT_FORCED if forced else _exit_code(failures)


def _exit_code(failures: Sequence[BaseException | None]) -> int:
    """`serve`'s exit code once its tasks stopped in time: 0, or EXIT_FAILED for a task's failure, or
    EXIT_BAD_SETTING when every failure is a bad setting the worker met only once the API was up (a
    busy DW_WORKER_METRICS_PORT): 2, as `worker` alone says it, not 3, which says the database cannot
    be reached (a review: a supervisor retried it as an outage)."""
    if not failures:
        return 0
    if all(isinstance(failure, ConfigurationError) for failure in failures):
        return EXIT_BAD_SETTING
    return EXIT_FAILED
