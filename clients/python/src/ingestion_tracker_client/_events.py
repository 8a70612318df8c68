"""Worker events as the tracker's ``POST /ingestion-events`` takes them."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

logger = logging.getLogger("ingestion_tracker_client")

# Events after which the tracker moves the job only on a retry.
FINAL_TYPES = frozenset({"completed", "failed", "cancelled"})

# Limits of the tracker, which cuts longer values itself. Cutting them here as well
# keeps one large event from pushing its batch over the tracker's body size limit.
MESSAGE_MAX_CHARS = 255
ERROR_MESSAGE_MAX_CHARS = 4096
OBJECT_MAX_BYTES = 64 * 1024
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
_TRUNCATION_MARKER = "… [truncated]"

# The tracker keeps at most this much of a traceback. The SDK cuts it first, keeping
# most of the end, where the raising frame is.
TRACEBACK_MAX_CHARS = 32_768
_CUT_MARKER = "\n… [{count} characters cut] …\n"
# Keys of error details that survive OBJECT_MAX_BYTES, as in the tracker.
_ESSENTIAL_DETAILS = ("exception_type", "stage", "traceback")


def scrub(value: Any) -> Any:
    """Copy decoded JSON with text that is not valid UTF-8 escaped, so it can be sent.

    A lone surrogate (from ``os.fsdecode`` of a non-UTF-8 file name, say) would make
    the JSON encoder raise.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event of a batch; fields left None are not sent."""

    job_id: int
    type: str
    seq: int
    occurred_at: datetime
    attempt: int | None = None
    current: int | None = None
    total: int | None = None
    message: str | None = None
    document_count: int | None = None
    processing_stats: dict[str, Any] | None = None
    error_message: str | None = None
    error_details: dict[str, Any] | None = None


class EventBatch(msgspec.Struct, kw_only=True):
    """Request body of ``POST /ingestion-events``."""

    events: list[Event]


class SeqCounter:
    """Event numbers that rise with every call, starting from the epoch in microseconds.

    A time-based start lets a second reporter of the same job and attempt, for example
    in another process, continue above the numbers of the first, so the tracker does
    not take its events for duplicates. The number is raised by one where the clock
    has not moved on, so it always increases within one reporter.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


def utc_now() -> datetime:
    return datetime.now(UTC)


def exception_type_name(exc: BaseException) -> str:
    """Name a builtin exception by its class and any other one by module and class."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def cut_traceback(text: str) -> str:
    """Cut a traceback to TRACEBACK_MAX_CHARS, keeping its first and last parts."""
    if len(text) <= TRACEBACK_MAX_CHARS:
        return text
    marker_room = len(_CUT_MARKER.format(count=len(text)))
    keep = TRACEBACK_MAX_CHARS - marker_room
    head = keep // 4
    tail = keep - head
    cut = len(text) - head - tail
    return text[:head] + _CUT_MARKER.format(count=cut) + text[-tail:]


def truncate(text: str, max_chars: int) -> str:
    """Cut text to ``max_chars`` characters, ending in a marker when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - len(_TRUNCATION_MARKER)] + _TRUNCATION_MARKER


def _text_of(exc: BaseException) -> str:
    """Return ``str(exc)``, which user code may have broken, without raising."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() raised an exception>"


def failure_fields(exc: BaseException, stage: str | None) -> dict[str, Any]:
    """Build the fields of a ``failed`` event from the exception that ended the job."""
    details: dict[str, Any] = {
        "exception_type": exception_type_name(exc),
        "traceback": cut_traceback("".join(traceback.format_exception(exc))),
    }
    if stage is not None:
        details["stage"] = stage
    name = type(exc).__name__
    text = _text_of(exc)
    if isinstance(exc, Exception):
        message = text or name
    else:
        message = f"The worker was interrupted by {name}" + (
            f": {text}" if text else ""
        )
    return {
        "error_message": truncate(message, ERROR_MESSAGE_MAX_CHARS),
        "error_details": details,
    }


def progress_count(value: object, name: str, maximum: int = BIGINT_MAX) -> int:
    """Read a count: an int, or a float without a fractional part, 0 to ``maximum``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of 0 or more, got {value!r}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def json_object(value: object, name: str, job_id: int) -> dict[str, Any]:
    """Copy a mapping into plain JSON, turning values msgspec cannot encode into text.

    Doing this at call time keeps a bad value from failing its batch in the sender,
    where the batch would be retried until the reporter closes.
    """
    if not isinstance(value, Mapping):
        logger.warning(
            "%s of ingestion job %s must be a mapping; sending its text instead",
            name,
            job_id,
        )
        value = {"value": str(value)}
    try:
        encoded = msgspec.json.encode(dict(value), enc_hook=str)
    except (TypeError, ValueError) as exc:
        logger.warning(
            "%s of ingestion job %s cannot be encoded as JSON (%s); sending its text",
            name,
            job_id,
            exc,
        )
        encoded = msgspec.json.encode({"value": scrub(str(value))})
    result: dict[str, Any] = msgspec.json.decode(encoded)
    if len(encoded) > OBJECT_MAX_BYTES:
        result = _shrink(result, name, job_id)
    return result


def _shrink(value: dict[str, Any], name: str, job_id: int) -> dict[str, Any]:
    """Reduce an object over OBJECT_MAX_BYTES the way the tracker would store it."""
    logger.warning(
        "%s of ingestion job %s exceeds %d bytes as JSON; sending a reduced copy",
        name,
        job_id,
        OBJECT_MAX_BYTES,
    )
    note = f"{name} exceeded {OBJECT_MAX_BYTES} bytes as JSON"
    if name != "error_details":
        return {"truncated": note}
    essentials = {key: value[key] for key in _ESSENTIAL_DETAILS if key in value}
    if isinstance(essentials.get("traceback"), str):
        essentials["traceback"] = cut_traceback(essentials["traceback"])
    return {**essentials, "truncated": note}
