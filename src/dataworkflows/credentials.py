"""Credentials: workflows name a connection, never a secret.

Providers resolve a connection name to its Secret: the environment (DW_CONNECTION_<NAME>, the seeds'
EnvVarCredentialProvider) or the database (dw.connections, AES-256-GCM encrypted with a key from
DW_CREDENTIALS_KEY that never reaches the database). A Secret never shows its value in repr/str, so
it cannot leak into logs, attempt rows or API responses by accident.

A stored connection says which workflows may use it (allowed_workflows: names, or "*" for every
workflow); asked for it on behalf of another workflow, the provider refuses with
ConnectionNotAllowed (a permanent node failure, connection_not_allowed). Environment connections
are the operator's, configured per worker deployment: every workflow may use them.

A stored connection has a kind (dataworkflows.connection_kinds), which comes with its secret
(Secret.kind): an action of another connector that asks for it fails the node
(ConnectionKindMismatch, connection_kind_mismatch; dataworkflows.node_kinds.WorkflowCredentials).
Environment connections have no kind.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataworkflows.data.connections import StoredSecret
from dataworkflows.errors import ConfigurationError, ConnectionNotAllowed, DataWorkflowsError
from dataworkflows.tenancy import ALL_TENANTS, DEFAULT_TENANT, current_tenant
from dataworkflows.validation import is_valid_id

ENV_PREFIX = "DW_CONNECTION_"


class CredentialNotFound(DataWorkflowsError):
    """The connection is not configured."""

    code = "connection_not_found"


ALL_WORKFLOWS = "*"


def workflow_allowed(allowed: Sequence[str], workflow_id: str | None) -> bool:
    """Whether an allow-list admits the workflow ("*" admits every one; none admits none)."""
    return ALL_WORKFLOWS in allowed or (workflow_id is not None and workflow_id in allowed)


def not_allowed(name: str, workflow_id: str | None) -> ConnectionNotAllowed:
    who = f"workflow {workflow_id!r}" if workflow_id else "a caller outside any workflow"
    return ConnectionNotAllowed(
        f"connection {name!r} may not be used by {who} (an admin adds it to the connection's "
        f"allowedWorkflows: PATCH /api/v1/connections/{name})",
        connection=name,
        workflow_id=workflow_id,
    )


class Secret:
    """A secret value that does not print itself, with its stored connection's kind (None: an
    environment connection, which has none)."""

    __slots__ = ("_value", "kind")

    def __init__(self, value: str, kind: str | None = None) -> None:
        self._value = value
        self.kind = kind

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class CredentialProvider(Protocol):
    async def get(self, name: str, *, workflow_id: str | None = None) -> Secret:
        """The connection's secret, for use by `workflow_id` (ConnectionNotAllowed if it may not)."""
        ...


def env_name(connection: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", connection).upper()


class EnvCredentialProvider:
    """DW_CONNECTION_<NAME> (non-alphanumerics become _): connection "slack-main" is DW_CONNECTION_SLACK_MAIN."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    async def get(self, name: str, *, workflow_id: str | None = None) -> Secret:
        # Every workflow may use an environment connection (the operator set it for this worker).
        # Pasted from a file, a secret often ends with a newline: never part of a token.
        value = (self._environ.get(env_name(name)) or "").strip()
        if not value:
            raise CredentialNotFound(f"connection {name!r} is not configured", connection=name)
        return Secret(value)


class Cipher:
    """AES-256-GCM with a random 96-bit nonce per secret; the key id names the key, not the secret."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("DW_CREDENTIALS_KEY must be 32 bytes, base64-encoded")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:12]

    @classmethod
    def from_setting(cls, value: str) -> Cipher:
        try:
            key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError as exc:
            raise ConfigurationError("DW_CREDENTIALS_KEY is not valid base64") from exc
        return cls(key)

    @staticmethod
    def generate_key() -> str:
        return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def encrypt(self, plaintext: str, associated: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), associated.encode())

    def decrypt(self, blob: bytes, associated: str) -> str:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], associated.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise DataWorkflowsError("a stored credential cannot be decrypted with DW_CREDENTIALS_KEY") from exc


class ConnectionStore(Protocol):
    """Where stored connections come from (db.connections)."""

    async def fetch_connection(self, name: str) -> StoredSecret | None: ...


def connection_binding(name: str) -> str:
    """What a stored connection's ciphertext is bound to (AES-GCM associated data): its name, and
    its tenant (the task's) unless that is the default tenant, whose connections predate tenants.
    A ciphertext copied to another connection or another tenant does not decrypt."""
    tenant = current_tenant()
    if tenant is None or tenant == ALL_TENANTS:
        raise CredentialNotFound(f"connection {name!r}: no tenant to read it in", connection=name)
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


class DatabaseCredentialProvider:
    """Secrets stored in dw.connections, encrypted at rest (name and tenant bound in as associated
    data: connection_binding)."""

    def __init__(self, store: ConnectionStore, cipher: Cipher) -> None:
        self._store = store
        self._cipher = cipher

    async def get(self, name: str, *, workflow_id: str | None = None) -> Secret:
        stored = await self._store.fetch_connection(name)
        if stored is None:
            raise CredentialNotFound(f"connection {name!r} is not configured", connection=name)
        if not workflow_allowed(stored.allowed_workflows, workflow_id):
            # Not a CredentialNotFound: the chain must not fall back to a same-named environment
            # connection when the stored one refuses.
            raise not_allowed(name, workflow_id)
        # The kind comes with the row the secret is read from: checking it costs no query.
        return Secret(self._cipher.decrypt(stored.secret, connection_binding(name)), stored.kind)


class ChainedCredentialProvider:
    """The first provider that knows the connection wins (database first, then environment)."""

    def __init__(self, providers: Sequence[CredentialProvider]) -> None:
        self._providers = list(providers)

    async def get(self, name: str, *, workflow_id: str | None = None) -> Secret:
        if not is_valid_id(name):
            raise CredentialNotFound(f"{name!r} is not a valid connection name", connection=name)
        for provider in self._providers:
            try:
                return await provider.get(name, workflow_id=workflow_id)
            except CredentialNotFound:
                continue
        raise CredentialNotFound(
            f"connection {name!r} is not configured (store it with PUT /api/v1/connections/{name} "
            f"or set {env_name(name)})",
            connection=name,
        )
