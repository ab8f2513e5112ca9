"""An ACL recipe is its base recipe plus the ACL module: a comparison between the two changes one thing.

Allowed to differ: the run's and the method's names, the ACL method's own options (keys its base method
does not have), the ACL module's nets' own optimizer settings (Gz, Dc), the module's size and the evaluation's
batch-norm recalibration. Anything else (an image net's Adam betas, say) is a confound and fails here.
"""

from __future__ import annotations

import os

import pytest
import yaml

from acl_dist.config import recipe_from_dict, to_dict
from tests.conftest import REPO

PAIRS = [  # (ACL recipe, its base recipe)
    ("digits/acl_gan", "digits/gan"), ("digits/acl_sgan", "digits/gan"), ("digits/acl_gan_gp", "digits/wgan_gp"),
    ("digits/acl_ae", "digits/aae"), ("acl_gan_celeba", "gan_celeba"), ("acl_gan_cifar10", "gan_cifar10"),
    ("acl_sgan_cifar10", "gan_cifar10"), ("acl_gan_gp_celeba", "wgan_gp_celeba"),
    ("acl_gan_gp_cifar10", "wgan_gp_cifar10"), ("acl_ae_mnist", "aae_mnist"),
    ("mnist/acl_gan", "mnist/gan"), ("mnist/acl_gan_gp", "mnist/wgan_gp"), ("mnist/acl_sgan", "mnist/gan"),
    ("mnist/acl_ae", "mnist/aae"), ("mnist/acl_r3gan", "mnist/r3gan"), ("acl_r3gan_ffhq256", "r3gan_ffhq256"),
    ("acl_r3gan_ffhq512", "r3gan_ffhq512"),
]
ACL_NETS = {"Gz", "Dc"}
ALWAYS_OWN = {"run.name", "method.name", "model.acl_hidden", "model.acl_layers", "eval.bn_recalibration"}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("lr_per_net", "betas_per_net"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _load(name: str) -> dict:
    """The recipe with every default filled in (not validated: paper-scale shards need not exist here)."""
    with open(os.path.join(REPO, "recipes", f"{name}.yaml")) as f:
        return _flat(to_dict(recipe_from_dict(yaml.safe_load(f))))


def _per_net_differences(key: str, acl: dict, base: dict) -> list[str]:
    """Per-net optimizer entries may differ for the ACL module's nets only."""
    return [f"{key}.{net}" for net in set(acl) | set(base) if net not in ACL_NETS and acl.get(net) != base.get(net)]


@pytest.mark.parametrize("acl_name, base_name", PAIRS)
def test_an_acl_recipe_differs_from_its_base_only_in_the_acl_module(acl_name, base_name):
    acl, base = _load(acl_name), _load(base_name)
    confounds = []
    for key in sorted(set(acl) | set(base)):
        if key in ALWAYS_OWN or (key.startswith("method.") and key not in base):
            continue
        if key in ("optim.lr_per_net", "optim.betas_per_net"):
            confounds += _per_net_differences(key, acl.get(key) or {}, base.get(key) or {})
        elif acl.get(key) != base.get(key):
            confounds.append(f"{key}: {acl.get(key)!r} vs {base.get(key)!r}")
    assert not confounds, f"{acl_name} differs from {base_name} beyond the ACL module: {confounds}"
