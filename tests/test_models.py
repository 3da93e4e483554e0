"""The paper's facts and the behaviour of both U-Nets."""

import pytest
import torch
from torch import nn

from unet_helpers.models import (
    RecursiveUNet,
    UNet,
    UNetLevel,
    UNetOriginal,
    count_conv_layers,
    count_parameters,
    feature_map_sides,
    init_paper_,
    input_side_for_output,
    nearest_valid_input_sides,
    output_side,
    transfer_weights,
)

# Figure 1 of Ronneberger et al. (2015): every feature-map side from input to output.
PAPER_SIDES = [
    572,
    570,
    568,
    284,
    282,
    280,
    140,
    138,
    136,
    68,
    66,
    64,
    32,
    30,
    28,
    56,
    54,
    52,
    104,
    102,
    100,
    200,
    198,
    196,
    392,
    390,
    388,
]
PAPER_PARAMETERS = 31_030_658
PAPER_CONV_LAYERS = 23


@pytest.fixture(scope="module")
def paper_pair():
    torch.manual_seed(0)
    original, configured = UNetOriginal().eval(), UNet().eval()
    transfer_weights(original, configured)
    return original, configured


def test_paper_parameter_and_layer_counts(paper_pair):
    for model in paper_pair:
        assert count_parameters(model) == PAPER_PARAMETERS
        assert count_conv_layers(model) == PAPER_CONV_LAYERS


def test_paper_feature_map_sides():
    sides = [s for name, s in feature_map_sides(572) if name != "output"]
    assert sides == PAPER_SIDES
    assert output_side(572) == 388


def test_forward_hooks_see_the_paper_sides(paper_pair):
    """The sides above are not just arithmetic: the real layers produce them."""
    original, _ = paper_pair
    seen = []
    convs = [m for m in original.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1])) for m in convs]
    with torch.no_grad():
        out = original(torch.zeros(1, 1, 572, 572))
    for h in hooks:
        h.remove()
    assert out.shape == (1, 2, 388, 388)
    expected = [s for name, s in feature_map_sides(572) if "conv" in name or name.startswith("up")]
    assert seen == expected + [388]  # + the 1x1 head


def test_original_and_configured_compute_the_same_function(paper_pair):
    original, configured = paper_pair
    x = torch.randn(1, 1, 572, 572)
    with torch.no_grad():
        assert torch.equal(original(x), configured(x))


def test_the_recursive_unet_is_the_papers_network(paper_pair):
    """The paper's configuration: 23 layers, 31,030,658 parameters, and the same outputs as the hand-built one."""
    original, _ = paper_pair
    recursive = RecursiveUNet().eval()
    assert count_parameters(recursive) == PAPER_PARAMETERS and count_conv_layers(recursive) == PAPER_CONV_LAYERS
    transfer_weights(original, recursive)
    x = torch.randn(1, 1, 572, 572)
    with torch.no_grad():
        out = recursive(x)
        assert out.shape == (1, 2, 388, 388) and torch.equal(original(x), out)


def test_the_recursive_unet_holds_smaller_copies_of_itself_down_to_the_bottleneck():
    level, depths = RecursiveUNet().unet, []
    while True:
        assert isinstance(level, UNetLevel)
        depths.append(level.depth)
        if level.depth == 0:
            break
        assert level.inner.encode[0].in_channels == level.encode[-2].out_channels  # the inner U takes the pooled map
        level = level.inner
    assert depths == [4, 3, 2, 1, 0] and level.encode[-2].out_channels == 1024  # the bottleneck: 1024 channels


@pytest.mark.parametrize(
    "config, side",
    [
        (dict(in_channels=3, out_channels=1, features=(16, 32, 64)), 144),  # small-valid
        (dict(in_channels=3, out_channels=1, features=(16, 32, 64), padding="same"), 101),  # small-same
        (dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128), padding="same", padding_mode="reflect"), 104),
        (
            dict(
                in_channels=3,
                out_channels=1,
                features=(16, 32, 64, 128, 160),
                padding="same",
                padding_mode="reflect",
                batch_norm=True,
            ),
            112,
        ),  # medium-strong
    ],
)
def test_the_recursive_unet_computes_what_the_configurable_unet_computes(config, side):
    torch.manual_seed(0)
    looped, recursive = UNet(**config), RecursiveUNet(**config)
    assert count_parameters(looped) == count_parameters(recursive)
    if config.get("batch_norm"):  # give the running statistics values of their own, so that they are tested too
        for m in looped.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    transfer_weights(looped, recursive)
    looped.eval(), recursive.eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.equal(looped(x), recursive(x))
    transfer_weights(recursive, UNet(**config))  # and back: the same tensors in the same order


def test_the_recursive_unet_refuses_what_unet_refuses():
    with pytest.raises(ValueError, match="cannot take an input side of 101"):
        RecursiveUNet(3, 1, (16, 32, 64))(torch.zeros(1, 3, 101, 101))
    with pytest.raises(ValueError, match="features must list at least 2"):
        RecursiveUNet(3, 1, (16,))


def test_transfer_weights_rejects_mismatched_networks():
    with pytest.raises(ValueError, match="same levels"):
        transfer_weights(UNetOriginal(), UNet(features=(64, 128, 256, 512)))
    with pytest.raises(ValueError, match="shape"):
        transfer_weights(UNetOriginal(), UNet(in_channels=3))


def test_paper_initialisation_std():
    conv = nn.Conv2d(64, 128, 3)
    up = nn.ConvTranspose2d(1024, 512, 2, stride=2)
    torch.manual_seed(0)
    init_paper_(nn.Sequential(conv, up))
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.02)
    assert up.weight.std().item() == pytest.approx((2 / 1024) ** 0.5, rel=0.02)  # one tap per output unit
    assert conv.bias.abs().sum() == 0


@pytest.mark.parametrize(
    "features, padding_mode, low, high",
    [((16, 32, 64), "zeros", 90_000, 130_000), ((16, 32, 64, 128), "reflect", 450_000, 550_000)],
)
def test_earlier_project_configurations(features, padding_mode, low, high):
    model = UNet(3, 1, features, padding="same", padding_mode=padding_mode)
    assert low < count_parameters(model) < high
    assert model(torch.zeros(2, 3, 101, 101)).shape == (2, 1, 101, 101)


@pytest.mark.parametrize("side", [4, 5, 7, 8, 33, 100, 101, 127, 128])
def test_same_padding_keeps_any_side_from_two_to_the_levels_minus_one(side):
    model = UNet(1, 1, (4, 8, 16), padding="same")  # 3 levels: sides from 4 up
    assert model(torch.zeros(1, 1, side, side + 1)).shape == (1, 1, side, side + 1)


def test_valid_padding_size_helpers():
    assert nearest_valid_input_sides(572) == (572, 572)
    assert nearest_valid_input_sides(580) == (572, 588)  # valid sides are 16 apart for 5 levels
    assert input_side_for_output(388) == 572
    assert input_side_for_output(101, levels=3) == 144
    model = UNet(3, 1, (16, 32, 64))
    assert model.output_side(144) == 104
    assert model(torch.zeros(1, 3, 144, 144)).shape == (1, 1, 104, 104)


def test_valid_padding_rejects_a_side_it_cannot_take_naming_the_nearest():
    model = UNet(3, 1, (16, 32, 64))
    with pytest.raises(ValueError, match="100 or 104"):
        model(torch.zeros(1, 3, 101, 101))
    with pytest.raises(ValueError, match="smallest side that works is 44"):
        model(torch.zeros(1, 3, 20, 20))


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda: torch.zeros(3, 64, 64), "4-D tensor"),
        (lambda: torch.zeros(1, 1, 64, 64), "3 input channel"),
        (lambda: torch.zeros(1, 3, 2, 2), "at least 4"),
    ],
)
def test_bad_inputs_raise_value_error_saying_what_to_pass(make_input, message):
    model = UNet(3, 1, (8, 16, 32), padding="same")
    with pytest.raises(ValueError, match=message):
        model(make_input())


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="'valid'.*'same'"):
        UNet(padding="full")
    with pytest.raises(ValueError, match="padding_mode"):
        UNet(padding="same", padding_mode="mirror")
    with pytest.raises(ValueError, match="at least 2"):
        UNet(features=(64,))


def test_batch_norm_and_config_round_trip():
    model = UNet(3, 1, (8, 16, 32), padding="same", batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    clone = UNet(**model.config())
    transfer_weights(model, clone)
    x = torch.randn(2, 3, 32, 32)
    model.eval(), clone.eval()
    assert torch.equal(model(x), clone(x))


def test_reflect_and_zero_padding_differ_only_near_the_border():
    torch.manual_seed(0)
    zeros = UNet(1, 1, (4, 8), padding="same", padding_mode="zeros").eval()
    reflect = UNet(1, 1, (4, 8), padding="same", padding_mode="reflect").eval()
    transfer_weights(zeros, reflect)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        diff = (zeros(x) - reflect(x)).abs()[0, 0]
    assert diff[20:44, 20:44].max() == 0  # receptive field of 2 levels is 18 pixels
    assert diff[0].max() > 0


def test_bilinear_upsampling_builds_the_same_network_both_ways_and_round_trips_its_config():
    config = dict(in_channels=3, out_channels=1, features=(8, 16, 32), padding="same", upsample="bilinear")
    torch.manual_seed(0)
    looped, recursive = UNet(**config).eval(), RecursiveUNet(**config).eval()
    transfer_weights(looped, recursive)
    x = torch.randn(1, 3, 101, 101)
    with torch.no_grad():
        assert torch.equal(looped(x), recursive(x)) and looped(x).shape == (1, 1, 101, 101)
    assert UNet(**looped.config()).config() == looped.config() and looped.config()["upsample"] == "bilinear"
    assert "upsample" not in UNet(3, 1, (8, 16)).config()  # the paper's default leaves older cards unchanged
    with pytest.raises(ValueError, match="unknown upsample 'nearest'"):
        UNet(upsample="nearest")


@pytest.mark.parametrize("build", [UNet, RecursiveUNet])
def test_reflect_padding_refuses_a_side_whose_bottom_map_has_one_pixel(build):
    """A reflected border needs a pixel beside each one to reflect: at 16 a 5-level network's bottom map is 1x1, and
    the convolution's padding failed with a RuntimeError deep in the network. Zero padding still takes 16."""
    reflect = build(3, 1, (4, 4, 4, 4, 4), padding="same", padding_mode="reflect").eval()
    with pytest.raises(ValueError, match="input side of 16 is too small; use at least 17"):
        reflect(torch.rand(1, 3, 16, 16))
    assert reflect(torch.rand(1, 3, 17, 17)).shape[-1] == 17
    assert build(3, 1, (4, 4, 4, 4, 4), padding="same").eval()(torch.rand(1, 3, 16, 16)).shape[-1] == 16
