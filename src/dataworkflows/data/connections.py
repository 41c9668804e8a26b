"""Stored connections: their secrets are ciphertext here (dataworkflows.credentials encrypts and
decrypts; the key never reaches the database)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from dataworkflows.db import Database


class Connection(msgspec.Struct, frozen=True):
    """A connection as the API shows it: never its secret."""

    name: str
    kind: str
    key_id: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime


class StoredSecret(msgspec.Struct, frozen=True):
    """A connection with its ciphertext, for the credential provider only."""

    name: str
    kind: str
    secret: bytes
    key_id: str


class ConnectionData:
    """dw.connections."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, name: str, *, kind: str, secret: bytes, key_id: str, principal: str | None) -> Connection:
        """Stores the connection, or replaces its kind and secret."""
        stored = await self._db.fetch_one_as(
            Connection, "upsert_connection", name=name, kind=kind, secret=secret, key_id=key_id, principal=principal
        )
        assert stored is not None
        return stored

    async def list_all(self) -> list[Connection]:
        """By name."""
        return await self._db.fetch_all_as(Connection, "list_connections")

    async def delete(self, name: str) -> bool:
        """Whether there was such a connection."""
        return await self._db.fetch_one("delete_connection", name=name) is not None

    async def fetch_connection(self, name: str) -> StoredSecret | None:
        return await self._db.fetch_one_as(StoredSecret, "fetch_connection", name=name)
