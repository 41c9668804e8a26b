"""/api/v1/executions: status, node states, attempts, events."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_202_ACCEPTED

from dataworkflows.clock import iso_time
from dataworkflows.data.executions import Attempt, AttemptKey, Event, Execution, attempt_key
from dataworkflows.db import Database
from dataworkflows.errors import (
    DatabaseUnavailable,
    DataWorkflowsError,
    ExecutionNotFound,
    NotFound,
    ValueTooLarge,
)
from dataworkflows.event_stream import is_final
from dataworkflows.statuses import ExecutionStatus

from .openapi_docs import EVENT_STREAM_PROBLEMS, PROBLEMS
from .paging import (
    PAGE_LIMIT,
    PageCursor,
    PageLimit,
    Scope,
    bare_page,
    body_page,
    decode_time_cursor,
    encode_scoped,
    encode_time_cursor,
    invalid_cursor,
    key_of,
    next_page_header,
)
from .params import BIGINT_MAX, INT_MAX, BadQueryValue, query_int, quoted, require_one_of
from .principals import Principal
from .rate_limits import caller_key
from .schemas import (
    AttemptRead,
    ChildRead,
    CompensationRead,
    CompensationStepRead,
    ControlRequest,
    ControlResponse,
    DescendantsPriorityRead,
    EmptyRequest,
    EventRead,
    ExecutionList,
    ExecutionRead,
    ExecutionSummary,
    ItemRead,
    PriorityRequest,
    PriorityResponse,
    SignalRequest,
    SignalResponse,
    TreeNodeRead,
    WaitRead,
    from_row,
)
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, Services, ServicesDep
from .signals import check_signal
from .stream_slots import too_many_streams

log = structlog.get_logger("dataworkflows.api.executions")


def execution_uuid(execution_id: str) -> uuid.UUID:
    """The execution id of a path; one that is not a UUID names no execution (404)."""
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        raise ExecutionNotFound(f"execution {execution_id!r} not found (not a UUID)") from None


async def _require(db: Database, execution_id: str) -> Execution:
    parsed = execution_uuid(execution_id)
    execution = await db.executions.get(parsed)
    if execution is None:
        raise ExecutionNotFound(f"execution {parsed} not found")
    return execution


# GET …/actions: the attempts in the order they started, or the latest first; with or without their
# parameters, outputs and error.
_ORDERS = ("asc", "desc")
_VIEWS = ("full", "summary")


def _encode_attempt_cursor(attempt: Attempt, scope: Scope) -> str:
    """The cursor past `attempt` (the last of a page): its paging key, and what it was made for
    (`scope`: the list, the execution id as the path named it, the nodeId filter, the order)."""
    key = attempt_key(attempt)
    return encode_scoped(scope, [key.start_time.isoformat(), key.node_id, key.item_index, key.attempt])


def _decode_item_cursor(cursor: str | None, scope: Scope) -> int:
    """The item index a page of items ends with (-1 before the first page)."""
    value = key_of(cursor, scope)
    if value is None:
        return -1
    # bool is an int subclass, and JSON true is not an index.
    if type(value) is not int or not 0 <= value <= INT_MAX:
        raise invalid_cursor()
    return value


def _decode_tree_cursor(cursor: str | None, scope: Scope) -> uuid.UUID | None:
    """The run a page of a tree ends with."""
    value = key_of(cursor, scope)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("cursor shape")
        return uuid.UUID(value)
    except ValueError as exc:
        raise invalid_cursor() from exc


def _decode_attempt_cursor(cursor: str | None, scope: Scope) -> AttemptKey | None:
    value = key_of(cursor, scope)
    if value is None:
        return None
    try:
        if not (isinstance(value, list) and len(value) == 4 and isinstance(value[1], str)):
            raise ValueError("cursor shape")
        item_index, attempt = value[2], value[3]
        # bool is an int subclass, and JSON true is not an index.
        if type(item_index) is not int or type(attempt) is not int:
            raise ValueError("cursor numbers")
        if not (-1 <= item_index <= INT_MAX and 1 <= attempt <= INT_MAX):
            raise ValueError("cursor numbers")
        at = datetime.fromisoformat(value[0])
        if at.tzinfo is None:
            raise ValueError("cursor time")
        return AttemptKey(at, value[1], item_index, attempt)
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


# The children GET /executions/{id} shows (the rest are at …/children).
CHILDREN_SHOWN = 100

# What started a run, as the executions list filters it (and reports it as triggerKind).
TRIGGER_KINDS = ("manual", "schedule", "webhook", "event", "subworkflow")


def _moment(parameter: str, value: str | None) -> datetime | None:
    """A query parameter's ISO 8601 date (its midnight) or date and time; without an offset it is UTC
    (not the database session's time zone). Parsed here, not by Litestar, which took a number of
    seconds since 1970 (createdFrom=1700000000) and refused a date alone."""
    if value is None:
        return None
    try:
        moment = iso_time(value)
    except ValueError:
        message = f"query parameter {parameter}={quoted(value)}: not an ISO 8601 date or date and time"
        raise BadQueryValue(parameter, message) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ExecutionController(Controller):
    path = "/executions"
    tags = ["executions"]

    @get("/", responses=PROBLEMS, summary="List executions, newest first", opt={"role": "viewer"})
    async def list_executions(
        self,
        db: DatabaseDep,
        workflow_id: Annotated[str | None, QueryParameter(name="workflowId", required=False)] = None,
        status: Annotated[str | None, QueryParameter(name="status", required=False, enum=list(ExecutionStatus))] = None,
        trigger_kind: Annotated[
            str | None,
            QueryParameter(
                name="triggerKind",
                required=False,
                description="manual, schedule, webhook, event or subworkflow",
                enum=list(TRIGGER_KINDS),
            ),
        ] = None,
        trigger_id: Annotated[uuid.UUID | None, QueryParameter(name="triggerId", required=False)] = None,
        created_from: Annotated[
            str | None,
            QueryParameter(
                name="createdFrom",
                required=False,
                description="ISO 8601 date or date and time, inclusive (no offset: UTC; a date: its midnight)",
            ),
        ] = None,
        created_to: Annotated[
            str | None,
            QueryParameter(
                name="createdTo",
                required=False,
                description="ISO 8601 date or date and time, exclusive (no offset: UTC; a date: its midnight)",
            ),
        ] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 50,
    ) -> ExecutionList:
        require_one_of("status", status, ExecutionStatus)
        require_one_of("triggerKind", trigger_kind, TRIGGER_KINDS)
        # What the cursor was made for: this list and these filters, as given (paging.scoped).
        trigger = None if trigger_id is None else str(trigger_id)
        scope = ("executions", workflow_id, status, trigger_kind, trigger, created_from, created_to)
        after_created, after_id = decode_time_cursor(cursor, scope=scope) or (None, None)
        window_from, window_to = _moment("createdFrom", created_from), _moment("createdTo", created_to)
        if window_from is not None and window_to is not None and window_to <= window_from:
            # An empty window (the two swapped, most likely) listed nothing without a word.
            raise BadQueryValue(
                "createdTo",
                f"query parameter createdTo={quoted(created_to or '')} is not after createdFrom="
                f"{quoted(created_from or '')}: the window [createdFrom, createdTo) would hold nothing",
            )
        rows = await db.executions.page(
            workflow_id=workflow_id,
            status=status,
            trigger_kind=trigger_kind,
            trigger_id=trigger_id,
            created_from=window_from,
            created_to=window_to,
            after_created=after_created,
            after_id=after_id,
            limit=limit + 1,
        )
        items, next_cursor = body_page(
            rows,
            limit,
            lambda row: from_row(ExecutionSummary, row),
            lambda last: encode_time_cursor(last.created_at, last.id, scope=scope),
        )
        return ExecutionList(items=items, next_cursor=next_cursor)

    @get(
        "/{execution_id:str}",
        responses=PROBLEMS,
        summary="Execution status, trigger, times, node states and error",
        opt={"role": "viewer"},
    )
    async def get_execution(self, db: DatabaseDep, execution_id: FromPath[str]) -> ExecutionRead:
        execution = await _require(db, execution_id)
        nodes = await db.executions.node_states(execution.id)
        # The first children only: a forEach of 10,000 subworkflow items made this answer 3 MB. The
        # rest are at …/children (paged), and childCount says how many there are.
        children = await db.executions.children(execution.id, limit=CHILDREN_SHOWN + 1)
        count = len(children) if len(children) <= CHILDREN_SHOWN else await db.executions.child_count(execution.id)
        compensation = None
        if execution.compensation_status is not None:
            steps = await db.compensations.steps(execution.id)
            compensation = CompensationRead(
                status=execution.compensation_status,
                steps=[
                    from_row(CompensationStepRead, step, start_time=step.started_at, end_time=step.ended_at)
                    for step in steps
                ],
            )
        return from_row(
            ExecutionRead,
            execution,
            nodes=nodes,
            children=children[:CHILDREN_SHOWN],
            child_count=count,
            worker=execution.lease_owner,
            compensation=compensation,
        )

    @get(
        "/{execution_id:str}/children",
        responses=PROBLEMS,
        summary="The executions an execution's nodes started (subworkflows, forEach items), oldest first",
        response_headers=next_page_header("/api/v1/executions/{execution_id}/children?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def children(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[ChildRead]]:
        # What the cursor was made for: this run's children (as the path named the run).
        scope = ("children", execution_id)
        after = decode_time_cursor(cursor, scope=scope)
        execution = await _require(db, execution_id)
        rows = await db.executions.children(execution.id, after=after, limit=limit + 1)
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(ChildRead, row),
            lambda last: encode_time_cursor(last.created_at, last.id, scope=scope),
        )

    @get(
        "/{execution_id:str}/tree",
        responses=PROBLEMS,
        summary="The whole tree the execution belongs to (from its root), each child under its parent",
        response_headers=next_page_header("/api/v1/executions/{execution_id}/tree?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def tree(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[TreeNodeRead]]:
        # What the cursor was made for: the tree of this run (as the path named it).
        scope = ("tree", execution_id)
        after = _decode_tree_cursor(cursor, scope)
        execution = await _require(db, execution_id)
        rows = await db.executions.tree(execution.id, after=after, limit=limit + 1)
        # A bare list with the next page in a Link header, as the children's (a tree of 10,000 runs
        # came at once: 2.7 MB).
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(TreeNodeRead, row),
            lambda last: encode_scoped(scope, str(last.id)),
        )

    @get(
        "/{execution_id:str}/nodes/{node_id:str}/items",
        responses=PROBLEMS,
        summary="A forEach node's items, in order (none for another node)",
        response_headers=next_page_header("/api/v1/executions/{execution_id}/nodes/{node_id}/items?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def items(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        node_id: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[ItemRead]]:
        # What the cursor was made for: this run and this node (as the path named them).
        scope = ("items", execution_id, node_id)
        after = _decode_item_cursor(cursor, scope)
        execution = await _require(db, execution_id)
        rows = await db.executions.items(execution.id, node_id, after=after, limit=limit + 1)
        if not rows and not await db.executions.has_node(execution.id, node_id):
            # A node the run has not (a typo) is not a node without items.
            raise NotFound(f"execution {execution.id} has no node {quoted(node_id)}")
        # A bare list with the next page in a Link header, as the attempts' (a forEach of 10,000 items
        # came at once: 1.8 MB).
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(ItemRead, row, start_time=row.started_at, end_time=row.ended_at),
            lambda last: encode_scoped(scope, last.index),
        )

    @get(
        "/{execution_id:str}/actions",
        responses=PROBLEMS,
        summary="An execution's action attempts, in the order they started (order=desc: the latest first;"
        " view=summary: without parameters, outputs and error)",
        response_headers=next_page_header("/api/v1/executions/{execution_id}/actions?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def actions(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        node_id: Annotated[str | None, QueryParameter(name="nodeId", required=False)] = None,
        order: Annotated[str, QueryParameter(name="order", required=False, enum=list(_ORDERS))] = "asc",
        view: Annotated[str, QueryParameter(name="view", required=False, enum=list(_VIEWS))] = "full",
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[AttemptRead]]:
        require_one_of("order", order, _ORDERS)
        require_one_of("view", view, _VIEWS)
        # What the cursor was made for: this run, this node filter and this order (a cursor of another
        # would skip or repeat rows, or come back empty without a word).
        scope = ("attempts", execution_id, node_id, order)
        after = _decode_attempt_cursor(cursor, scope)
        execution = await _require(db, execution_id)
        if node_id is not None and not await db.executions.has_node(execution.id, node_id):
            # A node the run has not (a typo) is not a node without attempts.
            raise NotFound(f"execution {execution.id} has no node {quoted(node_id)}")
        rows = await db.executions.attempts_page(
            execution.id,
            node_id=node_id,
            after=after,
            latest=order == "desc",
            limit=limit + 1,
            full=view == "full",
        )
        # A bare list with the next page in a Link header (a forEach of thousands of items has an
        # attempt each: all of them came at once).
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(AttemptRead, row),
            lambda last: _encode_attempt_cursor(last, scope),
        )

    @get(
        "/{execution_id:str}/events",
        # The handler answers a Response (a page, or a stream): its body is declared here (the stream's
        # content type in api/openapi_contract.py).
        responses={
            **EVENT_STREAM_PROBLEMS,
            200: ResponseSpec(
                data_container=list[EventRead],
                generate_examples=False,
                description="The events after `after`, oldest first; with Accept: text/event-stream, a stream "
                "of them (each an `event: <type>` with the event as `data:` and its id as `id:`)",
            ),
        },
        summary="The execution log, in order; with Accept: text/event-stream, live until the run ends",
        response_headers=[
            ResponseHeader(
                name="Link",
                description='More events than `limit`: `<…/events?after=N&limit=L>; rel="next"` is the next page '
                "(absent on the last page)",
                documentation_only=True,
            )
        ],
        opt={"role": "viewer"},
    )
    async def events(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        request: Request[Any, Any, Any],
        execution_id: FromPath[str],
        after: Annotated[int, query_int("after", ge=0, le=BIGINT_MAX)] = 0,
        limit: Annotated[int, query_int("limit", ge=1, le=1000)] = 1000,
    ) -> Response[Any]:
        execution = await _require(svc.db, execution_id)
        if wants_stream(request.headers.get("accept", "")):
            last_id = request.headers.get("last-event-id", "")
            start = int(last_id) if re.fullmatch(r"[0-9]{1,18}", last_id) else after
            return await _open_stream(svc, principal, request, execution, start)
        # One row past the page says whether there is a next one, as the other lists' nextCursor does.
        rows = await svc.db.executions.events(execution.id, after=after, limit=limit + 1)
        page = [from_row(EventRead, row) for row in rows[:limit]]
        headers = {}
        if len(rows) > limit:
            # The body stays a bare list (existing clients read it so); the next page is an RFC 8288 link.
            # The path as the client sent it: behind a proxy's prefix (an ASGI root_path) too.
            headers["Link"] = f'<{request.url.path}?after={page[-1].id}&limit={limit}>; rel="next"'
        return Response(page, media_type=MediaType.JSON, headers=headers)

    @get(
        "/{execution_id:str}/waits",
        responses=PROBLEMS,
        summary="What the execution's nodes wait and waited for",
        opt={"role": "viewer"},
    )
    async def waits(self, db: DatabaseDep, execution_id: FromPath[str]) -> list[WaitRead]:
        execution = await _require(db, execution_id)
        return [from_row(WaitRead, wait) for wait in await db.control.waits(execution.id)]

    @post(
        "/{execution_id:str}/cancel",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Cancel: at once when no worker holds the run, else its worker ends it (idempotent)",
        opt={REQUIRES_PRINCIPAL: "cancel executions", "role": "operator"},
    )
    async def cancel(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        execution_id: FromPath[str],
        data: JSONBody[ControlRequest | None] = None,
    ) -> ControlResponse:
        parsed = execution_uuid(execution_id)
        reason = data.reason if data is not None else None
        outcome = await db.control.cancel(parsed, principal=principal.id, reason=reason)
        return from_row(ControlResponse, outcome, execution_id=parsed)

    @post(
        "/{execution_id:str}/suspend",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Suspend: running attempts finish, nothing new starts until it is resumed (idempotent)",
        opt={REQUIRES_PRINCIPAL: "suspend executions", "role": "operator"},
    )
    async def suspend(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        execution_id: FromPath[str],
        data: JSONBody[ControlRequest | None] = None,
    ) -> ControlResponse:
        parsed = execution_uuid(execution_id)
        reason = data.reason if data is not None else None
        outcome = await db.control.suspend(parsed, principal=principal.id, reason=reason)
        return from_row(ControlResponse, outcome, execution_id=parsed)

    @put(
        "/{execution_id:str}/priority",
        responses=PROBLEMS,
        summary="Change a run's priority: its queued job moves in line, and every later job carries it",
        opt={REQUIRES_PRINCIPAL: "change execution priorities", "role": "operator"},
    )
    async def set_priority(
        self,
        db: DatabaseDep,
        principal: PrincipalDep,
        execution_id: FromPath[str],
        data: JSONBody[PriorityRequest],
    ) -> PriorityResponse:
        parsed = execution_uuid(execution_id)
        change = await db.control.set_priority(parsed, data.priority, principal=principal.id)
        below = None
        if data.descendants:
            # In a transaction of its own, after the run's (which is committed: the runs below
            # are locked without their ancestor, see dw.set_descendants_priority_v1).
            below = from_row(
                DescendantsPriorityRead,
                await db.control.set_descendants_priority(parsed, data.priority, principal=principal.id),
            )
        return from_row(PriorityResponse, change, execution_id=parsed, descendants=below)

    @post(
        "/{execution_id:str}/resume",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Resume a Suspended execution, or withdraw a suspension not yet in effect",
        opt={REQUIRES_PRINCIPAL: "resume executions", "role": "operator"},
    )
    async def resume(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        execution_id: FromPath[str],
        data: JSONBody[EmptyRequest | None] = None,
    ) -> ControlResponse:
        parsed = execution_uuid(execution_id)
        outcome = await svc.db.control.resume(parsed, principal=principal.id, queue=svc.settings.queue)
        return from_row(ControlResponse, outcome, execution_id=parsed)

    @post(
        "/{execution_id:str}/signals/{name:str}",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Send a signal: a waiting node consumes it, else it is kept for one (idempotent on signalId)",
        opt={REQUIRES_PRINCIPAL: "send signals", "role": "operator"},
    )
    async def signal(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        execution_id: FromPath[str],
        name: FromPath[str],
        data: JSONBody[SignalRequest | None] = None,
    ) -> SignalResponse:
        parsed = execution_uuid(execution_id)
        body = data if data is not None else SignalRequest()
        check_signal(name, body.payload, svc.settings.max_trigger_depth)
        delivery = await svc.db.control.signal(
            parsed,
            name,
            payload=body.payload,
            signal_id=body.signal_id,
            correlation_key=None if body.correlation_key is None else str(body.correlation_key),
            principal=principal.id,
            queue=svc.settings.queue,
        )
        return from_row(SignalResponse, delivery)


_KEEPALIVE_SECONDS = 15.0
# How long one event stream lasts at most (and no longer than its token): then it ends, with a
# comment saying so, and the client reconnects after the last event it had (Last-Event-ID), its
# credentials checked again.
_MAX_STREAM_SECONDS = 600.0
# The first waits for a wake-up are short, then double up to the keepalive: an event written by a
# transaction that was under way when the stream subscribed may come without a NOTIFY (the
# trigger looked for listeners before this one was there), and is read at the next look.
_FIRST_LOOK_SECONDS = 0.25
# The most events a stream reads at once.
_STREAM_PAGE = 1000


async def _open_stream(
    svc: Services, principal: Principal, request: Request[Any, Any, Any], execution: Execution, start: int
) -> Response[Any]:
    """The live stream of the run's events after `start`, holding one of its caller's stream slots
    (api/stream_slots.py: past DW_MAX_STREAMS_PER_CALLER, 429 too_many_streams) until it ends."""
    slot = svc.streams.take(await caller_key(request, svc))
    if slot is None:
        log.warning("event stream refused: the caller holds the most it may", limit=svc.streams.limit)
        return too_many_streams(request, svc.streams.limit)
    # Read again past the stream's span: a token that has expired (or lost a role, or been revoked at
    # its provider) stops reading when the client reconnects.
    ends = time.time() + _MAX_STREAM_SECONDS
    if principal.valid_until is not None:
        ends = min(ends, principal.valid_until)
    try:
        # The first page is read before the answer starts: a read the database refuses (a stored value
        # too large to answer) is a problem, not a stream broken off at once, which a client reconnects
        # to for ever.
        first = await svc.db.executions.events(execution.id, after=start, limit=_STREAM_PAGE)
    except BaseException:
        slot.release()
        raise
    messages = _stream(svc, execution.id, start, execution.status.is_final, ends, first=first)
    return ServerSentEvent(slot.holding(messages))


async def _stream(
    svc: Services,
    execution_id: uuid.UUID,
    after: int,
    already_final: bool,
    ends: float,
    first: list[Event] | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    """_stream_events, ended as a stream whose time is up is when the database goes away under it (a
    restart, an outage): the client reconnects after the last event it had, and a new stream answers 503
    until the database is back. The error escaped the stream: the client saw its body broken off, the
    API's log a traceback (a review)."""
    try:
        async for message in _stream_events(svc, execution_id, after, already_final, ends, first):
            yield message
    except DatabaseUnavailable as exc:
        log.warning("an event stream lost its database; the client reconnects", error=str(exc))
        yield ServerSentEventMessage(comment="reconnect: the database is unavailable", data=None)
    except DataWorkflowsError as exc:
        # A later read refused (a stored value too large to answer): it escaped the stream, whose body
        # broke off with a traceback in the log. The stream ends; the client's reconnect reads that page
        # before answering, and gets the problem.
        code = "stored_value_too_large" if isinstance(exc, ValueTooLarge) else exc.code
        log.warning("an event stream's read was refused", error=exc.message, code=code)
        yield ServerSentEventMessage(comment=f"ended: {code}", data=None)


async def _stream_events(
    svc: Services,
    execution_id: uuid.UUID,
    after: int,
    already_final: bool,
    ends: float,
    first: list[Event] | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    """Events after `after` (`first`: the first page of them, when read already), then each new one as its
    NOTIFY arrives; ends with the run, or at `ends` (epoch seconds: the stream's span, or its token's
    expiry). An event written between that read and the subscription is read at the first look."""
    last = after
    idle = _FIRST_LOOK_SECONDS
    page = first
    async with svc.events.subscribe(execution_id) as wakeups:
        while True:
            rows = (
                page
                if page is not None
                else await svc.db.executions.events(execution_id, after=last, limit=_STREAM_PAGE)
            )
            page = None
            for row in rows:
                last = row.id
                data = msgspec.json.encode(from_row(EventRead, row)).decode()
                yield ServerSentEventMessage(data=data, event=row.type, id=row.id)
            if _stream_done([row.type for row in rows], already_final):
                return
            if svc.events.ending:
                # The server is stopping: the client reconnects (Last-Event-ID) to the next one.
                yield ServerSentEventMessage(comment="server stopping", data=None)
                return
            if not rows:
                # Nothing new: has the run ended before the events we were asked to start after?
                current = await svc.db.executions.get(execution_id)
                if current is None or current.status.is_final:
                    already_final = True
                    continue
            if len(rows) == _STREAM_PAGE:
                continue
            left = ends - time.time()
            if left <= 0:
                yield ServerSentEventMessage(comment="reconnect: the stream's time is up", data=None)
                return
            try:
                async with asyncio.timeout(min(idle, left)):
                    await wakeups.get()
            except TimeoutError:
                if idle >= _KEEPALIVE_SECONDS:
                    # Keeps proxies from closing an idle stream; the loop re-reads from the database.
                    yield ServerSentEventMessage(comment="keepalive", data=None)
                idle = min(idle * 2, _KEEPALIVE_SECONDS)


def _stream_done(types: list[str], already_final: bool) -> bool:
    """Whether the stream ends after these events: the run's end read (never on a full page: a redrive
    may be on the next), or nothing new of a run that had ended already."""
    return (len(types) < 1000 and run_ended_in(types)) or (already_final and not types)


def run_ended_in(types: list[str]) -> bool:
    """Whether the events read (their types, in order) end the run: a final event that no redrive
    follows. A redriven run's log holds its first end, then execution_redriven and the rest: the stream
    closed at that first end while the run went on (a review)."""
    ends = [n for n, event_type in enumerate(types) if is_final(event_type)]
    return bool(ends) and "execution_redriven" not in types[ends[-1] + 1 :]


def wants_stream(accept: str) -> bool:
    """Whether the Accept header asks for the live stream: it names text/event-stream (media types
    are case-insensitive) with a q above 0, and no higher for application/json. It was a substring
    test: `text/event-stream;q=0, application/json` streamed, `TEXT/EVENT-STREAM` did not."""
    stream: float | None = None
    json_q: float | None = None
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/event-stream":
            stream = max(stream or 0.0, q)
        elif media == "application/json":
            json_q = max(json_q or 0.0, q)
    return stream is not None and stream > 0 and (json_q is None or stream >= json_q)
