"""The whole training step as one CUDA graph (``train.cuda_graphs``): replayed, not re-launched, every step.

``auto`` (the default) graphs every run on one CUDA device in fp32 or bf16 without DeepSpeed or
torch.compile, and trains eagerly elsewhere; ``always`` makes that a requirement, ``never`` turns it off.

Why: at the resolutions ACL and WGAN-GP are trained at, a step is thousands of small kernels (every phase's
forwards, backwards, the penalty's double backward, fused Adam); on a modern GPU the Python that launches
them, not the GPU, sets the pace. A CUDA graph records the step once and replays it with one launch.

What makes it possible: the step reads nothing back on the host (non-finite losses are skipped on the
device, metrics stay device tensors; tests/unit/test_cuda.py checks it with the sync debug mode), its shapes
are fixed, and the fused Adam steps are capturable. What it costs: a few eager warm-up steps on a side stream
(lazy initialisation must not be captured), one capture per distinct control-flow pattern of a step, and
the graph's private memory pool.

Control flow: a step's Python decisions (which phases are due, lazy penalties every k iterations) depend on
the step and on each phase's iteration count; the pattern repeats with period ``Method.control_period()``,
so one graph is captured per residue and replayed when that residue comes round again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol

import torch
from torch import Tensor

from acl_dist import rules
from acl_dist.errors import TrainingError

if TYPE_CHECKING:
    from acl_dist.sections import Recipe

log = logging.getLogger(__name__)
Batch = dict[str, Tensor]


# torch.cuda.graph's cudaStreamCaptureMode. "global" (PyTorch's default) invalidates a capture when any thread
# makes a call CUDA deems unsafe while it records; in the CUDA test file's sequence (H100, torch 2.11+cu130)
# that happened in the 10th test, at its first capture, and every later capture in the process then failed
# (17 of 26). The same step captured alone succeeded in every mode; with "relaxed" all 26 tests pass and the
# replays still match eager training to the tests' tolerances.
CAPTURE_ERROR_MODE = "relaxed"


def unsupported_reason(recipe: "Recipe", device: torch.device, world: int) -> str | None:
    """Why this run cannot be graphed (None: it can). Decided once, before the optimizers are built: the
    device and process count here, the recipe's own conflicts in ``rules.cuda_graph_conflict`` (which
    validation also refuses under ``always``)."""
    if device.type != "cuda":
        return f"it runs on {device.type}; CUDA graphs need a CUDA device"
    if world > 1:
        return "it runs on several processes; graphed collectives are not tested here yet, so they stay eager"
    return rules.cuda_graph_conflict(recipe)


def use_cuda_graphs(recipe: "Recipe", device: torch.device, world: int) -> bool:
    """``train.cuda_graphs``: ``auto`` graphs where the run allows it and says why not once where it does
    not; ``always`` refuses to start without; ``never`` stays eager."""
    mode = recipe.train.cuda_graphs
    if mode == "never":
        return False
    why = unsupported_reason(recipe, device, world)
    if why is None:
        return True
    if mode == "always":
        raise TrainingError(f"train.cuda_graphs: always cannot be honoured: {why}")
    # on a CPU the reason is obvious; on a GPU the user may have expected graphs and should see why not
    log.log(logging.DEBUG if device.type == "cpu" else logging.INFO, "CUDA graphs off: %s", why)
    return False


@dataclass
class _Captured:
    """One recorded step: the graph, its static input batches, its metric outputs, how far it moves
    each phase's iteration count."""

    graph: torch.cuda.CUDAGraph
    inputs: list[Batch]
    sums: dict[str, Tensor] = field(default_factory=dict)
    advances: dict[str, int] = field(default_factory=dict)


class StepRunner(Protocol):
    """What a graphed step needs of the loop that owns it (the trainer), and nothing more."""

    device: torch.device
    phase_iterations: dict[str, int]  # how often each phase ran: a capture runs the Python, then restores it

    def run_step(self, batches: Iterator[Batch], sums: dict[str, Tensor]) -> None:
        """One eager step: every phase due, drawing its batches from ``batches``, adding metrics to ``sums``."""

    def batches_per_step(self) -> int:
        """How many batches the next ``run_step`` draws."""

    def control_pattern(self, period: int) -> tuple:
        """The next step's Python decisions (due phases, phase iterations modulo ``period``)."""


class GraphedStep:
    """``trainer.train_step`` when ``train.cuda_graphs`` is on: warm up eagerly, capture, then replay.

    ``period``: ``Method.control_period()``, after which the step's control flow repeats.
    """

    def __init__(self, runner: StepRunner, period: int, warmup_steps: int = 3):
        self.runner = runner
        self.period = max(1, period)
        self.warmup_left = max(warmup_steps, 2 * self.period)  # every pattern's kernels run once eagerly
        self.side = torch.cuda.Stream(device=runner.device)
        self.graphs: dict[tuple, _Captured] = {}

    def __call__(self, batches: Iterator[Batch], sums: dict[str, Tensor]) -> None:
        t = self.runner
        if self.warmup_left > 0:  # eager, on a side stream, as PyTorch's graph-capture recipe asks
            self.warmup_left -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                t.run_step(batches, sums)
            torch.cuda.current_stream().wait_stream(self.side)
            return
        host_batches = [next(batches) for _ in range(t.batches_per_step())]
        pattern = t.control_pattern(self.period)
        captured = self.graphs.get(pattern)
        if captured is None:
            captured = self.graphs[pattern] = self._capture(host_batches)
        for static, batch in zip(captured.inputs, host_batches):
            for key, value in batch.items():
                static[key].copy_(value.pin_memory(), non_blocking=True)
        captured.graph.replay()
        for key, value in captured.sums.items():  # read right after the replay, before the next overwrites
            sums[key] = sums.get(key, 0) + value
        for name, advance in captured.advances.items():
            t.phase_iterations[name] += advance

    def _capture(self, host_batches: list[Batch]) -> _Captured:
        """Record one step. Nothing runs: parameters, optimizer states and counters are as they were."""
        t = self.runner
        inputs = [{k: torch.empty_like(v, device=t.device) for k, v in b.items()} for b in host_batches]
        before = dict(t.phase_iterations)
        captured = _Captured(torch.cuda.CUDAGraph(), inputs)
        torch.cuda.synchronize(t.device)
        with torch.cuda.graph(captured.graph, capture_error_mode=CAPTURE_ERROR_MODE):
            t.run_step(iter(inputs), captured.sums)
        captured.advances = {n: t.phase_iterations[n] - before[n] for n in before}
        t.phase_iterations.update(before)  # the capture ran the Python, not the step
        log.info("CUDA graph captured for step pattern %d (period %d, %d input batches)",
                 len(self.graphs) + 1, self.period, len(inputs))
        return captured
