"""Build and send a forwarded retry to the backend's ingest API."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec
from sqlalchemy import RowMapping

# 408 and 429 ask the client to come back later, so they are retried like a 5xx.
RETRYABLE_STATUS = frozenset({408, 429})
DEFAULT_PORTS = {"http": 80, "https": 443}


class ForwardResult(msgspec.Struct, kw_only=True):
    """Outcome of one forwarding try."""

    accepted: bool
    retryable: bool
    error: str | None = None


class Rejected(Exception):
    """The retry cannot be forwarded, and trying again will not help."""


class TryLater(Exception):
    """The backend failed in a way that another try may get past."""


def origin(url: str) -> tuple[str, str, int]:
    """Return scheme, host and port of ``url``, filling in the default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


class BackendForwarder:
    """Sends retries to the backend's ingest endpoints over one HTTP client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        token: str | None,
        *,
        max_file_bytes: int,
    ) -> None:
        self._client = client
        self._max_file_bytes = max_file_bytes
        self._base_url = base_url.rstrip("/")
        self._token = token

    def headers(self, job: RowMapping, attempt: int) -> dict[str, str]:
        """Return headers that let a tracker-aware worker report into the same job."""
        headers = {
            "Idempotency-Key": f"ingestion-job-{job['id']}-attempt-{attempt}",
            "X-Ingestion-Job-Id": str(job["id"]),
            "X-Ingestion-Attempt": str(attempt),
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def forward(self, job: RowMapping, attempt: int) -> ForwardResult:
        """Send the job's ingest request once and classify the response."""
        try:
            response = await self._send(job, attempt)
        except Rejected as exc:
            return ForwardResult(accepted=False, retryable=False, error=str(exc))
        except TryLater as exc:
            return ForwardResult(accepted=False, retryable=True, error=str(exc))
        except httpx.TimeoutException as exc:
            return ForwardResult(
                accepted=False,
                retryable=True,
                error=f"the backend timed out ({type(exc).__name__})",
            )
        except httpx.TransportError as exc:
            return ForwardResult(
                accepted=False,
                retryable=True,
                error=f"the backend could not be reached or dropped the connection "
                f"({type(exc).__name__}: {exc or 'no detail'})",
            )
        return classify(response)

    async def _send(self, job: RowMapping, attempt: int) -> httpx.Response:
        collection = f"{self._base_url}/collections/{job['collection_id']}"
        headers = self.headers(job, attempt)
        params = job["plugin_params"]
        if job["source"] == "url":
            body = {
                "urls": urls_to_ingest(job),
                "plugin_name": job["plugin_name"],
                "plugin_params": params,
            }
            return await self._client.post(
                f"{collection}/ingest-url", json=body, headers=headers
            )
        if job["source"] == "base":
            body = {"plugin_name": job["plugin_name"], "plugin_params": params}
            return await self._client.post(
                f"{collection}/ingest-base", json=body, headers=headers
            )

        content = await self._download(job)
        name = (
            job["original_filename"]
            or PurePosixPath(urlsplit(job["file_url"]).path).name
        )
        files = {
            "file": (
                name or "file",
                content,
                job["content_type"] or "application/octet-stream",
            )
        }
        data = {"plugin_name": job["plugin_name"], "plugin_params": json.dumps(params)}
        return await self._client.post(
            f"{collection}/ingest-file", files=files, data=data, headers=headers
        )

    async def _download(self, job: RowMapping) -> bytes:
        """Fetch the stored file, only from the backend's own origin."""
        if not job["file_url"]:
            raise Rejected("the job has no file_url to re-upload the file from")
        # A path without scheme and host is the backend's own, as in an HTML link.
        file_url = urljoin(self._base_url + "/", job["file_url"])
        try:
            same_origin = origin(file_url) == origin(self._base_url)
        except ValueError as exc:  # .port raises unless the port is in 0-65535
            raise Rejected(f"file_url {file_url!r} is not a valid URL: {exc}") from None
        if not same_origin:
            scheme, host, port = origin(self._base_url)
            raise Rejected(
                f"file_url {file_url} is not on the backend's origin "
                f"{scheme}://{host}:{port}; "
                "only files stored by the backend itself are re-uploaded"
            )
        auth = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with self._client.stream("GET", file_url, headers=auth) as response:
                if not response.is_success:
                    await response.aread()
                    result = classify(response)
                    message = f"downloading the file failed: {result.error}"
                    raise TryLater(message) if result.retryable else Rejected(message)
                return await self._read_capped(response, file_url)
        except httpx.InvalidURL as exc:
            raise Rejected(f"file_url {file_url!r} is not a valid URL: {exc}") from None

    async def _read_capped(self, response: httpx.Response, file_url: str) -> bytes:
        """Read the file into memory, rejecting it once it exceeds the size limit."""
        content = bytearray()
        async for chunk in response.aiter_bytes():
            content += chunk
            if len(content) > self._max_file_bytes:
                raise Rejected(
                    f"the file at {file_url} exceeds TRACKER_RETRY_MAX_FILE_BYTES "
                    f"({self._max_file_bytes} bytes), so it is not re-uploaded"
                )
        return bytes(content)


def urls_to_ingest(job: RowMapping) -> list[str]:
    """Return the URLs a url job re-submits: plugin_params.urls, else its file_url."""
    urls = job["plugin_params"].get("urls")
    if urls is None:
        urls = [job["file_url"]] if job["file_url"] else []
    if not isinstance(urls, list) or not urls:
        raise Rejected("plugin_params.urls must be a non-empty list of URLs")
    if not all(isinstance(url, str) and url for url in urls):
        raise Rejected("plugin_params.urls must contain only non-empty strings")
    return urls


def classify(response: httpx.Response) -> ForwardResult:
    """Sort an HTTP response into accepted, worth retrying, or rejected."""
    if response.is_success:
        return ForwardResult(accepted=True, retryable=False)
    retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
    verb = "failed" if retryable else "rejected it"
    request = response.request
    status = response.status_code
    error = f"the backend {verb} with HTTP {status} ({request.method} {request.url})"
    snippet = response.text[:300].strip()
    if snippet:
        error += f": {snippet}"
    return ForwardResult(accepted=False, retryable=retryable, error=error)
