"""The recipe test runs the app as the README's production processes, on a database of its own, and
never needs the in-process `app` of tests/conftest.py.

Its autouse `_app_context` is replaced here, as in tests/e2e/: the `app` fixture would drop the schema of
DATABASE_URL and, once created, live on with a Celery worker sharing the Redis broker. This package is
collected before tests/test_*.py, so when the suite's `app` is created after it, its flush of the broker
also removes what the recipe's beat left queued."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _app_context() -> None:
    """Replaces tests/conftest.py's fixture of the same name: the app under test runs as processes."""
