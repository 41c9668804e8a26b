"""Strict-mode benchmark: what verifying a bearer token (and checking roles) costs a request.

Run from the repository root:

    .venv/bin/python bench/auth.py            # about 20 s
    .venv/bin/python bench/auth.py --quick    # about 8 s

Database as in bench/throughput.py (an embedded PostgreSQL in a temporary directory with DATABASE_URL
unset, else a scratch database on that server; removed at the end).

Two API apps in this process (Litestar's test client: no network or uvicorn in the figures), on the same
database, both with the rate limiter off: one in loose mode (the caller names itself in X-Principal-Id),
one in strict mode with an HS256 secret, an issuer and an audience (the caller sends an operator token).
N rounds, each sends one `POST /api/v1/workflows/{id}/execute` and one `GET /api/v1/workflows/{id}` to each
app, in alternating order, one at a time. Printed: p50/p95 of each and the difference of the p50s, and the
token verification alone (TokenVerifier.verify) p50/p95.
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
from dataworkflows.tokens import TokenVerifier, mint_token
from throughput import echo2_workflow, open_pool, percentile, progress, publish, run_main

WORKFLOW = "bench-auth"
SECRET = "bench-secret-of-at-least-thirty-two-bytes"


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    rounds = 150 if args.quick else 600
    loose_settings = Settings(database_url=conninfo, api_rate_per_minute=0)
    strict_settings = Settings(
        database_url=conninfo,
        api_rate_per_minute=0,
        auth_mode="strict",
        jwt_secret=SECRET,
        jwt_issuer="bench",
        jwt_audience="dataworkflows",
    )
    token = mint_token(
        strict_settings,
        subject="bench",
        tenant="default",
        roles=["operator"],
        ttl_seconds=3600,
        issuer="bench",
        audience="dataworkflows",
    )
    async with open_pool(conninfo, 4) as pool:
        await publish(Database(pool), echo2_workflow(WORKFLOW))
    apps = {
        "loose": (create_app(loose_settings), {"X-Principal-Id": "bench"}),
        "strict": (create_app(strict_settings), {"Authorization": f"Bearer {token}"}),
    }
    times = await api_pairs.execute_and_get(apps, WORKFLOW, rounds)
    verifier = TokenVerifier.from_settings(strict_settings)
    verify: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        await verifier.verify(token)
        verify.append((time.perf_counter() - began) * 1000)
    table = api_pairs.figures(times)
    table["token verification alone"] = {"p50_ms": percentile(verify, 50), "p95_ms": percentile(verify, 95)}
    return {"database": description, "rounds": rounds, "figures": table}


def report(results: dict[str, Any]) -> None:
    api_pairs.report(results, "loose", "strict", "strict mode cost")


def main(argv: list[str] | None = None) -> int:
    description = "What strict mode (bearer JWTs, roles) costs a request."
    return run_main("auth", api_pairs.parse_args(description, "auth", argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
