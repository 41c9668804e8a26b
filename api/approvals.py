"""/api/v1/approvals: the human decisions that approval nodes wait for, and deciding them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.enums import ParamType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Operation, Parameter, Schema
from litestar.params import FromPath, JSONBody, QueryParameter

from dataworkflows.data.control import Approval
from dataworkflows.errors import NotFound

from .openapi_docs import PROBLEMS
from .paging import (
    bare_page,
    decode_time_cursor,
    encode_time_cursor,
    next_page_header,
)
from .params import BadQueryValue, query_int, require_one_of
from .principals import PRINCIPAL_ID_HEADER
from .problems import PROBLEM_JSON, Unauthorized
from .schemas import ApprovalEscalationRead, ApprovalRead, DecisionRequest, DecisionResponse, ProblemDetails, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep

DECISION_PROBLEMS = {
    **PROBLEMS,
    403: ResponseSpec(
        data_container=ProblemDetails,
        description="The caller is not one of the approval's approvers",
        media_type=PROBLEM_JSON,
        generate_examples=False,
    ),
}
MAX_PRINCIPAL = 200
# The list's status filter: open approvals, or every one.
_STATUSES = ("open", "all")


@dataclass
class _ListOperation(Operation):
    """Documents the `principal` query parameter of GET /approvals, which the handler reads from the
    request: a handler parameter cannot be named like the `principal` dependency (Litestar refuses
    the ambiguity)."""

    def __post_init__(self) -> None:
        self.parameters = [
            *(self.parameters or []),
            Parameter(
                name="principal",
                param_in=ParamType.QUERY,
                required=False,
                schema=Schema(type=OpenAPIType.STRING, max_length=MAX_PRINCIPAL),
                description="Only the approvals this principal may decide",
            ),
        ]


def approval_uuid(approval_id: str) -> uuid.UUID:
    """The approval id of a path; one that is not a UUID names no approval (404)."""
    try:
        return uuid.UUID(approval_id)
    except ValueError:
        raise NotFound(f"approval {approval_id!r} not found (not a UUID)") from None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _quorum(value: Any) -> int | str | None:
    return value if isinstance(value, str) else _count(value)


def _escalation(value: Any) -> ApprovalEscalationRead | None:
    if not isinstance(value, dict) or not isinstance(value.get("at"), str):
        return None
    approvers = value.get("approvers")
    return ApprovalEscalationRead(
        approvers=[a for a in approvers if isinstance(a, str)] if isinstance(approvers, list) else [],
        at=datetime.fromisoformat(value["at"]),
    )


def approval_read(row: Approval) -> ApprovalRead:
    """The wire shape: what the approval node keeps in the wait's details, as fields."""
    details = row.details
    approvers = details.get("approvers")
    return from_row(
        ApprovalRead,
        row,
        title=_text(details.get("title")),
        description=_text(details.get("description")),
        approvers=[a for a in approvers if isinstance(a, str)] if isinstance(approvers, list) else [],
        required=_count(details.get("required")),
        quorum=_quorum(details.get("quorum")),
        # Decided: a quorum's verdict (its result says it; an approved one withdrawn later keeps
        # it). A withdrawn or timed-out approval that nobody decided showed a decision time.
        decided_at=row.consumed_at if isinstance(row.result, dict) and "decision" in row.result else None,
        # An open one past its timeout (its run Suspended, or its waker not come) takes no decisions.
        closed_at=row.consumed_at or row.lapsed_at,
        escalation=_escalation(details.get("escalation")),
    )


class ApprovalController(Controller):
    path = "/approvals"
    tags = ["approvals"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="Approvals, newest first (open ones unless status=all)",
        operation_class=_ListOperation,
        response_headers=next_page_header("/api/v1/approvals?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_approvals(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        status: Annotated[str, QueryParameter(name="status", required=False, enum=list(_STATUSES))] = "open",
        execution_id: Annotated[uuid.UUID | None, QueryParameter(name="executionId", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
    ) -> Response[list[ApprovalRead]]:
        require_one_of("status", status, _STATUSES)
        approver = request.query_params.get("principal") or None
        if approver is not None and len(approver) > MAX_PRINCIPAL:
            raise BadQueryValue("principal", f"principal must be at most {MAX_PRINCIPAL} characters")
        # What the cursor was made for: this list and these filters (paging.scoped).
        scope = ("approvals", status, None if execution_id is None else str(execution_id), approver)
        rows = await db.control.approvals(
            principal=approver,
            open_only=status == "open",
            execution_id=execution_id,
            limit=limit + 1,
            before=decode_time_cursor(cursor, scope=scope),
        )
        # More than `limit` were cut without a word before.
        return bare_page(
            request, rows, limit, approval_read, lambda last: encode_time_cursor(last.created_at, last.id, scope=scope)
        )

    @get("/{approval_id:str}", responses=PROBLEMS, summary="One approval, with its decisions", opt={"role": "viewer"})
    async def get_approval(self, db: DatabaseDep, approval_id: FromPath[str]) -> ApprovalRead:
        parsed = approval_uuid(approval_id)
        row = await db.control.approval(parsed)
        if row is None:
            raise NotFound(f"approval {parsed} not found")
        return approval_read(row)

    @post(
        "/{approval_id:str}/decision",
        status_code=200,
        responses=DECISION_PROBLEMS,
        summary="Approve or reject, as the calling principal (once per approver)",
        opt={REQUIRES_PRINCIPAL: "decide approvals", "role": "operator"},
    )
    async def decide(
        self, svc: ServicesDep, principal: PrincipalDep, approval_id: FromPath[str], data: JSONBody[DecisionRequest]
    ) -> DecisionResponse:
        """The caller decides for itself: an anonymous caller is no approver, whatever the server's
        DW_REQUIRE_PRINCIPAL (401); a principal not among the approvers gets a 403."""
        parsed = approval_uuid(approval_id)
        if principal.id is None:
            raise Unauthorized(f"deciding an approval requires a principal ({PRINCIPAL_ID_HEADER})")
        decided = await svc.db.control.decide(
            parsed, principal=principal.id, decision=data.decision, comment=data.comment, queue=svc.settings.queue
        )
        return from_row(DecisionResponse, decided)
