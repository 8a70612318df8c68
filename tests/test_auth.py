"""Bearer tokens in two scopes, and the settings that decide whether auth is on."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.config import ConfigError, Settings, load_settings
from tests.conftest import JOB_DEFAULTS, ClientFactory

API = {"Authorization": "Bearer api-1"}
WORKER = {"Authorization": "Bearer worker-1"}
TOKEN_VARIABLES = ("TRACKER_API_TOKENS", "TRACKER_WORKER_TOKENS")


@pytest.fixture
async def secured(make_client: ClientFactory) -> AsyncTestClient[Any]:
    """A client of an app that requires tokens of both scopes."""
    started: AsyncTestClient[Any] = await make_client(
        api_tokens=("api-1",), worker_tokens=("worker-1",)
    )
    return started


async def register_job(client: AsyncTestClient[Any]) -> int:
    response = await client.post("/ingestion-jobs", json=JOB_DEFAULTS, headers=WORKER)
    assert response.status_code == 201, response.text
    job_id: int = response.json()["id"]
    return job_id


# Requests


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/collections/1/ingestion-jobs"),
        ("GET", "/collections/1/ingestion-status"),
        ("POST", "/ingestion-jobs"),
        ("POST", "/ingestion-events"),
    ],
)
async def test_missing_token_is_unauthorized(
    secured: AsyncTestClient[Any], method: str, path: str
) -> None:
    response = await secured.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status_code"] == 401
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_wrong_token_is_unauthorized(secured: AsyncTestClient[Any]) -> None:
    response = await secured.get(
        "/collections/1/ingestion-jobs", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"] == "Invalid bearer token"


async def test_token_prefix_is_unauthorized(secured: AsyncTestClient[Any]) -> None:
    response = await secured.get(
        "/collections/1/ingestion-jobs", headers={"Authorization": "Bearer api-"}
    )
    assert response.status_code == 401


async def test_basic_auth_is_unauthorized(secured: AsyncTestClient[Any]) -> None:
    credentials = base64.b64encode(b"api-1:api-1").decode()
    response = await secured.get(
        "/collections/1/ingestion-jobs",
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_bearer_without_token_is_unauthorized(
    secured: AsyncTestClient[Any],
) -> None:
    response = await secured.get(
        "/collections/1/ingestion-jobs", headers={"Authorization": "Bearer "}
    )
    assert response.status_code == 401


async def test_worker_token_on_api_is_forbidden(
    secured: AsyncTestClient[Any],
) -> None:
    response = await secured.get("/collections/1/ingestion-jobs", headers=WORKER)
    detail = response.json()["detail"]
    assert response.status_code == 403
    assert response.json()["status_code"] == 403
    assert "worker scope" in detail
    assert "token of the api scope" in detail


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/ingestion-jobs", JOB_DEFAULTS),
        ("/ingestion-jobs/1/events", {"type": "started"}),
        ("/ingestion-events", {"events": []}),
    ],
)
async def test_api_token_on_worker_is_forbidden(
    secured: AsyncTestClient[Any], path: str, body: dict[str, Any]
) -> None:
    response = await secured.post(path, json=body, headers=API)
    detail = response.json()["detail"]
    assert response.status_code == 403
    assert "api scope" in detail
    assert "token of the worker scope" in detail


async def test_worker_token_registers_and_reports(
    secured: AsyncTestClient[Any],
) -> None:
    job_id = await register_job(secured)
    event = await secured.post(
        f"/ingestion-jobs/{job_id}/events", json={"type": "started"}, headers=WORKER
    )
    batch = await secured.post(
        "/ingestion-events",
        json={"events": [{"job_id": job_id, "type": "heartbeat"}]},
        headers=WORKER,
    )
    assert event.status_code == 200
    assert batch.status_code == 200


async def test_api_token_reads_and_cancels(secured: AsyncTestClient[Any]) -> None:
    job_id = await register_job(secured)
    listed = await secured.get("/collections/1/ingestion-jobs", headers=API)
    read = await secured.get(f"/collections/1/ingestion-jobs/{job_id}", headers=API)
    summary = await secured.get("/collections/1/ingestion-status", headers=API)
    cancelled = await secured.post(
        f"/collections/1/ingestion-jobs/{job_id}/cancel", headers=API
    )
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    assert read.status_code == 200
    assert summary.status_code == 200
    assert cancelled.status_code == 200


async def test_lowercase_bearer_scheme_is_accepted(
    secured: AsyncTestClient[Any],
) -> None:
    response = await secured.get(
        "/collections/1/ingestion-jobs", headers={"Authorization": "bearer api-1"}
    )
    assert response.status_code == 200


async def test_any_configured_token_is_accepted(
    make_client: ClientFactory,
) -> None:
    client = await make_client(
        api_tokens=("api-old", "api-new"), worker_tokens=("worker-1",)
    )
    response = await client.get(
        "/collections/1/ingestion-jobs", headers={"Authorization": "Bearer api-old"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/schema/openapi.json"])
async def test_public_paths_need_no_token(
    secured: AsyncTestClient[Any], path: str
) -> None:
    response = await secured.get(path)
    assert response.status_code == 200


async def test_auth_off_without_tokens(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/collections/1/ingestion-jobs")
    assert response.status_code == 200


# Settings


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "tracker.internal"])
def test_config_public_host_needs_tokens(host: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"TRACKER_HOST": host})
    message = str(raised.value)
    assert host in message
    for name in TOKEN_VARIABLES:
        assert name in message


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_config_loopback_host_without_tokens(host: str) -> None:
    settings = load_settings({"TRACKER_HOST": host})
    assert settings.auth_enabled is False
    assert settings.host == host


def test_config_public_host_with_tokens() -> None:
    settings = load_settings(
        {
            "TRACKER_HOST": "0.0.0.0",
            "TRACKER_API_TOKENS": "api-1, api-2",
            "TRACKER_WORKER_TOKENS": "worker-1",
        }
    )
    assert settings.auth_enabled is True
    assert settings.api_tokens == ("api-1", "api-2")
    assert settings.worker_tokens == ("worker-1",)


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ("TRACKER_API_TOKENS", "TRACKER_WORKER_TOKENS"),
        ("TRACKER_WORKER_TOKENS", "TRACKER_API_TOKENS"),
    ],
)
def test_config_one_token_list_is_rejected(present: str, missing: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({present: "token-1"})
    assert missing in str(raised.value)


def test_config_blank_token_list_counts_as_unset() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"TRACKER_API_TOKENS": "api-1", "TRACKER_WORKER_TOKENS": " , "})
    assert "TRACKER_WORKER_TOKENS" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACKER_PORT", "http"),
        ("TRACKER_PORT", "0"),
        ("TRACKER_MAX_BODY_BYTES", "1.5"),
        ("TRACKER_MAX_BODY_BYTES", "-1"),
        ("TRACKER_RETRY_BACKOFF_SECONDS", "soon"),
        ("TRACKER_RETRY_MAX_TRIES", "many"),
        ("TRACKER_DB_POOL_SIZE", "0"),
        ("TRACKER_BACKEND_TIMEOUT_SECONDS", "-2"),
    ],
)
def test_config_bad_number_names_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value})
    assert name in str(raised.value)
    assert value in str(raised.value)


def test_config_numbers_are_parsed() -> None:
    settings = load_settings(
        {"TRACKER_PORT": "9000", "TRACKER_RETRY_BACKOFF_SECONDS": "0.5"}
    )
    assert settings.port == 9000
    assert settings.retry_backoff_seconds == 0.5


@pytest.mark.parametrize(
    "url", ["mysql://root@127.0.0.1/tracker", "sqlite:///tracker.db", "127.0.0.1"]
)
def test_config_database_url_must_be_postgresql(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"DATABASE_URL": url})
    assert "DATABASE_URL" in str(raised.value)
    assert "postgresql://" in str(raised.value)


@pytest.mark.parametrize(
    "url", ["postgresql://tracker@127.0.0.1/tracker", "postgres://127.0.0.1/db"]
)
def test_config_postgresql_url_accepted(url: str) -> None:
    assert load_settings({"DATABASE_URL": url}).database_url == url


def test_config_empty_environment_gives_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings(data_dir=settings.data_dir)
    assert settings.host == "127.0.0.1"
    assert settings.auth_enabled is False


def test_config_bad_backend_url_is_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"TRACKER_BACKEND_URL": "backend:8000"})
    assert "TRACKER_BACKEND_URL" in str(raised.value)


# Command line


def test_cli_serve_public_host_without_tokens(tmp_path: Path) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {*TOKEN_VARIABLES, "DATABASE_URL", "TRACKER_HOST"}
    }
    # A closed database port and a data directory of its own, so that a command that
    # got past its checks could neither serve nor touch a real database.
    environment["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/tracker"
    environment["TRACKER_DATA_DIR"] = str(tmp_path)
    command = Path(sys.executable).parent / "ingestion-tracker"

    finished = subprocess.run(
        [str(command), "serve", "--host", "0.0.0.0"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert "configuration error" in finished.stderr
    for name in TOKEN_VARIABLES:
        assert name in finished.stderr
