"""Recipe schema: strict loading, overrides, cross-field validation, exit code 2 with the key path."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from acl_dist.cli import main
from acl_dist.config import ConfigError, load_recipe
from tests.conftest import REPO

RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"), recursive=True))


def test_there_are_recipes_for_every_method():
    from acl_dist.methods.registry import method_names

    names = set()
    for path in RECIPES:
        import yaml

        with open(path) as f:
            names.add(yaml.safe_load(f)["method"]["name"])
    assert set(method_names()) <= names


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.relpath(p, REPO) for p in RECIPES])
def test_every_recipe_loads_against_the_schema(path, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(path, _shard_free(path))
    assert recipe.method.name


def _shard_free(path):
    """Paper-scale recipes expect user shards: point them at a pattern check-free source to load them."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    if data.get("data", {}).get("source") == "shards" and not os.path.exists(str(data["data"].get("shards"))):
        return ["data.shards=pipe:cat /dev/null"]
    return []


@pytest.mark.parametrize("overrides, path, words", [
    (["model.resolutin=32"], "model.resolutin", "unknown key"),
    (["train.tensorboard=false"], "train.tensorboard", "moved: set log.trackers"),  # a key older versions had
    (["launch.process_group=nccl"], "launch.process_group", "not one of"),
    (["train.steps=ten"], "train.steps", "expected an integer"),
    (["model.resolution=96"], "model.resolution", "not a power of two"),
    (["model.resolution=2048"], "model.resolution", "outside"),
    (["method.name=vae", "method.gp_weight=10"], "method.gp_weight", "vae has no option 'gp_weight'"),
    (["method.name=acl_gan", "method.kl_weight=5"], "method.kl_weight", "acl_gan has no option"),
    (["method.name=acl_gan", "method.info_weight=5"], "method.info_weight", "would be ignored"),
    (["method.name=infogan", "method.gp_weight=10"], "method.gp_weight", "infogan has no option"),
    (["method.name=gan", "method.cls_weight=1"], "method.cls_weight", "gan has no option"),
    (["method.name=gann"], "method.name", "unknown method"),
    (["method.name=acl_gan", "method.code_loss=hinge"], "method.code_loss", "not one of"),
    (["method.name=infogan", "method.info_categorical=[1]"], "method.info_categorical", "at least 2"),
    (["method.name=wgan_gp", "method.gp_every=0"], "method.gp_every", "positive"),
    (["method.name=wgan_gp", "model.d_norm=batch"], "model.d_norm", "batch norm"),
    (["data.source=shards"], "data.shards", "missing"),
    (["data.source=shards", "data.shards=/nonexistent/s-{0..3}.tar"], "data.shards", "not found"),
    (["method.name=acl_sgan", "data.source=toy"], "data.source", "image-only"),
    (["optim.lr_per_net={Q: 0.1}"], "optim.lr_per_net.Q", "no net"),
    (["train.mixed_precision=fp8"], "train.mixed_precision", "not one of"),
    (["train.ema=1.5"], "train.ema", "[0, 1)"),
    (["train.cuda_graphs=always", "train.mixed_precision=fp16"], "train.cuda_graphs", "GradScaler"),
    (["train.cuda_graphs=always", "train.compile=true"], "train.cuda_graphs", "alternatives"),
    (["train.compile_backend=tvm"], "train.compile_backend", "not one of"),
    (["train.cuda_graphs=true"], "train.cuda_graphs", "not one of"),
    (["eval.metrics=[fid, kld]"], "eval.metrics[1]", "unknown metric 'kld'"),
    (["eval.metrics=[kid, fid, kid]"], "eval.metrics[2]", "listed twice"),
    (["eval.metrics=[]"], "eval.metrics", "empty"),
    (["eval.feature_extractor=clip", "eval.metrics=[fid, isc]"], "eval.metrics[1]", "class logits"),
    (["eval.feature_extractor=dino"], "eval.feature_extractor", "not one of"),
    (["eval.second_extractor=lenet"], "eval.second_extractor", "not one of"),
    (["eval.second_extractor=digits-cnn"], "eval.second_extractor", "another extractor"),
    (["eval.second_extractor=mnist-lenet", "eval.metrics=[isc]"], "eval.second_extractor", "asks for neither"),
    (["eval.kid_subset_size=0"], "eval.kid_subset_size", "positive"),
])
def test_bad_recipes_name_the_key_path(overrides, path, words):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, overrides)
    assert err.value.path == path
    assert words in str(err.value)


def test_overrides_are_parsed_as_yaml_values():
    recipe = load_recipe(None, ["optim.lr=1e-3", "data.augment=[color, cutout]", "method.name=infogan",
                                "method.info_categorical=[4, 5]", "model.g_norm=none"])
    assert recipe.optim.lr == pytest.approx(1e-3)
    assert recipe.data.augment == ["color", "cutout"]
    assert recipe.method.info_categorical == [4, 5]


def test_the_data_section_is_the_sources_own_options(tmp_path):
    """As for methods: a key the chosen source does not read is an error naming it, never ignored."""
    with pytest.raises(ConfigError, match="data.flip: digits has no option 'flip'"):
        load_recipe(None, ["data.source=digits", "data.flip=true"])
    with pytest.raises(ConfigError, match="data.toy_modes: shards has no option 'toy_modes'"):
        load_recipe(None, ["data.source=shards", "data.toy_modes=3"])
    recipe = load_recipe(None, ["data.source=toy", "data.toy_modes=3", "method.name=gan"])
    assert recipe.data.toy_modes == 3
    with pytest.raises(ConfigError, match="data.source: unknown data 'nope'"):
        load_recipe(None, ["data.source=nope"])


def test_dry_run_prints_the_resolved_recipe_with_only_the_methods_own_options(capsys):
    assert main(["train", os.path.join(REPO, "recipes/digits/acl_gan_gp.yaml"), "train.steps=7", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out
    method = yaml.safe_load(out)["method"]
    assert list(method)[0] == "name" and method["name"] == "acl_gan_gp"
    assert {"lambda_rec", "code_generator", "gp_weight"} <= set(method)
    assert not {"kl_weight", "info_weight", "cls_weight", "info_categorical"} & set(method)
    assert main(["train", os.path.join(REPO, "recipes/digits/vae.yaml"), "--dry-run"]) == 0
    assert set(yaml.safe_load(capsys.readouterr().out)["method"]) == {"name", "prior", "prior_modes", "prior_radius",
                                                                        "prior_std", "kl_weight"}


def test_inapplicable_option_exits_2_naming_the_key(capsys):
    assert main(["train", os.path.join(REPO, "recipes/digits/acl_gan.yaml"), "method.kl_weight=5", "--dry-run"]) == 2
    assert "method.kl_weight: acl_gan has no option 'kl_weight'" in capsys.readouterr().err


def test_every_method_declares_the_nets_it_builds():
    """Validation reads ``net_names`` instead of building nets; it must be what ``__init__`` builds."""
    from acl_dist.methods.registry import build_method, method_class, method_names
    from tests.conftest import tiny_overrides

    for name in method_names():
        recipe = load_recipe(None, tiny_overrides(name, "/tmp/x"))
        assert tuple(build_method(recipe.method, recipe.model).nets) == method_class(name).net_names, name


def test_recipe_saved_by_an_older_version_still_loads_from_a_checkpoint():
    """Checkpoints of older versions stored every method's options in one flat section."""
    from acl_dist.config import recipe_from_dict, to_dict

    data = to_dict(load_recipe(os.path.join(REPO, "recipes/digits/acl_gan.yaml")))
    data["method"].update(kl_weight=1.0, info_weight=1.0, cls_weight=1.0)
    recipe = recipe_from_dict(data, strict=False)
    assert recipe.method.name == "acl_gan" and not hasattr(recipe.method, "kl_weight")
    with pytest.raises(ConfigError, match="method.cls_weight"):
        recipe_from_dict(data)


def test_missing_recipe_file_is_a_config_error(capsys):
    assert main(["train", "/no/such/recipe.yaml"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_bare_no_is_read_as_the_string_no():
    """YAML 1.1 turns `mixed_precision: no` into False; a string field takes it back as "no"."""
    from tests.conftest import tiny_overrides

    recipe = load_recipe(None, tiny_overrides("gan", "/tmp/x", "train.mixed_precision=no"))
    assert recipe.train.mixed_precision == "no"


def test_eval_metrics_default_to_fid_and_take_every_metric():
    assert load_recipe(None, []).eval.metrics == ["fid"]
    recipe = load_recipe(None, ["eval.metrics=[fid, kid, isc, prc]", "eval.feature_extractor=inception-v3-compat"])
    assert recipe.eval.metrics == ["fid", "kid", "isc", "prc"]
    assert load_recipe(None, ["eval.metrics=[kid, prc]", "eval.feature_extractor=fd-dinov2"]).eval.metrics


def test_every_declared_choice_and_positive_field_refuses_a_bad_value_by_its_key_path():
    """Choices and positivity are declared on the schema's fields (sections.choice / positive) and validation
    reads them from there: each such field, given a bad value, is refused naming its own key path."""
    import dataclasses

    from acl_dist.sections import CHOSEN_BY, Recipe

    recipe = load_recipe(None, [])
    declared = [(s.name, f) for s in dataclasses.fields(Recipe) if s.name not in CHOSEN_BY
                for f in dataclasses.fields(getattr(recipe, s.name))
                if "choices" in f.metadata or f.metadata.get("positive")]
    assert len(declared) >= 25
    for section, f in declared:
        bad = "nonsense" if "choices" in f.metadata else 0
        with pytest.raises(ConfigError) as err:
            load_recipe(None, [f"{section}.{f.name}={bad}"])
        assert err.value.path == f"{section}.{f.name}", (section, f.name, str(err.value))
