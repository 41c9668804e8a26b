"""An event stream whose database goes away under it ends as a stream whose time is up, with a comment
the client reconnects on; the error escaped the stream (a broken body for the client, a traceback in
the API's log: a review)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from dataworkflows.api.executions import _stream
from dataworkflows.errors import DatabaseUnavailable


class _Hub:
    ending = False

    @contextlib.asynccontextmanager
    async def subscribe(self, execution_id: uuid.UUID) -> AsyncIterator[Any]:
        yield None


async def test_a_stream_ends_with_a_reconnect_comment_when_its_database_is_gone() -> None:
    async def events(execution_id: uuid.UUID, *, after: int, limit: int) -> list[Any]:
        raise DatabaseUnavailable("the database is unavailable: terminating connection due to administrator command")

    svc: Any = SimpleNamespace(events=_Hub(), db=SimpleNamespace(executions=SimpleNamespace(events=events)))
    messages = [m async for m in _stream(svc, uuid.uuid4(), 0, False, time.time() + 60)]
    assert len(messages) == 1
    assert messages[0].comment == "reconnect: the database is unavailable" and messages[0].data is None


async def test_a_stream_whose_later_read_is_refused_ends_with_a_comment_not_a_traceback() -> None:
    """A read the database refuses (a stored value too large to answer: dataworkflows.db's ValueTooLarge)
    escaped the stream, whose body broke off with a traceback in the API's log."""
    from dataworkflows.errors import ValueTooLarge

    async def events(execution_id: uuid.UUID, *, after: int, limit: int) -> list[Any]:
        raise ValueTooLarge("the database cannot hold a value this large in one piece (1 GB)")

    svc: Any = SimpleNamespace(events=_Hub(), db=SimpleNamespace(executions=SimpleNamespace(events=events)))
    messages = [m async for m in _stream(svc, uuid.uuid4(), 0, False, time.time() + 60)]
    assert [(m.comment, m.data) for m in messages] == [("ended: stored_value_too_large", None)]
