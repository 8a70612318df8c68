"""OpenAPI pieces shared by the controllers: the error body and the token schemes."""

from __future__ import annotations

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme


class Problem(msgspec.Struct, kw_only=True):
    """The body of every error response."""

    status_code: int
    detail: str


_DESCRIPTIONS = {
    400: "Invalid input: detail names the field and the allowed values.",
    401: "The bearer token is missing or not configured on the tracker.",
    403: "The bearer token belongs to the other scope.",
    404: "No such job, or the job belongs to another collection.",
    409: "The job's status, or the event's attempt, does not allow this.",
    413: "The request body exceeds TRACKER_MAX_BODY_BYTES.",
    503: "The database is unreachable; Retry-After says when to try again.",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """Document the error responses of an operation, each with the Problem body."""
    return {
        code: ResponseSpec(
            Problem, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }


COMPONENTS = Components(
    security_schemes={
        "api_token": SecurityScheme(
            type="http",
            scheme="bearer",
            description="A token of TRACKER_API_TOKENS: queries, streams, retry and "
            "cancel.",
        ),
        "worker_token": SecurityScheme(
            type="http",
            scheme="bearer",
            description="A token of TRACKER_WORKER_TOKENS: registration and events.",
        ),
    }
)
API_SECURITY: list[SecurityRequirement] = [{"api_token": []}]
WORKER_SECURITY: list[SecurityRequirement] = [{"worker_token": []}]
