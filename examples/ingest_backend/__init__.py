"""A reference knowledge-base backend that reports its ingest jobs to the tracker.

It has collections, the three ingest endpoints of the KB server (``ingest-file``,
``ingest-url`` and ``ingest-base``) and three plugins. Each request registers a job
with the tracker, or resumes the job of a retry that the tracker forwarded, and runs
the plugin in the background with an ``AsyncJobReporter``.
"""

from examples.ingest_backend.app import create_app
from examples.ingest_backend.config import BackendConfig

__all__ = ["BackendConfig", "create_app"]
