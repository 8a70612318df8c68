"""Fixtures of the SDK tests; the tracker's own fixtures when its repository is here.

The unit tests need only the SDK. test_against_tracker.py also needs the tracker's
``service`` package and the PostgreSQL fixtures of the repository's top-level
``tests`` package, which this file imports so that pytest finds them under this
directory too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from tracker_fakes import FakeTracker

REPOSITORY = Path(__file__).resolve().parents[3]

# `pytest clients/python/tests` puts only this directory on sys.path, so the
# repository root is added for `import tests.conftest`.
if (REPOSITORY / "tests" / "conftest.py").is_file() and str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

if importlib.util.find_spec("service") is not None:
    # pytest finds fixtures by their names in this module.
    from tests.conftest import (  # noqa: F401
        backend,
        database_url,
        postgres_url,
        settings,
        template_database,
    )


@pytest.fixture
def tracker() -> FakeTracker:
    """An in-memory tracker that contains job 1 at attempt 1."""
    fake = FakeTracker()
    fake.add_job(1)
    return fake
