"""201 Created with a Location (RFC 9110 10.2.2, 15.3.2): where the new resource is read. Without one
a client had to take the request's own URI (the collection) for the new resource."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.status_codes import HTTP_201_CREATED

from .auth import API_PREFIX

T = TypeVar("T")

# The header, in the OpenAPI document of each route that answers with created().
LOCATION = [
    ResponseHeader(
        name="Location",
        description="Where the new resource is read (under /api/v1)",
        documentation_only=True,
    )
]


def created(request: Request[Any, Any, Any], content: T, *path: str) -> Response[T]:
    """A 201 answer with `content` and Location: /api/v1/<path…>, each part one path segment, behind
    an ASGI root_path's prefix as the client sent the request."""
    segments = "/".join(quote(part, safe="") for part in path)
    location = f"{request.scope.get('root_path', '')}{API_PREFIX}/{segments}"
    return Response(content, status_code=HTTP_201_CREATED, headers={"Location": location})
