"""Monday.com connector: get items (filters, cursor paging), create an item (idempotent with a
key, through resource links), update column values. GraphQL over the SSRF-guarded client.

Monday answers errors in several shapes: HTTP 429/5xx, `errors: [{message, extensions: {code,
retry_in_seconds}}]`, and the older `error_code` / `error_message`. Complexity budget and rate
limits are retriable after the time Monday names; authentication, unknown boards and items, and
bad column values are permanent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
import msgspec

from dataworkflows.actions import ActionContext, ActionResult, ActionServices, ResourceLink
from dataworkflows.actions.web import (
    RETRIABLE_STATUSES,
    ResponseTooLarge,
    UnsupportedEncoding,
    post_json,
    remote_code,
    retry_after_seconds,
    scrub_result,
    secret_for,
    transport_failure,
)
from dataworkflows.http_client import BlockedDestination
from dataworkflows.statuses import AttemptStatus

DEFAULT_API_URL = "https://api.monday.com/v2"
API_VERSION = "2024-10"
RETRIABLE_CODES = frozenset(
    {
        "ComplexityException",
        "COMPLEXITY_BUDGET_EXHAUSTED",
        "RATE_LIMIT_EXCEEDED",
        "IP_RATE_LIMIT_EXCEEDED",
        "maxConcurrencyExceeded",
        "CONCURRENCY_LIMIT_EXCEEDED",
        "INTERNAL_SERVER_ERROR",
    }
)
ITEM_RESOURCE = "monday.item"

_ITEM_FIELDS = "id name column_values { id text value }"


# The most pages one get-items reads (limit 10,000 at a page of 1 item: 10,000; more is a cursor
# that does not end).
MAX_PAGES = 10_001


class MondayError(Exception):
    """A monday.com call that did not give its answer: `result` is the attempt's. `refused` when
    monday.com certainly did nothing: the request never went (no connection, no credential), or its
    answer refused it (4xx, GraphQL errors on a 2xx: bad input, authentication, rate and complexity
    limits). Otherwise (no answer, an unreadable or misshapen one, a 5xx) a mutation may have run."""

    def __init__(self, result: ActionResult, *, refused: bool = False) -> None:
        super().__init__(result.error.message if result.error else "monday error")
        self.result = result
        self.refused = refused


async def _graphql(services: ActionServices, connection: str, query: str, variables: dict[str, Any]) -> Any:
    """The answer's `data`; MondayError carries the attempt's result when Monday cannot answer."""
    secret = await secret_for(services, connection)
    if isinstance(secret, ActionResult):
        raise MondayError(secret, refused=True)
    response, body = await _post(services, secret.reveal(), query, variables)
    _raise_for_errors(response, body)
    return _object(body.get("data"), "data")


def _object(value: Any, what: str) -> dict[str, Any]:
    """A part of monday.com's answer that must be an object (None: an empty one); anything else is
    monday_bad_response, not an AttributeError raised from the action."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MondayError(
            ActionResult.failed("monday_bad_response", f"monday.com answered a {what} that is not an object")
        )
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MondayError(ActionResult.failed("monday_bad_response", f"monday.com answered {what} that are not a list"))
    return value


async def _post(
    services: ActionServices, token: str, query: str, variables: dict[str, Any]
) -> tuple[httpx.Response, Any]:
    client: httpx.AsyncClient = services.http
    url = services.endpoints.get("monday", DEFAULT_API_URL)
    try:
        return await post_json(
            client, url, {"query": query, "variables": variables}, {"Authorization": token, "API-Version": API_VERSION}
        )
    except (httpx.HTTPError, OSError, BlockedDestination) as exc:
        # A connection never made (or refused by the guard) sent nothing; a timeout or a reset after
        # the request went may have come after monday.com acted.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | BlockedDestination)
        raise MondayError(scrub_result(transport_failure(exc, "monday.com"), [token]), refused=never_sent) from exc
    except (ResponseTooLarge, UnsupportedEncoding) as exc:
        raise MondayError(
            ActionResult.failed("monday_bad_response", f"unreadable answer: {type(exc).__name__}")
        ) from exc


def _raise_for_errors(response: httpx.Response, body: Any) -> None:
    status = response.status_code
    if status in (401, 403):
        raise MondayError(ActionResult.failed("monday_unauthorized", f"monday.com answered {status}"), refused=True)
    # Decided by the status, not by the node's code (named after monday's own code when the body has
    # one: a 500 with InternalServerException was taken for a refusal, a review): a 3xx or 4xx did
    # nothing, a 5xx may have acted.
    refused = 300 <= status < 500
    if not isinstance(body, dict):
        if status in RETRIABLE_STATUSES:
            raise MondayError(
                ActionResult.retriable(
                    f"monday_http_{status}", "monday.com is unavailable", retry_after_seconds(response)
                ),
                refused=refused,
            )
        # A 2xx whose body is not JSON: unreadable, so a mutation may have run (not refused).
        raise MondayError(ActionResult.failed("monday_bad_response", f"monday.com answered {status}"), refused=refused)
    errors = body.get("errors") or []
    if not isinstance(errors, list):
        # GraphQL's errors are a list; one object (or anything else) alone is still the error.
        errors = [errors if isinstance(errors, dict) else {"message": str(errors)[:500]}]
    if body.get("error_code"):
        # The older error shape, alongside the GraphQL one.
        errors = [*errors, {"message": body.get("error_message", ""), "extensions": {"code": body["error_code"]}}]
    if errors or status >= 400:
        # GraphQL errors on a 2xx refuse the request (bad input, limits); on a 5xx they do not say.
        raise MondayError(_error_result(response, errors), refused=status < 500)


def _error_result(response: httpx.Response, errors: list[Any]) -> ActionResult:
    """The first error decides: retriable for rate and complexity limits and 5xx, else permanent."""
    status = response.status_code
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    given = first.get("extensions")
    extensions: dict[str, Any] = given if isinstance(given, dict) else {}
    remote = extensions.get("code")
    message = str(first.get("message") or f"monday.com answered {status}")
    wait = extensions.get("retry_in_seconds")
    retry_after = float(wait) if isinstance(wait, (int, float)) else retry_after_seconds(response)
    if remote:
        code = str(remote)
        node_code = remote_code("monday", code)
        if node_code == "monday_error":
            message = f"{message} ({code})"  # the remote's code, kept in the scrubbed message
    else:
        # No code of monday's: the HTTP status's, spelt as the 5xx one (monday_http_503) is; they
        # were monday_HTTP_400 and monday_ERROR beside it (a review).
        code = ""
        node_code = f"monday_http_{status}" if status >= 400 else "monday_error"
    if code in RETRIABLE_CODES or status in RETRIABLE_STATUSES:
        return ActionResult.retriable(node_code, f"monday.com: {message}", retry_after)
    return ActionResult.failed(node_code, f"monday.com: {message}")


def _item(raw: Any) -> dict[str, Any]:
    raw = _object(raw, "item")
    return {
        "id": raw.get("id"),
        "name": raw.get("name"),
        "columnValues": {c.get("id"): c.get("text") for c in raw.get("column_values") or [] if isinstance(c, dict)},
    }


class Filter(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    column_id: str
    compare_value: Any
    operator: Literal[
        "any_of",
        "not_any_of",
        "is_empty",
        "is_not_empty",
        "greater_than",
        "lower_than",
        "contains_text",
        "not_contains_text",
        "between",
    ] = "any_of"


class GetItemsParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    board_id: int | str
    filters: list[Filter] = msgspec.field(default_factory=list)
    match: Literal["and", "or"] = "and"
    # Stop after this many items in total, following Monday's cursor page by page.
    limit: int = 500
    page_size: int = 100
    connection: str = "monday"

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        if not 1 <= self.page_size <= 500:
            raise ValueError("pageSize must be between 1 and 500")


class MondayGetItemsAction:
    type_name: ClassVar[str] = "monday.get-items"
    description: ClassVar[str] = "Reads items of a board (filters become items_page query_params; cursor paging)."
    connector: ClassVar[str] = "monday"
    Params: ClassVar[type[msgspec.Struct]] = GetItemsParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, GetItemsParams)
        services = ctx.require_services()
        try:
            page = await _first_page(services, params)
            if page is None:
                return ActionResult.failed("monday_board_not_found", f"board {params.board_id} was not found")
            items, pages, page = await _follow_pages(services, params, page)
        except MondayError as exc:
            return exc.result
        truncated = len(items) >= params.limit and bool(page.get("cursor"))
        return ActionResult.succeeded(
            {
                "items": items[: params.limit],
                "count": min(len(items), params.limit),
                "pages": pages,
                "truncated": truncated,
            }
        )


def _query_params(params: GetItemsParams) -> dict[str, Any] | None:
    """The filters as items_page's query_params (None: every item)."""
    if not params.filters:
        return None
    return {
        "rules": [
            {
                "column_id": f.column_id,
                "compare_value": f.compare_value if isinstance(f.compare_value, list) else [f.compare_value],
                "operator": f.operator,
            }
            for f in params.filters
        ],
        "operator": params.match,
    }


async def _first_page(
    services: ActionServices, params: GetItemsParams, fields: str = _ITEM_FIELDS
) -> dict[str, Any] | None:
    """The board's first items page, or None when there is no such board."""
    data = await _graphql(
        services,
        params.connection,
        "query ($board: [ID!], $limit: Int!, $qp: ItemsQuery) { boards(ids: $board) {"
        f" items_page(limit: $limit, query_params: $qp) {{ cursor items {{ {fields} }} }} }} }}",
        {"board": [str(params.board_id)], "limit": min(params.page_size, params.limit), "qp": _query_params(params)},
    )
    boards = _list(data.get("boards"), "boards")
    if not boards:
        return None
    return _object(_object(boards[0], "board").get("items_page"), "items page")


async def _follow_pages(
    services: ActionServices,
    params: GetItemsParams,
    page: dict[str, Any],
    fields: str = _ITEM_FIELDS,
    read: Callable[[Any], dict[str, Any]] = _item,
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Items from `page` on, following the cursor until the limit: (items, pages read, last page).
    A page without items ends it, and a cursor seen before, or more than MAX_PAGES pages, is a bad
    answer: a cursor that kept coming back with empty pages made hundreds of calls a second until
    the node's timeout, and again at each retry."""
    items: list[dict[str, Any]] = []
    pages = 0
    seen: set[str] = set()
    while True:
        pages += 1
        found = [read(i) for i in _list(page.get("items"), "items")]
        items.extend(found)
        cursor = page.get("cursor")
        if not cursor or not found or len(items) >= params.limit:
            return items, pages, page
        if not isinstance(cursor, str) or cursor in seen or pages >= MAX_PAGES:
            raise MondayError(
                ActionResult.failed(
                    "monday_bad_response",
                    f"monday.com's paging does not end (page {pages}, its cursor seen before)"
                    if isinstance(cursor, str) and cursor in seen
                    else f"monday.com's paging does not end ({pages} pages)",
                )
            )
        seen.add(cursor)
        data = await _graphql(
            services,
            params.connection,
            "query ($cursor: String!, $limit: Int!) { next_items_page(cursor: $cursor, limit: $limit)"
            f" {{ cursor items {{ {fields} }} }} }}",
            {"cursor": cursor, "limit": min(params.page_size, params.limit - len(items))},
        )
        page = _object(data.get("next_items_page"), "next items page")


class CreateItemParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    board_id: int | str
    item_name: str
    group_id: str | None = None
    column_values: dict[str, Any] = msgspec.field(default_factory=dict)
    # Runs that share this key create one item: e.g. "{{ trigger.ticketId }}".
    idempotency_key: str | None = None
    connection: str = "monday"

    def __post_init__(self) -> None:
        if not self.item_name.strip():
            raise ValueError("itemName must not be empty")


class MondayCreateItemAction:
    type_name: ClassVar[str] = "monday.create-item"
    description: ClassVar[str] = (
        "Creates an item; with idempotencyKey, returns the existing item instead of a duplicate."
    )
    connector: ClassVar[str] = "monday"
    Params: ClassVar[type[msgspec.Struct]] = CreateItemParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, CreateItemParams)
        services = ctx.require_services()
        key = f"{params.board_id}:{params.idempotency_key}" if params.idempotency_key else None
        if key is not None:
            settled = await _claim(ctx, params, key)
            if settled is not None:
                return settled
        try:
            data = await _graphql(
                services,
                params.connection,
                "mutation ($board: ID!, $group: String, $name: String!, $values: JSON) {"
                " create_item(board_id: $board, group_id: $group, item_name: $name, column_values: $values) { id } }",
                {
                    "board": str(params.board_id),
                    "group": params.group_id,
                    "name": params.item_name,
                    "values": json.dumps(params.column_values),
                },
            )
        except MondayError as exc:
            if key is not None and not _may_have_acted(exc):
                # monday.com refused the mutation, or never got it: another attempt or run may
                # create the item at once. After an answer that never came (a timeout, a cut
                # connection, a 5xx) the item may exist: the claim is kept, and whoever takes it
                # over finds it in doubt and looks the item up (it was released, and each retry
                # created another item: a review).
                await services.resources.release(
                    ITEM_RESOURCE,
                    key,
                    execution_id=ctx.execution_id,
                    node_id=ctx.node_id,
                    attempt=ctx.attempt,
                    compensating=ctx.compensating,
                )
            return exc.result
        try:
            item_id = str(_object(data.get("create_item"), "created item").get("id") or "")
        except MondayError as exc:
            # The mutation was answered, in a shape without the id: the item may exist, so the claim
            # is kept (as for an answer without an id), not released for another run to create one.
            return exc.result
        if not item_id:
            return ActionResult.failed("monday_bad_response", "monday.com did not return the new item's id")
        if key is None:
            return ActionResult.succeeded({"itemId": item_id, "created": True})
        return await _linked(ctx, params, key, item_id)


async def _claim(ctx: ActionContext, params: CreateItemParams, key: str) -> ActionResult | None:
    """Claims the key for this attempt: None when it is to create the item, else the attempt's result
    (the item that exists or that an earlier attempt in doubt created; another run creating it)."""
    claim = await ctx.require_services().resources.claim(
        ITEM_RESOURCE,
        key,
        workflow_id=ctx.workflow_id,
        execution_id=ctx.execution_id,
        node_id=ctx.node_id,
        attempt=ctx.attempt,
        compensating=ctx.compensating,
    )
    if claim.state == "exists":
        return ActionResult.succeeded({"itemId": claim.external_id, "created": False})
    if claim.state == "pending":
        return ActionResult.retriable(
            "resource_pending", "another run is creating the item with this idempotency key", retry_after=1.0
        )
    if claim.state == "in_doubt":
        assert claim.claimed_at is not None
        return await _adopt(ctx, params, key, claim.claimed_at)
    return None


async def _linked(ctx: ActionContext, params: CreateItemParams, key: str, item_id: str) -> ActionResult:
    """The created item, linked to its key at once (not only with the node's outcome), so a crash
    before the outcome is recorded cannot lead another run to create a second item."""
    services = ctx.require_services()
    linked = await services.resources.link(
        ITEM_RESOURCE,
        key,
        item_id,
        workflow_id=ctx.workflow_id,
        execution_id=ctx.execution_id,
        node_id=ctx.node_id,
        data={"boardId": str(params.board_id)},
    )
    # The first link wins: a run whose claim expired under it while another linked the key reports
    # the key's item, not its own (it said created with an id no link named).
    links = (ResourceLink(ITEM_RESOURCE, key, linked, {"boardId": str(params.board_id)}),)
    return ActionResult(AttemptStatus.SUCCEEDED, {"itemId": linked, "created": linked == item_id}, None, links)


# The most items of one name an in-doubt create reads (10 pages of 100) before it says it cannot tell.
_MAX_NAMESAKES = 1_000
# monday.com's clock against PostgreSQL's: an item created up to this long before the key was first
# claimed may still be the one an earlier attempt created.
_CLOCK_SKEW = timedelta(minutes=5)


async def _adopt(ctx: ActionContext, params: CreateItemParams, key: str, claimed_at: datetime) -> ActionResult | None:
    """For a claim in doubt (an earlier attempt may have created the item, and never heard): the item
    it created, linked, when exactly one item of this name that no other key is linked to was created
    on the board since the key was first claimed; None when none was (create it); a failure when
    monday.com cannot be asked (the claim stays in doubt for the next attempt) or when more than one
    was (which one is this key's cannot be told: the node fails monday_outcome_unknown for good, and so
    does every run of this key until all but one of them are deleted)."""
    found = await _namesakes(ctx, params, claimed_at - _CLOCK_SKEW)
    if isinstance(found, ActionResult):
        return found
    recent, overflow = found
    if recent and not _holds_key(params.item_name, str(params.idempotency_key)):
        # A name that does not hold the key may be another key's item's too, made by a create of
        # its own whose answer is in doubt and not linked yet: taking it would give that key's item
        # to this one (a review). Only a person can tell.
        return ActionResult.failed(
            "monday_outcome_unknown",
            f"an earlier attempt's create of {params.item_name!r} (key {params.idempotency_key!r}) was never "
            f"answered, and an item of that name is on board {params.board_id}; the name does not hold the "
            "key as a word of its own, so the item may be another key's: a person must check the board, and "
            "every run of this key fails so until the item is deleted or renamed there; put the key in "
            "itemName (Ticket {{ trigger.ticketId }}) to let a retry find its item",
        )
    if len(recent) > 1 or (not recent and overflow):
        shown = f"{len(recent)} items" if len(recent) > 1 else f"more than {_MAX_NAMESAKES} items"
        return ActionResult.failed(
            "monday_outcome_unknown",
            f"an earlier attempt's create of {params.item_name!r} (key {params.idempotency_key!r}) was never "
            f"answered, and {shown} of that name that no other key is linked to are on board {params.board_id} "
            "since the key was first claimed: which one it created cannot be told; delete the ones it did not "
            "create and run it again",
        )
    if not recent:
        return None
    item_id = str(recent[0].get("id") or "")
    if not item_id:
        return ActionResult.failed("monday_bad_response", "monday.com listed an item without its id")
    return await _linked(ctx, params, key, item_id)


async def _namesakes(
    ctx: ActionContext, params: CreateItemParams, since: datetime
) -> tuple[list[dict[str, Any]], bool] | ActionResult:
    """The board's items of the item's name created since `since` that no other key is linked to (a
    review: key B, whose create made nothing, was linked to key A's item of the same name) and that
    no compensation released (an item it undid, left on the board, was taken by the key's next run), and
    whether there were more of the name than were read; or the failure to ask."""
    services = ctx.require_services()
    by_name = GetItemsParams(
        board_id=params.board_id,
        filters=[Filter(column_id="name", compare_value=[params.item_name])],
        limit=_MAX_NAMESAKES,
        page_size=100,
        connection=params.connection,
    )
    try:
        page = await _first_page(services, by_name, "id created_at")
        if page is None:
            return ActionResult.failed("monday_board_not_found", f"board {params.board_id} was not found")
        items, _, last = await _follow_pages(services, by_name, page, "id created_at", lambda i: _object(i, "item"))
    except MondayError as exc:
        return exc.result
    recent = [i for i in items if _created_since(i.get("created_at"), since)]
    theirs = await services.resources.linked(ITEM_RESOURCE, [str(i.get("id")) for i in recent]) if recent else set()
    overflow = bool(last.get("cursor")) and len(items) >= _MAX_NAMESAKES
    return [i for i in recent if str(i.get("id")) not in theirs], overflow


def _holds_key(name: str, key: str) -> bool:
    """Whether the item's name holds the key as a word of its own (not inside a longer run of letters
    and digits: 'Sprint 12 review' holds '12', not '1' or '2', a review), so that an item of that name
    is this key's."""
    return re.search(rf"(?<![^\W_]){re.escape(key)}(?![^\W_])", name) is not None


def _created_since(value: Any, since: datetime) -> bool:
    """Whether monday.com's created_at (ISO 8601, UTC) is at or after `since`; an item whose time
    cannot be read counts as recent (it may be the one)."""
    if not isinstance(value, str):
        return True
    try:
        created = datetime.fromisoformat(value)
    except ValueError:
        return True
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created >= since


def _may_have_acted(exc: MondayError) -> bool:
    """Whether monday.com may have run a mutation whose answer this attempt does not have: unless it
    certainly did nothing (MondayError.refused). Only then is a create's claim released (after any
    other failure it was released, and the retry made a second item: a review)."""
    return not exc.refused


class UpdateItemParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    board_id: int | str
    item_id: int | str
    column_values: dict[str, Any]
    connection: str = "monday"


class MondayUpdateItemAction:
    type_name: ClassVar[str] = "monday.update-item"
    description: ClassVar[str] = "Changes column values of an item (change_multiple_column_values)."
    connector: ClassVar[str] = "monday"
    Params: ClassVar[type[msgspec.Struct]] = UpdateItemParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, UpdateItemParams)
        services = ctx.require_services()
        try:
            data = await _graphql(
                services,
                params.connection,
                "mutation ($board: ID!, $item: ID!, $values: JSON!) {"
                " change_multiple_column_values(board_id: $board, item_id: $item, column_values: $values) { id } }",
                {
                    "board": str(params.board_id),
                    "item": str(params.item_id),
                    "values": json.dumps(params.column_values),
                },
            )
            changed = _object(data.get("change_multiple_column_values"), "changed item")
        except MondayError as exc:
            return exc.result
        return ActionResult.succeeded({"itemId": str(changed.get("id") or params.item_id)})
