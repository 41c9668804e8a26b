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

from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.tokens import TokenVerifier, mint_token
from throughput import echo2_workflow, fmt, open_pool, percentile, progress, publish, run_main

WORKFLOW = "bench-auth"
SECRET = "bench-secret-of-at-least-thirty-two-bytes"


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
    headers = {
        "loose": {"X-Principal-Id": "bench"},
        "strict": {"Authorization": f"Bearer {token}"},
    }
    async with open_pool(conninfo, 4) as pool:
        await publish(Database(pool), echo2_workflow(WORKFLOW))
    times: dict[str, list[float]] = {"execute loose": [], "execute strict": [], "get loose": [], "get strict": []}
    progress(f"{rounds} rounds of execute and get, loose and strict, interleaved")
    loose, strict = create_app(loose_settings), create_app(strict_settings)
    async with AsyncTestClient(loose) as client_loose, AsyncTestClient(strict) as client_strict:
        for i in range(rounds):
            pairs = [("loose", client_loose), ("strict", client_strict)]
            for mode, client in pairs if i % 2 else reversed(pairs):
                execute = client.post(
                    f"/api/v1/workflows/{WORKFLOW}/execute", json={"trigger": {"i": i}}, headers=headers[mode]
                )
                times[f"execute {mode}"].append(await _timed(execute))
                get = client.get(f"/api/v1/workflows/{WORKFLOW}", headers=headers[mode])
                times[f"get {mode}"].append(await _timed(get))
    verifier = TokenVerifier.from_settings(strict_settings)
    verify: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        await verifier.verify(token)
        verify.append((time.perf_counter() - began) * 1000)
    figures = {
        name: {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)} for name, values in times.items()
    }
    figures["token verification alone"] = {"p50_ms": percentile(verify, 50), "p95_ms": percentile(verify, 95)}
    return {"database": description, "rounds": rounds, "figures": figures}


def report(results: dict[str, Any]) -> None:
    figures = results["figures"]
    print(f"\n{'measurement':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in figures.items():
        print(f"{name:<28} {fmt(values['p50_ms'], 3):>8} {fmt(values['p95_ms'], 3):>8}")
    for what in ("execute", "get"):
        strict, loose = figures[f"{what} strict"]["p50_ms"], figures[f"{what} loose"]["p50_ms"]
        print(f"strict mode cost per {what}: p50 {strict - loose:+.3f} ms ({fmt(strict / loose, 3)}x loose)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What strict mode (bearer JWTs, roles) costs a request.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--total-timeout", type=float, default=300.0)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/auth-*.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_main("auth", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
