"""Size limits and clean-up for text and JSON that clients send."""

from __future__ import annotations

from typing import Any

import msgspec

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

TRUNCATION_MARKER = "… [truncated]"
PROGRESS_MESSAGE_MAX_CHARS = 255
ERROR_MESSAGE_MAX_CHARS = 4096
TRACEBACK_MAX_CHARS = 32_768
DETAIL_STRING_MAX_CHARS = 8192
# Encoded size limits for the free-form objects a job stores.
DETAILS_MAX_BYTES = 64 * 1024
PARAMS_MAX_BYTES = 64 * 1024
# Nesting limit of a JSON body. clean_json recurses on every level, and 500 levels
# already exhaust Python's default recursion limit of 1000 frames.
JSON_MAX_DEPTH = 128

# PostgreSQL text and jsonb reject NUL, so it becomes the replacement character.
_NUL = "\x00"
_REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """Replace NUL characters, which PostgreSQL rejects in text."""
    return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value


def truncate(value: str, max_chars: int) -> str:
    """Cut text to at most ``max_chars`` characters, ending in a marker when cut."""
    value = clean_text(value)
    if len(value) <= max_chars:
        return value
    return value[: max_chars - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def clean_json(value: Any, max_string_chars: int | None = None) -> Any:
    """Copy a decoded JSON value with NULs replaced and, optionally, strings cut."""
    if isinstance(value, str):
        return (
            truncate(value, max_string_chars) if max_string_chars else clean_text(value)
        )
    if isinstance(value, dict):
        return {
            clean_text(str(key)): clean_json(item, max_string_chars)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [clean_json(item, max_string_chars) for item in value]
    return value


def json_depth(value: Any, limit: int = JSON_MAX_DEPTH) -> int:
    """Return how deeply arrays and objects nest in ``value``, at most ``limit`` + 1."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= limit:
            pending.extend((child, depth + 1) for child in children)
    return deepest


def encoded_size(value: Any) -> int:
    """Return the size of ``value`` encoded as JSON, in bytes."""
    return len(msgspec.json.encode(value))


def truncate_start(value: str, max_chars: int) -> str:
    """Cut text to at most ``max_chars`` characters, keeping its end after a marker.

    A traceback ends with the exception, the part worth keeping.
    """
    value = clean_text(value)
    if len(value) <= max_chars:
        return value
    return TRUNCATION_MARKER + value[len(value) - max_chars + len(TRUNCATION_MARKER) :]


def bound_error_details(details: dict[str, Any]) -> dict[str, Any]:
    """Cut error details to DETAILS_MAX_BYTES, keeping type, stage and traceback."""
    traceback = details.get("traceback")
    bounded: dict[str, Any] = clean_json(details, DETAIL_STRING_MAX_CHARS)
    if isinstance(traceback, str):
        bounded["traceback"] = truncate_start(traceback, TRACEBACK_MAX_CHARS)
    if encoded_size(bounded) <= DETAILS_MAX_BYTES:
        return bounded

    essentials: dict[str, Any] = {}
    for key, max_chars in (("exception_type", 255), ("stage", 255)):
        if key in bounded:
            essentials[key] = truncate(_as_text(bounded[key]), max_chars)
    dropped = sorted(key for key in bounded if key not in {"exception_type", "stage"})
    essentials["truncated"] = (
        f"fields dropped because details exceeded {DETAILS_MAX_BYTES} bytes"
    )
    essentials["dropped_fields"] = [truncate(key, 255) for key in dropped[:50]]
    if "traceback" in bounded:
        essentials["traceback"] = _as_text(bounded["traceback"])
        dropped.remove("traceback")
        # Characters may take up to 4 bytes each, so halve the traceback until it fits.
        limit = TRACEBACK_MAX_CHARS
        while encoded_size(essentials) > DETAILS_MAX_BYTES and limit > 64:
            limit //= 2
            essentials["traceback"] = truncate_start(essentials["traceback"], limit)
        essentials["dropped_fields"] = [truncate(key, 255) for key in dropped[:50]]
    return essentials


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def bound_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Return processing stats if they fit the limit, else a marker saying why not."""
    cleaned: dict[str, Any] = clean_json(stats, DETAIL_STRING_MAX_CHARS)
    if encoded_size(cleaned) <= DETAILS_MAX_BYTES:
        return cleaned
    return {"truncated": "processing_stats exceeded 64 KiB and were not stored"}
