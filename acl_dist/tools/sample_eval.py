"""`acl-dist sample RUN_OR_CKPT` (pictures and videos) and `acl-dist eval RUN_OR_CKPT` (FID, KID, IS, PRC, Parzen).

Both read a run directory (its newest complete checkpoint) or one checkpoint directory, on CPU or GPU.
`eval` runs on as many processes as it is launched with (`accelerate launch -m acl_dist eval RUN`): each rank
generates its share; FID's statistics are reduced, KID/PRC features and IS logits gathered to rank 0 only
(see ``acl_dist.eval.metrics``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

import torch

from acl_dist.tools.run_loading import LoadedRun, load_run, pick_device

log = logging.getLogger(__name__)


# -- sample ----------------------------------------------------------------------------------------------


def _real_pairs(loaded: LoadedRun, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Two batches of real images from the run's data (None when the data cannot be read here)."""
    try:
        stream = loaded.source().stream(batch_size=2 * rows, seed=seed, rank=0, world_size=1, with_labels=False)
        batch = next(iter(stream))["image"]
    except (OSError, ValueError, StopIteration) as err:
        log.warning("interpolation: cannot read the run's data (%s); interpolating prior draws instead", err)
        return None
    return batch[:rows], batch[rows:2 * rows]


def write_samples(loaded: LoadedRun, out: str, *, num: int = 64, rows: int = 8, steps: int = 8, seed: int = 0,
                  fps: float = 12.0, walk_keypoints: int = 4, video: bool = True,
                  device: torch.device = torch.device("cpu")) -> dict[str, str]:
    """Every picture the method supports, under ``out``; returns {what: path}."""
    from acl_dist.pictures import save_samples

    method, nets = loaded.method.to(device), {name: net.to(device) for name, net in loaded.nets.items()}
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    samples = method.generate(method.sample_noise(num, device), nets).float().cpu()
    if samples.dim() == 2:  # 2-D toy data: a scatter over the real points; the rest is about images
        reference = loaded.source().real_points(2000, seed)[:2000]
        return {"samples": save_samples(samples, os.path.join(out, "samples.png"), reference)}
    written = {"samples": save_samples(samples, os.path.join(out, "samples.png"))}
    written.update(_write_interpolations(loaded, nets, out, rows, steps, seed, video, device))
    if hasattr(method, "categories"):  # InfoGAN: one traversal sheet per code
        written.update(_write_traversals(method, nets, out, rows, steps, device))
    if video:
        written["latent_walk"] = _write_latent_walk(method, nets, out, min(num, 16), walk_keypoints, fps, device)
    return written


def _write_interpolations(loaded: LoadedRun, nets, out: str, rows: int, steps: int, seed: int, video: bool,
                          device: torch.device) -> dict[str, str]:
    """Through the encoder's codes between real images (Fig. 10); between prior draws without an encoder."""
    from acl_dist import pictures
    from acl_dist.eval import figures

    method = loaded.method
    pairs = _real_pairs(loaded, rows, seed) if method.encode_nets else None
    if pairs is not None:
        strips = figures.code_interpolations(method, nets, pairs[0].to(device), pairs[1].to(device), steps)
    else:
        strips = figures.noise_interpolations(method, nets, rows, steps, device)
    strips = strips.cpu()  # [rows, points, C, H, W]
    written = {"interpolation": pictures.interpolation_strip(list(strips), os.path.join(out, "interpolation.png"))}
    if video:
        frames = (strips[:, t] for t in range(strips.shape[1]))  # each frame: every row at one point
        path = os.path.join(out, "interpolation.mp4")
        pictures.save_video(frames, path, fps=max(1.0, steps / 2))
        written["interpolation_video"] = path
    return written


def _write_traversals(method, nets, out: str, rows: int, steps: int, device: torch.device) -> dict[str, str]:
    from acl_dist import pictures
    from acl_dist.eval import figures

    written = {}
    for name, grid in figures.infogan_traversals(method, nets, rows, steps, device).items():
        key = f"traversal_{name}"
        written[key] = pictures.interpolation_strip(list(grid.cpu()), os.path.join(out, f"{key}.png"))
    return written


def _write_latent_walk(method, nets, out: str, count: int, keypoints: int, fps: float,
                       device: torch.device) -> str:
    from acl_dist import pictures
    from acl_dist.eval import figures

    path = os.path.join(out, "latent_walk.mp4")
    walk = figures.latent_walk(method, nets, count, keypoints, int(fps * 2), device)
    pictures.save_video((f.cpu() for f in walk), path, fps=fps)
    return path


def run_sample(args: argparse.Namespace) -> int:
    try:
        device = pick_device(args.device)
    except RuntimeError as err:
        print(f"acl-dist sample: error: {err}", file=sys.stderr)
        return 2
    loaded = load_run(args.run, device, ema=not args.no_ema)  # CheckpointError: one line, exit 4 (cli.main)
    out = args.out or os.path.join(loaded.run_dir, "pictures", os.path.basename(loaded.checkpoint))
    written = write_samples(loaded, out, num=args.num, rows=args.rows, steps=args.steps, seed=args.seed,
                            fps=args.fps, video=not args.no_video, device=device)
    print(f"{loaded.recipe.method.name} at step {loaded.step} ({loaded.checkpoint}):")
    for what, path in written.items():
        print(f"  {what:<24} {path}")
    return 0


# -- eval ------------------------------------------------------------------------------------------------


def _eval_recipe(loaded: LoadedRun, args: argparse.Namespace):
    e = loaded.recipe.eval
    changes = {}
    if args.num_samples:
        changes["num_samples"] = args.num_samples
    if args.feature_extractor:
        changes["feature_extractor"] = args.feature_extractor
    if args.weights:
        changes["feature_extractor_weights_path"] = args.weights
    if args.parzen:
        changes["parzen"] = True
    if args.metrics:
        changes["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    return dataclasses.replace(loaded.recipe, eval=dataclasses.replace(e, **changes))


def _global_noise_generator(loaded: LoadedRun, num_samples: int, batch_size: int, seed: int, rank: int,
                            world: int, device: torch.device):
    """``generate(n)`` for this rank that walks through ONE seeded noise set in global sample order.

    Why: the samples are then the same whatever the number of processes (rank r takes its contiguous share of
    whole batches, as ``compute_metrics`` splits them, so each batch of noise is one a single process would
    generate), so 1 and N processes give the same images and metrics (FID up to its float64 summation order).
    Calls beyond the share continue into the following samples (the Parzen estimate on rank 0 sees all).
    """
    from acl_dist.eval.fid import shard_sizes

    method, nets = loaded.method, loaded.nets
    torch.manual_seed(seed)
    noise = method.sample_noise(num_samples, "cpu")  # identical on every rank
    start = sum(shard_sizes(num_samples, world, batch_size)[:rank])
    cursor = 0

    @torch.no_grad()
    def generate(n: int) -> torch.Tensor:
        nonlocal cursor
        index = (start + cursor + torch.arange(n)) % num_samples
        cursor += n
        return method.generate(noise[index].to(device), nets).float()

    return generate


def _eval_result(loaded: LoadedRun, recipe, evaluator, scores: dict[str, float], processes: int,
                 ema: bool) -> dict:
    """What eval.json holds: the run, the settings, every value, and which extractor layer each metric used."""
    from acl_dist.eval.metrics import describe_layers

    e = recipe.eval
    result = {"checkpoint": loaded.checkpoint, "step": loaded.step, "method": recipe.method.name, "ema": ema,
              "num_samples": e.num_samples, "feature_extractor": e.feature_extractor, "processes": processes}
    tracker = evaluator.tracker
    if tracker is not None:
        result["metrics"] = list(e.metrics)
        result["extractors"] = describe_layers(tracker.extractor, e.metrics)
        result["real_samples"] = tracker.real_count
        if "kid" in e.metrics:
            result["kid_subsets"] = e.kid_subsets
            result["kid_subset_size"] = tracker.options.subset_size(e.num_samples, tracker.real_count)
        if "prc" in e.metrics:
            result["prc_neighborhood"] = e.prc_neighborhood
    result.update({k: v for k, v in scores.items() if k != "fid_best"})
    return result


def _print_result(result: dict, scores: dict[str, float], out: str) -> None:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in scores.items() if k != "fid_best")
    print(f"{result['method']} at step {result['step']}: {shown} "
          f"({result['num_samples']} samples, {result['processes']} process(es))")
    for metric, layer in result.get("extractors", {}).items():
        print(f"  {metric:<4} on {layer}")
    print(f"  written to {os.path.join(out, 'eval.json')}")


def run_eval(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from acl_dist.eval.during_training import build_tracker
    from acl_dist.eval.extractors import MissingWeightsError
    from acl_dist.validation import check_metrics

    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    try:
        device = state.device if args.device == "auto" else pick_device(args.device)
    except RuntimeError as err:
        print(f"acl-dist eval: error: {err}", file=sys.stderr)
        return 2
    loaded = load_run(args.run, device, ema=not args.no_ema)  # CheckpointError: one line, exit 4 (cli.main)
    recipe = _eval_recipe(loaded, args)
    check_metrics(recipe.eval.metrics, recipe.eval.feature_extractor)  # ConfigError: one line, exit 2
    out = args.out or os.path.join(loaded.run_dir, "eval", os.path.basename(loaded.checkpoint))
    if state.is_main_process:
        os.makedirs(out, exist_ok=True)
    state.wait_for_everyone()
    try:
        cache = os.path.join(recipe.run.out_dir, ".fid_cache")
        evaluator = build_tracker(recipe.eval, loaded.source(), recipe.run.seed, out, cache, device,
                                  state.process_index, state.num_processes, progress=not args.quiet)
    except MissingWeightsError as err:
        print(f"acl-dist eval: error: {err}", file=sys.stderr)
        return 2
    if evaluator is None:
        print("acl-dist eval: nothing to evaluate: the metrics need image data; add --parzen", file=sys.stderr)
        return 2
    generate = _global_noise_generator(loaded, recipe.eval.num_samples, recipe.eval.batch_size, args.seed,
                                       state.process_index, state.num_processes, device)
    scores = evaluator.evaluate(loaded.step, generate)
    evaluator.finish()  # eval.png
    if state.is_main_process:
        result = _eval_result(loaded, recipe, evaluator, scores, state.num_processes, not args.no_ema)
        with open(os.path.join(out, "eval.json"), "w") as f:
            json.dump(result, f, indent=2)
        _print_result(result, scores, out)
    from acl_dist.distributed import leave_process_group

    leave_process_group(wait_for_others=True)
    return 0


# -- registration ----------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (newest complete checkpoint) or a checkpoint directory")
    p.add_argument("--out", help="output directory (default: inside the run directory)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--no-ema", action="store_true", help="use the trained nets, not their EMA copies")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")


def register(subparsers) -> None:
    """Add `sample` and `eval` to the `acl-dist` sub-commands."""
    p = subparsers.add_parser("sample", help="sample grids, interpolations, InfoGAN traversals, latent walks",
                              description="Pictures and videos from a trained run: a sample grid, "
                              "interpolations through the encoder's codes between real images (noise for "
                              "methods without an encoder) as a strip and an MP4, InfoGAN code traversals and "
                              "a latent-walk MP4.")
    _common(p)
    p.add_argument("--num", type=int, default=64, help="samples in the grid (default 64)")
    p.add_argument("--rows", type=int, default=8, help="interpolation / traversal rows (default 8)")
    p.add_argument("--steps", type=int, default=8, help="points per interpolation (default 8)")
    p.add_argument("--fps", type=float, default=12.0, help="latent-walk frames per second (default 12)")
    p.add_argument("--no-video", action="store_true", help="PNGs only (no ffmpeg)")
    p.set_defaults(func=run_sample)

    p = subparsers.add_parser("eval", help="FID, KID, IS, precision/recall (and Parzen) of a trained run, on "
                              "any number of processes",
                              description="Metrics of a run's generator against its data, with the recipe's "
                              "feature extractor (digits-cnn offline; inception-v3-compat, fd-dinov2 and clip "
                              "need local weights), each scored by torch-fidelity's own function. "
                              "Multi-process: accelerate launch -m acl_dist eval RUN.")
    _common(p)
    p.add_argument("--num-samples", type=int, help="generated samples (default: the recipe's eval.num_samples)")
    p.add_argument("--metrics", help="comma-separated, from fid,kid,isc,prc (default: the recipe's eval.metrics)")
    p.add_argument("--feature-extractor",
                   help="digits-cnn | inception-v3-compat | fd-dinov2 | clip (default: the recipe's)")
    p.add_argument("--weights", help="feature extractor weights file (Inception, DINOv2, CLIP offline)")
    p.add_argument("--parzen", action="store_true", help="also the Parzen-window log-likelihood")
    p.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when stderr is "
                   "not a terminal)")
    p.set_defaults(func=run_eval)
