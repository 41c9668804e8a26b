"""`--help` for every command: its options with their defaults, the environment variables it reads,
its exit codes and an example (a test checks that every command has one)."""

from __future__ import annotations

import argparse
from typing import Any

API_URL_DEFAULT = "http://127.0.0.1:5131"

FOLLOW_EXIT_CODES = """exit codes:
  0    done; with --wait or --follow: the run Succeeded
  1    the run Failed, was Cancelled or TimedOut (or stdout was closed early, Python's code for it)
  2    bad input, or the API refused the request (4xx)
  3    the API cannot be reached, or failed (5xx)
  4    --timeout passed while the run goes on
  130  Ctrl-C (a run goes on)"""
API_EXIT_CODES = """exit codes:
  0    done
  1    stdout was closed early (`| head`: Python's code for it)
  2    bad input, or the API refused the request (4xx)
  3    the API cannot be reached, or failed (5xx)
  130  Ctrl-C"""
BULK_EXIT_CODES = """exit codes:
  0    done: every item's outcome is in the lines printed
  1    some items were refused or failed (their lines say why; the others were done), or stdout was closed early
  2    bad input, or the API refused the request (4xx)
  3    the API cannot be reached, or failed (5xx)
  130  Ctrl-C (the items already sent are done)"""
LOCAL_EXIT_CODES = """exit codes:
  0    done
  2    bad input or configuration (a busy port, a bad DW_ variable)
  3    the database cannot be reached
  130  Ctrl-C (`up`, `api`: a second one, which stops at once)"""
# The commands that follow a run.
FOLLOWING = frozenset({"", "run", "logs", "dead-letters redrive"})
# The bulk commands: an item refused or failed is exit code 1.
BULK = frozenset({"executions cancel-all", "dead-letters redrive-all"})

API_ENVIRONMENT = f"""environment:
  DW_API_URL       the API (default {API_URL_DEFAULT}); --api-url overrides it
  DW_API_TOKEN     a bearer token, for an API in strict mode (`dataworkflows token` makes a local one)
  DW_PRINCIPAL_ID  who calls, in loose mode (X-Principal-Id); --principal, where given, wins
  DW_TENANT_ID     the tenant (X-Tenant-Id), in loose mode"""
LOCAL_ENVIRONMENT = """environment:
  DATABASE_URL     the PostgreSQL server (unset: the embedded one `up` makes in DW_DATA_DIR)
  DW_DATA_DIR      where the embedded PostgreSQL lives (default .dataworkflows)
  DW_API_HOST, DW_API_PORT, DW_WORKER_CONCURRENCY, DW_LOG_FORMAT, DW_LOG_LEVEL, ...: see README "Configuration"
  (options given on the command line win over the environment)"""

# One example per command (by its path under `dataworkflows`).
EXAMPLES: dict[str, str] = {
    "": "dataworkflows up    # then, in another terminal: dataworkflows run simple-echo --wait",
    "up": "dataworkflows up --port 5200    # then: export DW_API_URL=http://127.0.0.1:5200",
    "migrate": "DATABASE_URL=postgresql://app@db/dw dataworkflows migrate",
    "api": "DATABASE_URL=postgresql://app@db/dw dataworkflows api --host 0.0.0.0 --port 8080",
    "worker": "DATABASE_URL=postgresql://app@db/dw dataworkflows worker --concurrency 50 --metrics-port 9101",
    "run": 'dataworkflows run retry-test --trigger \'{"source": "cli"}\' --wait --timeout 60',
    "logs": "dataworkflows logs 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 --follow",
    "status": "dataworkflows status 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 --json",
    "psql": "dataworkflows psql -c 'SELECT status, count(*) FROM dw.executions GROUP BY 1'",
    "token": "export DW_API_TOKEN=$(dataworkflows token --sub alice --tenant acme --role author --role operator)",
    "prune": "dataworkflows prune --older-than 30d --dry-run",
    "audit-log": "dataworkflows audit-log --after 0 --workflow nightly-sync > audit.ndjson",
    "examples": "DATABASE_URL=postgresql://app@db/dw dataworkflows examples load",
    "examples load": "DATABASE_URL=postgresql://app@db/dw dataworkflows examples load    # safe to run again",
    "signal": "dataworkflows signal 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 order.paid --payload '{\"amount\": 42}'",
    "events publish": "dataworkflows events publish com.shop.order.created --source /shop --data '{\"id\": 7}'",
    "signal-all": "dataworkflows signal-all payment --correlation-key A-1003 --payload '{\"amount\": 42}'",
    "approve": "dataworkflows approve 7c1d2c9a-4f1e-4b7a-a7a8-0f8e2b1d9c33 --principal alice --comment 'fine'",
    "reject": "dataworkflows reject 7c1d2c9a-4f1e-4b7a-a7a8-0f8e2b1d9c33 --principal bob --comment 'too much'",
    "workflows": "dataworkflows workflows apply my-workflow.json --publish",
    "workflows apply": "dataworkflows workflows apply my-workflow.json --publish",
    "workflows list": "dataworkflows workflows list",
    "workflows limits": "dataworkflows workflows limits simple-echo --max-concurrent 2 --per-minute 30",
    "workflows archive": "dataworkflows workflows archive old-export    # one of yours that should start no more runs",
    "workflows delete": "dataworkflows workflows delete old-export    # one without runs: prune them first",
    "workflows disable": "dataworkflows workflows disable simple-echo",
    "workflows enable": "dataworkflows workflows enable simple-echo",
    "workflows retention": "dataworkflows workflows retention simple-echo --days 90",
    "dead-letters": "dataworkflows dead-letters list",
    "dead-letters list": "dataworkflows dead-letters list --all --kind timed_out --limit 20",
    "dead-letters show": "dataworkflows dead-letters show 12",
    "dead-letters redrive": "dataworkflows dead-letters redrive 12 --wait --timeout 300",
    "dead-letters ack": "dataworkflows dead-letters ack 12 --note 'refunded by hand'",
    "executions": "dataworkflows executions list --status Failed --since 2h",
    "executions list": "dataworkflows executions list --status failed --workflow retry-test --since 2h --limit 20",
    "executions tree": "dataworkflows executions tree 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10",
    "executions cancel": "dataworkflows executions cancel 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 --reason 'wrong input'",
    "executions suspend": "dataworkflows executions suspend 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 --reason maintenance",
    "executions resume": "dataworkflows executions resume 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10",
    "executions priority": "dataworkflows executions priority 0b9e0c1e-6d5f-4a43-9a64-3c2b1f7d2e10 50",
    "approvals": "dataworkflows approvals list --principal alice",
    "approvals list": "dataworkflows approvals list --principal alice --all",
    "triggers": "dataworkflows triggers list --kind schedule",
    "events": "dataworkflows events publish com.shop.order.created --source /shop",
    "triggers list": "dataworkflows triggers list --workflow simple-echo",
    "triggers create": "dataworkflows triggers create simple-echo --kind schedule --name nightly --cron '0 2 * * *'",
    "triggers enable": "dataworkflows triggers enable 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f",
    "triggers rotate-secret": (
        "dataworkflows triggers rotate-secret 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f --keep-previous 1h"
    ),
    "triggers disable": "dataworkflows triggers disable 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f",
    "executions cancel-all": "dataworkflows executions cancel-all nightly-sync --status Pending --older-than 1h",
    "dead-letters redrive-all": "dataworkflows dead-letters redrive-all --kind node_failed --workflow nightly-sync",
    "triggers priority": "dataworkflows triggers priority 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f 50",
    "triggers delete": "dataworkflows triggers delete 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f",
    "triggers deliveries": (
        "dataworkflows triggers deliveries 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f --outcome refused --limit 20"
    ),
    "triggers ticks": "dataworkflows triggers ticks 5d0c3f7e-2b8a-4f0e-9d61-0a1b2c3d4e5f --limit 20",
    "connections": "dataworkflows connections list",
    "connections list": "dataworkflows connections list --json",
    "connections put": "dataworkflows connections put slack-main --kind slack --secret-file token.txt --allow notify",
    "connections allow": "dataworkflows connections allow slack-main --allow notify --allow reports",
    "connections delete": "dataworkflows connections delete slack-main",
}
# The commands that run the engine in this process (the others talk to the API).
LOCAL = frozenset({"up", "migrate", "api", "worker", "psql", "prune", "token", "examples"})


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's lines; adds each option's default when it has one that says something."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in text
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def _epilog(path: str) -> str:
    top = path.split(" ")[0]
    parts = []
    if path in EXAMPLES:
        parts.append(f"example:\n  {EXAMPLES[path]}")
    if top in LOCAL:
        parts.append(LOCAL_ENVIRONMENT)
    elif path:
        parts.append(API_ENVIRONMENT)
    if path in FOLLOWING:
        parts.append(FOLLOW_EXIT_CODES)
    elif path in BULK:
        parts.append(BULK_EXIT_CODES)
    else:
        parts.append(LOCAL_EXIT_CODES if top in LOCAL else API_EXIT_CODES)
    return "\n\n".join(parts)


def _explain(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.dest == "api_url":
            action.help = f"the API's URL (default: $DW_API_URL, else {API_URL_DEFAULT})"
            action.metavar = "URL"
        elif action.help is None and action.option_strings and action.default not in (None, False):
            action.help = "(default: %(default)s)"


def commands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser) under `parser`, itself first."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, Any] = action.choices
            for name, child in choices.items():
                found.extend(commands(child, f"{path} {name}".strip()))
    return found


def decorate(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Gives every command the formatter, its example, environment and exit codes."""
    for path, command in commands(parser):
        command.formatter_class = Formatter
        command.epilog = _epilog(path)
        _explain(command)
    return parser
