"""One node's attempts, each decided and checkpointed: the part of a run that the node kinds,
dataworkflows.outcomes and the fenced dw.record_attempt_v6 share. The scheduling loop around it
(which nodes run when, parking, the run's end) is dataworkflows.runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from dataworkflows import metrics, traces
from dataworkflows.actions import ActionResult
from dataworkflows.checkpoints import AttemptRecord, NodeState, Recorded, RunInfo, WaitCheckpoint
from dataworkflows.clock import now
from dataworkflows.data.runs import RunData
from dataworkflows.errors import InvalidInput, LeaseLost
from dataworkflows.foreach import ItemCheckpoint, ItemRecord, KeptItems
from dataworkflows.json_depth import too_deep
from dataworkflows.json_text import encode_json
from dataworkflows.node_kinds import Attempt, AttemptContext, NodeKinds, Paused, StartChild, WaitFor
from dataworkflows.outcomes import INTERRUPTED, ConditionEvaluator, Decision, decide, interrupted_decision
from dataworkflows.planning import Plan, PlanNode
from dataworkflows.statuses import FINAL_NODE, AttemptStatus, NodeStatus, Verdict
from dataworkflows.subworkflows import CONTROL_REQUEST_PENDING, ChildSpec


class Slots:
    """Parallel slots a node's record may fill with the nodes its edges make Ready (it starts them
    in its transaction: dw.record_attempt_v6). The scheduling loop says how many are free
    (`available`, counting the recording node's own); a grant holds its extra slots for the
    record's round trip, so that records in flight at once, and the loop meanwhile, never hand
    out the same slot twice."""

    def __init__(self) -> None:
        self.available: Callable[[], int] = lambda: 0
        # Slots granted to records in flight beyond their own nodes' (which the loop counts as running).
        self.reserved = 0

    @contextmanager
    def reserve(self, wanted: bool) -> Iterator[int]:
        grant = max(self.available(), 0) if wanted else 0
        extra = max(grant - 1, 0)
        self.reserved += extra
        try:
            yield grant
        finally:
            self.reserved -= extra


_JSON = msgspec.json.Encoder()
RUN_OUTPUTS_TOO_LARGE = "run_outputs_too_large"


def _kept_sizes(state: dict[str, NodeState], used: list[str]) -> dict[str, int]:
    """The size (as JSON) of each output a run's checkpoint gave it to keep."""
    return {
        node_id: len(_JSON.encode(state[node_id].outputs))
        for node_id in used
        if state[node_id].status == NodeStatus.SUCCEEDED and state[node_id].outputs is not None
    }


@dataclass
class RunContext:
    """What the holder of one execution's lease shares between its scheduling loop and its nodes."""

    execution_id: UUID
    token: int
    info: RunInfo
    plan: Plan
    state: dict[str, NodeState]
    data: RunData
    kinds: NodeKinds
    conditions: ConditionEvaluator
    worker_id: str
    park_threshold_seconds: float
    # Children nest at most this deep (DW_MAX_NESTING_DEPTH).
    max_nesting_depth: int
    # Set by the runtime when the worker is asked to stop; by the heartbeat when the lease is gone.
    stopping: asyncio.Event
    log: Any
    # A node interrupted more often than this fails (DW_MAX_INTERRUPTIONS).
    max_interruptions: int = 10
    # The most bytes (as JSON) of outputs the run keeps for its later nodes to read (its scope's
    # `nodes`; DW_MAX_RUN_SCOPE_BYTES): a node whose outputs would take it past fails with
    # run_outputs_too_large (see NodeAttempts._within_scope).
    max_scope_bytes: int = 64 * 1024 * 1024
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while an operator's suspension is pending: attempts in flight finish, nothing new starts.
    suspending: asyncio.Event = field(default_factory=asyncio.Event)
    # How many times the run was poked (something changed outside the worker): a forEach that
    # parks with rows read before the latest poke does not park (its items changed meanwhile).
    pokes: int = 0
    # The parallel slots an attempt's record may fill with the nodes it makes Ready.
    slots: Slots = field(default_factory=lambda: Slots())
    # Set when an attempt's record ended the run as Succeeded (dw.record_attempt_v6's p_complete).
    succeeded_by_record: bool = False
    # The Procrastinate job this run runs under and the Procrastinate worker that fetched it (None:
    # not known). The record that ends the run ends the job too, and sets job_finished: the worker
    # does not finish it again.
    job_id: int | None = None
    job_worker: int | None = None
    job_finished: bool = False
    # Says the database refused a start because an operator's request is pending: the scheduling
    # loop renews the lease now, takes in what it says, and starts nothing for a moment (set by the
    # loop; runtime.REFUSAL_PAUSE_SECONDS).
    request_check: Callable[[], None] = field(default=lambda: None)
    # The worker's forEach item states carried between a run's wakes (foreach.KeptItems; None: none).
    kept_items: KeptItems | None = None

    def holding(self) -> bool:
        """Whether no new attempt may start now (the worker stops, or the run is being suspended)."""
        return self.stopping.is_set() or self.suspending.is_set()

    def __post_init__(self) -> None:
        self.nodes = {node.id: node for node in self.plan.nodes}
        self.order = [node.id for node in self.plan.nodes]
        # The nodes whose outputs something in the run can read: only those are kept (a run's
        # memory grows with what it uses, not with everything its nodes returned).
        self.outputs_used = frozenset(node.id for node in self.plan.nodes if node.outputs_used)
        for node_id, state in self.state.items():
            if node_id not in self.outputs_used:
                state.outputs = None
        # Those nodes, in the state's order: scope() looks at them only (it runs at every attempt).
        self._used_in_order = [node_id for node_id in self.state if node_id in self.outputs_used]
        # The size (as JSON) of each output kept: what max_scope_bytes bounds.
        self.scope_sizes = _kept_sizes(self.state, self._used_in_order)
        self.scope_bytes = sum(self.scope_sizes.values())
        # Sizes of outputs whose records are in flight (parallel nodes): counted as kept from the
        # check until the record is taken in (a review: ten parallel branches all passed the check
        # before any was taken in, and kept six times the bound).
        self.scope_reserved: dict[str, int] = {}
        # The errors of Failed nodes (the scope's `errors`), kept current as nodes fail (_take_in): not a
        # scan of every node at every attempt.
        self.errors: dict[str, Any] = {
            node_id: state.error
            for node_id, state in self.state.items()
            if state.status == NodeStatus.FAILED and state.error is not None
        }
        self.trigger: dict[str, Any] = self.info.trigger or {}

    def scope(self) -> dict[str, Any]:
        """What templates and conditions see: trigger, nodes (id -> outputs of a Succeeded node),
        errors (id -> error of a Failed node: what a node on its failure edge handles), execution."""
        state = self.state
        outputs = {n: state[n].outputs for n in self._used_in_order if state[n].status == NodeStatus.SUCCEEDED}
        execution = {
            "id": str(self.execution_id),
            "workflowId": self.info.workflow_id,
            "version": self.info.version,
            "principal": self.info.principal_id,
        }
        return {"trigger": self.trigger, "nodes": outputs, "errors": dict(self.errors), "execution": execution}


class NodeAttempts:
    """Runs nodes of one execution attempt by attempt, checkpointing each."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    async def recover_interrupted(self) -> tuple[str, dict[str, Any] | None] | None:
        """An attempt that was in flight when its worker stopped (handed back after the grace
        period, or lost with the worker) is recorded as interrupted and the node goes again at once,
        without using up its retry budget; past DW_MAX_INTERRUPTIONS it fails instead. A Succeeded
        node never runs again. Returns the node and error of an unhandled failure, if recording one
        ended a node for good."""
        for node_id in self.run.order:
            state = self.run.state[node_id]
            if state.status != NodeStatus.RUNNING or state.prestarted or self.resumable(node_id):
                continue
            if getattr(self.run.kinds.get(self.run.nodes[node_id].kind), "retakes_running_attempt", False):
                continue  # taken up again (dataworkflows.node_kinds.SubworkflowKind)
            at = now()
            # Its real start, from the node_started event its start wrote (attempt rows are written
            # when an attempt ends, so this one has none); the recovery time if that is gone.
            started = await self.run.data.attempt_started_at(self.run.execution_id, node_id, state.attempts) or at
            node = self.run.nodes[node_id]
            self.run.log.warning(
                "recording interrupted attempt",
                node_id=node_id,
                attempt=state.attempts,
                interruptions=state.interruptions + 1,
            )
            decision = await interrupted_decision(
                node,
                interruptions=state.interruptions + 1,
                max_interruptions=self.run.max_interruptions,
                ended_at=at,
                scope=self.run.scope(),
                conditions=self.run.conditions,
            )
            # What the attempt produced is lost with it: no parameters, no outputs.
            outcome = Attempt(None, ActionResult.retriable(INTERRUPTED, "the attempt was interrupted"))
            decision = await self._record(
                node, state.attempts, outcome, started, at, decided=decision, interrupted=True, next_steps=False
            )
            if decision.verdict == Verdict.FAILED_UNHANDLED:
                return node_id, decision.error
        return None

    def resumable(self, node_id: str) -> bool:
        """Whether the node's kind carries a Running attempt on from its checkpoints (forEach)
        rather than having it recorded as interrupted."""
        return bool(getattr(self.run.kinds.get(self.run.nodes[node_id].kind), "resumable", False))

    async def run_node(self, node_id: str, *, resume: bool = False, left_over: bool = False) -> Decision | None:
        """Attempts the node until it has an outcome (a Decision), or it waits or pauses (None).
        resume: carry on with the node's Running attempt (one the acquire or a record started just
        now, or a resumable kind's) instead of starting one. left_over: that attempt began under an
        earlier hold of the run (a forEach's, before a park, a suspension or a lost worker)."""
        node = self.run.nodes[node_id]
        kind = self.run.kinds.get(node.kind)
        # What this task's previous attempt used: an in-process retry reuses it as it was rendered
        # (key order included) without reading it back from the database.
        previous: dict[str, Any] | None = None
        while True:
            state = self.run.state[node_id]
            start: datetime | None = None
            if resume:
                attempt, resume = state.attempts, False
                if left_over:
                    # Its row starts when the attempt did, from its node_started event (it started
                    # when the run was taken again, after its own items). Not for an attempt the
                    # acquire or a record started moments ago: every node of every run is one, and
                    # the read cost a 2-node step five times its transactions (bench, 2026-12-06).
                    start = await self.run.data.attempt_started_at(self.run.execution_id, node_id, attempt)
            else:
                started = await self.run.data.start_node_attempt(self.run.execution_id, self.run.token, node_id)
                if started is None:
                    # A cancel or a suspension came (its notification perhaps before this worker
                    # held the run): the node stays as it was, and the loop reads the request.
                    self.run.log.info("node not started: a control request is pending", node_id=node_id)
                    self.run.request_check()
                    return None
                attempt = started
            state.status, state.attempts = NodeStatus.RUNNING, attempt
            start = start or now()
            pokes = self.run.pokes
            work = kind.attempt(self._attempt_context(node, attempt, previous))
            outcome = await traces.attempt(node_id, node.action_type, attempt, work)  # its span, if tracing
            if isinstance(outcome, Paused):
                state.parked = outcome.parked and self.run.pokes == pokes
                self.run.log.info("node paused", node_id=node_id, attempt=attempt, parked=outcome.parked)
                return None
            if isinstance(outcome, WaitFor):
                return await self._begin_wait(node, attempt, outcome, start)
            if isinstance(outcome, StartChild):
                return await self._begin_child(node, attempt, outcome, start)
            previous = outcome.parameters if outcome.parameters is not None else previous
            decision = await self._record(node, attempt, outcome, start, now())
            if decision.verdict != Verdict.RETRY or not await self._backoff_in_process(decision.retry_delay):
                return decision

    async def _begin_wait(self, node: PlanNode, attempt: int, wait_for: WaitFor, start: datetime) -> Decision | None:
        """Writes the wait; a wait resolved at once (a buffered signal, a due timer) is recorded now."""
        try:
            wait = await self.run.data.begin_wait(
                self.run.execution_id,
                self.run.token,
                node_id=node.id,
                attempt=attempt,
                parameters=wait_for.parameters,
                spec=wait_for.spec,
            )
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            return await self._record_unrecordable(node, attempt, exc, start, now())
        return await self._waiting(node, attempt, wait)

    async def _begin_child(self, node: PlanNode, attempt: int, child: StartChild, start: datetime) -> Decision | None:
        """Starts the child in the attempt's checkpoint and waits on it (or, with waitForCompletion
        false, records the node's success with the child's id at once). A child that cannot start
        fails the node with the reason (not retried: the same parameters would be refused again)."""
        try:
            wait, error = await self.run.data.begin_child(
                self.run.execution_id,
                self.run.token,
                node_id=node.id,
                attempt=attempt,
                parameters=child.parameters,
                spec=child.spec,
                max_depth=self.run.max_nesting_depth,
            )
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            return await self._record_unrecordable(node, attempt, exc, start, now())
        if wait is None:
            assert error is not None
            if error.get("code") == CONTROL_REQUEST_PENDING:
                # As for a node's start (start_node_attempt): the node stays as it is (Running, no
                # child), and the loop reads the request; the attempt is taken up again when the
                # run goes on (at once if the request was withdrawn; SubworkflowKind).
                self.run.log.info("child not started: a control request is pending", node_id=node.id)
                self.run.request_check()
                return None
            code, message = str(error.get("code", "child_not_started")), str(error.get("message", ""))
            failed = ActionResult.failed(
                code, message, **{k: v for k, v in error.items() if k not in ("code", "message")}
            )
            return await self._record(node, attempt, Attempt(child.parameters, failed), start, now())
        return await self._waiting(node, attempt, wait)

    async def _waiting(self, node: PlanNode, attempt: int, wait: WaitCheckpoint) -> Decision | None:
        state = self.run.state[node.id]
        state.status, state.next_at, state.wait = NodeStatus.WAITING, None, wait
        metrics.WAITS_STARTED.labels(wait.kind).inc()
        self.run.log.info(
            "node waits",
            node_id=node.id,
            attempt=attempt,
            wait_kind=wait.kind,
            wait_id=str(wait.id),
            name=wait.name,
            wakes_at=wait.wakes_at.isoformat() if wait.wakes_at else None,
        )
        if wait.is_open:
            return None
        return await self.resume_wait(node.id)

    async def resume_wait(self, node_id: str) -> Decision:
        """Records the outcome of a node whose wait was resolved (the attempt that waited)."""
        state = self.run.state[node_id]
        wait = state.resolved_wait
        assert wait is not None, f"node {node_id} has no resolved wait"
        node = self.run.nodes[node_id]
        result = self.run.kinds.get(node.kind).resume(wait)
        metrics.WAITS_RESOLVED.labels(wait.kind, wait.state).inc()
        return await self._record(node, wait.attempt, Attempt(wait.parameters, result), wait.created_at, now())

    def _attempt_context(self, node: PlanNode, attempt: int, previous: dict[str, Any] | None) -> AttemptContext:
        async def earlier_parameters() -> dict[str, Any] | None:
            if previous is not None:
                return previous
            return await self.run.data.earlier_parameters(self.run.execution_id, node.id)

        return AttemptContext(
            node=node,
            attempt=attempt,
            execution_id=self.run.execution_id,
            workflow_id=self.run.info.workflow_id,
            workflow_version=self.run.info.version,
            trigger=self.run.trigger,
            principal_id=self.run.info.principal_id,
            scope=self.run.scope(),
            log=self.run.log.bind(node_id=node.id, attempt=attempt, action_type=node.action_type),
            earlier_parameters=earlier_parameters,
            holding=self.run.holding,
            request_check=lambda: self.run.request_check(),
            items=_Items(self.run, node.id, attempt) if self.resumable(node.id) else None,
            park_threshold_seconds=self.run.park_threshold_seconds,
            max_interruptions=self.run.max_interruptions,
            # attempt_base counts the attempts before the latest redrive plus the interruptions
            # since (see dw.record_attempt_v6): less those, the redrive's generation.
            generation=self.run.state[node.id].attempt_base - self.run.state[node.id].interruptions,
        )

    async def _backoff_in_process(self, delay: float) -> bool:
        """Waits out a short backoff; False when the node should not be retried here (a long
        backoff parks the run instead; a stopping worker leaves the retry to the next one)."""
        if delay > self.run.park_threshold_seconds:
            return False
        sleeping = asyncio.ensure_future(asyncio.sleep(delay))
        lost = asyncio.ensure_future(self.run.lease_lost.wait())
        stopping = asyncio.ensure_future(self.run.stopping.wait())
        suspending = asyncio.ensure_future(self.run.suspending.wait())
        try:
            await asyncio.wait({sleeping, lost, stopping, suspending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, lost, stopping, suspending):
                task.cancel()
        if self.run.lease_lost.is_set():
            raise LeaseLost()
        return not self.run.holding()

    async def _record(
        self,
        node: PlanNode,
        attempt: int,
        outcome: Attempt,
        start: datetime,
        end: datetime,
        *,
        decided: Decision | None = None,
        interrupted: bool = False,
        next_steps: bool = True,
    ) -> Decision:
        """Decides what the attempt means (unless `decided` says it already) and checkpoints it
        (one fenced transaction). interrupted: the attempt was cut short by its worker. next_steps:
        the same transaction starts the nodes it makes Ready (as many as the scheduling loop has
        free slots for) and ends the run when nothing is left to do (see dw.record_attempt_v6)."""
        state = self.run.state[node.id]
        outcome, size = self._within_scope(node, outcome, decided)
        result = outcome.result
        decision = decided or await decide(
            node,
            result,
            attempt=attempt,
            attempt_base=state.attempt_base,
            ended_at=end,
            scope=self.run.scope(),
            conditions=self.run.conditions,
        )
        for failure in decision.condition_errors:
            details = {"target": failure.target, "condition": failure.condition, "error": failure.message}
            await self.run.data.record_event(
                self.run.execution_id, self.run.token, node_id=node.id, type="condition_error", details=details
            )
        succeeded = decision.verdict == Verdict.SUCCEEDED
        complete = next_steps and self._may_end_run(node.id, decision)
        with self.run.slots.reserve(next_steps) as grant:
            record = AttemptRecord(
                execution_id=self.run.execution_id,
                token=self.run.token,
                node_id=node.id,
                attempt=attempt,
                action_type=node.action_type,
                attempt_status=decision.attempt_status,
                parameters=outcome.parameters,
                outputs=result.outputs if succeeded else (result.outputs or None),
                error=decision.error,
                start_time=start,
                end_time=end,
                worker=self.run.worker_id,
                outcome=decision.verdict,
                next_attempt_at=decision.retry_at,
                fired=decision.fired,
                resource_links=tuple(_link_json(link) for link in result.resource_links),
                interrupted=interrupted,
                start_limit=grant,
                complete=complete,
                finish_job=self.run.job_id if complete else None,
                job_worker=self.run.job_worker,
            )
            try:
                recorded = await self.run.data.record_attempt(record)
            except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
                if result.error is not None and result.error.code == "unrecordable_result":
                    raise
                return await self._record_unrecordable(node, attempt, exc, start, end)
            self._take_in(node.id, decision, result.outputs if succeeded else None, recorded, size)
        metrics.ATTEMPTS.labels(node.action_type, decision.attempt_status.value).inc()
        metrics.NODE_DURATION.labels(node.action_type, decision.attempt_status.value).observe(
            (end - start).total_seconds()
        )
        if interrupted:
            # As the procedure does: the budget counts from past this attempt.
            metrics.INTERRUPTIONS.labels(node.action_type).inc()
            state.interruptions, state.attempt_base = state.interruptions + 1, state.attempt_base + 1
        elif decision.verdict == Verdict.RETRY:
            metrics.RETRIES.labels(node.action_type).inc()
        self.run.log.info(
            "attempt recorded",
            node_id=node.id,
            attempt=attempt,
            attempt_status=decision.attempt_status.value,
            node_status=decision.verdict.node_status.value,
            retry_in=round(decision.retry_delay, 3) if decision.retry_at else None,
        )
        return decision

    def _within_scope(self, node: PlanNode, outcome: Attempt, decided: Decision | None) -> tuple[Attempt, int | None]:
        """The attempt as recorded (as it is when `decided` says what it means already), and the
        size of the outputs the run keeps from it (None: none). A success whose outputs the run keeps
        for later nodes (its node's outputs are read) and that would take what the run keeps (and what
        records in flight will keep) past max_scope_bytes is recorded as a failure,
        run_outputs_too_large, not retried (the same outputs would do it again), whose failure edge
        or dead letter takes it; its outputs are not stored. Without this bound a run of 200 nodes
        returning 0.9 MB each, read by one join, took a worker from 171 MB to 1.4 GB (a review);
        forEach bounds its items' outputs the same way (foreach.MAX_OUTPUTS_BYTES)."""
        result = outcome.result
        if decided is not None or result.status != AttemptStatus.SUCCEEDED:
            return outcome, None
        try:
            encoded = encode_json(result.outputs)
        except (TypeError, msgspec.EncodeError) as exc:
            # Before its edges are decided: their conditions would be sent outputs their helper cannot
            # read either (a lone surrogate: the node task crashed, engine_error, a review).
            return Attempt(None, _unrecordable(too_deep("outputs", result.outputs) or str(exc))), None
        if node.id not in self.run.outputs_used:
            return outcome, None
        size = len(encoded)
        in_flight = sum(reserved for other, reserved in self.run.scope_reserved.items() if other != node.id)
        kept = self.run.scope_bytes - self.run.scope_sizes.get(node.id, 0) + in_flight
        if kept + size <= self.run.max_scope_bytes:
            self.run.scope_reserved[node.id] = size  # until its record is taken in (_take_in)
            return outcome, size
        message = (
            f"node {node.id}'s outputs ({size:,} bytes as JSON) would take what the run keeps for its later nodes"
            f" to read past {self.run.max_scope_bytes:,} bytes (DW_MAX_RUN_SCOPE_BYTES; {kept:,} kept already)"
        )
        failed = ActionResult.failed(
            RUN_OUTPUTS_TOO_LARGE, message, bytes=size, keptBytes=kept, limit=self.run.max_scope_bytes
        )
        return Attempt(outcome.parameters, msgspec.structs.replace(failed, resource_links=result.resource_links)), None

    def _take_in(
        self, node_id: str, decision: Decision, outputs: Any, recorded: Recorded, size: int | None = None
    ) -> None:
        """What the record changed, in the run's state: the node, the nodes its edges made Ready,
        Skipped or (started in the record) Running, and the run's end."""
        self.run.scope_reserved.pop(node_id, None)
        state = self.run.state[node_id]
        state.status, state.next_at, state.wait = decision.verdict.node_status, decision.retry_at, None
        if decision.verdict == Verdict.SUCCEEDED and node_id in self.run.outputs_used:
            state.outputs = outputs
            size = len(_JSON.encode(outputs)) if size is None else size
            self.run.scope_bytes += size - self.run.scope_sizes.get(node_id, 0)
            self.run.scope_sizes[node_id] = size
        if decision.verdict in (Verdict.FAILED_HANDLED, Verdict.FAILED_UNHANDLED):
            state.error = decision.error
            if decision.error is not None:
                self.run.errors[node_id] = decision.error
        for change in recorded.changes:
            changed = self.run.state[change.node_id]
            changed.status = change.status
            if change.attempt is not None:
                changed.attempts, changed.prestarted = change.attempt, True
        self.run.succeeded_by_record = self.run.succeeded_by_record or recorded.run_succeeded
        self.run.job_finished = self.run.job_finished or recorded.job_finished

    def _may_end_run(self, node_id: str, decision: Decision) -> bool:
        """Whether this node's record may end the run: the node ends well (edges decided) and, as
        far as this worker knows, every other node has ended; a run with outputs to render ends
        in the scheduling loop. The procedure checks again under the run's lock."""
        if self.run.plan.outputs is not None or decision.verdict not in (Verdict.SUCCEEDED, Verdict.FAILED_HANDLED):
            return False
        # From the last node back: a node later in the plan is the likelier one still to run, so a
        # record that cannot end the run finds out at once (this runs at every record).
        state = self.run.state
        return all(state[other].status in FINAL_NODE for other in reversed(self.run.order) if other != node_id)

    async def _record_unrecordable(
        self, node: PlanNode, attempt: int, exc: Exception, start: datetime, end: datetime
    ) -> Decision:
        # What the attempt produced cannot be stored (not JSON, or refused by PostgreSQL, such as a
        # NUL character): the transaction rolled back, so record a failure that says so instead,
        # without the offending values. Not retried: the same input would do it again.
        self.run.scope_reserved.pop(node.id, None)  # its outputs are not kept
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        self.run.log.warning("attempt result could not be stored", node_id=node.id, attempt=attempt, error=message)
        return await self._record(node, attempt, Attempt(None, _unrecordable(message)), start, end)


def _unrecordable(message: str) -> ActionResult:
    """The failure recorded for an attempt whose parameters or outputs cannot be stored. Not retried:
    the same input would do it again."""
    return ActionResult.failed(
        "unrecordable_result", f"the attempt's parameters or outputs could not be stored: {message}"[:2000]
    )


class _Items:
    """A forEach node attempt's item checkpoints (dataworkflows.foreach.ItemStore), fenced by the
    run's lease token."""

    def __init__(self, run: RunContext, node_id: str, attempt: int) -> None:
        self.run = run
        self.node_id = node_id
        self.attempt = attempt

    async def load(self) -> list[ItemCheckpoint]:
        return await self.run.data.load_items(self.run.execution_id, self.run.token, self.node_id, self.attempt)

    async def load_some(self, indexes: list[int]) -> list[ItemCheckpoint]:
        return await self.run.data.load_items_at(
            self.run.execution_id, self.run.token, self.node_id, self.attempt, indexes
        )

    def kept(self) -> Any:
        """What the attempt kept when it last parked, if this hold may carry it on (KeptItems)."""
        if self.run.kept_items is None:
            return None
        return self.run.kept_items.take(self.run.execution_id, self.node_id, self.attempt, self.run.token)

    def keep(self, state: Any) -> None:
        if self.run.kept_items is not None:
            self.run.kept_items.put(self.run.execution_id, self.node_id, self.attempt, self.run.token, state)

    async def begin(self, action_type: str, items: list[Any]) -> list[ItemCheckpoint]:
        return await self.run.data.begin_items(
            self.run.execution_id, self.run.token, self.node_id, self.attempt, action_type=action_type, items=items
        )

    async def start(self, indexes: list[int]) -> dict[int, int]:
        return await self.run.data.start_item_attempts(self.run.execution_id, self.run.token, self.node_id, indexes)

    async def record(self, record: ItemRecord) -> None:
        await self.run.data.record_item_attempt(
            self.run.execution_id, self.run.token, self.node_id, record, worker=self.run.worker_id
        )

    async def stop(self, why: str) -> int:
        return await self.run.data.stop_items(self.run.execution_id, self.run.token, self.node_id, why)

    async def begin_child(
        self, index: int, attempt: int, spec: ChildSpec
    ) -> tuple[ItemCheckpoint | None, dict[str, Any] | None]:
        return await self.run.data.begin_item_child(
            self.run.execution_id,
            self.run.token,
            self.node_id,
            index=index,
            attempt=attempt,
            spec=spec,
            max_depth=self.run.max_nesting_depth,
            worker=self.run.worker_id,
        )


def _link_json(link: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(link)
    assert isinstance(data, dict)
    return data
