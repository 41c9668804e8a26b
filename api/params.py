"""Integers from a path or a query string are bounded before they reach SQL.

psycopg sends a Python int past bigint as numeric, and a bigint column compared with it, or a function
taking bigint, then fails in PostgreSQL: a 500 for what is the client's mistake.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter

from dataworkflows.errors import NotFound

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


def query_int(name: str, *, ge: int, le: int, required: bool | None = None) -> QueryParameter:
    """An int query parameter; both bounds are required so that none reaches SQL unbounded.

    A value outside them is a malformed request (400), not an unknown resource."""
    return QueryParameter(name=name, ge=ge, le=le, required=required)


# `?version=N` on the routes that read one version of something (versions are PostgreSQL integers).
VersionQuery = Annotated[int | None, query_int("version", ge=1, le=INT_MAX, required=False)]


def refuse_impossible_ids(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every int path parameter names a row id or a version, and both start at 1 and fit a bigint:
    any other value names nothing, so it is a 404 before a handler or SQL sees it.

    An app-level guard, because guards of every layer run (a controller's before_request would
    replace the app's), so a route added later is covered without opting in."""
    for name, value in connection.path_params.items():
        # Versions are integers in PostgreSQL, ids bigints.
        top = INT_MAX if name == "version" else BIGINT_MAX
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= top:
            # The value is not echoed: it may be thousands of digits long.
            what = name.removesuffix("_id").replace("_", " ")
            raise NotFound(f"no {what} has that number (ids are 1 to {BIGINT_MAX}, versions 1 to {INT_MAX})")
