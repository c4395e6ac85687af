"""Offline compute nodes (codeift.hub): what a config needs, the prefetch manifest, and jobs that
read a hub cache laid out as huggingface_hub lays it out, with no network.

The fake hub is a folder in the hub cache's own layout (`models--org--name/blobs`, `snapshots/
<commit>/...` as links to blobs, `refs/main`), so the real huggingface_hub and datasets code
resolves it; nothing of codeift.hub is stubbed for the offline checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from codeift import hub
from codeift.cli import prefetch_artifacts
from codeift.config import load_yaml
from codeift.errors import CodeiftError
from codeift.tasks.catalog import load_catalog
from tests.conftest import REPO, short_engine_dir

BIN = Path(sys.executable).parent
TINY = REPO / "src" / "codeift" / "assets" / "tiny_bases" / "llama"
COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40
PREFETCH_HINT = "python -m codeift prefetch"


def put_repo(
    home: Path,
    repo_type: str,
    repo_id: str,
    files: dict[str, bytes],
    commit: str = COMMIT,
    ref: str | None = "main",
) -> Path:
    """Write one repository snapshot into the hub cache under `home` (blobs, links, ref)."""
    folder = home / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    if ref:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


def tiny_model_files() -> dict[str, bytes]:
    return {item.name: item.read_bytes() for item in TINY.iterdir() if item.is_file()}


GSM8K_CARD = """---
configs:
- config_name: main
  data_files:
  - split: test
    path: main/test-*
---
# fake gsm8k
"""
GSM8K = load_catalog()["gsm8k"]["hub"]


def put_gsm8k(home: Path) -> int:
    """openai/gsm8k as the catalogue pins it (revision, file, row count when it gives them),
    with made-up rows; returns the row count."""
    rows = GSM8K.get("rows", 6)
    frame = pl.DataFrame(
        {
            "question": [f"Tom has {i} apples and buys 2 more. How many?" for i in range(rows)],
            "answer": [f"{i} + 2 = {i + 2}\n#### {i + 2}" for i in range(rows)],
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    name = GSM8K.get("files", ["main/test-00000-of-00001.parquet"])[0]
    revision = GSM8K.get("revision") or "main"
    pinned = re.fullmatch(r"[0-9a-f]{40}", revision) is not None
    files = {"README.md": GSM8K_CARD.encode(), name: buffer.getvalue()}
    put_repo(home, "dataset", "openai/gsm8k", files, revision if pinned else COMMIT)
    return rows


def sharegpt_files(rows: int = 8) -> dict[str, bytes]:
    records = [
        {
            "id": f"sg{i}",
            "conversations": [
                {"from": "human", "value": f"Write a Python function that returns {i}."},
                {"from": "gpt", "value": f"```python\ndef f():\n    return {i}\n```"},
            ],
        }
        for i in range(rows)
    ]
    return {"sharegpt.json": json.dumps(records).encode()}


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    """An HF_HOME for this test, its hub cache empty, downloads off (as HF_HUB_OFFLINE=1 sets
    them at import) and the datasets cache inside it."""
    import datasets
    from huggingface_hub import constants

    home = tmp_path / "hf"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return home


# --- what a config needs ---------------------------------------------------------------------


def test_paper_config_lists_every_hub_artifact_it_reads():
    """Expected from paper.yaml and the catalogue read directly: six backbones, the judge, the
    cleaning tokenizer, the ShareGPT file and the hub source of every hub task."""
    config = load_yaml(REPO / "config" / "paper.yaml")
    catalog = load_catalog()
    expected = {("model", spec["source"]["hub"]["id"]) for spec in config["backbones"].values()}
    expected |= {("model", config["ift"]["labeller"]["model"])}
    expected |= {("model", config["ift"]["cleaning"]["tokenizer"])}
    expected |= {("dataset", source["hub"]) for source in config["ift"]["sources"]}
    hub_tasks = [name for name, entry in config["tasks"].items() if entry["source"] == "hub"]
    expected |= {("dataset", catalog[name]["hub"]["id"]) for name in hub_tasks}

    artifacts = prefetch_artifacts(config)
    assert {(a.repo_type, a.repo_id) for a in artifacts} == expected
    roles = ", ".join(a.role for a in artifacts)
    for name in list(config["backbones"]) + hub_tasks:
        assert name in roles
    assert "LLM judge" in roles and "cleaning tokenizer" in roles and "IFT source" in roles
    # All 12 test sets are accounted for: 10 from the hub, 2 generated (nothing to fetch).
    assert len(config["tasks"]) == 12 and len(hub_tasks) == 10
    sharegpt = next(a for a in artifacts if a.role.startswith("IFT source"))
    assert sharegpt.file == config["ift"]["sources"][0]["hub_file"]
    # The judge is a 7B model: its weights are fetched, not only its tokenizer.
    judge = next(a for a in artifacts if a.role == "LLM judge")
    assert "*.safetensors" in judge.patterns
    # One entry per repository and revision: the cleaning tokenizer is Llama-1's, fetched with
    # its weights; both bAbI tasks read one repository.
    assert len({a.key for a in artifacts}) == len(artifacts) == len(expected)
    llama = next(a for a in artifacts if a.repo_id == config["ift"]["cleaning"]["tokenizer"])
    assert llama.role == "backbone llama-1-7b, cleaning tokenizer"
    assert set(llama.patterns) == set(hub.MODEL_PATTERNS) | set(hub.TOKENIZER_PATTERNS)


def test_selections_of_one_repository_are_fetched_together():
    task_hubs = {
        "a": {"id": "x/y", "revision": "r1", "files": ["a/test*"]},
        "b": {"id": "x/y", "revision": "r1", "files": ["b/test*", "a/test*"]},
        "c": {"id": "x/y", "revision": "r2", "files": ["c/test*"]},
    }
    merged = hub.config_artifacts({}, task_hubs)
    assert [(a.role, a.revision, a.patterns, a.required) for a in merged] == [
        ("task a, task b", "r1", ("a/test*", "b/test*"), ("a/test*", "b/test*")),
        ("task c", "r2", ("c/test*",), ("c/test*",)),
    ]
    whole = hub.config_artifacts({}, {**task_hubs, "d": {"id": "x/y", "revision": "r1"}})
    assert whole[0].role == "task a, task b, task d" and whole[0].patterns is None


def test_offline_default_config_needs_nothing(default_config):
    assert prefetch_artifacts(default_config) == []


def test_dry_run_lists_without_downloading(fake_home, capsys):
    from codeift.cli import main

    put_gsm8k(fake_home)
    assert main(["prefetch", "--configfile", str(REPO / "config" / "paper.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"cached    task gsm8k: dataset openai/gsm8k@{GSM8K.get('revision') or 'main'}" in out
    assert "to fetch  backbone mistral-7b: model mistralai/Mistral-7B-v0.1@main" in out
    assert "generated (nothing to fetch): tasks first_letter_concat, list_reversal" in out
    assert not (fake_home / hub.MANIFEST_NAME).exists()


# --- offline resolution ----------------------------------------------------------------------


def test_prepare_reads_a_prefetched_backbone_offline(fake_home, tmp_path):
    from codeift.models.backbones import prepare_backbone

    snapshot = put_repo(fake_home, "model", "someone/tiny-llama", tiny_model_files())
    out = tmp_path / "base"
    record = prepare_backbone("tiny", {"source": {"hub": {"id": "someone/tiny-llama"}}}, out)
    assert record == {"snapshot": str(snapshot)}
    assert (out / "model.safetensors").resolve() == (snapshot / "model.safetensors").resolve()
    assert (out / "tokenizer.json").exists()


def test_a_missing_artifact_fails_at_once_naming_it_and_the_prefetch_command(fake_home, tmp_path):
    from codeift.models.backbones import prepare_backbone

    started = time.monotonic()
    with pytest.raises(hub.ArtifactMissing) as caught:
        prepare_backbone("m7", {"source": {"hub": {"id": "mistralai/Mistral-7B-v0.1"}}}, tmp_path)
    message = str(caught.value)
    assert "backbone m7" in message and "mistralai/Mistral-7B-v0.1@main" in message
    assert PREFETCH_HINT in message and "HF_HUB_OFFLINE=1" in message
    assert time.monotonic() - started < 5


def test_pinned_revisions_resolve_to_their_own_snapshot(fake_home):
    put_repo(fake_home, "model", "someone/tiny-llama", tiny_model_files(), COMMIT)
    put_repo(fake_home, "model", "someone/tiny-llama", tiny_model_files(), OTHER_COMMIT, ref=None)
    assert hub.model_path("someone/tiny-llama").name == COMMIT  # main
    assert hub.model_path("someone/tiny-llama", OTHER_COMMIT).name == OTHER_COMMIT
    with pytest.raises(hub.ArtifactMissing, match="someone/tiny-llama@" + "c" * 40):
        hub.model_path("someone/tiny-llama", "c" * 40)


def test_a_partial_snapshot_counts_as_missing(fake_home):
    files = {k: v for k, v in tiny_model_files().items() if k != "config.json"}
    put_repo(fake_home, "model", "someone/half", files)
    with pytest.raises(hub.ArtifactMissing, match="no file matching 'config.json'"):
        hub.model_path("someone/half")


def test_hub_test_set_and_ift_file_load_from_the_cache_offline(fake_home):
    from codeift.data.sources import iter_raw_records
    from codeift.tasks import build_task_frame

    rows = put_gsm8k(fake_home)
    frame = build_task_frame("gsm8k", {"domain": "arithmetic", "source": "hub"}, seed=0)
    assert frame.height == rows and set(frame["source"]) == {"hub:openai/gsm8k/main:test"}
    assert sorted(frame["answer"].to_list()) == sorted(str(i + 2) for i in range(rows))

    put_repo(fake_home, "dataset", "someone/sharegpt", sharegpt_files(8))
    source = {"kind": "sharegpt", "hub": "someone/sharegpt", "hub_file": "sharegpt.json"}
    records = [record for _, record in iter_raw_records(source)]
    assert [r["id"] for r in records] == [f"sg{i}" for i in range(8)]

    svamp = load_catalog()["svamp"]["hub"]["id"]
    with pytest.raises(CodeiftError, match=f"(?s){svamp}.*{PREFETCH_HINT}"):
        build_task_frame("svamp", {"domain": "arithmetic", "source": "hub"}, seed=0)
    with pytest.raises(hub.ArtifactMissing, match="IFT source sharegpt.*other.json"):
        list(iter_raw_records({**source, "hub_file": "other.json", "name": "sharegpt"}))


def test_a_parquet_export_is_read_per_config_folder(fake_home):
    """The hub's parquet export of a script dataset (revision refs/convert/parquet) has no card
    configs, one folder per config: that folder is read."""

    def parquet(rows: int) -> bytes:
        buffer = io.BytesIO()
        pl.DataFrame({"story": [f"s{i}" for i in range(rows)]}).write_parquet(buffer)
        return buffer.getvalue()

    files = {"cfg_a/test/0000.parquet": parquet(3), "cfg_b/test/0000.parquet": parquet(5)}
    put_repo(fake_home, "dataset", "someone/script-set", files, ref="refs/convert/parquet")
    rows = hub.load_dataset_split("someone/script-set", "cfg_b", "test", "refs/convert/parquet")
    assert [row["story"] for row in rows] == [f"s{i}" for i in range(5)]
    with pytest.raises(hub.ArtifactMissing, match="someone/script-set@main"):
        hub.load_dataset_split("someone/script-set", "cfg_b", "test")


def test_cleaning_tokenizer_resolves_offline(fake_home):
    from codeift.data.cleaning import Measure

    put_repo(fake_home, "model", "someone/tiny-llama", tiny_model_files())
    measure = Measure("someone/tiny-llama")
    assert measure.tokens([{"role": "user", "content": "hello world"}]) > 0
    with pytest.raises(hub.ArtifactMissing, match="cleaning tokenizer.*huggyllama/llama-7b"):
        Measure("huggyllama/llama-7b")


def test_jobs_go_offline_once_a_manifest_exists(tmp_path):
    env = {"HF_HOME": str(tmp_path)}
    assert not hub.offline_by_default(env) and "HF_HUB_OFFLINE" not in env
    (tmp_path / hub.MANIFEST_NAME).write_text("{}")
    assert hub.offline_by_default(env) and env["HF_HUB_OFFLINE"] == "1"
    allowed = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    assert not hub.offline_by_default(allowed) and allowed["HF_HUB_OFFLINE"] == "0"


# --- the prefetch step and its manifest ------------------------------------------------------


def test_manifest_records_commit_files_bytes_and_sha256(fake_home, tmp_path, monkeypatch):
    """prefetch with huggingface_hub's download replaced by a cache that already holds the
    files (what a finished download leaves): the manifest describes them exactly, a rerun keeps
    the hashes without re-reading, and a repository that cannot be fetched is reported."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    model = tiny_model_files()
    model_snapshot = put_repo(fake_home, "model", "someone/tiny-llama", model)
    data = sharegpt_files(3)
    data_snapshot = put_repo(fake_home, "dataset", "someone/sharegpt", {**data, "x.txt": b"x"})

    def snapshot_download(repo_id, **kwargs):
        if repo_id != "someone/tiny-llama":
            raise OSError("401 gated")
        return str(model_snapshot)

    def hf_hub_download(repo_id, filename, **kwargs):
        return str(data_snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    artifacts = [
        hub.model_artifact("backbone tiny", "someone/tiny-llama"),
        hub.file_artifact("IFT source sg", "someone/sharegpt", "sharegpt.json", None, "dataset"),
    ]
    manifest = tmp_path / "manifest.json"
    record = hub.prefetch(artifacts, manifest, log=lambda line: None)
    assert json.loads(manifest.read_text()) == record
    assert set(record["artifacts"]) == {
        "model:someone/tiny-llama@main",
        "dataset:someone/sharegpt@main/sharegpt.json",
    }
    entry = record["artifacts"]["model:someone/tiny-llama@main"]
    assert entry["commit"] == COMMIT and entry["repo_type"] == "model"
    wanted = {n for n in model if n.endswith((".json", ".safetensors", ".jinja"))}
    assert {f["path"] for f in entry["files"]} == wanted
    for item in entry["files"]:
        assert item["bytes"] == len(model[item["path"]])
        assert item["sha256"] == hashlib.sha256(model[item["path"]]).hexdigest()
    assert entry["bytes"] == sum(len(model[name]) for name in wanted)
    file_entry = record["artifacts"]["dataset:someone/sharegpt@main/sharegpt.json"]
    assert [f["path"] for f in file_entry["files"]] == ["sharegpt.json"]  # not x.txt
    assert file_entry["files"][0]["sha256"] == hashlib.sha256(data["sharegpt.json"]).hexdigest()

    def no_rehash(path):
        raise AssertionError(f"re-read {path}")

    monkeypatch.setattr(hub, "sha256_file", no_rehash)
    assert (
        hub.prefetch(artifacts, manifest, log=lambda line: None)["artifacts"]
        == (record["artifacts"])
    )

    gated = hub.model_artifact("backbone m7", "mistralai/Mistral-7B-v0.1")
    with pytest.raises(hub.ArtifactMissing, match="(?s)1 of 2 .*Mistral-7B-v0.1.*hf auth login"):
        hub.prefetch([artifacts[0], gated], manifest, log=lambda line: None)
    assert "model:someone/tiny-llama@main" in json.loads(manifest.read_text())["artifacts"]


def test_prefetch_refuses_to_run_offline(fake_home):
    with pytest.raises(hub.CodeiftError, match="unset HF_HUB_OFFLINE"):
        hub.prefetch([hub.model_artifact("x", "a/b")], fake_home / "m.json")


# --- in a job, in a network namespace without network ----------------------------------------


def _unshare_available() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n is not allowed: {probe.stderr.strip()}"


NO_NETWORK = _unshare_available()

# Loaded by every Python process of the run (PYTHONPATH): logs each name look-up and connection
# that leaves the machine, so "no network call" is observed, not inferred from success.
NETWORK_LOG_HOOK = """
import os, sys
_LOG = os.environ.get("CODEIFT_NETWORK_LOG")
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", b"localhost"}

def _record(event, detail):
    with open(_LOG, "a") as handle:
        handle.write(f"{os.getpid()} {event} {detail!r} {' '.join(sys.argv[:3])}\\n")

def _hook(event, args):
    if event == "socket.getaddrinfo" and args[0] not in _LOCAL:
        _record(event, args[0])
    elif event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in _LOCAL:
            _record(event, address)

if _LOG:
    sys.addaudithook(_hook)
"""


def watch_network(tmp_path: Path, env: dict[str, str]) -> Path:
    """Make every Python process started with `env` load NETWORK_LOG_HOOK; returns its log."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(NETWORK_LOG_HOOK)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(REPO / "src")])
    env["CODEIFT_NETWORK_LOG"] = str(tmp_path / "network.log")
    return tmp_path / "network.log"


def network_calls(log: Path, env: dict[str, str]) -> list[str]:
    """The calls logged so far, after checking that the hook is live in `env`: a probe that
    looks up huggingface.co must be logged (so an empty log means no call, not no hook)."""
    before = log.read_text().splitlines() if log.exists() else []
    probe = "import socket\ntry: socket.getaddrinfo('huggingface.co', 443)\nexcept OSError: pass"
    subprocess.run(no_network([sys.executable, "-c", probe]), env=env, check=True, timeout=60)
    after = log.read_text().splitlines()
    assert len(after) == len(before) + 1 and "'huggingface.co'" in after[-1], after
    return before


def no_network(command: list[str]) -> list[str]:
    """`command` in a new network namespace: only a loopback device, brought up for the
    processes that talk to themselves (torch.distributed's store)."""
    script = 'ip link set lo up && exec "$@"'
    return ["unshare", "-n", "sh", "-c", script, "sh", *command]


@pytest.mark.skipif(NO_NETWORK is not None, reason=str(NO_NETWORK))
def test_a_job_without_network_fails_fast_naming_the_missing_artifact(tmp_path):
    """The CLI as a job runs it: a manifest in HF_HOME and no HF_HUB_OFFLINE set."""
    (tmp_path / hub.MANIFEST_NAME).write_text(json.dumps({"artifacts": {}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path)
    log = watch_network(tmp_path, env)
    spec = json.dumps({"source": {"hub": {"id": "meta-llama/Llama-2-7b-hf"}}})
    started = time.monotonic()
    command = [sys.executable, "-m", "codeift", "prepare-backbone", "--name", "llama-2-7b"]
    command += ["--spec", spec, "--out", str(tmp_path / "base")]
    result = subprocess.run(
        no_network(command),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("codeift prepare-backbone: ArtifactMissing: backbone llama-2-7b")
    assert "meta-llama/Llama-2-7b-hf@main" in last and PREFETCH_HINT in last
    assert time.monotonic() - started < 60  # start-up only: nothing waits on a network
    assert network_calls(log, env) == []

    # The contrast: downloads allowed, the same job asks the network for the hub first.
    log.unlink()
    allowed = subprocess.run(
        no_network(command),
        capture_output=True,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "0"},
        timeout=120,
    )
    assert allowed.returncode == 2 and "could not download backbone llama-2-7b" in allowed.stderr
    assert any("'huggingface.co'" in line for line in log.read_text().splitlines())


@pytest.mark.slow
@pytest.mark.skipif(NO_NETWORK is not None, reason=str(NO_NETWORK))
def test_reduced_study_runs_with_no_network_from_a_prefetched_cache(tmp_path):
    """.test/config.yaml with its backbone, cleaning tokenizer, an IFT file and gsm8k taken from
    the hub cache (the shipped tiny llama and small files in hub layout), run by Snakemake in a
    network namespace with no network: its jobs complete, and no process looks up a name or
    connects anywhere but this machine. Jobs go offline on their own (a manifest exists, no
    HF_HUB_OFFLINE is set): online, huggingface_hub would look up huggingface.co first."""
    home = tmp_path / "hf"
    put_repo(home, "model", "codeift-test/tiny-llama", tiny_model_files())
    put_repo(home, "dataset", "codeift-test/sharegpt", sharegpt_files(8))
    put_gsm8k(home)
    (home / hub.MANIFEST_NAME).write_text(json.dumps({"artifacts": {}}))

    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["results"] = str(tmp_path / "results")
    config["backbones"] = {
        "tiny-llama": {
            "source": {"hub": {"id": "codeift-test/tiny-llama"}},
            "family": "llama",
            "size": "2M",
        }
    }
    config["ift"]["sources"].append(
        {
            "kind": "sharegpt",
            "name": "sharegpt",
            "hub": "codeift-test/sharegpt",
            "hub_file": "sharegpt.json",
        }
    )
    config["ift"]["cleaning"] = {"tokenizer": "codeift-test/tiny-llama", "max_tokens": 4096}
    config["tasks"]["gsm8k"] = {"domain": "arithmetic", "source": "hub", "size": 6}
    assert {(a.repo_type, a.repo_id) for a in prefetch_artifacts(config)} == {
        ("model", "codeift-test/tiny-llama"),
        ("dataset", "codeift-test/sharegpt"),
        ("dataset", "openai/gsm8k"),
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        CODEIFT_ENGINE_DIR=short_engine_dir(tmp_path),
    )
    network_log = watch_network(tmp_path, env)
    command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    # One arm's path through every stage kind but the aggregate: prepare (hub backbone), pool
    # (hub IFT file, hub cleaning tokenizer), mix, SFT, task build (hub test set), generation
    # with vLLM, scoring.
    target = tmp_path / "results" / "scores" / "tiny-llama" / "code100" / "gsm8k.parquet"
    command += ["--configfile", str(config_path), "--cores", "2", str(target)]
    result = subprocess.run(
        no_network(command), capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    results = tmp_path / "results"
    assert pl.read_parquet(target).height == 6
    task = pl.read_parquet(results / "tasks" / "gsm8k.parquet")
    assert set(task["source"]) == {"hub:openai/gsm8k/main:test"} and task.height == 6
    backbone = json.loads(
        (results / "models" / "tiny-llama" / "base" / "codeift_backbone.json").read_text()
    )
    assert backbone["snapshot"].startswith(str(home / "hub"))
    pool_report = json.loads((results / "ift" / "pool.report.json").read_text())
    assert "sharegpt" in json.dumps(pool_report)
    assert network_calls(network_log, env) == []
    assert "Finished job" in result.stdout + result.stderr
