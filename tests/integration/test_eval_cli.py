"""`acl-dist sample` and `acl-dist eval` on tiny trained runs: the files they promise, readable back."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from acl_dist.eval import figures
from acl_dist.eval.extractors import build_extractor
from acl_dist.tools.run_loading import load_run
from acl_dist.training.trainer import Trainer
from tests.conftest import PYTHON, REPO, tiny_overrides
from tests.images import frame_count
from tests.numerics import feature_bound, fid_reorder_tolerance


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny trained runs: an encoder method, InfoGAN, and a 2-D toy run."""
    from acl_dist.config import load_recipe

    out = str(tmp_path_factory.mktemp("runs"))
    made = {}
    for method, extra in (("acl_gan_gp", ()), ("infogan", ()), ("acl_ae", ("data.source=toy",))):
        recipe = load_recipe(None, tiny_overrides(method, out, "train.steps=2", *extra))
        made[method] = Trainer(recipe).train().run_dir
    return made


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYTHON, "-m", "acl_dist", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_sample_writes_grid_interpolation_strip_and_videos(runs, tmp_path):
    out = tmp_path / "pics"
    proc = _cli("sample", runs["acl_gan_gp"], "--out", str(out), "--num", "16", "--rows", "3", "--steps", "5",
                "--fps", "4")
    assert "interpolation_video" in proc.stdout
    strip = np.asarray(Image.open(out / "interpolation.png"))
    # 3 rows of (real, 5 decoded points, real): 7 images of 8 px with 2 px padding across
    assert strip.shape[1] == 7 * 8 + 8 * 2 and strip.shape[0] == 3 * 8 + 4 * 2
    assert frame_count(out / "interpolation.mp4") == 7  # one frame per point of the strip
    assert frame_count(out / "latent_walk.mp4") == 4 * 8  # 4 keypoints x 2 s x 4 fps
    assert (out / "samples.png").stat().st_size > 0


def test_infogan_gets_one_traversal_sheet_per_code(runs, tmp_path):
    _cli("sample", runs["infogan"], "--out", str(tmp_path), "--no-video", "--rows", "2", "--steps", "4")
    cat = np.asarray(Image.open(tmp_path / "traversal_categorical0.png"))
    cont = np.asarray(Image.open(tmp_path / "traversal_continuous0.png"))
    assert cat.shape[1] == 3 * 8 + 4 * 2  # 3 categories across (tiny recipe: info_categorical=[3])
    assert cont.shape[1] == 4 * 8 + 5 * 2  # 4 values of the continuous code across
    assert not list(tmp_path.glob("*.mp4"))


def test_toy_run_gets_a_scatter(runs, tmp_path):
    proc = _cli("sample", runs["acl_ae"], "--out", str(tmp_path))
    assert (tmp_path / "samples.png").exists() and "interpolation" not in proc.stdout


def test_code_interpolation_starts_and_ends_at_the_real_images(runs):
    loaded = load_run(runs["acl_gan_gp"])
    a, b = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 1, 8, 8) * 2 - 1
    strips = figures.code_interpolations(loaded.method, loaded.nets, a, b, 4)
    assert strips.shape == (2, 6, 1, 8, 8)
    assert torch.equal(strips[:, 0], a) and torch.equal(strips[:, -1], b)
    codes = loaded.method.encode(torch.cat([a, b]), loaded.nets)
    torch.testing.assert_close(strips[:, 1], loaded.method.decode(codes[:2], loaded.nets))  # t = 0: decode(E(a))
    torch.testing.assert_close(strips[:, 4], loaded.method.decode(codes[2:], loaded.nets))  # t = 1: decode(E(b))


def test_slerp_keeps_gaussian_norms_and_hits_the_ends():
    a, b = torch.randn(3, 64), torch.randn(3, 64)
    path = figures.slerp_path(a, b, 9)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    mid = path[4].norm(dim=1)
    assert (mid > 0.9 * torch.minimum(a.norm(dim=1), b.norm(dim=1))).all()  # lerp's midpoint is ~0.7 of it
    assert (figures.lerp_path(a, b, 9)[4].norm(dim=1) < mid).all()


def test_eval_gives_the_same_metrics_on_one_and_two_processes(runs, tmp_path):
    """Noise is drawn once in global sample order and each rank takes a share of whole batches: every batch is
    one a single process generates and extracts, so the images and features are the same float32 numbers and
    KID, IS and precision/recall equal bit for bit; FID's float64 sums are added in another order (one thread
    per process in both runs: the thread count may pick other kernels)."""
    args = ["--num-samples", "201", "--device", "cpu", "--metrics", "fid,kid,isc,prc"]
    one = tmp_path / "one"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = _cli("eval", runs["acl_gan_gp"], "--out", str(one), *args, env=env)
    result = json.load(open(one / "eval.json"))
    assert result["processes"] == 1 and result["fid"] > 0 and result["num_samples"] == 201
    assert result["metrics"] == ["fid", "kid", "isc", "prc"]
    assert result["extractors"]["isc"] == "digits-cnn 'logits' (10-class logits)"
    assert result["extractors"]["kid"] == "digits-cnn '64' (64-d features)"
    assert result["kid_subset_size"] == 201  # 1000 asked, 201 generated and 201 real digits there are
    assert "isc  on digits-cnn 'logits'" in proc.stdout
    assert (one / "eval.csv").exists() and (one / "eval.png").exists()
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    two = tmp_path / "two"
    cmd = [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "-m", "acl_dist",
           "eval", runs["acl_gan_gp"], "--out", str(two), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result2 = json.load(open(two / "eval.json"))
    assert result2["processes"] == 2
    for key in ("kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall", "f_score"):
        assert result2[key] == result[key], key
    # FID's float64 sums of n = 201 terms in another order, with a bound on the features of any [-1, 1] image
    net = build_extractor("digits-cnn").net
    bound = fid_reorder_tolerance(201, net.FEATURE_DIM, feature_bound(net.body, (1, net.INPUT_SIZE, net.INPUT_SIZE)))
    assert abs(result2["fid"] - result["fid"]) <= bound, (result2["fid"], result["fid"], bound)


def test_eval_refuses_an_unknown_metric_naming_it(runs, tmp_path):
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "eval", runs["acl_gan_gp"], "--out", str(tmp_path),
                           "--metrics", "fid,kidd"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "eval.metrics[1]: unknown metric 'kidd'" in proc.stderr


def test_eval_without_inception_weights_says_how_to_get_them(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "eval", runs["acl_gan_gp"], "--out", str(tmp_path),
                           "--feature-extractor", "inception-v3-compat", "--num-samples", "10"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "weights" in proc.stderr


def test_missing_run_is_a_clear_error(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "acl_dist", "sample", str(tmp_path / "nope")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "nope" in proc.stderr
