"""Conv nets at every power-of-two resolution 8..1024, and activation checkpointing that changes nothing."""

from __future__ import annotations

import pytest
import torch

from acl_dist.nets.conv import ConvDiscriminator, ConvEncoder, ConvGenerator


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_shapes_at_every_resolution(resolution):
    g = ConvGenerator(4, resolution, 3, base_channels=2, max_channels=8, norm="layer")
    d = ConvDiscriminator(resolution, 3, base_channels=2, max_channels=8, norm="layer")
    e = ConvEncoder(resolution, 3, 4, base_channels=2, max_channels=8, norm="layer")
    x = g(torch.randn(2, 4))
    assert x.shape == (2, 3, resolution, resolution) and x.abs().max() <= 1
    assert d(x).shape == (2,) and e(x).shape == (2, 4)


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_activation_checkpointing_gives_the_same_values_and_gradients(net):
    def build(checkpoint: bool):
        torch.manual_seed(0)
        if net == "generator":
            return ConvGenerator(8, 64, 3, 4, 16, "layer", checkpoint_activations=checkpoint), torch.randn(2, 8)
        return ConvDiscriminator(64, 3, 4, 16, "layer", checkpoint_activations=checkpoint), torch.randn(2, 3, 64, 64)

    outs = []
    for checkpoint in (False, True):
        model, x = build(checkpoint)
        model.train()
        y = model(x)
        y.square().sum().backward()
        outs.append((y.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b)


def test_checkpointing_keeps_fewer_activations_alive():
    """What checkpointing is for: the autograd graph of a checkpointed forward holds fewer saved tensors."""
    def saved_bytes(checkpoint: bool) -> int:
        torch.manual_seed(0)
        g = ConvGenerator(8, 128, 3, 8, 32, "layer", checkpoint_activations=checkpoint)
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            g(torch.randn(4, 8))
        return total

    assert saved_bytes(True) < 0.5 * saved_bytes(False)
