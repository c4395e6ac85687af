"""The typed settings and the schema describe the same keys, and a config becomes settings."""

from __future__ import annotations

import dataclasses

import pytest

from codeift.config import SCHEMA_PATH, arm_train, backbone_inference, load_yaml, with_defaults
from codeift.errors import ConfigError
from codeift.settings import SECTIONS, AnalysisSettings, MixSettings, TrainSettings

# Keys of `resources` that are request tiers (codeift.resources), not ResourceSettings fields.
RESOURCE_TIERS = {"sft", "generate", "small", "prepare", "build_pool", "pretrain"}


def _schema_section(schema: dict, section: str) -> dict:
    node = schema
    for part in section.split("."):
        node = node["properties"][part]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_properties_and_settings_fields_agree(section: str) -> None:
    schema = load_yaml(SCHEMA_PATH)
    properties = set(_schema_section(schema, section)["properties"])
    if section == "resources":
        properties -= RESOURCE_TIERS
    fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
    assert properties == fields


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_setting_has_help(section: str) -> None:
    assert all(text.strip() for text in SECTIONS[section].help().values())


def test_train_settings_use_sftconfig_names_where_they_mean_the_same() -> None:
    from trl import SFTConfig

    ours = {f.name for f in dataclasses.fields(TrainSettings)}
    theirs = {f.name for f in dataclasses.fields(SFTConfig)}
    # dtype (one precision for loading and mixed precision) and threads are the study's own;
    # warmup_ratio: transformers 5 dropped it and reads a float warmup_steps < 1 as a ratio;
    # peft: TRL takes a PeftConfig object beside SFTConfig (built in codeift.train.lora).
    assert ours - theirs == {"dtype", "threads", "warmup_ratio", "peft"}


def test_a_backbone_override_and_a_replicate_reach_the_arm_settings(config: dict) -> None:
    config["backbones"]["tiny-llama"]["train"] = {"learning_rate": 0.5}
    config = with_defaults(config)
    settings = arm_train(config, "tiny-llama", "code50r2")
    assert settings.learning_rate == 0.5
    assert settings.seed == config["train"]["seed"] + 2
    assert settings.packing is TrainSettings().packing  # unset: the default
    assert TrainSettings.from_json(settings.to_json()) == settings


def test_inference_settings_take_the_job_gpus_unless_set(config: dict) -> None:
    settings = backbone_inference(with_defaults(config), "tiny-qwen2")
    assert settings.tensor_parallel_size == 1
    assert settings.max_new_tokens == config["inference"]["max_new_tokens"]


def test_an_unknown_key_names_the_section() -> None:
    with pytest.raises(ConfigError, match=r"'ift.mix': unknown key\(s\) \['nestd'\]"):
        MixSettings.from_mapping({"nestd": True})
    with pytest.raises(ConfigError, match="analysis.alpha"):
        AnalysisSettings(alpha=2.0)
