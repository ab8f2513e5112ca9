"""The training step never reads the device from the host, and a non-finite loss is skipped on the device.

Why: every ``.item()``/``bool(tensor)`` in the hot path drains the GPU queue (the CPU waits for the GPU to
catch up before it may launch the next kernel). On the CPU the same code calls no such method, so patching
them to raise catches a host read wherever it hides; tests/unit/test_cuda.py checks the CUDA path with
``torch.cuda.set_sync_debug_mode("error")`` on a GPU.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from acl_dist.methods.registry import method_names
from acl_dist.training.trainer import Trainer, TrainingError

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def host_reads_forbidden(monkeypatch: pytest.MonkeyPatch):
    """Any tensor -> Python read inside the block raises (the CPU stand-in for CUDA's sync debug mode)."""
    reads: list[str] = []

    def forbid(name: str):
        def read(self, *args, **kwargs):
            reads.append(name)
            raise AssertionError(f"host read Tensor.{name} in the training step")
        return read

    with monkeypatch.context() as m:
        for name in HOST_READS:
            m.setattr(torch.Tensor, name, forbid(name))
        yield reads


@pytest.mark.parametrize("method, extra", [(m, []) for m in method_names()] + [
    ("acl_ae", ["method.prior=gmm"]), ("acl_gan_gp", ["model.checkpoint_activations=true"])])
def test_training_step_reads_nothing_back_from_the_device(tiny_recipe, monkeypatch, method, extra):
    trainer = Trainer(tiny_recipe(method, "train.steps=5", *extra))
    batches, sums = iter(trainer.stream), {}
    trainer.run_step(batches, sums)  # first step: optimizer state creation may read, it happens once
    with host_reads_forbidden(monkeypatch) as reads:
        for _ in range(2):
            trainer.run_step(batches, sums)
            trainer.step += 1
            trainer.ema.update(trainer._sampling_nets(), trainer.step)
    assert reads == []
    assert all(torch.isfinite(v).all() for v in sums.values())


def test_non_finite_loss_is_skipped_on_the_device_without_reading_it(tiny_recipe, monkeypatch):
    trainer = Trainer(tiny_recipe("wgan_gp", "train.steps=5", "train.max_bad_steps=2"))
    d_phase = trainer.phases[0]
    original = d_phase.loss

    def infinite(batch, ctx):
        loss, values = original(batch, ctx)
        return loss * float("inf"), values

    object.__setattr__(d_phase, "loss", infinite)
    batches = iter(trainer.stream)
    trainer.run_step(batches, {})  # optimizer states exist from here
    d_params = lambda: [p.detach().clone() for p in trainer.method.nets["D"].parameters()]  # noqa: E731
    d_opt = trainer.updates.optimizers["D"]
    before, steps_before = d_params(), [s["step"].clone() for s in d_opt.state.values()]
    with host_reads_forbidden(monkeypatch) as reads:
        trainer.run_step(batches, {})
    assert reads == []
    assert all(torch.equal(a, b) for a, b in zip(before, d_params()))  # parameters untouched
    assert all(torch.equal(a, s["step"]) for a, s in zip(steps_before, d_opt.state.values()))  # no Adam step
    d_repeats = trainer.phases[0].repeats
    assert trainer.skipped == 2 * d_repeats and trainer.bad_steps == 2
    with pytest.raises(TrainingError, match="2 steps in a row had non-finite losses"):
        trainer.check_bad_steps()


def test_bad_step_counters_survive_a_checkpoint(tiny_recipe):
    trainer = Trainer(tiny_recipe("gan", "train.steps=5"))
    trainer._bad_run.fill_(3)
    trainer._skipped.fill_(7)
    state = trainer.state_dict()
    other = Trainer(tiny_recipe("gan", "train.steps=5"))
    other.load_state_dict(state)
    assert (other.bad_steps, other.skipped) == (3, 7)


class _Counting:
    """An iterator wrapper that counts how many batches were drawn."""

    def __init__(self, it):
        self.it, self.drawn = it, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.drawn += 1
        return next(self.it)


@pytest.mark.parametrize("method", ["acl_gan_gp", "wgan_gp", "gan"])
def test_batches_per_step_is_what_a_step_draws(tiny_recipe, method):
    """CUDA graphs copy exactly this many batches into their static inputs before each replay."""
    trainer = Trainer(tiny_recipe(method, "train.steps=5", "method.d_steps=3"))
    batches = _Counting(iter(trainer.stream))
    for _ in range(2):
        expected = trainer.batches_per_step()
        before = batches.drawn
        trainer.run_step(batches, {})
        trainer.step += 1
        assert batches.drawn - before == expected


def test_control_period_follows_the_lazy_penalty(tiny_recipe):
    """The penalty schedule is data on the phases; the trainer's control period (a CUDA graph per residue) is
    their least common multiple."""
    trainer = Trainer(tiny_recipe("wgan_gp", "method.gp_every=4"))
    assert [p.penalty_every for p in trainer.phases] == [4, 1] and trainer.control_period() == 4
    assert [trainer.phases[0].penalty_gain(i) for i in range(5)] == [4.0, 0.0, 0.0, 0.0, 4.0]
    assert Trainer(tiny_recipe("acl_ae")).control_period() == 1
    assert Trainer(tiny_recipe("r3gan", "method.gp_every=3")).control_period() == 3


def test_cuda_graphs_always_on_the_cpu_is_refused_with_the_reason(tiny_recipe):
    with pytest.raises(TrainingError, match="train.cuda_graphs: always cannot be honoured: it runs on cpu"):
        Trainer(tiny_recipe("wgan_gp", "train.cuda_graphs=always"))


def test_cuda_graphs_auto_trains_eagerly_where_it_cannot_graph_and_says_why(tiny_recipe, caplog):
    with caplog.at_level(logging.DEBUG, logger="acl_dist.training.cuda_graphs"):
        trainer = Trainer(tiny_recipe("wgan_gp"))  # auto is the default
    assert trainer.recipe.train.cuda_graphs == "auto" and trainer.graphed is None
    assert "CUDA graphs off: it runs on cpu" in caplog.text
    assert not any(g["capturable"] for opt in trainer.updates.optimizers.values() for g in opt.param_groups)


def test_compile_runs_penalty_double_backward_eagerly(tiny_recipe):
    """torch.compile's AOTAutograd has no double backward; the penalty runs those forwards eagerly."""
    trainer = Trainer(tiny_recipe("wgan_gp", "train.steps=2", "train.compile=true",
                                  "train.compile_backend=aot_eager"))
    sums: dict = {}
    trainer.run_step(iter(trainer.stream), sums)
    assert sums["D/gp"] > 0 and all(torch.isfinite(v) for v in sums.values())
