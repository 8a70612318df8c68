"""HTTP API of the reference backend: collections, ingest endpoints, stored files."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import msgspec
import structlog
from ingestion_tracker_client import (
    AsyncWorkerClient,
    ServiceUnavailable,
    TrackerConnectionError,
    TrackerError,
)
from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    ServiceUnavailableException,
)
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, MultipartBody, PathParameter
from litestar.response import File

from examples.ingest_backend.config import BackendConfig
from examples.ingest_backend.plugins import PLUGINS, PluginInput
from examples.ingest_backend.runner import IngestAccepted, IngestRequest, JobRunner
from examples.ingest_backend.schemas import (
    Collection,
    CollectionCreate,
    IngestBase,
    IngestFileForm,
    IngestUrl,
)
from examples.ingest_backend.transcripts import transcript_source

logger = structlog.get_logger(__name__)

STORED_NAME = re.compile(r"[0-9a-f]{32}(\.[A-Za-z0-9]{1,10})?")
CollectionId = Annotated[int, PathParameter(ge=1, description="Collection id.")]


class BackendState:
    """Collections, the job runner and the configuration of one app."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.collections: dict[int, Collection] = {}
        self._ids = itertools.count(1)
        self.worker = AsyncWorkerClient(
            base_url=config.tracker_url, token=config.tracker_worker_token
        )
        self.runner = JobRunner(
            self.worker, flush_interval=config.flush_interval_seconds
        )

    def add_collection(self, name: str) -> Collection:
        collection = Collection(id=next(self._ids), name=name)
        self.collections[collection.id] = collection
        return collection

    def collection(self, collection_id: int) -> Collection:
        found = self.collections.get(collection_id)
        if found is None:
            raise NotFoundException(f"Collection {collection_id} was not found")
        return found

    def plugin_input(self, params: dict[str, Any], **fields: Any) -> PluginInput:
        return PluginInput(
            params=params,
            transcripts=transcript_source(self.config.transcript_dir),
            fetch_timeout_seconds=self.config.fetch_timeout_seconds,
            **fields,
        )


def _state(request: Request[Any, Any, Any]) -> BackendState:
    state: BackendState = request.app.state.backend
    return state


def check_plugin(plugin_name: str, source: str) -> None:
    """Raise a 400 unless ``plugin_name`` is a plugin of the ``source`` endpoint."""
    allowed = sorted(name for name, (kind, _) in PLUGINS.items() if kind == source)
    if PLUGINS.get(plugin_name, ("", None))[0] != source:
        raise ClientException(
            f"Unknown plugin_name {plugin_name!r} for ingest-{source}. Allowed: "
            + ", ".join(allowed)
        )


def parse_params(text: str) -> dict[str, Any]:
    """Decode the plugin_params form field, which must be a JSON object."""
    try:
        params = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ClientException(f"plugin_params is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ClientException("plugin_params must be a JSON object")
    return params


async def accept(
    request: Request[Any, Any, Any], ingest: IngestRequest
) -> Response[IngestAccepted]:
    """Submit the job: 202 if it is new, 200 for a repeated Idempotency-Key."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        accepted, new = await _state(request).runner.submit(ingest, headers)
    except ValueError as exc:
        raise ClientException(str(exc)) from None
    except TrackerError as exc:
        logger.warning("job_registration_failed", error=str(exc))
        detail = (
            f"Registering the job with the ingestion tracker failed: {exc}. Check "
            "TRACKER_URL and TRACKER_WORKER_TOKEN."
        )
        if isinstance(exc, TrackerConnectionError | ServiceUnavailable):
            raise ServiceUnavailableException(detail) from None
        raise HTTPException(detail, status_code=502) from None
    return Response(accepted, status_code=202 if new else 200)


@post("/collections", status_code=201)
async def create_collection(
    request: Request[Any, Any, Any], data: JSONBody[CollectionCreate]
) -> Collection:
    return _state(request).add_collection(data.name)


@post("/collections/{collection_id:int}/ingest-file")
async def ingest_file(
    request: Request[Any, Any, Any],
    collection_id: CollectionId,
    data: MultipartBody[IngestFileForm],
) -> Response[IngestAccepted]:
    state = _state(request)
    collection = state.collection(collection_id)
    check_plugin(data.plugin_name, "file")
    params = parse_params(data.plugin_params)

    # NOTE: a repeated Idempotency-Key stores the upload again before the runner
    # finds the key, so the repeat leaves one unused file in BACKEND_DATA_DIR.
    content = await data.file.read()
    path = await store_file(
        state.config.data_dir, collection_id, data.file.filename, content
    )
    ingest = IngestRequest(
        collection_id=collection_id,
        plugin_name=data.plugin_name,
        source="file",
        plugin_input=state.plugin_input(params, file_path=path),
        fields={
            "collection_name": collection.name,
            "original_filename": data.file.filename,
            "file_path": str(path),
            "file_url": f"{state.config.public_url}/files/{collection_id}/{path.name}",
            "file_size": len(content),
            "content_type": data.file.content_type or "application/octet-stream",
            "external_id": path.name,
        },
    )
    return await accept(request, ingest)


async def store_file(
    data_dir: Path, collection_id: int, filename: str, content: bytes
) -> Path:
    """Write an upload under a fresh name that keeps only a safe suffix."""
    suffix = Path(filename).suffix
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix):
        suffix = ""
    path = data_dir / str(collection_id) / f"{uuid.uuid4().hex}{suffix.lower()}"
    await asyncio.to_thread(_write, path, content)
    return path


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@post("/collections/{collection_id:int}/ingest-url")
async def ingest_url(
    request: Request[Any, Any, Any],
    collection_id: CollectionId,
    data: JSONBody[IngestUrl],
) -> Response[IngestAccepted]:
    state = _state(request)
    collection = state.collection(collection_id)
    check_plugin(data.plugin_name, "url")
    if not data.urls:
        raise ClientException("urls must contain at least one URL")

    # The tracker re-submits plugin_params.urls when it forwards a retry.
    params = {**data.plugin_params, "urls": data.urls}
    ingest = IngestRequest(
        collection_id=collection_id,
        plugin_name=data.plugin_name,
        source="url",
        plugin_input=state.plugin_input(params, urls=data.urls),
        fields={
            "collection_name": collection.name,
            "original_filename": data.urls[0],
            "file_url": data.urls[0],
            "content_type": "text/html",
            "external_id": f"url-{uuid.uuid4().hex}",
        },
    )
    return await accept(request, ingest)


@post("/collections/{collection_id:int}/ingest-base")
async def ingest_base(
    request: Request[Any, Any, Any],
    collection_id: CollectionId,
    data: JSONBody[IngestBase],
) -> Response[IngestAccepted]:
    state = _state(request)
    collection = state.collection(collection_id)
    check_plugin(data.plugin_name, "base")

    ingest = IngestRequest(
        collection_id=collection_id,
        plugin_name=data.plugin_name,
        source="base",
        plugin_input=state.plugin_input(data.plugin_params),
        fields={
            "collection_name": collection.name,
            "original_filename": data.plugin_name,
            "external_id": f"base-{uuid.uuid4().hex}",
        },
    )
    return await accept(request, ingest)


@get("/files/{collection_id:int}/{stored_name:str}")
async def stored_file(
    request: Request[Any, Any, Any],
    collection_id: CollectionId,
    stored_name: FromPath[str],
) -> File:
    """Serve an uploaded file, which the tracker downloads to re-upload on a retry."""
    path = _state(request).config.data_dir / str(collection_id) / stored_name
    if not STORED_NAME.fullmatch(stored_name) or not path.is_file():
        raise NotFoundException(f"File {stored_name} was not found")
    return File(path=path, filename=stored_name)


def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: reject a request without the bearer token, when one is configured."""
    expected = connection.app.state.backend.config.token
    if expected is None:
        return
    header = connection.headers.get("authorization", "")
    scheme, _space, token = header.partition(" ")
    valid = scheme.lower() == "bearer" and hmac.compare_digest(
        token.encode(), expected.encode()
    )
    if not valid:
        raise NotAuthorizedException("A valid bearer token is required")


def create_app(config: BackendConfig) -> Litestar:
    """Build the backend app; its lifespan owns the tracker client and plugin tasks."""
    state = BackendState(config)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        yield
        await state.runner.aclose()
        await state.worker.aclose()

    app = Litestar(
        route_handlers=[
            create_collection,
            ingest_file,
            ingest_url,
            ingest_base,
            stored_file,
        ],
        guards=[require_token],
        lifespan=[lifespan],
        # Uploads up to 100 MiB, the size the tracker re-uploads on a retry by default.
        request_max_body_size=100 * 1024 * 1024,
    )
    app.state.backend = state
    return app
