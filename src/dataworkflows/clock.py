"""The database's clock, as a worker reads it.

A worker decides times that the database then compares with its own `now()`: a delay's due time, a
wait's timeout, a retry's time, whether the run is past its deadline. Read from the worker host's
clock, a host whose clock was off (NTP lost, a VM resumed from a snapshot) fired a ten-minute delay
at once an hour behind, timed out a fresh run two hours ahead, and let a run outlive its deadline
behind (a review). So a worker reads the database's time: its own clock plus the offset measured at
the last exchange with the database (`synchronize`: at start, then every SYNC_SECONDS from the
waker's loop), to within half a round trip. Leases, schedules, recovery and the waker's index scan
were already decided by the database's clock alone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from dataworkflows import metrics

if TYPE_CHECKING:
    from dataworkflows.db import Database

log = structlog.get_logger("dataworkflows.clock")

# How often a worker measures the offset again (a host's clock drifts by parts per million; one that
# is stepped is right again within this long).
SYNC_SECONDS = 10.0
# Readings of the database's clock a measurement takes (on one connection): the quickest counts.
SAMPLES = 3
# An offset this large is said in the log, once for each time it changes by as much.
WARN_SECONDS = 1.0


def _wall() -> float:
    """This host's clock (seconds since 1970); a test skews it here."""
    return time.time()


class DatabaseClock:
    """This process's reading of the database server's clock."""

    def __init__(self) -> None:
        self.offset = 0.0  # seconds the database's clock is ahead of this host's
        self._warned_at: float | None = None

    def now(self) -> datetime:
        """The database's time now, as well as this process knows it."""
        return datetime.fromtimestamp(_wall() + self.offset, UTC)

    def observe(self, sent: float, server: datetime, received: float) -> None:
        """A reading of the server's clock (`server`) between this host's `sent` and `received`:
        taken as at the midpoint of the round trip."""
        self.offset = server.timestamp() - (sent + received) / 2
        metrics.CLOCK_OFFSET.set(self.offset)
        if abs(self.offset) >= WARN_SECONDS and (
            self._warned_at is None or abs(self.offset - self._warned_at) >= WARN_SECONDS
        ):
            self._warned_at = self.offset
            log.warning(
                "this host's clock is off the database's: times are read from the database's",
                offset_seconds=round(self.offset, 3),
            )
        elif abs(self.offset) < WARN_SECONDS:
            self._warned_at = None

    def seconds_until(self, at: datetime) -> float:
        """How long from now until `at` (a time of the database's clock); negative once it is past."""
        return (at - self.now()) / timedelta(seconds=1)


CLOCK = DatabaseClock()


def now() -> datetime:
    """The database's time now, as this process reads it."""
    return CLOCK.now()


def iso_time(text: str) -> datetime:
    """ISO 8601 text as a datetime (naive when it names no offset). RFC 3339's lowercase z, which
    fromisoformat refuses, is UTC as its Z is (a delay's until, the executions list's window and the
    CLI's --since took one and not the other); ValueError for anything else it cannot read."""
    stripped = text.strip()
    if stripped[-1:] in ("Z", "z"):
        stripped = stripped[:-1] + "+00:00"
    return datetime.fromisoformat(stripped)


async def synchronize(db: Database) -> float:
    """Measures the offset of this host's clock from the database's; returns it (seconds). Of
    SAMPLES readings on one connection, the one with the shortest round trip counts (its midpoint
    is off by at most half of it)."""
    readings = await db.operations.database_times(_wall, SAMPLES)
    sent, server, received = min(readings, key=lambda r: r[2] - r[0])
    CLOCK.observe(sent, server, received)
    return CLOCK.offset
