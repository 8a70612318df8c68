"""The request class of the app: JSON bodies with a nesting limit."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from service.limits import JSON_MAX_DEPTH, json_depth


class TrackerRequest(Request[Any, Any, Any]):
    """A request whose JSON body may nest at most ``JSON_MAX_DEPTH`` levels deep."""

    async def json(self) -> Any:
        """Decode the body; raise SerializationException (400) if it nests too deep."""
        too_deep = f"JSON nested deeper than {JSON_MAX_DEPTH} levels"
        try:
            value = await super().json()
        except RecursionError:
            # msgspec raises RecursionError, not DecodeError, near the recursion limit.
            raise SerializationException(too_deep) from None
        if json_depth(value) > JSON_MAX_DEPTH:
            raise SerializationException(too_deep)
        return value
