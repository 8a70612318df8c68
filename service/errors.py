"""Domain errors and their one mapping to HTTP responses ``{status_code, detail}``."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.store.engine import DISCONNECT_ERRORS

logger = structlog.get_logger(__name__)


class TrackerError(Exception):
    """Base of every error the service returns as a 4xx or 503 response."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(TrackerError):
    """A request value is outside what the endpoint allows."""

    status_code = 400


class JobNotFound(TrackerError):
    """No job with this id, or not in the collection named by the path."""

    status_code = 404

    def __init__(self, job_id: int, collection_id: int | None = None) -> None:
        where = "" if collection_id is None else f" in collection {collection_id}"
        super().__init__(f"Ingestion job {job_id} not found{where}")
        self.job_id = job_id


class StateConflict(TrackerError):
    """The job's current status does not allow the requested action."""

    status_code = 409


class ServiceUnavailable(TrackerError):
    """A dependency (the database, the backend configuration) is not available.

    ``retry_after`` is in seconds, or None when waiting will not help.
    """

    status_code = 503

    def __init__(self, detail: str, *, retry_after: int | None = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


# Allowed values of enumerated request fields, for messages about a bad value.
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "type": (
        "started",
        "progress",
        "heartbeat",
        "completed",
        "failed",
        "cancelled",
        "deleted",
    ),
    "source": ("file", "url", "base"),
    "status": ("pending", "processing"),
    "sort_by": (
        "created_at",
        "updated_at",
        "status",
        "original_filename",
        "file_size",
        "processing_started_at",
    ),
    "sort_order": ("asc", "desc"),
}

_PATH_IN_MESSAGE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _describe(item: dict[str, Any]) -> str:
    """Turn one Litestar/msgspec validation item into a sentence naming the field."""
    message = str(item.get("message", "invalid value"))
    key = item.get("key")
    source = getattr(item.get("source"), "value", item.get("source"))
    match = _PATH_IN_MESSAGE.search(message)
    if match:
        field = match.group("path").lstrip(".") or "body"
        message = message[: match.start()]
    elif key:
        field = f"{source} parameter {key}" if source in {"query", "path"} else str(key)
    else:
        field = "body"
    if field == "data" and message == repr("data"):
        # Litestar reports an empty body as a KeyError on the handler's ``data``.
        return "Missing request body: send a JSON object"
    text = f"Invalid {field}: {message}"
    name = field.rsplit(".", 1)[-1].rsplit(" ", 1)[-1]
    if "enum value" in message and name in ALLOWED_VALUES:
        text += "; allowed values: " + ", ".join(ALLOWED_VALUES[name])
    return text


def _body(status_code: int, detail: str) -> dict[str, Any]:
    return {"status_code": status_code, "detail": detail}


def handle_tracker_error(
    request: Request[Any, Any, Any], exc: TrackerError
) -> Response[Any]:
    """Render a domain error."""
    retry_after = getattr(exc, "retry_after", None)
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return Response(
        _body(exc.status_code, exc.detail),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def handle_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    """Render a validation failure with every bad field named in ``detail``."""
    items = exc.extra if isinstance(exc.extra, list) else []
    sentences = [_describe(item) for item in items if isinstance(item, dict)]
    detail = "; ".join(sentences) if sentences else str(exc.detail)
    logger.info("request_rejected", path=request.url.path, detail=detail)
    return Response(_body(400, detail), status_code=400, media_type=MediaType.JSON)


def _http_detail(request: Request[Any, Any, Any], exc: HTTPException) -> str:
    """Reword Litestar's generic messages so that they name the value or the limit."""
    if isinstance(exc.__cause__, SerializationException):
        return f"Invalid JSON in request body: {exc.detail}"
    if exc.status_code == 413:
        limit = request.app.state.settings.max_body_bytes
        return f"Request body is larger than the limit of {limit} bytes"
    if isinstance(exc, NotFoundException):
        return f"No endpoint matches {request.method} {request.url.path}"
    return str(exc.detail)


def handle_http_error(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[Any]:
    """Render Litestar's own HTTP errors (401, 403, 404, 405, 413) in one shape."""
    return Response(
        _body(exc.status_code, _http_detail(request, exc)),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=exc.headers,
    )


def handle_database_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Any]:
    """Return 503 when PostgreSQL is unreachable, and 500 for other database errors."""
    unreachable = isinstance(
        exc,
        (
            OperationalError,
            InterfaceError,
            PoolTimeoutError,
            *DISCONNECT_ERRORS,
        ),
    )
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        unreachable = True
    if unreachable:
        logger.warning("database_unavailable", path=request.url.path, error=str(exc))
        return handle_tracker_error(
            request,
            ServiceUnavailable("The database is unavailable; try again shortly"),
        )
    return handle_unexpected_error(request, exc)


def handle_transaction_conflict(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Any]:
    """Return 503 for a deadlock or serialization failure, which a retry resolves."""
    logger.warning("transaction_conflict", path=request.url.path, error=str(exc))
    return handle_tracker_error(
        request,
        ServiceUnavailable(
            "A concurrent update conflicted with this request; send it again",
            retry_after=1,
        ),
    )


def handle_unexpected_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Any]:
    """Log a bug with its traceback and return a plain 500."""
    logger.error("request_failed", path=request.url.path, exc_info=exc)
    return Response(
        _body(500, "Internal server error"), status_code=500, media_type=MediaType.JSON
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    TrackerError: handle_tracker_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_error,
    DBAPIError: handle_database_error,
    PoolTimeoutError: handle_database_error,
    OSError: handle_database_error,
    asyncpg.PostgresConnectionError: handle_database_error,
    asyncpg.exceptions.OperatorInterventionError: handle_database_error,
    asyncpg.exceptions.TransactionRollbackError: handle_transaction_conflict,
    asyncpg.InterfaceError: handle_database_error,
    Exception: handle_unexpected_error,
}
