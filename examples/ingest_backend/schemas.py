"""Request and response bodies of the backend's collection and ingest endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.datastructures import UploadFile


class CollectionCreate(msgspec.Struct):
    """Request body of POST /collections."""

    name: str


class Collection(msgspec.Struct):
    """A collection of this backend, kept in memory."""

    id: int
    name: str


class IngestUrl(msgspec.Struct):
    """Request body of POST /collections/{id}/ingest-url."""

    urls: list[str]
    plugin_name: str
    plugin_params: dict[str, Any] = msgspec.field(default_factory=dict)


class IngestBase(msgspec.Struct):
    """Request body of POST /collections/{id}/ingest-base."""

    plugin_name: str
    plugin_params: dict[str, Any] = msgspec.field(default_factory=dict)


@dataclass
class IngestFileForm:
    """Multipart form of POST /collections/{id}/ingest-file."""

    file: UploadFile
    plugin_name: str
    plugin_params: str = "{}"
