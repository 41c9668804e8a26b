"""GET /api/v1/audit-log: the execution log of every run of the tenant, in order, a page at a time
(README "The audit log"): what `dataworkflows audit-log` writes as NDJSON for a SIEM or an archive."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, get
from litestar.params import QueryParameter

from .openapi_docs import PROBLEMS
from .params import query_int
from .schemas import Camel, from_row
from .services import DatabaseDep

# The largest page: a page is read in one statement and answered at once.
MAX_PAGE = 5000
# settleSeconds when the caller gives none: the CLI's --settle default. With 0, a consumer paging
# with the defaults could pass over an event whose transaction committed after a later id was read.
DEFAULT_SETTLE_SECONDS = 5


class AuditEventRead(Camel):
    id: int
    execution_id: UUID
    workflow_id: str
    node_id: str | None
    type: str
    at: datetime
    principal: str | None
    details: dict[str, Any]


class AuditPage(Camel):
    items: list[AuditEventRead]
    # The last event's id when more may follow (give it as `after`); null on the last page.
    next_after: int | None


class AuditLogController(Controller):
    path = "/audit-log"
    tags = ["audit log"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="Every run's log events, in order, after an event id (the tenant's audit log)",
        opt={"role": "viewer"},
    )
    async def audit_log(
        self,
        db: DatabaseDep,
        after: Annotated[int, query_int("after", ge=0, le=2**63 - 1)] = 0,
        workflow_id: Annotated[str | None, QueryParameter(name="workflowId", required=False)] = None,
        event_type: Annotated[str | None, QueryParameter(name="type", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=MAX_PAGE)] = 1000,
        settle: Annotated[int, query_int("settleSeconds", ge=0, le=3600)] = DEFAULT_SETTLE_SECONDS,
    ) -> AuditPage:
        # settleSeconds: the page ends at the first event written less than that long ago (an export
        # going on from its last id then does not pass over an event of a transaction that had not
        # committed yet); 0 answers every committed event, for a caller that knows none is in flight.
        rows = await db.executions.audit_events(
            after=after, workflow_id=workflow_id, event_type=event_type, limit=limit + 1, settle=settle
        )
        items = [from_row(AuditEventRead, row) for row in rows[:limit]]
        return AuditPage(items=items, next_after=items[-1].id if len(rows) > limit else None)
