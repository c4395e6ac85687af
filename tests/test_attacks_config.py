"""Attacks through the study config: values that pass validation and then reach paths, shells,
numeric code or memory (issue 25). Each case must be refused before any job runs, by a
ConfigError that names the key and says what is allowed; the run-time source checks are judged
by what reading the source does. Each failed on the code before the change (commit b55139e):
see docs/security.md.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from codeift.config import ConfigError, load_yaml, validate_config


def _set(config: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _refused(config: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    return str(caught.value)


RESULTS = [
    ("/", "root"),
    ("/etc", "system-folder"),
    ("/usr/local/results", "inside-a-system-folder"),
    ("/tmp", "shared-folder"),
    ("..", "parent"),
    ("../elsewhere", "dotdot"),
    (".", "working-directory"),
    ("results\nrm -rf ~", "newline"),
    ("res\x1b[2Jults", "escape"),
]


@pytest.mark.parametrize("value", [v for v, _ in RESULTS], ids=[i for _, i in RESULTS])
def test_a_results_folder_that_is_not_a_study_folder_is_refused(config, value):
    config["results"] = value
    message = _refused(config)
    assert "config key 'results'" in message and "allowed" in message


NUMBERS = [
    ("train.learning_rate", math.nan),
    ("analysis.alpha", math.nan),
    ("resources.retry_scale", math.inf),
    ("engines.idle_seconds", math.nan),
    ("engines.idle_seconds", math.inf),
    ("train.num_train_epochs", math.inf),
]


@pytest.mark.parametrize("key, value", NUMBERS, ids=[f"{k}={v}" for k, v in NUMBERS])
def test_a_number_that_is_not_finite_is_refused(config, key, value):
    _set(config, key, value)
    message = _refused(config)
    assert f"config key '{key}'" in message and "finite" in message


BOUNDS = [
    ("seed", 2**32),
    ("analysis.seed", 2**40),
    ("train.seed", 2**63),
    ("analysis.bootstrap_samples", 10**9),
    ("inference.threads", 10**6),
    ("inference.max_new_tokens", 10**9),
    ("train.learning_rate", 1e6),
]


@pytest.mark.parametrize("key, value", BOUNDS, ids=[k for k, _ in BOUNDS])
def test_a_number_beyond_its_stated_bound_is_refused(config, key, value):
    _set(config, key, value)
    message = _refused(config)
    assert f"config key '{key}'" in message and "out of range" in message


@pytest.mark.parametrize(
    "label", ["7B\n", "7B\t", "\u0663B", "1" * 400 + "B"], ids=["newline", "tab", "arabic", "inf"]
)
def test_a_malformed_size_label_is_refused_naming_its_key(config, label):
    """Labels the old reader took: a newline or tab (then in every job's resources), a digit
    of another script, a count that reads as infinity."""
    config["backbones"]["tiny-llama"]["size"] = label
    message = _refused(config)
    assert "config key 'backbones.tiny-llama.size'" in message and "allowed" in message


HUB_IDS = ["org/model'; touch /tmp/x; '", "../../etc/passwd", 'a/"b"', "org/-model", "a/b/c"]


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_a_backbone_hub_id_outside_the_hubs_grammar_is_refused(config, hub_id):
    config["backbones"]["tiny-llama"]["source"] = {"hub": {"id": hub_id}}
    message = _refused(config)
    assert "config key 'backbones.tiny-llama.source.hub.id'" in message and "hub id" in message


def test_a_task_hub_id_with_a_command_is_refused(config):
    config["tasks"]["coin_flip"]["spec"] = {"hub": {"id": "org/$(reboot)"}}
    assert "config key 'tasks.coin_flip.spec.hub.id'" in _refused(config)


def test_a_dataset_hub_id_with_a_quote_is_refused(config):
    config["ift"]["sources"] = [{"kind": "sharegpt", "hub": "org/data'x"}]
    assert "config key 'ift.sources[0].hub'" in _refused(config)


def test_a_revision_climbing_out_with_dotdot_is_refused(config):
    config["backbones"]["tiny-llama"]["source"] = {"hub": {"id": "org/m", "revision": "../../x"}}
    assert "config key 'backbones.tiny-llama.source.hub.revision'" in _refused(config)


def test_a_tokenizer_that_is_neither_a_folder_nor_a_hub_id_is_refused(config):
    config["ift"]["cleaning"]["tokenizer"] = "org/tok$(id)"
    assert "config key 'ift.cleaning.tokenizer'" in _refused(config)


def test_a_model_folder_at_the_root_is_refused(config):
    config["backbones"]["tiny-llama"]["source"] = {"path": "/"}
    message = _refused(config)
    assert "config key 'backbones.tiny-llama.source.path'" in message


@pytest.mark.parametrize("value", ["/dev/zero", "/proc/self/mem", "/dev/stdin"])
def test_an_ift_source_on_a_pseudo_file_is_refused(config, value):
    config["ift"]["sources"] = [{"kind": "jsonl", "path": value}]
    assert "config key 'ift.sources[0].path'" in _refused(config)


def test_an_ift_source_that_is_a_fifo_is_refused_when_read(tmp_path):
    """At run time (a FIFO made after validation would block the reader forever)."""
    from codeift.data.sources import IFTError, _resolve_source_file

    fifo = tmp_path / "pool.jsonl"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(IFTError, match="not a regular file"):
        _resolve_source_file({"kind": "jsonl", "name": "pool", "path": str(fifo)})
    assert time.monotonic() - started < 5


def test_an_ift_source_that_is_a_folder_is_refused_when_read(tmp_path):
    from codeift.data.sources import IFTError, _resolve_source_file

    with pytest.raises(IFTError, match="not a regular file"):
        _resolve_source_file({"kind": "jsonl", "name": "pool", "path": str(tmp_path)})


def _bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


@pytest.mark.parametrize("levels", [5, 9])
def test_a_yaml_alias_bomb_in_a_free_form_key_is_refused_fast(config, levels):
    """A few hundred bytes of anchors and aliases under a key the schema leaves open (a task's
    hub spec): expanded, millions of values that every job's params would carry."""
    bomb = yaml.safe_load(_bomb(levels))
    config["tasks"]["coin_flip"]["spec"] = {"hub": {"id": "org/data", "x": bomb[f"l{levels}"]}}
    started = time.monotonic()
    message = _refused(copy.copy(config))
    assert "expands" in message and "allowed" in message
    assert time.monotonic() - started < 5


def test_a_yaml_file_that_is_an_alias_bomb_is_refused_when_loaded(tmp_path):
    path = Path(tmp_path / "bomb.yaml")
    path.write_text(_bomb(9))
    assert len(path.read_bytes()) < 600
    with pytest.raises(ConfigError, match="bomb.yaml: expands"):
        load_yaml(path)


# --------------------------------------------------------------------------- through Snakemake


@pytest.mark.slow
@pytest.mark.parametrize("results", ["/etc", "/", "/usr/share/study"])
def test_snakemake_stops_a_system_results_folder_before_any_job(tmp_path, results):
    """The value as a user gives it (`--config results=...`), judged by the run: it stops
    before planning any job, naming the key."""
    from tests.test_workflow import reduced_config, snakemake

    config = reduced_config(tmp_path / "results", engine="hf")
    run = snakemake(tmp_path, config, "-n", "--config", f"results={results}", check=False)
    assert run.returncode != 0
    assert "config key 'results'" in run.stdout + run.stderr


@pytest.mark.slow
def test_snakemake_stops_an_alias_bomb_config_before_any_job(tmp_path):
    """A configfile whose anchors expand to half a million values (a 5 MB rule param before):
    Snakemake's own YAML loader reads it, the validation refuses it, in seconds."""
    from tests.test_workflow import BIN, REPO, reduced_config

    config = reduced_config(tmp_path / "results", engine="hf")
    task = sorted(config["tasks"])[0]
    config["tasks"][task]["spec"] = {"hub": {"id": "org/data", "BOMB": 0}}
    text = yaml.safe_dump(config, sort_keys=False)
    line = next(line for line in text.splitlines() if line.strip() == "BOMB: 0")
    indent = line[: len(line) - len(line.lstrip())]
    bomb = "\n".join(indent + row for row in _bomb(5).splitlines())
    path = tmp_path / "bomb.yaml"
    path.write_text(text.replace(line, bomb))
    command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    command += ["--configfile", str(path), "--cores", "1", "-n"]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "expands" in run.stdout + run.stderr
    assert time.monotonic() - started < 120
