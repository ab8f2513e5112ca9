"""stylegan2-ada's augmentation pipe (ops/ada_ops.py, AdaAugmentPipe): every operation differentiable and the
identity at p = 0, p as a probability per image, the schedule and ADA's rule, the penalty through it, state that
resumes exactly, and the recipe's rules."""

from __future__ import annotations

import math

import pytest
import torch

from acl_dist.config import ConfigError, load_recipe
from acl_dist.ops import ada_ops
from acl_dist.ops.augment_pipe import AdaAugmentPipe, pipe_of
from acl_dist.ops.gradient_penalty import critic_scores_and_penalty
from acl_dist.rules import cuda_graph_conflict
from acl_dist.training.trainer import Trainer
from tests.conftest import tiny_overrides
from tests.unit.test_hot_path import host_reads_forbidden


def images(b: int = 8, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("resample", ada_ops.RESAMPLE)
@pytest.mark.parametrize("op", ada_ops.OPS)
def test_every_operation_is_differentiable_and_changes_images_at_p_1(op, resample):
    torch.manual_seed(0)
    x = images().requires_grad_(True)
    y = ada_ops.augment(x, [op], torch.tensor(1.0), resample)
    assert y.shape == x.shape and not torch.allclose(y, x)  # with 8 images at p = 1, some image changes
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0  # the generator's gradient passes


@pytest.mark.parametrize("resample", ada_ops.RESAMPLE)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_operation_together_is_the_identity_at_p_0(channels, resample):
    """p = 0 draws no transform: identity matrices, sampled at the pixel centres (of the 2x images, for
    wavelet). The coordinates are exact up to float32 rounding of (2i + 1) / size - 1 and back (a few ulps of
    the 16 px, or the wavelet path's 102 upsampled samples); its down- and upsampling are inverse up to the
    published coefficients' 1e-12 and float32 sums of 12 taps twice; so the values match to 1e-5 of their range."""
    x = images(c=channels)
    y = ada_ops.augment(x, ada_ops.OPS, torch.tensor(0.0), resample)
    assert torch.allclose(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("resample", ada_ops.RESAMPLE)
def test_under_bf16_autocast_the_pipe_still_computes_in_float32(resample):
    """The trainer runs each phase's loss under autocast, the pipe included. In bf16 the wavelet's matrices and
    products would round to 8 bits (0.08 off the identity at p = 0); the pipe computes in float32 instead, so
    the identity holds as in float32 (see the test above) and the images keep their dtype."""
    x = images(c=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ada_ops.augment(x, ada_ops.OPS, torch.tensor(0.0), resample)
    assert y.dtype == torch.float32 and torch.allclose(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("op", ["brightness", "scale"])
def test_p_times_the_ops_weight_is_the_chance_that_it_touches_an_image(op):
    """brightness (weight 0.5, as R3GAN builds the pipe) adds a normal draw, scale (weight 1) rescales, each with
    probability p x weight: over 4,000 images at p = 0.6 the share touched is binomial, std at most
    sqrt(0.6 * 0.4 / 4000) = 0.0077; 5 std is 0.039."""
    torch.manual_seed(1)
    x = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4).repeat(4000, 1, 1, 1)
    touched = (ada_ops.augment(x, [op], torch.tensor(0.6)) - x).abs().flatten(1).amax(1) > 1e-4
    assert ada_ops.WEIGHTS[op] == (0.5 if op == "brightness" else 1.0)
    assert abs(touched.float().mean().item() - 0.6 * ada_ops.WEIGHTS[op]) < 0.039


def test_integer_translation_moves_whole_pixels():
    """xint alone resamples at whole-pixel offsets: every output pixel is an input pixel (or its reflection)."""
    torch.manual_seed(2)
    x = torch.arange(16.0).repeat(16, 1)[None, None].repeat(8, 1, 1, 1) / 15 * 2 - 1  # a ramp along x
    y = ada_ops.augment(x, ["xint"], torch.tensor(1.0))
    inputs = set(x[0, 0, 0].tolist())
    assert all(min(abs(v - u) for u in inputs) < 1e-5 for v in y.flatten().tolist())
    assert not torch.equal(y, x)


def test_the_symlet_6_filter_is_orthonormal_with_six_vanishing_moments():
    """What makes the wavelet resampling exact at whole pixels: the filter's even shifts are orthonormal
    (sum h[k] h[k + 2n] = delta_n), its sum is sqrt(2), and its high-pass twin (-1)^k h[k] has 6 vanishing
    moments (a mistyped coefficient breaks all three). The published 16-digit coefficients hold them to 1e-12."""
    h = torch.tensor(ada_ops.SYM6, dtype=torch.float64)
    k = torch.arange(len(h), dtype=torch.float64)
    assert len(h) == 12 and abs(h.sum().item() - math.sqrt(2)) < 1e-12
    for n in range(6):
        assert abs((h[:len(h) - 2 * n] * h[2 * n:]).sum().item() - (n == 0)) < 1e-11, n
    for moment in range(6):
        assert abs(((-1) ** k * h * (k / len(h)) ** moment).sum().item()) < 1e-11, moment


@pytest.mark.parametrize("height,width", [(16, 16), (12, 20)])
def test_wavelet_resampling_moves_whole_pixels_exactly_and_reflects_at_the_border(height, width):
    """An integer translation lands every 2x sample on a 2x sample of the padded image, so the result is the
    reflection-padded image cropped (float64: exact to the coefficients' 1e-12)."""
    x = (torch.rand(2, 2, height, width, generator=torch.Generator().manual_seed(4)) * 2 - 1).double()
    g = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    g[:, 0, 2], g[:, 1, 2] = 3 * 2 / width, -5 * 2 / height  # 3 px right, 5 px up (output -> input)
    y = ada_ops.augment_geometric(x, g, "wavelet")
    ph, pw = height - 1, width - 1
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph), mode="reflect")
    assert torch.allclose(y, padded[:, :, ph - 5:ph - 5 + height, pw + 3:pw + 3 + width], atol=1e-10, rtol=0)


def test_a_mirror_through_the_wavelet_moves_the_image_by_the_filters_off_centre_part():
    """Where the published pipe puts pixel i among the 2x samples (2i + 5) is not the filter's centroid (5.098):
    up- and downsampling each move content by half the difference, which cancels unless the image is mirrored in
    between, so a mirror moves it by the whole 0.098 px. Convolution adds first moments, so a blob's centroid
    (far from the border) shows it to float64 rounding."""
    h = torch.tensor(ada_ops.SYM6, dtype=torch.float64)
    off = ((h * torch.arange(len(h))).sum() / h.sum()).item() - ada_ops.WAVELET_CENTRE
    assert 0.09 < off < 0.11
    ys, xs = torch.meshgrid(torch.arange(32.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64),
                            indexing="ij")
    blob = torch.exp(-((xs - 12.3) ** 2 + (ys - 17.1) ** 2) / 8)[None, None]
    g = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))[None]  # mirror left-right
    mirrored = ada_ops.augment_geometric(blob, g, "wavelet")[0, 0]
    centroid = (mirrored * xs).sum() / mirrored.sum()
    assert abs(centroid.item() - (31 - 12.3) + off) < 1e-6


def test_wavelet_resampling_does_not_alias_where_bilinear_does():
    """Stripes of period 2.5 px shrunk 2x hold 0.8 cycles per pixel, above Nyquist: a resampler should remove
    them. Bilinear sampling keeps them as false stripes at 0.2 cycles per pixel with amplitude cos(0.4 pi) (its
    samples fall halfway between pixels): std 0.707 x 0.309 = 0.22. The symlet-6 filter passes 0.015 of that
    band (|H| at 0.4 cycles per 2x sample, computed below), so what survives the wavelet path is a few hundredths
    (the 2x grid's own bilinear images add little; 0.02 in float64): below 0.05, where bilinear is above 0.15."""
    h = ada_ops.SYM6
    stopband = abs(sum(c * complex(math.cos(0.8 * math.pi * k), -math.sin(0.8 * math.pi * k))
                       for k, c in enumerate(h))) / math.sqrt(2)
    assert stopband < 0.02
    stripes = torch.cos(2 * math.pi * torch.arange(32, dtype=torch.float64) / 2.5)
    x = stripes[None, None, None, :].expand(1, 1, 32, 32).contiguous()
    g = torch.diag(torch.tensor([2.0, 2.0, 1.0], dtype=torch.float64))[None]  # the image shrunk 2x
    centre = (..., slice(8, 24), slice(8, 24))  # where the shrunk image lies
    assert ada_ops.augment_geometric(x, g, "wavelet")[centre].std() < 0.05
    assert ada_ops.augment_geometric(x, g, "bilinear")[centre].std() > 0.15


def test_the_geometric_matrix_of_a_rotation_by_90_degrees_is_one():
    torch.manual_seed(3)
    g = ada_ops.geometric_matrix(["rotate90"], 64, torch.tensor(1.0), torch.device("cpu"), (16, 16))
    angles = torch.atan2(g[:, 1, 0], g[:, 0, 0]) / (math.pi / 2)
    assert torch.allclose(angles, angles.round(), atol=1e-6) and len(set(angles.round().tolist())) > 1


def test_the_scheduled_probability_follows_the_runs_progress():
    pipe = AdaAugmentPipe(["xflip"], p_max=0.3)
    progress = torch.tensor(0.0)
    pipe.bind_progress(progress)
    assert pipe.probability().item() == 0
    progress.fill_(0.5)
    assert pipe.probability().item() == pytest.approx(0.15)
    progress.fill_(1.0)
    assert pipe.probability().item() == pytest.approx(0.3)
    pipe.end_step(64, lambda t: t)  # a schedule adapts nothing
    assert pipe.p.item() == 0


def test_ada_moves_p_by_the_sign_of_the_real_scores_against_the_target():
    """Karras et al.: every ``interval`` steps p += sign(E[sign D(real)] - target) * images / (ada_kimg * 1000),
    the sums taken over every process (here a stand-in reduce that doubles them, as two equal processes would)."""
    pipe = AdaAugmentPipe(["xflip"], target=0.6, speed_images=10_000, interval=2)
    step_images = 100
    reduced = []

    def reduce(t: torch.Tensor) -> torch.Tensor:
        reduced.append(t.clone())
        return 2 * t

    for _ in range(2):  # E[sign] = 0.8 > 0.6: the critic is overconfident on reals, p rises
        pipe.observe(torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]) * 3)
        pipe.end_step(step_images, reduce)
    assert len(reduced) == 1 and reduced[0].tolist() == [16.0, 20.0]
    assert pipe.p.item() == pytest.approx(2 * step_images / 10_000)
    for _ in range(4):  # E[sign] = -1 < 0.6: p falls, and stops at 0
        pipe.observe(-torch.ones(10))
        pipe.end_step(step_images, reduce)
    assert pipe.p.item() == 0
    assert pipe.probability() is pipe.p


@pytest.mark.parametrize("resample", ada_ops.RESAMPLE)
@pytest.mark.parametrize("impl", ["fused", "split"])
def test_r1r2_through_the_pipe_is_the_same_on_every_path(impl, resample):
    """The penalty w.r.t. the un-augmented images, through stylegan2-ada's operations: every implementation
    gives the reference's scores and penalty given the same random state (the same draws)."""
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 16 * 16, 1))
    pipe = AdaAugmentPipe(ada_ops.OPS, p_max=0.8, resample=resample)
    real, fake = images(4, seed=1), images(4, seed=2)

    def run(path: str):
        torch.manual_seed(5)
        return critic_scores_and_penalty(critic, real, fake, kind="r1r2", impl=path, augment=pipe,
                                         through_augment=True)

    ref, other = run("ref"), run(impl)
    for a, b in zip(ref, other):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ref[2] > 0


def ada_overrides(out: str, name: str, steps: int) -> list[str]:
    return tiny_overrides("r3gan", out, "model.arch=r3gan", "model.resolution=8", f"run.name={name}",
                          f"train.steps={steps}", "train.ckpt_every=2", f"data.augment_ops=[{','.join(ada_ops.OPS)}]",
                          "data.ada_target=0.6", "data.ada_interval=1", "data.ada_kimg=1")


def test_ada_state_lives_in_the_checkpoint_and_a_resumed_run_is_bit_identical(tmp_path):
    """Fresh runs start at p = 0.5 (set by hand: the tiny critic's real scores are negative, so from 0 ADA would
    hold p at 0 and the test would not see it); the resumed run gets p, and the sums toward the next adjustment,
    from the step-2 checkpoint only (interval 3: the checkpoint falls between two adjustments)."""
    def run(name: str, steps: int, fresh: bool) -> Trainer:
        trainer = Trainer(load_recipe(None, ada_overrides(str(tmp_path), name, steps) + ["data.ada_interval=3"]))
        if fresh:
            trainer.augment.p.fill_(0.5)
        trainer.train()
        return trainer

    straight = run("straight", 4, fresh=True)
    run("split", 2, fresh=True)
    resumed = run("split", 4, fresh=False)  # from the step-2 checkpoint
    assert 0 < straight.augment.p.item() < 0.5  # ADA moved p at step 3
    assert straight.augment.state_dict().keys() == resumed.augment.state_dict().keys()
    for key, value in straight.augment.state_dict().items():
        assert torch.equal(value, resumed.augment.state_dict()[key]), key
    for name, net in straight.method.nets.items():
        for a, b in zip(net.state_dict().values(), resumed.method.nets[name].state_dict().values()):
            assert torch.equal(a, b), name


@pytest.mark.parametrize("resample", ada_ops.RESAMPLE)
def test_an_ada_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch, resample):
    trainer = Trainer(load_recipe(None, ada_overrides(str(tmp_path), "hot", 5) + [f"data.augment_resample={resample}"]))
    batches, sums = iter(trainer.stream), {}
    trainer.train_step(batches, sums)
    trainer.step += 1
    with host_reads_forbidden(monkeypatch) as reads:
        for _ in range(2):  # interval 1: the adjustment runs every step
            trainer.train_step(batches, sums)
            trainer.step += 1
    assert reads == []


def test_the_recipe_builds_the_pipe_and_refuses_what_cannot_work(tmp_path):
    recipe = load_recipe(None, ada_overrides(str(tmp_path), "r", 2))
    pipe = pipe_of(recipe.data)
    assert isinstance(pipe, AdaAugmentPipe) and pipe.adaptive and pipe.speed_images == 1000
    assert pipe.resample == "bilinear"  # the default; R3GAN's recipes ask for wavelet
    assert pipe_of(load_recipe(None, ada_overrides(str(tmp_path), "w", 2) + ["data.augment_resample=wavelet"]
                               ).data).resample == "wavelet"
    assert "ADA" in cuda_graph_conflict(recipe)
    bad = [(["data.augment_ops=[xflip, blur]"], "data.augment_ops[1]"),
           (["data.augment_ops=[xflip]", "data.augment=[color]"], "data.augment_ops"),
           (["data.augment_p=0.3"], "data.augment_ops"),
           (["data.augment_ops=[xflip]", "data.augment_p=1.5"], "data.augment_p"),
           (["data.augment_ops=[xflip]", "data.ada_target=0.6", "data.augment_p=0.3"], "data.ada_target"),
           (["data.augment_ops=[xflip]", "data.augment_resample=lanczos"], "data.augment_resample"),
           (["data.augment_resample=wavelet"], "data.augment_resample")]
    for overrides, path in bad:
        with pytest.raises(ConfigError) as err:
            load_recipe(None, tiny_overrides("r3gan", str(tmp_path), *overrides))
        assert err.value.path == path, overrides
    with pytest.raises(ConfigError, match="schedule the probability") as err:  # gan reports no real scores
        load_recipe(None, tiny_overrides("gan", str(tmp_path), "data.augment_ops=[xflip]", "data.ada_target=0.6"))
    assert err.value.path == "data.ada_target"
