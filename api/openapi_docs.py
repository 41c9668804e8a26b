"""The error answers every route may give, for the OpenAPI document (RFC 9457 problem details)."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from .problems import PROBLEM_JSON
from .schemas import ProblemDetails


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemDetails, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


PROBLEMS = {
    400: _spec("Malformed request: not JSON, wrong types, unknown fields"),
    401: _spec("No principal where DW_REQUIRE_PRINCIPAL requires one; strict mode: a missing or invalid token"),
    404: _spec("Unknown id"),
    409: _spec("Conflicts with the current state (Draft/Archived workflow, duplicate id, redriven letter)"),
    413: _spec("Request body larger than DW_MAX_BODY_BYTES"),
    422: _spec("Invalid definition or input: one entry per problem in errors[], each with a JSON pointer"),
    429: _spec("Over the caller's rate limit (DW_API_RATE_PER_MINUTE): see Retry-After and the RateLimit fields"),
    503: _spec("The database is unreachable; retry later"),
}
