"""Sources of video transcripts for youtube_transcript_ingest."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")


class TranscriptSource(Protocol):
    """Source of the plain text of a video's transcript."""

    def fetch(self, video_id: str, language: str) -> str:
        """Return the transcript of one video."""


def video_id_from(value: str) -> str:
    """Return the 11-character video id of an id or a YouTube watch or short URL."""
    candidate = value.strip()
    if "/" in candidate:
        parts = urlsplit(candidate)
        query_id = parse_qs(parts.query).get("v", [""])[0]
        candidate = query_id or parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not VIDEO_ID.fullmatch(candidate):
        raise ValueError(f"{value!r} is not a YouTube video id or video URL")
    return candidate


class DirectoryTranscriptSource:
    """Transcripts stored as ``<video_id>.txt`` files in one directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self, video_id: str, language: str) -> str:
        # The id is checked against VIDEO_ID, so it cannot leave the directory.
        file = self.path / f"{video_id_from(video_id)}.txt"
        if not file.is_file():
            raise FileNotFoundError(f"No transcript file {file} for video {video_id}")
        return file.read_text(encoding="utf-8")


class YouTubeTranscriptApiSource:
    """Transcripts from YouTube through the optional youtube_transcript_api package."""

    def fetch(self, video_id: str, language: str) -> str:
        try:
            module: Any = importlib.import_module("youtube_transcript_api")
        except ImportError:
            raise RuntimeError(
                "youtube_transcript_ingest needs the youtube_transcript_api package. "
                "Install it, or set BACKEND_TRANSCRIPT_DIR to a directory of "
                "<video_id>.txt transcripts"
            ) from None
        # NOTE: written against the 1.x API (YouTubeTranscriptApi().fetch); this path
        # has not been run here because the package is not installed.
        transcript = module.YouTubeTranscriptApi().fetch(video_id, languages=[language])
        return " ".join(snippet.text for snippet in transcript)


def transcript_source(directory: Path | None) -> TranscriptSource:
    """Return the directory source if a directory is set, else the YouTube one."""
    if directory is not None:
        return DirectoryTranscriptSource(directory)
    return YouTubeTranscriptApiSource()
