"""Figures the notebooks draw more than once: the architecture, image grids, curves, predictions."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from .models import feature_map_sides


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _as_2d(x) -> np.ndarray:
    """An (H, W) array from (H, W), (1, H, W) or (C, H, W) (first channel) images."""
    x = _to_numpy(x).squeeze()
    return x[0] if x.ndim == 3 else x


def draw_unet(
    features: Sequence[int] = (64, 128, 256, 512, 1024),
    input_side: int = 572,
    padding: str = "valid",
    ax: plt.Axes | None = None,
    in_channels: int = 1,
    out_channels: int = 2,
) -> plt.Axes:
    """Draw the U as in the paper's Figure 1: one bar per feature map, its height the map's side.

    Above each bar: its channels; below it: its side. Blue arrows are 3x3 convolutions + ReLU,
    red ones 2x2 max-pooling, green ones 2x2 up-convolutions, grey dashed ones copy (and crop),
    cyan the 1x1 output convolution. Sized so every label is readable at a notebook's width.
    """
    levels = len(features)
    sides = dict(feature_map_sides(input_side, levels, padding))
    ax = ax or plt.subplots(figsize=(13, 6.2))[1]
    step, width, gap = 1.0, 0.22, 0.35  # distance between bars, bar width, extra gap before an up-convolution
    scale = 2.2 / input_side  # bar height per pixel of side
    row = lambda level: -2.6 * (level - 1)  # noqa: E731  top of the bars of a level
    label_size, side_size = 10, 8.5

    def bar(x: float, level: int, side: int, channels: int) -> tuple[float, float]:
        top = row(level)
        h = max(side * scale, 0.1)
        ax.add_patch(Rectangle((x, top - h), width, h, facecolor="#c6dbef", edgecolor="black", lw=0.8))
        ax.text(x + width / 2, top + 0.08, str(channels), ha="center", va="bottom", fontsize=label_size)
        ax.text(x + width / 2, top - h - 0.08, str(side), ha="center", va="top", fontsize=side_size, color="dimgrey")
        return x + width, top - h / 2

    def arrow(a, b, color, style="-"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.4, linestyle=style))

    x, skips, last = 0.0, {}, None
    # Contracting path
    for level in range(1, levels + 1):
        name = f"enc{level}" if level < levels else "bottleneck"
        if level > 1:
            arrow(last, (x - 0.02, row(level) - max(sides[f"{name}.conv1"] * scale, 0.1) / 2), "tab:red")
        else:
            last = bar(x, 1, sides["input"], in_channels)
            x += step
        for k in (1, 2):
            if level == 1 or k == 2:
                arrow(last, (x, row(level) - sides[f"{name}.conv{k}"] * scale / 2), "tab:blue")
            last = bar(x, level, sides[f"{name}.conv{k}"], features[level - 1])
            x += step
        skips[level] = last
        last = (last[0], row(level) - max(sides[f"{name}.conv2"] * scale, 0.1))  # the bar's lower right corner
    # Expansive path
    for level in range(levels - 1, 0, -1):
        x += gap
        up_y = row(level) - sides[f"up{level}"] * scale / 2
        arrow(last, (x, up_y), "tab:green")
        arrow(skips[level], (x, up_y), "grey", "--")
        last = bar(x, level, sides[f"up{level}"], 2 * features[level - 1])
        x += step
        for k in (1, 2):
            arrow(last, (x, row(level) - sides[f"dec{level}.conv{k}"] * scale / 2), "tab:blue")
            last = bar(x, level, sides[f"dec{level}.conv{k}"], features[level - 1])
            x += step
    arrow(last, (x, last[1]), "tab:cyan")
    bar(x, 1, sides["output"], out_channels)
    ax.set_xlim(-0.6, x + 0.8)
    ax.set_ylim(row(levels) - 1.0, 0.6)
    ax.set_axis_off()
    legend = [
        ("3x3 conv, ReLU", "tab:blue", "-"),
        ("copy" + (" and crop" if padding == "valid" else ""), "grey", "--"),
        ("2x2 max pool", "tab:red", "-"),
        ("2x2 up-conv", "tab:green", "-"),
        ("1x1 conv", "tab:cyan", "-"),
    ]
    for i, (label, color, style) in enumerate(legend):
        y = row(levels) - 0.3 + 0.42 * (len(legend) - 1 - i)
        arrow((x - 2.6, y), (x - 1.9, y), color, style)
        ax.text(x - 1.75, y, label, color="black", fontsize=label_size, va="center")
    ax.text(
        -0.5,
        row(levels) - 0.8,
        "above a bar: its channels; below it (grey): the side of the map in pixels",
        fontsize=side_size,
        va="center",
    )
    ax.set_title(f"U-Net, {levels} levels, {padding} padding, {input_side}x{input_side} input", fontsize=12)
    return ax


def display_range(image) -> tuple[float, float]:
    """The grey values that black and white stand for: the whole 0..255 of an 8-bit tile, so that tiles
    (and a tile and its overlay) are drawn with one scale; 0..1 for floats within it; else the tile's own range."""
    img = _as_2d(image)
    if np.issubdtype(img.dtype, np.integer):
        return 0.0, float(np.iinfo(img.dtype).max)
    if img.size and img.min() >= 0 and img.max() <= 1:
        return 0.0, 1.0
    return float(img.min()), float(img.max()) if img.max() > img.min() else float(img.min()) + 1.0


def overlay(image, mask, color=(1.0, 0.2, 0.2), alpha: float = 0.4, value_range=None) -> np.ndarray:
    """An RGB picture of a grey (H, W) image with a binary mask tinted on top.

    The grey values are drawn on ``value_range`` (default ``display_range(image)``), the scale ``show_tiles``
    draws the image itself with, so the overlay has the image's contrast.
    """
    img = _as_2d(image).astype(np.float32)
    low, high = value_range or display_range(image)
    img = np.clip((img - low) / (high - low), 0, 1)
    rgb = np.repeat(img[..., None], 3, axis=2)
    m = _as_2d(mask).astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color)
    return rgb


def show_tiles(
    images,
    masks,
    titles: Sequence[str] | None = None,
    predictions=None,
    size: float = 1.6,
    suptitle: str | None = None,
) -> plt.Figure:
    """A grid with one column per tile: image, true mask, overlay (and prediction, if given).

    Each image and its overlay are drawn on one grey scale (``display_range``: 0..255 for 8-bit tiles).
    """
    rows = [("image", images, "gray"), ("mask", masks, "gray")]
    if predictions is not None:
        rows.append(("prediction", predictions, "gray"))
    n = len(images)
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(size * n, size * (len(rows) + 1)), squeeze=False)
    for r, (label, items, cmap) in enumerate(rows):
        for c in range(n):
            low, high = display_range(items[c]) if label == "image" else (0, 1)
            axes[r, c].imshow(_as_2d(items[c]), cmap=cmap, vmin=low, vmax=high)
        axes[r, 0].set_ylabel(label, fontsize=8)
    last = predictions if predictions is not None else masks
    for c in range(n):
        axes[-1, c].imshow(overlay(images[c], last[c], value_range=display_range(images[c])))
        if titles is not None:
            axes[0, c].set_title(titles[c], fontsize=7)
    axes[-1, 0].set_ylabel("overlay", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(histories: dict[str, dict] | dict, metric: str = "val_tgs") -> plt.Figure:
    """Loss curves (solid: train, dashed: validation) and a validation metric, one colour per run.

    ``histories`` is one history from ``engine.train`` or a {name: history} dict of several.
    """
    if "epoch" in histories:
        histories = {"run": histories}
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3))
    for k, (name, h) in enumerate(histories.items()):
        color = f"C{k}"
        ax_loss.plot(h["epoch"], h["train_loss"], color=color, label=f"{name} train")
        ax_loss.plot(h["epoch"], h["val_loss"], color=color, linestyle="--", label=f"{name} val")
        ax_metric.plot(h["epoch"], h[metric], color=color, marker="o", markersize=3, label=name)
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("loss"), ax_loss.legend(fontsize=6)
    ax_metric.set_xlabel("epoch"), ax_metric.set_ylabel(metric), ax_metric.legend(fontsize=7)
    fig.tight_layout()
    return fig
