"""The DeepSpeed JSON a recipe names: what acl_dist fills in, and what it refuses before any process starts."""

from __future__ import annotations

import json

import pytest

from acl_dist.config import ConfigError, load_recipe
from acl_dist.rules import load_deepspeed_config
from tests.conftest import tiny_overrides


def _recipe(tmp_path, ds: dict, *extra: str):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    return load_recipe(None, tiny_overrides("acl_gan_gp", str(tmp_path), f"launch.deepspeed={path}", *extra))


def test_trainer_owned_fields_are_filled_from_the_recipe(tmp_path):
    recipe = _recipe(tmp_path, {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 2}},
                     "train.batch_size=16", "optim.grad_clip=2.5")
    config = load_deepspeed_config(recipe)
    assert config["train_micro_batch_size_per_gpu"] == 16
    assert config["gradient_accumulation_steps"] == 1 and config["gradient_clipping"] == 2.5
    assert config["zero_optimization"] == {"stage": 2}


@pytest.mark.parametrize("ds, extra, key, words", [
    ({"fp16": {"enabled": True}}, (), "launch.deepspeed", "train.mixed_precision"),
    ({"optimizer": {"type": "Adam"}}, (), "launch.deepspeed", "optimizer section"),
    ({"zero_optimization": {"stage": 2}}, ("train.mixed_precision=fp16",), "train.mixed_precision", "bf16"),
    ({"zero_optimization": {"stage": 3}}, ("train.ema=0.99",), "launch.deepspeed", "gradient penalty"),
    ({"zero_optimization": {"stage": 2}}, ("train.channels_last=always",), "train.channels_last", "layout"),
    ({"zero_optimization": {"stage": 2}}, ("train.compile=true",), "train.compile", "DeepSpeed"),
    ({"zero_optimization": {"stage": 2}}, ("train.cuda_graphs=always",), "train.cuda_graphs", "DeepSpeed"),
    ({"zero_optimization": {"stage": 2}}, ("launch.process_group=gloo",), "launch.process_group", "NCCL"),
])
def test_conflicting_settings_are_refused_with_the_key(tmp_path, ds, extra, key, words):
    with pytest.raises(ConfigError) as err:
        _recipe(tmp_path, ds, *extra)
    assert err.value.path == key and words in str(err.value)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text("{stage: 2")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_recipe(None, tiny_overrides("acl_gan_gp", str(tmp_path), f"launch.deepspeed={path}"))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(None, tiny_overrides("acl_gan_gp", str(tmp_path), "launch.deepspeed=/nope/ds.json"))
