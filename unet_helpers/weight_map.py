"""The paper's pixel-wise loss weight map (Section 3, equation 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

w_c balances the class frequencies; d1 and d2 are the distances from pixel x to the
border of the nearest and the second-nearest cell. The second term is large only in
the thin background gaps between two touching cells, which forces the network to
learn those separation lines. The paper uses w0 = 10 and sigma ~ 5 pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """w_c(x): each class weighted by the inverse of its pixel share, (H, W) float.

    With background share p, background pixels get 0.5/p and foreground pixels
    0.5/(1-p), so both classes add up to the same total weight.
    """
    foreground = mask > 0
    share = foreground.mean()
    if share in (0.0, 1.0):
        return np.ones(mask.shape, dtype=np.float64)
    return np.where(foreground, 0.5 / share, 0.5 / (1.0 - share))


def unet_weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The paper's weight map for a (H, W) integer image of cell instances (0 = background).

    Returns (H, W) float weights. With fewer than two cells there are no borders
    between cells, and the map is just the class-balance term.
    """
    if instances.ndim != 2:
        raise ValueError(f"instances must be a 2-D label image (H, W), got shape {instances.shape}")
    weights = class_balance_weights(instances > 0)
    labels = [k for k in np.unique(instances) if k != 0]
    if len(labels) < 2:
        return weights
    # Distance of every pixel to each cell (0 inside the cell), stacked as (cells, H, W).
    distances = np.stack([ndimage.distance_transform_edt(instances != k) for k in labels])
    distances.sort(axis=0)
    d1, d2 = distances[0], distances[1]
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return weights + np.where(instances == 0, border, 0.0)  # only background pixels separate cells


def touching_cells(size: int = 96, n_cells: int = 7, gap: int = 2, seed: int = 0) -> np.ndarray:
    """A small synthetic image of round cells that almost touch, as a (H, W) instance label image.

    Cells grow from random centres until they meet their neighbours, leaving gaps
    of about ``gap`` pixels, like the HeLa cells of the paper's Figure 3.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15 * size, 0.85 * size, size=(n_cells, 2))
    yy, xx = np.mgrid[:size, :size]
    dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])  # (cells, H, W)
    nearest = dist.argmin(axis=0)
    order = np.sort(dist, axis=0)
    radius = 0.22 * size
    # A pixel belongs to its nearest centre, unless it is near the bisector with another
    # centre (the gap between touching cells) or too far from any centre.
    inside = (order[1] - order[0] > gap) & (order[0] < radius)
    return np.where(inside, nearest + 1, 0).astype(np.int32)
