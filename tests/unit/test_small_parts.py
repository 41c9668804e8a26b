from __future__ import annotations

import uuid

import pytest

from dataworkflows.actions import ActionContext, default_registry
from dataworkflows.actions.echo import EchoParams
from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from dataworkflows.planning import PlanRetry
from dataworkflows.retry import backoff_seconds
from dataworkflows.sqlfiles import QUERIES, load_migrations, parse_named_queries
from dataworkflows.statuses import AttemptStatus


def ctx(attempt: int) -> ActionContext:
    return ActionContext(uuid.uuid4(), "wf", 1, "n", attempt, 3, {})


def test_backoff_is_exponential_and_capped() -> None:
    policy = PlanRetry(max_attempts=5, initial_delay_seconds=1, backoff_multiplier=2, max_delay_seconds=5, jitter=False)
    assert [backoff_seconds(policy, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff_seconds(policy, 1, retry_after=3) == 3
    jittered = PlanRetry(
        max_attempts=5, initial_delay_seconds=4, backoff_multiplier=2, max_delay_seconds=60, jitter=True
    )
    assert all(2 <= backoff_seconds(jittered, 1) <= 4 for _ in range(50))


async def test_echo_transient_failure_is_decided_by_attempt_number() -> None:
    action = default_registry().get("core.echo")
    params = EchoParams(message="m", simulate_failure="transient")
    results = [await action.execute(ctx(n), params) for n in (1, 2, 3, 1)]
    assert [r.status for r in results] == [
        AttemptStatus.RETRIABLE_FAILURE,
        AttemptStatus.RETRIABLE_FAILURE,
        AttemptStatus.SUCCEEDED,
        AttemptStatus.RETRIABLE_FAILURE,
    ]
    assert results[2].outputs == {"echo": "m"}
    permanent = await action.execute(ctx(1), EchoParams(simulate_failure="permanent"))
    assert permanent.status == AttemptStatus.FAILED and permanent.error is not None


def test_named_queries_parse_and_cover_what_code_uses() -> None:
    parsed = parse_named_queries("-- name: a\n-- says a\nSELECT 1;\n\n-- name: b\n-- says b\nSELECT %(x)s;\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT %(x)s"}
    with pytest.raises(ValueError, match="twice"):
        parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    for name in ["start_execution", "try_acquire", "record_attempt", "complete_execution", "recover_executions"]:
        assert name in QUERIES


def test_migrations_are_numbered_uniquely() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == "0001"


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        # A negative lease started workers whose every run failed worker_lost (ops review).
        ({"DW_LEASE_SECONDS": "-5"}, "DW_LEASE_SECONDS=-5.0: give a finite number, 0 or more"),
        ({"DW_LEASE_SECONDS": "0"}, "DW_LEASE_SECONDS=0.0: give a number above 0"),
        ({"DW_DB_TIMEOUT_SECONDS": "inf"}, "DW_DB_TIMEOUT_SECONDS=inf"),
        ({"DW_STALLED_WORKER_SECONDS": "nan"}, "DW_STALLED_WORKER_SECONDS=nan"),
        ({"DW_MAX_RECOVERIES": "-1"}, "DW_MAX_RECOVERIES=-1"),
        ({"DW_API_RATE_PER_MINUTE": "-10"}, "DW_API_RATE_PER_MINUTE=-10"),
        # A misspelt boolean was false: DW_REQUIRE_PRINCIPAL=ture turned the check off.
        ({"DW_REQUIRE_PRINCIPAL": "ture"}, "DW_REQUIRE_PRINCIPAL='ture': give true or false"),
        ({"DW_LOG_FORMAT": "xml"}, "DW_LOG_FORMAT='xml': give console or json"),
        ({"DW_LOG_LEVEL": "loud"}, "DW_LOG_LEVEL='loud'"),
        # A review: these were read only where used. A bad key answered 500 (API) or hung the worker
        # (`up` could only be killed -9); a tiny lease failed healthy runs worker_lost; a long queue
        # name dropped every wake-up silently; pool sizes the wrong way round were a traceback.
        ({"DW_CREDENTIALS_KEY": "AAAA"}, "DW_CREDENTIALS_KEY must be 32 bytes, base64-encoded: make one with"),
        ({"DW_CREDENTIALS_KEY": "notbase64"}, "DW_CREDENTIALS_KEY is not valid base64: make one with"),
        ({"DW_LEASE_SECONDS": "0.0000001"}, "DW_LEASE_SECONDS=1e-07: give at least 1"),
        ({"DW_TEMPLATE_TIMEOUT_SECONDS": "1e-9"}, "DW_TEMPLATE_TIMEOUT_SECONDS=1e-09: give at least 0.01"),
        # Below a second a worker's ordinary calls would be cut off.
        ({"DW_WORKER_ANSWER_SECONDS": "0.2"}, "DW_WORKER_ANSWER_SECONDS=0.2: give at least 1"),
        # A review: at 0 a worker asked for a free slot about 280 times a second.
        ({"DW_THROTTLE_DELAY_SECONDS": "0"}, "DW_THROTTLE_DELAY_SECONDS=0.0: give a number above 0"),
        ({"DW_THROTTLE_DELAY_SECONDS": "0.001"}, "DW_THROTTLE_DELAY_SECONDS=0.001: give at least 0.1"),
        ({"DW_JWT_JWKS_MIN_REFRESH_SECONDS": "0"}, "DW_JWT_JWKS_MIN_REFRESH_SECONDS=0.0: give a number above 0"),
        ({"DW_JWT_JWKS_MIN_REFRESH_SECONDS": "0.5"}, "DW_JWT_JWKS_MIN_REFRESH_SECONDS=0.5: give at least 1"),
        ({"DW_QUEUE": "q" * 41}, "DW_QUEUE='" + "q" * 41 + "': give a name of 1 to 40 bytes"),
        ({"DW_QUEUE": "é" * 21}, "give a name of 1 to 40 bytes"),
        ({"DW_POOL_MIN_SIZE": "20", "DW_POOL_MAX_SIZE": "5"}, "DW_POOL_MIN_SIZE=20 is above DW_POOL_MAX_SIZE=5"),
        # A review: "is not a valid float" left out `off`.
        ({"DW_RETENTION_DAYS": "abc"}, "DW_RETENTION_DAYS='abc': give a number of days, or off"),
        ({"DW_WEBHOOK_RETENTION_DAYS": "a week"}, "DW_WEBHOOK_RETENTION_DAYS='a week': give a number of days, or off"),
    ],
)
def test_a_bad_setting_is_refused_by_name(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(environ)
    assert words in refused.value.message, refused.value.message


def test_good_settings_still_read() -> None:
    settings = Settings.from_env(
        {
            "DW_REQUIRE_PRINCIPAL": "Off",
            "DW_METRICS_REQUIRE_AUTH": "YES",
            "DW_LOG_LEVEL": "WARNING",
            "DW_SCHEDULER_INTERVAL_SECONDS": "0",
            "DW_SHUTDOWN_GRACE_SECONDS": "0",
            "DW_IDLE_IN_TRANSACTION_SECONDS": "0",
            "DW_STATEMENT_TIMEOUT_SECONDS": "0",
            "DW_WORKER_ANSWER_SECONDS": "0",
            "DW_RETENTION_INTERVAL_SECONDS": "0",
            # 0 waits without limit for a migration's locks (it was refused: "give a number above 0").
            "DW_MIGRATE_LOCK_TIMEOUT_SECONDS": "0",
            "DW_QUEUE": "q" * 40,
            "DW_CREDENTIALS_KEY": "A" * 43 + "=",
        }
    )
    assert (settings.require_principal, settings.metrics_require_auth, settings.scheduler_interval_seconds) == (
        False,
        True,
        0.0,
    )


def test_settings_from_environment() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x", "DW_API_PORT": "6000", "DW_LEASE_SECONDS": "2.5"})
    assert (settings.database_url, settings.api_port, settings.lease_seconds) == ("postgresql://x", 6000, 2.5)
    with pytest.raises(ConfigurationError, match="DW_API_PORT"):
        Settings.from_env({"DW_API_PORT": "many"})


async def test_credential_providers_and_cipher() -> None:
    import pytest as _pytest

    from dataworkflows.credentials import (
        ChainedCredentialProvider,
        Cipher,
        CredentialNotFound,
        EnvCredentialProvider,
        Secret,
        env_name,
    )
    from dataworkflows.errors import DataWorkflowsError

    assert env_name("slack-main") == "DW_CONNECTION_SLACK_MAIN"
    provider = ChainedCredentialProvider([EnvCredentialProvider({"DW_CONNECTION_SLACK_MAIN": "xoxb-1"})])
    secret = await provider.get("slack-main")
    assert secret.reveal() == "xoxb-1" and "xoxb" not in repr(secret) and "xoxb" not in f"{secret}"
    with _pytest.raises(CredentialNotFound, match="DW_CONNECTION_NOPE"):
        await provider.get("nope")
    cipher = Cipher.from_setting(Cipher.generate_key())
    blob = cipher.encrypt("s3cret", "conn-a")
    assert b"s3cret" not in blob and cipher.decrypt(blob, "conn-a") == "s3cret"
    with _pytest.raises(DataWorkflowsError):
        cipher.decrypt(blob, "conn-b")  # bound to its connection name
    with _pytest.raises(DataWorkflowsError):
        cipher.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), "conn-a")
    assert Secret("a") == Secret("a")


def test_public_address_classification() -> None:
    import ipaddress

    from dataworkflows.http_client import is_public

    for private in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",
        "224.0.0.1",
    ]:
        assert not is_public(ipaddress.ip_address(private)), private
    for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"]:
        assert is_public(ipaddress.ip_address(public)), public


def test_an_idempotency_key_is_one_per_node_and_redrive() -> None:
    from uuid import UUID

    import msgspec
    import pytest

    from dataworkflows.actions import ActionContext
    from dataworkflows.actions.http import HttpRequestParams

    def ctx(attempt: int, generation: int) -> ActionContext:
        return ActionContext(UUID(int=1), "wf", 1, "call#3", attempt, 3, {}, generation=generation)

    first = ctx(1, 0).idempotency_key
    assert first == f"{UUID(int=1)}:call#3:0"
    assert ctx(2, 0).idempotency_key == first  # a retry, or the re-run of an interrupted attempt
    assert ctx(4, 3).idempotency_key != first  # after a redrive
    post = HttpRequestParams(url="https://x.test", method="POST")
    assert post.idempotency(ctx(1, 0)) == first
    assert HttpRequestParams(url="https://x.test").idempotency(ctx(1, 0)) is None
    for bad in ({"idempotencyHeader": "Bad Header"}, {"idempotencyKey": "line\nbreak"}, {"idempotencyKey": ""}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"url": "https://x.test", **bad}, HttpRequestParams)


def test_request_headers_are_logged_without_control_characters() -> None:
    """X-Correlation-Id and X-Request-Id go into every request's log lines before any handler
    checks them: a line break must not forge a line in the console format."""
    from dataworkflows.api.app import _loggable

    assert _loggable(None, 10) is None
    assert _loggable("order-42 é", 100) == "order-42 é"
    assert _loggable("a\nlevel=error event=forged\r\x00\u2028", 100) == "a\\nlevel=error event=forged\\r\\x00\\u2028"
    assert _loggable("x" * 300, 200) == "x" * 200
    # As ASGI gives header bytes (latin-1): UTF-8 is logged as sent; it was `â\x82¬` for `€`.
    assert _loggable("€ 注文".encode().decode("latin-1"), 100) == "€ 注文"
    assert _loggable(("é" * 150).encode().decode("latin-1"), 100) == "é" * 100
    assert _loggable("order\xff\x85", 100) == "orderÿ\\x85", "not UTF-8: latin-1, escaped"


def test_forwarded_headers_are_believed_from_the_trusted_proxies_only() -> None:
    from dataworkflows.serving import ApiServer

    def served(**kwargs: str) -> tuple[bool, object]:
        config = ApiServer(object(), Settings(**kwargs)).config
        return config.proxy_headers, config.forwarded_allow_ips

    assert served()[0] is False
    assert served(api_trusted_proxies="10.0.0.5, 192.168.0.0/16") == (True, ["10.0.0.5", "192.168.0.0/16"])
    with pytest.raises(ConfigurationError, match=r"DW_API_TRUSTED_PROXIES: 'proxy\.local'"):
        Settings(api_trusted_proxies="10.0.0.5,proxy.local")


async def test_a_busy_metrics_port_is_a_bad_setting_not_a_traceback() -> None:
    # `worker --metrics-port` on a busy port printed a traceback and exited 1 (ops review).
    import socket

    from dataworkflows.workers.app import run_worker

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", worker_metrics_port=port)
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            await run_worker(settings, install_signal_handlers=False)


def test_a_stream_ends_at_a_runs_end_that_no_redrive_follows() -> None:
    """A review: the live stream closed at a redriven run's first end (execution_failed, then
    execution_redriven and the rest in the same read) while the run was Running again."""
    from dataworkflows.api.executions import run_ended_in

    assert run_ended_in(["execution_started", "node_succeeded", "execution_succeeded"])
    assert not run_ended_in(["execution_started", "node_started"])
    assert not run_ended_in(["execution_failed", "execution_redriven", "node_started"])
    assert run_ended_in(["execution_failed", "execution_redriven", "node_succeeded", "execution_succeeded"])
    assert not run_ended_in([])


def test_a_lost_database_is_said_in_one_line() -> None:
    """A review: prune cut short by a stopping server printed PostgreSQL's CONTEXT too (the whole
    statement of dw.prune_executions_v1, about fifteen lines)."""
    import psycopg

    from dataworkflows.db import translated

    lost = psycopg.OperationalError(
        'terminating connection due to administrator command\nCONTEXT:  SQL statement "DELETE FROM dw.executions"\n'
        "PL/pgSQL function dw.prune_executions_v1(integer) line 12 at SQL statement"
    )
    assert str(translated(lost)) == "the database is unavailable: terminating connection due to administrator command"
    timed_out = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    assert (
        str(translated(timed_out)) == "the database cancelled a statement: canceling statement due to statement timeout"
    )


def test_an_address_not_of_this_machine_names_the_host_and_ipv6_urls_have_brackets() -> None:
    """A review: `up --host 10.99.99.99` said to set --port; `up --host ::1` printed http://::1:5131."""
    from dataworkflows.cli import http_url
    from dataworkflows.serving import PortUnavailable, bind

    with pytest.raises(PortUnavailable, match="set --host or DW_API_HOST"):
        bind("192.0.2.77", 0)  # TEST-NET-1: an address no machine here has
    assert http_url("::1", 5131) == "http://[::1]:5131"
    assert http_url("127.0.0.1", 5131) == "http://127.0.0.1:5131"


def test_a_stop_signal_after_the_event_loop_closed_is_a_forced_stop_not_a_default_death() -> None:
    """A review: a second SIGTERM just as `up`'s event loop closed found SIGTERM back at its default (the
    loop's handler removed) and ended the process, exit 143, before its last steps ignored the signals.
    The loop hands the signals to a plain handler before it closes: exit code 130, the steps still run."""
    import asyncio
    import os
    import signal
    import time

    from dataworkflows.serving import STOP_SIGNALS, Stopper

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stopper = Stopper(1.0)

    async def run() -> None:
        stopper.install()
        stopper.hand_over()

    try:
        asyncio.run(run())  # closes the loop, as `up`'s asyncio.run does
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs in this thread, between bytecodes
        assert stopper.forced_late
        assert (stopper.exit_code(0), stopper.exit_code(1)) == (130, 1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_logged_path_is_the_path_requested() -> None:
    """A second review: the header repair (latin-1 read again as UTF-8) ran on paths, decoded already,
    and /ui/Ã© was logged as /ui/é."""
    from dataworkflows.api.problems import loggable_path

    assert loggable_path("/ui/Ã©") == "/ui/Ã©"
    assert loggable_path("/ui/\x1b[2J\u202e") == "/ui/\\x1b[2J\\u202e"
    assert loggable_path("/" + "x" * 300) == "/" + "x" * 199
