"""Chunk every text file under a directory and report each one to the ingestion tracker.

A minimal worker for the ingestion tracker that uses plain httpx. For each regular file
under DIR it registers a job with ``POST /ingestion-jobs``, reads the file as strict
UTF-8, splits it into overlapping chunks and reports ``started``, ``progress`` and then
``completed``, ``failed`` or ``cancelled`` to ``POST /ingestion-jobs/{id}/events``.
The chunks are counted and then discarded, because this example stores no documents.

Usage:
    python examples/ingest_files.py DIR COLLECTION_ID [--tracker-url http://127.0.0.1:8080]
        [--token TOKEN] [--chunk-size 1000] [--overlap 200] [--chunks-per-event 20]
        [--collection-name NAME]

``--token`` defaults to the environment variable TRACKER_WORKER_TOKEN. The walk is
sorted and does not follow symlinks. It skips hidden files and directories,
``__pycache__``, ``node_modules`` and anything that is not a regular file.

A file that cannot be read or decoded is reported as a failed job, and the walk goes on.
An HTTP error from the tracker, or a tracker that cannot be reached, stops the run with
exit status 1. Running the script again over the same DIR registers no new jobs, because
each job's ``external_id`` is the file's path relative to DIR. The tracker then returns
``applied: false`` for the events of jobs that have already finished, and the script
prints each of them.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import stat
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_TRACKER_URL = "http://127.0.0.1:8080"
TOKEN_ENV_VAR = "TRACKER_WORKER_TOKEN"  # noqa: S105 (a variable name, not a secret)
PLUGIN_NAME = "simple_chunker"
REQUEST_TIMEOUT_SECONDS = 10.0
# Skipped besides every hidden name (one starting with "."), such as .git or .venv.
SKIPPED_NAMES = frozenset({"__pycache__", "node_modules"})

JsonObject = dict[str, Any]


class TrackerError(Exception):
    """Failed tracker request.

    Raised on a connection error, a timeout, a 4xx or 5xx status or a malformed body.
    """


@dataclass(frozen=True)
class ChunkingOptions:
    """Chunk size and overlap in characters, and the chunks per progress event."""

    chunk_size: int
    overlap: int
    chunks_per_event: int


@dataclass(frozen=True)
class RunConfig:
    """Directory to ingest and the collection its jobs are registered under."""

    root: Path
    collection_id: int
    collection_name: str | None
    chunking: ChunkingOptions


@dataclass(frozen=True)
class EventResult:
    """Tracker's response to one event."""

    applied: bool
    reason: str | None
    cancel_requested: bool


@dataclass
class RunSummary:
    """Counts of files by outcome, chunks of completed files and events not applied."""

    files: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    chunks: int = 0
    events_not_applied: int = 0


def split_into_chunks(text: str, size: int, overlap: int) -> list[str]:
    """Split text into chunks of `size` characters that share `overlap` with the next.

    Every chunk but the last is exactly `size` characters long. The last chunk ends at
    the end of the text, so it can be shorter. Empty text has no chunks.

    Raises:
        ValueError: if size < 1, overlap < 0 or overlap >= size.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(
            f"overlap must be at least 0 and less than chunk size {size}, got {overlap}"
        )

    step = size - overlap
    chunks: list[str] = []
    for start in range(0, len(text), step):
        chunks.append(text[start : start + size])
        if start + size >= len(text):
            break
    return chunks


def iter_documents(
    root: Path, on_error: Callable[[OSError], None] | None = None
) -> Iterator[Path]:
    """Yield the regular files under root, depth first and sorted by name at each level.

    Symlinks are never followed or yielded. Hidden entries (a name starting with ".")
    and the names in SKIPPED_NAMES are skipped with everything below them.
    An OSError from listing a directory or from lstat is passed to on_error, and the
    walk goes on without that entry. Without on_error the error is raised.
    """
    try:
        entries = sorted(root.iterdir(), key=lambda path: path.name)
    except OSError as exc:
        _handle_walk_error(exc, on_error)
        return

    for path in entries:
        if path.name.startswith(".") or path.name in SKIPPED_NAMES:
            continue
        try:
            mode = path.lstat().st_mode
        except OSError as exc:
            _handle_walk_error(exc, on_error)
            continue
        if stat.S_ISDIR(mode):
            yield from iter_documents(path, on_error)
        elif stat.S_ISREG(mode):
            yield path


def _handle_walk_error(
    exc: OSError, on_error: Callable[[OSError], None] | None
) -> None:
    if on_error is None:
        raise exc
    on_error(exc)


def _error_detail(response: httpx.Response) -> str:
    """Return the `detail` of a tracker error body, or the start of any other body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text[:500]


def send_request(
    client: httpx.Client, path: str, body: JsonObject, label: str
) -> httpx.Response:
    """POST body to the tracker and return its 2xx response.

    Raises:
        TrackerError: naming `label` (the file) on a connection failure, a timeout or
            a 4xx or 5xx status.
    """
    try:
        response = client.post(path, json=body)
    except httpx.ConnectError as exc:
        raise TrackerError(
            f"{label}: the tracker is not reachable at {client.base_url} ({exc}). "
            "Start it with `make run`."
        ) from exc
    except httpx.TransportError as exc:
        raise TrackerError(
            f"{label}: POST {path} failed: {type(exc).__name__}: {exc}"
        ) from exc

    if response.is_error:
        message = (
            f"POST {path} returned {response.status_code}: {_error_detail(response)}"
        )
        if response.status_code in (401, 403):
            message += f" (check --token or {TOKEN_ENV_VAR})"
        raise TrackerError(f"{label}: {message}")
    return response


def parse_json_object(response: httpx.Response, label: str) -> JsonObject:
    """Return the response body, which must be a JSON object, or raise TrackerError."""
    path = response.request.url.path
    try:
        data = response.json()
    except ValueError as exc:
        raise TrackerError(
            f"{label}: POST {path} returned a body that is not JSON"
        ) from exc
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise TrackerError(f"{label}: POST {path} returned {kind}, not a JSON object")
    return data


def build_job_request(config: RunConfig, path: Path) -> JsonObject:
    """Build the `POST /ingestion-jobs` body for one file under config.root."""
    relative_path = path.relative_to(config.root).as_posix()
    content_type, _ = mimetypes.guess_type(path.name)
    body: JsonObject = {
        "collection_id": config.collection_id,
        "original_filename": relative_path,
        "file_path": str(path.absolute()),
        "file_size": path.lstat().st_size,
        "content_type": content_type or "application/octet-stream",
        "plugin_name": PLUGIN_NAME,
        "plugin_params": {
            "chunk_size": config.chunking.chunk_size,
            "chunk_overlap": config.chunking.overlap,
        },
        "source": "file",
        "external_id": relative_path,
    }
    if config.collection_name is not None:
        body["collection_name"] = config.collection_name
    return body


def register_job(
    client: httpx.Client, config: RunConfig, path: Path, label: str
) -> int:
    """Register the file as a job and return the id of the new or existing job.

    Raises:
        OSError: if lstat fails on the file, for example because it was deleted.
        TrackerError: if the tracker rejects the request or returns no job id.
    """
    request = build_job_request(config, path)
    response = send_request(client, "/ingestion-jobs", request, label)
    job = parse_json_object(response, label)
    job_id = job.get("id")
    if not isinstance(job_id, int):
        raise TrackerError(
            f"{label}: POST /ingestion-jobs returned a job without an integer id"
        )
    # The tracker returns 200, not 201, when this external_id is already registered.
    if response.status_code == 200:
        print(
            f"{label}: job {job_id} was registered before, status {job.get('status')}"
        )
    return job_id


class JobReporter:
    """Sender of one job's events, which numbers them with `seq` from 1 in each run.

    NOTE: a job left in `processing` by an interrupted run has already applied low seq
    values, so a re-run's first events come back as duplicates until seq passes them.
    """

    def __init__(
        self, client: httpx.Client, job_id: int, label: str, summary: RunSummary
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.label = label
        self.summary = summary
        self.seq = 0

    def send(self, event_type: str, **fields: Any) -> EventResult:
        """Send one event and return the response, printing it if it was not applied."""
        self.seq += 1
        event: JsonObject = {"type": event_type, "seq": self.seq, **fields}
        path = f"/ingestion-jobs/{self.job_id}/events"
        data = parse_json_object(
            send_request(self.client, path, event, self.label), self.label
        )
        result = EventResult(
            applied=bool(data.get("applied")),
            reason=data.get("reason"),
            cancel_requested=bool(data.get("cancel_requested")),
        )
        if not result.applied:
            self.summary.events_not_applied += 1
            print(
                f"{self.label}: job {self.job_id} did not apply {event_type} event"
                f" seq {self.seq} (reason: {result.reason})"
            )
        return result


def read_text(path: Path) -> str:
    """Read the file as strict UTF-8, keeping line endings as they are on disk."""
    return path.read_bytes().decode("utf-8")


def build_failed_fields(exc: Exception, stage: str) -> JsonObject:
    """Build the fields of a `failed` event from the exception that stopped the file."""
    return {
        "error_message": str(exc),
        "error_details": {
            "exception_type": type(exc).__name__,
            "traceback": "".join(traceback.format_exception(exc)),
            "stage": stage,
        },
    }


def report_chunks(
    reporter: JobReporter, chunks: list[str], chunks_per_event: int
) -> bool:
    """Send one progress event per batch of chunks, stopping early on a cancel request.

    Returns False if the tracker requested a cancel, and True otherwise.

    The last batch can be smaller than chunks_per_event, so the final progress event
    always has current == total.
    """
    total = len(chunks)
    for start in range(0, total, chunks_per_event):
        # A real plugin would embed and store this batch of chunks here.
        current = min(start + chunks_per_event, total)
        result = reporter.send(
            "progress",
            current=current,
            total=total,
            message=f"Chunked {current} of {total}",
        )
        if result.cancel_requested:
            return False
    return True


def ingest_file(
    client: httpx.Client, config: RunConfig, path: Path, summary: RunSummary
) -> None:
    """Register one file as a job, process it and count the outcome in summary."""
    label = path.relative_to(config.root).as_posix()
    try:
        job_id = register_job(client, config, path, label)
    except OSError as exc:
        print_walk_error(exc)
        return

    summary.files += 1
    process_file(JobReporter(client, job_id, label, summary), config.chunking, path)


def process_file(reporter: JobReporter, options: ChunkingOptions, path: Path) -> None:
    """Read and chunk the file of a registered job, reporting each step."""
    started_at = time.perf_counter()
    if reporter.send("started").cancel_requested:
        cancel_job(reporter)
        return

    text = read_or_report_failure(reporter, path)
    if text is None:
        return

    chunks = split_into_chunks(text, options.chunk_size, options.overlap)
    if not report_chunks(reporter, chunks, options.chunks_per_event):
        cancel_job(reporter)
        return
    seconds = time.perf_counter() - started_at
    complete_job(reporter, options, len(text), len(chunks), seconds)


def read_or_report_failure(reporter: JobReporter, path: Path) -> str | None:
    """Read the file's text, or send a `failed` event and return None if that fails."""
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        stage = "decode" if isinstance(exc, UnicodeDecodeError) else "read"
        reporter.send("failed", **build_failed_fields(exc, stage))
        print(f"{reporter.label}: job {reporter.job_id} failed at {stage}: {exc}")
        reporter.summary.failed += 1
        return None


def complete_job(
    reporter: JobReporter,
    options: ChunkingOptions,
    characters: int,
    chunk_count: int,
    seconds: float,
) -> None:
    """Send the `completed` event with the chunking statistics of the file."""
    stats = {
        "characters": characters,
        "chunk_size": options.chunk_size,
        "chunk_overlap": options.overlap,
        "seconds": round(seconds, 3),
    }
    message = f"Split {characters} characters into {count_noun(chunk_count, 'chunk')}"
    reporter.send(
        "completed", document_count=chunk_count, processing_stats=stats, message=message
    )
    chunks = count_noun(chunk_count, "chunk")
    print(f"{reporter.label}: job {reporter.job_id} completed, {chunks}")
    reporter.summary.completed += 1
    reporter.summary.chunks += chunk_count


def count_noun(count: int, noun: str) -> str:
    """Format "1 chunk" or "2 chunks"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def cancel_job(reporter: JobReporter) -> None:
    """Acknowledge a cancel that the tracker requested and stop the file."""
    reporter.send("cancelled")
    print(f"{reporter.label}: job {reporter.job_id} cancelled by the tracker")
    reporter.summary.cancelled += 1


def print_walk_error(exc: OSError) -> None:
    print(f"warning: skipping {exc.filename}: {exc.strerror or exc}", file=sys.stderr)


def run(client: httpx.Client, config: RunConfig) -> RunSummary:
    """Ingest every document under config.root, reporting to the tracker behind client.

    Raises:
        TrackerError: on the first request that the tracker rejects or never receives.
    """
    summary = RunSummary()
    for path in iter_documents(config.root, on_error=print_walk_error):
        ingest_file(client, config, path, summary)
    return summary


def format_summary(summary: RunSummary) -> str:
    return (
        f"files: {summary.files}, completed: {summary.completed}, "
        f"failed: {summary.failed}, cancelled: {summary.cancelled}, "
        f"chunks: {summary.chunks}, "
        f"events not applied: {summary.events_not_applied}"
    )


def positive_int(value: str) -> int:
    """Parse an argparse value that must be an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_int(value: str) -> int:
    """Parse an argparse value that must be an integer of at least 0."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Chunk every text file under DIR and report each file to the tracker"
            " as an ingestion job."
        )
    )
    parser.add_argument(
        "dir", metavar="DIR", type=Path, help="directory to walk recursively"
    )
    parser.add_argument(
        "collection_id",
        metavar="COLLECTION_ID",
        type=int,
        help="collection to register the jobs under",
    )
    parser.add_argument(
        "--tracker-url",
        default=DEFAULT_TRACKER_URL,
        help="base URL of the tracker (default: %(default)s)",
    )
    parser.add_argument(
        "--token",
        help=f"worker-scope bearer token (default: ${TOKEN_ENV_VAR}, or no token)",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=1000,
        help="characters per chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--overlap",
        type=non_negative_int,
        default=200,
        help=(
            "characters shared by consecutive chunks, less than --chunk-size"
            " (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--chunks-per-event",
        type=positive_int,
        default=20,
        help="chunks between two progress events (default: %(default)s)",
    )
    parser.add_argument(
        "--collection-name",
        help="collection name to store with each job (default: none)",
    )
    return parser


def parse_config(argv: Sequence[str] | None) -> tuple[RunConfig, str, str | None]:
    """Parse the command line into a RunConfig, the tracker URL and the token."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.overlap >= args.chunk_size:
        parser.error(
            f"--overlap ({args.overlap}) must be less than"
            f" --chunk-size ({args.chunk_size})"
        )
    if not args.dir.is_dir():
        parser.error(f"DIR {str(args.dir)!r} is not a directory")
    if not args.tracker_url.startswith(("http://", "https://")):
        parser.error(
            f"--tracker-url {args.tracker_url!r} must start with http:// or https://"
        )

    chunking = ChunkingOptions(args.chunk_size, args.overlap, args.chunks_per_event)
    config = RunConfig(
        args.dir.resolve(), args.collection_id, args.collection_name, chunking
    )
    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    return config, args.tracker_url, token


def main(argv: Sequence[str] | None = None) -> int:
    config, tracker_url, token = parse_config(argv)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(
        base_url=tracker_url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:
        try:
            summary = run(client, config)
        except TrackerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
