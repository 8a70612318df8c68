"""Configuration of the reference backend, read from the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec


class BackendConfig(msgspec.Struct, kw_only=True):
    """Settings of one backend instance."""

    tracker_url: str = "http://127.0.0.1:8080"
    tracker_worker_token: str | None = None
    data_dir: Path = msgspec.field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "ingest-backend"
    )
    # Base URL under which callers reach this backend, used to build each file_url.
    public_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    transcript_dir: Path | None = None
    # Seconds one URL fetch of url_ingest may take.
    fetch_timeout_seconds: float = 10.0
    # Seconds between the reporter's batches of events.
    flush_interval_seconds: float = 0.5

    @classmethod
    def from_env(cls, *, port: int | None = None) -> BackendConfig:
        """Read TRACKER_URL, TRACKER_WORKER_TOKEN and the BACKEND_* variables."""
        default = cls()
        public_url = default.public_url
        if port is not None:
            public_url = f"http://127.0.0.1:{port}"
        transcript_dir = os.environ.get("BACKEND_TRANSCRIPT_DIR")
        return cls(
            tracker_url=os.environ.get("TRACKER_URL", default.tracker_url),
            tracker_worker_token=os.environ.get("TRACKER_WORKER_TOKEN") or None,
            data_dir=Path(os.environ.get("BACKEND_DATA_DIR", default.data_dir)),
            public_url=os.environ.get("BACKEND_PUBLIC_URL", public_url).rstrip("/"),
            token=os.environ.get("BACKEND_TOKEN") or None,
            transcript_dir=Path(transcript_dir) if transcript_dir else None,
        )
