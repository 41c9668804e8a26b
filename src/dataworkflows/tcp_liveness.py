"""libpq's TCP keepalive and user-timeout settings for the connections this package opens."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import psycopg.conninfo

# libpq's TCP settings for every connection the API, the worker and the CLI open, unless the connection
# string (or its service file) sets them: keepalive probes on an idle connection after 10 s, every 5 s,
# and a connection whose data or probes go unacknowledged for 20 s is closed (tcp_user_timeout). Without
# them a peer gone without a word (a network partition, a server whose host died, a failover to another
# address) was seen only when the kernel gave up on its retransmissions, about 15 minutes for a call in
# flight and never for an idle LISTEN connection: a worker's calls, and the notifications its fetch loop
# and its control listener wait for, hung that long. They change nothing over a Unix socket (libpq
# ignores them there, as with the embedded database), and cost nothing per call.
TCP_LIVENESS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "2",
    "tcp_user_timeout": "20000",
}
# libpq learnt tcp_user_timeout in PostgreSQL 12's release; an older one refuses the keyword.
_TCP_USER_TIMEOUT_LIBPQ = 120000


def tcp_liveness(conninfo: str) -> dict[str, Any]:
    """The TCP_LIVENESS settings `conninfo` leaves unset, as keyword arguments for psycopg's connect (which
    override the string's): none when it names a service (PGSERVICE or service=: the service file may set
    them, and a keyword argument would override it), and none for a string libpq cannot read (the connect
    says what is wrong with it)."""
    given = given_settings(conninfo)
    if given is None:
        return {}
    if "service" in given or os.environ.get("PGSERVICE"):
        return {}
    settings: dict[str, Any] = {key: value for key, value in TCP_LIVENESS.items() if key not in given}
    if psycopg.pq.version() < _TCP_USER_TIMEOUT_LIBPQ:
        settings.pop("tcp_user_timeout", None)
    return settings


def given_settings(conninfo: str) -> set[str] | None:
    """The keywords a connection string sets; None for one libpq cannot read."""
    try:
        return set(psycopg.conninfo.conninfo_to_dict(conninfo))
    except psycopg.ProgrammingError:
        return None
