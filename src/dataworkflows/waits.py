"""The waiting node kinds' rules: their parameters, what to wait for once they are rendered, and what
a resolved wait means for the node. Pure module (no database, no templates).

- delay:    `{"duration": "PT2S"}` or `{"until": "2026-12-24T18:00:00Z"}` (templated): a timer.
- signal:   `{"name": "payment", "correlationKey": "{{ trigger.orderId }}", "timeout": "PT1H"}`:
            waits for POST /executions/{id}/signals/payment; the signal's payload becomes the
            node's outputs.
- approval: `{"approvers": ["alice", "bob"], "quorum": "any" | "all" | 2, "timeout": "P2D",
            "title": "...", "description": "..."}`: waits for approvers' decisions.
A signal or approval wait that times out fails the node with `wait_timeout`; a rejected approval
fails it with `rejected`. Both are permanent failures a failure edge can route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from dataworkflows import templating
from dataworkflows.actions import ActionResult
from dataworkflows.clock import iso_time
from dataworkflows.definitions import parse_duration
from dataworkflows.json_text import json_preview
from dataworkflows.principal_ids import principal_id_problem

WAITING_KINDS = ("delay", "signal", "approval")
MAX_APPROVERS = 100
# An approval's title is a display name's length (validation.MAX_DISPLAY_NAME), its description a
# document template's or a note's.
MAX_TITLE = 200
MAX_DESCRIPTION = 2000
MAX_WAIT_SECONDS = 366 * 86400
SIGNAL_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,199}\Z")


class WaitParameterError(ValueError):
    """Rendered parameters that do not describe a wait (the node fails with invalid_parameters)."""


@dataclass(frozen=True)
class WaitSpec:
    """What a node waits for (dw.begin_wait_v1's arguments)."""

    kind: str  # timer | signal | approval
    name: str | None = None
    correlation_key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    due_at: datetime | None = None
    expires_at: datetime | None = None


class DelayParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    duration: str | None = None
    until: str | None = None


class SignalParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    name: str
    # An integer is its decimal digits: `{{ trigger.orderId }}` keeps a number's type, and an order id
    # 1003 failed the node invalid_parameters at once, taking its failure edge as if no signal came.
    correlation_key: str | int | None = None
    timeout: str | None = None


class EscalationParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    # How long the approvers have alone; then these may decide too (README "Waiting node kinds").
    after: str
    approvers: list[str] | str


class ApprovalParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    approvers: list[str] | str
    quorum: str | int = "any"
    timeout: str | None = None
    title: str | None = None
    description: str | None = None
    escalation: EscalationParams | None = None


_PARAMS: dict[str, type[msgspec.Struct]] = {"delay": DelayParams, "signal": SignalParams, "approval": ApprovalParams}


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_parameters(kind: str, parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Publish-time problems as (relative pointer, code, message); templated values are checked
    when they are rendered, at run time."""
    static = {k: v for k, v in parameters.items() if not _templated(v)}
    problems: list[tuple[str, str, str]] = []
    try:
        msgspec.convert({**static, **{k: _placeholder(k) for k in parameters if k not in static}}, _PARAMS[kind])
    except msgspec.ValidationError as exc:
        return [("", "invalid_parameters", str(exc))]
    try:
        _spec(kind, {k: v for k, v in parameters.items()}, now=datetime.now(UTC), strict=False)
    except WaitParameterError as exc:
        problems.append(("", "invalid_parameters", str(exc)))
    return problems


def _placeholder(key: str) -> Any:
    return ["x"] if key == "approvers" else "x"


def wait_spec(kind: str, rendered: dict[str, Any], *, now: datetime, written: dict[str, Any] | None = None) -> WaitSpec:
    """The wait a rendered node asks for; WaitParameterError when the values do not make one.
    written: the node's parameters as its definition has them (before rendering)."""
    try:
        msgspec.convert(rendered, _PARAMS[kind])
    except msgspec.ValidationError as exc:
        raise WaitParameterError(f"parameters are invalid after rendering: {exc}") from None
    if kind == "signal" and written is not None:
        _check_key_rendered(written.get("correlationKey"), rendered.get("correlationKey"), rendered.get("name"))
    return _spec(kind, rendered, now=now, strict=True)


def _check_key_rendered(written: Any, rendered: Any, name: Any) -> None:
    """A correlation key written as a template that renders to null (`{{ trigger.orderId }}` for a
    trigger whose orderId is null): a wait without a key takes any signal of its name, another run's
    included, so the node fails instead. A key written as null, or left out, is such a wait on purpose."""
    if rendered is None and _templated(written):
        shown = written if len(written) <= 100 else written[:99] + "…"
        raise WaitParameterError(
            f"correlationKey {shown} rendered to null; a wait without a key would take any {name} signal,"
            " so this one waits for none (give the value, or leave correlationKey out to take any)"
        )


def check_key_parts(written: Any, scope: dict[str, Any]) -> None:
    """A correlation key written as text with values in it (`"{{ trigger.region }}-{{ trigger.id }}"`)
    whose values are null: it rendered `null-null`, which no sender means, and the wait waited for it
    until its timeout (for ever without one). The node fails instead, naming them, as a key that
    renders to null does. Only keys that look values up are checked here (see
    templating.null_lookups); one that computes them renders in a helper."""
    nulls = templating.null_lookups(written, scope) if isinstance(written, str) else []
    if nulls:
        shown = written if len(written) <= 100 else written[:99] + "…"
        raise WaitParameterError(
            f"correlationKey {shown}: {', '.join(nulls)} {'is' if len(nulls) == 1 else 'are'} null, so the key"
            " names no real value and no signal would be meant for it (give the value, or leave"
            " correlationKey out to take any)"
        )


def _spec(kind: str, values: dict[str, Any], *, now: datetime, strict: bool) -> WaitSpec:
    """strict=False (publish time) skips values that are still templates."""

    def given(key: str) -> Any:
        value = values.get(key)
        return None if value is None or (not strict and _templated(value)) else value

    if kind == "delay":
        return _delay(values, given, now)
    expires_at = _expiry(given("timeout"), now)
    if kind == "signal":
        name = given("name")
        if name is not None and not SIGNAL_NAME.match(name):
            raise WaitParameterError(
                f"signal name {json_preview(name)} must be 1-200 letters, digits, '.', '_', ':' or '-'"
            )
        key = given("correlationKey")
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 500):
            raise WaitParameterError("correlationKey must be a string of 1-500 characters (or an integer)")
        return WaitSpec("signal", name=name, correlation_key=key, expires_at=expires_at)
    return _approval(values, given, expires_at, now, strict=strict)


def _delay(values: dict[str, Any], given: Any, now: datetime) -> WaitSpec:
    if (values.get("duration") is None) == (values.get("until") is None):
        raise WaitParameterError("a delay needs exactly one of duration (PT30S) or until (an ISO 8601 timestamp)")
    duration, until = given("duration"), given("until")
    if duration is not None:
        seconds = _seconds(duration, "duration", allow_zero=True)
        return WaitSpec("timer", due_at=now + timedelta(seconds=seconds))
    if until is not None:
        return WaitSpec("timer", due_at=_timestamp(until))
    return WaitSpec("timer", due_at=now)


def _approver_names(approvers: Any, what: str, *, strict: bool) -> list[str]:
    if isinstance(approvers, str) or not all(isinstance(a, str) and a.strip() for a in approvers):
        raise WaitParameterError(f"{what} must be a list of principal ids")
    names = list(dict.fromkeys(a.strip() for a in approvers))
    if not 1 <= len(names) <= MAX_APPROVERS:
        raise WaitParameterError(
            f"{'an approval needs' if what == 'approvers' else what + ': give'} 1 to {MAX_APPROVERS} approvers"
        )
    _check_approvers(names, strict=strict)
    return names


def _escalation(escalation: Any, expires_at: datetime | None, now: datetime, *, strict: bool) -> dict[str, Any] | None:
    """{"approvers", "at"}: who else may decide, from when (the wait's start and `after`); refused
    when it would come at or after the timeout (nobody could decide then)."""
    if not isinstance(escalation, dict):
        return None
    after = escalation.get("after")
    names = escalation.get("approvers")
    at = None
    if isinstance(after, str) and (strict or not _templated(after)):
        at = now + timedelta(seconds=_seconds(after, "escalation.after", allow_zero=False))
        if expires_at is not None and at >= expires_at:
            raise WaitParameterError("escalation.after must be shorter than the approval's timeout")
    if names is not None and (strict or not _templated(names)):
        names = _approver_names(names, "escalation.approvers", strict=strict)
    return {"approvers": names, "at": at.isoformat() if at is not None else None}


def _approval(
    values: dict[str, Any], given: Any, expires_at: datetime | None, now: datetime, *, strict: bool
) -> WaitSpec:
    approvers = given("approvers")
    quorum = given("quorum") if "quorum" in values else "any"
    names: list[str] = []
    if approvers is not None:
        names = _approver_names(approvers, "approvers", strict=strict)
    required = _required(quorum, len(names) if approvers is not None else None)
    escalation = _escalation(given("escalation"), expires_at, now, strict=strict)
    if escalation is not None and approvers is not None:
        _check_escalation_adds(escalation["approvers"], names, strict=strict)
    _check_text(given("title"), "title", MAX_TITLE)
    _check_text(given("description"), "description", MAX_DESCRIPTION)
    details = {
        "approvers": names,
        "required": required,
        "quorum": quorum,
        "title": given("title"),
        "description": given("description"),
        "escalation": escalation,
    }
    return WaitSpec("approval", details={k: v for k, v in details.items() if v is not None}, expires_at=expires_at)


def _check_approvers(names: list[str], *, strict: bool) -> None:
    """Each approver is a principal id a caller can present (X-Principal-Id, a token's sub): one no
    caller can be (300 characters, a line break) left the node waiting until its timeout, for ever
    without one, since nobody could decide it."""
    for name in names:
        if not strict and _templated(name):
            continue  # rendered, and checked, when the node starts
        problem = principal_id_problem(name)
        if problem is not None:
            raise WaitParameterError(f"approver {json_preview(name, 60)} is not a principal id: it {problem}")


def _check_escalation_adds(escalated: Any, approvers: list[str], *, strict: bool) -> None:
    """An escalation whose approvers are all approvers already adds nobody: it would never change who
    may decide (refused, as a timeout nobody could decide before is). Templated names are checked
    once rendered."""
    if not isinstance(escalated, list) or (not strict and any(_templated(n) for n in [*escalated, *approvers])):
        return
    if set(escalated) <= set(approvers):
        raise WaitParameterError("escalation.approvers adds nobody: each of them is an approver already")


def _check_text(value: Any, key: str, most: int) -> None:
    # A template is None here at publish time (given): checked once rendered.
    if isinstance(value, str) and len(value) > most:
        raise WaitParameterError(f"{key} must be at most {most} characters (this one has {len(value)})")


def _required(quorum: Any, approvers: int | None) -> int | None:
    if quorum is None:
        return None
    if quorum == "any":
        return 1
    if quorum == "all":
        return approvers
    if isinstance(quorum, bool) or not isinstance(quorum, int):
        raise WaitParameterError(f"quorum must be 'any', 'all' or a number of approvers, not {json_preview(quorum)}")
    if quorum < 1 or (approvers is not None and quorum > approvers):
        raise WaitParameterError(f"quorum {quorum} must be between 1 and the number of approvers")
    return quorum


def _expiry(timeout: Any, now: datetime) -> datetime | None:
    if timeout is None:
        return None
    return now + timedelta(seconds=_seconds(timeout, "timeout", allow_zero=False))


def _seconds(text: Any, name: str, *, allow_zero: bool) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise WaitParameterError(f"{name}: {exc}") from None
    if seconds > MAX_WAIT_SECONDS or (seconds <= 0 and not allow_zero):
        raise WaitParameterError(f"{name} must be {'' if allow_zero else 'longer than zero and '}at most 366 days")
    return seconds


def _timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise WaitParameterError(f"until must be an ISO 8601 timestamp, not {json_preview(text)}")
    try:
        value = iso_time(text)
    except ValueError:
        raise WaitParameterError(
            f"until {json_preview(text)} is not an ISO 8601 timestamp such as 2026-12-24T18:00:00Z"
        ) from None
    # A timestamp without an offset is UTC. Its UTC time must be one PostgreSQL and JSON can hold
    # (0001-01-01T00:00:00+05:00 is in year 0, 9999-12-31T23:59:59-05:00 in year 10000).
    try:
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        raise WaitParameterError(f"until {json_preview(text)} is out of range (years 1 to 9999)") from None
    return value


_CHILD_FAILURES = {"Failed": "child_failed", "Cancelled": "child_cancelled", "TimedOut": "child_timed_out"}


def child_result(state: str, data: dict[str, Any]) -> ActionResult:
    """What a subworkflow's child wait means for its node: started (waitForCompletion false: the
    child's id), or completed (the child's outputs, or its error as the cause of the node's)."""
    if state == "started":
        return ActionResult.succeeded(
            {
                "executionId": data.get("executionId"),
                "workflowId": data.get("workflowId"),
                "version": data.get("version"),
            }
        )
    status = data.get("status")
    if status == "Succeeded":
        outputs = data.get("outputs")
        return ActionResult.succeeded(outputs if isinstance(outputs, dict) else {})
    cause = data.get("error") if isinstance(data.get("error"), dict) else None
    reason = f": {cause['message']}" if cause and cause.get("message") else ""
    message = f"child execution {data.get('executionId')} ({data.get('workflowId')}) ended {status}{reason}"
    return ActionResult.failed(
        _CHILD_FAILURES.get(str(status), "child_failed"),
        message[:2000],
        cause=cause,
        childExecutionId=data.get("executionId"),
    )


def _rejected(data: dict[str, Any]) -> ActionResult:
    who = ", ".join(d.get("principal", "?") for d in data.get("decisions", []) if d.get("decision") == "reject")
    # The decisions and comments are in the error's details too: a node on the failure edge reads
    # them as errors.<node>.details.comments (a failed node has no outputs in the scope).
    extra = {key: data[key] for key in ("decisions", "comments") if key in data}
    failed = ActionResult.failed("rejected", f"the approval was rejected (by {who or 'nobody'})", **extra)
    return ActionResult(failed.status, outputs=data, error=failed.error)


def resolved_result(kind: str, state: str, result: Any) -> ActionResult:
    """What a resolved wait means for its node."""
    data = result if isinstance(result, dict) else {}
    if kind == "child" and state in ("started", "completed"):
        return child_result(state, data)
    if state == "fired":
        return ActionResult.succeeded(data)
    if state == "received":
        payload = data.get("payload")
        return ActionResult.succeeded(payload if isinstance(payload, dict) else {"payload": payload})
    if state == "approved":
        return ActionResult.succeeded(data)
    if state == "rejected":
        return _rejected(data)
    if state == "timed_out":
        return ActionResult.failed("wait_timeout", str(data.get("message") or f"the {kind} wait timed out"))
    return ActionResult.failed("wait_withdrawn", f"the {kind} wait ended without a result ({state})")
