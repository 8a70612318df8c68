"""Failure causes: how error messages lose their specifics so that failures group."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.history.causes import (
    CAUSE_MAX_CHARS,
    UNKNOWN_TYPE,
    failure_cause,
    normalise_message,
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # URLs, without trailing punctuation or brackets
        ("Failed to fetch https://example.com/a/b?x=1", "Failed to fetch <url>"),
        ("see (https://example.com/a).", "see (<url>)."),
        ("clone git+ssh://host/repo failed", "clone <url> failed"),
        # UUIDs and hex ids
        (
            "job 550e8400-e29b-41d4-a716-446655440000 lost",
            "job <uuid> lost",
        ),
        ("object at 0x7f3a2b9c", "object at <hex>"),
        ("blob a3f9c2e1b4d5 missing", "blob <hex> missing"),
        ("letters only: deadbeef", "letters only: deadbeef"),
        ("digits only: 12345678", "digits only: <n>"),
        # ISO 8601 times
        ("deadline 2026-01-02T03:04:05.123Z passed", "deadline <time> passed"),
        ("expired on 2026-01-02", "expired on <time>"),
        ("at 2026-01-02 03:04:05+02:00 now", "at <time> now"),
        # Quoted values
        ("KeyError 'title'", "KeyError <str>"),
        ('missing field "author"', "missing field <str>"),
        ("bytes b'\\x00\\x01' rejected", "bytes <str> rejected"),
        ("command `pdftotext x` failed", "command <str> failed"),
        ("value \u201csmart\u201d and \u2018single\u2019", "value <str> and <str>"),
        ("Can't open 'a.pdf': it doesn't exist", "Can't open <str>: it doesn't exist"),
        # Paths and file names
        ("No such file: /data/uploads/a.pdf", "No such file: <path>"),
        ("No such file: /a.pdf", "No such file: <path>"),
        ("cannot read C:\\Users\\bob\\a.docx", "cannot read <path>"),
        ("home ~/docs/x and ./local/y and ../up", "home <path> and <path> and <path>"),
        ("Could not decode uploads/2024/a.docx", "Could not decode <path>"),
        ("parsing report-17.PDF failed", "parsing <path> failed"),
        ("read/write error and/or timeout", "read/write error and/or timeout"),
        ("unknown extension: report.xyz", "unknown extension: report.xyz"),
        # Numbers, with units and words around them
        ("[Errno 2] Not found", "[Errno <n>] Not found"),
        ("Timed out after 30.5s reading 1.5MB", "Timed out after <n>s reading <n>MB"),
        ("retry 3 of 1,000 at 10:30:45", "retry <n> of <n> at <n>"),
        ("x86_64 utf8 sha256 v2", "x86_64 utf8 sha256 v2"),
        # Lines and spaces
        ("  first line\nTraceback (most recent call last):", "first line"),
        ("too   many\tspaces", "too many spaces"),
        ("", ""),
        ("   \n  ", ""),
    ],
)
def test_normalise_message(message: str, expected: str) -> None:
    assert normalise_message(message) == expected


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("No such file: /data/a.pdf", "No such file: /srv/other/b-2.pdf"),
        ("Cannot parse 'a.pdf'", 'Cannot parse "b.pdf"'),
        ("Timed out after 30 s", "Timed out after 125.5 s"),
        ("HTTP 500 from https://a.example/x", "HTTP 503 from http://b.example/y?z=1"),
        (
            "job 550e8400-e29b-41d4-a716-446655440000 lost",
            "job 123e4567-e89b-12d3-a456-426614174000 lost",
        ),
        ("blob a3f9c2e1b4d5 missing", "blob 0b1c2d3e4f5a6b7c missing"),
        ("size 12 bytes", "size 123456789 bytes"),
    ],
)
def test_normalise_message_groups_specifics(first: str, second: str) -> None:
    assert normalise_message(first) == normalise_message(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Connection refused", "Connection reset"),
        ("Permission denied: /a/b.pdf", "No such file: /a/b.pdf"),
        ("read/write failed", "read/only failed"),
    ],
)
def test_normalise_message_keeps_causes_apart(first: str, second: str) -> None:
    assert normalise_message(first) != normalise_message(second)


def test_normalise_message_max_length() -> None:
    cause = normalise_message("word " * 1000)
    assert len(cause) == CAUSE_MAX_CHARS


def test_normalise_message_long_token_time() -> None:
    # The URL pattern bounds the scheme's length. Without the bound it rescans a run
    # of scheme characters from every position, and these 40,000 characters take
    # about 7 s (Python 3.11 on a development machine) instead of milliseconds.
    message = "a-" * 20_000
    started = time.perf_counter()
    cause = normalise_message(message)
    elapsed = time.perf_counter() - started
    assert cause == message[:CAUSE_MAX_CHARS]
    assert elapsed < 1.0


@pytest.mark.parametrize(
    ("details", "expected_type"),
    [
        ({"exception_type": "ValueError"}, "ValueError"),
        ({"exception_type": "  ValueError  "}, "ValueError"),
        ({"exception_type": ""}, UNKNOWN_TYPE),
        ({"exception_type": 42}, UNKNOWN_TYPE),
        ({"stage": "convert"}, UNKNOWN_TYPE),
        (None, UNKNOWN_TYPE),
    ],
)
def test_failure_cause_exception_type(
    details: dict[str, Any] | None, expected_type: str
) -> None:
    exception_type, _ = failure_cause("boom", details)
    assert exception_type == expected_type


def test_failure_cause_long_exception_type_cut() -> None:
    exception_type, _ = failure_cause("boom", {"exception_type": "E" * 500})
    assert len(exception_type) == CAUSE_MAX_CHARS


def test_failure_cause_normalises_message() -> None:
    _, cause = failure_cause("No such file: /a/b.pdf", None)
    assert cause == "No such file: <path>"


def test_failure_cause_without_message() -> None:
    _, cause = failure_cause(None, {"exception_type": "ValueError"})
    assert cause == ""
