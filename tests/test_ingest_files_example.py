"""Unit tests of examples/ingest_files.py, with httpx.MockTransport as the tracker."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

SCRIPT_PATH = Path(__file__).resolve().parents[1] / "examples" / "ingest_files.py"


def load_script() -> ModuleType:
    # `examples` is not a package, so the script is loaded from its path. It must be in
    # sys.modules before it runs, because dataclasses look up the module of the class.
    spec = importlib.util.spec_from_file_location("ingest_files_example", SCRIPT_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ingest_files = load_script()


@dataclass
class FakeTracker:
    """MockTransport handler that registers jobs and records every request body."""

    register_status: int = 201
    event_response: Callable[[dict[str, Any]], httpx.Response] | None = None
    registrations: list[dict[str, Any]] = field(default_factory=list)
    events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    headers: list[httpx.Headers] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        body = json.loads(request.content)
        if request.url.path == "/ingestion-jobs":
            self.registrations.append(body)
            job_id = len(self.registrations)
            self.events[job_id] = []
            job = {"id": job_id, "status": "pending", "attempt": 1, **body}
            return httpx.Response(self.register_status, json=job)

        job_id = int(request.url.path.split("/")[2])
        self.events[job_id].append(body)
        if self.event_response is not None:
            return self.event_response(body)
        result: dict[str, Any] = {
            "applied": True,
            "reason": None,
            "cancel_requested": False,
            "job": {},
        }
        return httpx.Response(200, json=result)

    def events_of(self, original_filename: str) -> list[dict[str, Any]]:
        for job_id, registration in enumerate(self.registrations, start=1):
            if registration["original_filename"] == original_filename:
                return self.events[job_id]
        raise AssertionError(f"{original_filename} was never registered")


def make_config(
    root: Path, chunk_size: int = 1000, overlap: int = 200, chunks_per_event: int = 2
) -> Any:
    chunking = ingest_files.ChunkingOptions(chunk_size, overlap, chunks_per_event)
    return ingest_files.RunConfig(root.resolve(), 7, None, chunking)


def run_against(handler: Callable[[httpx.Request], httpx.Response], config: Any) -> Any:
    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8080") as client:
        return ingest_files.run(client, config)


def relative_documents(root: Path) -> list[str]:
    return [
        path.relative_to(root).as_posix() for path in ingest_files.iter_documents(root)
    ]


# split_into_chunks


def test_split_into_chunks_empty_text() -> None:
    assert ingest_files.split_into_chunks("", 10, 2) == []


def test_split_into_chunks_text_shorter_than_size() -> None:
    assert ingest_files.split_into_chunks("abc", 10, 2) == ["abc"]


def test_split_into_chunks_text_of_exact_size() -> None:
    assert ingest_files.split_into_chunks("abcd", 4, 2) == ["abcd"]


def test_split_into_chunks_shares_overlap() -> None:
    chunks = ingest_files.split_into_chunks("abcdefghij", 4, 2)

    assert chunks == ["abcd", "cdef", "efgh", "ghij"]


def test_split_into_chunks_short_last_chunk() -> None:
    chunks = ingest_files.split_into_chunks("abcdefgh", 4, 1)

    assert chunks == ["abcd", "defg", "gh"]


def test_split_into_chunks_no_chunk_inside_previous() -> None:
    # The second chunk already ends at the end of the text, so no third chunk "ef"
    # (wholly inside the second) may follow it.
    chunks = ingest_files.split_into_chunks("abcdef", 4, 2)

    assert chunks == ["abcd", "cdef"]


def test_split_into_chunks_zero_overlap_partitions() -> None:
    chunks = ingest_files.split_into_chunks("abcdefghij", 3, 0)

    assert chunks == ["abc", "def", "ghi", "j"]


@pytest.mark.parametrize(
    ("length", "size", "overlap"),
    [(1, 1, 0), (999, 10, 3), (1000, 10, 9), (2500, 1000, 200)],
)
def test_split_into_chunks_rebuilds_text(length: int, size: int, overlap: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    chunks = ingest_files.split_into_chunks(text, size, overlap)

    rebuilt = chunks[0] + "".join(chunk[overlap:] for chunk in chunks[1:])
    assert rebuilt == text
    for chunk in chunks[:-1]:
        assert len(chunk) == size
    for previous, following in itertools.pairwise(chunks):
        assert previous[size - overlap :] == following[:overlap]


@pytest.mark.parametrize(
    ("size", "overlap"), [(0, 0), (-1, 0), (4, -1), (4, 4), (4, 5)]
)
def test_split_into_chunks_invalid_arguments(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        ingest_files.split_into_chunks("abcdef", size, overlap)


# iter_documents


def test_iter_documents_sorted_and_recursive(tmp_path: Path) -> None:
    for name in ["b.txt", "a/z.txt", "a/b/c.txt", "c.md", "a.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    assert relative_documents(tmp_path) == [
        "a/b/c.txt",
        "a/z.txt",
        "a.txt",
        "b.txt",
        "c.md",
    ]


def test_iter_documents_empty_directory(tmp_path: Path) -> None:
    assert relative_documents(tmp_path) == []


def test_iter_documents_skips_hidden_and_tool_dirs(tmp_path: Path) -> None:
    for name in [
        ".env",
        ".git/config",
        ".venv/lib/x.py",
        "__pycache__/m.pyc",
        "node_modules/p/i.js",
        "src/__pycache__/n.pyc",
        "src/.hidden",
        "src/kept.py",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    assert relative_documents(tmp_path) == ["src/kept.py"]


def test_iter_documents_skips_symlinks(tmp_path: Path) -> None:
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    (target_dir / "doc.txt").write_text("x")
    (tmp_path / "link.txt").symlink_to(target_dir / "doc.txt")
    (tmp_path / "linkdir").symlink_to(target_dir, target_is_directory=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")

    assert relative_documents(tmp_path) == ["real/doc.txt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo is POSIX only")
def test_iter_documents_skips_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "doc.txt").write_text("x")

    assert relative_documents(tmp_path) == ["doc.txt"]


def test_iter_documents_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(ingest_files.iter_documents(tmp_path / "missing"))


def test_iter_documents_missing_root_calls_on_error(tmp_path: Path) -> None:
    errors: list[OSError] = []

    documents = list(
        ingest_files.iter_documents(tmp_path / "missing", on_error=errors.append)
    )

    assert documents == []
    assert len(errors) == 1
    assert isinstance(errors[0], FileNotFoundError)


# run, against a MockTransport tracker


@pytest.fixture
def mixed_tree(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.txt").write_text("g" * 2500, encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "invalid.txt").write_bytes(b"ok \xff\xfe not utf-8")
    return tmp_path


def test_run_registers_each_file(mixed_tree: Path) -> None:
    tracker = FakeTracker()

    run_against(tracker, make_config(mixed_tree))

    names = [
        registration["original_filename"] for registration in tracker.registrations
    ]
    assert names == ["docs/good.txt", "empty.txt", "invalid.txt"]
    good = tracker.registrations[0]
    assert good["collection_id"] == 7
    assert good["external_id"] == "docs/good.txt"
    assert good["file_path"] == str((mixed_tree / "docs" / "good.txt").resolve())
    assert good["file_size"] == 2500
    assert good["content_type"] == "text/plain"
    assert good["plugin_name"] == "simple_chunker"
    assert good["plugin_params"] == {"chunk_size": 1000, "chunk_overlap": 200}
    assert good["source"] == "file"
    assert "collection_name" not in good


def test_run_good_file_events(mixed_tree: Path) -> None:
    tracker = FakeTracker()

    run_against(tracker, make_config(mixed_tree))

    events = tracker.events_of("docs/good.txt")
    assert [event["type"] for event in events] == [
        "started",
        "progress",
        "progress",
        "completed",
    ]
    assert [event["seq"] for event in events] == [1, 2, 3, 4]
    assert events[1] == {
        "type": "progress",
        "seq": 2,
        "current": 2,
        "total": 3,
        "message": "Chunked 2 of 3",
    }
    assert events[2] == {
        "type": "progress",
        "seq": 3,
        "current": 3,
        "total": 3,
        "message": "Chunked 3 of 3",
    }
    completed = events[3]
    assert completed["document_count"] == 3
    assert completed["message"] == "Split 2500 characters into 3 chunks"
    stats = completed["processing_stats"]
    assert stats["characters"] == 2500
    assert stats["chunk_size"] == 1000
    assert stats["chunk_overlap"] == 200
    assert stats["seconds"] >= 0


def test_run_empty_file_completes_with_zero(mixed_tree: Path) -> None:
    tracker = FakeTracker()

    run_against(tracker, make_config(mixed_tree))

    events = tracker.events_of("empty.txt")
    assert [event["type"] for event in events] == ["started", "completed"]
    assert events[1]["seq"] == 2
    assert events[1]["document_count"] == 0
    assert events[1]["processing_stats"]["characters"] == 0


def test_run_invalid_utf8_reports_failed(mixed_tree: Path) -> None:
    tracker = FakeTracker()

    run_against(tracker, make_config(mixed_tree))

    events = tracker.events_of("invalid.txt")
    assert [event["type"] for event in events] == ["started", "failed"]
    failed = events[1]
    assert failed["seq"] == 2
    assert "can't decode byte 0xff" in failed["error_message"]
    details = failed["error_details"]
    assert details["exception_type"] == "UnicodeDecodeError"
    assert details["stage"] == "decode"
    assert "Traceback (most recent call last)" in details["traceback"]
    assert "UnicodeDecodeError" in details["traceback"]


def test_run_summary_counts(mixed_tree: Path) -> None:
    summary = run_against(FakeTracker(), make_config(mixed_tree))

    assert summary.files == 3
    assert summary.completed == 2
    assert summary.failed == 1
    assert summary.cancelled == 0
    assert summary.chunks == 3
    assert summary.events_not_applied == 0


def test_run_stops_file_on_cancel_request(mixed_tree: Path) -> None:
    def cancel_on_progress(event: dict[str, Any]) -> httpx.Response:
        cancel = event["type"] == "progress"
        result = {
            "applied": True,
            "reason": None,
            "cancel_requested": cancel,
            "job": {},
        }
        return httpx.Response(200, json=result)

    tracker = FakeTracker(event_response=cancel_on_progress)

    summary = run_against(tracker, make_config(mixed_tree))

    events = tracker.events_of("docs/good.txt")
    assert [event["type"] for event in events] == ["started", "progress", "cancelled"]
    assert events[2]["seq"] == 3
    assert summary.cancelled == 1
    assert summary.completed == 1


def test_run_counts_events_not_applied(mixed_tree: Path) -> None:
    def terminal(event: dict[str, Any]) -> httpx.Response:
        result = {
            "applied": False,
            "reason": "job_terminal",
            "cancel_requested": False,
            "job": {},
        }
        return httpx.Response(200, json=result)

    tracker = FakeTracker(register_status=200, event_response=terminal)

    summary = run_against(tracker, make_config(mixed_tree))

    assert summary.files == 3
    assert summary.events_not_applied == 8


def test_run_http_error_names_file(mixed_tree: Path) -> None:
    def reject(event: dict[str, Any]) -> httpx.Response:
        return httpx.Response(
            400, json={"status_code": 400, "detail": "invalid event type"}
        )

    tracker = FakeTracker(event_response=reject)

    with pytest.raises(ingest_files.TrackerError) as caught:
        run_against(tracker, make_config(mixed_tree))

    message = str(caught.value)
    assert message.startswith("docs/good.txt: ")
    assert "returned 400" in message
    assert "invalid event type" in message


def test_run_unauthorized_mentions_token(mixed_tree: Path) -> None:
    def unauthorized(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"status_code": 401, "detail": "missing bearer token"}
        )

    with pytest.raises(ingest_files.TrackerError, match="TRACKER_WORKER_TOKEN"):
        run_against(unauthorized, make_config(mixed_tree))


def test_run_connection_refused_says_make_run(mixed_tree: Path) -> None:
    def refuse_connection(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ingest_files.TrackerError) as caught:
        run_against(refuse_connection, make_config(mixed_tree))

    message = str(caught.value)
    assert "not reachable at http://127.0.0.1:8080" in message
    assert "make run" in message


def test_run_timeout_names_file(mixed_tree: Path) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(
        ingest_files.TrackerError, match=r"^docs/good\.txt: .*ReadTimeout"
    ):
        run_against(time_out, make_config(mixed_tree))


# command line


def test_parse_config_overlap_not_below_size(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        ingest_files.parse_config(
            [str(tmp_path), "7", "--chunk-size", "10", "--overlap", "10"]
        )

    assert caught.value.code == 2


def test_parse_config_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        ingest_files.parse_config([str(tmp_path / "missing"), "7"])

    assert caught.value.code == 2


def test_parse_config_token_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_WORKER_TOKEN", "from-env")

    _, _, token = ingest_files.parse_config([str(tmp_path), "7"])

    assert token == "from-env"


def test_parse_config_token_option_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_WORKER_TOKEN", "from-env")

    _, _, token = ingest_files.parse_config(
        [str(tmp_path), "7", "--token", "from-option"]
    )

    assert token == "from-option"
