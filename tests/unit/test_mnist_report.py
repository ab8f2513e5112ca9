"""The MNIST report's protocol: what selection picks, that an ACL configuration differs from its base in the ACL
module alone, the primary metric, and the statistics its verdicts rest on."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from acl_dist.config import load_recipe
from repro import mnist
from repro.jobs import REPO, job_fingerprint
from repro.stats import difference_sentence, distance_verdict, seeds_needed, welch, welch_from_moments


def test_welch_matches_scipy_and_the_verdict_follows_the_ci():
    base, other = [92.7, 85.0, 100.1, 88.4], [125.0, 95.0, 155.0]
    d = welch(base, other)
    ref = scipy_stats.ttest_ind(other, base, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d.ci_low, d.ci_high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert d.diff == pytest.approx(sum(other) / 3 - sum(base) / 4)
    assert distance_verdict(d) == "no evidence of a difference"  # the CI spans 0
    assert distance_verdict(welch([10.0, 11, 12, 10.5], [5.0, 5.5, 6, 5.2])) == "improves"  # CI below 0
    assert distance_verdict(welch([5.0, 5.5, 6, 5.2], [10.0, 11, 12, 10.5])) == "worse"
    with pytest.raises(ValueError, match="two values"):
        welch([1.0], [2.0, 3.0])


def test_welch_from_a_published_mean_and_std_matches_scipy_and_reads_as_one_sentence():
    """The digits reports keep only mean ± std over 3 seeds; their verdicts are recomputed from those."""
    d = welch_from_moments(92.7, 8.5, 3, 125.0, 28.5, 3)
    ref = scipy_stats.ttest_ind_from_stats(125.0, 28.5, 3, 92.7, 8.5, 3, equal_var=False)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    half = scipy_stats.t.ppf(0.975, d.df) * math.sqrt(28.5**2 / 3 + 8.5**2 / 3)
    assert (d.ci_low, d.ci_high) == (pytest.approx(32.3 - half, rel=1e-9), pytest.approx(32.3 + half, rel=1e-9))
    line = difference_sentence("acl_gan", "gan", d)
    assert line.startswith("acl_gan 125.0 vs gan 92.7 (3 and 3 seeds): acl_gan - gan = +32.3, 95% CI [")
    assert line.endswith("**no evidence of a difference**")
    with pytest.raises(ValueError, match="two values"):
        welch_from_moments(1.0, 0.0, 1, 2.0, 1.0, 3)


def test_seeds_needed_is_the_classic_sample_size():
    assert seeds_needed(10.0, 5.0) == 64  # Cohen's d = 0.5, alpha 5%, power 80%: 64 per arm
    assert seeds_needed(10.0, 10.0) == 17  # d = 1
    assert seeds_needed(10.0, 0.0) == math.inf


def test_selection_takes_the_lowest_mean_primary_and_the_recipe_on_a_tie():
    scores = {"recipe": [{"primary": 10.0}, {"primary": 12.0}], "a": [{"primary": 9.0}, {"primary": 12.5}],
              "b": [{"primary": 11.0}, {"primary": 11.0}]}
    assert mnist.select(scores, {"recipe": {}, "a": {}, "b": {}}) == "a"
    scores["a"] = [{"primary": 11.0}, {"primary": 11.0}]
    assert mnist.select(scores, {"a": {}, "recipe": {}, "b": {}}) == "recipe"


def test_bases_and_acl_methods_screen_the_same_number_of_settings():
    assert {len(v) for v in mnist.BASE_VARIANTS.values()} == {len(mnist.ACL_VARIANTS)}


@pytest.mark.parametrize("base", list(mnist.FAMILIES))
def test_acl_configurations_differ_from_their_base_in_the_acl_module_alone(base):
    """Whatever the base selected, the ACL runs carry it: every shared setting equal, as in the recipe pairs."""
    acl = mnist.FAMILIES[base]
    b = mnist.budget("full")
    for chosen in mnist.BASE_VARIANTS[base]:
        selection = {"gan": "recipe", "wgan_gp": "recipe", "acl_gan": "recipe", "acl_gan_gp": "recipe",
                     base: chosen, acl: "alg1_rec+base_code_opt"}
        configs = mnist.confirm_configs(selection)
        base_recipe = load_recipe(f"{REPO}/recipes/mnist/{base}.yaml", mnist._overrides(configs[base][1]))
        acl_recipe = load_recipe(f"{REPO}/recipes/mnist/{acl}.yaml", mnist._overrides(configs[acl][1]))
        for section in ("data", "model", "train", "eval"):
            assert getattr(base_recipe, section) == getattr(acl_recipe, section), (chosen, section)
        o_base, o_acl = base_recipe.optim, acl_recipe.optim
        assert (o_base.lr, o_base.beta1, o_base.beta2) == (o_acl.lr, o_acl.beta1, o_acl.beta2)
        assert acl_recipe.method.d_steps == base_recipe.method.d_steps
        assert o_acl.lr_per_net == {} and not acl_recipe.method.rec_updates_generator  # the variant applied
    jobs = mnist.acl_jobs(b, {"gan": "recipe", "wgan_gp": "recipe", base: "lr_x2"})
    mine = [j for j in jobs if f"-{acl}-" in j.name]
    assert len(mine) == len(mnist.ACL_VARIANTS) * len(mnist.SELECTION_SEEDS)
    assert all(job_fingerprint(j)["optim"]["lr"] == mnist.BASE_VARIANTS[base]["lr_x2"]["optim.lr"] for j in mine)


def test_confirmation_seeds_are_fresh_and_every_pair_is_compared():
    assert not set(mnist.SELECTION_SEEDS) & set(mnist.CONFIRM_SEEDS) and len(mnist.CONFIRM_SEEDS) >= 10
    selection = {"gan": "recipe", "wgan_gp": "recipe", "acl_gan": "recipe", "acl_gan_gp": "recipe"}
    jobs = mnist.confirm_jobs(mnist.budget("full"), selection)
    assert len(jobs) == 8 * len(mnist.CONFIRM_SEEDS)
    fake = {m: [{"primary": 10.0 + i + (m == "acl_gan")} for i in range(3)] for m in mnist.confirm_configs(selection)}
    titles = [(base, other) for _, base, other, _ in mnist.comparisons(fake)]
    assert titles == [("gan", "acl_gan"), ("wgan_gp", "acl_gan_gp"), ("vae", "acl_ae"), ("aae", "acl_ae"),
                      ("arae", "acl_gan")]


def test_primary_metric_is_the_mean_of_the_last_four_evaluations(tmp_path):
    (tmp_path / "eval.csv").write_text("step,fid\n" + "".join(f"{s},{f}\n" for s, f in
                                                              [(1, 90.0), (2, 50), (3, 40), (4, 30), (5, 20)]))
    assert mnist.primary(str(tmp_path)) == pytest.approx((50 + 40 + 30 + 20) / 4)
    (tmp_path / "eval.csv").write_text("step,fid\n1,5\n2,4\n")
    with pytest.raises(mnist.ReproError, match="needs 4"):
        mnist.primary(str(tmp_path))


def test_budgets_share_seeds_and_evaluation_and_differ_in_steps_alone():
    """``session`` is the grid at a third of ``full``'s steps (what one CPU session affords): the same seeds, ten
    evaluations of 1,000 samples each, so its report is the same protocol at a stated shorter budget."""
    full, session, gpu = mnist.budget("full"), mnist.budget("session"), mnist.budget("gpu")
    assert (full["steps"], session["steps"], gpu["steps"]) == (1500, 500, 6000)
    for b in (full, session, gpu):
        assert b["steps"] // b["eval_every"] == 10 and b["samples"] == 1000
        assert (b["select"], b["confirm"]) == (mnist.SELECTION_SEEDS, mnist.CONFIRM_SEEDS)
    assert "1,500" in mnist.BUDGET_WORDS["full"] and "a third" in mnist.BUDGET_WORDS["session"]  # reports say it


@pytest.mark.parametrize("budget", ["session", "gpu"])
def test_mnist_only_budgets_are_refused_for_other_parts(budget, capsys):
    from repro import build_parser, run_repro

    assert run_repro(build_parser().parse_args(["table1", "--budget", budget])) == 2
    assert f"--budget {budget} is for mnist, r3gan and r3gan_screen" in capsys.readouterr().err


def test_r3gan_screens_as_many_settings_as_wgan_gp_on_the_selection_seeds_sharing_wgan_gp_s_runs():
    """R3GAN gets WGAN-GP's tuning effort: one job per setting and selection seed, each setting's change applied
    and nothing else; WGAN-GP's jobs are the MNIST screen's own (same name, same settings), so they are shared."""
    from repro import r3gan_screen

    b = mnist.budget("session")
    assert len(r3gan_screen.R3GAN_VARIANTS) == len(mnist.BASE_VARIANTS["wgan_gp"])
    jobs = r3gan_screen.screen_jobs(b, ("lr_x2", mnist.BASE_VARIANTS["wgan_gp"]["lr_x2"]))
    plain = job_fingerprint(mnist.job("select", "r3gan", "recipe", {}, 0, b))
    for name, values in r3gan_screen.R3GAN_VARIANTS.items():
        mine = [j for j in jobs if f"-r3gan-{name}-" in j.name]
        assert [j.name.rsplit("-seed", 1)[1] for j in mine] == [str(s) for s in mnist.SELECTION_SEEDS]
        printed = job_fingerprint(mine[0])
        changed = {f"{section}.{key}" for section in ("optim", "method", "model", "train", "eval")
                   for key in plain[section] if plain[section][key] != printed[section][key]}
        assert changed == set(values), (name, changed)  # the variant's change and nothing else
        assert all(printed[k.split(".")[0]][k.split(".")[1]] == v for k, v in values.items())
    shared = [j for j in jobs if "-wgan_gp-" in j.name]
    assert [(j.name, j.overrides) for j in shared] == [(j.name, j.overrides) for j in mnist.base_jobs(b)
                                                        if "-wgan_gp-lr_x2-" in j.name]
