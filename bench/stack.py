"""The processes under test: PostgreSQL, and trackers served by uvicorn or granian."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Literal

import httpx

from service.store.embedded import EmbeddedPostgres

ServerName = Literal["uvicorn", "granian"]
SERVERS: tuple[ServerName, ...] = ("uvicorn", "granian")

REPOSITORY = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
# Lines of a failed process's output to show, enough for the end of a traceback,
# which names the cause.
OUTPUT_LINES = 15
# Settings the tracker would otherwise read from the caller's shell. Tokens are
# dropped because the load generator sends none, and a backend URL would start the
# retry dispatcher, which has nothing to do here.
UNSET_VARIABLES = (
    "TRACKER_API_TOKENS",
    "TRACKER_WORKER_TOKENS",
    "TRACKER_BACKEND_URL",
    "TRACKER_BACKEND_TOKEN",
    "TRACKER_HOST",
    "TRACKER_PORT",
)


class StackError(RuntimeError):
    """A process under test failed to start or exited early."""


class Database:
    """The PostgreSQL the tracker and the raw UPDATE loop share."""

    def __init__(self, url: str, data_dir: Path | None) -> None:
        self.url = url
        self.data_dir = data_dir

    def postmaster_pid(self) -> int | None:
        """Return the embedded server's process id, or None for an external server."""
        if self.data_dir is None:
            return None
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[0])


@contextmanager
def database(work_dir: Path) -> Iterator[Database]:
    """Yield DATABASE_URL's server if set, else an embedded one under ``work_dir``."""
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        yield Database(external, None)
        return

    data_dir = work_dir / "pgdata"
    embedded = EmbeddedPostgres(data_dir, delete_on_stop=True)
    url = embedded.start()
    try:
        yield Database(url, data_dir)
    finally:
        embedded.stop()


def tracker_environment(database_url: str, data_dir: Path) -> dict[str, str]:
    """Return the environment of a tracker that logs only warnings and errors."""
    env = {
        key: value for key, value in os.environ.items() if key not in UNSET_VARIABLES
    }
    env.update(
        DATABASE_URL=database_url,
        TRACKER_DATA_DIR=str(data_dir),
        TRACKER_LOG_LEVEL="warning",
        TRACKER_LOG_FORMAT="json",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """Apply the migrations with ``ingestion-tracker migrate``, raising if it fails."""
    command = [sys.executable, "-m", "service", "migrate"]
    # The command is built from this interpreter's path and fixed words only.
    result = subprocess.run(  # noqa: S603
        command, env=env, cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()
        last_lines = "\n".join(output[-OUTPUT_LINES:])
        raise StackError(
            f"ingestion-tracker migrate failed with exit status {result.returncode}; "
            f"last output:\n{last_lines}"
        )


def free_port() -> int:
    """Return a TCP port on the loopback address that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def server_command(server: ServerName, port: int) -> list[str]:
    """Return the command line that serves the tracker with one worker process."""
    if server == "uvicorn":
        return [sys.executable, "-m", "service", "serve", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "service.app:app_from_environment",
    ]


class TrackerServer:
    """A tracker process in a session of its own, so that stopping it stops its tree."""

    def __init__(self, server: ServerName, env: dict[str, str], log_path: Path) -> None:
        self.server = server
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self._env = env
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise StackError(f"the {self.server} tracker process is not running")
        return self._process.pid

    def start(self) -> None:
        self._log = self._log_path.open("ab")
        # The command is built from this interpreter's path and fixed words only.
        self._process = subprocess.Popen(  # noqa: S603
            server_command(self.server, self.port),
            env=self._env,
            cwd=REPOSITORY,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_until_healthy(self) -> None:
        """Poll ``/health`` until it returns 200, raising if the process exits first."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._raise_if_exited()
                try:
                    response = await client.get("/health")
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    return
                await asyncio.sleep(0.1)
        raise StackError(
            f"the {self.server} tracker did not return 200 from /health within "
            f"{STARTUP_TIMEOUT_SECONDS:.0f} s; last output:\n{self._tail()}"
        )

    def stop(self) -> None:
        """Send SIGTERM to the process group, then SIGKILL if it is still running."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StackError(
                f"the {self.server} tracker exited with status "
                f"{self._process.returncode} before it was ready; last output:\n"
                f"{self._tail()}"
            )

    def _tail(self) -> str:
        lines = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-OUTPUT_LINES:])


@asynccontextmanager
async def running(
    server: ServerName, env: dict[str, str], log_path: Path
) -> AsyncIterator[TrackerServer]:
    """Start a tracker, wait until it is healthy, and stop it on the way out."""
    tracker = TrackerServer(server, env, log_path)
    tracker.start()
    try:
        await tracker.wait_until_healthy()
        yield tracker
    finally:
        tracker.stop()
