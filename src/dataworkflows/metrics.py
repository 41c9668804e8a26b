"""Prometheus metrics. Names follow the conventions: dataworkflows_<what>_<unit>, counters end in
_total. The API exposes them at /metrics; a worker on its own --metrics-port; `up` serves both
from the API's /metrics (one process, one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# API
HTTP_REQUESTS = Counter(
    "dataworkflows_http_requests_total", "HTTP requests answered, by route and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "dataworkflows_http_request_duration_seconds",
    "HTTP request latency, by route",
    ["method", "route"],
    buckets=_DURATION_BUCKETS,
)

# Workers
EXECUTIONS_STARTED = Counter(
    "dataworkflows_executions_started_total", "Executions a worker acquired (first start or resume)", ["workflow_id"]
)
EXECUTIONS_FINISHED = Counter(
    "dataworkflows_executions_finished_total", "Executions ended, by final status", ["workflow_id", "status"]
)
EXECUTIONS_PARKED = Counter("dataworkflows_executions_parked_total", "Executions parked until a retry is due")
FETCHES = Counter(
    "dataworkflows_worker_fetches_total",
    "A worker's fetches from the job queue: 'jobs' took some, 'empty' found none due, 'skipped' were not sent"
    " (no job was queued since a fetch that found the queue drained)",
    ["outcome"],
)
NODE_DURATION = Histogram(
    "dataworkflows_node_duration_seconds",
    "Duration of one action attempt, by action type and outcome",
    ["action_type", "status"],
    buckets=_DURATION_BUCKETS,
)
ATTEMPTS = Counter(
    "dataworkflows_attempts_total", "Action attempts, by action type and status", ["action_type", "status"]
)
RETRIES = Counter("dataworkflows_retries_total", "Attempts scheduled for a retry, by action type", ["action_type"])
INTERRUPTIONS = Counter(
    "dataworkflows_interruptions_total",
    "Attempts cut short by their worker (handed back or lost), retried without using the budget",
    ["action_type"],
)
CIRCUITS_OPENED = Counter(
    "dataworkflows_circuits_opened_total",
    "Connector destinations whose circuit opened (failures in a row, or a failed trial): requests to them"
    " fail at once for a while",
)
CIRCUITS_CLOSED = Counter(
    "dataworkflows_circuits_closed_total", "Connector destinations whose open circuit closed (a request succeeded)"
)
LEASES_LOST = Counter("dataworkflows_leases_lost_total", "Runs stopped because another worker took the lease")
COMPENSATION_ATTEMPTS = Counter(
    "dataworkflows_compensation_attempts_total",
    "Attempts of compensation steps, by outcome (Succeeded, Failed for good, Retry)",
    ["outcome"],
)
RECOVERIES = Counter("dataworkflows_recoveries_total", "Runs re-queued, failed or cancelled by recovery", ["action"])
QUEUE_DEPTH = Gauge("dataworkflows_queue_depth", "Jobs in the queue, by queue and status", ["queue", "status"])
QUEUE_OLDEST = Gauge("dataworkflows_queue_oldest_job_age_seconds", "Age of the oldest waiting job, by queue", ["queue"])
WAITS_STARTED = Counter("dataworkflows_waits_started_total", "Nodes that started waiting, by wait kind", ["kind"])
WAITS_RESOLVED = Counter(
    "dataworkflows_waits_resolved_total",
    "Waits whose outcome a worker recorded, by wait kind and how they ended",
    ["kind", "state"],
)
CLOCK_OFFSET = Gauge(
    "dataworkflows_worker_clock_offset_seconds",
    "How far the database's clock is ahead of this worker host's (the worker reads the database's)",
)
WAITING_RUNS = Gauge(
    "dataworkflows_waiting_runs",
    "Runs that hold no worker: Waiting (timers, signals, approvals, retries) or Suspended",
    ["status"],
)
CONTROL_APPLIED = Counter(
    "dataworkflows_control_applied_total",
    "Cancel and suspend requests applied by a worker holding the run",
    ["control"],
)
SCHEDULE_TICKS = Counter(
    "dataworkflows_schedule_ticks_total",
    "Schedule ticks a scheduler handled, by outcome: started, existing (its run existed), duplicate "
    "(fired already), refused (the workflow cannot run), overlapped (no run, by the overlap policy: a run of the "
    "schedule still going, or a newer tick of a catch-up replacing it), buffered (its run to start once the "
    "schedule's runs have ended: overlap bufferOne, bufferAll, cancelOther), buffer_started, buffer_refused, "
    "buffer_failed and buffer_dropped (a buffered tick's run started, refused by its workflow, could not start, "
    "or not started: its schedule disabled), skipped (catch-up "
    "policy), failed (its run could not start)",
    ["outcome"],
)
GROUP_COMMIT_RECORDS = Histogram(
    "dataworkflows_group_commit_records",
    "Attempt records per transaction of a worker's group commit (1: a record that went alone)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
SCHEDULE_LATENESS = Histogram(
    "dataworkflows_schedule_tick_lateness_seconds",
    "Time from a schedule tick to the transaction that fired it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
RETENTION_REMOVED = Counter(
    "dataworkflows_retention_removed_total",
    "What retention removed: trees (a root run and its children), executions, and the rows that hung off them "
    "(node_states, attempts, events, waits, signals, items, documents, dead_letters, resource_touches)",
    ["kind"],
)
