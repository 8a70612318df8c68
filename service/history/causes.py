"""Group failures by cause: exception type and a message with its specifics removed."""

from __future__ import annotations

import re
from typing import Any

CAUSE_MAX_CHARS = 200
UNKNOWN_TYPE = "UnknownError"

# Applied in order: each pattern replaces a kind of detail that differs between two
# failures of the same cause (a file name, an id, a size) with a placeholder.
_SPECIFICS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (
        re.compile(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            re.IGNORECASE,
        ),
        "<uuid>",
    ),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@~+-]+){2,}[\\/]?"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b\d+(?:[.,:]\d+)*\b"), "<n>"),
)
_SPACES = re.compile(r"\s+")


def normalise_message(message: str) -> str:
    """Replace urls, ids, quoted values, paths and numbers with placeholders."""
    first_line = message.strip().splitlines()[0] if message.strip() else ""
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
