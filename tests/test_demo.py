"""``python -m examples.demo`` end to end, as a subprocess with its own PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Seconds the whole demo may take. A local run took about 10 s, so this leaves room
# for a slow CI machine.
DEMO_TIMEOUT_SECONDS = 180


def demo_processes() -> list[str]:
    """Return the command lines of demo PostgreSQL servers run from this environment.

    Matching this interpreter's prefix leaves out demos that other checkouts run.
    """
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in text and "tracker-demo-" in text and sys.prefix in text:
            found.append(text)
    return found


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    """Run the demo once for every test of this module."""
    return subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )


def check_line(output: str, number: int) -> str:
    match = re.search(rf"^(.) check {number}: .*$", output, re.MULTILINE)
    assert match is not None, f"no line for check {number} in:\n{output}"
    return match.group(0)


def test_demo_exits_zero(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr


def test_demo_writes_no_errors(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.stderr == ""


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (1, "ingest file"),
        (2, "progress changes"),
        (3, "duration and chunks"),
        (4, "traceback captured"),
        (5, "retry with override"),
        (6, "cancel stops worker"),
    ],
)
def test_demo_check_passes(
    demo: subprocess.CompletedProcess[str], number: int, name: str
) -> None:
    line = check_line(demo.stdout, number)
    assert line.startswith("✓"), f"{name}: {line}"


def test_demo_prints_summary(demo: subprocess.CompletedProcess[str]) -> None:
    assert "Collection summary: Demo" in demo.stdout
    assert "6 of 6 checks passed" in demo.stdout


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_demo_leaves_no_processes(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo_processes() == []
