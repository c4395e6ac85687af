"""Backbones: tiny models built locally (no download), the shipped pretrained tiny bases,
hub models, local folders and GGUF checkpoints (converted once, see codeift.models.gguf).

Base models mostly ship no chat template, so every backbone gets the same study template
(`templates/chat.jinja`, text markers plus the tokenizer's own EOS) unless its config says `keep`:
then a model's own template is kept, with generation markers added for the assistant-only loss
(codeift.models.chat_templates). Training and evaluation (base variant included) render prompts
alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codeift.errors import BackboneError
from codeift.io import atomic_path, stable_hash, write_json
from codeift.models.chat_templates import TemplateError, assign_chat_template
from codeift.models.gguf import prepare_gguf
from codeift.models.pretrain import shipped_base
from codeift.models.tiny import CHAT_TEMPLATE, build_tiny
from codeift.settings import DEFAULT_CHAT_TEMPLATE

TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
}


def _link_files(source_dir: Path, out_dir: Path) -> None:
    """Symlink a model's weights and configs (a 7B copy would double the disk it takes)."""
    for item in sorted(source_dir.iterdir()):
        if item.name not in TOKENIZER_FILES and not item.name.startswith("."):
            os.symlink(item.resolve(), out_dir / item.name)


def prepare_existing(
    source_dir: str | Path, out_dir: str | Path, chat_template: str, record: dict
) -> None:
    """Make a backbone folder from a downloaded or local model: linked weights, our template."""
    from transformers import AutoTokenizer

    source = Path(source_dir)
    if not (source / "config.json").exists():
        raise BackboneError(f"{source}: no config.json; expected a transformers model folder")
    tokenizer = AutoTokenizer.from_pretrained(source)
    try:
        record = {
            **record,
            "chat_template": assign_chat_template(tokenizer, chat_template, CHAT_TEMPLATE),
        }
    except TemplateError as error:
        raise BackboneError(f"{source}: {error}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_path(out_dir, directory=True) as tmp:
        _link_files(source, tmp)
        tokenizer.save_pretrained(tmp)
        write_json(record, tmp / "codeift_backbone.json")


def download_hub(repo_id: str, revision: str | None, name: str = "") -> Path:
    """A hub model's snapshot (safetensors weights, configs, tokenizer): downloaded, or read from
    the prefetched cache when offline (codeift.hub)."""
    from codeift.hub import model_path

    return model_path(repo_id, revision, role=f"backbone {name}".strip())


def prepare_backbone(name: str, spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Entry point of the prepare job: one backbone's base model in `out_dir`."""
    source = spec["source"]
    template = spec.get("chat_template", DEFAULT_CHAT_TEMPLATE)
    if "tiny" in source:
        return build_tiny(source["tiny"], out_dir)
    if "gguf" in source:
        return prepare_gguf(name, source["gguf"], template, out_dir)
    if "pretrained" in source:
        folder = shipped_base(source["pretrained"])
        if not (folder / "config.json").exists():
            raise BackboneError(
                f"backbone {name!r}: the shipped base {str(folder)!r} is missing; rebuild it "
                "with the pretrain_tiny_base rule (docs/small-world.md, 'Pretrained tiny bases')"
            )
        prepare_existing(folder, out_dir, template, {"source": source})
        return {"pretrained": str(folder)}
    if "path" in source:
        path = Path(source["path"]).expanduser()
        if not path.is_dir():
            raise BackboneError(f"backbone {name!r}: source.path {str(path)!r} is not a folder")
        prepare_existing(path, out_dir, template, {"source": source})
        return {"path": str(path)}
    hub = source["hub"]
    local = download_hub(hub["id"], hub.get("revision"), name)
    prepare_existing(local, out_dir, template, {"source": source, "snapshot": str(local)})
    return {"snapshot": str(local)}


def model_fingerprint(model_dir: str | Path) -> str:
    """Identity of a model folder's contents as seen by an engine (config and weight mtimes)."""
    root = Path(model_dir)
    if not (root / "config.json").exists():
        raise BackboneError(f"model folder {str(root)!r} has no config.json (was it prepared?)")
    stamps = {
        item.name: os.stat(item).st_mtime_ns
        for item in sorted(root.iterdir())
        if item.is_file() and item.suffix in {".json", ".safetensors", ".bin"}
    }
    return stable_hash({"path": str(root.resolve()), "stamps": stamps})
