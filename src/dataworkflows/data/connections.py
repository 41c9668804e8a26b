"""Stored connections: their secrets are ciphertext here (dataworkflows.credentials encrypts and
decrypts; the key never reaches the database)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from dataworkflows.errors import ConnectionsNotAllowed
from dataworkflows.validation import Problem

if TYPE_CHECKING:
    from dataworkflows.db import Database
    from dataworkflows.publishing import ConnectionUse


class Connection(msgspec.Struct, frozen=True):
    """A connection as the API shows it: never its secret."""

    name: str
    kind: str
    key_id: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    # Workflows that may use it ("*": every one; empty: none yet).
    allowed_workflows: list[str]


class StoredSecret(msgspec.Struct, frozen=True):
    """A connection with its ciphertext, for the credential provider only."""

    name: str
    kind: str
    secret: bytes
    key_id: str
    allowed_workflows: list[str]


class ConnectionData:
    """dw.connections."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(
        self,
        name: str,
        *,
        kind: str,
        secret: bytes,
        key_id: str,
        principal: str | None,
        allowed_workflows: list[str] | None = None,
    ) -> Connection:
        """Stores the connection, or replaces its kind and secret. allowed_workflows None: none for
        a new connection, unchanged for an existing one."""
        stored = await self._db.fetch_one_as(
            Connection,
            "upsert_connection",
            name=name,
            kind=kind,
            secret=secret,
            key_id=key_id,
            principal=principal,
            allowed=allowed_workflows,
        )
        assert stored is not None
        return stored

    async def set_allowed_workflows(self, name: str, allowed_workflows: list[str]) -> Connection | None:
        """Replaces the workflows that may use the connection; None when there is no such connection."""
        return await self._db.fetch_one_as(
            Connection, "set_connection_allowed_workflows", name=name, allowed=allowed_workflows
        )

    async def get(self, name: str) -> Connection | None:
        return await self._db.fetch_one_as(Connection, "get_connection", name=name)

    async def list_all(self) -> list[Connection]:
        """By name."""
        return await self._db.fetch_all_as(Connection, "list_connections")

    async def delete(self, name: str) -> bool:
        """Whether there was such a connection."""
        return await self._db.fetch_one("delete_connection", name=name) is not None

    async def fetch_connection(self, name: str) -> StoredSecret | None:
        return await self._db.fetch_one_as(StoredSecret, "fetch_connection", name=name)

    async def refusing(self, workflow_id: str, names: Collection[str]) -> set[str]:
        """Which of these stored connections the workflow may not use (names not stored are not
        refused here: they may come from the environment, or be stored later)."""
        if not names:
            return set()
        rows = await self._db.fetch_all("connections_refusing", names=sorted(set(names)), workflow_id=workflow_id)
        return {row["name"] for row in rows}

    async def check_allowed(self, workflow_id: str, uses: Sequence[ConnectionUse]) -> None:
        """At publish: refuses (ConnectionsNotAllowed, one problem per use) a definition that names
        stored connections whose allow-lists do not name its workflow."""
        refused = await self.refusing(workflow_id, {use.name for use in uses})
        problems = [
            Problem(
                use.pointer,
                "connection_not_allowed",
                f"connection {use.name!r} may not be used by workflow {workflow_id!r} "
                f"(its allowedWorkflows do not name it: PATCH /api/v1/connections/{use.name})",
            )
            for use in uses
            if use.name in refused
        ]
        if problems:
            raise ConnectionsNotAllowed(
                problems, f"the workflow names {len(refused)} connection(s) it may not use: {sorted(refused)}"
            )
