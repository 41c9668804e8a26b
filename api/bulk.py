"""Bulk operations (README "Bulk operations"): cancel a workflow's runs, or redrive dead letters,
many at a time, each in a transaction of its own (one run's cancel or one letter's redrive, as the
single requests do), with every item's outcome in the answer. A bounded number a request (`limit`,
at most 1,000): the answer says whether more match, and the same request again goes on."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
import structlog
from litestar import Controller, post
from litestar.params import JSONBody

from dataworkflows.errors import Conflict, DatabaseUnavailable, DataWorkflowsError, InvalidInput, NotFound
from dataworkflows.statuses import DeadLetterKind

from .openapi_docs import PROBLEMS
from .schemas import Camel
from .services import REQUIRES_PRINCIPAL, PrincipalDep, ServicesDep

_log = structlog.get_logger(__name__)

MAX_BULK = 1000
# What a bulk cancel may take: a run that has not ended.
CANCELLABLE = ("Pending", "Running", "Waiting", "Suspended")


class BulkCancelRequest(Camel, forbid_unknown_fields=True):
    # The workflow whose root runs are cancelled (required: no request cancels every workflow's).
    workflow_id: str
    # Of these statuses (default: every one that has not ended).
    status: list[str] | None = None
    # Created before this time (default: any; without an offset, UTC).
    created_before: datetime | None = None
    # As POST /executions/{id}/cancel takes it (ControlRequest): at most 2,000 characters. Without the
    # bound one request wrote a reason of up to the body's size into each run it cancelled (its row,
    # its cancel_requested event, its error) and into every child its cascade cancelled.
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK)] = 100


class CancelOutcome(Camel):
    execution_id: UUID
    # As POST /executions/{id}/cancel answers (cancelled, requested, too_late, ...), or ended (it
    # ended before its turn), gone (removed meanwhile) or failed (reason: why).
    outcome: str
    status: str | None
    reason: str | None = None


class BulkCancelResponse(Camel):
    outcomes: list[CancelOutcome]
    # How many of each outcome.
    counts: dict[str, int]
    # Whether more runs matched than `limit`: the same request again takes them.
    more: bool


class BulkRedriveRequest(Camel, forbid_unknown_fields=True):
    # Only letters of this kind, of runs of this workflow (default: any).
    kind: str | None = None
    workflow_id: str | None = None
    # After this letter id (the previous answer's lastId: letters it refused stay open).
    after_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK)] = 100


class RedriveOutcome(Camel):
    dead_letter_id: int
    execution_id: UUID | None
    # requeued (as POST /dead-letters/{id}/redrive answers), refused (reason: why, as that request's
    # 409 says; the letter is still open), superseded (refused, then closed by the redrive of its
    # parent's letter later in the same batch; reason: the close note), gone (closed or removed
    # meanwhile) or failed (reason: why).
    outcome: str
    reason: str | None = None


class BulkRedriveResponse(Camel):
    outcomes: list[RedriveOutcome]
    counts: dict[str, int]
    # The last letter taken (0: none): give it as afterId for the next ones.
    last_id: int
    more: bool


def _failure(exc: Exception, item: object) -> str:
    """Why an item's request failed otherwise than by a refusal or a 404 (outcome failed): the error's
    own words, or, for a bug, that it was logged (the answer keeps every other item's outcome: a
    500 lost those done before it, and the same request again stopped at the same item)."""
    if isinstance(exc, DataWorkflowsError):
        return str(exc)
    _log.exception("a bulk operation's item failed", item=str(item))
    return "an internal error occurred (logged)"


def _counts(outcomes: list[Any]) -> dict[str, int]:
    return dict(Counter(item.outcome for item in outcomes))


async def _closed_meanwhile(svc: Any, letter_id: int) -> bool:
    """Whether a letter whose redrive was refused is no longer open: another request (a redrive, an
    acknowledgement, a concurrent bulk redrive) took it since this one selected it. Its redrive's 409
    was answered `refused`, which says the letter stays open, and made `redrive-all` exit with code 1
    (two operators' bulk redrives at once refused each other's letters: 34 and 30 of 60 here)."""
    letter = await svc.db.operations.dead_letter(letter_id)
    return letter is None or letter.redriven_at is not None or letter.closed_at is not None


async def _in_the_end(svc: Any, outcomes: list[RedriveOutcome]) -> list[RedriveOutcome]:
    """Each refused letter as it is at the end of the batch: a child's letter is refused while its
    parent's letter is open (its redrive names that letter), and the parent's letter, later in the
    same batch (filed after the child's), closes it as superseded when it is redriven. The answer
    said `refused`, which says the letter stays open, and `redrive-all` exited 1 for a letter it had
    closed itself. A letter closed otherwise since (another request) is `gone`."""
    letters = await svc.db.operations.dead_letters_by_id(
        [item.dead_letter_id for item in outcomes if item.outcome == "refused"]
    )
    settled: list[RedriveOutcome] = []
    for item in outcomes:
        letter = letters.get(item.dead_letter_id)
        if item.outcome != "refused" or (
            letter is not None and letter.redriven_at is None and letter.closed_at is None
        ):
            settled.append(item)
        elif letter is not None and letter.close_reason == "superseded":
            settled.append(RedriveOutcome(item.dead_letter_id, item.execution_id, "superseded", letter.close_note))
        else:
            settled.append(RedriveOutcome(item.dead_letter_id, item.execution_id, "gone", item.reason))
    return settled


class BulkController(Controller):
    path = "/"
    tags = ["bulk operations"]

    @post(
        "/executions/bulk/cancel",
        status_code=200,
        responses=PROBLEMS,
        summary="Cancel a workflow's root runs, not started first, oldest first, up to limit (each as its own cancel)",
        opt={REQUIRES_PRINCIPAL: "cancel executions", "role": "operator"},
    )
    async def bulk_cancel(
        self, svc: ServicesDep, principal: PrincipalDep, data: JSONBody[BulkCancelRequest]
    ) -> BulkCancelResponse:
        statuses = list(CANCELLABLE) if data.status is None else data.status
        unknown = [s for s in statuses if s not in CANCELLABLE]
        if unknown or not statuses:
            raise InvalidInput(f"status: one or more of {', '.join(CANCELLABLE)} (runs that have not ended)")
        before = data.created_before
        if before is not None and before.tzinfo is None:
            # Without an offset it is UTC, as the API's other times (GET /executions?createdTo=):
            # PostgreSQL read it in the session's TimeZone, the server's setting.
            before = before.replace(tzinfo=UTC)
        found = await svc.db.control.bulk_cancel_candidates(
            data.workflow_id, statuses=statuses, before=before, limit=data.limit + 1
        )
        taken = found[: data.limit]
        outcomes: list[CancelOutcome] = []
        # In the order taken: the runs not started (Pending) first, then the others, oldest first
        # (bulk_cancel_candidates): cancelled oldest first, the runs holding maxConcurrentExecutions
        # slots went first, and each one's end queued a held-back run (dw.hand_over_slot_v1) this or
        # a later request was about to cancel, which a worker took meanwhile and ran a node of.
        for execution_id, _ in taken:
            try:
                done = await svc.db.control.cancel(execution_id, principal=principal.id, reason=data.reason)
                outcomes.append(CancelOutcome(execution_id, done.outcome, done.status))
            except Conflict:
                # It ended between the selection and its turn.
                outcomes.append(CancelOutcome(execution_id, "ended", None))
            except NotFound:
                outcomes.append(CancelOutcome(execution_id, "gone", None))
            except Exception as exc:
                outcomes.append(CancelOutcome(execution_id, "failed", None, _failure(exc, execution_id)))
                if isinstance(exc, DatabaseUnavailable):
                    # The next ones would wait for it too: this answer says what was done.
                    return BulkCancelResponse(outcomes, _counts(outcomes), more=True)
        return BulkCancelResponse(outcomes, _counts(outcomes), more=len(found) > data.limit)

    @post(
        "/dead-letters/bulk/redrive",
        status_code=200,
        responses=PROBLEMS,
        summary="Redrive open dead letters, oldest first, up to limit (each as its own redrive)",
        opt={REQUIRES_PRINCIPAL: "redrive dead letters", "role": "operator"},
    )
    async def bulk_redrive(
        self, svc: ServicesDep, principal: PrincipalDep, data: JSONBody[BulkRedriveRequest]
    ) -> BulkRedriveResponse:
        if data.kind is not None and data.kind not in set(DeadLetterKind):
            raise InvalidInput(f"kind: one of {', '.join(DeadLetterKind)}")
        found = await svc.db.operations.bulk_redrive_candidates(
            kind=data.kind, workflow_id=data.workflow_id, after=data.after_id, limit=data.limit + 1
        )
        outcomes: list[RedriveOutcome] = []
        for letter_id, execution_id in found[: data.limit]:
            try:
                await svc.db.operations.redrive(letter_id, principal=principal.id, queue=svc.settings.queue)
                outcomes.append(RedriveOutcome(letter_id, execution_id, "requeued"))
            except Conflict as exc:
                # As the letter's own redrive answers 409: why, with what to do instead; or gone, when
                # another request redrove or closed it since it was selected (the 409 says by whom).
                outcome = "gone" if await _closed_meanwhile(svc, letter_id) else "refused"
                outcomes.append(RedriveOutcome(letter_id, execution_id, outcome, str(exc)))
            except NotFound:
                outcomes.append(RedriveOutcome(letter_id, execution_id, "gone"))
            except Exception as exc:
                outcomes.append(RedriveOutcome(letter_id, execution_id, "failed", _failure(exc, letter_id)))
                if isinstance(exc, DatabaseUnavailable):
                    # The next ones would wait for it too: lastId is the one before it (this letter is
                    # taken again by the next request).
                    last = outcomes[-2].dead_letter_id if len(outcomes) > 1 else data.after_id
                    return BulkRedriveResponse(outcomes, _counts(outcomes), last_id=last, more=True)
        last = outcomes[-1].dead_letter_id if outcomes else data.after_id
        if any(item.outcome == "refused" for item in outcomes):
            # A refused letter this batch's later redrives (or another request) may have closed since
            # (not after a database failure: the batch stopped there, and the read would wait too).
            outcomes = await _in_the_end(svc, outcomes)
        return BulkRedriveResponse(outcomes, _counts(outcomes), last_id=last, more=len(found) > data.limit)
