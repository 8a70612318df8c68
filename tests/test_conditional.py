"""Conditional GET: ETags on job reads, lists and the summary, and 304 responses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.http.conditional import entity_tag
from tests.conftest import ClientFactory, register, send_event

STRONG_TAG = re.compile(r'"[0-9a-f]{32}"')
API = {"Authorization": "Bearer a"}
WORKER = {"Authorization": "Bearer w"}


async def conditional_paths(client: AsyncTestClient[Any]) -> list[str]:
    """Register one job and return the three conditional GET paths of collection 1."""
    job = await register(client)
    return [
        f"/collections/1/ingestion-jobs/{job['id']}",
        "/collections/1/ingestion-jobs",
        "/collections/1/ingestion-status",
    ]


async def current_tag(client: AsyncTestClient[Any], path: str, **params: Any) -> str:
    """GET ``path`` and return its ETag, which must come with a 200."""
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    tag: str = response.headers["etag"]
    return tag


async def test_get_responses_carry_strong_etag(client: AsyncTestClient[Any]) -> None:
    for path in await conditional_paths(client):
        response = await client.get(path)

        assert response.status_code == 200, path
        assert STRONG_TAG.fullmatch(response.headers["etag"]), path
        assert response.headers["cache-control"] == "no-cache", path


async def test_etag_is_hash_of_sent_body(client: AsyncTestClient[Any]) -> None:
    for path in await conditional_paths(client):
        response = await client.get(path)

        assert response.headers["etag"] == entity_tag(response.content), path


async def test_matching_if_none_match_is_not_modified(
    client: AsyncTestClient[Any],
) -> None:
    for path in await conditional_paths(client):
        tag = await current_tag(client, path)
        response = await client.get(path, headers={"If-None-Match": tag})

        assert response.status_code == 304, path
        assert response.content == b"", path
        assert response.headers["etag"] == tag, path
        assert response.headers["cache-control"] == "no-cache", path
        assert "content-type" not in response.headers, path


async def test_event_changes_etag_of_every_view(client: AsyncTestClient[Any]) -> None:
    paths = await conditional_paths(client)
    job_id = int(paths[0].rsplit("/", 1)[1])
    before = {path: await current_tag(client, path) for path in paths}
    await send_event(client, job_id, type="progress", current=1, total=4)

    for path in paths:
        response = await client.get(path, headers={"If-None-Match": before[path]})

        assert response.status_code == 200, path
        assert response.headers["etag"] != before[path], path


async def test_unchanged_job_keeps_etag(client: AsyncTestClient[Any]) -> None:
    path = (await conditional_paths(client))[0]
    first = await current_tag(client, path)
    second = await current_tag(client, path)
    assert first == second


async def test_list_offsets_have_different_etags(
    client: AsyncTestClient[Any],
) -> None:
    for number in range(3):
        await register(client, external_id=f"page-{number}")
    path = "/collections/1/ingestion-jobs"
    tags = [await current_tag(client, path, limit=1, offset=n) for n in range(3)]
    first_page = await client.get(
        path, params={"limit": 1, "offset": 0}, headers={"If-None-Match": tags[1]}
    )

    assert len(set(tags)) == 3
    assert first_page.status_code == 200


@pytest.mark.parametrize(
    ("template", "expected_status"),
    [
        ("*", 304),
        (" * ", 304),
        ("{tag}", 304),
        ("W/{tag}", 304),
        ('"0000", {tag}', 304),
        ('{tag},"0000"', 304),
        ('W/"0000" ,  W/{tag}', 304),
        ('"a,b", {tag}', 304),
        ('"0000"', 200),
        ('"0000", W/"1111"', 200),
        ("{bare}", 200),
        ("", 200),
        ('"{bare}', 200),
    ],
)
async def test_if_none_match_forms(
    client: AsyncTestClient[Any], template: str, expected_status: int
) -> None:
    path = (await conditional_paths(client))[0]
    tag = await current_tag(client, path)
    header = template.format(tag=tag, bare=tag.strip('"'))
    response = await client.get(path, headers={"If-None-Match": header})
    assert response.status_code == expected_status, header


@pytest.mark.parametrize(
    ("path", "params", "expected_status"),
    [
        ("/collections/1/ingestion-jobs/999", {}, 404),
        ("/collections/1/ingestion-jobs", {"limit": 0}, 400),
        ("/collections/1/ingestion-jobs", {"status": "lost"}, 400),
        ("/collections/0/ingestion-status", {}, 400),
    ],
)
async def test_error_responses_have_no_etag(
    client: AsyncTestClient[Any],
    path: str,
    params: dict[str, Any],
    expected_status: int,
) -> None:
    response = await client.get(path, params=params, headers={"If-None-Match": "*"})

    assert response.status_code == expected_status
    assert "etag" not in response.headers


@pytest.mark.parametrize(
    ("headers", "expected_status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), (WORKER, 403)],
)
async def test_auth_error_precedes_not_modified(
    make_client: ClientFactory, headers: dict[str, str], expected_status: int
) -> None:
    secured = await make_client(api_tokens=("a",), worker_tokens=("w",))
    registered = await secured.post(
        "/ingestion-jobs",
        json={"collection_id": 1, "plugin_name": "simple"},
        headers=WORKER,
    )
    path = f"/collections/1/ingestion-jobs/{registered.json()['id']}"
    tag = (await secured.get(path, headers=API)).headers["etag"]
    allowed = await secured.get(path, headers={**API, "If-None-Match": tag})
    rejected = await secured.get(path, headers={**headers, "If-None-Match": tag})

    assert allowed.status_code == 304
    assert rejected.status_code == expected_status
    assert "etag" not in rejected.headers
