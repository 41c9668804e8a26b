"""The worker's group commit: the attempt records of its concurrent runs, written in one transaction.

A record that comes while none of the worker's records is in flight goes at once, alone, as
dw.record_attempt_v6 (the same round trip as without group commit: no record waits for a window
to close). Records that come while one is in flight queue, and go together as soon as it is
answered, in one call of dw.record_attempts_v2, then one commit for all: the common record (it
succeeded, fired every edge, and so did the run's other records in the batch, such as the parallel
nodes of a fan-out) written set-based with the others like it, a statement for all of them at each
step, and every other record in a subtransaction of its own, the same run's records in the order
they came. PostgreSQL pays a transaction's start and
commit, and most statements' executor start, once per batch instead of once per record; the worker
pays one round trip.

What stays as it was:
- Each record is atomic and fenced as before: a record the procedure refuses (the run's lease lost,
  a node not in flight, a record made twice) rolls back alone and raises, in the run that sent it,
  the error it raises on its own. A transient refusal inside the batch (a deadlock, a lock not
  available, a resource short) sends that record again alone, through the single path and its
  retries.
- A batch that PostgreSQL refuses as a whole (a value it will not take as JSON, such as a NUL
  character, in one record) committed nothing: each of its records goes again alone, and only the
  one at fault fails. A record that cannot be encoded at all goes alone from the start.
- A batch whose answer is lost (the connection lost, the server stopping) fails every record in it
  as the single call would fail: each run handles it as it handles a lost answer (its lease and
  recovery decide; a lost answer may have committed). Nothing is sent again.
- No run holds the others back: a record whose run's row someone else holds gives up its place in
  the batch after the batch's lock_timeout (200 ms, dw.record_attempts_v2) and goes again alone,
  and the flusher waits at most ALONE_WAIT_SECONDS for records sent alone before the next batch.
- Records are batched per tenant (the transaction runs as one tenant: row-level security), one
  batch of a tenant in flight at a time, its records sorted by execution id.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from dataworkflows import metrics
from dataworkflows.db import transient_state, translated_state
from dataworkflows.errors import DatabaseUnavailable, InvariantViolation
from dataworkflows.tenancy import current_tenant

if TYPE_CHECKING:
    from dataworkflows.data.runs import RunData
    from dataworkflows.db import Database

Row = dict[str, Any]

# The columns of dw.record_attempt_v6's rows (dw.record_attempts_v2 adds the record's ordinal and error).
_ROW = ("node_id", "status", "attempt", "job_finished")
_encoder = msgspec.json.Encoder()
# How long a batch's flusher waits for the records it sent alone before the next batch goes (the
# batch function's own lock_timeout, dw.record_attempts_v2).
ALONE_WAIT_SECONDS = 0.2
# A queued record (its parameters, as RunData.record_one takes them) and its caller's answer.
Queued = tuple[dict[str, Any], "asyncio.Future[list[Row]]"]
# The same, with the record encoded as dw.record_attempts_v2 reads it.
Encoded = tuple[bytes, dict[str, Any], "asyncio.Future[list[Row]]"]


class GroupCommit:
    """Batches RunData.record_attempt's records of one worker (see the module's docstring).

    max_batch: at most this many records in one transaction. One batch of a tenant is in flight at
    a time: measured with bench/throughput.py, two in flight drained more slowly (smaller batches)."""

    def __init__(self, db: Database, runs: RunData, *, max_batch: int = 32) -> None:
        self._db = db
        self._runs = runs
        self.max_batch = max(1, max_batch)
        # By tenant (None: no scope entered); a flusher task inherits its first caller's tenant.
        self._queued: defaultdict[str | None, list[tuple[dict[str, Any], asyncio.Future[list[Row]]]]] = defaultdict(
            list
        )
        self._flushing: set[str | None] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, params: dict[str, Any]) -> list[Row]:
        """The record's rows, as dw.record_attempt_v6 returns them; raises what it would raise."""
        tenant = current_tenant()
        future: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
        self._queued[tenant].append((params, future))
        if tenant not in self._flushing:
            self._flushing.add(tenant)
            task = asyncio.create_task(self._flush(tenant), name=f"group-commit-{tenant}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self, tenant: str | None) -> None:
        """Sends the tenant's queued records, a batch at a time, until none is left. The task runs
        in its first caller's context, so as that caller's tenant (row-level security)."""
        # Its log lines are about the batch, not about the run whose record started the task.
        structlog.contextvars.unbind_contextvars("execution_id")
        batch: list[Queued] = []
        try:
            while queued := self._queued.get(tenant):
                batch, self._queued[tenant] = queued[: self.max_batch], queued[self.max_batch :]
                batch = [(params, future) for params, future in batch if not future.done()]
                try:
                    await self._send(batch)
                except Exception as exc:
                    # A bug here must not leave runs waiting for ever: each learns of it.
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
        except asyncio.CancelledError:
            # The worker's loop is closing: nobody answers these any more.
            for _, future in [*batch, *self._queued.pop(tenant, [])]:
                future.cancel()
            raise
        finally:
            # Records sent alone may still be in flight, in tasks of their own: they answer them.
            self._flushing.discard(tenant)
            if not self._queued.get(tenant):
                self._queued.pop(tenant, None)

    async def _send(self, batch: list[Queued]) -> None:
        if not batch:
            return
        metrics.GROUP_COMMIT_RECORDS.observe(len(batch))
        together: list[Encoded] = []
        alone: list[Queued] = []
        for params, future in batch:
            try:
                together.append((encode_record(params), params, future))
            except Exception:
                alone.append((params, future))  # not JSON: alone, it fails as it fails on its own
        if len(together) == 1:
            _, params, future = together.pop()
            alone.append((params, future))
        if together:
            together.sort(key=lambda item: item[1]["id"])
            alone.extend(await self._together(together))
        sends = [self._spawn(_settle(future, self._runs.record_one(params))) for params, future in alone]
        if sends:
            # The next batch goes once these are answered, as after a batch; but a record that
            # waits long (a lock someone holds, the single path's retries) goes on in its own task
            # after ALONE_WAIT_SECONDS, and the tenant's other records go meanwhile.
            await asyncio.wait(sends, timeout=ALONE_WAIT_SECONDS)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _together(self, together: list[Encoded]) -> list[Queued]:
        """Sends the records in one call and settles them; returns those to send again alone."""
        document = (b"[" + b",".join(encoded for encoded, _, _ in together) + b"]").decode()
        try:
            rows = await self._db.fetch_all("record_attempts", records=document)
        except DatabaseUnavailable as exc:
            # The answer was lost (it may have committed) or no connection came: each run gets the
            # error its own call would have raised, and its lease and recovery decide.
            for _, _, future in together:
                if not future.done():
                    future.set_exception(exc)
            return []
        except asyncio.CancelledError:
            for _, _, future in together:
                future.cancel()
            raise
        except Exception:
            # Refused as a whole (a value in one record that PostgreSQL will not take as JSON, such
            # as a NUL character), so nothing of it committed: each record goes alone, and only the
            # one at fault fails, as it would have on its own.
            return [(params, future) for _, params, future in together]
        return _answer(together, rows)


def _answer(together: list[Encoded], rows: list[Row]) -> list[Queued]:
    """Settles each record of a batch with its rows or its error; returns those to send again alone
    (a transient refusal: with the single path's retries)."""
    by_record: defaultdict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_record[row["ordinal"]].append(row)
    again: list[Queued] = []
    for ordinal, (_, params, future) in enumerate(together, start=1):
        if future.done():
            continue
        answer = by_record.get(ordinal, [])
        failure = next((row for row in answer if row["error_state"] is not None), None)
        if not answer:
            # dw.record_attempts_v2 answers every record with a row at least: a bug, said as one.
            future.set_exception(InvariantViolation(f"the batch gave no answer for its record {ordinal}"))
        elif failure is None:
            future.set_result([{k: row[k] for k in _ROW} for row in answer if row["status"] != "recorded"])
        elif transient_state(failure["error_state"]):
            again.append((params, future))
        else:
            future.set_exception(
                translated_state(
                    failure["error_state"],
                    failure["error_message"],
                    detail=failure["error_detail"],
                    constraint=failure["error_constraint"],
                )
            )
    return again


async def _settle(future: asyncio.Future[list[Row]], work: Coroutine[Any, Any, list[Row]]) -> None:
    """Sends a record alone (RunData.record_one) and answers its caller, unless the caller gave up."""
    if future.done():
        work.close()
        return
    try:
        rows = await work
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(rows)


def encode_record(params: dict[str, Any]) -> bytes:
    """The record as dw.record_attempts_v2 reads it: keys without None values (NULL there)."""
    record = {k: v for k, v in params.items() if v is not None}
    record["execution_id"] = record.pop("id")
    return _encoder.encode(record)
