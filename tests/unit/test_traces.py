"""dataworkflows.traces without a database: when the environment turns tracing on, and that spans
really leave over OTLP/HTTP to the configured endpoint (a loopback server standing in for a
collector)."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from dataworkflows import traces
from tests.fakes import loopback_http_server


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_with_an_otlp_endpoint(env: dict[str, str], expected: bool) -> None:
    assert traces.requested(env) is expected


def test_without_an_endpoint_start_leaves_tracing_off() -> None:
    assert traces.start({}) is False
    assert not traces.enabled()
    headers = {"Accept": "*/*"}
    traces.inject(headers)
    assert headers == {"Accept": "*/*"}


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, int]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self.received.append((self.path, self.headers.get("content-type", ""), length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[str]:
    with loopback_http_server(_Collector) as url:
        yield url


async def test_spans_are_exported_over_otlp_http_to_the_configured_endpoint(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "dw-test")
    _Collector.received.clear()
    try:
        assert traces.start() is True
        assert traces.start() is True  # idempotent: `up` starts the API and a worker in one process

        async def work() -> str:
            return "done"

        assert await traces.attempt("n1", "core.echo", 1, work()) == "done"
        traces.flush()
    finally:
        traces.stop()
    assert not traces.enabled()
    assert _Collector.received, "no OTLP request reached the collector"
    path, content_type, length = _Collector.received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf" and length > 0


async def test_a_flush_to_a_collector_that_never_answers_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the SDK's force_flush ignores its timeout and sends every queued batch, each up to
    OTEL_EXPORTER_OTLP_TIMEOUT; a stalled collector held a stopping API or worker 9-20 s, and a
    SIGTERM of `up` became a forced stop (exit 130)."""
    import socket
    import threading
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts, never answers
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    provider = None
    try:
        assert traces.start()
        provider = traces._provider

        async def noop() -> None:
            return None

        for i in range(1500):  # three batches of 512
            await traces.attempt(f"n{i}", "core.echo", 1, noop())
        began = time.monotonic()
        traces.flush(1000)
        assert time.monotonic() - began < 2.0
    finally:
        with traces._lock:
            traces._use_locked(None)
        if provider is not None:  # its export threads end with the socket (daemon: not waited for)
            threading.Thread(target=provider.shutdown, daemon=True).start()
        silent.close()


def test_a_setting_the_sdk_refuses_is_a_bad_setting_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: OTEL_BSP_MAX_QUEUE_SIZE=-5 stopped `worker` and `api` with the SDK's ValueError, a
    traceback and exit 1; the CLI says a ConfigurationError in one line, exit 2."""
    from dataworkflows.errors import ConfigurationError

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "-5")
    try:
        with pytest.raises(ConfigurationError, match=r"OTEL_.*max_queue_size must be a positive integer"):
            traces.start()
        assert not traces.enabled()
    finally:
        traces.stop()
