"""DataWorkflows: a durable workflow engine where PostgreSQL is the coordinator."""

from __future__ import annotations

__version__ = "0.2.0.dev0"
