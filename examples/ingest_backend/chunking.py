"""Split converted text into overlapping chunks of characters."""

from __future__ import annotations

from typing import Any

DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 200


def chunk_options(params: dict[str, Any]) -> tuple[int, int]:
    """Read and check ``chunk_size`` and ``chunk_overlap`` from plugin params."""
    size = params.get("chunk_size", DEFAULT_CHUNK_SIZE)
    overlap = params.get("chunk_overlap", DEFAULT_CHUNK_OVERLAP)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {size!r}")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ValueError(f"chunk_overlap must be an integer >= 0, got {overlap!r}")
    if overlap >= size:
        raise ValueError(
            f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})"
        )
    return size, overlap


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """Split ``text`` into chunks of at most ``size`` characters.

    Each chunk starts ``size - overlap`` characters after the previous one. Text of
    only whitespace gives no chunks.
    """
    if not text.strip():
        return []
    step = size - overlap
    chunks = []
    for start in range(0, len(text), step):
        chunks.append(text[start : start + size])
        if start + size >= len(text):
            break
    return chunks
