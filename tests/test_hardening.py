"""Inputs and failures found by trying to break the service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.config import ConfigError, load_settings
from service.limits import DETAILS_MAX_BYTES, TRUNCATION_MARKER, bound_error_details
from service.retries.store import RetryStore
from service.store.engine import create_engine
from tests.backend import FakeBackend
from tests.conftest import ClientFactory, register, send_event
from tests.test_forwarding import register_failed, retry, wait_for_status


@pytest.mark.parametrize(
    "occurred_at", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+05:00"]
)
async def test_occurred_at_before_year_one_is_400(
    client: AsyncTestClient[Any], occurred_at: str
) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events",
        json={"type": "progress", "occurred_at": occurred_at},
    )
    assert response.status_code == 400
    assert "occurred_at" in response.json()["detail"]


async def test_occurred_at_in_batch_fails_batch_with_400(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    response = await client.post(
        "/ingestion-events",
        json={
            "events": [
                {"job_id": job["id"], "type": "progress", "current": 5, "total": 9},
                {
                    "job_id": job["id"],
                    "type": "progress",
                    "occurred_at": "0001-01-01T00:00:00+01:00",
                },
            ]
        },
    )
    stored = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    assert response.status_code == 400
    assert "events[1]" in response.json()["detail"]
    assert stored.json()["status"] == "pending"


def test_backend_url_with_credentials_is_rejected() -> None:
    with pytest.raises(ConfigError, match="TRACKER_BACKEND_TOKEN"):
        load_settings({"TRACKER_BACKEND_URL": "http://user:secret@127.0.0.1:9000"})


def test_error_details_with_large_values_are_bounded() -> None:
    details = {
        "exception_type": ["x" * 8000] * 100,
        "stage": "convert",
        "traceback": "\N{GRINNING FACE}" * 40_000,
        "pages": list(range(50_000)),
    }
    bounded = bound_error_details(details)
    assert len(msgspec.json.encode(bounded)) <= DETAILS_MAX_BYTES
    assert bounded["stage"] == "convert"
    assert bounded["dropped_fields"] == ["pages"]


def test_long_traceback_keeps_its_end() -> None:
    traceback = "frame\n" * 20_000 + "ValueError: bad page 7"
    bounded = bound_error_details({"traceback": traceback})
    assert bounded["traceback"].startswith(TRUNCATION_MARKER)
    assert bounded["traceback"].endswith("ValueError: bad page 7")


async def test_failed_event_stores_bounded_details(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_message="boom",
        error_details={"exception_type": ["x" * 8000] * 100},
    )
    stored = answer["job"]["error_details"]
    assert len(msgspec.json.encode(stored)) <= DETAILS_MAX_BYTES


@pytest.mark.parametrize(
    "urls", [[], "https://example.org/a", ["https://example.org/a", 7], [""]]
)
async def test_url_job_with_invalid_urls_is_400(
    client: AsyncTestClient[Any], urls: Any
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        json={
            "collection_id": 1,
            "plugin_name": "url_ingest",
            "source": "url",
            "plugin_params": {"urls": urls},
        },
    )
    assert response.status_code == 400
    assert "plugin_params.urls" in response.json()["detail"]


async def test_file_over_size_limit_fails_retry(
    make_client: ClientFactory, backend: FakeBackend
) -> None:
    client = await make_client(backend_url=backend.url, retry_max_file_bytes=1024)
    backend.files["/files/big.pdf"] = b"%" * 4096
    job = await register_failed(client, file_url=f"{backend.url}/files/big.pdf")
    await retry(client, job)
    failed = await wait_for_status(client, 1, job["id"], "failed")
    assert "TRACKER_RETRY_MAX_FILE_BYTES" in failed["error_message"]
    assert backend.ingest_requests == []


async def test_health_503_carries_retry_after(client: AsyncTestClient[Any]) -> None:
    app = client.app
    await app.state.engine.dispose()
    app.state.engine = create_engine("postgresql://postgres@127.0.0.1:1/missing")
    response = await client.get("/health")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


async def test_expired_claim_cannot_fail_job(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    engine = create_engine(database_url, pool_size=1)
    store = RetryStore(engine)
    job = await register_failed(client, source="base")
    await store.request_retry(1, job["id"], None, "api")
    (first,) = await store.claim_due(1, timedelta(seconds=0))
    # The first claim's lease ran out, and another replica claimed the row.
    (second,) = await store.claim_due(1, timedelta(seconds=60))

    gave_up = await store.give_up(first, "late", stage="retry_forwarding")
    await engine.dispose()
    stored = (await client.get(f"/collections/1/ingestion-jobs/{job['id']}")).json()
    assert first.tries == 1
    assert second.tries == 2
    assert gave_up is False
    assert stored["status"] == "pending"
