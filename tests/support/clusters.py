"""What the tests of lesson 12's clusters share: skip (or fail, under REQUIRE_ALL_BACKENDS=1) when a cluster's
packages are missing, and the throwaway directories a test checks are gone afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from session_management.common import CourseError
from session_management.servers.galera import binaries as galera_binaries
from session_management.servers.patroni import binaries as patroni_binaries
from tests.support.backends import require_all_backends


def require_cluster(kind: str) -> None:
    """*kind*: "patroni" (patroni, etcd and PostgreSQL's server) or "galera" (MariaDB, galera-4, rsync)."""
    try:
        patroni_binaries() if kind == "patroni" else galera_binaries()
    except CourseError as error:
        message = f"{kind} cluster unavailable: {error.problem}"
        if require_all_backends():
            pytest.fail(f"{message} (REQUIRE_ALL_BACKENDS=1)", pytrace=False)
        pytest.skip(message)


def throwaway_dirs(kind: str = "patroni") -> set[str]:
    """The names of the with-block clusters' temporary directories (course-patroni-*, course-galera-*)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"course-{kind}-*")}
