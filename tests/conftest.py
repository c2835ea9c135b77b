"""Shared test fixtures.

Integration tests launch real sandboxes. They are meant to run as an unprivileged user (CI
runs them as ``rftest``); run as root, ringfence drops the payload to an unprivileged uid.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def unprivileged() -> None:
    if os.geteuid() == 0:
        pytest.skip("this test must run as an unprivileged user (CI runs it as rftest)")


@pytest.fixture
def world_tmp():  # type: ignore[no-untyped-def]
    """A temp dir the sandbox's user can reach (as root, the payload runs as nobody)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rf-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
