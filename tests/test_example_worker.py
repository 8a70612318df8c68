"""The example worker against a tracker served over real HTTP."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from tests.conftest import ServeAsgi

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "examples" / "ingest_files.py"
SKIPPED_PARTS = {"__pycache__", ".venv", "node_modules"}


@pytest.fixture
async def live_url(settings: Settings, serve_asgi: ServeAsgi) -> str:
    """Serve the tracker with uvicorn on a free loopback port for one test."""
    return await serve_asgi(create_app(settings))


async def run_worker(directory: Path, collection_id: int, url: str) -> str:
    """Run the example script as a user would and return its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        str(directory),
        str(collection_id),
        "--tracker-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


def expected_documents(root: Path) -> list[Path]:
    """List the files the example walks: regular, not hidden, not in skipped folders."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        hidden = any(part.startswith(".") for part in relative.parts)
        skipped = any(part in SKIPPED_PARTS for part in relative.parts)
        if path.is_file() and not path.is_symlink() and not hidden and not skipped:
            found.append(path)
    return found


async def test_repository_ingest_fills_summary(live_url: str) -> None:
    await run_worker(REPOSITORY, 42, live_url)
    async with httpx.AsyncClient(base_url=live_url) as http:
        summary = (await http.get("/collections/42/ingestion-status")).json()
    documents = expected_documents(REPOSITORY)
    undecodable = 0
    for path in documents:
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert summary["total_jobs"] == len(documents)
    assert summary["by_status"]["completed"] == len(documents) - undecodable
    assert summary["by_status"]["failed"] == undecodable
    assert summary["by_status"]["processing"] == 0


async def test_undecodable_file_fails_with_traceback(
    live_url: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.md").write_text("# Notes\n" + "word " * 600)
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4\n\xff\xfe\xfa broken")
    await run_worker(tmp_path, 7, live_url)

    async with httpx.AsyncClient(base_url=live_url) as http:
        failed = (
            await http.get("/collections/7/ingestion-jobs", params={"status": "failed"})
        ).json()["items"]
        completed = (
            await http.get(
                "/collections/7/ingestion-jobs", params={"status": "completed"}
            )
        ).json()["items"]
    assert [job["original_filename"] for job in failed] == ["scan.pdf"]
    assert failed[0]["error_details"]["exception_type"] == "UnicodeDecodeError"
    assert "Traceback" in failed[0]["error_details"]["traceback"]
    assert completed[0]["document_count"] == 4
    assert completed[0]["progress"]["percentage"] == 100.0


async def test_rerun_registers_no_new_jobs(live_url: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha " * 100)
    await run_worker(tmp_path, 9, live_url)
    await run_worker(tmp_path, 9, live_url)
    async with httpx.AsyncClient(base_url=live_url) as http:
        page = (await http.get("/collections/9/ingestion-jobs")).json()
    assert page["total"] == 1
