"""Hub artifacts of a study: what a config needs, fetching them once, finding them offline.

Why: many clusters' compute nodes have no internet. Every hub artifact a study reads (backbones,
the judge model, the cleaning tokenizer, the IFT file, the test sets) is therefore listed from the
config here, downloaded once on the login node by `python -m codeift prefetch` into the hub cache
under `HF_HOME` (huggingface_hub's own layout: `models--org--name/snapshots/<commit>/...`), and
recorded in a manifest beside that cache. The loaders resolve every artifact through this module:
online they download as before; with `HF_HUB_OFFLINE=1` they read the cache only, and a missing
artifact fails at once, naming itself and the prefetch command, instead of waiting on a network.

Jobs run offline by default once a manifest exists (`offline_by_default`, called by the CLI of
every stage): the prefetch step has run, so a job that needs the network is a mistake to report,
not to hide. `HF_HUB_OFFLINE=0` in a job's environment allows downloads again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeift.errors import ArtifactMissing, CodeiftError
from codeift.io import write_json

PREFETCH_COMMAND = "python -m codeift prefetch --configfile <your config>"
MANIFEST_NAME = "codeift-prefetch.json"

# What a transformers/vLLM model folder needs: configs, safetensors weights, tokenizer files,
# templates and any remote code. `.bin` and other formats' duplicates are not fetched.
MODEL_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py")
# What AutoTokenizer needs (config.json tells it the model type when the tokenizer config
# does not name its class).
TOKENIZER_PATTERNS = (
    "tokenizer*",
    "special_tokens_map.json",
    "config.json",
    "*.model",
    "vocab*",
    "merges.txt",
    "*.jinja",
)
GATED_HINT = (
    "gated models and datasets need `hf auth login` and access granted on their hub page "
    "(Llama 2 and 3, Mistral-7B-v0.1 and Gemma are)"
)
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Artifact:
    """One hub repository at one revision, with the files a study reads from it.

    `patterns` selects files (None: the whole repository); `required` are globs that must each
    match a file of the snapshot for it to count as present (a partial snapshot is missing).
    """

    role: str
    repo_id: str
    repo_type: str = "model"
    revision: str | None = None
    patterns: tuple[str, ...] | None = None
    required: tuple[str, ...] = field(default=())
    file: str | None = None

    @property
    def key(self) -> str:
        """The artifact's identity in the manifest: type, repository, requested revision and,
        for a single file, its name."""
        name = f"{self.repo_type}:{self.repo_id}@{self.revision or 'main'}"
        return f"{name}/{self.file}" if self.file else name

    def describe(self) -> str:
        files = f" [{', '.join(self.patterns)}]" if self.patterns else ""
        return f"{self.role}: {self.repo_type} {self.repo_id}@{self.revision or 'main'}{files}"


def model_artifact(role: str, repo_id: str, revision: str | None = None) -> Artifact:
    return Artifact(role, repo_id, "model", revision, MODEL_PATTERNS, ("config.json",))


def tokenizer_artifact(role: str, repo_id: str, revision: str | None = None) -> Artifact:
    return Artifact(role, repo_id, "model", revision, TOKENIZER_PATTERNS, ("tokenizer*",))


def file_artifact(
    role: str, repo_id: str, filename: str, revision: str | None, repo_type: str
) -> Artifact:
    return Artifact(role, repo_id, repo_type, revision, (filename,), (filename,), filename)


def dataset_artifact(
    role: str, repo_id: str, revision: str | None = None, files: Iterable[str] | None = None
) -> Artifact:
    """A dataset repository: the data files a source names (each pattern must match), else the
    whole repository (which files make up a split is then `datasets`' reading of it)."""
    if files:
        patterns = tuple(files)
        return Artifact(role, repo_id, "dataset", revision, patterns, patterns)
    return Artifact(role, repo_id, "dataset", revision, None, ("*",))


# --- what a config needs ---------------------------------------------------------------------


def is_local(name: str) -> bool:
    """A config value that names a local folder or file rather than a hub id."""
    return Path(name).expanduser().exists()


def config_artifacts(
    config: dict[str, Any], task_hubs: Mapping[str, Mapping[str, Any]]
) -> list[Artifact]:
    """Every hub artifact a study config reads, in a stable order (duplicates kept once).

    Backbones (hub models and hub GGUF files), the LLM judge, the cleaning tokenizer, hub IFT
    sources and the hub test sets. Tiny, shipped, local-path and package sources need nothing.
    `task_hubs` maps each hub task to its resolved hub source (the task catalogue's reading of
    the config, which the CLI passes in: this module sits below the stages and imports none).
    """
    found: list[Artifact] = []
    for name, spec in (config.get("backbones") or {}).items():
        source = spec.get("source") or {}
        if "hub" in source:
            hub = source["hub"]
            found.append(model_artifact(f"backbone {name}", hub["id"], hub.get("revision")))
        gguf_hub = (source.get("gguf") or {}).get("hub")
        if gguf_hub:
            found.append(
                file_artifact(
                    f"backbone {name} (GGUF)",
                    gguf_hub["repo"],
                    gguf_hub["file"],
                    gguf_hub.get("revision"),
                    "model",
                )
            )
    ift = config.get("ift") or {}
    labeller = ift.get("labeller") or {}
    if labeller.get("method") == "llm_judge" and labeller.get("model"):
        if not is_local(labeller["model"]):
            found.append(model_artifact("LLM judge", labeller["model"], labeller.get("revision")))
    cleaning = ift.get("cleaning") or {}
    tokenizer = cleaning.get("tokenizer")
    if tokenizer and not is_local(tokenizer):
        found.append(
            tokenizer_artifact("cleaning tokenizer", tokenizer, cleaning.get("tokenizer_revision"))
        )
    for source in ift.get("sources") or []:
        if source.get("path") or not source.get("hub"):
            continue
        role = f"IFT source {source.get('name', source['kind'])}"
        if source.get("hub_file"):
            found.append(
                file_artifact(
                    role, source["hub"], source["hub_file"], source.get("revision"), "dataset"
                )
            )
        else:
            found.append(dataset_artifact(role, source["hub"], source.get("revision")))
    for name, hub in task_hubs.items():
        found.append(
            dataset_artifact(f"task {name}", hub["id"], hub.get("revision"), hub.get("files"))
        )
    return _merge(found)


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(first + second))


def _merge(artifacts: Iterable[Artifact]) -> list[Artifact]:
    """One artifact per manifest key, roles and file selections joined: two tasks reading
    files of one dataset repository fetch both in one go, and a cleaning tokenizer that is
    also a backbone comes with the backbone's files. A whole repository covers any selection."""
    merged: dict[str, Artifact] = {}
    for artifact in artifacts:
        known = merged.get(artifact.key)
        if known is None:
            merged[artifact.key] = artifact
            continue
        whole = known.patterns is None or artifact.patterns is None
        merged[artifact.key] = Artifact(
            f"{known.role}, {artifact.role}",
            known.repo_id,
            known.repo_type,
            known.revision,
            None if whole else _union(known.patterns or (), artifact.patterns or ()),
            ("*",) if whole else _union(known.required, artifact.required),
            known.file,
        )
    return list(merged.values())


# --- resolving, online or offline -------------------------------------------------------------


def offline() -> bool:
    """Whether hub downloads are off (HF_HUB_OFFLINE, read as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hf_home() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def manifest_path() -> Path:
    """The manifest sits in HF_HOME beside the cache it describes: compute nodes see the same
    shared folder, several studies and checkouts share one cache, and the manifest moves with it."""
    return hf_home() / MANIFEST_NAME


def offline_by_default(environ: dict[str, str] | None = None) -> bool:
    """Turn hub downloads off for this process and its children when a prefetch has run and the
    environment does not say otherwise. Must run before huggingface_hub is imported (the CLI
    calls it first); returns whether offline mode was switched on here."""
    environ = os.environ if environ is None else environ
    if "HF_HUB_OFFLINE" in environ or "TRANSFORMERS_OFFLINE" in environ:
        return False
    home = Path(
        environ.get("HF_HOME")
        or Path(environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface"
    ).expanduser()
    if not (home / MANIFEST_NAME).exists():
        return False
    environ["HF_HUB_OFFLINE"] = "1"
    if environ is os.environ:  # read at import: a library imported earlier is told directly
        for module, name in (
            ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
            ("datasets.config", "HF_HUB_OFFLINE"),
        ):
            if module in sys.modules:
                setattr(sys.modules[module], name, True)
    return True


def _missing_message(artifact: Artifact, detail: str) -> str:
    return (
        f"{artifact.describe()} is not in the local hub cache ({detail}) and downloads are off "
        f"(HF_HUB_OFFLINE=1). Fetch it on a machine with internet, into the same HF_HOME: "
        f"`{PREFETCH_COMMAND}`"
    )


def _check_required(artifact: Artifact, folder: Path) -> None:
    """A snapshot folder missing a required file counts as missing (an interrupted download)."""
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    for pattern in artifact.required:
        if not any(fnmatch.fnmatch(name, pattern) for name in names):
            raise ArtifactMissing(_missing_message(artifact, f"no file matching {pattern!r}"))


def _download(artifact: Artifact, local_only: bool) -> Path:
    """huggingface_hub's own download into (or look-up in) its cache: one file with
    hf_hub_download, else snapshot_download; returns the snapshot folder."""
    import huggingface_hub

    if artifact.file:
        path = huggingface_hub.hf_hub_download(
            repo_id=artifact.repo_id,
            filename=artifact.file,
            repo_type=artifact.repo_type,
            revision=artifact.revision,
            local_files_only=local_only,
        )
        folder = Path(path)
        for _ in Path(artifact.file).parts:
            folder = folder.parent
        return folder
    return Path(
        huggingface_hub.snapshot_download(
            artifact.repo_id,
            repo_type=artifact.repo_type,
            revision=artifact.revision,
            allow_patterns=list(artifact.patterns) if artifact.patterns else None,
            local_files_only=local_only,
        )
    )


def snapshot(artifact: Artifact) -> Path:
    """The local snapshot folder of an artifact: from the cache only when offline (failing at
    once if absent), else downloaded or refreshed by huggingface_hub."""
    if offline():
        try:
            folder = _download(artifact, local_only=True)
        except Exception as error:  # LocalEntryNotFoundError, IncompleteSnapshotError
            raise ArtifactMissing(_missing_message(artifact, type(error).__name__)) from error
        _check_required(artifact, folder)
        return folder
    try:
        folder = _download(artifact, local_only=False)
    except Exception as error:  # network, auth (gated), missing repo or revision alike
        raise ArtifactMissing(
            f"could not download {artifact.describe()}: {type(error).__name__}: {error}. "
            f"{GATED_HINT}; compute nodes without internet need `{PREFETCH_COMMAND}` first"
        ) from error
    _check_required(artifact, folder)
    return folder


def model_path(name: str, revision: str | None = None, role: str = "model") -> Path:
    """A model folder: a local path as given, else the hub model's snapshot."""
    if is_local(name):
        return Path(name).expanduser()
    return snapshot(model_artifact(role, name, revision))


def tokenizer_path(name: str, revision: str | None = None, role: str = "tokenizer") -> Path:
    """A tokenizer folder: a local path as given, else the tokenizer files of a hub model."""
    if is_local(name):
        return Path(name).expanduser()
    return snapshot(tokenizer_artifact(role, name, revision))


def repo_file(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    repo_type: str = "model",
    role: str = "file",
) -> Path:
    """One file of a hub repository (the ShareGPT JSON, a GGUF checkpoint)."""
    folder = snapshot(file_artifact(role, repo_id, filename, revision, repo_type))
    return folder / filename


def dataset_path(repo_id: str, revision: str | None = None, role: str = "dataset") -> Path:
    """A dataset repository's snapshot folder, for `datasets.load_dataset(<folder>, ...)`."""
    return snapshot(dataset_artifact(role, repo_id, revision))


def load_dataset_split(
    repo_id: str,
    config: str | None,
    split: str,
    revision: str | None = None,
    role: str = "dataset",
    streaming: bool = False,
) -> Any:
    """One split of a hub dataset, read from its local snapshot with `datasets`.

    Reading the snapshot folder (rather than passing the hub id to `datasets`) is what makes a
    compute node without internet read exactly what the login node fetched: `datasets` offline
    only finds datasets it prepared itself earlier, whatever their revision. A snapshot without
    configs in its card but with a folder per config (the hub's parquet export,
    `refs/convert/parquet`) is read from that folder.
    """
    import datasets

    folder = dataset_path(repo_id, revision, role)
    if config and (folder / config).is_dir() and not _card_configs(folder):
        return datasets.load_dataset(str(folder), data_dir=config, split=split, streaming=streaming)
    return datasets.load_dataset(str(folder), config, split=split, streaming=streaming)


def _card_configs(folder: Path) -> bool:
    """Whether a dataset card declares configs (YAML `configs:`) that `datasets` reads."""
    card = folder / "README.md"
    if not card.exists():
        return False
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return False
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    return any(line.startswith("configs:") for line in header.splitlines())


# --- the prefetch step and its manifest -------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path | None = None) -> dict[str, Any]:
    path = path or manifest_path()
    if not path.exists():
        return {"artifacts": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CodeiftError(f"prefetch manifest {str(path)!r} is not JSON: {error}") from error
    manifest.setdefault("artifacts", {})
    return manifest


def describe_snapshot(
    artifact: Artifact, folder: Path, known: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest entry of one fetched artifact: commit, files with bytes and SHA-256.

    A file whose blob (the cache's content-addressed name) and size match the previous manifest
    keeps its recorded hash, so a rerun does not re-read ~100 GB of weights.
    """
    previous = {item["path"]: item for item in (known or {}).get("files", [])}
    files = []
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = str(item.relative_to(folder))
        if artifact.patterns and not any(fnmatch.fnmatch(relative, p) for p in artifact.patterns):
            continue  # another artifact's file in the same snapshot
        blob = item.resolve()
        size = blob.stat().st_size
        old = previous.get(relative)
        if old and old.get("blob") == blob.name and old.get("bytes") == size:
            digest = old["sha256"]
        else:
            digest = sha256_file(blob)
        files.append({"path": relative, "bytes": size, "sha256": digest, "blob": blob.name})
    return {
        "role": artifact.role,
        "repo": artifact.repo_id,
        "repo_type": artifact.repo_type,
        "revision": artifact.revision or "main",
        "commit": folder.name,
        "patterns": list(artifact.patterns) if artifact.patterns else None,
        "snapshot": str(folder),
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
    }


def prefetch(
    artifacts: list[Artifact], manifest: Path | None = None, log: Any = print
) -> dict[str, Any]:
    """Download every artifact (huggingface_hub skips what the cache holds) and merge their
    entries into the manifest, written atomically. Every failure is collected and reported at
    the end, so one gated model does not hide the state of the others."""
    if offline():
        raise CodeiftError(
            "prefetch downloads: unset HF_HUB_OFFLINE (or set it to 0) and run it on a machine "
            "with internet (the login node)"
        )
    path = manifest or manifest_path()
    record = read_manifest(path)
    failures = []
    for artifact in artifacts:
        log(f"fetching {artifact.describe()}")
        try:
            folder = snapshot(artifact)
        except ArtifactMissing as error:
            failures.append(str(error))
            log(f"  FAILED: {error}")
            continue
        entry = describe_snapshot(artifact, folder, record["artifacts"].get(artifact.key))
        record["artifacts"][artifact.key] = entry
        log(f"  {entry['commit']}: {len(entry['files'])} files, {entry['bytes'] / 1e9:.2f} GB")
    record["hf_home"] = str(hf_home())
    write_json(record, path)
    if failures:
        raise ArtifactMissing(
            f"{len(failures)} of {len(artifacts)} artifact(s) could not be fetched "
            f"(manifest of the others: {path}):\n" + "\n".join(failures)
        )
    return record


def cached(artifact: Artifact) -> bool:
    """Whether the cache already holds an artifact (a local look, no network)."""
    try:
        _check_required(artifact, _download(artifact, local_only=True))
    except Exception:  # not cached, incomplete or missing a required file
        return False
    return True
