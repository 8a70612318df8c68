"""Description of the machine and software behind the figures."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

import asyncpg

CPUINFO = Path("/proc/cpuinfo")


def cores() -> int:
    """Return the number of cores this process may run on."""
    return len(os.sched_getaffinity(0))


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


async def postgres_version(database_url: str) -> str:
    """Return the server_version setting of the database at ``database_url``."""
    connection = await asyncpg.connect(database_url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return version


async def describe(database_url: str, workers: int, duration: float) -> str:
    """Return one line naming the machine, the versions and the load."""
    return (
        f"{cores()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"PostgreSQL {await postgres_version(database_url)}; {workers} workers, "
        f"{duration:g} s per scenario"
    )


def _installed(module: str) -> str:
    return "installed" if importlib.util.find_spec(module) else "not installed"


def server_versions() -> str:
    """Return the server versions and whether their optional speed-ups are installed.

    With its default ``--loop auto``, granian runs on rloop or else uvloop when one
    is installed. uvicorn runs on uvloop, and parses HTTP with httptools in place of
    the pure-Python h11, when they are installed. Otherwise both use asyncio's loop.
    """
    uvicorn = importlib.metadata.version("uvicorn")
    granian = importlib.metadata.version("granian")
    return (
        f"uvicorn {uvicorn}, granian {granian}; rloop {_installed('rloop')}, "
        f"uvloop {_installed('uvloop')}, httptools {_installed('httptools')}"
    )
