"""Losses on hand-computed cases; the competition's metric on its definition."""

import math

import numpy as np
import pytest
import torch

from unet_helpers.losses import BCEDiceLoss, BCEWithLogitsLoss, LovaszHingeLoss, SoftDiceLoss, lovasz_grad, make_loss
from unet_helpers.metrics import TGS_THRESHOLDS, dice, iou, pixel_accuracy, tgs_score, tgs_score_per_image


def t(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


# --- losses ------------------------------------------------------------------------------------


def test_bce_at_zero_logits_is_log_two_and_pos_weight_scales_the_positives():
    assert BCEWithLogitsLoss()(t([0.0, 0.0]), t([1.0, 0.0])).item() == pytest.approx(math.log(2))
    # positive pixel weighted 3x: (3 ln2 + ln2) / 2
    assert BCEWithLogitsLoss(pos_weight=3.0)(t([0.0, 0.0]), t([1.0, 0.0])).item() == pytest.approx(2 * math.log(2))


def test_soft_dice_hand_computed():
    # probabilities 0.5 on 4 salt pixels: (2 * 2 + 1) / (2 + 4 + 1) = 5/7
    assert SoftDiceLoss()(t([0.0] * 4), t([1.0] * 4)).item() == pytest.approx(1 - 5 / 7)
    assert SoftDiceLoss()(t([-50.0, -50.0]), t([0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)  # empty & empty
    assert SoftDiceLoss()(t([50.0, -50.0]), t([1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_bce_dice_is_the_weighted_sum():
    logits, target = torch.randn(2, 1, 5, 5), (torch.rand(2, 1, 5, 5) > 0.5).float()
    expected = 0.3 * BCEWithLogitsLoss()(logits, target) + 0.7 * SoftDiceLoss()(logits, target)
    assert BCEDiceLoss(bce_weight=0.3)(logits, target).item() == pytest.approx(expected.item())


def test_lovasz_grad_hand_computed():
    # truth sorted by error: [1, 0, 1]; IoU losses of the prefixes: 1-1/2, 1-1/3... see below
    grad = lovasz_grad(torch.tensor([1.0, 0.0, 1.0]))
    # prefix k wrong -> Jaccard loss 1 - |gt \ prefix-gt| / |gt U prefix-errors|: 1/2, 2/3, 1
    assert grad.tolist() == pytest.approx([0.5, 2 / 3 - 0.5, 1 - 2 / 3])


@pytest.mark.parametrize(
    "logits, truth, expected",
    [
        ([1.0, -1.0], [1.0, 0.0], 0.0),  # every margin exactly 1: no hinge error
        ([0.0, 0.0], [1.0, 0.0], 1.0),  # both errors 1: the whole IoU is lost
        ([2.0, 0.5], [1.0, 0.0], 0.75),  # only the false positive, error 1.5, IoU 1/2: 1.5 * 0.5
        ([-1.0, -2.0], [0.0, 0.0], 0.0),  # empty truth, confident empty prediction
    ],
)
def test_lovasz_hinge_hand_computed(logits, truth, expected):
    assert LovaszHingeLoss()(t(logits), t(truth)).item() == pytest.approx(expected)


def test_lovasz_is_per_image_mean_and_differentiable():
    logits = torch.tensor([[[[0.0, 0.0]]], [[[1.0, -1.0]]]], requires_grad=True)
    truth = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])
    loss = LovaszHingeLoss()(logits, truth)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_make_loss_names():
    assert isinstance(make_loss("bce_dice"), BCEDiceLoss)
    with pytest.raises(ValueError, match="unknown loss 'focal'.*bce, dice, bce_dice, lovasz"):
        make_loss("focal")


# --- metrics -----------------------------------------------------------------------------------


def square(side=10, filled=0):
    m = np.zeros((side, side), np.uint8)
    m.flat[:filled] = 1
    return m


def test_thresholds_are_the_competitions():
    assert TGS_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_tgs_score_empty_cases():
    empty, some = square(), square(filled=10)
    assert tgs_score(empty, empty) == 1.0  # nothing to find, nothing found
    assert tgs_score(some, empty) == 0.0  # a false positive
    assert tgs_score(empty, some) == 0.0  # a miss


@pytest.mark.parametrize(
    "pred_filled, true_filled, expected",
    [
        (10, 10, 1.0),
        (6, 10, 0.2),  # IoU 0.6: above 0.5 and 0.55 only
        (5, 10, 0.0),  # IoU exactly 0.5 is not above 0.5
        (19, 20, 0.9),  # IoU 0.95: above every threshold but 0.95
        (20, 19, 0.9),
    ],
)
def test_tgs_score_thresholds(pred_filled, true_filled, expected):
    assert tgs_score(square(filled=pred_filled), square(filled=true_filled)) == pytest.approx(expected)


def plain_loop_score(preds, truths):
    """The metric written as the competition describes it, one image and one threshold at a time."""
    scores = []
    for p, t in zip(preds, truths):
        p, t = p.astype(bool), t.astype(bool)
        if not t.any() and not p.any():
            scores.append(1.0)
            continue
        iou_value = (p & t).sum() / (p | t).sum()
        hits = []
        for threshold in np.arange(10) * 0.05 + 0.5:
            tp = 1 if iou_value > threshold + 1e-12 else 0
            fp = fn = 1 - tp
            hits.append(tp / (tp + fp + fn))
        scores.append(np.mean(hits))
    return float(np.mean(scores))


def test_tgs_score_matches_a_plain_loop_on_random_batches():
    rng = np.random.default_rng(0)
    truths = (rng.random((64, 20, 20)) < rng.random((64, 1, 1)) * 0.5).astype(np.uint8)
    truths[:16] = 0  # some empty masks
    preds = truths.copy()
    flip = rng.random(preds.shape) < rng.random((64, 1, 1)) * 0.3
    preds = np.where(flip, 1 - preds, preds)
    preds[16:20] = 0  # some empty predictions
    assert tgs_score(preds, truths) == pytest.approx(plain_loop_score(preds, truths))
    assert tgs_score(torch.from_numpy(preds)[:, None], torch.from_numpy(truths)[:, None]) == pytest.approx(
        plain_loop_score(preds, truths)
    )


def test_all_empty_baseline_scores_the_share_of_empty_masks():
    truths = np.stack([square(), square(), square(filled=30), square(filled=5)])
    assert tgs_score(np.zeros_like(truths), truths) == 0.5
    assert tgs_score_per_image(np.zeros_like(truths), truths).tolist() == [1, 1, 0, 0]


def test_iou_dice_pixel_accuracy():
    pred, true = square(filled=6), square(filled=10)
    assert iou(pred, true) == pytest.approx(0.6)
    assert dice(pred, true) == pytest.approx(2 * 6 / 16)
    assert pixel_accuracy(pred, true) == pytest.approx(0.96)
    assert iou(square(), square()) == 1.0 and dice(square(), square()) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        iou(square(5), square(6))


def test_boundary_f1_sees_an_outline_moved_by_a_pixel_where_the_score_does_not():
    from unet_helpers.metrics import boundary_f1_per_image, tgs_score_per_image

    truth = np.zeros((1, 101, 101), np.uint8)
    truth[0, 20:80, 20:80] = 1  # a 60x60 salt body: its boundary is 4 x 59 = 236 pixels
    moved = np.roll(truth, 1, axis=2)  # the same outline, one pixel to the right
    assert boundary_f1_per_image(truth, truth, tolerance=0)[0] == 1.0
    assert boundary_f1_per_image(moved, truth, tolerance=1)[0] == 1.0  # within the tolerance
    # one pixel off: the top and bottom rows still overlap (58 of 60 pixels each), the two sides do not
    assert boundary_f1_per_image(moved, truth, tolerance=0)[0] == pytest.approx(2 * 59 / 236, abs=0.02)
    assert tgs_score_per_image(moved, truth)[0] == 1.0  # IoU 0.967: the competition's score does not see it
    far = np.roll(truth, 5, axis=2)
    assert boundary_f1_per_image(far, truth, tolerance=1)[0] < 0.6


def test_boundary_f1_of_empty_and_full_masks():
    from unet_helpers.metrics import boundary_f1_per_image

    empty, full = np.zeros((1, 8, 8)), np.ones((1, 8, 8))
    square = np.zeros((1, 8, 8))
    square[0, 2:6, 2:6] = 1
    assert boundary_f1_per_image(empty, empty)[0] == 1.0 and boundary_f1_per_image(full, full)[0] == 1.0
    assert boundary_f1_per_image(empty, square)[0] == 0.0 and boundary_f1_per_image(square, empty)[0] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        boundary_f1_per_image(np.zeros((1, 8, 8)), np.zeros((1, 9, 9)))
