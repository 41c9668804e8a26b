"""GET /api/v1/waits: the waits of several executions in one request.

The console's waiting page lists up to 100 Waiting and Suspended runs; it asked each run for its
waits (GET /api/v1/executions/{id}/waits), 100 requests a load against the caller's rate limit.
This answers for all of them at once, read under the caller's tenant like the per-run route: an
execution of another tenant, or none, has no waits here (it is not an error, as a list's filter)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, MediaType, Response, get
from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from .openapi_docs import PROBLEMS
from .params import REPEATABLE_QUERY, BadQueryValue, query_int, require_one_of
from .schemas import RunWaitRead, from_row
from .services import DatabaseDep

# As many executions as two of the console's pages of runs.
MAX_EXECUTIONS = 100
_STATES = ("open", "all")


class WaitController(Controller):
    path = "/waits"
    tags = ["executions"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="The waits of up to 100 executions (executionId repeated), in the order named, each one's oldest first",
        opt={"role": "viewer", REPEATABLE_QUERY: ("executionId",)},
        response_headers=[
            ResponseHeader(
                name="X-More-Waits",
                description="`true` when the waits were cut at `limit` (the executions named last are cut)",
                documentation_only=True,
            )
        ],
    )
    async def list_waits(
        self,
        db: DatabaseDep,
        # Required, but checked below: a bad state or limit is named alone, as on every route.
        execution_ids: Annotated[list[uuid.UUID] | None, QueryParameter(name="executionId", required=True)] = None,
        wait_state: Annotated[str, QueryParameter(name="state", required=False, enum=list(_STATES))] = "all",
        limit: Annotated[int, query_int("limit", ge=1, le=1000)] = 500,
    ) -> Response[list[RunWaitRead]]:
        require_one_of("state", wait_state, _STATES)
        if not execution_ids:
            raise BadQueryValue("executionId", "name the executions: executionId, once per execution (1 to 100)")
        wanted = list(dict.fromkeys(execution_ids))
        if len(wanted) > MAX_EXECUTIONS:
            many = f"executionId may name at most {MAX_EXECUTIONS} executions, not {len(wanted)}"
            raise BadQueryValue("executionId", many)
        rows = await db.control.waits_of_runs(wanted, open_only=wait_state == "open", limit=limit + 1)
        # Cut at `limit`: said, so that a run past the cut is not taken for one that waits for
        # nothing (the executions named last, in the order named, are the ones cut).
        headers = {"X-More-Waits": "true"} if len(rows) > limit else {}
        return Response(
            [from_row(RunWaitRead, row) for row in rows[:limit]], media_type=MediaType.JSON, headers=headers
        )
