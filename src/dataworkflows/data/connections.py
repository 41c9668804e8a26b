"""Stored connections: their secrets are ciphertext here (dataworkflows.credentials encrypts and
decrypts; the key never reaches the database)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from dataworkflows.errors import ConnectionKindMismatch, ConnectionKindsMismatch, ConnectionsNotAllowed
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


class StoredUse(msgspec.Struct, frozen=True):
    """What publishing checks of a stored connection a definition names: its kind, and whether the
    workflow may use it."""

    name: str
    kind: str
    allowed: bool


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

    async def list_all(self, *, limit: int, after: str | None = None) -> list[Connection]:
        """By name; `after`: the name of the last connection of the page before."""
        return await self._db.fetch_all_as(Connection, "list_connections", limit=limit, after=after)

    async def delete(self, name: str) -> bool:
        """Whether there was such a connection."""
        return await self._db.fetch_one("delete_connection", name=name) is not None

    async def fetch_connection(self, name: str) -> StoredSecret | None:
        return await self._db.fetch_one_as(StoredSecret, "fetch_connection", name=name)

    async def as_used(self, workflow_id: str, names: Collection[str]) -> dict[str, StoredUse]:
        """These stored connections' kinds and whether the workflow may use each, by name (names
        not stored are left out: they may come from the environment, or be stored later)."""
        if not names:
            return {}
        rows = await self._db.fetch_all_as(
            StoredUse, "connections_as_used", names=sorted(set(names)), workflow_id=workflow_id
        )
        return {row.name: row for row in rows}

    async def check_uses(self, workflow_id: str, uses: Sequence[ConnectionUse]) -> None:
        """At publish: refuses a definition that names stored connections whose allow-lists do not
        name its workflow (ConnectionsNotAllowed) or whose kind is not the connector of the action
        that names them (ConnectionKindsMismatch); one problem per use, and every problem is listed
        (the class is ConnectionsNotAllowed when any use is not allowed)."""
        stored = await self.as_used(workflow_id, {use.name for use in uses})
        problems: list[Problem] = []
        refused: set[str] = set()
        for use in uses:
            found = stored.get(use.name)
            if found is None:
                continue
            if not found.allowed:
                refused.add(use.name)
                problems.append(Problem(use.pointer, "connection_not_allowed", _not_allowed(use.name, workflow_id)))
            if found.kind != use.connector:
                mismatch = ConnectionKindMismatch(use.name, found.kind, use.action_type, use.connector)
                problems.append(Problem(use.pointer, mismatch.code, mismatch.message))
        if refused:
            raise ConnectionsNotAllowed(
                problems, f"the workflow names {len(refused)} connection(s) it may not use: {sorted(refused)}"
            )
        if problems:
            raise ConnectionKindsMismatch(
                problems, f"{len(problems)} node(s) name a stored connection of another kind than their action's"
            )


def _not_allowed(name: str, workflow_id: str) -> str:
    return (
        f"connection {name!r} may not be used by workflow {workflow_id!r} "
        f"(its allowedWorkflows do not name it: PATCH /api/v1/connections/{name})"
    )
