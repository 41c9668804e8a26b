"""Published CloudEvents and the runs their event triggers started (sql/procedures/events.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from dataworkflows.db import Database


class EventDelivery(msgspec.Struct, frozen=True):
    """What one event trigger did with an event: started (a run) or refused (why)."""

    trigger_id: UUID
    workflow_id: str
    outcome: str
    execution_id: UUID | None
    reason: str | None


class Published(msgspec.Struct, frozen=True):
    event_row: int
    # The (source, id) was published before: nothing was started; the first time's deliveries.
    duplicate: bool
    received_at: datetime
    deliveries: list[EventDelivery]


class EventData:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def publish(
        self,
        *,
        source: str,
        event_id: str,
        type: str,
        subject: str | None,
        time: datetime | None,
        data: Any,
        principal: str | None,
        queue: str,
    ) -> Published:
        rows = await self._db.fetch_all(
            "publish_event",
            source=source,
            event_id=event_id,
            type=type,
            subject=subject,
            time=time,
            data=Jsonb(data),
            principal=principal,
            queue=queue,
        )
        first = rows[0]
        deliveries = [msgspec.convert(row, EventDelivery) for row in rows if row["trigger_id"] is not None]
        return Published(
            event_row=int(first["event_row"]),
            duplicate=bool(first["duplicate"]),
            received_at=first["received_at"],
            deliveries=deliveries,
        )

    async def prune(self, *, keep_seconds: float, limit: int = 10_000) -> int:
        """Deletes up to `limit` events received more than `keep_seconds` ago; returns how many."""
        row = await self._db.fetch_one("prune_events", keep_seconds=keep_seconds, limit=limit)
        return 0 if row is None else int(row["deleted"])
