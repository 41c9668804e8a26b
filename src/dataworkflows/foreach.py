"""forEach: one action, or one child execution, per element of a list, each item checkpointed.

    {"id": "notify", "nodeType": "forEach",
     "parameters": {"items": "{{ trigger.orders }}", "concurrency": 20, "onItemFailure": "continue",
                    "maxItems": 5000,
                    "action": {"actionType": "core.echo", "parameters": {"message": "{{ item.id }} #{{ index }}"}}}}

- items: a list, or a template that renders one (at most maxItems elements: default 1,000, at
  most 10,000; more fails the node with too_many_items);
- action: what runs for each item; its parameters are templates that also see `item` and `index`;
  each item is retried by the node's retryPolicy and bounded by its timeout; or
- subworkflow: {"workflowId", "version", "input", "waitForCompletion"} (as a subworkflow node's,
  `input` also seeing `item` and `index`): a child execution per item, started from SQL
  (dw.begin_item_child_v2); the run holds no worker while only children are in flight, and each
  child's end records its item (dw.item_child_ended_v1) and wakes the run;
- concurrency: items in flight at once (default 10, at most 100);
- onItemFailure: failFast (default: the first item that fails for good fails the node with
  item_failed; items in flight are cancelled, those not started are not run) or continue (every
  item runs; the node succeeds and lists the failures).

The node's outputs: {"items": [each item's outputs in input order, null for an item that did not
succeed], "errors": [{"index": i, "error": {...}}], "count", "succeeded", "failed"}.

Each item is a row (dw.foreach_items) and each item attempt an attempt row with the item's index.
A worker that dies half-way leaves the node Running: the next holder of the run carries on with the
same node attempt, records the items that were in flight as interrupted (retried by the policy) and
never runs an item that succeeded again. The node itself is not retried (its items are).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import msgspec

from dataworkflows import clock, metrics
from dataworkflows.actions import ActionResult
from dataworkflows.checkpoints import WaitCheckpoint
from dataworkflows.errors import InvalidInput, NodeNotRunnable
from dataworkflows.json_depth import nul_pointer, printable_pointer
from dataworkflows.json_text import json_preview, json_type
from dataworkflows.node_kinds import ActionKind, Attempt, AttemptContext, Outcome, Paused
from dataworkflows.outcomes import error_json, interruption_error, retries_left
from dataworkflows.planning import PlanNode
from dataworkflows.retry import backoff_seconds
from dataworkflows.statuses import AttemptStatus
from dataworkflows.subworkflows import CONTROL_REQUEST_PENDING, ChildSpec, SubworkflowParameterError, child_spec
from dataworkflows.subworkflows import check_parameters as check_subworkflow
from dataworkflows.template_pool import TemplateRenderer
from dataworkflows.templating import TemplateRenderError, TemplateUnavailable

DEFAULT_MAX_ITEMS = 1_000
HARD_MAX_ITEMS = 10_000
DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 100
ON_ITEM_FAILURE = ("failFast", "continue")
# While items wait for a short retry, look this often whether the run is being suspended or handed back.
HOLD_CHECK_SECONDS = 0.5


class ItemAction(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    action_type: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class ForEachParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    items: list[Any] | str
    action: ItemAction | None = None
    subworkflow: dict[str, Any] | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    on_item_failure: str = "failFast"
    max_items: int = DEFAULT_MAX_ITEMS


class ItemCheckpoint(msgspec.Struct, rename="camel"):
    """One item's durable state (dw.foreach_item_json_v1); kept current while the node runs."""

    index: int
    item: Any
    status: str  # Pending | Running | Waiting | Succeeded | Failed | Cancelled
    attempts: int
    attempt_base: int
    next_attempt_at: datetime | None
    outputs: Any
    error: Any
    # A subworkflow item's child (in flight while the item is Running).
    child_execution_id: UUID | None = None
    # Attempts cut short by their worker (they do not use up the retry budget; DW_MAX_INTERRUPTIONS).
    interruptions: int = 0


@dataclass(frozen=True)
class ItemRecord:
    """One item attempt and the item's state after it (dw.record_item_attempt_v3)."""

    index: int
    attempt: int
    action_type: str
    attempt_status: AttemptStatus
    item_status: str
    parameters: dict[str, Any] | None
    outputs: Any
    error: dict[str, Any] | None
    start_time: datetime
    end_time: datetime
    next_attempt_at: datetime | None
    resource_links: tuple[dict[str, Any], ...] = ()
    # The worker running this attempt stopped before it ended (see dataworkflows.outcomes).
    interrupted: bool = False


class ItemStore(Protocol):
    """A forEach node attempt's item checkpoints (fenced by the run's lease)."""

    async def load(self) -> list[ItemCheckpoint]: ...

    async def load_some(self, indexes: list[int]) -> list[ItemCheckpoint]: ...

    # What the attempt kept when it last parked (KeptItems.take), or None: read the items afresh.
    def kept(self) -> Any: ...

    def keep(self, state: Any) -> None: ...

    async def begin(self, action_type: str, items: list[Any]) -> list[ItemCheckpoint]: ...

    async def start(self, indexes: list[int]) -> dict[int, int]: ...

    async def record(self, record: ItemRecord) -> None: ...

    async def stop(self, why: str) -> int: ...

    async def begin_child(
        self, index: int, attempt: int, spec: ChildSpec
    ) -> tuple[ItemCheckpoint | None, dict[str, Any] | None]: ...


# The most forEach attempts a worker carries between their runs' wakes (KeptItems): past it the
# least recently parked is dropped (its next wake reads its items afresh).
KEPT_ATTEMPTS = 64
# And the most succeeded items' outputs (JSON bytes, _Items.output_bytes) they hold together: an
# attempt may hold up to MAX_OUTPUTS_BYTES, and 64 of them a gigabyte of JSON (more as Python
# objects) for as long as their runs park (a review); past it the least recently parked are dropped.
KEPT_OUTPUT_BYTES = 64 * 1024 * 1024


class KeptItems:
    """A worker's forEach attempts of subworkflow items, carried between their run's wakes. Each
    child's end wakes the run, which took the attempt up again reading all its items: n wakes of n
    items each (a forEach of 9,999 children took 356 s, one of 1,000 5.1 s: a review). Kept when
    the attempt parks, under the lease token it parked with; taken back by the same hold (the same
    token) or by the next one (token + 1: tokens count the run's acquires, so nobody held the run
    between, and only dw.item_child_ended_v1 changed its items, those whose children were in flight,
    which are read again). Any other holder between, or an end other than a park, reads afresh."""

    def __init__(self, limit: int = KEPT_ATTEMPTS, max_bytes: int = KEPT_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[UUID, str, int], tuple[int, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, execution_id: UUID, node_id: str, attempt: int, token: int) -> Any:
        """The state kept for this node attempt (and dropped from here), if `token`'s hold may carry it on."""
        kept = self._kept.pop((execution_id, node_id, attempt), None)
        if kept is None or token not in (kept[0], kept[0] + 1):
            return None
        return kept[1]

    def put(self, execution_id: UUID, node_id: str, attempt: int, token: int, state: Any) -> None:
        key = (execution_id, node_id, attempt)
        self._kept[key] = (token, state)
        self._kept.move_to_end(key)
        while len(self._kept) > self.limit or (len(self._kept) > 1 and self._bytes() > self.max_bytes):
            self._kept.popitem(last=False)

    def _bytes(self) -> int:
        return sum(getattr(state, "output_bytes", 0) for _, state in self._kept.values())

    def drop_run(self, execution_id: UUID) -> None:
        for key in [k for k in self._kept if k[0] == execution_id]:
            del self._kept[key]


def check_parameters(parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Publish-time problems as (relative pointer, code, message); the item action's own
    parameters are checked by the caller against the action registry."""
    try:
        params = msgspec.convert(parameters, ForEachParams)
    except msgspec.ValidationError as exc:
        return [("", "invalid_parameters", str(exc))]
    problems: list[tuple[str, str, str]] = []
    if (params.action is None) == (params.subworkflow is None):
        problems.append(("", "invalid_parameters", "a forEach needs exactly one of action and subworkflow"))
    if params.subworkflow is not None:
        problems.extend((f"/subworkflow{p}", code, m) for p, code, m in check_subworkflow(params.subworkflow))
    if isinstance(params.items, str) and "{{" not in params.items:
        problems.append(("/items", "invalid", "items must be a list or a template that renders one"))
    if not 1 <= params.concurrency <= MAX_CONCURRENCY:
        problems.append(("/concurrency", "range", f"must be between 1 and {MAX_CONCURRENCY}"))
    if params.on_item_failure not in ON_ITEM_FAILURE:
        problems.append(("/onItemFailure", "invalid", "must be failFast or continue"))
    if not 1 <= params.max_items <= HARD_MAX_ITEMS:
        problems.append(("/maxItems", "range", f"must be between 1 and {HARD_MAX_ITEMS}"))
    if isinstance(params.items, list) and len(params.items) > params.max_items:
        problems.append(("/items", "too_many_items", f"{len(params.items)} items; the limit is {params.max_items}"))
    return problems


def item_node(node: PlanNode, action: ItemAction) -> PlanNode:
    """The plan node an item's attempts run as: the item action, with the forEach node's retry
    policy and timeout; its parameters are rendered for each attempt (they see item and index)."""
    return msgspec.structs.replace(
        node, action_type=action.action_type, parameters=action.parameters, kind="action", rerender_on_retry=True
    )


# The most the items' outputs may hold together (their JSON): the node's outputs hold every item's,
# in the worker's memory and then in one checkpoint (800 items of 1 MB held 3.7 GB in a worker
# before PostgreSQL refused the checkpoint). Past it the node fails with outputs_too_large.
MAX_OUTPUTS_BYTES = 16 * 1024 * 1024
# Why a forEach stopped, as its cancelled and not-run items' errors say ("cancelled: ...", "the forEach
# stopped: ..."): the failFast words were written whatever stopped it.
FAIL_FAST = "another item failed (failFast)"
OUTPUTS_TOO_LARGE = "the items' outputs together passed their limit (outputs_too_large)"


def _json_size(value: Any) -> int:
    return 0 if value is None else len(msgspec.json.encode(value))


def outputs_of(rows: list[ItemCheckpoint]) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: r.index)
    failed = [r for r in ordered if r.status == "Failed"]
    return {
        "items": [r.outputs if r.status == "Succeeded" else None for r in ordered],
        "errors": [{"index": r.index, "error": r.error} for r in failed],
        "count": len(ordered),
        "succeeded": sum(1 for r in ordered if r.status == "Succeeded"),
        "failed": len(failed),
    }


def _now() -> datetime:
    return clock.now()


def _link_json(link: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(link)
    assert isinstance(data, dict)
    return data


class ForEachKind:
    """forEach: renders `items`, checkpoints one row per item, and runs the item action (or starts
    the item's child) for each with bounded concurrency."""

    name = "forEach"
    resumable = True

    def __init__(self, actions: ActionKind, templates: TemplateRenderer) -> None:
        self.actions = actions
        self.templates = templates

    def resume(self, wait: WaitCheckpoint) -> ActionResult:
        raise AssertionError(f"a forEach node does not wait (wait {wait.id})")

    async def attempt(self, ctx: AttemptContext) -> Outcome:
        params = msgspec.convert(ctx.node.parameters, ForEachParams)
        store: ItemStore = ctx.items
        action_type = params.action.action_type if params.action is not None else "subworkflow"
        recorded: dict[str, Any] = {
            "itemCount": None,
            "actionType": action_type,
            "concurrency": params.concurrency,
            "onItemFailure": params.on_item_failure,
        }
        if params.subworkflow is not None:
            kept = store.kept()
            if isinstance(kept, _ChildItems):
                recorded["itemCount"] = len(kept.rows)
                return await kept.again(ctx, store).run(recorded, fresh=False)
        rows = await store.load()
        if not rows:
            items = await self._items(ctx, params)
            if isinstance(items, ActionResult):
                return Attempt(recorded, items)
            # Also when there are none: a redrive's new attempt drops the previous attempt's items.
            try:
                rows = await store.begin(action_type, items)
            except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
                # Refused by PostgreSQL (its transaction rolled back): the node fails saying so. It
                # was a crash of the node's task, the run's end engine_error (a review).
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                return Attempt(recorded, _unstorable_items(message))
        recorded["itemCount"] = len(rows)
        if params.subworkflow is not None:
            return await _ChildItems(self.templates, ctx, store, params, rows).run(recorded)
        return await _ActionItems(self.actions, ctx, store, params, rows).run(recorded)

    async def _items(self, ctx: AttemptContext, params: ForEachParams) -> list[Any] | ActionResult:
        """The rendered list, or the failure that says why there is none."""
        try:
            rendered = await self.templates.render({"items": params.items}, {**ctx.scope, "attempt": ctx.attempt})
        except TemplateUnavailable as exc:
            return ActionResult.retriable(exc.code, exc.message)
        except TemplateRenderError as exc:
            return ActionResult.failed(exc.code, exc.message)
        items = rendered.get("items")
        if not isinstance(items, list):
            shown = "" if items is None else f": {json_preview(items)}"
            return ActionResult.failed("invalid_items", f"items must render to an array, not {json_type(items)}{shown}")
        if len(items) > params.max_items:
            return ActionResult.failed(
                "too_many_items",
                f"items has {len(items)} elements; the limit is {params.max_items}"
                f" (maxItems, at most {HARD_MAX_ITEMS})",
            )
        where = nul_pointer(items, "/items")
        if where is not None:
            at = printable_pointer(where)
            return _unstorable_items(f"{at} holds a NUL character (U+0000), which PostgreSQL stores in no value")
        return items


def _unstorable_items(message: str) -> ActionResult:
    """The failure of a forEach whose rendered items cannot be stored (not retried: the same items
    would be refused again)."""
    return ActionResult.failed("unrecordable_result", f"the items could not be stored: {message}"[:2000])


class _Items:
    """What both ways of running items share: the rows, the failFast rule, the result."""

    def __init__(
        self, ctx: AttemptContext, store: ItemStore, params: ForEachParams, rows: list[ItemCheckpoint]
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.params = params
        self.rows = {row.index: row for row in rows}
        self.order = sorted(self.rows)
        self.fail_fast = params.on_item_failure == "failFast"
        # The succeeded items' outputs so far (JSON bytes), and the item that took them past
        # MAX_OUTPUTS_BYTES, if one did.
        self.output_bytes = 0
        self.overflow: int | None = None
        for index in self.order:
            if self.rows[index].status == "Succeeded":
                self.count_outputs(self.rows[index])

    def count_outputs(self, row: ItemCheckpoint) -> None:
        self.output_bytes += _json_size(row.outputs)
        if self.overflow is None and self.output_bytes > MAX_OUTPUTS_BYTES:
            self.overflow = row.index

    def too_large(self) -> ActionResult:
        """The items' outputs passed MAX_OUTPUTS_BYTES: the node fails, whatever onItemFailure says
        (it could not hold them), with its counts and errors but not the items' outputs."""
        for row in self.rows.values():
            if row.status in ("Pending", "Waiting", "Running"):
                row.status = "Cancelled"
        outputs = outputs_of(list(self.rows.values()))
        del outputs["items"]
        message = (
            f"the items' outputs passed {MAX_OUTPUTS_BYTES:,} bytes together at item {self.overflow}"
            f" ({self.output_bytes:,} bytes): a forEach's outputs hold every item's; have each item"
            " return less (a child workflow: declare smaller outputs)"
        )
        result = ActionResult.failed("outputs_too_large", message, index=self.overflow, bytes=self.output_bytes)
        return ActionResult(result.status, outputs=outputs, error=result.error)

    def first_failure(self) -> ItemCheckpoint | None:
        if not self.fail_fast:
            return None
        return next((self.rows[i] for i in self.order if self.rows[i].status == "Failed"), None)

    def failure(self, failed: ItemCheckpoint) -> ActionResult:
        """failFast: the node fails with the item's error as the cause (the others were stopped)."""
        for row in self.rows.values():
            if row.status in ("Pending", "Waiting", "Running"):
                row.status = "Cancelled"
        cause = failed.error if isinstance(failed.error, dict) else None
        message = f"item {failed.index} failed" + (f": {cause['message']}" if cause and cause.get("message") else "")
        result = ActionResult.failed("item_failed", message[:2000], index=failed.index, cause=cause)
        return ActionResult(result.status, outputs=outputs_of(list(self.rows.values())), error=result.error)

    def succeeded(self) -> ActionResult:
        return ActionResult.succeeded(outputs_of(list(self.rows.values())))

    async def _record_interrupted(self, row: ItemCheckpoint, action_type: str, message: str) -> None:
        """An item attempt its worker cut short goes again at once, its retry budget untouched;
        past DW_MAX_INTERRUPTIONS the item fails (too_many_interruptions)."""
        end = _now()
        interruptions = row.interruptions + 1
        exceeded, error = interruption_error(interruptions, self.ctx.max_interruptions, what="item", message=message)
        if exceeded:
            status, next_at, status_of_attempt = "Failed", None, AttemptStatus.FAILED
        else:
            status, next_at, status_of_attempt = "Waiting", end, AttemptStatus.RETRIABLE_FAILURE
        self.ctx.log.warning("recording interrupted item attempt", item_index=row.index, attempt=row.attempts)
        record = ItemRecord(
            index=row.index,
            attempt=row.attempts,
            action_type=action_type,
            attempt_status=status_of_attempt,
            item_status=status,
            parameters=None,
            outputs=None,
            error=error,
            start_time=end,
            end_time=end,
            next_attempt_at=next_at,
            interrupted=True,
        )
        await self.store.record(record)
        metrics.INTERRUPTIONS.labels(action_type).inc()
        row.status, row.error, row.next_attempt_at = status, error, next_at
        row.interruptions, row.attempt_base = interruptions, row.attempt_base + 1


class _ChildItems(_Items):
    """Items that each run a child execution: started from SQL; while only children are in flight
    the attempt returns Paused(parked=True) and the run parks; each child's end records its item
    in the child's completion transaction and wakes the run, which carries the attempt on.

    A wake costs what changed, not the item count: the attempt is kept when it parks (KeptItems)
    and taken up again with only the items in flight read again; which items are in flight, due
    and waiting, and the first that failed, are kept as the items change (_note)."""

    def __init__(
        self,
        templates: TemplateRenderer,
        ctx: AttemptContext,
        store: ItemStore,
        params: ForEachParams,
        rows: list[ItemCheckpoint],
    ) -> None:
        super().__init__(ctx, store, params, rows)
        assert params.subworkflow is not None
        self.templates = templates
        self.spec = params.subworkflow
        # Built from the rows by _index (after _recover_interrupted), then kept by _note.
        self.running: set[int] = set()
        self.waiting: set[int] = set()
        self.pending: deque[int] = deque()
        self.first_failed: int | None = None
        # The rows may not be what the database has (a start that started fewer items than it
        # asked for): the attempt is not kept, and its next wake reads them afresh.
        self.stale = False

    def again(self, ctx: AttemptContext, store: ItemStore) -> _ChildItems:
        """The kept attempt, taken up again under this call's context (its scope, its lease)."""
        self.ctx, self.store = ctx, store
        return self

    async def run(self, recorded: dict[str, Any], *, fresh: bool = True) -> Outcome:
        if fresh:
            await self._recover_interrupted()
            self._index()
        else:
            await self._refresh()
        outcome = await self._carry_on(recorded)
        if isinstance(outcome, Paused) and outcome.parked and not self.stale:
            self.store.keep(self)
        return outcome

    async def _carry_on(self, recorded: dict[str, Any]) -> Outcome:
        while True:
            if self.overflow is not None:
                await self.store.stop(OUTPUTS_TOO_LARGE)
                return Attempt(recorded, self.too_large())
            if self.first_failure() is not None:
                return Attempt(recorded, await self._stop())
            at = _now()
            in_flight, retries = len(self.running), self._retries(at)
            free = self.params.concurrency - in_flight
            due = self._due(at, max(free, 1))
            if not due and not in_flight and not retries:
                return Attempt(recorded, self.succeeded())
            if due and free > 0 and not self.ctx.holding():
                if not await self._start(due[:free]):
                    return Paused()  # a request is pending: the run reads it before going on
                continue
            paused = self._pause(in_flight, retries, at)
            if paused is not None:
                return paused
            await asyncio.sleep(min(max((min(retries) - at).total_seconds(), 0.0), HOLD_CHECK_SECONDS))

    def _index(self) -> None:
        """Which items are in flight, waiting, pending (in order) and the first that failed, from the rows."""
        self.running = {i for i in self.order if self.rows[i].status == "Running"}
        self.waiting = {i for i in self.order if self.rows[i].status == "Waiting"}
        self.pending = deque(i for i in self.order if self.rows[i].status == "Pending")
        self.first_failed = next((i for i in self.order if self.rows[i].status == "Failed"), None)

    def _note(self, row: ItemCheckpoint, was: str) -> None:
        """The item's row changed (from status `was`): the sets and counts follow."""
        index = row.index
        self.running.discard(index)
        self.waiting.discard(index)
        if row.status == "Running":
            self.running.add(index)
        elif row.status == "Waiting":
            self.waiting.add(index)
        elif row.status == "Failed" and (self.first_failed is None or index < self.first_failed):
            self.first_failed = index
        elif row.status == "Succeeded" and was != "Succeeded":
            self.count_outputs(row)
        # A Pending item leaves self.pending when it is next looked at (_due).

    async def _refresh(self) -> None:
        """The items whose children were in flight, read again (a child's end records its item)."""
        if not self.running:
            return
        for row in await self.store.load_some(sorted(self.running)):
            was = self.rows[row.index].status
            self.rows[row.index] = row
            self._note(row, was)

    def first_failure(self) -> ItemCheckpoint | None:
        if not self.fail_fast or self.first_failed is None:
            return None
        return self.rows[self.first_failed]

    def _retries(self, at: datetime) -> list[datetime]:
        """The times of the waiting items' retries."""
        return [self.rows[i].next_attempt_at or at for i in self.waiting]

    def _due(self, at: datetime, limit: int) -> list[int]:
        """At most `limit` items due to start, in order: pending ones, and waiting ones whose retry is due."""
        while self.pending and self.rows[self.pending[0]].status != "Pending":
            self.pending.popleft()
        pending: list[int] = []
        for index in self.pending:
            if len(pending) >= limit:
                break
            if self.rows[index].status == "Pending":
                pending.append(index)
        retries = [i for i in self.waiting if (self.rows[i].next_attempt_at or at) <= at]
        return sorted(pending + retries)[:limit]

    def _pause(self, in_flight: int, retries: list[datetime], at: datetime) -> Paused | None:
        """Nothing can start now: pause (holding), park (a child's end or the next retry's time wakes
        the run, dw.run_wake_at_v1), or None to wait here for a retry due soon."""
        if self.ctx.holding():
            return Paused()
        delay = max((min(retries) - at).total_seconds(), 0.0) if retries else None
        if in_flight or delay is None or delay > self.ctx.park_threshold_seconds:
            return Paused(parked=True)
        return None

    async def _start(self, indexes: list[int]) -> bool:
        """Starts the items and their children; False when the database refused because an
        operator's cancel or suspension is pending (dw.start_item_attempts_v2 starts none, and
        dw.begin_item_child_v2 puts back the items whose children had not started): the run is
        asked to read the request, and the rows are read again."""
        started = await self.store.start(indexes)
        if not started:
            self.ctx.request_check()
            return False
        if len(started) < len(indexes):
            self.stale = True
        for index, attempt in sorted(started.items()):
            row = self.rows[index]
            was = row.status
            if self.first_failure() is not None:
                # failFast: the items started with it are cancelled by the stop, not begun.
                row.status, row.attempts = "Running", attempt
                self._note(row, was)
                continue
            if not await self._start_child(row, attempt):
                self.rows = {row.index: row for row in await self.store.load()}
                self.ctx.request_check()
                return False
            self._note(self.rows[index], was)
        return True

    async def _stop(self) -> ActionResult:
        """failFast: items not started are not run, children in flight are cancelled; the outputs
        are the items as the database has them once stopped."""
        await self.store.stop(FAIL_FAST)
        failed = self.first_failure()
        assert failed is not None
        self.rows = {row.index: row for row in await self.store.load()}
        return self.failure(self.rows.get(failed.index, failed))

    async def _recover_interrupted(self) -> None:
        """The worker stopped between an item's start and its child's: the item goes again."""
        for index in self.order:
            row = self.rows[index]
            if row.status == "Running" and row.child_execution_id is None:
                await self._record_interrupted(
                    row, "subworkflow", "the worker starting this item's child stopped first"
                )

    async def _start_child(self, row: ItemCheckpoint, attempt: int) -> bool:
        """Starts the item's child, or records why it did not start; False when the start was
        refused because an operator's request is pending (the item was put back, nothing recorded)."""
        row.status, row.attempts = "Running", attempt
        scope = {**self.ctx.scope, "item": row.item, "index": row.index, "attempt": attempt}
        try:
            spec = child_spec(await self.templates.render(self.spec, scope))
        except TemplateUnavailable as exc:
            await self._record(row, ActionResult.retriable(exc.code, exc.message))
            return True
        except TemplateRenderError as exc:
            await self._record(row, ActionResult.failed(exc.code, exc.message))
            return True
        except SubworkflowParameterError as exc:
            await self._record(row, ActionResult.failed("invalid_parameters", str(exc)))
            return True
        try:
            started, error = await self.store.begin_child(row.index, attempt, spec)
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            # The input could not be stored (not JSON, or refused by PostgreSQL): the item fails.
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            await self._record(row, ActionResult.failed("unrecordable_result", f"the child's input: {message}"[:2000]))
            return True
        if error is not None and error.get("code") == CONTROL_REQUEST_PENDING:
            return False
        if started is None:
            error = error or {}
            await self._record(row, ActionResult.failed(str(error.get("code")), str(error.get("message"))))
            return True
        self.rows[row.index] = started
        return True

    async def _record(self, row: ItemCheckpoint, result: ActionResult) -> None:
        """An item attempt that ended without a child (refused, or interrupted before it started)."""
        end = _now()
        error = error_json(result)
        retry = result.status == AttemptStatus.RETRIABLE_FAILURE and retries_left(
            self.ctx.node, row.attempts, row.attempt_base
        )
        status = "Waiting" if retry else "Failed"
        retry_after = result.error.retry_after if result.error else None
        failed = row.attempts - row.attempt_base
        next_at = end + timedelta(seconds=backoff_seconds(self.ctx.node.retry, failed, retry_after))
        record = ItemRecord(
            index=row.index,
            attempt=row.attempts,
            action_type="subworkflow",
            attempt_status=result.status,
            item_status=status,
            parameters=None,
            outputs=None,
            error=error,
            start_time=end,
            end_time=end,
            next_attempt_at=next_at if retry else None,
        )
        await self.store.record(record)
        row.status, row.error, row.next_attempt_at = status, error, record.next_attempt_at


class _ActionItems(_Items):
    """One forEach node attempt's action items, run in this worker to the end (or to a pause)."""

    def __init__(
        self,
        actions: ActionKind,
        ctx: AttemptContext,
        store: ItemStore,
        params: ForEachParams,
        rows: list[ItemCheckpoint],
    ) -> None:
        super().__init__(ctx, store, params, rows)
        assert params.action is not None
        self.actions = actions
        self.node = item_node(ctx.node, params.action)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        # When each item's attempt in flight began (a cancelled one is recorded with it).
        self.attempt_started: dict[int, datetime] = {}
        # When the database last refused to start items because an operator's cancel or suspension
        # is pending (dw.start_item_attempts_v2), by time.monotonic(): the run is asked to read the
        # request, and for HOLD_CHECK_SECONDS no item starts (the run holds by then, or the request
        # was withdrawn and items start again); with no item in flight the attempt pauses instead.
        self.refused_at: float | None = None

    async def run(self, recorded: dict[str, Any]) -> Outcome:
        try:
            await self._recover_interrupted()
            while True:
                if self.overflow is not None:
                    await self._cancel_tasks(recorded_as=OUTPUTS_TOO_LARGE)
                    await self.store.stop(OUTPUTS_TOO_LARGE)
                    return Attempt(recorded, self.too_large())
                failed = self.first_failure()
                if failed is not None:
                    return Attempt(recorded, await self._stop(failed))
                at = _now()
                if not self.ctx.holding() and not self._refused():
                    await self._launch(at)
                if not self.tasks:
                    if self._refused():
                        return Paused()  # the run reads the request before taking the node up again
                    idle = await self._idle(at)
                    if isinstance(idle, Paused):
                        return idle
                    if idle is not None:
                        return Attempt(recorded, idle)
                    continue
                done, _ = await asyncio.wait(
                    self.tasks.values(), timeout=self._next_due(at), return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    del self.tasks[int(task.get_name().rsplit("-", 1)[1])]
                    task.result()  # the record's own failure (the lease lost, the database away) ends the node task
        finally:
            await self._cancel_tasks(recorded_as=None)

    def _refused(self) -> bool:
        return self.refused_at is not None and time.monotonic() - self.refused_at < HOLD_CHECK_SECONDS

    async def _idle(self, at: datetime) -> Paused | ActionResult | None:
        """No item runs: the result when all are done; Paused when the run must stop starting work
        (holding), or parks because the next retry is too far off to wait for in the worker
        (dw.run_wake_at_v1 counts item retries); else None, after waiting a little."""
        waiting = [r.next_attempt_at or at for r in self.rows.values() if r.status == "Waiting"]
        if not waiting and not self._due(at):
            return self.succeeded()
        if self.ctx.holding():
            return Paused()
        delay = max((min(waiting) - at).total_seconds(), 0.0) if waiting else 0.0
        if delay > self.ctx.park_threshold_seconds:
            return Paused(parked=True)
        await asyncio.sleep(min(delay, HOLD_CHECK_SECONDS))
        return None

    def _due(self, at: datetime) -> list[int]:
        return [
            i
            for i in self.order
            if i not in self.tasks
            and (
                self.rows[i].status == "Pending"
                or (self.rows[i].status == "Waiting" and (self.rows[i].next_attempt_at or at) <= at)
            )
        ]

    def _next_due(self, at: datetime) -> float | None:
        """Seconds until an item's retry is due while items run, when it could start then (a slot
        free, nothing holding), or until a refusal's hold ends; None: wait for an item to end."""
        if len(self.tasks) >= self.params.concurrency or self.ctx.holding():
            return None
        if self.refused_at is not None and self._refused():
            return max(self.refused_at + HOLD_CHECK_SECONDS - time.monotonic(), 0.0)
        waiting = [r.next_attempt_at for r in self.rows.values() if r.status == "Waiting" and r.next_attempt_at]
        return max((min(waiting) - at).total_seconds(), 0.0) if waiting else None

    async def _launch(self, at: datetime) -> None:
        free = self.params.concurrency - len(self.tasks)
        due = self._due(at)[: max(free, 0)]
        if not due:
            return
        started = await self.store.start(due)
        if not started:
            self.refused_at = time.monotonic()
            self.ctx.request_check()
        for index, attempt in sorted(started.items()):
            row = self.rows[index]
            row.status, row.attempts = "Running", attempt
            self.tasks[index] = asyncio.create_task(self._run_item(row, attempt), name=f"item-{index}")

    async def _run_item(self, row: ItemCheckpoint, attempt: int) -> None:
        start = self.attempt_started[row.index] = _now()
        item_ctx = replace(
            self.ctx,
            node=self.node,
            attempt=attempt,
            scope={**self.ctx.scope, "item": row.item, "index": row.index},
            log=self.ctx.log.bind(item_index=row.index, attempt=attempt, action_type=self.node.action_type),
            items=None,
            item_index=row.index,
            generation=row.attempt_base - row.interruptions,
        )
        outcome = await self.actions.attempt(item_ctx)
        assert isinstance(outcome, Attempt)
        await self._record(row, attempt, outcome.parameters, outcome.result, start)

    async def _record(
        self,
        row: ItemCheckpoint,
        attempt: int,
        parameters: dict[str, Any] | None,
        result: ActionResult,
        start: datetime,
    ) -> None:
        end = _now()
        status, next_at, error = self._decide(row, attempt, result, end)
        succeeded = status == "Succeeded"
        record = ItemRecord(
            index=row.index,
            attempt=attempt,
            action_type=self.node.action_type,
            attempt_status=result.status,
            item_status=status,
            parameters=parameters,
            outputs=result.outputs if succeeded else (result.outputs or None),
            error=error,
            start_time=start,
            end_time=end,
            next_attempt_at=next_at,
            resource_links=tuple(_link_json(link) for link in result.resource_links),
        )
        try:
            await self.store.record(record)
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            # What the attempt produced cannot be stored: record a failure that says so instead.
            if result.error is not None and result.error.code == "unrecordable_result":
                raise
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            failed = ActionResult.failed(
                "unrecordable_result", f"the item attempt's parameters or outputs could not be stored: {message}"[:2000]
            )
            await self._record(row, attempt, None, failed, start)
            return
        row.status, row.next_attempt_at, row.error = status, next_at, error
        row.outputs = record.outputs if succeeded else None
        if succeeded:
            self.count_outputs(row)
        metrics.ATTEMPTS.labels(self.node.action_type, result.status.value).inc()
        metrics.NODE_DURATION.labels(self.node.action_type, result.status.value).observe((end - start).total_seconds())
        if status == "Waiting":
            metrics.RETRIES.labels(self.node.action_type).inc()

    def _decide(
        self, row: ItemCheckpoint, attempt: int, result: ActionResult, end: datetime
    ) -> tuple[str, datetime | None, dict[str, Any] | None]:
        error = error_json(result)
        if result.status == AttemptStatus.SUCCEEDED:
            return "Succeeded", None, error
        if result.status == AttemptStatus.CANCELLED:
            return "Cancelled", None, error
        if result.status in (AttemptStatus.RETRIABLE_FAILURE, AttemptStatus.TIMED_OUT):
            if retries_left(self.node, attempt, row.attempt_base):
                retry_after = result.error.retry_after if result.error else None
                delay = backoff_seconds(self.node.retry, attempt - row.attempt_base, retry_after)
                return "Waiting", end + timedelta(seconds=delay), error
            error = {**(error or {}), "attemptsExhausted": attempt - row.attempt_base}
        return "Failed", None, error

    async def _recover_interrupted(self) -> None:
        """Items that were in flight when the previous holder of the run stopped: recorded as
        interrupted, and retried by the policy (an item that succeeded never runs again)."""
        for index in self.order:
            row = self.rows[index]
            if row.status != "Running":
                continue
            await self._record_interrupted(
                row, self.node.action_type, "the worker running this item stopped before recording its outcome"
            )

    async def _stop(self, failed: ItemCheckpoint) -> ActionResult:
        """failFast: items in flight are cancelled, those not started are not run; the node fails."""
        await self._cancel_tasks(recorded_as=FAIL_FAST)
        await self.store.stop(FAIL_FAST)
        return self.failure(failed)

    async def _cancel_tasks(self, *, recorded_as: str | None) -> None:
        """Cancels the items in flight; with `recorded_as` (why the forEach stopped), those still
        Running are recorded Cancelled with it (None: they are left as they are)."""
        tasks = dict(self.tasks)
        self.tasks.clear()
        for task in tasks.values():
            task.cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for index, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                self.ctx.log.error("item task failed as the forEach stopped", item_index=index, error=repr(result))
            row = self.rows[index]
            if recorded_as is not None and row.status == "Running":
                await self._record_cancelled(row, recorded_as)

    async def _record_cancelled(self, row: ItemCheckpoint, why: str) -> None:
        cancelled = ActionResult(
            AttemptStatus.CANCELLED, error=ActionResult.failed("item_cancelled", f"cancelled: {why}").error
        )
        # The attempt's own start (it was recorded as starting when it was cancelled: no duration).
        start = self.attempt_started.get(row.index) or _now()
        try:
            await self._record(row, row.attempts, None, cancelled, start)
        except NodeNotRunnable:
            # Its own outcome was committed just as it was cancelled (the answer never came back):
            # the node's counts take it as recorded (they said one Succeeded item fewer than the
            # items' rows).
            self.ctx.log.info("a cancelled item had recorded its outcome", item_index=row.index)
            recorded = next((r for r in await self.store.load() if r.index == row.index), None)
            if recorded is not None:
                row.status, row.outputs, row.error = recorded.status, recorded.outputs, recorded.error
