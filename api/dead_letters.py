"""/api/v1/dead-letters: what needs a human, and the redrive that re-runs the failed part."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from dataworkflows.errors import NotFound
from dataworkflows.statuses import DeadLetterKind

from .openapi_docs import PROBLEMS
from .paging import body_page, decode_id_cursor, encode_scoped
from .params import query_int, require_one_of
from .schemas import AcknowledgeRequest, DeadLetterList, DeadLetterRead, EmptyRequest, RedriveResponse, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep


class DeadLetterController(Controller):
    path = "/dead-letters"
    tags = ["dead letters"]

    @get("/", responses=PROBLEMS, summary="Dead letters, newest first", opt={"role": "viewer"})
    async def list_dead_letters(
        self,
        db: DatabaseDep,
        open_only: Annotated[bool | None, QueryParameter(name="open", required=False)] = None,
        kind: Annotated[
            str | None,
            QueryParameter(
                name="kind", required=False, description=", ".join(DeadLetterKind), enum=list(DeadLetterKind)
            ),
        ] = None,
        execution_id: Annotated[UUID | None, QueryParameter(name="executionId", required=False)] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> DeadLetterList:
        require_one_of("kind", kind, DeadLetterKind)
        # What the cursor was made for: this list and these filters (paging.scoped).
        scope = (
            "dead-letters",
            None if open_only is None else str(open_only).lower(),
            kind,
            None if execution_id is None else str(execution_id),
        )
        before = decode_id_cursor(cursor, scope=scope)
        rows = await db.operations.dead_letters(
            open_only=open_only, kind=kind, execution_id=execution_id, before=before, limit=limit + 1
        )
        items, next_cursor = body_page(
            rows, limit, lambda row: from_row(DeadLetterRead, row), lambda last: encode_scoped(scope, last.id)
        )
        return DeadLetterList(items=items, next_cursor=next_cursor)

    @get("/{dead_letter_id:int}", responses=PROBLEMS, summary="One dead letter", opt={"role": "viewer"})
    async def get_dead_letter(self, db: DatabaseDep, dead_letter_id: FromPath[int]) -> DeadLetterRead:
        letter = await db.operations.dead_letter(dead_letter_id)
        if letter is None:
            raise NotFound(f"dead letter {dead_letter_id} not found")
        return from_row(DeadLetterRead, letter)

    @post(
        "/{dead_letter_id:int}/redrive",
        status_code=200,
        responses=PROBLEMS,
        summary="Re-run the failed part (once)",
        opt={REQUIRES_PRINCIPAL: "redrive dead letters", "role": "operator"},
    )
    async def redrive(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        dead_letter_id: FromPath[int],
        data: JSONBody[EmptyRequest | None] = None,
    ) -> RedriveResponse:
        redrive = await svc.db.operations.redrive(dead_letter_id, principal=principal.id, queue=svc.settings.queue)
        return from_row(RedriveResponse, redrive, status_url=f"/api/v1/executions/{redrive.execution_id}")

    @post(
        "/{dead_letter_id:int}/acknowledge",
        status_code=200,
        responses=PROBLEMS,
        summary="Close without a redrive (once)",
        opt={REQUIRES_PRINCIPAL: "acknowledge dead letters", "role": "operator"},
    )
    async def acknowledge(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        dead_letter_id: FromPath[int],
        data: JSONBody[AcknowledgeRequest | None] = None,
    ) -> DeadLetterRead:
        """An operator has seen the letter and nothing is to be re-run: it is closed (no longer
        open), with who closed it and an optional note; its run's log records it."""
        note = data.note if data is not None else None
        await db.operations.acknowledge(dead_letter_id, principal=principal.id, note=note)
        letter = await db.operations.dead_letter(dead_letter_id)
        assert letter is not None
        return from_row(DeadLetterRead, letter)
