"""/api/v1/executions: status, node states, attempts, events."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from dataworkflows.errors import ExecutionNotFound, InvalidInput
from dataworkflows.event_stream import is_final
from dataworkflows.statuses import ExecutionStatus

from .openapi_docs import PROBLEMS
from .paging import decode_cursor, encode_cursor
from .params import BIGINT_MAX, query_int
from .schemas import AttemptRead, EventRead, ExecutionList, ExecutionRead, ExecutionSummary, NodeStateRead
from .services import services


def _parse_id(execution_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise ExecutionNotFound(f"execution {execution_id!r} not found (not a UUID)") from None


async def _require(request: Request[Any, Any, Any], execution_id: uuid.UUID) -> dict[str, Any]:
    row = await services(request).db.fetch_one("get_execution", id=execution_id)
    if row is None:
        raise ExecutionNotFound(f"execution {execution_id} not found")
    return row


class ExecutionController(Controller):
    path = "/api/v1/executions"
    tags = ["executions"]

    @get("/", responses=PROBLEMS, summary="List executions, newest first")
    async def list_executions(
        self,
        request: Request[Any, Any, Any],
        workflow_id: Annotated[str | None, QueryParameter(name="workflowId", required=False)] = None,
        status: Annotated[str | None, QueryParameter(name="status", required=False)] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 50,
    ) -> ExecutionList:
        after = decode_cursor(cursor)
        after_created = after_id = None
        if after is not None:
            try:
                if not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
                    raise ValueError("cursor shape")
                after_created = datetime.fromisoformat(after[0])
                after_id = uuid.UUID(after[1])
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise InvalidInput("the cursor is not valid; use nextCursor from a previous page") from exc
        rows = await services(request).db.fetch_all(
            "list_executions",
            workflow_id=workflow_id,
            status=status,
            after_created=after_created,
            after_id=after_id,
            limit=limit + 1,
        )
        items = [
            ExecutionSummary(
                id=r["id"],
                workflow_id=r["workflow_id"],
                workflow_version=r["workflow_version"],
                request_id=r["request_id"],
                status=r["status"],
                principal_id=r["principal_id"],
                created_at=r["created_at"],
                start_time=r["started_at"],
                end_time=r["ended_at"],
            )
            for r in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor([last.created_at.isoformat(), str(last.id)])
        return ExecutionList(items=items, next_cursor=next_cursor)

    @get("/{execution_id:str}", responses=PROBLEMS, summary="Execution status, trigger, times, node states and error")
    async def get_execution(self, request: Request[Any, Any, Any], execution_id: FromPath[str]) -> ExecutionRead:
        eid = _parse_id(execution_id)
        row = await _require(request, eid)
        nodes = await services(request).db.fetch_all("list_node_states", id=eid)
        return ExecutionRead(
            id=row["id"],
            workflow_id=row["workflow_id"],
            workflow_version=row["workflow_version"],
            workflow_checksum=row["workflow_checksum"],
            request_id=row["request_id"],
            status=row["status"],
            trigger=row["trigger"],
            principal_id=row["principal_id"],
            principal_type=row["principal_type"],
            correlation_id=row["correlation_id"],
            created_at=row["created_at"],
            start_time=row["started_at"],
            end_time=row["ended_at"],
            error=row["error"],
            recovery_count=row["recovery_count"],
            nodes=[
                NodeStateRead(
                    node_id=n["node_id"],
                    action_type=n["action_type"],
                    status=n["status"],
                    attempts=n["attempts"],
                    outputs=n["outputs"],
                    error=n["error"],
                    next_attempt_at=n["next_attempt_at"],
                    start_time=n["started_at"],
                    end_time=n["ended_at"],
                )
                for n in nodes
            ],
        )

    @get("/{execution_id:str}/actions", responses=PROBLEMS, summary="Every action attempt of an execution")
    async def actions(self, request: Request[Any, Any, Any], execution_id: FromPath[str]) -> list[AttemptRead]:
        eid = _parse_id(execution_id)
        await _require(request, eid)
        rows = await services(request).db.fetch_all("list_attempts", id=eid)
        return [AttemptRead(**r) for r in rows]

    @get(
        "/{execution_id:str}/events",
        responses=PROBLEMS,
        summary="The execution log, in order; with Accept: text/event-stream, live until the run ends",
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        after: Annotated[int, query_int("after", ge=0, le=BIGINT_MAX)] = 0,
        limit: Annotated[int, query_int("limit", ge=1, le=1000)] = 1000,
    ) -> Response[Any]:
        eid = _parse_id(execution_id)
        execution = await _require(request, eid)
        if "text/event-stream" in request.headers.get("accept", ""):
            last_id = request.headers.get("last-event-id", "")
            start = int(last_id) if re.fullmatch(r"[0-9]{1,18}", last_id) else after
            final = ExecutionStatus(execution["status"]).is_final
            return ServerSentEvent(_stream(request, eid, start, final))
        rows = await services(request).db.fetch_all("list_events", id=eid, after=after, limit=limit)
        return Response([EventRead(**r) for r in rows], media_type=MediaType.JSON)


_KEEPALIVE_SECONDS = 15.0


async def _stream(
    request: Request[Any, Any, Any], execution_id: uuid.UUID, after: int, already_final: bool
) -> AsyncIterator[ServerSentEventMessage]:
    """Events after `after`, then each new one as its NOTIFY arrives; ends with the run."""
    svc = services(request)
    last = after
    async with svc.events.subscribe(execution_id) as wakeups:
        while True:
            rows = await svc.db.fetch_all("list_events", id=execution_id, after=last, limit=1000)
            for row in rows:
                last = row["id"]
                data = msgspec.json.encode(EventRead(**row)).decode()
                yield ServerSentEventMessage(data=data, event=row["type"], id=row["id"])
            if any(is_final(row["type"]) for row in rows) or (already_final and not rows):
                return
            if not rows:
                # Nothing new: has the run ended before the events we were asked to start after?
                current = await svc.db.fetch_one("get_execution", id=execution_id)
                if current is None or ExecutionStatus(current["status"]).is_final:
                    already_final = True
                    continue
            if len(rows) == 1000:
                continue
            try:
                await asyncio.wait_for(wakeups.get(), _KEEPALIVE_SECONDS)
            except TimeoutError:
                # Keeps proxies from closing an idle stream; the loop re-reads from the database.
                yield ServerSentEventMessage(comment="keepalive", data=None)
