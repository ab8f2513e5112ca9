"""How an ACL module is attached to its base: the paper's attachment, the changes the ablation screens, and the
name a report prints beside every ACL row (so a reader never has to guess which attachment a number is for)."""

from __future__ import annotations

from acl_dist.config import Recipe

PAPER = {  # the attachment as the paper describes it (and as the recipes had it before the ablation)
    "method.code_generator": "mlp", "method.encoder_code_norm": "none", "method.generator_norm_stats": "all",
    "method.code_d_steps": 1, "eval.bn_recalibration": 0,
}
ACL_METHODS = ("acl_gan", "acl_gan_gp", "acl_ae")
CHANGES = {  # name: (what it is, the overrides, the methods it applies to)
    "residual": ("residual Gz, identity at step 0", {"method.code_generator": "residual"}, ACL_METHODS),
    "code_norm": ("standardised encoder codes", {"method.encoder_code_norm": "batch"}, ACL_METHODS),
    "gx_stats": ("Gx batch-norm statistics from Gz(z) codes only",
                 {"method.generator_norm_stats": "sampling_codes"}, ("acl_gan", "acl_gan_gp")),
    "recalibration": ("batch norms recalibrated on 10 batches of samples before grids and FD",
                      {"eval.bn_recalibration": 10}, ACL_METHODS),
    "code_gan": ("2 Dc steps per step", {"method.code_d_steps": 2}, ACL_METHODS),
}


def _value(recipe: Recipe, key: str) -> object:
    section, field = key.split(".", 1)
    return getattr(getattr(recipe, section), field, None)


def attachment_name(recipe: Recipe) -> str:
    """The recipe's attachment as the ablation names it: "paper", or the changes it applies joined by "+"
    ("residual+code_norm"), from the options the recipe's method has; "—" for a method without an ACL module."""
    if not any(hasattr(recipe.method, key.split(".", 1)[1]) for key in PAPER if key.startswith("method.")):
        return "—"
    applied = [name for name, (_, overrides, _) in CHANGES.items()
               if all(_value(recipe, k) == v for k, v in overrides.items())]
    return "+".join(applied) or "paper"
