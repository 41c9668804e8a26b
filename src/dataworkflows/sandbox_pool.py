"""A pool of long-lived sandboxed helper processes that answer one JSON request per line.

Untrusted code (JavaScript conditions, Jinja2 templates) never runs in the process that holds
leases and serves requests: a helper is started with an empty environment, an empty working
directory and resource limits, and the parent enforces the wall-clock limit by killing it. While a
helper works, the parent's event loop only waits on a pipe, so lease renewals, other runs and
health checks go on.

Protocol: the parent writes one JSON object per line with an integer "id"; the helper answers one
JSON object per line with the same "id". What else the objects hold is the client's business.

Suspects: code that ran past its time limit (a condition that loops) would run past it again, and
each time it holds one of the few helpers every run's conditions (or transforms: the worker gives
them a pool of their own) share for its whole time limit (up to a minute for a transform). So a
caller names the code it sends (`key`: the expression), and code that timed out is a suspect for
SUSPECT_SECONDS after its last timeout: its requests go to a lane of their own, one helper at a time
besides the pool's `size`, and queue there behind each other instead of in front of everyone else's.
The first timeout of a code still holds a shared helper for its time limit; what follows does not,
requests of it that were already waiting for a shared helper included (suspicion is looked at again
when one is handed out).
- Suspicion is per tenant (the task's tenant is part of the key): one tenant's data that made an
  expression time out does not send another tenant's runs of the same expression to the lane.
- At most MAX_SUSPECT_WAITERS requests of one tenant wait for the lane; one more is refused at once
  (SandboxBusy): a flood of code that keeps timing out fails fast, as a circuit breaker would,
  instead of queueing for minutes, and one tenant's flood does not refuse another tenant's request.
  A refusal ran nothing, so it does not renew the suspicion.

Fair shares: while every helper is busy, requests wait per tenant and, within it, per run (the
task's, run_scope), and a helper that frees goes to the waiting tenant that holds the fewest
helpers (among equals, the one served least recently, then the one waiting longest), and within
that tenant to its waiting run chosen the same way; not to the oldest request. A tenant (or a run)
whose slow code keeps every helper busy, with many more requests queued, therefore costs another
tenant's (or run's) next request at most one of its own requests' time (until this, its whole
backlog, first in line). Nothing is reserved: a lone tenant, or a lone run, still uses every helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import structlog

from dataworkflows.tenancy import current_tenant

log = structlog.get_logger("dataworkflows.sandbox")

# How long code that ran past its time limit stays a suspect (see the module's docstring), and how
# many suspects a pool remembers (the oldest timeout is forgotten first).
SUSPECT_SECONDS = 600.0
MAX_SUSPECTS = 1024
# How many requests may wait for the suspects' lane (see the module's docstring).
MAX_SUSPECT_WAITERS = 8


class SandboxTimeout(Exception):
    """The helper ran past its time limit and was killed."""


class SandboxBusy(Exception):
    """Code that timed out recently, refused without running: too many of its tenant's suspects wait
    already (see the module's docstring)."""


class SandboxGone(Exception):
    """The helper exited before answering (memory limit, crash, or it retired itself)."""


class SandboxUnavailable(SandboxGone):
    """No helper could be had for the request, which was never sent: none could be started (EAGAIN,
    EMFILE, ENOMEM), a fresh one did not answer its warm-up, or the pool is closed. The worker's
    trouble, whatever the code to run: a caller tells it from a helper that died running the code."""


class _Id(msgspec.Struct):
    id: int
    error: str | None = None


def _limit_resources(memory_bytes: int) -> None:
    # Runs in the child between fork and exec.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


class _Helper:
    def __init__(self, process: asyncio.subprocess.Process, workdir: str) -> None:
        self.process = process
        self.workdir = workdir
        self.uses = 0

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


# Who a request's helper time counts for: (tenant, run), the run None outside one (the API's
# previews and webhook payloads).
Owner = tuple[str | None, str | None]

_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("dataworkflows_sandbox_run", default=None)


@contextlib.contextmanager
def run_scope(run: str) -> Iterator[None]:
    """Sandboxed work started in the block (and in the tasks it creates) is the run's: its share of
    the helpers among its tenant's runs (see the module's docstring, "Fair shares")."""
    token = _run.set(run)
    try:
        yield
    finally:
        _run.reset(token)


def current_owner() -> Owner:
    return current_tenant(), _run.get()


class _FairSlots:
    """`size` slots handed out per owner, tenant first (see the module's docstring, "Fair shares")."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0
        self.held: Counter[Owner] = Counter()
        self.tenant_held: Counter[str | None] = Counter()
        # Per owner, its waiters in arrival order: (arrival number, future set once granted).
        self.waiting: dict[Owner, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._arrivals = itertools.count()
        # Per owner and per tenant holding or waiting: the number of its latest grant (who was
        # served least recently).
        self.last_grant: dict[Owner, int] = {}
        self.tenant_last_grant: dict[str | None, int] = {}
        self._grants = itertools.count()

    async def acquire(self, owner: Owner) -> None:
        if self.taken < self.size and not self.waiting:
            self._grant(owner)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._arrivals), future)
        self.waiting.setdefault(owner, deque()).append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(owner)  # granted as the caller went away: the slot goes on
            else:
                queue = self.waiting.get(owner)
                if queue is not None and entry in queue:
                    queue.remove(entry)
                    if not queue:
                        del self.waiting[owner]
                self._forget_idle(owner)
            raise

    def release(self, owner: Owner) -> None:
        self.taken -= 1
        self.held[owner] -= 1
        if self.held[owner] <= 0:
            del self.held[owner]
        self.tenant_held[owner[0]] -= 1
        if self.tenant_held[owner[0]] <= 0:
            del self.tenant_held[owner[0]]
        self._forget_idle(owner)
        self._hand_on()

    def _forget_idle(self, owner: Owner) -> None:
        """An owner (and a tenant) neither holding nor waiting needs no place in the rotation."""
        if owner not in self.held and owner not in self.waiting:
            self.last_grant.pop(owner, None)
        tenant = owner[0]
        if tenant not in self.tenant_held and not any(o[0] == tenant for o in self.waiting):
            self.tenant_last_grant.pop(tenant, None)

    def _grant(self, owner: Owner) -> None:
        self.taken += 1
        self.held[owner] += 1
        self.tenant_held[owner[0]] += 1
        self.last_grant[owner] = self.tenant_last_grant[owner[0]] = next(self._grants)

    def _next_owner(self) -> Owner:
        """The waiting tenant holding the fewest slots, served least recently, waiting longest; then,
        among its waiting owners (runs), the same."""
        first_arrival: dict[str | None, int] = {}
        for owner, queue in self.waiting.items():
            first_arrival[owner[0]] = min(first_arrival.get(owner[0], queue[0][0]), queue[0][0])
        tenant = min(
            first_arrival,
            key=lambda t: (self.tenant_held[t], self.tenant_last_grant.get(t, -1), first_arrival[t]),
        )
        return min(
            (owner for owner in self.waiting if owner[0] == tenant),
            key=lambda o: (self.held[o], self.last_grant.get(o, -1), self.waiting[o][0][0]),
        )

    def _hand_on(self) -> None:
        while self.taken < self.size and self.waiting:
            owner = self._next_owner()
            queue = self.waiting[owner]
            _, future = queue.popleft()
            if not queue:
                del self.waiting[owner]
            if future.done():
                continue  # its caller was cancelled while it waited
            self._grant(owner)
            future.set_result(None)


class SandboxPool:
    """Helpers running `python -I -m <module>`, at most `size` at once. Safe to share between tasks."""

    def __init__(
        self,
        module: str,
        *,
        size: int = 2,
        timeout_seconds: float = 1.0,
        memory_bytes: int = 512 * 1024 * 1024,
        recycle_after: int = 10_000,
        max_line_bytes: int = 4 * 1024 * 1024,
        warm_up: dict[str, Any] | None = None,
        startup_seconds: float = 10.0,
    ) -> None:
        self.module = module
        # A request every fresh helper answers before it takes a real one, within startup_seconds
        # (see _warm_up).
        self.warm_up = warm_up
        self.startup_seconds = startup_seconds
        self.size = size
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self.recycle_after = recycle_after
        self.max_line_bytes = max_line_bytes
        # Capacity is counted in slots, not helpers: a helper that is killed frees its slot at once,
        # so a waiter never hangs on an idle queue that nobody refills. Handed out per tenant (see
        # the module's docstring, "Fair shares").
        self._slots = _FairSlots(size)
        # The suspects' lane: one helper, besides `size` (see the module's docstring).
        self._suspect_slots = asyncio.Semaphore(1)
        # Digest of a suspect's key -> monotonic time its suspicion ends, oldest timeout first.
        self._suspects: OrderedDict[bytes, float] = OrderedDict()
        self._idle: list[_Helper] = []
        self._ids = itertools.count(1)
        self._encoder = msgspec.json.Encoder()
        self._id_decoder = msgspec.json.Decoder(_Id)
        self._closed = False
        self.helpers_killed = 0
        # Requests sent to the suspects' lane, and those waiting for it now.
        self.suspect_calls = 0
        self._suspect_waiters: defaultdict[str | None, int] = defaultdict(int)

    async def _spawn(self) -> _Helper:
        workdir = tempfile.mkdtemp(prefix="dw-sandbox-")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",  # isolated: ignore PYTHON* variables and the user site directory
                "-m",
                self.module,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=workdir,
                env={},
                preexec_fn=lambda: _limit_resources(self.memory_bytes),
                limit=self.max_line_bytes,
            )
        except BaseException:
            # No helper to close it (the spawn failed: EAGAIN, EMFILE, ENOMEM; or the caller was
            # cancelled meanwhile, and asyncio killed the process it had started): the directory
            # goes now, or every such spawn left one behind in $TMPDIR for good.
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        helper = _Helper(process, workdir)
        if self.warm_up is not None:
            try:
                await self._warm_up(helper, self.warm_up)
            except asyncio.CancelledError:
                # The caller went away while the helper started (its node was cancelled): the
                # process and its directory must not outlive it. _warm_up closes it on its errors.
                await asyncio.shield(helper.close())
                raise
        return helper

    async def _warm_up(self, helper: _Helper, request: dict[str, Any]) -> None:
        """Waits for a fresh helper to answer a first request of the client's choosing. Starting an
        interpreter and importing dukpy or Jinja takes a few hundred milliseconds on an idle machine
        and can take more than a second on a busy one: that must not count against the first real
        request's time limit (a condition that answers in a millisecond timed out behind the start
        of the helper replacing one that a looping condition had got killed)."""
        assert helper.process.stdin is not None and helper.process.stdout is not None
        try:
            helper.process.stdin.write(self._encoder.encode({**request, "id": 0}) + b"\n")
            # asyncio.timeout, not wait_for (see _call_once).
            async with asyncio.timeout(self.startup_seconds):
                await helper.process.stdin.drain()
            async with asyncio.timeout(self.startup_seconds):
                line = await helper.process.stdout.readline()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ValueError) as exc:
            await helper.close()
            raise SandboxUnavailable(f"the helper did not start: {type(exc).__name__}") from exc
        if not line:
            await helper.close()
            raise SandboxUnavailable("the helper exited as it started")

    def _digest(self, key: str) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update((current_tenant() or "").encode() + b"\0")
        digest.update(key.encode("utf-8", "surrogatepass"))
        return digest.digest()

    def _is_suspect(self, digest: bytes) -> bool:
        until = self._suspects.get(digest)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._suspects[digest]
        return False

    def _suspect(self, digest: bytes) -> None:
        self._suspects.pop(digest, None)
        self._suspects[digest] = time.monotonic() + SUSPECT_SECONDS
        while len(self._suspects) > MAX_SUSPECTS:
            self._suspects.popitem(last=False)

    async def _acquire(self, digest: bytes | None) -> tuple[_Helper, Callable[[], None]]:
        """A helper for code named by `digest`, and how to give its slot back: the suspects' lane's
        when the code is a suspect, else one on a shared slot, taken for the current owner. Suspicion
        is looked at again when the shared slot is handed out: code whose earlier run timed out while
        this request waited goes to the lane (looked at only before the wait, six runs of a loop
        started at once held both shared helpers three times over, not once)."""
        if self._closed:
            raise SandboxUnavailable("the sandbox pool is closed")
        if digest is None or not self._is_suspect(digest):
            owner = current_owner()
            await self._slots.acquire(owner)

            def release() -> None:
                self._slots.release(owner)

            if digest is None or not self._is_suspect(digest):
                return await self._take_helper(release), release
            release()  # a suspect now: the slot goes on to the next waiter
        self.suspect_calls += 1
        return await self._acquire_suspect(), self._suspect_slots.release

    async def _acquire_suspect(self) -> _Helper:
        """The suspects' lane's helper, refused at once (SandboxBusy) when MAX_SUSPECT_WAITERS wait."""
        if self._closed:
            raise SandboxUnavailable("the sandbox pool is closed")
        tenant = current_tenant()
        waiting = self._suspect_waiters[tenant]
        if waiting >= MAX_SUSPECT_WAITERS:
            raise SandboxBusy(f"it ran past its time limit recently, and {waiting} such requests wait already")
        self._suspect_waiters[tenant] = waiting + 1
        try:
            await self._suspect_slots.acquire()
        finally:
            self._suspect_waiters[tenant] -= 1
            if not self._suspect_waiters[tenant]:
                del self._suspect_waiters[tenant]
        return await self._take_helper(self._suspect_slots.release)

    async def _take_helper(self, release: Callable[[], None]) -> _Helper:
        """An idle helper or a new one, for a slot already taken (given back with `release` on failure)."""
        try:
            if self._idle:
                return self._idle.pop()
            return await self._spawn()
        except OSError as exc:
            # No process, file or memory to spare right now (EAGAIN, EMFILE, ENOMEM).
            release()
            raise SandboxUnavailable(f"could not start a helper: {exc}") from exc
        except BaseException:
            release()
            raise

    async def _release(self, helper: _Helper, healthy: bool, release: Callable[[], None]) -> None:
        try:
            if healthy and helper.uses < self.recycle_after and not self._closed:
                self._idle.append(helper)
            else:
                await helper.close()
        finally:
            release()

    async def call(
        self, request: dict[str, Any], *, timeout_seconds: float | None = None, key: str | None = None
    ) -> bytes:
        """Sends one request (an "id" is added) and returns the helper's answer line. A helper that
        exits before answering is replaced and the request tried once more on a fresh one. `key`
        names the code the request runs (see the module's docstring on suspects)."""
        digest = None if key is None else self._digest(key)
        try:
            try:
                return await self._call_once(request, timeout_seconds, digest)
            except SandboxGone:
                # It may have retired itself after the previous request (a damaged interpreter):
                # this request deserves a fresh helper.
                return await self._call_once(request, timeout_seconds, digest)
        except SandboxTimeout:
            if digest is not None:
                self._suspect(digest)
            raise

    async def _call_once(self, request: dict[str, Any], timeout_seconds: float | None, digest: bytes | None) -> bytes:
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        helper, release = await self._acquire(digest)
        healthy = False
        try:
            request_id = next(self._ids)
            assert helper.process.stdin is not None and helper.process.stdout is not None
            helper.process.stdin.write(self._encoder.encode({**request, "id": request_id}) + b"\n")
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the answer of a wait
                # that ended as its task was cancelled and drops the cancel, and the node task that
                # asked went on (recorded its attempt under a run being cancelled or stopped: a review).
                async with asyncio.timeout(timeout):
                    await helper.process.stdin.drain()
                async with asyncio.timeout(timeout):
                    line = await helper.process.stdout.readline()
            except TimeoutError:
                self.helpers_killed += 1
                log.warning("sandboxed work timed out; replacing its helper", module=self.module, timeout=timeout)
                raise SandboxTimeout(f"stopped after {timeout:g}s") from None
            except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
                # ValueError: an answer longer than the pipe reader's limit.
                raise SandboxGone(f"the helper failed: {type(exc).__name__}") from exc
            if not line:
                raise SandboxGone("the helper exited (memory limit or crash)")
            try:
                head = self._id_decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise SandboxGone("the helper answered something that is not JSON") from exc
            answered = head.id
            if answered == -1:
                # The helper could not even read the request (too large for its memory limit).
                raise SandboxGone(f"the helper could not read the request: {head.error}")
            if answered != request_id:
                raise SandboxGone("the helper answered out of order")
            helper.uses += 1
            healthy = True
            return line
        finally:
            await self._release(helper, healthy, release)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            await self._idle.pop().close()
