"""Health check, responses while the database is unreachable, and the OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from service.jobs.store import JobStore
from service.retries.store import RetryStore
from service.store.engine import create_engine
from tests.backend import FakeBackend, closed_port_url
from tests.conftest import ClientFactory, register

CONTRACT_PATHS = (
    "/ingestion-jobs",
    "/ingestion-jobs/{job_id}/events",
    "/ingestion-events",
    "/collections/{collection_id}/ingestion-jobs",
    "/collections/{collection_id}/ingestion-jobs/{job_id}",
    "/collections/{collection_id}/ingestion-jobs/{job_id}/retry",
    "/collections/{collection_id}/ingestion-jobs/{job_id}/cancel",
    "/collections/{collection_id}/ingestion-status",
    "/health",
)


def cut_database(client: AsyncTestClient[Any]) -> AsyncEngine:
    """Point a started app at a closed database port and return that engine.

    The app starts against the test database, because start-up runs migrations, and
    then loses it the way a running service loses a PostgreSQL server that goes away.
    """
    port = urlsplit(closed_port_url()).port
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{port}/tracker")
    state = client.app.state
    state.engine = engine
    state.jobs = JobStore(engine)
    state.retries = RetryStore(engine)
    return engine


@pytest.fixture
async def unreachable(
    make_client: ClientFactory,
) -> AsyncIterator[AsyncTestClient[Any]]:
    """A started app whose database became unreachable."""
    client: AsyncTestClient[Any] = await make_client()
    engine = cut_database(client)
    yield client
    await engine.dispose()


async def test_health_ok(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_health_database_unreachable(
    unreachable: AsyncTestClient[Any],
) -> None:
    response = await unreachable.get("/health")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/collections/1/ingestion-jobs", None),
        ("GET", "/collections/1/ingestion-jobs/1", None),
        ("GET", "/collections/1/ingestion-status", None),
        ("POST", "/collections/1/ingestion-jobs/1/cancel", None),
        ("POST", "/ingestion-jobs", {"collection_id": 1, "plugin_name": "simple"}),
        ("POST", "/ingestion-jobs/1/events", {"type": "started"}),
        ("POST", "/ingestion-events", {"events": [{"job_id": 1, "type": "started"}]}),
    ],
)
async def test_database_unreachable_is_unavailable(
    unreachable: AsyncTestClient[Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    response = await unreachable.request(method, path, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json() == {
        "status_code": 503,
        "detail": "The database is unavailable; try again shortly",
    }


async def test_retry_database_unreachable_is_unavailable(
    make_client: ClientFactory, backend: FakeBackend
) -> None:
    client: AsyncTestClient[Any] = await make_client(backend_url=backend.url)
    engine = cut_database(client)
    response = await client.post("/collections/1/ingestion-jobs/1/retry")
    await engine.dispose()
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "database" in response.json()["detail"]


async def test_bad_input_wins_over_unreachable_database(
    unreachable: AsyncTestClient[Any],
) -> None:
    response = await unreachable.get("/collections/1/ingestion-jobs?limit=0")
    assert response.status_code == 400


async def test_database_back_serves_again(make_client: ClientFactory) -> None:
    client: AsyncTestClient[Any] = await make_client()
    job = await register(client)
    state = client.app.state
    working = (state.engine, state.jobs, state.retries)
    broken = cut_database(client)

    down = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    state.engine, state.jobs, state.retries = working
    up = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    await broken.dispose()

    assert down.status_code == 503
    assert up.status_code == 200


# OpenAPI


async def test_openapi_lists_contract_paths(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/schema/openapi.json")
    paths = response.json()["paths"]
    assert response.status_code == 200
    for path in CONTRACT_PATHS:
        assert path in paths, path


async def test_openapi_declares_bearer_scopes(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["api_token"]["scheme"] == "bearer"
    assert schemes["worker_token"]["scheme"] == "bearer"


async def test_openapi_names_scope_per_operation(
    client: AsyncTestClient[Any],
) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    events = paths["/ingestion-jobs/{job_id}/events"]["post"]
    listing = paths["/collections/{collection_id}/ingestion-jobs"]["get"]
    assert events["security"] == [{"worker_token": []}]
    assert listing["security"] == [{"api_token": []}]
    assert "security" not in paths["/health"]["get"]


async def test_openapi_documents_error_answers(
    client: AsyncTestClient[Any],
) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    cancel = paths["/collections/{collection_id}/ingestion-jobs/{job_id}/cancel"]
    responses = cancel["post"]["responses"]
    assert {"401", "403", "404", "409", "503"} <= set(responses)
    body = responses["409"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Problem"}


async def test_openapi_documents_list_parameters(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/collections/{collection_id}/ingestion-jobs"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"status", "limit", "offset", "sort_by", "sort_order"} <= names


async def test_openapi_documents_both_register_answers(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    responses = schema["paths"]["/ingestion-jobs"]["post"]["responses"]
    assert "200" in responses
    assert "201" in responses


@pytest.mark.parametrize("path", ["/schema", "/schema/scalar"])
async def test_schema_ui_is_html(client: AsyncTestClient[Any], path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
    assert "scalar" in response.text.lower()
