"""Group failures by cause: exception type and a message with its specifics removed."""

from __future__ import annotations

import re
from typing import Any

CAUSE_MAX_CHARS = 200
UNKNOWN_TYPE = "UnknownError"

# Extensions that mark a bare or relative token as a file name. A path that starts
# with a separator, a drive, ~ or a dot needs no extension.
_FILE_EXTENSIONS = (
    "pdf|docx?|odt|rtf|txt|md|markdown|html?|xml|jsonl?|csv|tsv|xlsx?|ods|pptx?|odp"
    "|epub|eml|msg|png|jpe?g|gif|tiff?|webp|svg|mp3|mp4|m4a|wav|webm|zip|t?gz|tar|7z"
)
_PATH_CHARS = r"[\w.@~+-]"

# Each pattern replaces a kind of detail that differs between two failures of the
# same cause (a file name, an id, a size) with a placeholder. They run in order, so
# the wider matches come first (a URL contains a path and numbers), and placeholders
# contain nothing that a later pattern matches.
_SPECIFICS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A URL ends before a quote, bracket or trailing punctuation. The scheme's length
    # is bounded so that a long run of word characters costs linear time.
    (
        re.compile(
            r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://"
            r"[^\s'\"`<>]*[^\s'\"`<>)\].,;:!?]",
            re.IGNORECASE,
        ),
        "<url>",
    ),
    (
        re.compile(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            re.IGNORECASE,
        ),
        "<uuid>",
    ),
    # ISO 8601 dates, with an optional time and offset.
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}"
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
            r"(?![\w:])",
            re.IGNORECASE,
        ),
        "<time>",
    ),
    # A quote opens only after a non-word character and closes only before one, so
    # the apostrophes of "can't" or "doesn't" start no quoted value. Python's b'…'
    # and r'…' prefixes belong to the value.
    (
        re.compile(
            r"(?<!\w)[bBrRuUfF]{0,2}"
            r"(?:'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`"
            # Typographic quotes: left and right single, then left and right double.
            r"|\u2018[^\u2019\n]*\u2019|\u201c[^\u201d\n]*\u201d)"
            r"(?!\w)"
        ),
        "<str>",
    ),
    # Paths that start with a drive, ~, . or .., or with a separator and have two
    # segments. Slashes inside words ("and/or", "read/write") are left alone.
    (
        re.compile(
            rf"(?<![\w.~/\\-])(?:(?:[A-Za-z]:|~|\.{{1,2}})(?:[\\/]{_PATH_CHARS}+)+"
            rf"|(?:[\\/]{_PATH_CHARS}+){{2,}})[\\/]?"
        ),
        "<path>",
    ),
    # File names and relative paths that end in a known extension.
    (
        re.compile(
            rf"(?<![\w.~/\\@+-])[\w.@~+/\\-]*\.(?:{_FILE_EXTENSIONS})(?![\w-]|\.\w)",
            re.IGNORECASE,
        ),
        "<path>",
    ),
    # 0x-prefixed values, and hashes or ids of at least 8 hex digits that mix digits
    # and letters. Digits alone are numbers, and letters alone are words ("deadbeef").
    (
        re.compile(
            r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b",
            re.IGNORECASE,
        ),
        "<hex>",
    ),
    # Integers, decimals, versions and clock times. A unit right after the number
    # stays ("30s", "1.5MB"), and digits inside a word stay ("utf8", "x86_64").
    (re.compile(r"(?<!\w)\d+(?:[.,:]\d+)*"), "<n>"),
)
_SPACES = re.compile(r"\s+")


def normalise_message(message: str) -> str:
    """Replace urls, ids, times, quoted values, paths and numbers with placeholders.

    Only the first line counts, because later lines of an error message usually
    contain a traceback or a payload. The result has at most CAUSE_MAX_CHARS characters.
    """
    stripped = message.strip()
    first_line = stripped.splitlines()[0] if stripped else ""
    for pattern, placeholder in _SPECIFICS:
        first_line = pattern.sub(placeholder, first_line)
    return _SPACES.sub(" ", first_line).strip()[:CAUSE_MAX_CHARS]


def failure_cause(
    error_message: str | None, error_details: dict[str, Any] | None
) -> tuple[str, str]:
    """Return the exception type and normalised message that group a failure."""
    exception_type = (error_details or {}).get("exception_type")
    if not isinstance(exception_type, str) or not exception_type.strip():
        exception_type = UNKNOWN_TYPE
    return exception_type.strip()[:CAUSE_MAX_CHARS], normalise_message(
        error_message or ""
    )
