"""Ingest plugins, which report the way the KB server's plugins do.

A plugin is a blocking function run in a worker thread. It hands
``reporter.progress`` around as the KB server's ``progress_callback(current, total,
message)``, names its stage with ``reporter.stage`` and calls
``reporter.raise_if_cancelled`` between steps, so a cancel in the tracker stops it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from markitdown import MarkItDown, StreamInfo

from examples.ingest_backend.chunking import chunk_options, split_text
from examples.ingest_backend.transcripts import TranscriptSource, video_id_from

# Upper bound of markitdown_ingest's delay_per_chunk, which exists for cancel demos.
MAX_DELAY_PER_CHUNK_SECONDS = 5.0


class Reporter(Protocol):
    """The part of the SDK's reporter that plugins use."""

    def progress(self, current: int, total: int, message: str | None = None) -> None:
        """Report progress."""

    def stage(self, name: str) -> None:
        """Name the current stage."""

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled if the tracker requested a cancel."""


@dataclass
class PluginInput:
    """Input of one plugin run: params, the stored file or URLs, the transcripts."""

    params: dict[str, Any]
    transcripts: TranscriptSource
    file_path: Path | None = None
    urls: list[str] = field(default_factory=list)
    fetch_timeout_seconds: float = 10.0


@dataclass
class PluginResult:
    """The outcome that the completed event reports."""

    document_count: int
    processing_stats: dict[str, Any]


class StageTimer:
    """Stage names and durations in seconds, reported as ``processing_stats``."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._reporter.raise_if_cancelled()
        self._reporter.stage(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 6)


def markitdown_ingest(job: PluginInput, reporter: Reporter) -> PluginResult:
    """Convert a stored file (PDF, DOCX, HTML, Markdown) with markitdown, chunk it."""
    if job.file_path is None:
        raise ValueError(
            "markitdown_ingest needs a file, so use the ingest-file endpoint"
        )
    size, overlap = chunk_options(job.params)
    delay = _delay_per_chunk(job.params)
    timer = StageTimer(reporter)

    with timer.stage("convert"):
        reporter.progress(0, 1, f"Converting {job.file_path.name}")
        text = MarkItDown(enable_plugins=False).convert_local(job.file_path).markdown
    with timer.stage("chunk"):
        chunks = split_text(text, size, overlap)
        _walk_chunks(chunks, reporter, delay)
    reporter.stage("complete")

    return PluginResult(len(chunks), _stats(timer, text, size, overlap))


def url_ingest(job: PluginInput, reporter: Reporter) -> PluginResult:
    """Fetch each URL over HTTP, convert the page to text and chunk it."""
    if not job.urls:
        raise ValueError("url_ingest needs at least one URL in urls")
    size, overlap = chunk_options(job.params)
    timer = StageTimer(reporter)
    converter = MarkItDown(enable_plugins=False)

    texts = []
    with timer.stage("fetch"), httpx.Client(timeout=job.fetch_timeout_seconds) as http:
        for index, url in enumerate(job.urls):
            reporter.raise_if_cancelled()
            texts.append(_fetch_text(http, converter, url))
            reporter.progress(index + 1, len(job.urls), f"Fetched {url}")
    with timer.stage("chunk"):
        chunks = [chunk for text in texts for chunk in split_text(text, size, overlap)]
    reporter.stage("complete")

    stats = _stats(timer, "".join(texts), size, overlap)
    stats["url_count"] = len(job.urls)
    return PluginResult(len(chunks), stats)


def youtube_transcript_ingest(job: PluginInput, reporter: Reporter) -> PluginResult:
    """Read the transcript of each video in ``video_ids`` and chunk it."""
    videos = job.params.get("video_ids")
    if not isinstance(videos, list) or not videos:
        raise ValueError("youtube_transcript_ingest needs a non-empty list video_ids")
    ids = [video_id_from(str(video)) for video in videos]
    language = str(job.params.get("language", "en"))
    size, overlap = chunk_options(job.params)
    timer = StageTimer(reporter)

    texts = []
    with timer.stage("transcribe"):
        for index, video_id in enumerate(ids):
            reporter.raise_if_cancelled()
            texts.append(job.transcripts.fetch(video_id, language))
            reporter.progress(index + 1, len(ids), f"Read transcript of {video_id}")
    with timer.stage("chunk"):
        chunks = [chunk for text in texts for chunk in split_text(text, size, overlap)]
    reporter.stage("complete")

    stats = _stats(timer, "".join(texts), size, overlap)
    stats["video_count"] = len(ids)
    return PluginResult(len(chunks), stats)


def _fetch_text(http: httpx.Client, converter: MarkItDown, url: str) -> str:
    if httpx.URL(url).scheme not in {"http", "https"}:
        raise ValueError(f"url_ingest fetches only http and https URLs, got {url!r}")
    response = http.get(url)
    response.raise_for_status()
    mimetype = response.headers.get("content-type", "text/html").split(";")[0]
    info = StreamInfo(mimetype=mimetype, charset=response.encoding, url=url)
    return converter.convert_stream(
        io.BytesIO(response.content), stream_info=info
    ).markdown


def _walk_chunks(chunks: list[str], reporter: Reporter, delay: float) -> None:
    """Report progress per chunk, which is where a real backend would embed it."""
    for index in range(len(chunks)):
        reporter.raise_if_cancelled()
        if delay:
            time.sleep(delay)
        reporter.progress(index + 1, len(chunks), f"Chunk {index + 1} of {len(chunks)}")


def _delay_per_chunk(params: dict[str, Any]) -> float:
    delay = params.get("delay_per_chunk", 0)
    if not isinstance(delay, int | float) or isinstance(delay, bool):
        raise ValueError(f"delay_per_chunk must be a number of seconds, got {delay!r}")
    if not 0 <= delay <= MAX_DELAY_PER_CHUNK_SECONDS:
        raise ValueError(
            f"delay_per_chunk must be from 0 to {MAX_DELAY_PER_CHUNK_SECONDS} "
            f"seconds, got {delay}"
        )
    return float(delay)


def _stats(timer: StageTimer, text: str, size: int, overlap: int) -> dict[str, Any]:
    return {
        "stage_seconds": dict(timer.seconds),
        "characters": len(text),
        "chunk_size": size,
        "chunk_overlap": overlap,
    }


PluginFunction = Callable[[PluginInput, Reporter], PluginResult]

# Each plugin with the source, and so the endpoint, that it serves.
PLUGINS: dict[str, tuple[str, PluginFunction]] = {
    "markitdown_ingest": ("file", markitdown_ingest),
    "url_ingest": ("url", url_ingest),
    "youtube_transcript_ingest": ("base", youtube_transcript_ingest),
}
