"""The stop signals while a worker closes (run_worker's last steps, after its event loop's handlers
are gone)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from dataworkflows import traces
from dataworkflows.config import Settings
from dataworkflows.workers.app import run_worker


async def test_a_stop_signal_as_the_worker_closes_does_not_end_the_process_by_its_default(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_worker gave SIGTERM and SIGHUP back to their default action as it began to close (pools,
    helpers, traces): a second SIGTERM there ended `dataworkflows worker` at once, without its
    `finally`, and the embedded server it had started (no `up`, no DATABASE_URL) ran on for nobody
    (shown: exit -15, the postmaster still running). They interrupt like Ctrl-C instead, as before the
    loop took them, so that the command's `finally` stops the server."""
    seen: dict[str, Any] = {}
    real_flush = traces.flush

    def flush(*args: Any, **kwargs: Any) -> Any:
        # One of the worker's last steps, after its handlers were removed.
        seen.update({sig.name: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)})
        return real_flush(*args, **kwargs)

    monkeypatch.setattr(traces, "flush", flush)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stop = asyncio.Event()
    settings = Settings(database_url=dsn, worker_poll_seconds=0.2, recovery_interval_seconds=0.5)
    try:
        task = asyncio.create_task(run_worker(settings, concurrency=2, install_signal_handlers=True, stop=stop))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert seen, "the worker did not flush its traces"
    assert all(handler not in (signal.SIG_DFL, None) for handler in seen.values()), seen
