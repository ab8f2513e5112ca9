"""Train the shipped ``digits-cnn`` FID feature extractor on sklearn's digits and write its weights.

Seeded, CPU, well under two minutes. The images take the path our images take: the 8x8 digit is resized to
8, 16 or 32 px (the resolutions digits recipes use), quantised to uint8 RGB as a PNG would be, then goes
through the extractor's own preprocessing; so the net sees at training time what it sees at evaluation.
A stratified 20% split is held out; its accuracy is printed and stored in the file's ``meta``.

    python scripts/train_digits_extractor.py [--out acl_dist/eval/weights/digits_cnn.pt]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extractor_fit import fit, parse_args, save  # noqa: E402

from acl_dist.eval.extractors import DIGITS_WEIGHTS, DigitsCNN  # noqa: E402

SIZES = (8, 16, 32)


def render(digits: torch.Tensor, size: int) -> torch.Tensor:
    """sklearn digits float [B, 8, 8] in [0, 16] -> uint8 [B, 3, size, size], like a stored/generated PNG."""
    x = (digits / 16.0).unsqueeze(1) * 2 - 1  # [B, 1, 8, 8] in [-1, 1], as the digits data source yields
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1)


def inputs(digits: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Net inputs [B, 1, 16, 16]; with ``gen``, a random source size and a +-1 px shift per batch (augment)."""
    if gen is None:
        return DigitsCNN.preprocess(render(digits, 16))
    size = SIZES[int(torch.randint(len(SIZES), (1,), generator=gen))]
    x = DigitsCNN.preprocess(render(digits, size))
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(net: DigitsCNN, digits: torch.Tensor, labels: torch.Tensor) -> float:
    """Held-out accuracy averaged over every source size the recipes use."""
    net.eval()
    hits = [
        (net(DigitsCNN.preprocess(render(digits, s))).argmax(1) == labels).float().mean().item() for s in SIZES
    ]
    return float(np.mean(hits))


def train(seed: int, epochs: int, batch: int) -> tuple[DigitsCNN, float, int]:
    torch.manual_seed(seed)
    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.images, data.target, test_size=0.2, stratify=data.target, random_state=seed
    )
    x_tr, x_te = torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_te, dtype=torch.float32)
    y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)
    net = DigitsCNN()
    fit(net, x_tr, y_tr, inputs, seed, epochs, batch)
    return net, accuracy(net, x_te, y_te), len(x_tr)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], DIGITS_WEIGHTS, 30)
    start = time.time()
    net, acc, n_train = train(args.seed, args.epochs, args.batch)
    save(net, acc, n_train, "sklearn.datasets.load_digits, stratified 80/20 split (random_state=seed)", args, start)


if __name__ == "__main__":
    main()
