"""The series' figures: one style, readable at notebook width, and titles that do not round the truth away."""

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from unet_helpers.plots import (  # noqa: E402
    NOTEBOOK_WIDTH,
    draw_recursion,
    draw_unet,
    plot_history,
    salt_label,
    show_tiles,
    use_series_style,
)

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("0*.ipynb"))


def test_the_series_style_is_at_least_100_dpi_with_text_of_9_pt():
    use_series_style()
    assert plt.rcParams["figure.dpi"] >= 100 and plt.rcParams["savefig.dpi"] >= 100
    for key in (
        "font.size",
        "axes.titlesize",
        "axes.labelsize",
        "xtick.labelsize",
        "ytick.labelsize",
        "legend.fontsize",
    ):
        assert float(plt.rcParams[key]) >= 9, key


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_uses_the_series_style_and_no_text_below_9_pt(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    config = "".join(cells[2]["source"])
    assert "use_series_style()" in config and "figure.dpi" not in config
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert not re.search(r"fontsize=[1-8](\.\d+)?\b", code)
    widths = [float(w) for w in re.findall(r"figsize=\(([\d.]+)", code)]
    assert all(w <= NOTEBOOK_WIDTH for w in widths), widths  # wider figures are shrunk to fit, and their text with them


def test_figures_of_the_package_fit_a_notebook_cell():
    use_series_style()
    for figure in (
        show_tiles(np.zeros((8, 101, 101), np.uint8), np.zeros((8, 101, 101))),
        draw_unet().figure,
        draw_recursion().figure,
        plot_history(
            {"a": dict(epoch=[1, 2, 3], train_loss=[1, 0.5, 0.9], val_loss=[1, 0.6, 0.8], val_tgs=[0.4, 0.5, 0.6])}
        ),
    ):
        assert figure.get_size_inches()[0] <= NOTEBOOK_WIDTH + 1e-6
        plt.close(figure)


@pytest.mark.parametrize(
    "config",
    [dict(), dict(features=(16, 32, 64, 128), input_side=101, padding="same", in_channels=3, out_channels=1)],
    ids=["paper", "tgs-same"],
)
def test_the_u_draws_every_feature_map_with_its_side_pooled_maps_included(config):
    """One bar per map of feature_map_sides, in order, each labelled with its side: a pooling's arrow must end at
    the pooled map (284 for the paper), not at the convolution after it (282)."""
    from matplotlib.patches import Rectangle

    from unet_helpers.models import feature_map_sides

    ax = draw_unet(**config)
    levels = len(config.get("features", (64, 128, 256, 512, 1024)))
    sides = feature_map_sides(config.get("input_side", 572), levels, config.get("padding", "valid"))
    bars = sorted((r.get_x(), r) for r in ax.patches if isinstance(r, Rectangle))
    side_labels = sorted((t.get_position()[0], t.get_text()) for t in ax.texts if t.get_rotation() == 90)
    assert len(bars) == len(sides) == len(side_labels)
    assert [int(text) for _, text in side_labels] == [side for _, side in sides]
    plt.close(ax.figure)


def test_a_fine_tune_stage_is_marked_and_epochs_are_whole_numbers():
    history = dict(
        epoch=[1, 2, 3, 4],
        train_loss=[0.5, 0.4, 0.9, 0.8],
        val_loss=[0.5, 0.45, 0.85, 0.8],
        val_tgs=[0.4, 0.5, 0.6, 0.65],
    )
    figure = plot_history({"strong": history}, finetune_from={"strong": 3})
    loss_axes, metric_axes, finetune_axes = figure.axes  # the fine-tune's loss on its own scale, the loss panel's twin
    assert [line.get_xdata()[0] for line in loss_axes.lines if line.get_linestyle() == "-."] == [2.5]
    main = [list(line.get_ydata()) for line in loss_axes.lines if line.get_linestyle() != "-."]
    assert main == [[0.5, 0.4], [0.5, 0.45]]  # the main stage's training and validation losses
    finetune = {line.get_markerfacecolor() == "white": list(line.get_ydata()) for line in finetune_axes.lines}
    assert finetune == {False: [0.9, 0.8], True: [0.85, 0.8]}  # hollow dots: validation
    assert finetune_axes.bbox.bounds == loss_axes.bbox.bounds and "Lovasz" in finetune_axes.get_ylabel()
    assert all(float(t).is_integer() for t in loss_axes.get_xticks())
    plt.close(figure)


@pytest.mark.parametrize(
    "coverage, label",
    [
        (0.0, "0% salt"),
        (1.0, "100% salt"),
        (0.0004, "0.04% salt"),
        (0.004, "0.4% salt"),
        (0.5, "50% salt"),
        (0.996, "99.6% salt"),
        (0.9999, "99.99% salt"),
        (0.99999, "99.99% salt"),  # not "100.00%"
        (0.000001, "0.01% salt"),  # not "0.00%"
    ],
)
def test_salt_labels_never_round_salt_to_0_or_100(coverage, label):
    assert salt_label(coverage) == label


def test_an_overlay_tints_where_the_mask_says_salt_whatever_its_kind():
    from unet_helpers.plots import overlay

    image = np.full((8, 8), 100, np.uint8)
    truth = np.zeros((8, 8), bool)
    truth[:2] = True
    expected = overlay(image, truth, value_range=(0, 255))
    for mask in (truth.astype(np.uint8), truth.astype(np.uint8) * 255, np.where(truth, 0.9, 0.2)):  # 0/1, 0/255, probs
        assert np.array_equal(overlay(image, mask, value_range=(0, 255)), expected)
    rgb = np.repeat(image[..., None], 3, axis=2)  # an image held channels last, as PIL gives it
    assert np.array_equal(overlay(rgb, truth, value_range=(0, 255)), expected)


def test_the_lever_table_draws_every_row_but_the_baseline_with_a_marker_per_seed_and_the_rerun_band():
    from matplotlib.patches import Rectangle

    from unet_helpers.plots import plot_lever_table

    table = [
        dict(name="baseline", difference=0.0, differences=[0.0, 0.0]),
        dict(name="+ a", difference=0.02, differences=[0.01, 0.03], note="not a test"),
        dict(name="- b", difference=-0.05, differences=[-0.08, -0.02]),
    ]
    use_series_style()
    figure = plot_lever_table(table, rerun_gap=0.04)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["+ a *", "- b"]  # a row with a note is starred
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() == 0.5]
    assert sorted(round(b.get_width(), 3) for b in bars) == [-0.05, 0.02]
    assert [b.get_hatch() for b in sorted(bars, key=lambda b: b.get_width())] == [None, "//"]  # and hatched
    seed_0 = sorted(x for line in ax.lines for x in line.get_xdata() if line.get_marker() == "o")
    seed_1 = sorted(x for line in ax.lines for x in line.get_xdata() if line.get_marker() == "s")
    assert seed_0 == pytest.approx([-0.08, 0.01]) and seed_1 == pytest.approx([-0.02, 0.03])
    band = [p for p in ax.patches if p.get_height() != 0.5]
    assert band and band[0].get_x() == pytest.approx(-0.04) and band[0].get_width() == pytest.approx(0.08)
    assert figure.get_size_inches()[0] <= NOTEBOOK_WIDTH + 1e-6
    plt.close(figure)


def test_a_lever_table_measured_in_part_marks_each_difference_with_its_own_seed():
    from unet_helpers.plots import plot_lever_table

    table = [  # seed 0 of "+ a" is still to come: its one difference is seed 1's
        dict(name="baseline", difference=0.0, differences=[0.0], difference_seeds=[1]),
        dict(name="+ a", difference=0.02, differences=[0.02], difference_seeds=[1]),
    ]
    use_series_style()
    ax = plot_lever_table(table).axes[0]
    assert [line.get_marker() for line in ax.lines if line.get_xdata()[0] == 0.02] == ["s"]  # seed 1's square
    legend = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert "seed 1 against its baseline" in legend and "seed 0 against its baseline" not in legend
    assert [b.get_alpha() for b in ax.patches if b.get_height() == 0.5] == [0.15]  # pale: one seed, no spread
    assert "pale: one seed so far, its difference (no spread)" in legend
    plt.close(ax.figure)
    ax = plot_lever_table(table, no_rerun_gap="no rerun yet").axes[0]  # the band's place says it is not measured
    assert "no rerun yet" in [t.get_text() for t in ax.figure.legends[0].get_texts()]
    plt.close(ax.figure)


def test_with_predictions_the_overlay_draws_the_truths_outline_even_of_a_full_tile():
    truth = np.zeros((2, 101, 101), np.uint8)
    truth[0, :, 60:] = 1  # a band on the right
    truth[1] = 1  # all salt: the outline is the tile's border
    figure = show_tiles(np.zeros((2, 101, 101), np.uint8), truth, predictions=np.zeros_like(truth))
    overlays = figure.axes[-2:]  # the last row, one axis per tile
    for ax, column in zip(overlays, (60, 0)):
        lines = np.concatenate([path.vertices for c in ax.collections for path in c.get_paths()])
        assert lines[:, 0].min() == pytest.approx(column - 0.5, abs=0.51)  # the outline's left edge
    assert "truth" in figure.axes[-2].get_ylabel()
    labels = [figure.axes[2 * row].get_ylabel() for row in (1, 2)]  # the first tile's axis of each row
    assert labels == ["true mask\n(white: salt)", "prediction\n(white: salt)"]  # which colour is salt
    plt.close(figure)


def test_the_truths_outline_follows_the_tile_on_a_wide_image():
    truth = np.zeros((1, 40, 101), np.uint8)
    truth[0, :, 60:] = 1  # a band on the right of a wide image: its outline must run down column 59.5, not 39.5
    figure = show_tiles(np.zeros((1, 40, 101), np.uint8), truth, predictions=np.zeros_like(truth))
    lines = np.concatenate([path.vertices for c in figure.axes[-1].collections for path in c.get_paths()])
    assert lines[:, 0].min() == pytest.approx(59.5, abs=0.51) and lines[:, 1].max() <= 40
    plt.close(figure)
