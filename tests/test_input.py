"""Client input: a bad value is a 400 naming its field, and long text is cut."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.limits import (
    DETAILS_MAX_BYTES,
    ERROR_MESSAGE_MAX_CHARS,
    PROGRESS_MESSAGE_MAX_CHARS,
    TRACEBACK_MAX_CHARS,
    TRUNCATION_MARKER,
    encoded_size,
)
from tests.conftest import JOB_DEFAULTS, ClientFactory, register, send_event

NUL = "\u0000"
REPLACEMENT = "\ufffd"
BIGINT_OVERFLOW = 2**63
# RFC 3339 with a zone: ends in Z or in an offset such as +02:00.
ZONED_TIMESTAMP = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
)


def assert_bad_request(response: Any, *names: str) -> str:
    """Check a 400 in the error shape whose detail mentions every one of ``names``."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    for name in names:
        assert name in body["detail"], (name, body["detail"])
    detail: str = body["detail"]
    return detail


async def register_raw(client: AsyncTestClient[Any], **fields: Any) -> Any:
    """Post a registration with the defaults overridden by ``fields``."""
    return await client.post("/ingestion-jobs", json={**JOB_DEFAULTS, **fields})


async def read_job(client: AsyncTestClient[Any], job_id: int) -> dict[str, Any]:
    response = await client.get(f"/collections/1/ingestion-jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


# List query parameters


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-5"])
async def test_list_bad_limit_names_limit(
    client: AsyncTestClient[Any], limit: str
) -> None:
    response = await client.get(f"/collections/1/ingestion-jobs?limit={limit}")
    assert_bad_request(response, "limit")


async def test_list_negative_offset_names_offset(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/collections/1/ingestion-jobs?offset=-1")
    assert_bad_request(response, "offset")


async def test_list_bad_sort_by_lists_fields(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/collections/1/ingestion-jobs?sort_by=owner")
    assert_bad_request(
        response,
        "sort_by",
        "created_at",
        "updated_at",
        "status",
        "original_filename",
        "file_size",
        "processing_started_at",
    )


async def test_list_bad_sort_order_lists_orders(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/collections/1/ingestion-jobs?sort_order=up")
    assert_bad_request(response, "sort_order", "asc", "desc")


@pytest.mark.parametrize("status", ["running", "pending,running", "PENDING"])
async def test_list_bad_status_lists_statuses(
    client: AsyncTestClient[Any], status: str
) -> None:
    response = await client.get(f"/collections/1/ingestion-jobs?status={status}")
    detail = assert_bad_request(response, "status", "pending", "deleted")
    assert repr(status.split(",")[-1]) in detail


async def test_list_collection_id_overflow_is_rejected(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get(f"/collections/{BIGINT_OVERFLOW}/ingestion-jobs")
    assert_bad_request(response, "collection_id")


# Registration body


@pytest.mark.parametrize("field", ["collection_id", "plugin_name"])
async def test_register_missing_field_names_it(
    client: AsyncTestClient[Any], field: str
) -> None:
    body = {"collection_id": 1, "plugin_name": "simple"}
    del body[field]
    response = await client.post("/ingestion-jobs", json=body)
    assert_bad_request(response, field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collection_id", "one"),
        ("collection_id", 1.5),
        ("plugin_name", 7),
        ("plugin_params", ["a", "b"]),
        ("file_size", "big"),
        ("external_id", {"id": 1}),
    ],
)
async def test_register_wrong_type_names_field(
    client: AsyncTestClient[Any], field: str, value: Any
) -> None:
    response = await register_raw(client, **{field: value})
    assert_bad_request(response, field)


async def test_register_unknown_field_names_it(client: AsyncTestClient[Any]) -> None:
    response = await register_raw(client, priority="high")
    assert_bad_request(response, "priority")


async def test_register_bad_source_lists_sources(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, source="ftp")
    assert_bad_request(response, "source", "file", "url", "base")


@pytest.mark.parametrize("status", ["completed", "failed", "bogus"])
async def test_register_bad_status_lists_allowed(
    client: AsyncTestClient[Any], status: str
) -> None:
    response = await register_raw(client, status=status)
    assert_bad_request(response, "status", "pending", "processing")


async def test_register_negative_file_size_rejected(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, file_size=-1)
    assert_bad_request(response, "file_size")


@pytest.mark.parametrize("collection_id", [0, -3, BIGINT_OVERFLOW])
async def test_register_collection_id_out_of_range(
    client: AsyncTestClient[Any], collection_id: int
) -> None:
    response = await register_raw(client, collection_id=collection_id)
    assert_bad_request(response, "collection_id")


async def test_register_largest_collection_id_accepted(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, collection_id=BIGINT_OVERFLOW - 1)
    assert response.status_code == 201
    assert response.json()["collection_id"] == BIGINT_OVERFLOW - 1


async def test_register_file_size_overflow_rejected(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, file_size=BIGINT_OVERFLOW)
    assert_bad_request(response, "file_size")


@pytest.mark.parametrize(
    ("field", "length"),
    [
        ("original_filename", 1025),
        ("plugin_name", 256),
        ("collection_name", 256),
        ("external_id", 256),
        ("file_path", 4097),
    ],
)
async def test_register_too_long_text_names_field(
    client: AsyncTestClient[Any], field: str, length: int
) -> None:
    response = await register_raw(client, **{field: "x" * length})
    assert_bad_request(response, field)


async def test_register_url_source_needs_file_url(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, source="url", plugin_params={})
    assert_bad_request(response, "file_url", "url")


async def test_register_url_source_accepts_params_urls(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(
        client, source="url", plugin_params={"urls": ["https://example.org/a"]}
    )
    assert response.status_code == 201


async def test_register_oversized_plugin_params_rejected(
    client: AsyncTestClient[Any],
) -> None:
    response = await register_raw(client, plugin_params={"blob": "x" * 70_000})
    assert_bad_request(response, "plugin_params")


async def test_register_invalid_json_is_bad_request(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        content=b'{"collection_id": 1, "plugin_name": ',
        headers={"content-type": "application/json"},
    )
    assert_bad_request(response, "Invalid JSON in request body")


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udc00x"])
async def test_register_lone_surrogate_is_bad_request(
    client: AsyncTestClient[Any], escape: bytes
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        content=b'{"collection_id": 1, "plugin_name": "a' + escape + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_bad_request(response, "JSON")


async def test_register_json_array_is_bad_request(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-jobs", json=[{"collection_id": 1, "plugin_name": "simple"}]
    )
    assert_bad_request(response, "object")


async def test_register_empty_body_is_bad_request(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-jobs", content=b"", headers={"content-type": "application/json"}
    )
    assert_bad_request(response, "Missing request body")


def nested_object(levels: int) -> bytes:
    """Encode a JSON object nested ``levels`` objects deep around the number 1."""
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize("levels", [128, 600, 3000])
async def test_register_deep_plugin_params_rejected(
    client: AsyncTestClient[Any], levels: int
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        content=b'{"collection_id": 1, "plugin_name": "x", "plugin_params": '
        + nested_object(levels)
        + b"}",
        headers={"content-type": "application/json"},
    )
    assert_bad_request(response, "Invalid JSON in request body", "deeper than 128")


async def test_register_nesting_at_limit_accepted(
    client: AsyncTestClient[Any],
) -> None:
    # The body is level 1 and plugin_params level 2, so 127 levels reach the limit.
    response = await client.post(
        "/ingestion-jobs",
        content=b'{"collection_id": 1, "plugin_name": "x", "plugin_params": '
        + nested_object(127)
        + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("field", ["error_details", "processing_stats"])
async def test_event_deep_object_rejected(
    client: AsyncTestClient[Any], field: str
) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events",
        content=b'{"type": "failed", "'
        + field.encode()
        + b'": '
        + nested_object(600)
        + b"}",
        headers={"content-type": "application/json"},
    )
    assert_bad_request(response, "deeper than 128")
    assert (await read_job(client, job["id"]))["status"] == "pending"


async def test_batch_deep_array_rejected(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/ingestion-events",
        content=b'{"events": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert_bad_request(response, "deeper than 128")


# Event body


async def test_event_bad_type_lists_types(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"type": "paused"}
    )
    assert_bad_request(
        response,
        "type",
        "started",
        "progress",
        "heartbeat",
        "completed",
        "failed",
        "cancelled",
        "deleted",
    )


async def test_event_missing_type_names_it(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"current": 1}
    )
    assert_bad_request(response, "type")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("current", -1),
        ("total", -1),
        ("seq", -1),
        ("seq", BIGINT_OVERFLOW),
        ("current", BIGINT_OVERFLOW),
        ("attempt", 0),
        ("attempt", 2**31),
        ("document_count", -2),
        ("occurred_at", "yesterday"),
        ("error_details", "not an object"),
    ],
)
async def test_event_bad_value_names_field(
    client: AsyncTestClient[Any], field: str, value: Any
) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"type": "progress", field: value}
    )
    assert_bad_request(response, field)


async def test_event_unknown_field_names_it(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"type": "progress", "pct": 5}
    )
    assert_bad_request(response, "pct")


async def test_event_rejected_leaves_job_unchanged(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    await client.post(
        f"/ingestion-jobs/{job['id']}/events",
        json={"type": "progress", "current": -1},
    )
    assert (await read_job(client, job["id"]))["status"] == "pending"


async def test_batch_bad_event_names_its_index(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    response = await client.post(
        "/ingestion-events",
        json={
            "events": [
                {"job_id": job["id"], "type": "started"},
                {"job_id": job["id"], "type": "progress", "current": -1},
            ]
        },
    )
    assert_bad_request(response, "events[1].current")


async def test_batch_event_without_job_id_rejected(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-events", json={"events": [{"type": "started"}]}
    )
    assert_bad_request(response, "job_id")


async def test_batch_over_limit_is_rejected(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    events = [{"job_id": job["id"], "type": "heartbeat"}] * 1001
    response = await client.post("/ingestion-events", json={"events": events})
    assert_bad_request(response, "events", "1000")


async def test_batch_at_limit_is_accepted(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    events = [{"job_id": job["id"], "type": "heartbeat"}] * 1000
    response = await client.post("/ingestion-events", json={"events": events})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1000


async def test_batch_empty_gives_empty_results(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/ingestion-events", json={"events": []})
    assert response.status_code == 200
    assert response.json() == {"results": []}


# Path parameters


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/collections/1/ingestion-jobs/0", "job_id"),
        (f"/collections/1/ingestion-jobs/{BIGINT_OVERFLOW}", "job_id"),
        ("/collections/0/ingestion-jobs/1", "collection_id"),
        (f"/collections/{BIGINT_OVERFLOW}/ingestion-status", "collection_id"),
    ],
)
async def test_path_id_out_of_range_is_rejected(
    client: AsyncTestClient[Any], path: str, field: str
) -> None:
    response = await client.get(path)
    assert_bad_request(response, f"path parameter {field}")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/collections/1/ingestion-jobs/abc"),
        ("POST", "/collections/1/ingestion-jobs/abc/cancel"),
        ("GET", "/collections/abc/ingestion-jobs"),
        ("POST", "/ingestion-jobs/abc/events"),
        ("POST", "/ingestion-jobs/1.5/events"),
    ],
)
async def test_path_id_not_integer_is_client_error(
    client: AsyncTestClient[Any], method: str, path: str
) -> None:
    response = await client.request(method, path, json={"type": "started"})
    body = response.json()
    assert response.status_code in {400, 404}
    assert body["status_code"] == response.status_code
    assert path in body["detail"]


@pytest.mark.parametrize("job_id", [0, BIGINT_OVERFLOW])
async def test_event_path_job_id_out_of_range(
    client: AsyncTestClient[Any], job_id: int
) -> None:
    response = await client.post(
        f"/ingestion-jobs/{job_id}/events", json={"type": "started"}
    )
    assert_bad_request(response, "job_id")


# Long text is cut with a marker


async def test_long_progress_message_is_truncated(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="progress", current=1, total=2, message="m" * 1000
    )
    message = answer["job"]["progress"]["message"]
    assert len(message) == PROGRESS_MESSAGE_MAX_CHARS
    assert message.endswith(TRUNCATION_MARKER)
    assert message.startswith("m" * 200)


async def test_progress_message_at_limit_is_kept(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    text = "k" * PROGRESS_MESSAGE_MAX_CHARS
    answer = await send_event(client, job["id"], type="progress", message=text)
    assert answer["job"]["progress"]["message"] == text


async def test_long_completed_message_is_truncated(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(client, job["id"], type="completed", message="d" * 600)
    message = answer["job"]["progress"]["message"]
    assert len(message) == PROGRESS_MESSAGE_MAX_CHARS
    assert message.endswith(TRUNCATION_MARKER)


async def test_long_error_message_is_truncated(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="failed", error_message="e" * 100_000
    )
    message = answer["job"]["error_message"]
    assert len(message) == ERROR_MESSAGE_MAX_CHARS
    assert message.endswith(TRUNCATION_MARKER)


async def test_long_traceback_is_truncated(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_message="crash",
        error_details={
            "exception_type": "MemoryError",
            "stage": "embed",
            "traceback": "t" * 200_000,
        },
    )
    details = answer["job"]["error_details"]
    assert len(details["traceback"]) == TRACEBACK_MAX_CHARS
    assert details["traceback"].startswith(TRUNCATION_MARKER)
    assert details["exception_type"] == "MemoryError"
    assert details["stage"] == "embed"


async def test_large_error_details_are_bounded(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    extra = {f"field_{index:02d}": "v" * 8000 for index in range(40)}
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_message="crash",
        error_details={
            "exception_type": "ValueError",
            "stage": "split",
            "traceback": "Traceback (most recent call last): ...",
            **extra,
        },
    )
    details = answer["job"]["error_details"]
    stored = (await read_job(client, job["id"]))["error_details"]
    assert encoded_size(details) <= DETAILS_MAX_BYTES
    assert details["exception_type"] == "ValueError"
    assert details["stage"] == "split"
    assert details["traceback"].startswith("Traceback")
    assert len(details["dropped_fields"]) == 40
    assert "fields dropped" in details["truncated"]
    assert stored == details


async def test_long_detail_string_is_truncated(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_details={"response_body": "r" * 20_000},
    )
    value = answer["job"]["error_details"]["response_body"]
    assert len(value) < 20_000
    assert value.endswith(TRUNCATION_MARKER)


async def test_large_processing_stats_are_replaced(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    stats = {f"chunk_{index}": "s" * 5000 for index in range(30)}
    answer = await send_event(
        client, job["id"], type="completed", processing_stats=stats
    )
    stored = answer["job"]["processing_stats"]
    assert encoded_size(stored) <= DETAILS_MAX_BYTES
    assert "processing_stats" in stored["truncated"]


# NUL characters become U+FFFD


async def test_nul_in_progress_message_is_replaced(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(client, job["id"], type="progress", message=f"page{NUL}1")
    assert answer["job"]["progress"]["message"] == f"page{REPLACEMENT}1"


async def test_nul_in_error_fields_is_replaced(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_message=f"bad{NUL}byte",
        error_details={
            f"key{NUL}": f"value{NUL}",
            "traceback": f"line{NUL}",
            "nested": {"list": [f"item{NUL}", 3]},
        },
    )
    failed = answer["job"]
    assert failed["error_message"] == f"bad{REPLACEMENT}byte"
    assert failed["error_details"][f"key{REPLACEMENT}"] == f"value{REPLACEMENT}"
    assert failed["error_details"]["traceback"] == f"line{REPLACEMENT}"
    assert failed["error_details"]["nested"] == {"list": [f"item{REPLACEMENT}", 3]}


async def test_nul_in_processing_stats_is_replaced(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="completed",
        processing_stats={f"pages{NUL}": f"ten{NUL}"},
    )
    stats = answer["job"]["processing_stats"]
    assert stats == {f"pages{REPLACEMENT}": f"ten{REPLACEMENT}"}


async def test_nul_in_registration_is_replaced(client: AsyncTestClient[Any]) -> None:
    text_fields = (
        "collection_name",
        "owner",
        "original_filename",
        "file_path",
        "content_type",
        "plugin_name",
        "external_id",
    )
    response = await register_raw(
        client,
        plugin_params={f"sep{NUL}": f"a{NUL}b", "list": [NUL]},
        **{field: f"{field}{NUL}" for field in text_fields},
    )
    job = response.json()
    assert response.status_code == 201
    for field in text_fields:
        assert job[field] == f"{field}{REPLACEMENT}", field
    assert job["plugin_params"] == {
        f"sep{REPLACEMENT}": f"a{REPLACEMENT}b",
        "list": [REPLACEMENT],
    }


async def test_nul_in_retry_override_params_is_replaced(
    tracked_client: AsyncTestClient[Any],
) -> None:
    client = tracked_client
    job = await register(client)
    await send_event(client, job["id"], type="failed")
    response = await client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry",
        json={"override_params": {f"k{NUL}": f"v{NUL}"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["plugin_params"][f"k{REPLACEMENT}"] == f"v{REPLACEMENT}"


# Body size, time zones


async def test_body_over_limit_is_too_large(make_client: ClientFactory) -> None:
    client = await make_client(max_body_bytes=2048)
    response = await register_raw(client, plugin_params={"blob": "x" * 4096})
    body = response.json()
    assert response.status_code == 413
    assert body["status_code"] == 413
    assert "2048 bytes" in body["detail"]
    assert set(body) == {"status_code", "detail"}


async def test_event_body_over_limit_is_too_large(
    make_client: ClientFactory,
) -> None:
    client = await make_client(max_body_bytes=2048)
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events",
        json={"type": "progress", "message": "x" * 4096},
    )
    assert response.status_code == 413
    assert response.json()["status_code"] == 413


async def test_naive_occurred_at_is_utc(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="started", occurred_at="2026-03-04T05:06:07"
    )
    assert answer["job"]["processing_started_at"] == "2026-03-04T05:06:07Z"


async def test_offset_occurred_at_is_converted(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="started", occurred_at="2026-03-04T07:06:07+02:00"
    )
    assert answer["job"]["processing_started_at"] == "2026-03-04T05:06:07Z"


async def test_response_timestamps_carry_zone(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="started")
    await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    cancelled = await read_job(client, job["id"])
    fields = (
        "created_at",
        "updated_at",
        "processing_started_at",
        "processing_completed_at",
        "cancel_requested_at",
        "last_event_at",
    )
    for field in fields:
        assert ZONED_TIMESTAMP.match(cancelled[field]), (field, cancelled[field])
