"""Webhooks benchmark: deliveries accepted per second and their response times, beside the plain execute call.

Run from the repository root:

    .venv/bin/python bench/webhooks.py            # default sizes: about a minute on 2 cores
    .venv/bin/python bench/webhooks.py --quick    # small sizes: about 25 s
    .venv/bin/python bench/webhooks.py --help     # sizes, concurrency, phases to skip

Database as in bench/throughput.py (whose helpers this script uses, with bench/waits.py's): an embedded
PostgreSQL in a temporary directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that
server; removed at the end.

One `dataworkflows api` process (DW_CREDENTIALS_KEY set, its default pool of DW_POOL_MAX_SIZE connections, one
uvicorn worker) serves every phase; no worker runs, so every started run stays Pending with its run job queued:
what is measured is what the caller waits for, the rows written. The same 2-node echo workflow is started in
every phase, N requests per phase with C in flight (httpx, one client, in this process: on a small machine the
client's own CPU is part of what limits the rate, the same way for every phase):

* one at a time: S execute calls, then S signed hook deliveries, each sent after the previous answer: the
  response time of one call on an otherwise idle server.
* execute: POST /api/v1/workflows/{id}/execute {"trigger": {"i": ...}} (a new request id each).
* hook, signed: POST /api/v1/hooks/{id} with a JSON body, X-DW-Timestamp and X-DW-Signature (hmac-sha256,
  signed just before its round): trigger read, secret decrypted (AES-GCM), HMAC checked, one transaction with
  the delivery row and the run.
* hook, unsigned: the same against a trigger with "signature": "none" (the cost of the crypto, by difference).
* hook, condition + template: signed, with an activationCondition that is true (evaluated in the condition
  sandbox's helper processes) and a payloadTemplate that only looks values up (rendered in process).
These four run interleaved: N/R requests of each per round, R rounds, each round in another order, so that
every phase meets the same table sizes, autovacuum passes and neighbours on the machine.
* hook, duplicates: replays of the last round's signed deliveries, up to N/4 (each answers the first execution).

For each phase: requests per second (its requests / the seconds its rounds took, first sent -> last
answered), response time p50/p95/p99/max (client side, send -> full answer), CPU milliseconds per request of
the API process and of the PostgreSQL server processes, and a check of what was written (runs started,
delivery rows by outcome). Figures are printed as a table and written to bench/results/webhooks-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import (
    BenchError,
    Monitor,
    Subprocess,
    echo2_workflow,
    fmt,
    machine_info,
    open_pool,
    percentile,
    progress,
    publish,
    ratio,
    run_main,
    summarize_log,
    worker_command,
)
from waits import ServerCpu, cpu_seconds, free_port, named_env, wait_api_ready

API_APP = "dw-bench-api"
MONITOR_APP = "dw-bench-monitor"
WORKFLOW_ID = "bench-hook-echo"
SECRET = "bench-webhook-secret-" + secrets.token_hex(8)
CONDITION = "body.kind === 'order' && headers['x-source'] === 'bench'"
TEMPLATE = {"order": "{{ body.i }}", "kind": "{{ body.kind }}", "source": "{{ headers['x-source'] }}"}


@dataclass(frozen=True)
class Sizes:
    requests: int
    concurrency: int
    sequential: int
    rounds: int
    duplicates: int
    warmup: int
    phase_timeout: float


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    requests = args.requests if args.requests is not None else (500 if args.quick else 3000)
    return Sizes(
        requests=requests,
        concurrency=args.concurrency,
        sequential=args.sequential if args.sequential is not None else (100 if args.quick else 300),
        rounds=max(1, min(args.rounds if args.rounds is not None else (3 if args.quick else 6), requests)),
        duplicates=max(1, requests // 4),
        warmup=50 if args.quick else 200,
        phase_timeout=args.timeout,
    )


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    url: str
    body: bytes
    headers: dict[str, str]


def sign(body: bytes, **extra: str) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-DW-Timestamp": ts, "X-DW-Signature": f"sha256={digest}", **extra}


def execute_calls(start: int, count: int, tag: str) -> list[Call]:
    url = f"/api/v1/workflows/{WORKFLOW_ID}/execute"
    headers = {"Content-Type": "application/json"}
    return [
        Call(url, json.dumps({"trigger": {"i": i, "phase": tag}}).encode(), headers)
        for i in range(start, start + count)
    ]


def hook_calls(hook: str, start: int, count: int, tag: str, *, signed: bool, **extra: str) -> list[Call]:
    calls = []
    for i in range(start, start + count):
        body = json.dumps({"i": i, "kind": "order", "phase": tag}).encode()
        headers = sign(body, **extra) if signed else {"Content-Type": "application/json", **extra}
        calls.append(Call(f"/api/v1/hooks/{hook}", body, headers))
    return calls


@dataclass
class Outcome:
    seconds: float
    status: int
    body: dict[str, Any]


async def fire(client: httpx.AsyncClient, calls: list[Call], concurrency: int) -> tuple[list[Outcome], float]:
    """Sends the calls, `concurrency` in flight; returns each outcome and the phase's wall seconds."""
    queue = list(reversed(calls))
    outcomes: list[Outcome] = []

    async def lane() -> None:
        while queue:
            call = queue.pop()
            began = time.perf_counter()
            response = await client.post(call.url, content=call.body, headers=call.headers)
            seconds = time.perf_counter() - began
            try:
                body = response.json()
            except ValueError:
                body = {"text": response.text[:200]}
            outcomes.append(Outcome(seconds, response.status_code, body))

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return outcomes, time.perf_counter() - began


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One phase's figures, summed over the rounds it ran in."""

    expect: Callable[[Outcome], bool]
    in_flight: int
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    api_cpu: float = 0.0
    pg_cpu: float | None = 0.0

    def figures(self) -> dict[str, Any]:
        count = len(self.outcomes)
        times = [o.seconds * 1000 for o in self.outcomes]
        unexpected = [o for o in self.outcomes if not self.expect(o)]
        statuses: dict[str, int] = {}
        for outcome in self.outcomes:
            statuses[str(outcome.status)] = statuses.get(str(outcome.status), 0) + 1
        return {
            "requests": count,
            "in_flight": self.in_flight,
            "seconds": self.seconds,
            "requests_per_second": count / self.seconds,
            "response_ms": {
                "p50": percentile(times, 50),
                "p95": percentile(times, 95),
                "p99": percentile(times, 99),
                "max": max(times),
            },
            "api_cpu_ms_per_request": self.api_cpu * 1000 / count,
            "postgres_cpu_ms_per_request": None if self.pg_cpu is None else self.pg_cpu * 1000 / count,
            "statuses": statuses,
            "unexpected": len(unexpected),
            "unexpected_samples": [f"{o.status} {json.dumps(o.body)[:200]}" for o in unexpected[:5]],
        }


@dataclass
class Bench:
    client: httpx.AsyncClient
    api: Subprocess
    sizes: Sizes

    async def measure(self, tally: Tally, calls: list[Call]) -> list[Outcome]:
        if self.api.returncode is not None:
            raise BenchError(f"the API exited (code {self.api.returncode}):\n{self.api.tail()}")
        assert self.api.process is not None
        api_cpu = cpu_seconds(self.api.process.pid) or 0.0
        server = ServerCpu()
        outcomes, seconds = await asyncio.wait_for(fire(self.client, calls, tally.in_flight), self.sizes.phase_timeout)
        tally.api_cpu += (cpu_seconds(self.api.process.pid) or 0.0) - api_cpu
        pg_used = server.result(seconds)["postgres_cpu_seconds"]
        tally.pg_cpu = None if pg_used is None or tally.pg_cpu is None else tally.pg_cpu + pg_used
        tally.seconds += seconds
        tally.outcomes.extend(outcomes)
        return outcomes


def accepted(outcome: Outcome) -> bool:
    return outcome.status == 202 and outcome.body.get("duplicate") is False


def started(outcome: Outcome) -> bool:
    return outcome.status == 202 and outcome.body.get("created") is True


def duplicate(outcome: Outcome) -> bool:
    return outcome.status == 200 and outcome.body.get("duplicate") is True


async def make_hook(db: Database, key: str, name: str, config: dict[str, Any]) -> str:
    trigger_id = uuid.uuid4()
    signed = config.get("signature", "hmac-sha256") != "none"
    await db.triggers.create(
        workflow_id=WORKFLOW_ID,
        kind="webhook",
        name=name,
        enabled=True,
        config=config,
        principal="bench",
        trigger_id=trigger_id,
        secret=Cipher.from_setting(key).encrypt(SECRET, f"trigger:{trigger_id}") if signed else None,
    )
    return str(trigger_id)


async def written(monitor: Monitor, hooks: dict[str, str]) -> dict[str, Any]:
    """What the phases wrote: runs per trigger (and by execute), delivery rows by outcome."""
    runs = {
        name: int(await monitor.value("SELECT count(*) FROM dw.executions WHERE trigger_id = %s", (hook,)))
        for name, hook in hooks.items()
    }
    runs["execute"] = int(
        await monitor.value(
            "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND trigger_id IS NULL", (WORKFLOW_ID,)
        )
    )
    rows = await monitor.rows("SELECT outcome, count(*) FROM dw.webhook_deliveries GROUP BY 1 ORDER BY 1")
    return {"runs": runs, "deliveries_by_outcome": {outcome: int(count) for outcome, count in rows}}


def call_makers(hooks: dict[str, str], skip: set[str]) -> dict[str, Callable[[int, int], list[Call]]]:
    """The interleaved phases: each makes `count` calls from index `start` (signed just before they are sent)."""
    makers: dict[str, Callable[[int, int], list[Call]]] = {
        "execute": lambda start, count: execute_calls(start, count, "execute"),
        "hook_signed": lambda start, count: hook_calls(hooks["signed"], start, count, "signed", signed=True),
    }
    if "unsigned" not in skip:
        makers["hook_unsigned"] = lambda start, count: hook_calls(
            hooks["unsigned"], start, count, "unsigned", signed=False
        )
    if "condition" not in skip:
        makers["hook_condition"] = lambda start, count: hook_calls(
            hooks["condition"], start, count, "condition", signed=True, **{"X-Source": "bench"}
        )
    return makers


async def run_phases(bench: Bench, hooks: dict[str, str], sizes: Sizes, skip: set[str]) -> dict[str, Any]:
    tallies: dict[str, Tally] = {}
    progress(f"warm-up: {sizes.warmup} of each call")
    await fire(bench.client, execute_calls(0, sizes.warmup, "warmup"), sizes.concurrency)
    await fire(bench.client, hook_calls(hooks["warmup"], 0, sizes.warmup, "warmup", signed=True), sizes.concurrency)
    if sizes.sequential:
        progress(f"one at a time: {sizes.sequential} execute calls, then {sizes.sequential} signed deliveries")
        tallies["execute_sequential"] = Tally(started, 1)
        await bench.measure(tallies["execute_sequential"], execute_calls(0, sizes.sequential, "sequential"))
        tallies["hook_sequential"] = Tally(accepted, 1)
        calls = hook_calls(hooks["sequential"], 0, sizes.sequential, "sequential", signed=True)
        await bench.measure(tallies["hook_sequential"], calls)
    makers = call_makers(hooks, skip)
    for key in makers:
        tallies[key] = Tally(started if key == "execute" else accepted, sizes.concurrency)
    # Interleaved in rounds, each round in another order, so that every phase meets the same table sizes,
    # autovacuum passes and neighbours on the machine.
    last_signed: list[Call] = []
    signed_runs: set[str | None] = set()
    for index in range(sizes.rounds):
        start = sizes.requests * index // sizes.rounds
        count = sizes.requests * (index + 1) // sizes.rounds - start
        order = list(makers)[index % len(makers) :] + list(makers)[: index % len(makers)]
        progress(
            f"round {index + 1}/{sizes.rounds}: {count} of each ({', '.join(order)}), {sizes.concurrency} in flight"
        )
        for key in order:
            calls = makers[key](start, count)
            outcomes = await bench.measure(tallies[key], calls)
            if key == "hook_signed":
                last_signed = calls
                signed_runs.update(o.body.get("executionId") for o in outcomes)
    results = {key: tally.figures() for key, tally in tallies.items()}
    if "duplicates" not in skip:
        # Replays of the last round's signed deliveries (their timestamps are the freshest).
        replays = last_signed[: sizes.duplicates]
        progress(f"duplicates: {len(replays)} replays of accepted deliveries, {sizes.concurrency} in flight")
        tally = Tally(duplicate, sizes.concurrency)
        outcomes = await bench.measure(tally, replays)
        results["hook_duplicates"] = tally.figures()
        answered = {o.body.get("executionId") for o in outcomes}
        results["hook_duplicates"]["same_executions"] = answered <= signed_runs
    return results


# -- report --------------------------------------------------------------------------------------

PHASES = (
    ("execute_sequential", "execute, one at a time"),
    ("hook_sequential", "hook, signed, one at a time"),
    ("execute", "execute"),
    ("hook_signed", "hook, signed (hmac-sha256)"),
    ("hook_unsigned", "hook, unsigned"),
    ("hook_condition", "hook, condition + template"),
    ("hook_duplicates", "hook, duplicates (replays)"),
)


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    phases = results["phases"]
    base = phases["execute"]["requests_per_second"]
    base_p50 = phases["execute"]["response_ms"]["p50"]
    ratios: dict[str, float | None] = {}
    if "hook_sequential" in phases:
        ratios["hook, signed, one at a time: p50 / execute's"] = ratio(
            phases["hook_sequential"]["response_ms"]["p50"], phases["execute_sequential"]["response_ms"]["p50"]
        )
    for key, label in PHASES[3:]:
        if key in phases:
            ratios[f"{label}: requests/s / execute"] = ratio(phases[key]["requests_per_second"], base)
            ratios[f"{label}: p50 / execute p50"] = ratio(phases[key]["response_ms"]["p50"], base_p50)
    return ratios


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    sizes = results["sizes"]
    print()
    print(
        f"webhooks benchmark: {sizes['requests']:,} requests per phase, {sizes['concurrency']} in flight; "
        f"{machine['nproc']} CPUs, {machine['memory_gb']} GB, {machine['database']}"
    )
    print(f"PostgreSQL: {machine['postgresql'].split(',')[0]}; git {machine['git']}")
    print()
    header = f"{'phase':<30} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    header += f" {'API cpu':>8} {'PG cpu':>8}  statuses"
    print(header)
    print("-" * len(header))
    for key, label in PHASES:
        phase = results["phases"].get(key)
        if phase is None:
            continue
        ms = phase["response_ms"]
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(phase["statuses"].items()))
        flag = "" if not phase["unexpected"] else f"  ({phase['unexpected']} UNEXPECTED)"
        print(
            f"{label:<30} {fmt(phase['requests_per_second']):>9} {fmt(ms['p50'], 2):>8} {fmt(ms['p95'], 2):>8}"
            f" {fmt(ms['p99'], 2):>8} {fmt(ms['max'], 1):>8} {fmt(phase['api_cpu_ms_per_request'], 2):>8}"
            f" {fmt(phase['postgres_cpu_ms_per_request'], 2):>8}  {statuses}{flag}"
        )
    print("(response times are client side, send -> full answer; CPU in ms per request)")
    print()
    for label, value in results["ratios"].items():
        print(f"{label:<60} {fmt(value, 2)}")
    print()
    check = results["written"]
    print(f"runs started: {check['runs']}")
    print(f"delivery rows: {check['deliveries_by_outcome']}; checks passed: {fmt(results['checks_passed'])}")
    for problem in results["check_problems"]:
        print(f"  {problem}")
    log = results["api"]["log"]
    if log["lines_by_level"]:
        print(f"API log lines by level: {log['lines_by_level']}")
        for sample in log["samples"]:
            print(f"  {sample}")


def check(results: dict[str, Any], sizes: Sizes) -> list[str]:
    """What must hold: every answer as expected, and one run per accepted delivery or execute call."""
    problems = []
    for key, phase in results["phases"].items():
        if phase["unexpected"]:
            problems.append(f"{key}: {phase['unexpected']} unexpected answers, e.g. {phase['unexpected_samples'][:2]}")
    runs = results["written"]["runs"]
    expected = {
        "signed": sizes.requests,
        "unsigned": sizes.requests,
        "condition": sizes.requests,
        "sequential": sizes.sequential,
    }
    for name, count in expected.items():
        if name in runs and runs[name] not in (0, count):
            problems.append(f"hook {name}: {runs[name]} runs, expected {count}")
    if not results["phases"].get("hook_duplicates", {}).get("same_executions", True):
        problems.append("duplicates answered executions the signed phase did not start")
    return problems


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    sizes = sizes_from_args(args)
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    key = Cipher.generate_key()
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": asdict(sizes),
    }
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, application_name=MONITOR_APP) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        ServerCpu.postmaster = ServerCpu.postmaster_of(await monitor.value("SELECT pg_backend_pid()"))
        async with open_pool(conninfo, 2) as pool:
            db = Database(pool)
            await publish(db, echo2_workflow(WORKFLOW_ID))
            hooks = {
                "warmup": await make_hook(db, key, "warmup", {}),
                "sequential": await make_hook(db, key, "sequential", {}),
                "signed": await make_hook(db, key, "signed", {}),
                "unsigned": await make_hook(db, key, "unsigned", {"signature": "none"}),
                "condition": await make_hook(
                    db,
                    key,
                    "condition",
                    {"headers": ["X-Source"], "activationCondition": CONDITION, "payloadTemplate": TEMPLATE},
                ),
            }
        port = free_port()
        env = named_env(conninfo, API_APP)
        env.update({"DW_CREDENTIALS_KEY": key, "DW_API_PORT": str(port)})
        api = Subprocess("api", [*worker_command(), "api", "--port", str(port)], env, workdir / "api.log")
        try:
            await api.start()
            limits = httpx.Limits(max_connections=sizes.concurrency, max_keepalive_connections=sizes.concurrency)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0, limits=limits) as client:
                await wait_api_ready(client, api)
                bench = Bench(client, api, sizes)
                results["phases"] = await run_phases(bench, hooks, sizes, set(args.skip or []))
        finally:
            code, stop_seconds = await api.stop()
            results["api"] = {"exit_code": code, "stop_seconds": stop_seconds, "log": summarize_log(api.log_path)}
        hooks.pop("warmup")
        results["written"] = await written(monitor, hooks)
    results["ratios"] = compute_ratios(results)
    results["check_problems"] = check(results, sizes)
    results["checks_passed"] = not results["check_problems"]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Webhook deliveries against the plain execute call.")
    parser.add_argument("--quick", action="store_true", help="small sizes: 500 requests per phase")
    parser.add_argument("--requests", "-n", type=int, help="requests per phase (default 3000)")
    parser.add_argument("--concurrency", "-c", type=int, default=20, help="requests in flight (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds the phases are interleaved in (default 6; quick 3)")
    parser.add_argument(
        "--sequential", type=int, help="requests of each kind sent one at a time first (default 300; 0: none)"
    )
    parser.add_argument(
        "--skip", action="append", choices=["unsigned", "condition", "duplicates"], help="a phase to leave out"
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per phase (default 240)")
    parser.add_argument("--total-timeout", type=float, default=900.0, help="seconds allowed in all (default 900)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/webhooks-*.json")
    args = parser.parse_args(argv)
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(
        "webhooks",
        parse_args(argv),
        run,
        print_report,
        errors=(BenchError, psycopg.Error, httpx.HTTPError, TimeoutError),
        exit_code=lambda results: 0 if results["checks_passed"] else 2,
    )


if __name__ == "__main__":
    sys.exit(main())
