"""Confinement of a sandbox helper process (conditions, templates), and the loop that serves its
requests. Imports nothing heavy: it runs at every helper's start."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

R = TypeVar("R")


def drop_privileges() -> None:
    """As root, confine a helper to its empty working directory and become nobody, so that even an
    engine bug cannot read the parent's files or /proc/<parent>/environ. Call after every import."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    os.chroot(".")
    os.chdir("/")
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def serve(request_type: type[R], answer: Callable[[R], dict[str, Any]], *, intact: Callable[[], bool]) -> None:
    """Answers one JSON request per stdin line with one JSON line on stdout (the protocol of
    dataworkflows.sandbox_pool). After each answer, `intact()` says whether this helper may serve
    another request; when not, it exits and the parent starts a fresh one."""
    decoder = msgspec.json.Decoder(request_type)
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            reply = answer(decoder.decode(line))
        except msgspec.DecodeError as exc:
            reply = {"id": -1, "ok": False, "code": "bad_request", "error": f"bad request: {exc}"}
        except MemoryError:
            # The request's data alone exceeds the helper's address-space limit.
            reply = {"id": -1, "ok": False, "code": "request_too_large", "error": "the data is too large for a helper"}
        try:
            encoded = encoder.encode(reply)
        except (TypeError, ValueError, OverflowError) as exc:
            encoded = encoder.encode({"id": reply["id"], "ok": False, "code": "not_json", "error": f"not JSON: {exc}"})
        out.write(encoded + b"\n")
        out.flush()
        if not intact():
            sys.exit(3)
