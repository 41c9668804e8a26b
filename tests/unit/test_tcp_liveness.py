"""libpq's keepalive and tcp_user_timeout settings on every connection the package opens, unless the
connection string says otherwise (tests/faults/test_partition.py: what they are for)."""

from __future__ import annotations

import psycopg
import pytest

from dataworkflows import tcp_liveness as liveness
from dataworkflows.db import make_pool
from dataworkflows.tcp_liveness import TCP_LIVENESS, tcp_liveness


def test_every_setting_the_string_leaves_unset_is_added() -> None:
    assert tcp_liveness("postgresql://app@db.internal/dw") == TCP_LIVENESS
    assert tcp_liveness("host=db.internal dbname=dw") == TCP_LIVENESS


@pytest.mark.parametrize(
    "conninfo",
    [
        "postgresql://app@db.internal/dw?keepalives_idle=60&tcp_user_timeout=0",
        "host=h keepalives_idle=60 tcp_user_timeout=0",
    ],
)
def test_what_the_string_sets_is_its_own(conninfo: str) -> None:
    settings = tcp_liveness(conninfo)
    assert "keepalives_idle" not in settings and "tcp_user_timeout" not in settings
    assert settings["keepalives"] == "1"
    # psycopg's keyword arguments override the string's: the string's value must not be among them.
    params = psycopg.conninfo.conninfo_to_dict(conninfo, **settings)
    assert params["keepalives_idle"] == "60" and params["tcp_user_timeout"] == "0"


def test_a_service_file_may_set_them_so_none_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tcp_liveness("service=dw") == {}
    monkeypatch.setenv("PGSERVICE", "dw")
    assert tcp_liveness("host=h") == {}


def test_a_string_libpq_cannot_read_is_left_to_the_connect_to_refuse() -> None:
    assert tcp_liveness("host=h dbname='unterminated") == {}


def test_an_old_libpq_gets_no_tcp_user_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness.psycopg.pq, "version", lambda: 110000)
    settings = tcp_liveness("host=h")
    assert "tcp_user_timeout" not in settings and settings["keepalives_idle"] == TCP_LIVENESS["keepalives_idle"]


def test_pools_carry_them_and_so_does_procrastinates_listen_connection() -> None:
    # Procrastinate opens its LISTEN connection with the pool's conninfo and kwargs
    # (PsycopgConnector._get_standalone_connection).
    pool = make_pool("host=db.internal dbname=dw", min_size=1, max_size=1)
    assert pool.kwargs == TCP_LIVENESS


async def test_the_workers_control_listener_carries_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its LISTEN connection is its own, not the pool's: an idle one, which only keepalives and
    # tcp_user_timeout see gone (tests/faults/test_partition.py sets them in its URL, so it cannot
    # tell whether the defaults reach this connection).
    import asyncio

    from workers import app

    stop = asyncio.Event()
    seen: list[dict[str, object]] = []

    async def connect(conninfo: str, **kwargs: object) -> None:
        seen.append(kwargs)
        stop.set()
        raise psycopg.OperationalError("no server here")

    monkeypatch.setattr(app.psycopg.AsyncConnection, "connect", connect)
    await app.control_listener("host=db.internal dbname=dw", runtime=None, stop=stop)  # type: ignore[arg-type]
    assert seen == [{"autocommit": True, **TCP_LIVENESS}]
