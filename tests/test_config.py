from __future__ import annotations

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


def test_embedded_default_and_paper_configs_validate(config):
    validate_config(config)
    validate_config(load_yaml(REPO / "config" / "paper.yaml"))


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
    assert backbone_train(config, "tiny-llama")["learning_rate"] == 0.5
    assert backbone_train(config, "tiny-qwen2")["learning_rate"] == config["train"]["learning_rate"]
    assert backbone_train(config, "tiny-qwen2")["packing"] is False  # from the defaults
    assert backbone_inference(config, "tiny-llama")["engine"] == "hf"
    assert backbone_inference(config, "tiny-qwen2")["engine"] == "vllm"


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
    seed = backbone_train(config, "tiny-llama")["seed"]
    assert arm_train(config, "tiny-llama", "code50r2")["seed"] == seed + 2
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
