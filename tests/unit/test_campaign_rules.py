"""The campaign's declared rules: the plateau budget, the primary metric's window, what a record satisfies."""

from __future__ import annotations

from repro import campaign, records
from repro.campaign import plateau_budget, window_mean


def _curve(values: dict[int, float]) -> list[dict]:
    return [{"step": s, "fid": v} for s, v in sorted(values.items())]


def test_the_window_is_a_fraction_of_the_budget_whatever_the_evaluation_density():
    dense = _curve({s: float(s) for s in range(250, 10_001, 250)})
    sparse = _curve({s: float(s) for s in range(1000, 10_001, 1000)})
    assert window_mean(dense, 4000) == sum(range(3000, 4001, 250)) / 5  # (2800, 4000]
    assert window_mean(sparse, 4000) == 3500.0  # 3,000 and 4,000
    assert window_mean(dense, 10_000) == sum(range(7250, 10_001, 250)) / 12


def test_the_budget_is_where_no_longer_run_improves_by_more_than_the_tolerance():
    # falls as 1/step to step 4,000, then flat: the budget is where the window stops improving by 5%
    falling = _curve({s: (100.0 + 4e5 / s if s <= 4000 else 200.0) for s in range(250, 10_001, 250)})
    b = plateau_budget(falling, 10_000, 1000)
    assert b is not None and 4000 <= b <= 6000
    later = [window_mean(falling, x) for x in range(b + 250, 10_001, 250)]
    assert min(later) >= 0.95 * window_mean(falling, b)


def test_a_curve_still_falling_at_the_end_has_no_plateau_and_a_late_rise_is_a_plateau():
    still = _curve({s: 1e6 / s for s in range(250, 10_001, 250)})
    assert plateau_budget(still, 10_000, 1000) is None
    rising = _curve({s: 50.0 + abs(s - 3000) / 100 for s in range(250, 10_001, 250)})  # ACL-GAN's late drift
    assert plateau_budget(rising, 10_000, 1000) is not None


def _job(*extra: str) -> dict:
    from repro.jobs import Job, job_fingerprint

    return job_fingerprint(Job("x", "recipes/mnist/gan.yaml", list(extra)))


def test_a_record_key_ignores_length_and_evaluation_density_but_not_what_is_computed():
    key = records.record_key(_job("train.steps=1000", "eval.every=250"))
    assert key == records.record_key(_job("train.steps=10000", "eval.every=500", "train.log_every=10"))
    assert key != records.record_key(_job("train.steps=1000", "optim.lr=0.0004"))
    assert key != records.record_key(_job("train.steps=1000", "run.seed=1"))
    assert key != records.record_key(_job("train.steps=1000", "eval.num_samples=5000"))


def test_a_recipe_scheduled_over_its_length_is_keyed_by_its_length():
    from repro.jobs import Job, job_fingerprint

    def r3(steps: int) -> dict:
        return job_fingerprint(Job("x", "recipes/mnist/r3gan.yaml", [f"train.steps={steps}"]))

    assert records.schedules_over_length(r3(100))
    assert records.record_key(r3(100)) != records.record_key(r3(200))


def test_a_record_satisfies_shorter_budgets_at_divisible_evaluation_steps():
    need = records.Need("gan/recipe", "gan", 0, "k", 4000, 500)
    rec = {"key": "k", "steps": 10_000, "eval_every": 250}
    assert records.satisfies(rec, need)
    assert not records.satisfies({**rec, "steps": 3000}, need)
    assert not records.satisfies({**rec, "eval_every": 300}, need)
    assert not records.satisfies({**rec, "key": "other"}, need)


def test_records_survive_a_torn_last_line(tmp_path):
    path = str(tmp_path / "r.jsonl")
    records.append(path, {"key": "a", "steps": 1})
    with open(path, "a") as f:
        f.write('{"key": "b", "ste')  # a write cut short by a kill
    assert records.load(path) == [{"key": "a", "steps": 1}]


def test_the_time_budget_predicts_from_the_records_of_the_same_method_and_device():
    sp = campaign.spec("gan", "recipe", {}, 0, 1000)
    assert campaign.predicted_seconds(sp, [], "cpu") == campaign.PRIOR_SECONDS_PER_STEP["gan"] * 1000
    recs = [{"method": "gan", "device_kind": "cpu", "wall_s": 100.0, "steps": 500},
            {"method": "gan", "device_kind": "cuda", "wall_s": 1.0, "steps": 500},
            {"method": "gan", "device_kind": "cpu", "wall_s": 1.0, "steps": 500, "resumed": True}]
    assert campaign.predicted_seconds(sp, recs, "cpu") == 200.0


def test_a_record_written_before_a_field_existed_still_satisfies_at_that_fields_default():
    """Adding a schema field (at a default that keeps what runs computed) must not orphan the committed records;
    a changed value, stored in the record, must."""
    fp = _job("train.steps=1000", "eval.every=250")
    wanted, defaults = records.computed(fp), records.schema_defaults(fp)
    old = {section: dict(values) for section, values in fp.items()}
    del old["train"]["schedule_images"], old["optim"]["schedule"]  # fields this record's schema did not have
    record = {"key": "from-an-older-schema", "steps": 10_000, "eval_every": 250, "fingerprint": old}
    need = records.Need("gan/recipe", "gan", 0, records.record_key(fp), 1000, 250, wanted, defaults)
    assert records.satisfies(record, need)
    linear = records.computed(_job("train.steps=1000", "optim.schedule=linear"))
    assert not records.satisfies(record, records.Need("gan/x", "gan", 0, "k2", 1000, 250, linear, defaults))
    changed = {**old, "optim": {**old["optim"], "lr": 1.0}}  # a value the record holds explicitly
    assert not records.satisfies({**record, "fingerprint": changed}, need)


def test_r3gan_runs_keep_their_ema_half_life_a_quarter_of_the_horizon_at_every_budget():
    """R3GAN's recipe schedules over the run (train.schedule_images 0) with an EMA half-life of a quarter of its
    10,000 x 64 images: a budget of 20,000 steps doubles it; a run is not the prefix of a longer one (the key keeps
    train.steps); recipes without a horizon-bound half-life get no such override."""
    s = campaign.Settings()
    ten, twenty = (campaign.spec("r3gan", "recipe", {}, 0, n) for n in (10_000, 20_000))
    assert "train.ema_halflife_images=160000" in ten.job(s).overrides
    assert "train.ema_halflife_images=320000" in twenty.job(s).overrides
    assert ten.need(s).key != twenty.need(s).key
    assert not any(o.startswith("train.ema_halflife") for o in campaign.spec("gan", "recipe", {}, 0, 20_000).job(s)
                   .overrides)
    # the order: the GAN pair, WGAN-GP, the autoencoders, then R3GAN
    assert [f.name for f in campaign.FAMILIES] == ["gan", "wgan_gp", "autoencoder", "r3gan"]
    r3gan = campaign.FAMILIES[3]
    assert len(r3gan.base_variants) == len(campaign.FAMILIES[1].base_variants)  # the same tuning effort


def _fabricated(sp: campaign.Spec, s: campaign.Settings) -> dict:
    """A record for ``sp`` as a finished run would leave it: an FD curve that falls and flattens at step 4."""
    level = {"acl_ae": 40.0, "aae": 60.0, "vae": 50.0, "arae": 90.0}.get(sp.method, 70.0) + sp.seed % 7
    curve = [{"step": t, "fid": level * (2.0 if t < 4 else 1.0)} for t in range(s.eval_every, sp.steps + 1,
                                                                                s.eval_every)]
    return {"key": sp.need(s).key, "steps": sp.steps, "eval_every": s.eval_every, "label": sp.label,
            "method": sp.method, "seed": sp.seed, "curve": curve, "overrides": [], "diagnostics": []}


def test_the_autoencoder_family_trains_its_references_beside_base_and_acl_and_confirms_acl_against_each():
    """AAE is ACL-AE's one-change base; VAE and ARAE are references: in the budget runs and the confirmation at
    their recipes, never screened, each compared with the selected ACL-AE; ACL-AE has no Algorithm 1 arm."""
    from repro.campaign_report import _verdicts

    family = next(f for f in campaign.FAMILIES if f.name == "autoencoder")
    assert (family.base, family.acl, family.references, family.alg1) == ("aae", "acl_ae", ("vae", "arae"), False)
    for f in campaign.FAMILIES:  # the same tuning effort on both sides of every family
        assert len(f.acl_variants) == len(f.base_variants) == 5, f.name
    s, recorded, stages = campaign.Settings.tiny(), [], []
    while True:
        st = campaign.family_state(family, s, recorded)
        if not st.missing:
            break
        stages.append((st.stage, sorted({sp.label for sp in st.missing})))
        recorded += [_fabricated(sp, s) for sp in st.missing]
    assert stages[0] == ("budget", ["aae/recipe", "acl_ae/recipe", "arae/recipe", "vae/recipe"])
    assert [stage for stage, _ in stages] == ["budget", "base screen", "ACL screen", "confirmation"]
    assert all(label.startswith("aae/") for label in stages[1][1])  # the references are never screened
    assert stages[3][1] == ["aae/selected", "acl_ae/selected", "arae/reference", "vae/reference"]  # no alg1 arm
    assert st.stage == "done" and st.budget == 4 and set(st.budgets) == {"aae", "acl_ae", "vae", "arae"}
    text = "\n".join(_verdicts(st))
    for comparator in ("aae/selected", "vae/reference", "arae/reference"):
        assert f"- **acl_ae/selected against {comparator}: " in text, text
    # seeds 200 and 201: levels 50 + 4, 50 + 5 and 40 + 4, 40 + 5
    assert "| FD | vae/reference | 54.5 ± 0.7 | acl_ae/selected | 44.5 ± 0.7 |" in text


def test_the_training_figure_draws_each_seeds_longest_budget_run_recorded():
    """Budget runs double while no plateau shows: a method whose longer runs are not recorded yet keeps its curves
    in the picture from the runs it has."""
    from repro.campaign_report import _longest_budget_run

    s = campaign.Settings.tiny()
    short = _fabricated(campaign.spec("acl_gan", "recipe", {}, 0, s.long_steps), s)
    long = _fabricated(campaign.spec("acl_gan", "recipe", {}, 0, 2 * s.long_steps), s)
    assert _longest_budget_run("acl_gan", 0, 2 * s.long_steps, [short], s) is short
    assert _longest_budget_run("acl_gan", 0, 2 * s.long_steps, [short, long], s) is long
    assert _longest_budget_run("acl_gan", 1, 2 * s.long_steps, [short, long], s) is None  # another seed


def test_the_report_gives_each_missing_runs_predicted_time_and_sends_runs_too_long_for_a_cpu_sitting_to_a_gpu():
    from repro.campaign_report import _missing

    s = campaign.Settings()
    states = {st.family.name: st for st in campaign.plan(s, [])}
    gan, r3gan = _missing(states["gan"], []), _missing(states["r3gan"], [])
    minutes = campaign.PRIOR_SECONDS_PER_STEP["gan"] * s.long_steps / 60
    assert f"gan/recipe seed 0 ({s.long_steps} steps, {minutes:.0f} min)" in gan and "GPU" not in gan
    assert campaign.PRIOR_SECONDS_PER_STEP["r3gan"] * s.long_steps > 3600 * campaign.CPU_SITTING_HOURS
    assert "acl_r3gan/recipe, r3gan/recipe runs take longer than" in r3gan and "gpu_campaign.sh" in r3gan


def test_a_family_waiting_for_one_methods_budget_runs_already_reports_the_others_plateau():
    from repro.campaign_report import _family_section

    s = campaign.Settings.tiny()
    family = next(f for f in campaign.FAMILIES if f.name == "gan")
    recorded = [_fabricated(campaign.spec("gan", "recipe", {}, seed, s.long_steps), s) for seed in s.selection_seeds]
    st = campaign.family_state(family, s, recorded)
    assert st.budget is None and st.budgets == {"gan": 4}  # the fabricated curves flatten at step 4
    assert {sp.label for sp in st.missing} == {"acl_gan/recipe"}
    assert "no budget (plateau so far: gan's 4)." in "\n".join(_family_section(st, "", [], recorded))


def test_recipes_that_stop_loading_under_a_running_campaign_end_it_with_what_to_do(tmp_path, monkeypatch):
    """A pull or an edit while the campaign runs can give the recipes a key the loaded code does not know: the
    next plan fails after a run was recorded, and the campaign says so (one line) instead of a bare traceback.
    A recipe that does not load before any run stays the ConfigError it is."""
    import pytest

    from acl_dist.errors import ConfigError
    from repro.jobs import ReproError

    s, real_plan, calls = campaign.Settings.tiny(), campaign.plan, []

    def plan(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise ConfigError("data.new_key", "mnist5k has no option 'new_key'")
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(campaign, "plan", plan)
    monkeypatch.setattr(campaign, "train_and_record", lambda sp, *a: {"label": sp.label, "seed": sp.seed,
                                                                        "wall_s": 1.0, "final": {}})
    with pytest.raises(ReproError, match=r"after 1 run \(recorded\).*changed while it ran.*start the campaign again"):
        campaign.run_campaign(s, str(tmp_path / "runs"), str(tmp_path / "records.jsonl"), 1, "cpu", None,
                              None, say=lambda line: None)
    calls.clear()
    monkeypatch.setattr(campaign, "plan", lambda *a, **k: (_ for _ in ()).throw(ConfigError("x", "bad")))
    with pytest.raises(ConfigError):
        campaign.run_campaign(s, str(tmp_path / "runs"), str(tmp_path / "records.jsonl"), 1, "cpu", None,
                              None, say=lambda line: None)
