"""From probabilities to masks: the threshold, and dropping predictions too small to be salt.

The competition's score gives an empty tile 1 only when the prediction is exactly empty, and
39% of the tiles are empty, so a few stray pixels on an empty tile cost a whole tile's score.
Dropping every predicted mask smaller than ``min_area`` pixels trades those false alarms against
the few tiny salt bodies that are then missed. Both numbers are chosen on validation tiles.
"""

from __future__ import annotations

import numpy as np

from .metrics import tgs_score

THRESHOLDS = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2).tolist())
MIN_AREAS = (0, 20, 40, 80, 120, 160, 240, 320)  # pixels of a 101x101 tile (10,201)


def to_masks(probs: np.ndarray, threshold: float = 0.5, min_area: int = 0) -> np.ndarray:
    """(N, H, W) probabilities -> (N, H, W) bool masks; masks with fewer than ``min_area`` pixels become empty."""
    masks = np.asarray(probs) > threshold
    if min_area > 0:
        small = masks.reshape(len(masks), -1).sum(axis=1) < min_area
        masks[small] = False
    return masks


def choose_postprocessing(probs: np.ndarray, truth: np.ndarray, thresholds=THRESHOLDS, min_areas=MIN_AREAS) -> dict:
    """The threshold and minimum area with the best tgs_score on these (validation) tiles.

    Returns ``dict(threshold, min_area, score, grid)`` with ``grid[i][j]`` the score of
    ``thresholds[i]`` and ``min_areas[j]``. Ties go to the threshold nearer 0.5, then to the smaller area.
    """
    grid = np.array([[tgs_score(to_masks(probs, t, a), truth) for a in min_areas] for t in thresholds])
    order = sorted(
        ((-grid[i, j], abs(t - 0.5), a, i, j) for i, t in enumerate(thresholds) for j, a in enumerate(min_areas))
    )
    _, _, _, i, j = order[0]
    return dict(
        threshold=float(thresholds[i]),
        min_area=int(min_areas[j]),
        score=float(grid[i, j]),
        grid=grid.round(4).tolist(),
        thresholds=list(thresholds),
        min_areas=list(min_areas),
    )
