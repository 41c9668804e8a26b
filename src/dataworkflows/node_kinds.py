"""Node kinds: what a node does with one attempt. The runtime dispatches on the plan node's `kind`.

The contract. A kind is an object with
  - `name`: the plan node's `kind` it serves ("action"; later "delay", "signal", "approval",
    "subworkflow", "forEach", "transform");
  - `async attempt(ctx: AttemptContext) -> Attempt`: one attempt of a node the runtime has marked
    Running (dw.start_node_attempt_v1). It returns the parameters to record (rendered, or None) and
    an ActionResult: Succeeded with outputs, RetriableFailure/TimedOut (retried by the node's
    policy), or Failed. It never writes to the database and never raises for the node's own
    failures: a template, parameter or action error is a result with a code.
Everything after that is the runtime's and is the same for every kind: dataworkflows.outcomes
decides the node's next state and its edges, and one fenced procedure call (dw.record_attempt_v6)
writes the attempt, the checkpoint, the event and the edge decisions.

A kind that waits (delay, signal, approval) returns a `WaitFor` from `attempt` instead: the runtime
writes the wait (dw.begin_wait_v1: the wait row and the node Waiting, in one fenced transaction)
and the run holds nothing while it waits. Once the wait is resolved (a timer fired, a signal or a
decision came, a timeout expired), the runtime calls the kind's `resume(wait)` for the ActionResult
and records it like any attempt's: same decision, same edges, same procedure. A subworkflow returns
a `StartChild`: the runtime starts the child in the same kind of transaction (dw.begin_child_v2),
and the node waits on it (a `child` wait) that the child's own end resolves.

A kind whose attempt is long and made of parts (forEach: an action per item) checkpoints each part
through `ctx.items` and may return `Paused` when `ctx.holding()` says to stop starting work: the node
stays Running, and the next holder of the run calls `attempt` again with the same attempt number
(the kind's `resumable` is True), which carries on from the checkpoints.

A new kind is one module with a class that implements this contract, registered in
`default_node_kinds()`, plus its validation (dataworkflows.validation) and its SQL (for a kind that
waits: its wait rows and the procedure that consumes them). The runtime does not change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import msgspec

from dataworkflows import clock, http_client, scrubbing, transforms
from dataworkflows.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    ActionResult,
    ActionServices,
    ResourceLink,
    UnknownActionType,
    connector_of,
)
from dataworkflows.checkpoints import WaitCheckpoint
from dataworkflows.conditions import ConditionError, ConditionRefused, ConditionTimeout, ConditionUnavailable
from dataworkflows.errors import (
    ConnectionKindMismatch,
    ConnectionNotAllowed,
    ConnectionSecretTooShort,
    DatabaseUnavailable,
)
from dataworkflows.json_depth import MAX_RESULT_DEPTH, json_depth
from dataworkflows.planning import PlanNode
from dataworkflows.statuses import AttemptStatus
from dataworkflows.subworkflows import ChildSpec, SubworkflowParameterError, child_spec
from dataworkflows.template_pool import TemplateRenderer
from dataworkflows.templating import TemplateRenderError, TemplateUnavailable
from dataworkflows.waits import (
    WAITING_KINDS,
    WaitParameterError,
    WaitSpec,
    check_key_parts,
    resolved_result,
    wait_spec,
)


@dataclass(frozen=True)
class AttemptContext:
    """What a kind gets for one attempt of one node."""

    node: PlanNode
    attempt: int
    execution_id: UUID
    workflow_id: str
    workflow_version: int
    trigger: dict[str, Any]
    principal_id: str | None
    # trigger, nodes (id -> outputs of Succeeded nodes), execution: what templates see.
    scope: dict[str, Any]
    log: Any
    # The parameters an earlier attempt of this node rendered (None if none did).
    earlier_parameters: Callable[[], Awaitable[dict[str, Any] | None]]
    # Whether no new work may start now (the worker stops, or the run is being suspended).
    holding: Callable[[], bool] = lambda: False
    # Says the database refused to start work because an operator's cancel or suspension is pending
    # that the worker has not heard of yet: the run reads its requests now, and starts nothing for
    # a moment (runtime.REFUSAL_PAUSE_SECONDS).
    request_check: Callable[[], None] = lambda: None
    # A forEach node's item checkpoints, bound to this node attempt (dataworkflows.foreach).
    items: Any = None
    # For a forEach item's attempt: the item's index (its action sees node#index as its node).
    item_index: int | None = None
    # Waits longer than this are not waited out in the worker (DW_PARK_THRESHOLD_SECONDS).
    park_threshold_seconds: float = 30.0
    # A forEach item interrupted more often than this fails (DW_MAX_INTERRUPTIONS).
    max_interruptions: int = 10
    # The attempts of this node (or item) before its latest redrive (its idempotency generation).
    generation: int = 0
    # Whether the attempt is the node's compensation (its action's idempotency key is its own).
    compensating: bool = False


@dataclass(frozen=True)
class Attempt:
    parameters: dict[str, Any] | None
    result: ActionResult


@dataclass(frozen=True)
class WaitFor:
    """The attempt waits: for a time, a signal or people's decisions."""

    parameters: dict[str, Any]
    spec: WaitSpec


@dataclass(frozen=True)
class StartChild:
    """The attempt starts a child execution (a subworkflow), in its checkpoint transaction."""

    parameters: dict[str, Any]
    spec: ChildSpec


@dataclass(frozen=True)
class Paused:
    """The attempt stopped half-way with its progress checkpointed: the node stays Running and the
    attempt goes on where it stopped. A forEach pauses when its run is being suspended or handed
    back, and parks (parked=True) when nothing can start until an item's child ends or an item's
    retry comes due (the run parks, holding nothing; dw.run_wake_at_v1 knows when to wake it)."""

    parked: bool = False


Outcome = Attempt | WaitFor | StartChild | Paused


class NodeKind(Protocol):
    @property
    def name(self) -> str: ...

    async def attempt(self, ctx: AttemptContext) -> Outcome: ...

    def resume(self, wait: WaitCheckpoint) -> ActionResult: ...


class UnknownNodeKind(Exception):
    """A plan names a node kind this worker does not have."""


class NodeKinds:
    """The kinds a runtime can run, by name."""

    def __init__(self, *kinds: NodeKind) -> None:
        self._kinds = {kind.name: kind for kind in kinds}

    def get(self, name: str) -> NodeKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownNodeKind(name) from None


class ActionKind:
    """Runs an action from the registry: renders the node's parameters (once per node unless
    rerenderOnRetry), converts them to the action's Params and runs it under the node's timeout."""

    name = "action"

    def __init__(self, registry: ActionRegistry, templates: TemplateRenderer, services: ActionServices | None) -> None:
        self.registry = registry
        self.templates = templates
        self.services = services

    def resume(self, wait: WaitCheckpoint) -> ActionResult:
        raise AssertionError(f"an action node does not wait (wait {wait.id})")

    async def attempt(self, ctx: AttemptContext) -> Outcome:
        node = ctx.node
        rendered: dict[str, Any] | None = None
        try:
            if not node.rerender_on_retry and ctx.attempt > 1:
                # Resumed after a retry, a park or a crash: reuse what an earlier attempt rendered.
                rendered = await ctx.earlier_parameters()
            if rendered is None:
                # Templates also see the attempt number: with rerenderOnRetry each attempt renders
                # its own parameters; without it, attempt 1's are reused.
                rendered = await self.templates.render(node.parameters, {**ctx.scope, "attempt": ctx.attempt})
        except TemplateUnavailable as exc:
            return Attempt(rendered, ActionResult.retriable(exc.code, exc.message))
        except TemplateRenderError as exc:
            return Attempt(rendered, ActionResult.failed(exc.code, exc.message))
        assert rendered is not None
        return Attempt(rendered, await self._invoke(ctx, rendered))

    async def _invoke(self, ctx: AttemptContext, rendered: dict[str, Any]) -> ActionResult:
        node = ctx.node
        try:
            action = self.registry.get(node.action_type)
        except UnknownActionType as exc:
            return ActionResult.failed(exc.code, exc.message)
        try:
            params = msgspec.convert(rendered, action.Params)
        except msgspec.ValidationError as exc:
            return ActionResult.failed("invalid_parameters", f"parameters are invalid after rendering: {exc}")
        action_ctx = ActionContext(
            execution_id=ctx.execution_id,
            workflow_id=ctx.workflow_id,
            workflow_version=ctx.workflow_version,
            # A forEach item's action claims and links resources as node#index (its own owner).
            node_id=node.id if ctx.item_index is None else f"{node.id}#{ctx.item_index}",
            attempt=ctx.attempt,
            max_attempts=node.retry.max_attempts,
            trigger=ctx.trigger,
            principal_id=ctx.principal_id,
            log=ctx.log,
            services=self._services_for(ctx.workflow_id, action),
            generation=ctx.generation,
            compensating=ctx.compensating,
        )
        result = await self._execute(ctx, action, action_ctx, params)
        # Whatever the action does with a secret it resolved, neither its outputs nor its error
        # show it (trigger values stay: they are the workflow's data; errors are scrubbed of them
        # where they are recorded). The error too: it becomes data the run reads (`errors` in later
        # templates, conditions and transforms, a forEach's `errors` outputs), which is recorded as
        # parameters and outputs, not as an error (a review: an http.request whose server echoed
        # the bearer token, lower-cased, in its Content-Encoding showed it in a forEach's outputs,
        # a failure handler's rendered parameters and a transform's outputs).
        return _without_secrets(result, scrubbing.current())

    def _services_for(self, workflow_id: str, action: Any) -> ActionServices | None:
        """The services, with credentials asked for on behalf of the attempt's workflow (its
        connections' allow-lists apply) and its action (a stored connection's kind must be the
        action's connector), and reported to the run's scrubber."""
        if self.services is None:
            return None
        credentials = WorkflowCredentials(
            self.services.credentials, workflow_id, scrubbing.current(), action=(action.type_name, connector_of(action))
        )
        return replace(self.services, credentials=credentials)

    async def _execute(self, ctx: AttemptContext, action: Any, action_ctx: ActionContext, params: Any) -> ActionResult:
        node = ctx.node
        started = time.monotonic()
        try:
            # In this task (asyncio.timeout, not wait_for: no task of its own and its loop turns per attempt).
            async with asyncio.timeout(node.timeout_seconds) as limit:
                # Its connectors' requests cut off by it timed out, for their destinations' circuits.
                deadline = http_client.CALL_DEADLINE.set(limit.when())
                try:
                    result: ActionResult = await action.execute(action_ctx, params)
                finally:
                    http_client.CALL_DEADLINE.reset(deadline)
            return result
        except (ConnectionNotAllowed, ConnectionKindMismatch, ConnectionSecretTooShort) as exc:
            # An action that asks for credentials itself (rather than through actions.web).
            return ActionResult.failed(exc.code, exc.message)
        except TimeoutError:
            return ActionResult(
                AttemptStatus.TIMED_OUT,
                error=ActionError(
                    "action_timeout", f"the action ran longer than its {node.timeout_seconds:g}s timeout"
                ),
            )
        except DatabaseUnavailable:
            # The worker's database, not the action: a stored connection's lookup or a resource claim
            # that met it away (no pooled connection in time, a lost connection, a cancelled
            # statement). Raised as the runtime's own writes raise it: the run is resumed as after a
            # lost database, and this attempt recorded as interrupted, not counted against the retry
            # budget. It failed the node for good as action_exception (a review).
            raise
        except Exception as exc:
            # An action that raises is a bug or an unexpected condition: fail the attempt with
            # the exception named (not retried: a crash half-way may already have side effects).
            ctx.log.exception("action raised", elapsed=time.monotonic() - started)
            return ActionResult.failed("action_exception", f"{type(exc).__name__}: {exc}")


class WorkflowCredentials:
    """What one attempt's action sees as its credential source: the worker's provider, asked on
    behalf of the attempt's workflow whatever the action passes (so connections' allow-lists hold),
    refusing a stored connection of another kind than the action's connector (it may have been
    stored again since publish), telling the run's scrubber each secret it hands out (so the run's
    errors, logs and outputs never show it)."""

    def __init__(
        self,
        provider: Any,
        workflow_id: str,
        scrubber: scrubbing.Scrubber,
        *,
        action: tuple[str, str] | None = None,
    ) -> None:
        self._provider = provider
        self._workflow_id = workflow_id
        self._scrubber = scrubber
        # (type name, connector) of the attempt's action; None: kinds are not checked.
        self._action = action

    async def get(self, name: str, *, workflow_id: str | None = None) -> Any:
        secret = await self._provider.get(name, workflow_id=self._workflow_id)
        # The kind came with the secret (None: an environment connection, which has none).
        kind = getattr(secret, "kind", None)
        if self._action is not None and isinstance(kind, str) and kind != self._action[1]:
            # Never handed to the action, so nothing of it can reach its outputs or errors.
            raise ConnectionKindMismatch(name, kind, *self._action)
        reveal = getattr(secret, "reveal", None)
        value = reveal() if callable(reveal) else str(secret)
        if len(value) < scrubbing.MIN_LENGTH:
            # The scrubber would not look for it: never handed to the action.
            raise ConnectionSecretTooShort(name, scrubbing.MIN_LENGTH)
        self._scrubber.add_secret(value)
        return secret


def _without_secrets(result: ActionResult, scrubber: scrubbing.Scrubber) -> ActionResult:
    outputs = scrubber.secrets(result.outputs)
    error = result.error
    if error is not None:
        # The code too: a third-party action makes its own (Scrubber.error on structural keys).
        code = scrubber.secrets(error.code)
        message = scrubber.error(error.message, secrets_only=True)
        details = scrubber.error(error.details, secrets_only=True)
        if code != error.code or message != error.message or details != error.details:
            error = msgspec.structs.replace(error, code=code, message=message, details=details)
    # And the resources it says it touched (stored with the attempt, answered by GET /resource-links):
    # a third-party action's link that named its credential was kept as it was.
    links = tuple(_link_without_secrets(link, scrubber) for link in result.resource_links)
    if outputs is result.outputs and error is result.error and links == result.resource_links:
        return result
    return ActionResult(result.status, outputs, error, links)


def _link_without_secrets(link: ResourceLink, scrubber: scrubbing.Scrubber) -> ResourceLink:
    scrubbed = {
        "resource_type": scrubber.secrets(link.resource_type),
        "resource_key": scrubber.secrets(link.resource_key),
        "external_id": scrubber.secrets(link.external_id),
        "data": scrubber.secrets(link.data),
    }
    if all(scrubbed[name] == getattr(link, name) for name in scrubbed):
        return link
    return msgspec.structs.replace(link, **scrubbed)


class WaitingKind:
    """delay, signal and approval (dataworkflows.waits): renders the node's parameters (each
    attempt), turns them into what to wait for, and turns the resolved wait into the result."""

    def __init__(self, name: str, templates: TemplateRenderer) -> None:
        self.name = name
        self.templates = templates

    async def attempt(self, ctx: AttemptContext) -> Outcome:
        rendered: dict[str, Any] | None = None
        try:
            scope = {**ctx.scope, "attempt": ctx.attempt}
            rendered = await self.templates.render(ctx.node.parameters, scope)
            spec = wait_spec(self.name, rendered, now=clock.now(), written=ctx.node.parameters)
            if self.name == "signal":
                check_key_parts(ctx.node.parameters.get("correlationKey"), scope)
            return WaitFor(rendered, spec)
        except TemplateUnavailable as exc:
            return Attempt(rendered, ActionResult.retriable(exc.code, exc.message))
        except TemplateRenderError as exc:
            return Attempt(rendered, ActionResult.failed(exc.code, exc.message))
        except WaitParameterError as exc:
            return Attempt(rendered, ActionResult.failed("invalid_parameters", str(exc)))

    def resume(self, wait: WaitCheckpoint) -> ActionResult:
        return resolved_result(wait.kind, wait.state, wait.result)


class SubworkflowKind:
    """subworkflow (dataworkflows.subworkflows): renders the node's parameters (each attempt) into
    the child to start; the runtime starts it in the attempt's checkpoint (dw.begin_child_v2) and
    the node waits on it like on any wait, holding no worker."""

    name = "subworkflow"
    # Its attempt does nothing outside its checkpoint transaction (the child starts in it, idempotent
    # per attempt): an attempt left Running with no child (its worker stopped before the child's
    # start, or the start was refused while an operator's request was pending) is taken up again
    # by the next holder, not recorded as interrupted. Recorded so, a suspension that held a child
    # back counted against DW_MAX_INTERRUPTIONS, and three of them failed the node (a review).
    retakes_running_attempt = True

    def __init__(self, templates: TemplateRenderer) -> None:
        self.templates = templates

    async def attempt(self, ctx: AttemptContext) -> Outcome:
        rendered: dict[str, Any] | None = None
        try:
            rendered = await self.templates.render(ctx.node.parameters, {**ctx.scope, "attempt": ctx.attempt})
            return StartChild(rendered, child_spec(rendered))
        except TemplateUnavailable as exc:
            return Attempt(rendered, ActionResult.retriable(exc.code, exc.message))
        except TemplateRenderError as exc:
            return Attempt(rendered, ActionResult.failed(exc.code, exc.message))
        except SubworkflowParameterError as exc:
            return Attempt(rendered, ActionResult.failed("invalid_parameters", str(exc)))

    def resume(self, wait: WaitCheckpoint) -> ActionResult:
        return resolved_result(wait.kind, wait.state, wait.result)


@runtime_checkable
class ExpressionSandbox(Protocol):
    """Evaluates a JavaScript expression to a JSON value (dataworkflows.conditions.ConditionPool)."""

    async def value(self, expr: str, scope: dict[str, Any], *, time_limit: float, max_bytes: int) -> Any: ...


class TransformKind:
    """transform (dataworkflows.transforms): a JavaScript expression over trigger, nodes and
    execution, evaluated in the sandbox; its value becomes the node's outputs. Not retried: the
    same input gives the same throw, timeout or oversized value."""

    name = "transform"

    def __init__(self, sandbox: ExpressionSandbox) -> None:
        self.sandbox = sandbox

    def resume(self, wait: WaitCheckpoint) -> ActionResult:
        raise AssertionError(f"a transform node does not wait (wait {wait.id})")

    async def attempt(self, ctx: AttemptContext) -> Outcome:
        parameters = ctx.node.parameters
        timeout = transforms.timeout_seconds(parameters)
        try:
            value = await self.sandbox.value(
                str(parameters["expression"]), ctx.scope, time_limit=timeout, max_bytes=transforms.MAX_OUTPUT_BYTES
            )
        except ConditionUnavailable as exc:
            # Nothing ran (no helper could be started): not the expression's failure, it retries.
            return Attempt(parameters, ActionResult.retriable("transform_unavailable", exc.message))
        except ConditionRefused as exc:
            return Attempt(parameters, ActionResult.failed("transform_timeout", exc.message))
        except ConditionTimeout:
            failed = ActionResult.failed("transform_timeout", f"the transform ran longer than {timeout:g}s")
            return Attempt(parameters, failed)
        except ConditionError as exc:
            return Attempt(parameters, ActionResult.failed("transform_error", exc.message))
        outputs = transforms.outputs_of(value)
        if outputs is not value and json_depth(outputs, MAX_RESULT_DEPTH) > MAX_RESULT_DEPTH:
            # The sandbox bounds the value; wrapped, one level more (a review: unrecordable_result).
            message = (
                f'the result, as the node\'s outputs ({{"value": …}}), is nested deeper than {MAX_RESULT_DEPTH} levels'
            )
            return Attempt(parameters, ActionResult.failed("transform_error", message))
        return Attempt(parameters, ActionResult.succeeded(outputs))


def default_node_kinds(
    registry: ActionRegistry,
    templates: TemplateRenderer,
    services: ActionServices | None,
    expressions: ExpressionSandbox | None = None,
) -> NodeKinds:
    """Every kind this engine runs (transform when there is a sandbox for its expressions)."""
    from dataworkflows.foreach import ForEachKind  # it runs its items with ActionKind

    actions = ActionKind(registry, templates, services)
    kinds: list[NodeKind] = [actions, SubworkflowKind(templates), ForEachKind(actions, templates)]
    kinds.extend(WaitingKind(name, templates) for name in WAITING_KINDS)
    if expressions is not None:
        kinds.append(TransformKind(expressions))
    return NodeKinds(*kinds)
