"""Rate limiter benchmark: what the API's per-caller token bucket costs a request.

Run from the repository root:

    .venv/bin/python bench/limits.py            # about 15 s
    .venv/bin/python bench/limits.py --quick    # about 5 s

Database as in bench/throughput.py (an embedded PostgreSQL in a temporary directory with DATABASE_URL
unset, else a scratch database on that server; removed at the end).

Two API apps in this process (Litestar's test client, so no network or uvicorn in the figures), on
the same database: one with the limiter off (DW_API_RATE_PER_MINUTE=0), one with it on and a limit
no request reaches. N rounds, each sends one `POST /api/v1/workflows/{id}/execute` and one
`GET /api/v1/workflows/{id}` to each app, in alternating order, one at a time; the same caller
throughout. Printed: p50/p95 of each, and the take_api_token statement alone (db.limits.take_token)
p50/p95 as a round trip from this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import echo2_workflow, fmt, open_pool, percentile, progress, publish, run_main

WORKFLOW = "bench-limits"


async def _timed(call: Any) -> float:
    began = time.perf_counter()
    response = await call
    assert response.status_code in (200, 202), response.text
    return (time.perf_counter() - began) * 1000


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    rounds = 150 if args.quick else 600
    async with open_pool(conninfo, 4) as pool:
        db = Database(pool)
        await publish(db, echo2_workflow(WORKFLOW))
        off = create_app(Settings(database_url=conninfo, api_rate_per_minute=0))
        on = create_app(Settings(database_url=conninfo, api_rate_per_minute=60_000_000, api_rate_burst=1_000_000))
        times: dict[str, list[float]] = {"execute off": [], "execute on": [], "get off": [], "get on": []}
        headers = {"X-Principal-Id": "bench"}
        progress(f"{rounds} rounds of execute and get, limiter off and on, interleaved")
        async with AsyncTestClient(off) as client_off, AsyncTestClient(on) as client_on:
            for i in range(rounds):
                pairs = [("off", client_off), ("on", client_on)]
                for name, client in pairs if i % 2 else reversed(pairs):
                    execute = client.post(
                        f"/api/v1/workflows/{WORKFLOW}/execute", json={"trigger": {"i": i}}, headers=headers
                    )
                    times[f"execute {name}"].append(await _timed(execute))
                    times[f"get {name}"].append(
                        await _timed(client.get(f"/api/v1/workflows/{WORKFLOW}", headers=headers))
                    )
        statement: list[float] = []
        for _ in range(rounds):
            began = time.perf_counter()
            await db.limits.take_token(tenant="default", subject="principal:bench-raw", per_second=1e6, burst=1_000_000)
            statement.append((time.perf_counter() - began) * 1000)
    figures = {
        name: {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)} for name, values in times.items()
    }
    figures["take_api_token statement"] = {"p50_ms": percentile(statement, 50), "p95_ms": percentile(statement, 95)}
    return {"database": description, "rounds": rounds, "figures": figures}


def report(results: dict[str, Any]) -> None:
    figures = results["figures"]
    print(f"\n{'measurement':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in figures.items():
        print(f"{name:<28} {fmt(values['p50_ms'], 2):>8} {fmt(values['p95_ms'], 2):>8}")
    for what in ("execute", "get"):
        on, off = figures[f"{what} on"]["p50_ms"], figures[f"{what} off"]["p50_ms"]
        print(f"limiter cost per {what}: p50 +{fmt(on - off, 2)} ms ({fmt(on / off, 2)}x)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What the API's rate limiter costs a request.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--total-timeout", type=float, default=300.0)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/limits-*.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_main("limits", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
