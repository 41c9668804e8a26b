"""/api/v1/dead-letters: what needs a human, and the redrive that re-runs the failed part."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter

from dataworkflows.errors import InvalidInput, NotFound

from .openapi_docs import PROBLEMS
from .paging import decode_cursor, encode_cursor
from .principals import principal_id_param, principal_type_param
from .schemas import DeadLetterList, DeadLetterRead, RedriveResponse
from .services import services

PrincipalId = Annotated[str | None, principal_id_param]
PrincipalType = Annotated[str | None, principal_type_param]


class DeadLetterController(Controller):
    path = "/api/v1/dead-letters"
    tags = ["dead letters"]

    @get("/", responses=PROBLEMS, summary="Dead letters, newest first")
    async def list_dead_letters(
        self,
        request: Request[Any, Any, Any],
        open_only: Annotated[bool | None, QueryParameter(name="open", required=False)] = None,
        kind: Annotated[str | None, QueryParameter(name="kind", required=False)] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> DeadLetterList:
        before = decode_cursor(cursor)
        if before is not None and not isinstance(before, int):
            raise InvalidInput("the cursor is not valid; use nextCursor from a previous page")
        rows = await services(request).db.fetch_all(
            "list_dead_letters", open=open_only, kind=kind, before=before, limit=limit + 1
        )
        items = [DeadLetterRead(**r) for r in rows[:limit]]
        return DeadLetterList(items=items, next_cursor=encode_cursor(items[-1].id) if len(rows) > limit else None)

    @get("/{dead_letter_id:int}", responses=PROBLEMS, summary="One dead letter")
    async def get_dead_letter(self, request: Request[Any, Any, Any], dead_letter_id: FromPath[int]) -> DeadLetterRead:
        row = await services(request).db.fetch_one("get_dead_letter", id=dead_letter_id)
        if row is None:
            raise NotFound(f"dead letter {dead_letter_id} not found")
        return DeadLetterRead(**row)

    @post("/{dead_letter_id:int}/redrive", status_code=200, responses=PROBLEMS, summary="Re-run the failed part (once)")
    async def redrive(
        self,
        request: Request[Any, Any, Any],
        dead_letter_id: FromPath[int],
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> RedriveResponse:
        svc = services(request)
        principal = svc.principals.resolve(request)
        row = await svc.db.fetch_one(
            "redrive_dead_letter", id=dead_letter_id, principal=principal.id, queue=svc.settings.queue
        )
        assert row is not None
        return RedriveResponse(
            dead_letter_id=row["dead_letter_id"],
            execution_id=row["execution_id"],
            action=row["action"],
            status_url=f"/api/v1/executions/{row['execution_id']}",
        )
