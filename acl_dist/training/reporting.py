"""What a run shows while it trains: the log ticks (metrics averaged over steps and ranks, the progress bar),
evaluations on their schedule, sample grids, the trackers and the run files. A part of
:class:`~acl_dist.training.trainer.Trainer`.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import Tensor

from acl_dist import distributed
from acl_dist.config import dump_recipe, to_dict
from acl_dist.eval.recalibration import recalibrate_sampling_nets
from acl_dist.pictures import save_samples
from acl_dist.training.eval_noise import evaluation_noise
from acl_dist.training.outputs import MetricsLog
from acl_dist.training.trackers import open_trackers

log = logging.getLogger("acl_dist.training.trainer")  # every part of the trainer logs as the trainer


class RunReporting:
    """The trainer's outputs (a mixin of ``Trainer``)."""

    def _write_run_files(self) -> None:
        if self.is_main:
            os.makedirs(self.run_dir, exist_ok=True)
            with open(os.path.join(self.run_dir, "recipe.yaml"), "w") as f:
                f.write(dump_recipe(self.recipe))
        distributed.barrier()

    def _open_trackers(self) -> list:
        """``log.trackers`` on rank 0 (resuming their runs), with the resolved recipe as their config."""
        if not self.is_main:
            return []
        r = self.recipe
        return open_trackers(r.log, self.run_dir, r.run.name, r.run.out_dir, to_dict(r))

    def _progress_bar(self):
        if not (self.is_main and self.recipe.train.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.recipe.train.steps, initial=self.step, desc=self.recipe.method.name,
                    unit="step", dynamic_ncols=True)

    def _log_tick(self, metrics_log: MetricsLog, sums: dict, steps: int, seconds: float, bar) -> dict:
        """Average the interval's metrics over steps and ranks in one collective; write JSONL/TensorBoard.

        ``data/corrupt_samples`` and ``data/unreadable_shards`` are what the shard stream skipped during the
        interval, summed over ranks (the mean of world x count is the sum)."""
        skipped_data = {f"data/{k}": torch.tensor(float(v * self.world), device=self.device)
                        for k, v in self._data_skips().items()}
        values = distributed.mean_across_ranks({**{k: v / steps for k, v in sums.items()}, **skipped_data})
        images = steps * self.recipe.train.batch_size * self.world
        values["images_per_s"] = images / max(seconds, 1e-9)
        skipped = self.skipped
        if skipped > self._skipped_logged:
            log.warning("step %d: %d updates skipped for non-finite losses so far (%d steps in a row now)",
                        self.step, skipped, self.bad_steps)
        self._skipped_logged = skipped
        values["skipped_updates"] = float(skipped)
        with self._full_parameters(self.method.nets.values()):
            values["rank_divergence"] = distributed.rank_divergence(self.method.nets.values())
        metrics_log.write(self.step, values)
        if bar is not None:
            hidden = ("skipped_updates", "rank_divergence", "data/corrupt_samples", "data/unreadable_shards")
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k not in hidden}
            bar.set_postfix(shown, refresh=False)
        return values

    def _data_skips(self) -> dict[str, int]:
        """Corrupt samples and unreadable shards this rank's stream skipped since the last call (shards only)."""
        stats = getattr(self.stream, "stats", {})
        names = {"corrupt_skipped": "corrupt_samples", "shard_errors": "unreadable_shards"}
        out = {names[k]: v - self._data_logged.get(k, 0) for k, v in stats.items() if k in names}
        self._data_logged = dict(stats)
        return out

    def _periodic_outputs(self, metrics_log: MetricsLog) -> None:
        t, e = self.recipe.train, self.recipe.eval
        if t.sample_every and self.step % t.sample_every == 0:
            self._save_samples(metrics_log)
        if self.evaluator is not None and self.step % e.every == 0:
            self._recalibrate_sampling_nets()
            with evaluation_noise(self.recipe.run.seed, self.step, self.rank, self.device):  # training's RNG untouched
                score = self.evaluator.evaluate(self.step, self.generate)
            metrics_log.write(self.step, {f"eval/{k}": v for k, v in score.items()})
            plot = self.evaluator.plot_path
            if plot and os.path.isfile(plot):
                metrics_log.image(self.step, "eval", plot)
            if self.evaluator.is_best:
                self.save_checkpoint("best")
        if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
            self.save_checkpoint()

    def _finish_evaluation(self, metrics_log: MetricsLog) -> None:
        """At the run's end or a stop: eval.png shows every evaluation, and the trackers get it if it was stale."""
        plot = self.evaluator.finish() if self.evaluator is not None else None
        if plot:
            metrics_log.image(self.step, "eval", plot)

    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        """n samples from the EMA nets on this rank's device (what FID and grids use)."""
        out = []
        for start in range(0, n, self.recipe.eval.batch_size):
            m = min(self.recipe.eval.batch_size, n - start)
            out.append(self.method.generate(self.method.sample_noise(m, self.device), nets=self.ema.nets).float())
        return torch.cat(out)

    def _recalibrate_sampling_nets(self) -> None:
        """``eval.bn_recalibration``: the EMA copies' batch norms get statistics of fresh samples (see
        eval/recalibration.py); the next EMA update copies the training statistics back."""
        recalibrate_sampling_nets(self.method, self.ema.nets, self.recipe.eval, self.recipe.run.seed, self.device)

    @torch.no_grad()
    def _save_samples(self, metrics_log: MetricsLog | None = None) -> None:
        if not self.is_main:
            return
        self._recalibrate_sampling_nets()
        samples = self.method.generate(self.fixed_noise, nets=self.ema.nets).float().cpu()
        reference = None
        if self.source.data_dim is not None:
            reference = self.stream.data[:2000]
        path = save_samples(samples, os.path.join(self.run_dir, "samples", f"step-{self.step:08d}.png"), reference)
        if metrics_log is not None:
            metrics_log.image(self.step, "samples", path)
