"""Metrics on binary masks: IoU, Dice, pixel accuracy, and the TGS Salt competition's score.

All take batched binary masks, numpy arrays or tensors, shaped (N, H, W) or (N, 1, H, W)
(a single (H, W) mask is treated as a batch of one). Anything non-zero counts as salt.
"""

from __future__ import annotations

import numpy as np
import torch

# The competition's IoU thresholds: 0.5, 0.55, ..., 0.95.
TGS_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


def _as_bool_batch(masks) -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim == 4:
        if masks.shape[1] != 1:
            raise ValueError(f"expected one mask per image, got shape {masks.shape}")
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"expected masks shaped (N, H, W) or (N, 1, H, W), got {masks.shape}")
    return masks.astype(bool)


def _counts(pred, true) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    p, t = _as_bool_batch(pred), _as_bool_batch(true)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and truth {t.shape} differ in shape")
    inter = (p & t).reshape(len(p), -1).sum(1)
    union = (p | t).reshape(len(p), -1).sum(1)
    return inter, union, p.reshape(len(p), -1).sum(1), t.reshape(len(t), -1).sum(1)


def iou_per_image(pred, true) -> np.ndarray:
    """Intersection over union of each image, (N,); 1.0 when both masks are empty."""
    inter, union, _, _ = _counts(pred, true)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def iou(pred, true) -> float:
    """Mean IoU over images (empty-with-empty counts as 1)."""
    return float(iou_per_image(pred, true).mean())


def dice_per_image(pred, true) -> np.ndarray:
    """Dice, 2|P&T| / (|P| + |T|), of each image, (N,); 1.0 when both masks are empty."""
    inter, _, p_sum, t_sum = _counts(pred, true)
    total = p_sum + t_sum
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


def dice(pred, true) -> float:
    """Mean Dice over images (empty-with-empty counts as 1)."""
    return float(dice_per_image(pred, true).mean())


def pixel_accuracy(pred, true) -> float:
    """Share of pixels where prediction and truth agree."""
    p, t = _as_bool_batch(pred), _as_bool_batch(true)
    return float((p == t).mean())


def tgs_score_per_image(pred, true) -> np.ndarray:
    """The competition's score of each image, (N,).

    With the whole mask as one object, at each threshold t the prediction is a true positive
    (precision TP / (TP + FP + FN) = 1) when IoU > t, else one false positive and one false
    negative (0). An empty truth with an empty prediction scores 1; either empty alone scores 0.
    """
    inter, union, p_sum, t_sum = _counts(pred, true)
    ious = np.where(union == 0, 0.0, inter / np.maximum(union, 1))
    scores = (ious[:, None] > TGS_THRESHOLDS[None, :]).mean(axis=1)
    both_empty = (p_sum == 0) & (t_sum == 0)
    return np.where(both_empty, 1.0, scores)


def tgs_score(pred_masks, true_masks) -> float:
    """Mean over images of the competition's score (mean precision over IoU thresholds 0.5..0.95)."""
    return float(tgs_score_per_image(pred_masks, true_masks).mean())


def boundary_f1_per_image(pred, true, tolerance: int = 1) -> np.ndarray:
    """Boundary F1 of each mask (Csurka et al., 2013): how well the predicted outline lies on the true one.

    A mask's boundary is its salt pixels that touch sediment (4-neighbours; the tile's edge is not a
    boundary). Precision: the share of predicted boundary pixels within ``tolerance`` pixels (in x and
    y) of a true boundary pixel; recall: the same the other way round; F1 their harmonic mean. Two
    masks without a boundary (both empty, or both full) score 1, one without the other 0. The
    tgs_score barely notices an outline shifted by a pixel or two on a large salt body (its IoU hardly
    moves); the boundary F1 with ``tolerance=0`` or 1 does.
    """
    from scipy import ndimage

    pred, true = _as_bool_batch(pred), _as_bool_batch(true)
    if pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and truth {true.shape} differ in shape")
    reach = np.ones((2 * tolerance + 1, 2 * tolerance + 1), bool)
    cross = ndimage.generate_binary_structure(2, 1)
    scores = np.empty(len(pred))
    for k, (p, t) in enumerate(zip(pred, true)):
        edge_p = p & ~ndimage.binary_erosion(p, cross, border_value=1)
        edge_t = t & ~ndimage.binary_erosion(t, cross, border_value=1)
        if not edge_p.any() or not edge_t.any():
            scores[k] = float(edge_p.any() == edge_t.any())
            continue
        precision = (edge_p & ndimage.binary_dilation(edge_t, reach)).sum() / edge_p.sum()
        recall = (edge_t & ndimage.binary_dilation(edge_p, reach)).sum() / edge_t.sum()
        scores[k] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return scores
