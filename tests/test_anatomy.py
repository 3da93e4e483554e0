"""Looking inside a U-Net: receptive fields (against a hand derivation and a measurement), feature maps, cut skips."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from unet_helpers.anatomy import (
    cut_skip,
    effective_receptive_field,
    error_by_border_distance,
    extent,
    feature_maps,
    mass_radius,
    receptive_field,
    receptive_field_by_position,
    receptive_window_by_position,
    textbook_receptive_field,
)
from unet_helpers.models import UNet


@pytest.mark.parametrize(
    "features, walk, by_position",
    [
        # The classic walk by hand: r = 1, jump = 1; each 3x3 conv adds 2 * jump; a pool adds 1 * jump and doubles it;
        # an up-conv halves it. Exact up to 3 levels; deeper, the window depends on the place in the pooling cell.
        ((8, 16), 18, [18, 18]),  # 1+2+2 = 5 | pool 6, jump 2 | 6+4+4 = 14 | up: 14+2+2 = 18
        ((16, 32, 64), 44, [44] * 4),  # 5 | 6 | 14 | 16, jump 4 | 16+8+8 = 32 | 32+4+4 = 40 | 40+2+2 = 44
        ((16, 32, 64, 128), 96, [92, 92] + [100] * 4 + [92, 92]),  # walk: ... 68 | 84 | 92 | 96
        (
            (64, 128, 256, 512, 1024),
            200,
            [188, 188] + [204] * 12 + [188, 188],
        ),  # the paper; walk: ... 140 | 172 | 188 | 196 | 200
    ],
)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_receptive_field_against_the_hand_derivation(features, walk, by_position, padding):
    model = UNet(1, 1, features, padding=padding)
    assert receptive_field_by_position(model) == by_position
    assert receptive_field(model) == max(by_position)
    assert min(by_position) <= walk <= max(by_position)  # the walk gives a window between the two
    assert textbook_receptive_field(len(features)) == walk  # the classic walk, as notebook 07 prints it


@pytest.mark.parametrize(
    "options, named",
    [
        (dict(upsample="bilinear"), "bilinear upsampling"),  # a reviewer measured 20 / 52 / 116 where 18 / 44 / 100
        (dict(attention="scse"), "scse attention"),  # the channel gate pools the whole map: the whole input
        (dict(salt_head=True), "a salt head"),
    ],
)
def test_the_count_refuses_the_levers_it_does_not_know(options, named):
    model = UNet(1, 1, (8, 16, 32), padding="same", **options)
    with pytest.raises(ValueError, match=f"this one has {named}.*effective_receptive_field"):
        receptive_field(model)
    assert receptive_field(UNet(1, 1, (8, 16, 32), padding="same", hypercolumn=True)) == 44  # as without (measured)


def _linearised(model: UNet) -> UNet:
    """The same layout with every weight positive, no ReLU and average pooling: every path carries gradient."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.Identity())
    model.pool = nn.AvgPool2d(2, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs() + 0.01)
    return model


@pytest.mark.parametrize("features", [(2, 2), (2, 2, 2), (2, 2, 2, 2)])
def test_receptive_field_equals_the_widest_measured_gradient(features):
    model = _linearised(UNet(1, 1, features, padding="same"))
    cell = 2 ** (len(features) - 1)
    widths, reaches = [], []
    for offset in range(cell):  # every position within one pooling cell, far from the border
        x = torch.ones(1, 1, 128, 128, requires_grad=True)
        model(x)[0, 0, 64, 64 + offset].backward()
        widths.append(extent(x.grad[0, 0].abs().numpy()))
        columns = np.flatnonzero(x.grad[0, 0].abs().sum(0).numpy() > 0)
        reaches.append((64 + offset - columns.min(), columns.max() - 64 - offset))  # before and after the pixel
    assert widths == receptive_field_by_position(model)
    assert reaches == receptive_window_by_position(model)


def test_a_deep_unets_window_is_not_centred_on_its_pixel():
    reaches = receptive_window_by_position(UNet(3, 1, (16, 32, 64), padding="same"))
    assert sorted(reaches) == [(20, 23), (21, 22), (22, 21), (23, 20)]  # 44 wide, 20 to 23 pixels to each side
    five_levels = receptive_window_by_position(UNet(3, 1, (16, 32, 64, 128, 160), padding="same"))
    assert min(min(r) for r in five_levels) == 92 and max(max(r) for r in five_levels) == 107


def test_effective_receptive_field_is_a_normalised_map_inside_the_theoretical_one():
    torch.manual_seed(0)
    model = UNet(1, 1, (4, 8, 16), padding="same")
    erf = effective_receptive_field(model, torch.rand(3, 1, 96, 96))
    assert erf.shape == (96, 96) and erf.max() == pytest.approx(1.0) and erf.min() >= 0
    assert 0 < extent(erf) <= receptive_field(model)


def test_looking_inside_leaves_the_model_as_it_was():
    """Both once left a model in eval mode, and the receptive field left a gradient on every weight."""
    model = UNet(1, 1, (4, 8, 16), padding="same", batch_norm=True).train()
    effective_receptive_field(model, torch.rand(2, 1, 48, 48))
    feature_maps(model, torch.rand(2, 1, 48, 48))
    assert model.training and all(p.grad is None for p in model.parameters())


def test_feature_maps_at_their_true_sides():
    model = UNet(3, 1, (16, 32, 64, 128), padding="same", padding_mode="reflect", batch_norm=True)
    maps = feature_maps(model, torch.rand(2, 3, 104, 104))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "enc1": (16, 104, 104),
        "enc2": (32, 52, 52),
        "enc3": (64, 26, 26),
        "bottleneck": (128, 13, 13),
        "dec3": (64, 26, 26),
        "dec2": (32, 52, 52),
        "dec1": (16, 104, 104),
        "logits": (1, 104, 104),
    }


@pytest.mark.parametrize("how", ["zeros", "mean"])
def test_cutting_a_skip_changes_only_inside_the_block(how):
    torch.manual_seed(0)
    model = UNet(1, 1, (4, 8, 16), padding="same").eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        with cut_skip(model, 1, how):
            cut = model(x)
        skip = model.encoders[0](x)
        below = model.decoders[0](
            model.bottleneck(model.pool(model.encoders[1](model.pool(skip)))), model.encoders[1](model.pool(skip))
        )
        flat = torch.zeros_like(skip) if how == "zeros" else skip.mean((-2, -1), keepdim=True).expand_as(skip)
        assert torch.allclose(cut, model.head(model.decoders[1](below, flat)), atol=1e-6)
        assert not torch.allclose(cut, before) and torch.equal(model(x), before)
    with pytest.raises(ValueError, match="levels 1 to 2"):
        with cut_skip(model, 3):
            pass


def test_error_by_border_distance_by_hand():
    truth = np.zeros((1, 5, 5), bool)
    pred = truth.copy()
    pred[0, 0, 0] = True  # one wrong pixel on the border ring (16 pixels)
    pred[0, 2, 2] = True  # the centre pixel, distance 2, wrong
    assert error_by_border_distance(pred, truth).tolist() == [1 / 16, 0.0, 1.0]


def test_the_checkerboard_index_finds_a_fixed_2x2_pattern_and_nothing_else():
    from unet_helpers.anatomy import checkerboard_index

    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(100.0), torch.arange(100.0), indexing="ij")
    smooth = torch.sin(x / 9) + torch.cos(y / 13)  # content that varies slowly
    noise = torch.randn(8, 100, 100)  # content that varies from pixel to pixel, without a fixed pattern
    board = torch.tensor([[1.0, -0.5], [0.25, -0.75]]).repeat(50, 50)  # four fixed taps, as a stride-2 up-conv paints
    assert checkerboard_index(smooth[None]) < 0.02 and checkerboard_index(noise) < 0.02
    assert checkerboard_index(board[None]) == pytest.approx(1.0, abs=1e-3)  # all of its variation is the 2x2 pattern
    assert 0.15 < checkerboard_index((smooth + 0.3 * board)[None]) < 0.5  # a pattern on top of content


def test_bilinear_upsampling_paints_no_checkerboard_where_a_transposed_convolution_does():
    from unet_helpers.anatomy import checkerboard_index
    from unet_helpers.models import UpBlock

    torch.manual_seed(0)
    below = torch.rand(1, 8, 26, 26)
    transposed = UpBlock(8, 4, "same", "zeros", False).up(below)
    bilinear = UpBlock(8, 4, "same", "zeros", False, upsample="bilinear").up(below)
    assert transposed.shape == bilinear.shape == (1, 4, 52, 52)
    assert checkerboard_index(transposed[0]) > 5 * checkerboard_index(bilinear[0])


def test_mass_radius_is_the_half_side_of_the_square_that_holds_the_share():
    heatmap = np.zeros((21, 21))
    heatmap[10, 10] = 1.0  # half of the mass at the centre
    heatmap[10, 15] = 1.0  # the other half 5 pixels to the right
    assert mass_radius(heatmap, 0.5) == 0 and mass_radius(heatmap, 0.9) == 5
    heatmap[0, 0] = 1e-3  # a stray pixel in the corner stretches the extent, not the radius of 90%
    assert extent(heatmap, 0.0) == 16 and mass_radius(heatmap, 0.9) == 5
