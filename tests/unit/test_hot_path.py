"""The training step never reads the device from the host, and a non-finite loss is skipped on the device.

Why: every ``.item()``/``bool(tensor)`` in the hot path drains the GPU queue (the CPU waits for the GPU to
catch up before it may launch the next kernel). On the CPU the same code calls no such method, so patching
them to raise catches a host read wherever it hides; tests/unit/test_cuda.py checks the CUDA path with
``torch.cuda.set_sync_debug_mode("error")`` on a GPU.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from acl_dist.trainer import Trainer, TrainingError

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


@pytest.mark.parametrize("method", ["acl_gan_gp", "wgan_gp", "acl_gan"])
def test_training_step_reads_nothing_back_from_the_device(tiny_recipe, monkeypatch, method):
    trainer = Trainer(tiny_recipe(method, "train.steps=5"))
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
    d_opt = trainer.optimizers["D"]
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
