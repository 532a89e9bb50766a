"""Shared fixtures. Real-data tests read $MSMINE_DATA (default ../shared/data from the repo root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("MSMINE_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def msmine_data() -> Path:
    """Root of the real data. In CI it is there; the tests fail loudly (not skip) when it is not."""
    root = data_root()
    if not (root / "msrs").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {root} (set MSMINE_DATA)")
        pytest.skip(f"real data not found at {root} (set MSMINE_DATA)")
    return root


@pytest.fixture(scope="session")
def msrs_root(msmine_data: Path) -> Path:
    return msmine_data / "msrs"


@pytest.fixture(scope="session")
def m3svd_root(msmine_data: Path) -> Path:
    return msmine_data / "m3svd"
