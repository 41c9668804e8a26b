"""The API served on a loopback port in the test's event loop, for CLI commands that go through it
(they run in a thread: httpx's sync client), and a runner of one command that returns its exit code
and what it wrote."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from dataworkflows.api.app import create_app
from dataworkflows.cli import build_parser
from dataworkflows.config import Settings
from tests.fakes import free_port

Command = Callable[..., Awaitable[tuple[int, str, str]]]


@contextlib.asynccontextmanager
async def served_api(dsn: str) -> AsyncIterator[str]:
    """The API on a free port until the block ends; its URL. Without its access log: it would write
    to the output the test reads."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(database_url=dsn, api_access_log=False)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving  # its failure, said
                raise AssertionError("the API stopped before it started")
            await asyncio.sleep(0.02)  # the server's start-up, not a timed assertion
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def cli_command(url: str, capsys: pytest.CaptureFixture[str], handler: Callable[[Any], int], *words: str) -> Command:
    """Runs `dataworkflows <words> <argv…> --api-url URL` through `handler`: (exit code, its output
    stripped, its errors stripped)."""
    parser = build_parser()

    async def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args([*words, *argv, "--api-url", url])
        code = await asyncio.to_thread(handler, args)
        out, err = capsys.readouterr()
        return code, out.strip(), err.strip()

    return run
