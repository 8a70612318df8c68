"""Exceptions raised by the tracker clients.

The query and worker clients raise these from their request methods::

    TrackerError                 any failed request to the tracker
    ├── TrackerConnectionError   the tracker was unreachable, or the request timed out
    ├── InvalidResponse          a 2xx response whose body does not decode
    └── TrackerHTTPError         a 4xx or 5xx response; raised as is for other statuses
        ├── BadRequest           400: invalid input, the detail names the field
        ├── Unauthorized         401: missing or wrong bearer token
        ├── Forbidden            403: token of the other scope (api or worker)
        ├── JobNotFound          404: unknown job, or a job of another collection
        ├── Conflict             409: the job's status does not allow the action
        ├── PayloadTooLarge      413: request body over the tracker's limit
        └── ServiceUnavailable   503: database down or retries not configured

    JobCancelled                 raised by JobReporter.raise_if_cancelled()

JobCancelled is an ``Exception`` but not a ``TrackerError``: it tells plugin code to
stop, while a TrackerError says that talking to the tracker failed, and an ``except
TrackerError`` around a query must not swallow a cancel. Reporter methods never raise
any of these; they log instead.
"""

from __future__ import annotations

import httpx
import msgspec

_DETAIL_MAX_CHARS = 500


class TrackerError(Exception):
    """Failed request to the tracker, with the httpx ``request`` once one was built."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class TrackerConnectionError(TrackerError):
    """Connection failure or timeout before the tracker responded."""


class InvalidResponse(TrackerError):
    """Response with a 2xx status and a body that could not be decoded."""


class TrackerHTTPError(TrackerError):
    """Response with a 4xx or 5xx status.

    ``detail`` is the ``detail`` of the tracker's JSON error body, or the start of any
    other body.
    """

    def __init__(
        self, message: str, *, request: httpx.Request, response: httpx.Response
    ) -> None:
        super().__init__(message, request=request)
        self.response = response
        self.status_code = response.status_code
        self.detail = error_detail(response)


class BadRequest(TrackerHTTPError):
    """400: a request value is invalid; the detail names it and the allowed values."""


class Unauthorized(TrackerHTTPError):
    """401: the bearer token is missing or wrong."""


class Forbidden(TrackerHTTPError):
    """403: the token belongs to the other scope (``api`` or ``worker``)."""


class JobNotFound(TrackerHTTPError):
    """404: no such job, or the job belongs to another collection."""


class Conflict(TrackerHTTPError):
    """409: the job's current status does not allow the action."""


class PayloadTooLarge(TrackerHTTPError):
    """413: the request body exceeds the tracker's ``TRACKER_MAX_BODY_BYTES``."""


class ServiceUnavailable(TrackerHTTPError):
    """503: the tracker's database is unreachable or retries are not configured.

    ``retry_after`` is the ``Retry-After`` header in seconds, or None when the tracker
    sent none because waiting will not help.
    """

    def __init__(
        self, message: str, *, request: httpx.Request, response: httpx.Response
    ) -> None:
        super().__init__(message, request=request, response=response)
        self.retry_after = _retry_after(response)


class JobCancelled(Exception):
    """Signal that the tracker requested a cancel, so the plugin should stop."""

    def __init__(self, job_id: int | None = None) -> None:
        subject = "The ingestion job" if job_id is None else f"Ingestion job {job_id}"
        super().__init__(f"{subject} was cancelled in the tracker; stop working on it")
        self.job_id = job_id


_ERRORS_BY_STATUS: dict[int, type[TrackerHTTPError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: JobNotFound,
    409: Conflict,
    413: PayloadTooLarge,
    503: ServiceUnavailable,
}


def error_for_response(response: httpx.Response) -> TrackerHTTPError:
    """Build the exception for a 4xx or 5xx response, with its detail in the message."""
    request = response.request
    kind = _ERRORS_BY_STATUS.get(response.status_code, TrackerHTTPError)
    message = (
        f"{request.method} {request.url} returned {response.status_code} "
        f"{response.reason_phrase}: {error_detail(response)}"
    )
    return kind(message, request=request, response=response)


def error_detail(response: httpx.Response) -> str:
    """Return the ``detail`` of a JSON error body, or the start of any other body."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    text = response.text.strip()
    return text[:_DETAIL_MAX_CHARS] if text else response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    """Read ``Retry-After`` given in seconds; an HTTP date is ignored."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
