"""Shared fixtures: repository paths, the real data folder, and small configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from codeift.config import load_yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
