"""The command line as a newcomer runs it: embedded PostgreSQL, HTTP, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CLI = [sys.executable, "-m", "service"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def clean_environment(**extra: str) -> dict[str, str]:
    """Copy the environment without any tracker or database settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRACKER_") and key != "DATABASE_URL"
    }
    env.update(extra)
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """Run `serve` on an embedded PostgreSQL in a temporary data directory."""
    port = free_port()
    env = clean_environment(TRACKER_DATA_DIR=str(tmp_path), TRACKER_PORT=str(port))
    process = subprocess.Popen(
        [*CLI, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url, process, tmp_path
    if process.poll() is None:
        # SIGTERM, so the service stops its embedded PostgreSQL as well.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_runs_readme_session(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, _, _ = served
    job = httpx.post(
        f"{url}/ingestion-jobs",
        json={"collection_id": 1, "plugin_name": "markitdown_ingest"},
    ).json()
    httpx.post(
        f"{url}/ingestion-jobs/{job['id']}/events",
        json={"type": "progress", "current": 5, "total": 10, "message": "Chunking"},
    )
    read = httpx.get(f"{url}/collections/1/ingestion-jobs/{job['id']}").json()
    assert read["progress"]["percentage"] == 50.0


def test_serve_stops_database_on_sigterm(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    _, process, data_dir = served
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()
    assert b"embedded_postgres_stopped" in output
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def test_sigterm_ends_open_streams_quietly(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, process, _ = served
    with httpx.stream("GET", f"{url}/collections/1/ingestion-stream") as stream:
        lines = stream.iter_lines()
        next(lines)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rest = list(lines)
        ended_after = time.monotonic() - started
    output, _ = process.communicate(timeout=30)
    assert ended_after < 2.5, rest
    assert b"timeout graceful shutdown exceeded" not in output
    assert process.returncode == 0, output.decode()


def test_serve_logs_auth_disabled_on_loopback(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    _, process, _ = served
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert b"auth" in output
    assert b"disabled" in output


def test_serve_refuses_public_address_without_tokens(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--host", "0.0.0.0"],
        env=clean_environment(TRACKER_DATA_DIR=str(tmp_path)),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"TRACKER_API_TOKENS" in result.stderr
    assert b"TRACKER_WORKER_TOKENS" in result.stderr
    assert not (tmp_path / "pgdata").exists()


def test_migrate_command_applies_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "migrate"],
        env=clean_environment(TRACKER_DATA_DIR=str(tmp_path)),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"migration_finished" in result.stdout
