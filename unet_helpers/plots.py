"""Figures the notebooks draw more than once: the architecture, image grids, curves, predictions."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from .models import feature_map_sides

# One style for every figure of the series. At 100 dpi a figure up to NOTEBOOK_WIDTH inches wide is shown at its
# own size in JupyterLab and Colab (900 px), so text set at 9-10 pt is read at 9-10 pt, not shrunk to fit.
SERIES_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}
NOTEBOOK_WIDTH = 9.0  # inches


def salt_label(coverage: float) -> str:
    """A tile's salt coverage for a title, never rounded to "0%" when there is salt or to "100%" when it is not all salt."""
    if coverage in (0, 1):
        return f"{coverage:.0%} salt"
    percent = 100 * coverage
    if percent < 1 or percent > 99:
        digits = 1 if 0.1 <= percent <= 99.9 else 2
        step = 10.0**-digits  # the last digit shown: kept off 0 and off 100
        return f"{min(max(percent, step), 100 - step):.{digits}f}% salt"
    return f"{percent:.0f}% salt"


def use_series_style() -> None:
    """Set the series' figure style (100 dpi, text of 9 pt and more); every notebook's config cell calls it."""
    plt.rcParams.update(SERIES_STYLE)


def draw_recursion(features: Sequence[int] = (64, 128, 256, 512, 1024), ax: plt.Axes | None = None) -> plt.Axes:
    """Draw a U-Net as the recursion it is: each box is a U-Net that holds a smaller one, down to the bottleneck.

    Each box's top row reads left to right: its encoder block (two 3x3 convolutions) and a 2x2 max-pool
    into the smaller U-Net inside it; the skip (dashed) crosses to the right, where the up-convolution's
    output is concatenated with it and the decoder block runs.
    """
    levels = len(features)
    ax = ax or plt.subplots(figsize=(NOTEBOOK_WIDTH, 0.8 * levels + 0.5))[1]
    for level, channels in enumerate(features):
        left, right, top, bottom = 0.7 * level, 10 - 0.7 * level, levels - level, -0.3 * (levels - 1 - level)
        depth = levels - 1 - level
        color = f"C{level}" if depth else "black"
        ax.add_patch(
            Rectangle(
                (left, bottom),
                right - left,
                top - bottom,
                facecolor="#f0f0f0" if depth == 0 else "none",
                edgecolor=color,
                lw=1.6,
            )
        )
        if depth == 0:
            ax.text(
                5,
                (top + bottom) / 2,
                f"depth 0, the bottleneck: encode {channels}",
                ha="center",
                va="center",
                fontsize=9,
            )
            continue
        row = top - 0.45
        ax.text(left + 0.1, row, f"depth {depth}: encode {channels}", color=color, fontsize=9, va="center")
        ax.text(left + 0.1, row - 0.32, "pool, into the box inside", color=color, fontsize=9, va="center")
        ax.text(right - 0.1, row - 0.32, "(from the box inside)", color=color, fontsize=9, va="center", ha="right")
        ax.text(
            right - 0.1, row, f"up-conv, concat, decode {channels}", color=color, fontsize=9, va="center", ha="right"
        )
        ax.annotate(
            "", (right - 2.9, row), (left + 2.1, row), arrowprops=dict(arrowstyle="->", linestyle="--", color="grey")
        )
    ax.set_xlim(-0.1, 10.1)
    ax.set_ylim(-0.3 * (levels - 1) - 0.1, levels + 0.1)
    ax.set_axis_off()
    ax.set_title("a U-Net of depth d holds a U-Net of depth d - 1 (dashed: the skip connection)", fontsize=10)
    return ax


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _as_2d(x) -> np.ndarray:
    """An (H, W) array from (H, W), (1, H, W), (C, H, W) or (H, W, 3) images (the first channel)."""
    x = _to_numpy(x).squeeze()
    if x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] not in (3, 4):  # channels last, as PIL and numpy hold RGB
        return x[..., 0]
    return x[0] if x.ndim == 3 else x


def draw_unet(
    features: Sequence[int] = (64, 128, 256, 512, 1024),
    input_side: int = 572,
    padding: str = "valid",
    ax: plt.Axes | None = None,
    in_channels: int = 1,
    out_channels: int = 2,
    padding_mode: str = "zeros",
) -> plt.Axes:
    """Draw the U as in the paper's Figure 1: one bar per feature map, its height the map's side.

    Above each bar: its channels; under it: its side. Blue arrows are 3x3 convolutions + ReLU,
    red ones 2x2 max-pooling, green ones 2x2 up-convolutions, grey dashed ones copy (and crop),
    cyan the 1x1 output convolution. Sized so every label is readable at a notebook's width.
    """
    levels = len(features)
    sides = dict(feature_map_sides(input_side, levels, padding))
    if ax is None:
        fig = plt.figure(figsize=(NOTEBOOK_WIDTH, 5.2))
        ax = fig.add_axes((0.0, 0.0, 1.0, 0.94))  # the whole width: 23 bars side by side need it
    step, width, gap = 1.0, 0.22, 0.35  # distance between bars, bar width, extra gap before an up-convolution
    scale = 2.2 / input_side  # bar height per pixel of side
    row = lambda level: -2.6 * (level - 1)  # noqa: E731  top of the bars of a level
    label_size, side_size = 9, 9

    labels: dict[int, tuple] = {}  # level -> (its last channel label, that bar's x, channels)

    def bar(x: float, level: int, side: int, channels: int, side_at: str = "center") -> tuple[float, float]:
        """One feature map. Its side is written below it, or below and to its "left" or "right" where an arrow
        leaves downwards to the right (a pooling) or arrives from below on the left (an up-convolution)."""
        top = row(level)
        h = max(side * scale, 0.1)
        ax.add_patch(Rectangle((x, top - h), width, h, facecolor="#c6dbef", edgecolor="black", lw=0.8))
        previous = labels.get(level)
        if previous and previous[2] == channels and abs(previous[1] + step - x) < 1e-6:
            # two neighbouring maps with the same channels: one label centred over both keeps wide numbers apart
            previous[0].set_x((previous[1] + x + width) / 2)
        else:
            text = ax.text(x + width / 2, top + 0.08, str(channels), ha="center", va="bottom", fontsize=label_size)
            labels[level] = (text, x, channels)
        # the side written upwards, as in the paper's figure: narrow enough to stay clear of the diagonal arrows
        anchor = {
            "center": (x + width / 2, top - h - 0.06),
            "left": (x - 0.04, top - h),
            "right": (x + width + 0.04, top - h),
        }
        ha = {"center": "center", "left": "right", "right": "left"}[side_at]
        ax.text(*anchor[side_at], str(side), ha=ha, va="top", rotation=90, fontsize=side_size, color="dimgrey")
        return x + width, top - h / 2

    def arrow(a, b, color, style="-"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.4, linestyle=style))

    x, skips, last = 0.0, {}, None
    # Contracting path: two 3x3 convolutions per level; from level 2 on, they read the pooled map of the level above
    for level in range(1, levels + 1):
        name = f"enc{level}" if level < levels else "bottleneck"
        if level == 1:
            last = bar(x, 1, sides["input"], in_channels)
        else:
            pooled = sides[f"pool{level - 1}"]
            arrow(last, (x - 0.02, row(level) - max(pooled * scale, 0.1) / 2), "tab:red")
            last = bar(x, level, pooled, features[level - 2], "right")
            labels[level][0].set(x=x, ha="left")  # its channels right of the pooling's arrowhead, not under it
        x += step
        for k in (1, 2):
            arrow(last, (x, row(level) - sides[f"{name}.conv{k}"] * scale / 2), "tab:blue")
            last = bar(x, level, sides[f"{name}.conv{k}"], features[level - 1], "left" if k == 2 else "center")
            x += step
        skips[level] = last
    # Expansive path
    for level in range(levels - 1, 0, -1):
        x += gap
        up_y = row(level) - sides[f"up{level}"] * scale / 2
        arrow(last, (x, up_y), "tab:green")
        arrow(skips[level], (x, up_y), "grey", "--")
        last = bar(x, level, sides[f"up{level}"], 2 * features[level - 1], "right")
        x += step
        for k in (1, 2):
            arrow(last, (x, row(level) - sides[f"dec{level}.conv{k}"] * scale / 2), "tab:blue")
            last = bar(x, level, sides[f"dec{level}.conv{k}"], features[level - 1], "left" if k == 2 else "center")
            x += step
    arrow(last, (x, last[1]), "tab:cyan")
    bar(x, 1, sides["output"], out_channels)
    ax.set_xlim(-0.6, x + 0.8)
    ax.set_ylim(row(levels) - 1.7, 0.6)
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
        arrow((x - 3.7, y), (x - 3.0, y), color, style)
        ax.text(x - 2.85, y, label, color="black", fontsize=label_size, va="center")
    ax.text(
        0.0,
        row(levels) - 1.15,
        "above a bar (or a pair of bars): its channels; under it (grey, written upwards): the side of the map in pixels",
        fontsize=side_size,
        va="center",
    )
    below = lambda level: sides[f"dec{level + 1}.conv2" if level + 1 < levels else "bottleneck.conv2"]  # noqa: E731
    cut = [level for level in range(levels - 1, 0, -1) if sides[f"up{level}"] < 2 * below(level)]
    if cut:  # same padding on odd sides: say what the drawing cannot show
        b, up = below(cut[0]), sides[f"up{cut[0]}"]
        ax.text(
            0.0,
            row(levels) - 1.5,
            f"an up-convolution doubles the side; where the skip's side is odd, the up-convolution's last row and "
            "column are cut "
            f"({b} -> {2 * b} -> {up})",
            fontsize=side_size,
            va="center",
        )
    kind = padding if padding == "valid" else f"{padding} ({padding_mode})"
    ax.set_title(f"U-Net, {levels} levels, {kind} padding, {input_side}x{input_side} input", fontsize=12)
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
    """An RGB picture of a grey (H, W) image with a mask tinted on top (a probability map is cut at 0.5).

    The grey values are drawn on ``value_range`` (default ``display_range(image)``), the scale ``show_tiles``
    draws the image itself with, so the overlay has the image's contrast.
    """
    img = _as_2d(image).astype(np.float32)
    low, high = value_range or display_range(image)
    img = np.clip((img - low) / (high - low), 0, 1)
    rgb = np.repeat(img[..., None], 3, axis=2)
    m = _as_2d(mask) > 0.5  # 0/1, boolean or 0/255 masks; probabilities: where salt is more likely than not
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
    """A grid with one column per tile: image, true mask, (prediction, if given,) and an overlay.

    The overlay tints the true mask in red on the image; with predictions it tints the prediction instead and
    draws the true mask's outline over it in yellow, so that a miss shows where the salt was. Each image and its
    overlay are drawn on one grey scale (``display_range``: 0..255 for 8-bit tiles).
    """
    rows = [("image", images, True), ("true mask\n(white: salt)", masks, False)]  # True: a seismic image
    if predictions is not None:
        rows.append(("prediction\n(white: salt)", predictions, False))
    n = len(images)
    size = min(size, NOTEBOOK_WIDTH / n)  # never wider than a notebook cell: the text stays at its size
    # "compressed": the square tiles packed together, with no band of white space above or below the grid
    fig, axes = plt.subplots(
        len(rows) + 1, n, figsize=(size * n, size * (len(rows) + 1) + 0.3), squeeze=False, layout="compressed"
    )
    for r, (label, items, is_image) in enumerate(rows):
        for c in range(n):
            low, high = display_range(items[c]) if is_image else (0, 1)
            axes[r, c].imshow(_as_2d(items[c]), cmap="gray", vmin=low, vmax=high)
        axes[r, 0].set_ylabel(label, fontsize=9)
    last = predictions if predictions is not None else masks
    for c in range(n):
        axes[-1, c].imshow(overlay(images[c], last[c], value_range=display_range(images[c])))
        if predictions is not None:  # the truth's outline; padded with sediment so that a full tile has one too
            truth = np.pad(_as_2d(masks[c]).astype(float), 1)
            columns, rows = np.arange(-1, truth.shape[1] - 1), np.arange(-1, truth.shape[0] - 1)  # x, then y
            axes[-1, c].contour(columns, rows, truth, levels=[0.5], colors=["yellow"], linewidths=1.2)
            axes[-1, c].set_xlim(-0.5, truth.shape[1] - 2.5), axes[-1, c].set_ylim(truth.shape[0] - 2.5, -0.5)
        if titles is not None:
            axes[0, c].set_title(titles[c], fontsize=9)
    overlay_label = (
        "prediction (red),\ntruth (yellow line)" if predictions is not None else "true mask (red)\nover the image"
    )
    axes[-1, 0].set_ylabel(overlay_label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_history(
    histories: dict[str, dict] | dict, metric: str = "val_tgs", finetune_from: dict[str, int] | None = None
) -> plt.Figure:
    """Loss curves (solid: train, dashed: validation) and a validation metric, one colour per run.

    ``histories`` is one history from ``engine.train`` or a {name: history} dict of several.
    ``finetune_from`` gives, per run, the first epoch of a fine-tune stage with another loss: its losses
    are drawn apart from the main stage's, thick and on their own scale (the right axis of the loss panel), with
    hollow dots for validation, and a dash-dot line marks where it starts.
    """
    if "epoch" in histories:
        histories = {"run": histories}
    finetune_from = finetune_from or {}
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(NOTEBOOK_WIDTH, 3.8))
    # The fine-tune's loss is another loss (Lovasz, about 0.8 where BCE + Dice ends near 0.4): its own axis.
    ax_finetune = ax_loss.twinx() if finetune_from else None
    for k, (name, h) in enumerate(histories.items()):
        color, epochs = f"C{k}", np.asarray(h["epoch"])
        train_loss, val_loss = np.asarray(h["train_loss"]), np.asarray(h["val_loss"])
        start = finetune_from.get(name, epochs.max() + 1)
        main, finetune = epochs < start, epochs >= start
        ax_loss.plot(epochs[main], train_loss[main], color=color, lw=1.5)
        ax_loss.plot(epochs[main], val_loss[main], color=color, lw=1.5, linestyle="--")
        if finetune.any():  # thick, with dots: a one-epoch stage still shows
            ax_finetune.plot(epochs[finetune], train_loss[finetune], color=color, lw=2.5, marker="o")
            ax_finetune.plot(
                epochs[finetune], val_loss[finetune], color=color, lw=2.5, ls="--", marker="o", markerfacecolor="white"
            )
        ax_metric.plot(epochs, h[metric], color=color, marker="o", markersize=3, label=name)
        if name in finetune_from:
            for ax in (ax_loss, ax_metric):
                ax.axvline(start - 0.5, color=color, linestyle="-.", lw=1)
    ax_loss.set_xlabel("epoch" + (" (dash-dot: the Lovasz fine-tune starts)" if finetune_from else ""))
    ax_loss.set_ylabel("loss (solid: training, dashed: validation)")
    ax_loss.set_title(
        "training and validation loss" + ("\n(Lovasz stage: thick, right axis)" if finetune_from else ""), fontsize=10
    )
    if ax_finetune is not None:
        ax_finetune.set_ylabel("Lovasz loss (filled: training, hollow: validation)")
    label = {"val_tgs": "validation tgs_score", "val_iou": "validation IoU"}.get(metric, metric)
    ax_metric.set_xlabel("epoch"), ax_metric.set_ylabel(label), ax_metric.legend(fontsize=9)
    ax_metric.set_title(f"{label}\n(one colour per run, in both panels)", fontsize=10)
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    return fig


SEED_MARKERS = ("o", "s", "^")  # seeds 0, 1, 2 of a lever table


def plot_lever_table(
    table: list[dict], rerun_gap: float | None = None, title: str = "", no_rerun_gap: str | None = None
) -> plt.Figure:
    """Each row's difference to the baseline, one dot per seed and a bar at their mean (``levers.summarise``).

    ``rerun_gap``: the gap between two runs of the very same command and seed, drawn as a grey band around zero:
    a difference inside it is no larger than what running the baseline twice gave. Where that gap is not measured
    yet, ``no_rerun_gap`` says so in the legend. A row with a ``note`` (not, or not only, a test of its lever) is
    hatched and starred; a row measured on one seed so far is drawn pale: its bar is that seed's difference.
    """
    rows = [row for row in table if row["name"] != "baseline"]
    fig, ax = plt.subplots(figsize=(NOTEBOOK_WIDTH, 0.38 * len(rows) + 1.6), layout="constrained")
    y = np.arange(len(rows))[::-1]
    handles = []
    if rerun_gap:
        handles.append(Patch(color="0.88", label=f"within +- {rerun_gap:.3f}: what the same seed gave run twice"))
        ax.axvspan(-rerun_gap, rerun_gap, color="0.88")
    elif no_rerun_gap:
        handles.append(Patch(facecolor="white", edgecolor="0.6", label=no_rerun_gap))
    ax.axvline(0, color="0.3", lw=1)
    seeds_drawn: set[int] = set()
    for k, row in zip(y, rows):
        color = "C2" if row["name"].startswith("+") else "C0"
        alpha = 0.45 if len(row["differences"]) > 1 else 0.15  # one seed: no mean, no spread
        ax.barh(k, row["difference"], height=0.5, color=color, alpha=alpha, hatch="//" if row.get("note") else None)
        seed_ids = row.get("difference_seeds", range(len(row["differences"])))  # which seed each difference is
        for seed, difference in zip(seed_ids, row["differences"]):
            ax.plot([difference], [k], SEED_MARKERS[seed % 3], color=color, markersize=5)
            seeds_drawn.add(seed)
    handles += [
        Line2D(
            [],
            [],
            marker=SEED_MARKERS[seed % 3][0],
            color="0.3",
            linestyle="",
            label=f"seed {seed} against its baseline",
        )
        for seed in sorted(seeds_drawn)
    ]
    handles += [  # the colours say the kind of row; a bar of two seeds or more is their mean
        Patch(color="C2", alpha=0.45, label="a lever added (a bar: the mean over its seeds)"),
        Patch(color="C0", alpha=0.45, label="a part of medium-strong taken away"),
    ]
    if any(len(row["differences"]) == 1 for row in rows):
        handles.append(Patch(color="0.5", alpha=0.15, label="pale: one seed so far, its difference (no spread)"))
    if any(row.get("note") for row in rows):
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="0.3",
                hatch="//",
                label="* not (or not only) a test of its lever: see its note",
            )
        )
    ax.set_yticks(y, [row["name"] + (" *" if row.get("note") else "") for row in rows])
    ax.set_xlabel("held-out tgs_score minus the baseline's (left of 0: worse than the baseline)")
    ax.set_title(title or "each row against the baseline", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig
