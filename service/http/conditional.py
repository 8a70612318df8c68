"""Conditional GET: a strong ETag over the JSON body, and 304 while it still matches.

Litestar 2.25 sends only static ETags (the ``etag=`` handler option) and never reads
``If-None-Match``, so this module computes the tag from the encoded body and decides
between 200 and 304 itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from litestar import Request, Response
from litestar.datastructures import CacheControlHeader, ETag, ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.serialization import encode_json
from litestar.status_codes import HTTP_304_NOT_MODIFIED

T = TypeVar("T")

# An entity-tag (RFC 9110, section 8.8.3): an optional weak prefix, then an opaque
# tag in double quotes, which may itself contain commas.
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')
_NO_CACHE = CacheControlHeader(no_cache=True).to_header()


def entity_tag(body: bytes) -> str:
    """Compute the strong ETag of ``body``: its quoted 128-bit BLAKE2b hex digest."""
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    return ETag(value=digest).to_header()


def is_not_modified(if_none_match: str | None, tag: str) -> bool:
    """Tell whether ``If-None-Match`` lists ``tag`` or is ``*``, so a GET gets 304.

    The comparison is weak (RFC 9110, section 13.1.2), so ``W/"x"`` matches ``"x"``.
    List members that are not entity-tags are ignored.
    """
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque_tag = tag.removeprefix("W/").strip('"')
    return opaque_tag in _ENTITY_TAG.findall(if_none_match)


class ConditionalGet:
    """A GET handler's responder: a 200 with an ETag, or a 304 without a body."""

    def __init__(
        self, serializer: Callable[[Any], Any], if_none_match: str | None
    ) -> None:
        self._serializer = serializer
        self._if_none_match = if_none_match

    def respond(self, value: T) -> Response[T]:
        """Encode ``value`` as Litestar would and return 304 if the client has it."""
        body = encode_json(value, self._serializer)
        tag = entity_tag(body)
        headers = {"ETag": tag, "Cache-Control": _NO_CACHE}

        # Litestar sends bytes content unchanged, so the tag covers the sent body.
        response: Response[Any]
        if is_not_modified(self._if_none_match, tag):
            response = Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        else:
            response = Response(body, media_type=MediaType.JSON, headers=headers)
        return response


def _provide_conditional_get(
    request: Request[Any, Any, Any],
    if_none_match: Annotated[
        str | None,
        HeaderParameter(
            name="If-None-Match",
            description="ETags of earlier responses, comma-separated, or *. If one "
            "matches the current body, the response is a 304 without a body.",
        ),
    ] = None,
) -> ConditionalGet:
    return ConditionalGet(request.route_handler.default_serializer, if_none_match)


Conditional = NamedDependency[ConditionalGet]
"""A handler parameter named ``conditional`` that receives a ConditionalGet."""

CONDITIONAL_GET = {
    "conditional": Provide(_provide_conditional_get, sync_to_thread=False)
}
"""The dependencies of a handler that returns ``conditional.respond(value)``."""

# Litestar documents a header's schema from the type of its value; headers marked
# documentation_only are never sent.
ETAG_HEADERS = [
    ResponseHeader(
        name="ETag",
        value=entity_tag(b"{}"),
        description="Strong validator of the body. Send it back as If-None-Match.",
        documentation_only=True,
    ),
    ResponseHeader(
        name="Cache-Control",
        value=_NO_CACHE,
        description="A cache must revalidate the response with If-None-Match.",
        documentation_only=True,
    ),
]
"""Documentation of the headers that ``conditional.respond`` sets on 200 and 304."""

NOT_MODIFIED = {
    HTTP_304_NOT_MODIFIED: ResponseSpec(
        None,
        description="If-None-Match matched the current ETag; the response has no body.",
        generate_examples=False,
    )
}
"""Documentation of the 304 response of a conditional GET."""
