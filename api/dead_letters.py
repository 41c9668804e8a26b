"""/api/v1/dead-letters: what needs a human, and the redrive that re-runs the failed part."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from dataworkflows.errors import NotFound

from .openapi_docs import PROBLEMS
from .paging import decode_id_cursor, encode_cursor
from .params import query_int
from .principals import principal_id_param, principal_type_param
from .schemas import AcknowledgeRequest, DeadLetterList, DeadLetterRead, RedriveResponse
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
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> DeadLetterList:
        before = decode_id_cursor(cursor)
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

    @post(
        "/{dead_letter_id:int}/acknowledge",
        status_code=200,
        responses=PROBLEMS,
        summary="Close without a redrive (once)",
    )
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        dead_letter_id: FromPath[int],
        data: JSONBody[AcknowledgeRequest | None] = None,
        principal_id: PrincipalId = None,
        principal_type: PrincipalType = None,
    ) -> DeadLetterRead:
        """An operator has seen the letter and nothing is to be re-run: it is closed (no longer
        open), with who closed it and an optional note; its run's log records it."""
        svc = services(request)
        principal = svc.principals.resolve(request)
        note = data.note if data is not None else None
        await svc.db.fetch_one("acknowledge_dead_letter", id=dead_letter_id, principal=principal.id, note=note)
        row = await svc.db.fetch_one("get_dead_letter", id=dead_letter_id)
        assert row is not None
        return DeadLetterRead(**row)
