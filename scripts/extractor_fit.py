"""What the two extractor-training scripts share: the classifier fit (Adam 2e-3, cosine schedule, seeded
shuffles), their command line, and the weights file with its ``meta``. Each script keeps its own data, input
path and accuracy, which is where they differ."""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Inputs = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def fit(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, inputs: Inputs, seed: int, epochs: int,
        batch: int) -> nn.Module:
    """Train ``net`` to classify ``inputs(images, gen)`` (``gen`` drives its augmentation) for ``epochs``."""
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(images), generator=gen).split(batch):
            loss = F.cross_entropy(net(inputs(images[idx], gen)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return net


def parse_args(description: str, default_out: str | None, default_epochs: int,
               archs: tuple[str, ...] = ()) -> argparse.Namespace:
    """The scripts' command line; ``archs``: the architectures ``--arch`` chooses from (the first is the default;
    ``--out`` and ``--seed`` then default per architecture, in the script)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--seed", type=int, default=None if archs else 0)
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument("--batch", type=int, default=64)
    if archs:
        parser.add_argument("--arch", choices=archs, default=archs[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args


def save(net: nn.Module, accuracy: float, n_train: int, data: str, args: argparse.Namespace, started: float) -> None:
    """The weights and their ``meta`` (what the extractor loader checks and the docs quote) at ``args.out``."""
    meta = {"architecture": type(net).__name__, "test_accuracy": accuracy, "input_size": net.INPUT_SIZE,
            "feature_dim": net.FEATURE_DIM,
            "seed": args.seed, "epochs": args.epochs, "train_samples": n_train, "data": data}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, args.out)
    size_kb = os.path.getsize(args.out) / 1024
    print(f"held-out accuracy {accuracy:.4f} | {size_kb:.0f} KiB -> {args.out} | {time.time() - started:.0f} s")
