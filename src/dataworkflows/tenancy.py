"""Which tenant the current task works for.

Before every statement, the data layer gives its pooled connection PostgreSQL's `dw.tenant_id` =
this task's tenant (dataworkflows.db._enter: a session setting, set again whenever it differs), and
row-level security (migration 0018) lets the statement see and write that tenant's rows and nothing
else. A task that never entered a scope gets '' (none), so its queries see no rows at all, whoever
used the connection before: forgetting the tenant fails closed.

The API enters the caller's tenant for each request; a worker enters the tenant of the run it
executes; the workers' maintenance loops (recovery, wake-ups, the scheduler, pruning) enter
ALL_TENANTS, which PostgreSQL honours only for members of the `dataworkflows_all_tenants` role.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

DEFAULT_TENANT = "default"
# Every tenant at once, for the maintenance loops (and psql users granted dataworkflows_all_tenants).
ALL_TENANTS = "*"
# The role work across tenants takes (migration 0018): the application role is a member.
MAINTENANCE_ROLE = "dataworkflows_maintenance"
# As the tables' CHECK constraints spell it (migration 0018).
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

_tenant: ContextVar[str | None] = ContextVar("dataworkflows_tenant", default=None)


def current_tenant() -> str | None:
    """The tenant this task works for, ALL_TENANTS, or None when it entered no scope."""
    return _tenant.get()


def is_valid_tenant(tenant: str) -> bool:
    return TENANT_PATTERN.fullmatch(tenant) is not None


@contextlib.contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Runs the block's database work as `tenant` (or ALL_TENANTS)."""
    if tenant != ALL_TENANTS and not is_valid_tenant(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


@contextlib.contextmanager
def no_tenant() -> Iterator[None]:
    """Runs the block with no tenant: under row-level security its queries see nothing."""
    token = _tenant.set(None)
    try:
        yield
    finally:
        _tenant.reset(token)


def all_tenants() -> contextlib.AbstractContextManager[None]:
    """For maintenance work that spans tenants; rows it writes must name their tenant."""
    return tenant_scope(ALL_TENANTS)


def enter_tenant(tenant: str | None) -> None:
    """Sets the tenant for the rest of this task (a request's caller's, once it is known; None: no
    tenant, so the database shows nothing). Never ALL_TENANTS: that is all_tenants()'s, for the
    workers' maintenance only, so no claim or header can ever select it."""
    if tenant is not None and not is_valid_tenant(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    _tenant.set(tenant)
