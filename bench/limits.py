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

import api_pairs
from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import echo2_workflow, open_pool, percentile, progress, publish, run_main

WORKFLOW = "bench-limits"


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
        headers = {"X-Principal-Id": "bench"}
        times = await api_pairs.execute_and_get({"off": (off, headers), "on": (on, headers)}, WORKFLOW, rounds)
        statement: list[float] = []
        for _ in range(rounds):
            began = time.perf_counter()
            await db.limits.take_token(tenant="default", subject="principal:bench-raw", per_second=1e6, burst=1_000_000)
            statement.append((time.perf_counter() - began) * 1000)
    table = api_pairs.figures(times)
    table["take_api_token statement"] = {"p50_ms": percentile(statement, 50), "p95_ms": percentile(statement, 95)}
    return {"database": description, "rounds": rounds, "figures": table}


def report(results: dict[str, Any]) -> None:
    api_pairs.report(results, "off", "on", "limiter cost")


def main(argv: list[str] | None = None) -> int:
    return run_main(
        "limits", api_pairs.parse_args("What the API's rate limiter costs a request.", "limits", argv), run, report
    )


if __name__ == "__main__":
    sys.exit(main())
