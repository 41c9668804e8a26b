"""Settings, read from the environment (12-factor); every name starts with DW_ except DATABASE_URL."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dataworkflows.data.retention import MAX_BATCH
from dataworkflows.errors import ConfigurationError
from dataworkflows.retention import MAX_RETENTION_DAYS

# DW_WORKER_GROUP_COMMIT's bound: each record of a batch is a subtransaction that writes, and a
# backend caches 64 subtransaction ids; past them every snapshot taken meanwhile, server-wide, has
# to look the rest up (PostgreSQL's subtransaction overflow).
MAX_GROUP_COMMIT = 60
# dw.fetch_run_jobs_v2 (as v1) takes at most this many jobs a transaction, whatever it is asked for.
MAX_FETCH_BATCH = 100
# TCP ports.
MAX_PORT = 65535
# DW_MAX_RUN_SCOPE_BYTES's least value: a transform's outputs may take 1,000,000 bytes alone.
MIN_RUN_SCOPE_BYTES = 1_048_576


def _check_database_url(url: str) -> None:
    """A DATABASE_URL libpq can read, with ports that are numbers: a bad one is a configuration error
    (exit 2) at once, not a database that cannot be reached (exit 3, after the connect timeout)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        # libpq's words are not repeated: they quote the part they could not read, a
        # password perhaps. (A bad one used to be retried for 10 s as "unavailable", exit 3.)
        raise ConfigurationError(
            "DATABASE_URL cannot be read as a PostgreSQL connection URL (postgresql://user@host:5432/db,"
            " with reserved characters percent-encoded) or key=value string"
        ) from None
    # libpq parses a port only when it connects: `port=abc` (or `host:abc`) failed as a database
    # that cannot be reached, retried for the worker's 30 s (a walk through the README). A port is
    # no secret; an empty one (in a list of hosts) is the default.
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= MAX_PORT):
            raise ConfigurationError(f"DATABASE_URL's port {port!r} is not a port number (1 to {MAX_PORT})")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 5131
    queue: str = "executions"
    # Worker lease on an execution; renewed every lease_seconds / 3 while the run is alive.
    lease_seconds: float = 30.0
    # How often each worker looks for runs whose worker vanished.
    recovery_interval_seconds: float = 5.0
    # A run whose worker died this many times fails with worker_lost instead of being re-queued.
    max_recoveries: int = 5
    # A node (or forEach item) whose attempts were cut short by their worker this many times (handed
    # back on shutdown, or lost with the worker) fails with too_many_interruptions at the next one.
    # Interruptions never use up the retry budget; this bound stops an attempt that kills its worker.
    max_interruptions: int = 10
    # A run whose definition sets no workflowTimeout times out after this long (the seeds' one
    # hour; 0: never). Runs past their deadline that no worker holds (throttled, parked, suspended,
    # or no worker running) are timed out by the workers' recovery pass and by the API.
    default_workflow_timeout_seconds: float = 3600.0
    # A Procrastinate worker silent for this long is considered dead.
    stalled_worker_seconds: float = 30.0
    # Backoffs up to this long wait in-process; longer ones park the run and free the worker.
    park_threshold_seconds: float = 30.0
    # Delay before retrying a start refused by the workflow's concurrency limit.
    throttle_delay_seconds: float = 2.0
    # Grace period for running nodes when a worker is asked to stop (Ctrl-C, SIGTERM).
    shutdown_grace_seconds: float = 10.0
    # Refuse executions without a named caller (401); loose mode otherwise accepts anonymous calls.
    require_principal: bool = False
    # The API's rate limit per caller (tenant + principal, else client address; a webhook's
    # deliveries per trigger): a token bucket in PostgreSQL that refills at this many requests a
    # minute and holds at most api_rate_burst (0 per minute: no limit).
    api_rate_per_minute: int = 600
    api_rate_burst: int = 100
    # The most live event streams (GET .../events with Accept: text/event-stream) one caller (as the
    # rate limit's) holds at once in an API process; past it, 429 too_many_streams. 0: no limit.
    max_streams_per_caller: int = 20
    # loose: callers name themselves (X-Principal-Id, X-Tenant-Id) and hold every role; strict:
    # `Authorization: Bearer <JWT>` only, the caller, tenant and roles from its verified claims.
    auth_mode: str = "loose"
    # The host names the API answers /api/v1 requests for (comma-separated; empty or `*`: any). `up`
    # and `api` name the loopback ones in loose mode when this is empty (api/cross_site.py).
    api_allowed_hosts: str = ""
    # The addresses (IPs or CIDR networks, comma-separated; `*`: any) of the proxies whose
    # X-Forwarded-For and X-Forwarded-Proto the API believes: a caller's address (its rate bucket,
    # when anonymous, and a webhook sender's) is then the one the proxy names. Empty: none, the
    # connection's own address.
    api_trusted_proxies: str = ""
    # One log line a request once it is answered (method, route, status, milliseconds, and the
    # request's id, caller and tenant): info, except the health checks' and /metrics' answers below
    # 400, which are debug (a load balancer probes them every few seconds). False: none, when a
    # proxy in front keeps the access log.
    api_access_log: bool = True
    # Strict mode takes exactly one key source: an HS256 secret (32 bytes or more), a PEM public key
    # (RS256 or ES256; PEM text or the path of a PEM file) or a JWKS URL.
    jwt_secret: str = field(default="", repr=False)
    jwt_public_key: str = ""
    jwt_jwks_url: str = ""
    # Checked when set; the audience is required with a public key or a JWKS.
    jwt_issuer: str = ""
    jwt_audience: str = ""
    # Claim names (or dotted paths into nested claims) of the caller's tenant and roles.
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    # Clock skew allowed on exp, nbf and iat.
    jwt_leeway_seconds: float = 30.0
    # The longest a token may still be valid when it is used (its exp minus now): a leaked token
    # with an exp years ahead is a password that never changes. A day, as identity providers' access
    # tokens at most are by default.
    jwt_max_lifetime_seconds: float = 86_400.0
    # JWKS keys are kept this long; an unknown key id fetches them again at most this often.
    jwt_jwks_cache_seconds: float = 300.0
    jwt_jwks_min_refresh_seconds: float = 30.0
    # /metrics answers only callers holding the viewer role (strict mode: a bearer token).
    metrics_require_auth: bool = False
    max_body_bytes: int = 1_048_576
    max_trigger_depth: int = 32
    data_dir: str = ".dataworkflows"
    log_format: str = "console"
    log_level: str = "info"
    # Connectors. Hosts (or host:port) that may be private/loopback despite SSRF protection.
    http_allowed_hosts: str = ""
    # A destination's circuit (dataworkflows.circuit_breaker): this many failures in a row (refused or
    # reset connections, timeouts, 5xx) open it (0: never), and it stays open this long before a trial.
    circuit_breaker_failures: int = 5
    circuit_breaker_open_seconds: float = 30.0
    slack_api_url: str = "https://slack.com/api"
    monday_api_url: str = "https://api.monday.com/v2"
    # base64 of 32 random bytes: encrypts connections stored in the database (unset: env only).
    credentials_key: str = ""
    # How long a run's claim on a resource key lasts before another run may take it over.
    resource_claim_seconds: float = 120.0
    # How long a request waits for a database connection before answering 503.
    db_timeout_seconds: float = 5.0
    # How long a transaction of the API's or a worker's pools may sit idle, open between two of its
    # statements, before PostgreSQL ends the session (idle_in_transaction_session_timeout; 0: no
    # limit). None of their transactions waits on anything but the database, so only a process that
    # stopped mid-transaction (SIGSTOP, a frozen VM, a network partition) meets it: the locks it held
    # (a publish's lock on its workflow, which every start of that workflow waits for) are released then.
    idle_in_transaction_seconds: float = 30.0
    # The API's statements: PostgreSQL's statement_timeout on its pooled sessions, and the longest the
    # API waits for an answer (this + STATEMENT_ANSWER_GRACE_SECONDS) before it gives the connection up
    # and answers 503 (0: neither). The second bound is for a server that answers nothing at all (its
    # process stopped, a frozen VM, a partition), which no server-side timeout can end: without it the
    # API's requests hung for as long as the server did (a review).
    statement_timeout_seconds: float = 30.0
    # A worker's calls on its pooled connections: the longest each waits for the database's answer before
    # the worker gives the connection up (an error as for a lost connection: the call is retried on
    # another, its runs carry on; 0: no bound). For a server that answers nothing while TCP stays alive (a
    # stopped backend, a frozen VM, a pooler in front of a partitioned server). ANALYZE and retention's
    # batches are not bounded. Below the default lease (30 s, renewed every 10 s; a renewal that lost its
    # connection is tried again a second later): one stuck on a silent connection is made again in time.
    worker_answer_seconds: float = 10.0
    # The database role the API and the workers act as (SET ROLE on each pooled connection): one
    # that owns no table, so row-level security applies. "none": the login's own rights (a
    # superuser bypasses tenant isolation; for benchmarks and diagnosis only).
    db_role: str = "dataworkflows_app"
    # `migrate`: how long one migration transaction waits for a table lock before it is rolled back
    # and tried again (the queue's readers and writers wait behind it meanwhile; 0: no limit).
    migrate_lock_timeout_seconds: float = 2.0
    pool_min_size: int = 1
    pool_max_size: int = 10
    # Runs a worker process drives at once. Mostly they wait (on their records' transactions, on the
    # services they call), and the group commit writes the records of concurrent runs together: at 20
    # a 2-node run spent about 49 ms of its slot for 2 ms of its nodes' own work, and 40 drained
    # 1.6-2.2 times as many steps a second on this project's 2-core machine (bench/throughput.py).
    # A run in flight costs about 30 kB of memory; the pool opens connections as calls wait for them
    # (a drain at 50 used 15).
    worker_concurrency: int = 40
    # A process runs this many Procrastinate fetch loops, sharing its concurrency
    # (bench/throughput.py).
    worker_fetchers: int = 2
    # The most jobs one fetch takes in one transaction (each run job with its lease): never more
    # than the fetch loop has free slots, so every job of a batch starts at once. 1: one job a fetch,
    # as Procrastinate fetches.
    worker_fetch_batch: int = 10
    # The most attempt records of a worker's concurrent runs one transaction commits together
    # (dataworkflows.data.group_commit); 1: each record is a transaction of its own.
    worker_group_commit: int = 32
    # How often a worker queues the jobs of parked runs whose wake-up time came (timers, timeouts,
    # long retries). It also does so at the wake-up times of the runs it parked itself.
    worker_poll_seconds: float = 1.0
    # How often each worker's scheduler looks for due schedules at most (it also wakes at the
    # earliest next tick, so ticks fire on time; this bounds how soon a new schedule is picked up).
    # 0 or less: this worker runs no scheduler.
    scheduler_interval_seconds: float = 1.0
    # Serve a worker's Prometheus metrics on this port (0: off). `up` exposes them on the API's /metrics.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Templates that do more than look values up render in helper processes: at most this many
    # loop iterations and calls per render, and this long before the helper is killed.
    # Subworkflows nest at most this deep (a root run is at depth 0); deeper, the node fails with
    # nesting_too_deep (which also stops a workflow that calls itself).
    max_nesting_depth: int = 8
    # The most runs one tree (a root run and every run its subworkflow and forEach nodes started,
    # attached or detached, down to the deepest) may hold: a child past it is not started, and its
    # node fails with tree_too_large. 0: no limit. Depth alone let a workflow that starts itself
    # twice, detached, make 2^9 - 1 runs from one request (a forEach of k items: k^9). Twice the
    # largest forEach (foreach.HARD_MAX_ITEMS): at 10,000, which counts the root too, a forEach of
    # 10,000 subworkflow items never finished (its last item's child was refused, a review), nor
    # one whose items' children were retried.
    max_runs_per_tree: int = 20_000
    # The most enabled event triggers of a tenant one event may match: a publish starts a run for
    # each in one transaction (its locks and its time grow with them), so an event trigger that would
    # take one event past it is refused when it is created, enabled or reconfigured (409
    # too_many_event_triggers). 0: no limit. Lowering it leaves the triggers already there alone.
    max_event_triggers: int = 100
    # The most bytes (as JSON) of node outputs a run keeps for its later nodes to read (the scope's
    # `nodes`: only outputs something in the run reads are kept); a node whose outputs would take it
    # past fails with run_outputs_too_large. A worker's memory per run in flight is bounded by it.
    max_run_scope_bytes: int = 64 * 1024 * 1024
    template_max_steps: int = 1_000_000
    template_timeout_seconds: float = 5.0
    # core.template.render: a document larger than this (UTF-8 bytes) is stored in dw.documents and
    # the node's outputs carry its documentId instead of the body.
    document_inline_bytes: int = 16 * 1024
    # Webhook delivery rows (every delivery, whatever its outcome) are kept this long; workers
    # delete older ones in their recovery loop (0 or less: kept forever). A delivery id is known
    # as a duplicate for as long as its row is kept (and an accepted one for as long as its run is).
    webhook_retention_days: float = 7.0
    # Schedule tick rows (dw.schedule_ticks) are kept this long, each schedule's newest kept
    # always; workers delete older ones in their recovery loop (0 or less: kept forever).
    schedule_tick_retention_days: float = 30.0
    # Finished runs of workflows without their own retention (retentionDays) are kept this long
    # after they ended (a whole tree goes once every run in it is past its own workflow's
    # retention); then each worker's retention job removes them with everything that hangs off
    # them. Off by default (0 or "off": kept forever, unless their workflow sets a retention): an
    # operator opts in (docker-compose.yml sets 30 days). The job runs every
    # retention_interval_seconds (0 or less: not in this worker), whole trees of at most
    # retention_batch_size runs together a transaction (a larger tree alone).
    retention_days: float = 0.0
    retention_interval_seconds: float = 60.0
    retention_batch_size: int = 1000

    def __post_init__(self) -> None:
        # One spelling from here on: the API took " LOOSE" as loose while `up` and `api`, comparing
        # it as written, did not then limit a loose API to the loopback host names (a review: a DNS
        # rebinding page could drive it). A value that is neither is refused where the mode is used.
        object.__setattr__(self, "auth_mode", self.auth_mode.strip().lower())
        self.validate()

    def _validate_worker(self) -> None:
        """The worker's concurrency and fetch loops (0 started a worker that could never run
        anything; below that its fetch loops failed and restarted every 2 s: a semaphore below zero),
        the run tree limit its sessions carry, and the bound of what a run keeps for its nodes."""
        if self.worker_concurrency < 1:
            raise ConfigurationError(
                f"the worker's concurrency {self.worker_concurrency} (--concurrency or DW_WORKER_CONCURRENCY):"
                " give 1 or more"
            )
        if self.worker_fetchers < 1:
            raise ConfigurationError(
                f"the worker's fetch loops {self.worker_fetchers} (--fetchers or DW_WORKER_FETCHERS): give 1 or more"
            )
        if self.max_run_scope_bytes < MIN_RUN_SCOPE_BYTES:
            raise ConfigurationError(
                f"DW_MAX_RUN_SCOPE_BYTES={self.max_run_scope_bytes!r}: give at least {MIN_RUN_SCOPE_BYTES:,} bytes"
                " (a transform's outputs alone may take 1,000,000)"
            )
        if not 0 <= self.max_runs_per_tree <= 2**31 - 1:
            # The procedures read it as a PostgreSQL integer.
            raise ConfigurationError(
                f"DW_MAX_RUNS_PER_TREE={self.max_runs_per_tree!r}: give the most runs a tree may hold"
                f" (at most {2**31 - 1}), or 0 (no limit)"
            )

    def validate(self) -> None:
        """ConfigurationError, naming the variable, for values that would fail later and far from
        their cause (a deadline of `inf` made every start answer 500). Runs on construction, so
        before any pool or helper process opens."""
        days = self.retention_days
        if not math.isfinite(days) or not 0 <= days <= MAX_RETENTION_DAYS:
            raise ConfigurationError(
                f"DW_RETENTION_DAYS={days!r}: give 0 to {MAX_RETENTION_DAYS} days, or off (runs are kept)"
            )
        if not 1 <= self.retention_batch_size <= MAX_BATCH:
            raise ConfigurationError(
                f"DW_RETENTION_BATCH_SIZE={self.retention_batch_size!r}: give 1 to {MAX_BATCH:,} runs a transaction"
            )
        if not 1 <= self.worker_group_commit <= MAX_GROUP_COMMIT:
            raise ConfigurationError(
                f"DW_WORKER_GROUP_COMMIT={self.worker_group_commit!r}: give 1 (no group commit) to "
                f"{MAX_GROUP_COMMIT} records a transaction"
            )
        self._validate_worker()
        if not 1 <= self.worker_fetch_batch <= MAX_FETCH_BATCH:
            raise ConfigurationError(
                f"DW_WORKER_FETCH_BATCH={self.worker_fetch_batch!r}: give 1 (one job a fetch) to "
                f"{MAX_FETCH_BATCH} jobs a fetch"
            )
        if self.database_url:
            _check_database_url(self.database_url)
        if not 1 <= self.api_port <= MAX_PORT:
            # The socket layer takes a port modulo 65536 (70000 listened on 4464) and 0 for any free
            # one, while `up` printed the port as given in the URL it tells the CLI to use.
            raise ConfigurationError(f"the API's port {self.api_port} (--port or DW_API_PORT): give 1 to {MAX_PORT}")
        if not 0 <= self.worker_metrics_port <= MAX_PORT:
            raise ConfigurationError(
                f"the worker's metrics port {self.worker_metrics_port} (--metrics-port or DW_WORKER_METRICS_PORT):"
                f" give 1 to {MAX_PORT}, or 0 for none"
            )
        for proxy in self.trusted_proxies:
            try:
                if proxy != "*":
                    ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigurationError(
                    f"DW_API_TRUSTED_PROXIES: {proxy!r} is not an IP address or a CIDR network (or `*`)"
                ) from None
        timeout = self.default_workflow_timeout_seconds
        if not math.isfinite(timeout) or timeout < 0:
            raise ConfigurationError(
                f"DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS={timeout!r}: give finite seconds, or 0 for no deadline"
            )
        self._validate_numbers()
        self._validate_choices()
        self._validate_parts()

    def _validate_parts(self) -> None:
        """Settings that were read only where they are used, so a bad one surfaced late: a
        DW_CREDENTIALS_KEY that is not 32 bytes of base64 answered 500 at the API's first stored
        connection, and stopped a worker after its pool had opened, which then hung (`up` could only
        be killed -9; a review); a DW_QUEUE past what a PostgreSQL channel name holds dropped every
        wake-up of its runs silently (each waited for the 5 s poll), and past 128 characters every
        start answered 422; pool sizes the wrong way round were a traceback."""
        if self.credentials_key:
            from dataworkflows.credentials import Cipher

            try:
                Cipher.from_setting(self.credentials_key)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{exc.message}: make one with `python3 -c 'import base64, os;"
                    " print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`"
                ) from None
        queue = self.queue.encode()
        if not queue or len(queue) > MAX_QUEUE_BYTES:
            raise ConfigurationError(
                f"DW_QUEUE={self.queue!r}: give a name of 1 to {MAX_QUEUE_BYTES} bytes (its workers are woken on"
                " a PostgreSQL channel named after it, which holds no more)"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ConfigurationError(
                f"DW_POOL_MIN_SIZE={self.pool_min_size} is above DW_POOL_MAX_SIZE={self.pool_max_size}:"
                " give a minimum at most the maximum"
            )

    def _validate_numbers(self) -> None:
        """Every number a finite one of its range: a negative DW_LEASE_SECONDS started a worker whose
        every lease had run out when it was taken, and its runs failed worker_lost with no worker lost
        (ops review); `inf` and `nan` were taken too."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            key = "DW_" + f.name.upper()
            if not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{key}={value!r}: give a finite number, 0 or more")
            if f.name in _POSITIVE and value <= 0:
                raise ConfigurationError(f"{key}={value!r}: give a number above 0")
            least = _AT_LEAST.get(f.name)
            if least is not None and value < least and not (value == 0 and f.name not in _POSITIVE):
                raise ConfigurationError(f"{key}={value!r}: give at least {least:g}")
            # And one the places it goes can take: a PostgreSQL integer, an interval, a day count
            # (a review: DW_MAX_RECOVERIES=2147483648 or DW_STALLED_WORKER_SECONDS=1e16 passed here,
            # then every recovery pass or fetch of the worker failed).
            most = _upper_bound(f.name)
            if value > most:
                raise ConfigurationError(f"{key}={value!r}: give at most {int(most):,}")

    def _validate_choices(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(f"DW_LOG_FORMAT={self.log_format!r}: give {' or '.join(LOG_FORMATS)}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigurationError(f"DW_LOG_LEVEL={self.log_level!r}: give one of {', '.join(LOG_LEVELS)}")

    @property
    def database_role(self) -> str | None:
        """The role to SET on pooled connections (None: the login's own)."""
        role = self.db_role.strip()
        return None if role.lower() in ("", "none") else role

    @property
    def trusted_proxies(self) -> list[str]:
        return [p.strip() for p in self.api_trusted_proxies.split(",") if p.strip()]

    @property
    def allowed_hosts(self) -> list[str]:
        return [h.strip() for h in self.http_allowed_hosts.split(",") if h.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = "DATABASE_URL" if f.name == "database_url" else "DW_" + f.name.upper()
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(key, raw, f.default)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Durations and sizes that must be above 0 (the others may be 0: off, none or at once; a scheduler
# or retention interval of 0 runs none, a migration's lock timeout of 0 waits without limit, and
# DW_JWT_MAX_LIFETIME_SECONDS says its own words).
_POSITIVE = frozenset(
    {
        "lease_seconds",
        "recovery_interval_seconds",
        "stalled_worker_seconds",
        "db_timeout_seconds",
        "worker_poll_seconds",
        "template_timeout_seconds",
        "jwt_jwks_cache_seconds",
        "resource_claim_seconds",
        "throttle_delay_seconds",
        "jwt_jwks_min_refresh_seconds",
        "max_body_bytes",
        "max_trigger_depth",
        "pool_max_size",
        "max_nesting_depth",
        "template_max_steps",
        "circuit_breaker_open_seconds",
    }
)


# The smallest value above 0 a duration may have, where less cannot work: a lease must outlive the
# round trips that renew it (a review: DW_LEASE_SECONDS=0.0000001 failed healthy runs worker_lost),
# a worker's heartbeat the pass that writes it; the others are polls and timeouts that a value of
# microseconds turns into a busy loop or a failure of everything.
_AT_LEAST = {
    "lease_seconds": 1.0,
    "stalled_worker_seconds": 1.0,
    "recovery_interval_seconds": 0.1,
    # A held-back run tries again this often (a review: at 0 a worker asked ~280 times a second for
    # one free slot, and logged each).
    "throttle_delay_seconds": 0.1,
    # How often a token with an unknown key id may make the API fetch the JWKS again.
    "jwt_jwks_min_refresh_seconds": 1.0,
    "worker_poll_seconds": 0.01,
    "scheduler_interval_seconds": 0.01,
    "retention_interval_seconds": 0.1,
    "template_timeout_seconds": 0.01,
    "db_timeout_seconds": 0.01,
    "migrate_lock_timeout_seconds": 0.001,
    "idle_in_transaction_seconds": 0.001,
    "statement_timeout_seconds": 0.001,
    # Below a second, ordinary calls (a batch's records on a busy server) would be cut off.
    "worker_answer_seconds": 1.0,
    "resource_claim_seconds": 1.0,
    # An open circuit's time before a trial: less would send trials as fast as attempts come.
    "circuit_breaker_open_seconds": 0.1,
}
# A queue's workers listen on the channel procrastinate_queue_v1#<queue>: PostgreSQL's names hold 63 bytes.
MAX_QUEUE_BYTES = 63 - len("procrastinate_queue_v1#")

# The largest value a setting may have: days (retention) up to MAX_RETENTION_DAYS; seconds up to ten
# years, or, for one that becomes a PostgreSQL timeout in milliseconds (lock_timeout), up to what
# that takes (2,147,483 s, about 24.8 days); sizes in bytes, which only this process compares, up to
# 2^62; every other number up to PostgreSQL's integer (counts that procedures take as integers).
MAX_SETTING_SECONDS = 10 * 366 * 86_400
MAX_SETTING_INT = 2**31 - 1
MAX_SETTING_BYTES = 2**62
_MILLISECOND_TIMEOUTS = frozenset(
    {"migrate_lock_timeout_seconds", "idle_in_transaction_seconds", "statement_timeout_seconds"}
)


def _upper_bound(name: str) -> float:
    if name.endswith("_days"):
        return float(MAX_RETENTION_DAYS)
    if name in _MILLISECOND_TIMEOUTS:
        return float(MAX_SETTING_INT // 1000)
    if name.endswith("_seconds"):
        return float(MAX_SETTING_SECONDS)
    if name.endswith("_bytes"):
        return float(MAX_SETTING_BYTES)
    return float(MAX_SETTING_INT)


def _coerce(key: str, raw: str, default: Any) -> Any:
    if key.endswith("_RETENTION_DAYS") and raw.strip().lower() == "off":
        return 0.0
    try:
        if isinstance(default, bool):
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                # A typo was false: DW_REQUIRE_PRINCIPAL=ture turned the check off without a word.
                raise ConfigurationError(f"{key}={raw!r}: give true or false (or 1/0, yes/no, on/off)")
            return word in _TRUE
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        if key.endswith("_RETENTION_DAYS"):
            # A review: "is not a valid float" left out the one word these take besides a number.
            raise ConfigurationError(f"{key}={raw!r}: give a number of days, or off") from exc
        raise ConfigurationError(f"{key}={raw!r} is not a valid {type(default).__name__}") from exc
    return raw
