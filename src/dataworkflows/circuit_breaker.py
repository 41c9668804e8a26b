"""Circuit breakers for the connectors' HTTP destinations.

A destination that keeps failing (refused or reset connections, timeouts, 5xx answers) costs every
attempt sent to it a timeout's wait, and the destination, if it is struggling, more load. After
`failures` such outcomes in a row for one destination (a tenant's scheme, host and port), its
circuit opens: for `open_seconds` every request to it fails at once, without being sent, as
CircuitOpen, which the connectors answer as a retriable `circuit_open` error whose retry-after is
the time left (the node's retry policy waits at least that long, up to its maxDelay). Then one
request goes through as a trial (the others still fail at once): if it succeeds the circuit closes,
if it fails the circuit opens again. Any success closes a circuit and forgets its failures.

Per worker process and in memory, as Polly's are: a breaker is a worker's own observation of a
destination, and sharing it through PostgreSQL would cost a write for every failure. Per tenant:
one tenant's failing calls (a wrong path that answers 500) do not open the circuit for another
tenant's calls to the same host. 4xx answers and 429 are the caller's business, not the
destination's failure: an answer below 500 is the destination answering, and counts as a success (a
429's Retry-After already spaces the retries).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from dataworkflows import metrics

_log = structlog.get_logger("dataworkflows.http")

# Destinations (with failures) a worker remembers at most; the least recently used is forgotten.
MAX_CIRCUITS = 4096

Key = tuple[str, str, str, int]  # tenant, scheme, host, port


class CircuitOpen(httpx.ConnectError):
    """The destination's circuit is open: the request was not sent."""

    code = "circuit_open"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Circuit:
    failures: int = 0
    # time.monotonic() until which it is open; 0 while closed.
    open_until: float = 0.0
    # A half-open circuit's trial request is in flight.
    trial: bool = False
    # The last failure, as the requests refused meanwhile say it ("HTTP 503", "ConnectError").
    last: str = ""


class CircuitBreakers:
    """The circuits of one worker's destinations. `failures` 0: no circuit ever opens."""

    def __init__(
        self, failures: int = 5, open_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.open_seconds = open_seconds
        self._clock = clock
        self._circuits: OrderedDict[Key, _Circuit] = OrderedDict()

    def admit(self, key: Key) -> bool:
        """Whether the request may go (CircuitOpen if not); True when it is its circuit's trial."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.open_until == 0.0:
            return False
        left = circuit.open_until - self._clock()
        if left > 0:
            raise CircuitOpen(_open_message(key, circuit, left), retry_after=left)
        if circuit.trial:
            # Another request is the trial, which may take its whole timeout: this one waits as long as
            # the circuit stays open (a retry a second later, a review found, spent a run's attempts in
            # seconds while a trial waited 30 s for its answer).
            raise CircuitOpen(_open_message(key, circuit, 0.0), retry_after=self.open_seconds)
        circuit.trial = True
        return True

    def succeeded(self, key: Key) -> None:
        circuit = self._circuits.pop(key, None)
        if circuit is not None and circuit.open_until:
            metrics.CIRCUITS_CLOSED.inc()
            _log.info("circuit closed: the destination answered again", tenant=key[0], destination=_where(key))

    def failed(self, key: Key, trial: bool, outcome: httpx.Response | BaseException) -> None:
        if self.failures <= 0:
            return
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
            if len(self._circuits) > MAX_CIRCUITS:
                self._circuits.popitem(last=False)
        else:
            self._circuits.move_to_end(key)
        circuit.failures += 1
        circuit.last = f"HTTP {outcome.status_code}" if isinstance(outcome, httpx.Response) else type(outcome).__name__
        if trial or (circuit.open_until == 0.0 and circuit.failures >= self.failures):
            circuit.open_until = self._clock() + self.open_seconds
            circuit.trial = False
            metrics.CIRCUITS_OPENED.inc()
            _log.warning(
                "circuit opened: requests to the destination fail at once for a while",
                tenant=key[0],
                destination=_where(key),
                failures_in_a_row=circuit.failures,
                last_failure=circuit.last,
                open_seconds=self.open_seconds,
            )

    def abandoned(self, key: Key, trial: bool) -> None:
        """The request ended without an outcome of the destination's (cancelled, refused before it
        went): a trial it was lets the next request be the trial."""
        circuit = self._circuits.get(key)
        if trial and circuit is not None:
            circuit.trial = False

    def is_open(self, key: Key) -> bool:
        circuit = self._circuits.get(key)
        return circuit is not None and circuit.open_until > self._clock()


def _where(key: Key) -> str:
    _, scheme, host, port = key
    return f"{scheme}://{host}:{port}"


def _open_message(key: Key, circuit: _Circuit, left: float) -> str:
    failed = f"{_where(key)} failed {circuit.failures} times in a row (the last: {circuit.last})"
    if left <= 0:
        return f"{failed}; a trial request is testing it, so this one was not sent"
    return f"{failed}; its circuit is open for {left:.1f}s more, so the request was not sent"


def is_failure(outcome: httpx.Response | BaseException) -> bool | None:
    """A destination's failure (True), its success (False), or neither (None: the request did not
    reach it, or ended for the caller's reasons)."""
    if isinstance(outcome, httpx.Response):
        return outcome.status_code >= 500
    if isinstance(outcome, CircuitOpen | httpx.LocalProtocolError | httpx.UnsupportedProtocol | httpx.PoolTimeout):
        # Not sent, for the caller's reasons: a request h11 refuses to write (a header value that a
        # template rendered with a leading space, say: http.request's invalid_request, permanent) or a
        # URL httpx cannot send. Five of them opened the destination's circuit for every run of the
        # tenant (a review). Nor a request that waited for a connection of the worker's own pool
        # (PoolTimeout): the worker's own load, not the destination's answer.
        return None
    if isinstance(outcome, httpx.TransportError):
        return True
    return None
