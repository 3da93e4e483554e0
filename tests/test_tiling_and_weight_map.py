"""The paper's overlap-tile strategy and its border weight map."""

import numpy as np
import pytest
import torch

from unet_helpers.models import UNet
from unet_helpers.tiling import mirror_pad, predict_tiled
from unet_helpers.weight_map import class_balance_weights, touching_cells, unet_weight_map


@pytest.fixture(scope="module")
def slim_paper_unet():
    torch.manual_seed(0)
    return UNet(1, 2, (4, 8, 16, 32, 64)).eval()  # the paper's geometry with fewer channels


def test_mirror_pad_reflects_and_handles_padding_larger_than_the_image():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    padded = mirror_pad(x, 0, 0, 2, 1)
    assert padded[0, 0, 0].tolist() == [2, 1, 0, 1, 2, 3, 2]
    assert mirror_pad(x, 9, 9, 9, 9).shape == (1, 1, 22, 22)


@pytest.mark.parametrize(
    "height, width, pads",
    [(22, 30, (20, 102, 3, 40)), (4, 4, (0, 0, 1, 13)), (5, 3, (7, 0, 0, 9)), (101, 101, (22, 21, 22, 21))],
)
def test_mirror_pad_is_numpys_reflection_even_for_pads_larger_than_the_image(height, width, pads):
    """Padding in steps once reflected about an edge that is not the image's (19 wrong rows at 22 -> 144)."""
    image = torch.randn(1, 2, height, width)
    top, bottom, left, right = pads
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    assert np.array_equal(mirror_pad(image, *pads).numpy(), expected)


def test_tiling_predicts_in_eval_mode_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = UNet(1, 1, (4, 8), batch_norm=True).train()  # left in training mode by mistake
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(1, 1, 60, 60)
    tiled = predict_tiled(model, image)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.allclose(tiled, predict_tiled(model.eval(), image))  # the same as from an eval-mode model
    with pytest.raises(ValueError, match="1 input channel"):  # an error on the way (3 channels for 1) ...
        predict_tiled(model.train(), torch.randn(1, 3, 60, 60))
    assert model.training  # ... still leaves the model as it came


@pytest.mark.parametrize("height, width", [(300, 200), (101, 101)])
def test_tiled_prediction_equals_whole_image_prediction(slim_paper_unet, height, width):
    image = torch.randn(1, 1, height, width)
    tiled = predict_tiled(slim_paper_unet, image, input_tile=252)  # output tiles of 68 pixels
    assert tiled.shape == (1, 2, height, width)
    # One big pass over the same mirrored image: both are on the 16-pixel pooling grid.
    covered_h, covered_w = (-(-(height - 68) // 64)) * 64 + 68, (-(-(width - 68) // 64)) * 64 + 68
    whole_input = mirror_pad(image, 92, 92 + covered_h - height, 92, 92 + covered_w - width)
    with torch.no_grad():
        whole = slim_paper_unet(whole_input)[..., :height, :width]
    # Same arithmetic, different float32 summation order per tile size: equal to ~1e-5.
    torch.testing.assert_close(tiled, whole, rtol=1e-3, atol=1e-4)


def test_tiling_rejects_a_tile_side_the_network_cannot_take(slim_paper_unet):
    with pytest.raises(ValueError, match="nearest sides"):
        predict_tiled(slim_paper_unet, torch.zeros(1, 1, 64, 64), input_tile=250)
    with pytest.raises(ValueError, match="valid-padding"):
        predict_tiled(UNet(1, 1, (4, 8), padding="same"), torch.zeros(1, 1, 64, 64))


def test_class_balance_weights_give_both_classes_equal_total_weight():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True  # 20 % foreground
    w = class_balance_weights(mask)
    assert w[mask].sum() == pytest.approx(w[~mask].sum())
    assert w[mask][0] == pytest.approx(2.5) and w[~mask][0] == pytest.approx(0.625)


def test_weight_map_matches_the_formula_on_a_hand_made_gap():
    # Two cells separated by a 2-pixel background gap in columns 4 and 5.
    inst = np.zeros((5, 10), np.int32)
    inst[:, :4], inst[:, 6:] = 1, 2
    w = unet_weight_map(inst, w0=10, sigma=5)
    wc = class_balance_weights(inst > 0)
    # Column 4: d1 = 1 (to cell 1), d2 = 2 (to cell 2).
    assert w[2, 4] == pytest.approx(wc[2, 4] + 10 * np.exp(-((1 + 2) ** 2) / (2 * 25)))
    assert np.allclose(w[inst > 0], wc[inst > 0])  # cells themselves carry only w_c


def test_weight_map_is_highest_between_touching_cells():
    inst = touching_cells(size=96, n_cells=7, gap=2, seed=0)
    assert len(np.unique(inst)) == 8
    w = unet_weight_map(inst)
    gaps = (inst == 0) & (touching_cells(96, 7, gap=0, seed=0) > 0)  # background only because of the gap
    assert w[gaps].mean() > 3 * w[(inst == 0) & ~gaps].mean()
    assert w.max() < 10 + class_balance_weights(inst > 0).max() + 1e-9


def test_weight_map_with_one_cell_is_class_balance_only():
    inst = np.zeros((8, 8), np.int32)
    inst[2:5, 2:5] = 1
    assert np.allclose(unet_weight_map(inst), class_balance_weights(inst > 0))
