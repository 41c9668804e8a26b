"""Confinement of a sandbox helper process (conditions, templates). Imports nothing heavy: it runs
at every helper's start."""

from __future__ import annotations

import os


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
