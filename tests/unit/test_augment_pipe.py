"""The augmentation seam: one pipe built from the recipe by the trainer, the same object in every adversary and
in the penalty op, its state saved and restored with the checkpoint."""

from __future__ import annotations

import pytest
import torch

from acl_dist.ops.augment_pipe import AugmentPipe, DiffAugmentPipe, build_augment_pipe
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty
from acl_dist.training import assembly as assembly_module
from acl_dist.training.trainer import Trainer
from tests.conftest import tiny_overrides


class CountingPipe(AugmentPipe):
    """A stateful pipe (as ADA's is): it counts the images it has shown a critic, a device tensor."""

    def __init__(self):
        self.seen = torch.zeros((), dtype=torch.float64)
        self.calls: list[int] = []

    def __call__(self, images):
        self.seen += images.shape[0]
        self.calls.append(images.shape[0])
        return images.flip(-1)  # something a critic can tell apart, differentiable

    @property
    def active(self) -> bool:
        return True

    def state_dict(self):
        return {"seen": self.seen.clone()}

    def load_state_dict(self, state):
        self.seen = state["seen"].clone()


def test_the_recipe_builds_diffaugment_or_nothing():
    assert type(build_augment_pipe([])) is AugmentPipe and not build_augment_pipe([]).active
    pipe = build_augment_pipe(["translation", "cutout"])
    assert isinstance(pipe, DiffAugmentPipe) and pipe.policies == ("translation", "cutout")
    x = torch.zeros(2, 1, 8, 8)
    assert build_augment_pipe([])(x) is x
    with pytest.raises(ValueError, match="keeps no state"):
        AugmentPipe().load_state_dict({"p": torch.tensor(0.5)})


def test_the_penalty_op_sees_the_critic_inputs_through_the_pipe():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    pipe = CountingPipe()
    real_scores, fake_scores, _ = critic_scores_and_penalty(critic, real, fake, kind="r1r2", impl="ref", augment=pipe)
    assert pipe.calls == [3, 3]  # fakes, then reals
    assert torch.allclose(real_scores, critic(real.flip(-1)).reshape(-1))
    assert torch.allclose(fake_scores, critic(fake.flip(-1)).reshape(-1))


@pytest.mark.parametrize("method", ["wgan_gp", "acl_gan", "r3gan", "infogan"])
def test_one_pipe_reaches_every_critic_and_its_state_resumes(method, tmp_path, monkeypatch):
    from acl_dist.config import load_recipe

    pipes: list[CountingPipe] = []

    def build(data):
        pipes.append(CountingPipe())
        return pipes[-1]

    monkeypatch.setattr(assembly_module, "pipe_of", build)

    def run(name: str, steps: int) -> Trainer:
        extra = ["model.arch=r3gan", "model.resolution=8"] if method == "r3gan" else []
        trainer = Trainer(load_recipe(None, tiny_overrides(method, str(tmp_path), f"run.name={name}",
                                                           f"train.steps={steps}", "train.ckpt_every=2", *extra)))
        trainer.train()
        return trainer

    straight = run("straight", 4)
    assert len(pipes) == 1 and straight.augment is pipes[0] and straight.method.augment is pipes[0]
    assert pipes[0].seen > 0  # the critics saw their images through it
    run("split", 2)
    resumed = run("split", 4)  # resumes from step 2: the pipe's state comes back from the checkpoint
    assert torch.equal(resumed.augment.seen, straight.augment.seen)


class Doubling(AugmentPipe):
    """A deterministic pipe whose Jacobian is 2: the penalty through it is 4x the penalty at its output."""

    def __call__(self, images):
        return 2 * images


@pytest.mark.parametrize("impl", ["ref", "fused", "split"])
def test_r1r2_through_the_augmentation_is_the_gradient_at_the_un_augmented_images(impl):
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))  # linear: the gradient is its weight
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    at = critic_scores_and_penalty(critic, real, fake, kind="r1r2", impl=impl, augment=Doubling())
    through = critic_scores_and_penalty(critic, real, fake, kind="r1r2", impl=impl, augment=Doubling(),
                                        through_augment=True)
    torch.testing.assert_close(through[0], at[0])  # the same scores: the critic sees the same images
    torch.testing.assert_close(through[2], 4 * at[2])  # d critic(2x) / dx = 2 w: the penalty is 4 |w|^2
    with pytest.raises(ValueError, match="through_augment is for r1r2"):
        critic_scores_and_penalty(critic, real, fake, kind="wgan", augment=Doubling(), through_augment=True)
