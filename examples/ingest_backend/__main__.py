"""Run the reference backend: ``python -m examples.ingest_backend --port 8000``."""

from __future__ import annotations

import argparse

import structlog
import uvicorn

from examples.ingest_backend.app import create_app
from examples.ingest_backend.config import BackendConfig

logger = structlog.get_logger(__name__)


def main() -> None:
    """Parse the options and serve the backend with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to bind")
    options = parser.parse_args()

    config = BackendConfig.from_env(port=options.port)
    logger.info(
        "backend_starting",
        port=options.port,
        tracker_url=config.tracker_url,
        public_url=config.public_url,
    )
    uvicorn.run(create_app(config), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
