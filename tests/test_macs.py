"""Multiply-accumulates counted from the layers: one layer of each kind by hand, then the paper's network."""

import pytest
import torch
from torch import nn
from torchinfo import summary

from unet_helpers.macs import count_macs
from unet_helpers.models import UNet, UNetOriginal


@pytest.mark.parametrize(
    "layer, input_size, by_hand",
    [
        # 280 x 280 outputs x 128 channels, each a dot product over 64 channels x 3 x 3 taps
        (nn.Conv2d(64, 128, 3), (64, 282, 282), 280 * 280 * 128 * 64 * 9),
        # the paper's up1: every one of the 196 x 196 x 128 inputs meets the 64 x 2 x 2 weights it spreads to
        (nn.ConvTranspose2d(128, 64, 2, stride=2), (128, 196, 196), 196 * 196 * 128 * 64 * 4),
        # depthwise: each output value sees its own channel's 3 x 3 window only
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 10, 10), 8 * 10 * 10 * 9),
        (nn.Conv2d(64, 2, 1), (64, 388, 388), 388 * 388 * 2 * 64),  # the 1x1 head
        (nn.Linear(10, 5), (10,), 50),
    ],
)
def test_one_layer_of_each_kind_by_hand(layer, input_size, by_hand):
    assert count_macs(nn.Sequential(layer), input_size) == {"0": by_hand}


def test_an_up_convolution_costs_one_input_pixel_times_in_channels_per_output_value():
    up = nn.ConvTranspose2d(128, 64, 2, stride=2)
    macs = count_macs(nn.Sequential(up), (128, 196, 196))["0"]
    assert macs == 392 * 392 * 64 * 128  # output values x C_in
    assert macs == 1_258_815_488  # 1.26 G: the paper's up1


def test_the_papers_network_costs_150_4_gmacs_and_torchinfo_counts_its_up_convolutions_4x():
    model = UNetOriginal()
    macs = count_macs(model, (1, 572, 572))
    total = sum(macs.values())
    assert round(total / 1e9, 1) == 150.4
    level1 = sum(v for name, v in macs.items() if name.startswith(("enc1", "dec1", "up1")))
    assert 0.19 < level1 / total < 0.21  # the top level is about a fifth of the cost, not most of it
    ups = sum(v for name, v in macs.items() if name.startswith("up"))
    torchinfo_total = summary(model, input_size=(1, 1, 572, 572), verbose=0).total_mult_adds
    # torchinfo: every up-convolution weight at every output pixel (4x), and every bias once per output value
    biases = sum(m.out_channels * o for m, o in _bias_outputs(model))
    assert torchinfo_total == total + 3 * ups + biases


def _bias_outputs(model):
    sides = {}
    hooks = [
        m.register_forward_hook(lambda m, a, out: sides.__setitem__(m, out.shape[-1] * out.shape[-2]))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        model(torch.zeros(1, 1, 572, 572))
    for h in hooks:
        h.remove()
    return list(sides.items())


def test_a_configurable_unet_and_the_paper_cost_the_same():
    original, configured = UNetOriginal(), UNet()
    assert sum(count_macs(original, (1, 572, 572)).values()) == sum(count_macs(configured, (1, 572, 572)).values())
