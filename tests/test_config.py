from __future__ import annotations

import copy

import pytest

from codeift.config import (
    ConfigError,
    backbone_inference,
    backbone_train,
    load_yaml,
    validate_config,
    variants,
    with_defaults,
)
from codeift.study import variant_proportion, variant_replicate
from tests.conftest import REPO


def test_embedded_default_paper_and_test_configs_validate(config):
    validate_config(config)
    validate_config(load_yaml(REPO / "config" / "paper.yaml"))
    validate_config(load_yaml(REPO / ".test" / "config.yaml"))  # the workflow tests' study


def _error(config) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(config)
    return str(caught.value)


def test_unknown_top_level_key_is_named_with_allowed_keys(config):
    config["proportion"] = [0, 100]
    message = _error(config)
    assert "unknown key(s) ['proportion']" in message
    assert "proportions" in message and "backbones" in message


def test_unknown_backbone_key(config):
    config["backbones"]["tiny-llama"]["lr"] = 1
    assert "backbones.tiny-llama" in _error(config)


@pytest.mark.parametrize("bad", [150, -5])
def test_proportion_outside_0_100(config, bad):
    config["proportions"] = [0, bad]
    message = _error(config)
    assert "proportions[1]" in message and "0..100" in message


def test_task_with_unknown_domain(config):
    config["tasks"]["coin_flip"]["domain"] = "musical"
    message = _error(config)
    assert "tasks.coin_flip.domain" in message
    assert "symbolic" in message and "arithmetic" in message


def test_task_domain_must_match_catalogue(config):
    config["tasks"]["coin_flip"]["domain"] = "arithmetic"
    assert "tasks.coin_flip" in _error(config)


def test_backbone_without_source(config):
    del config["backbones"]["tiny-qwen2"]["source"]
    message = _error(config)
    assert "backbones.tiny-qwen2" in message and "'source' is a required property" in message


def test_backbone_with_two_sources(config):
    config["backbones"]["tiny-qwen2"]["source"]["path"] = "/models/x"
    assert "exactly one of hub, path, tiny" in _error(config)


def test_unknown_engine(config):
    config["inference"]["engine"] = "llamacpp"
    message = _error(config)
    assert "inference.engine" in message and "vllm" in message and "hf" in message


def test_generator_source_without_examples(config):
    config["ift"]["sources"] = [{"kind": "generator"}]
    assert "ift.sources[0]" in _error(config)


def test_file_source_without_path(config):
    config["ift"]["sources"] = [{"kind": "sharegpt"}]
    assert "needs path or hub" in _error(config)


def test_backbone_overrides_layer_over_study_settings(config):
    config["backbones"]["tiny-llama"]["train"] = {"learning_rate": 0.5}
    config["backbones"]["tiny-llama"]["inference"] = {"engine": "hf"}
    assert backbone_train(config, "tiny-llama").learning_rate == 0.5
    assert backbone_train(config, "tiny-qwen2").learning_rate == config["train"]["learning_rate"]
    assert backbone_train(config, "tiny-qwen2").packing is False  # from the defaults
    assert backbone_inference(config, "tiny-llama").engine == "hf"
    assert backbone_inference(config, "tiny-qwen2").engine == "vllm"


def test_variants_and_their_proportions(config):
    assert variants(with_defaults(config)) == ["base", "code0", "code50", "code100", "code50r1"]
    config["evaluate_base"] = False
    config.pop("replicates")
    assert variants(config) == ["code0", "code50", "code100"]
    assert variant_proportion("code25") == 25 and variant_proportion("base") is None
    with pytest.raises(ConfigError):
        variant_proportion("codeX")


def test_replicate_arms_extend_the_variants_and_move_the_seed(config):
    from codeift.config import arm_train, replicate_arms

    config["proportions"] = [0, 50, 100]
    config["replicates"] = {"proportions": [50], "count": 2}
    validate_config(config)
    assert replicate_arms(config) == ["code50r1", "code50r2"]
    assert variants(config)[-2:] == ["code50r1", "code50r2"]
    assert variant_proportion("code50r2") == 50 and variant_replicate("code50r2") == 2
    assert variant_replicate("code50") == 0 and variant_replicate("base") == 0
    seed = backbone_train(config, "tiny-llama").seed
    assert arm_train(config, "tiny-llama", "code50r2").seed == seed + 2
    assert arm_train(config, "tiny-llama", "code50") == backbone_train(config, "tiny-llama")


def test_a_replicate_of_a_missing_proportion_is_named(config):
    config["proportions"] = [0, 100]
    config["replicates"] = {"proportions": [50]}
    message = _error(config)
    assert "replicates.proportions" in message and "[0, 100]" in message


def test_a_planted_direction_must_be_gain_lose_or_none(config):
    config["controls"] = {"planted": {"list_reversal": "up"}}
    message = _error(config)
    assert "controls.planted.list_reversal" in message and "gain" in message


def test_a_malformed_variant_is_named():
    with pytest.raises(ConfigError, match="code50x"):
        variant_proportion("code50x")


# Issue 15: malformed configs that used to pass validation, one test per case.
@pytest.mark.parametrize("key", ["proportions", "replicates"])
def test_a_fractional_proportion_is_rejected(config, key):
    if key == "proportions":
        config["proportions"] = [0, 50.0, 100]
    else:
        config["replicates"] = {"proportions": [50.0]}
    message = _error(config)
    assert "50.0" in message and "an integer 0..100" in message
    assert ("proportions[1]" if key == "proportions" else "replicates.proportions[0]") in message


@pytest.mark.parametrize("section", ["backbones", "tasks"])
def test_a_name_ending_in_a_newline_is_rejected(config, section):
    name = "tiny-llama" if section == "backbones" else "coin_flip"
    config[section][name + "\n"] = config[section].pop(name)
    message = _error(config)
    assert f"config key '{section}'" in message and repr(name + "\n") in message
    assert "no newline" in message


def test_results_that_is_an_existing_file_is_rejected(config, tmp_path):
    existing = tmp_path / "results.txt"
    existing.write_text("not a folder")
    config["results"] = str(existing)
    message = _error(config)
    assert "config key 'results'" in message and "existing file" in message
    config["results"] = str(tmp_path / "new-folder")
    validate_config(config)


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_results_is_rejected(config, value):
    config["results"] = value
    message = _error(config)
    assert "config key 'results'" in message and "non-space character" in message


def test_a_task_size_of_10_to_the_12_is_rejected(config):
    config["tasks"]["coin_flip"]["size"] = 10**12
    message = _error(config)
    assert "tasks.coin_flip.size" in message and "1..1000000" in message


def test_an_ift_total_of_10_to_the_12_is_rejected(config):
    config["ift"]["total"] = 10**12
    message = _error(config)
    assert "ift.total" in message and "1..10000000" in message


def test_max_model_len_below_max_new_tokens_is_rejected(config):
    config["inference"].update(max_model_len=100, max_new_tokens=256)
    message = _error(config)
    assert "'inference.max_model_len'" in message and "inference.max_new_tokens = 256" in message
    assert "max_model_len > max_new_tokens" in message


def test_a_backbone_override_of_max_model_len_is_checked_too(config):
    config["inference"].update(max_model_len=2048, max_new_tokens=128)
    validate_config(config)
    config["backbones"]["tiny-qwen2"]["inference"] = {"max_model_len": 128}
    message = _error(config)
    assert "'backbones.tiny-qwen2.inference.max_model_len'" in message
    assert "backbone tiny-qwen2" in message


def test_a_planted_control_for_a_task_not_in_the_study_is_rejected(config):
    config["controls"] = {"planted": {"list_reversal": "gain", "chess": "lose"}}
    message = _error(config)
    assert "controls.planted.chess" in message and "not a task of this study" in message
    assert "list_reversal" in message  # the allowed tasks are listed


def test_backbone_names_differing_only_in_case_are_rejected(config):
    config["backbones"]["Tiny-Llama"] = copy.deepcopy(config["backbones"]["tiny-llama"])
    message = _error(config)
    assert "'backbones.tiny-llama' and 'backbones.Tiny-Llama' differ only in case" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c.__setitem__("proportions", []), "proportions"),
        (lambda c: c.__setitem__("proportions", [0, 0]), "proportions"),
        (lambda c: c.__setitem__("proportions", [0, True]), "proportions[1]"),
        (lambda c: c.__setitem__("backbones", {}), "backbones"),
        (lambda c: c["tasks"]["coin_flip"].__setitem__("size", 0), "tasks.coin_flip.size"),
        (lambda c: c["tasks"]["coin_flip"].__setitem__("size", "24"), "tasks.coin_flip.size"),
        (lambda c: c["train"].__setitem__("learning_rate", 0), "train.learning_rate"),
        (lambda c: c["train"].__setitem__("warmup_ratio", 1), "train.warmup_ratio"),
        (lambda c: c["inference"].__setitem__("max_new_tokens", 0), "inference.max_new_tokens"),
        (lambda c: c["ift"].__setitem__("total", 2.5), "ift.total"),
        (lambda c: c["ift"]["labeller"].__setitem__("method", "gpt"), "ift.labeller.method"),
        (lambda c: c.__setitem__("results", 5), "results"),
        (lambda c: c["tasks"].__setitem__("bad name", {"domain": "symbolic"}), "tasks"),
    ],
)
def test_other_malformed_configs_stay_rejected(config, change, named):
    change(config)
    assert f"'{named}'" in _error(config)


@pytest.mark.parametrize(
    "key, value",
    [
        ("results", "results-study/run 1"),
        ("backbones.tiny-llama.source", {"hub": {"id": "HuggingFaceTB/SmolLM2-135M-Instruct"}}),
        ("backbones.tiny-llama.source", {"hub": {"id": "gpt2", "revision": "refs/pr/1"}}),
        ("backbones.tiny-llama.size", "8x7B"),
        ("ift.cleaning.tokenizer", "Qwen/Qwen2.5-0.5B"),
        ("seed", 2**32 - 1),
        ("train.learning_rate", 2e-5),
    ],
)
def test_ordinary_values_pass_the_stricter_checks(config, key, value):
    """The checks of issue 25 refuse hostile values, not the study's ordinary ones."""
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    resolved = validate_config(config)
    assert resolved["results"].is_absolute()


def test_path_keys_are_resolved_and_returned(config, tmp_path):
    config["results"] = str(tmp_path / "a" / ".." / "b")
    with pytest.raises(ConfigError, match="'results'"):
        validate_config(config)  # `..` is refused, even where it stays inside
    config["results"] = str(tmp_path / "b")
    config["ift"]["sources"] = [{"kind": "jsonl", "path": str(tmp_path / "pool.jsonl")}]
    resolved = validate_config(config)
    assert resolved["results"] == (tmp_path / "b").resolve()
    assert resolved["ift.sources[0].path"] == (tmp_path / "pool.jsonl").resolve()
