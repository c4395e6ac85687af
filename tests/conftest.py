"""Shared fixtures: repository paths, the real data folder, and small configs."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from codeift.config import load_yaml

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """The real public data: $CODEIFT_SHARED_DATA, else ../shared/data beside the checkout."""
    candidates = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    if os.environ.get("CODEIFT_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["CODEIFT_SHARED_DATA"]))
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def default_config() -> dict:
    return load_yaml(REPO / "config" / "config.yaml")


@pytest.fixture
def config(default_config: dict) -> dict:
    return copy.deepcopy(default_config)


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data file {path} is not present on this machine")
    return path
