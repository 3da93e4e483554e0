"""Nothing silently wrong: every image mode, every broken data folder, every option doing what it says.

Each test hands the project a file or an option as a user would, and checks that the result is
either right or refused with one clear message (naming the file, id or option) and exit status 2,
with nothing in the user's folders changed.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_helpers import predict as predict_cli
from unet_helpers import train as train_cli
from unet_helpers.data import TGSDataError, load_tgs_split, make_synthetic_tgs
from unet_helpers.data import __main__ as data_cli
from unet_helpers.data.images import read_binary_mask, read_grey
from unet_helpers.plots import display_range, overlay, show_tiles
from unet_helpers.pretrained import show_examples

TINY = [
    "--recipe",
    "small-same",
    "--features",
    "4,8",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--limit-train",
    "32",
    "--limit-val",
    "16",
    "--no-progress",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_synthetic_tgs(tmp_path_factory.mktemp("tgs"), n_train=60, n_test=4, seed=3)


@pytest.fixture(scope="module")
def grey_tile(tiny_root) -> np.ndarray:
    """One stand-in tile as 8-bit grey values, spanning a wide range of them."""
    path = max((tiny_root / "train/images").glob("*.png"), key=lambda p: np.ptp(np.asarray(Image.open(p))))
    return np.asarray(Image.open(path).convert("L"))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------
# 1. Every image mode PIL opens: the 8-bit grey values, scaled, or a refusal naming the file and mode
# ---------------------------------------------------------------------------

# (name, how to make it from the 8-bit "L" tile, file format). Each must read back as the L tile itself.
LOSSLESS = [
    ("L", lambda L, a: L, "PNG"),
    ("LA", lambda L, a: L.convert("LA"), "PNG"),
    ("P", lambda L, a: L.convert("P"), "PNG"),
    ("RGB", lambda L, a: L.convert("RGB"), "PNG"),
    ("RGBA", lambda L, a: L.convert("RGBA"), "PNG"),
    ("CMYK", lambda L, a: L.convert("CMYK"), "TIFF"),
    ("I;16, full 16-bit range (x 257)", lambda L, a: Image.fromarray(a.astype(np.uint16) * 257), "PNG"),
    ("I;16, 8-bit values", lambda L, a: L.convert("I;16"), "PNG"),
    ("I;16B, full range", lambda L, a: Image.frombytes("I;16B", L.size, (a.astype(">u2") * 257).tobytes()), "TIFF"),
    ("I;16L, full range", lambda L, a: Image.frombytes("I;16L", L.size, (a.astype("<u2") * 257).tobytes()), "TIFF"),
    ("I, 8-bit values", lambda L, a: L.convert("I"), "TIFF"),
    ("I, 16-bit values", lambda L, a: Image.fromarray(a.astype(np.int32) * 257), "TIFF"),
    ("F, 0..255", lambda L, a: L.convert("F"), "TIFF"),
    ("F, fractions 0..1", lambda L, a: Image.fromarray(a.astype(np.float32) / 255), "TIFF"),
]


@pytest.mark.parametrize("name, make, fmt", LOSSLESS, ids=[case[0] for case in LOSSLESS])
def test_every_lossless_mode_reads_as_the_8_bit_tile_it_holds(grey_tile, tmp_path, name, make, fmt):
    path = tmp_path / f"tile.{fmt.lower()}"
    make(Image.fromarray(grey_tile), grey_tile).save(path, format=fmt)
    values = read_grey(path)
    assert values.dtype == np.uint8 and values.shape == grey_tile.shape
    np.testing.assert_array_equal(values, grey_tile)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_colour_spaces_read_back_within_one_grey_level(grey_tile, tmp_path, mode):
    path = tmp_path / "tile.tiff"
    Image.fromarray(grey_tile).convert("RGB").convert(mode).save(path)
    assert Image.open(path).mode == mode
    assert np.abs(read_grey(path).astype(int) - grey_tile).max() <= 1  # the colour conversion rounds


def test_mode_1_reads_as_0_and_255(grey_tile, tmp_path):
    path = tmp_path / "bits.png"
    Image.fromarray(grey_tile > 128).save(path)
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(read_grey(path), np.where(grey_tile > 128, 255, 0))


@pytest.mark.parametrize("colour", ["L", "RGB"])
def test_a_jpeg_reads_as_its_tile_up_to_jpeg_loss(grey_tile, tmp_path, colour):
    path = tmp_path / "tile.jpg"
    Image.fromarray(grey_tile).convert(colour).save(path, quality=95)
    assert Image.open(path).mode == colour
    difference = np.abs(read_grey(path).astype(int) - grey_tile)
    assert difference.mean() < 3 and difference.max() < 20


def test_a_colour_image_is_read_as_its_luma_not_its_red_channel(tmp_path):
    rgb = np.zeros((101, 101, 3), np.uint8)
    rgb[..., 1] = 200  # pure green: luma 0.587 * 200 = 117; its red channel is 0
    Image.fromarray(rgb).save(tmp_path / "green.png")
    assert read_grey(tmp_path / "green.png").mean() == pytest.approx(117, abs=1)


REFUSED = [
    (
        "transparent pixels",
        lambda a: Image.fromarray(np.dstack([a, a, a, np.full_like(a, 100)])),
        "png",
        "mode RGBA",
    ),
    ("negative floats", lambda a: Image.fromarray(a.astype(np.float32) - 300), "tiff", "mode F"),
    ("floats beyond 16 bits", lambda a: Image.fromarray(a.astype(np.float32) * 1e4), "tiff", "mode F"),
    ("32-bit integers beyond 16 bits", lambda a: Image.fromarray(a.astype(np.int32) * 100_000), "tiff", "mode I"),
]


@pytest.mark.parametrize("why, make, suffix, mode", REFUSED, ids=[case[0] for case in REFUSED])
def test_modes_without_a_grey_value_are_refused_naming_the_file_and_mode(grey_tile, tmp_path, why, make, suffix, mode):
    path = tmp_path / f"odd.{suffix}"
    make(grey_tile).save(path)
    with pytest.raises(TGSDataError, match=rf"odd\.{suffix}: image {mode}"):
        read_grey(path)


def test_a_file_with_several_frames_is_refused(grey_tile, tmp_path):
    path = tmp_path / "stack.tiff"
    Image.fromarray(grey_tile).save(path, save_all=True, append_images=[Image.fromarray(255 - grey_tile)])
    with pytest.raises(TGSDataError, match="stack.tiff: image mode L holds 2 frames"):
        read_grey(path)


def test_a_sixteen_bit_copy_is_predicted_like_its_8_bit_original(grey_tile, tiny_root, tmp_path, capsys):
    """The user's report: a 16-bit copy of a tile gave an empty mask, silently. Now the masks are equal."""
    eight, sixteen = tmp_path / "eight", tmp_path / "sixteen"
    eight.mkdir(), sixteen.mkdir()
    for k, path in enumerate(sorted((tiny_root / "train/images").glob("*.png"))[:6]):
        tile = np.asarray(Image.open(path).convert("L"))
        Image.fromarray(tile).save(eight / f"t{k}.png")
        Image.fromarray(tile.astype(np.uint16) * 257).save(sixteen / f"t{k}.png")
    assert Image.open(sixteen / "t0.png").mode == "I;16"
    masks = {}
    for folder in (eight, sixteen):
        out = tmp_path / f"{folder.name}-masks"
        argv = [
            "--pretrained",
            "small-same",
            "--images",
            str(folder),
            "--out",
            str(out),
            "--threshold",
            "0.1",
            "--min-area",
            "0",
        ]
        assert predict_cli.main(argv) == 0
        masks[folder.name] = np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])
    assert 0 < (masks["eight"] > 0).mean() < 1  # a mask with salt and sediment, not a trivial one
    np.testing.assert_array_equal(masks["eight"], masks["sixteen"])


def test_the_predictor_reports_every_unusable_image_at_once_and_writes_nothing(grey_tile, tmp_path, capsys):
    images, out = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    Image.fromarray(grey_tile).save(images / "good.png")
    Image.fromarray(np.dstack([grey_tile] * 3 + [np.zeros_like(grey_tile)])).save(images / "clear.png")
    (images / "broken.png").write_bytes(b"not a png")
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of the 3 images cannot be used" in err and "clear.png: image mode RGBA" in err and "broken.png" in err
    assert not out.exists()


def test_training_tiles_in_16_bit_are_read_like_the_8_bit_ones(tiny_root, tmp_path):
    copy = tmp_path / "sixteen"
    shutil.copytree(tiny_root, copy)
    for path in (copy / "train/images").glob("*.png"):
        tile = np.asarray(Image.open(path).convert("L"))
        Image.fromarray(tile.astype(np.uint16) * 257).save(path)
    original, sixteen = load_tgs_split(tiny_root), load_tgs_split(copy)
    np.testing.assert_array_equal(original.images, sixteen.images)
    np.testing.assert_array_equal(original.masks, sixteen.masks)


def test_masks_must_hold_0_and_their_modes_full_value_exactly(tmp_path):
    for name, array, ok in (
        ("kaggle", np.where(np.eye(101, dtype=bool), 65535, 0).astype(np.uint16), True),
        ("almost", np.where(np.eye(101, dtype=bool), 65534, 0).astype(np.uint16), False),  # not rounded up
        ("bits", np.eye(101, dtype=bool), True),
        ("grey", np.where(np.eye(101, dtype=bool), 255, 0).astype(np.uint8), True),
    ):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        if ok:
            assert read_binary_mask(tmp_path / f"{name}.png").sum() == 101, name
        else:
            with pytest.raises(
                TGSDataError, match=rf"{name}.png: a mask must hold only 0 and 65535, found values \[0, 65534\]"
            ):
                read_binary_mask(tmp_path / f"{name}.png")


# ---------------------------------------------------------------------------
# 2. Bad data with two CPU processes: one message, status 2, no traceback
# ---------------------------------------------------------------------------


def run_trainer(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_helpers.train", *args], capture_output=True, text=True, timeout=240
    )


def quiet(result: subprocess.CompletedProcess) -> bool:
    """No traceback or torch elastic banner reached the user."""
    both = result.stdout + result.stderr
    return not any(noise in both for noise in ("Traceback", "ChildFailedError", "Root Cause", "torch.distributed"))


@pytest.mark.parametrize("fault", ["value 128", "wrong size", "missing"])
def test_a_bad_mask_with_two_processes_prints_one_message_and_exits_2(tiny_root, tmp_path, fault):
    copy = tmp_path / "data"
    shutil.copytree(tiny_root, copy)
    victim = sorted((copy / "train/masks").glob("*.png"))[0]
    if fault == "value 128":
        Image.fromarray(np.full((101, 101), 128, np.uint8)).save(victim)
    elif fault == "wrong size":
        Image.fromarray(np.zeros((90, 101), np.uint8)).save(victim)
    else:
        victim.unlink()
    before = snapshot(copy)
    result = run_trainer(["--data", str(copy), "--out", str(tmp_path / "run"), "--processes", "2", *TINY])
    assert result.returncode == 2 and quiet(result), result.stderr[-2000:]
    assert result.stderr.count("error:") == 1 and victim.stem in result.stderr
    assert snapshot(copy) == before and not (tmp_path / "run").exists()


def test_a_workers_error_with_two_processes_is_reported_once(tiny_root, tmp_path):
    """A checkpoint from another configuration is found inside the workers: still one message, status 2."""
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out), "--processes", "1", *TINY]) == 0
    before = (out / "last.pt").read_bytes()
    result = run_trainer(
        ["--data", str(tiny_root), "--out", str(out), "--processes", "2", "--resume", "--lr", "0.1", *TINY]
    )
    assert result.returncode == 2 and quiet(result), result.stderr[-2000:]
    assert result.stderr.count("error:") == 1 and "another configuration (differs in: lr, " in result.stderr
    assert (out / "last.pt").read_bytes() == before


# ---------------------------------------------------------------------------
# 3. --epochs does what it says, and both stages are announced
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, stages",
    [
        ([], (50, 15)),
        (["--epochs", "1"], (1, 0)),
        (["--epochs", "10"], (10, 3)),
        (["--epochs", "10", "--finetune-epochs", "5"], (10, 5)),
        (["--finetune-epochs", "0"], (50, 0)),
    ],
)
def test_epochs_scales_the_whole_schedule_of_medium_strong(argv, stages):
    recipe = train_cli.recipe_from_args(train_cli.parse_args(["--recipe", "medium-strong", *argv]))
    assert (recipe.epochs, recipe.finetune_epochs if recipe.has_finetune else 0) == stages


def test_both_stages_are_announced_and_each_epoch_line_names_its_stage(tiny_root, tmp_path, capsys):
    two_stages = ["--finetune-loss", "lovasz", "--finetune-epochs", "1", "--processes", "1"]
    assert train_cli.main(["--data", str(tiny_root), "--out", str(tmp_path / "run"), *TINY, *two_stages]) == 0
    out = capsys.readouterr().out
    assert "2 stages, 3 epochs: main stage 2 epochs of bce" in out and "then fine-tune stage 1 epoch of lovasz" in out
    assert out.count("main epoch ") == 2 and out.count("fine-tune epoch ") == 1
    assert out.index("main stage: 2 epochs") < out.index("main epoch") < out.index("fine-tune stage: 1 epoch of")


# ---------------------------------------------------------------------------
# 5. An incomplete data folder: every fault in one message, and what to run
# ---------------------------------------------------------------------------


def test_every_fault_of_a_folder_is_reported_in_one_message(tiny_root, tmp_path, capsys):
    copy = tmp_path / "data"
    shutil.copytree(tiny_root, copy)
    masks, images = sorted((copy / "train/masks").glob("*.png")), sorted((copy / "train/images").glob("*.png"))
    for path in masks[:3]:
        path.unlink()
    images[10].unlink()
    Image.fromarray(np.full((101, 101), 128, np.uint8)).save(masks[20])
    Image.fromarray(np.zeros((90, 101), np.uint8)).save(images[30])
    before = snapshot(copy)
    assert train_cli.main(["--data", str(copy), "--out", str(tmp_path / "run"), "--processes", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "6 of its 60 train tiles have a problem" in err
    assert all(path.stem in err for path in masks[:3])
    for line in (
        "image without a mask: 3 tiles",
        f"image missing: 1 tile (ids {images[10].stem})",
        f"mask: values other than 0 and the full value: 1 tile (ids {masks[20].stem})",
        f"image: wrong size: 1 tile (ids {images[30].stem})",
    ):
        assert line in err, line
    assert f"python -m unet_helpers.data download --data {copy}" in err  # what a command-line user runs
    assert snapshot(copy) == before


def test_a_folder_without_train_csv_says_it_trains_from_the_mask_files(tiny_root, tmp_path, capsys):
    copy = tmp_path / "data"
    shutil.copytree(tiny_root, copy)
    (copy / "train.csv").unlink()
    assert train_cli.main(["--data", str(copy), "--out", str(tmp_path / "run"), "--processes", "1", *TINY]) == 0
    assert "has no train.csv, so the tiles are the image/mask pairs found in train/images" in capsys.readouterr().out


def test_the_data_command_checks_a_folder_and_never_mixes_the_stand_in_into_one(tiny_root, tmp_path, capsys):
    assert data_cli.main(["check", "--data", str(tiny_root)]) == 0
    assert "60 training tiles, every image and mask readable" in capsys.readouterr().out
    real = tmp_path / "real"
    (real / "train/images").mkdir(parents=True)
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(real / "train/images/mine.png")
    before = snapshot(real)
    assert data_cli.main(["standin", "--data", str(real)]) == 2
    assert "files that are not this stand-in's (e.g. train/images/mine.png)" in capsys.readouterr().err
    assert train_cli.main(["--data", str(real), "--out", str(tmp_path / "run"), "--make-standin", *TINY]) == 2
    assert snapshot(real) == before


# ---------------------------------------------------------------------------
# 6. The stand-in's figure says so, and draws image and overlay on one scale
# ---------------------------------------------------------------------------


def test_the_stand_ins_figure_says_it_is_synthetic_and_names_the_model(tiny_root, monkeypatch):
    from unet_helpers.data import TGSSource

    figure, _ = show_examples("small-same", n=3, data=TGSSource(tiny_root, synthetic=True, n_train=60))
    title = figure._suptitle.get_text()
    assert "small-same" in title and "SYNTHETIC stand-in" in title and "not real data" in title


def test_an_image_and_its_overlay_share_one_grey_scale():
    full_salt = np.full((101, 101), 90, np.uint8)  # a uniform tile, all salt: the case that was drawn white
    figure = show_tiles(full_salt[None], np.ones((1, 101, 101)))
    assert figure.axes[0].images[0].get_clim() == (0.0, 255.0) == display_range(full_salt)
    drawn = overlay(full_salt, np.zeros((101, 101)), value_range=display_range(full_salt))
    assert np.allclose(drawn, 90 / 255)  # the overlay's grey is the image's grey, not stretched to white


# ---------------------------------------------------------------------------
# Beyond the cases: options that were silently ignored, clipped or destructive
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--limit-train", "-5"], "--limit-train must be at least 1, got -5"),
        (["--limit-val", "0"], "--limit-val must be at least 1, got 0"),
        (["--lr", "0"], "--lr must be above 0, got 0.0"),
        (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
        (["--finetune-epochs", "-1"], "--finetune-epochs must be at least 0"),
        (["--finetune-epochs", "2"], "needs a fine-tune loss"),
        (["--side", "100"], "--side must be at least 101"),
        (["--padding", "valid", "--side", "101"], "too small for valid convolutions"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_numbers_out_of_range_are_refused_not_clipped(tiny_root, tmp_path, capsys, extra, message):
    argv = ["--data", str(tiny_root), "--out", str(tmp_path / "run"), "--processes", "1", *TINY, *extra]
    assert train_cli.main(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": "ten"}, "epochs: expected a whole number, got 'ten'"),
        ({"epochs": 1.5}, "epochs: expected a whole number, got 1.5"),
        ({"lr": "0.1"}, "lr: expected a number, got '0.1'"),
        ({"no_amp": "yes"}, "no_amp: expected true or false, got 'yes'"),
        ({"features": [16, "x"]}, "features: expected whole numbers"),
    ],
)
def test_config_file_values_are_checked_like_the_command_line(tmp_path, capsys, values, message):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(values))
    assert train_cli.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err
    config.write_text("[1, 2]")
    assert (
        train_cli.main(["--config", str(config)]) == 2
        and "must hold option names and values" in capsys.readouterr().err
    )


def test_predictor_options_that_would_be_ignored_or_destructive_are_refused(grey_tile, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(grey_tile).save(images / "a.png")
    before = snapshot(images)
    cases = [
        (["--images", str(images), "--out", str(images), "--overwrite"], "is the image folder itself"),
        (["--images", str(images), "--out", str(tmp_path / "m"), "--figure", "x.png"], "--figure goes with --examples"),
        (["--examples", "2", "--threshold", "0.3"], "--threshold do(es) not apply to --examples"),
        (["--examples", "2", "--figure", str(tmp_path / "x.jpg")], "--figure must name a .png file"),
        (
            ["--images", str(images), "--out", str(tmp_path / "m"), "--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
    ]
    for argv, message in cases:
        assert predict_cli.main(["--pretrained", "small-same", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    (images / "README.txt").write_text("mine")  # not an image: skipped, and said
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(images), "--out", str(tmp_path / "m")]) == 0
    assert "1 file(s) in" in capsys.readouterr().out and sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a.png"]
    (images / "README.txt").unlink()
    Image.fromarray(grey_tile).save(images / "a.jpg")  # two images would write one mask a.png
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(images), "--out", str(tmp_path / "m")]) == 2
    assert "a.jpg and a.png" in capsys.readouterr().err
    (tmp_path / "afile").write_text("mine")
    (images / "a.jpg").unlink()
    assert (
        predict_cli.main(["--pretrained", "small-same", "--images", str(images), "--out", str(tmp_path / "afile")]) == 2
    )
    assert "is a file" in capsys.readouterr().err
    assert snapshot(images) == before and (tmp_path / "afile").read_text() == "mine"


def test_trainer_options_that_contradict_or_point_nowhere(tiny_root, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    base = ["--data", str(tiny_root), "--processes", "1", *TINY]
    assert train_cli.main([*base, "--out", str(a_file)]) == 2 and "is a file" in capsys.readouterr().err
    out = tmp_path / "run"
    assert train_cli.main([*base, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err and not out.exists()
    # --resume where there is nothing to resume is said, not silently ignored
    assert train_cli.main([*base, "--out", str(out), "--resume"]) == 0
    assert "holds no run to resume (no last.pt), so a new one starts" in capsys.readouterr().out
    # an uneven split of the global batch is refused before any process starts
    result = run_trainer([*base[:2], "--out", str(tmp_path / "odd"), *TINY, "--processes", "2", "--batch-size", "15"])
    assert result.returncode == 2 and quiet(result) and "must be divisible by the 2 processes" in result.stderr
    assert "training with 2" not in result.stdout
    assert a_file.read_text() == "mine"


def test_predictor_paths_that_are_not_what_they_should_be(grey_tile, tmp_path, capsys):
    a_file = tmp_path / "afile.png"
    Image.fromarray(grey_tile).save(a_file)
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(a_file), "--out", str(tmp_path / "m")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    nowhere = ["--pretrained", "small-same", "--examples", "2", "--data", str(tmp_path / "nowhere")]
    assert predict_cli.main(nowhere + ["--figure", str(tmp_path / "f.png")]) == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "f.png").exists()


def test_the_stand_in_under_another_folder_name_is_still_called_synthetic(tmp_path, capsys):
    from unet_helpers.data import get_tgs_salt

    source = get_tgs_salt(make_synthetic_tgs(tmp_path / "my-data", n_train=30, n_test=2, seed=0))
    assert source.synthetic and "OFFLINE STAND-IN" in capsys.readouterr().out


def test_a_refused_resume_leaves_the_runs_files_as_they_were(tiny_root, tmp_path, capsys):
    """A resume with another recipe, another seed or another data folder is refused, and the run's config.json and
    split.json (what its card is made from) are not rewritten on the way."""
    out = tmp_path / "run"
    base = ["--data", str(tiny_root), "--processes", "1", "--out", str(out)]
    tiny = [*TINY, "--epochs", "1"]
    assert train_cli.main([*base, *tiny]) == 0
    capsys.readouterr()
    kept = {name: (out / name).read_bytes() for name in ("config.json", "split.json", "last.pt")}
    other_data = make_synthetic_tgs(tmp_path / "other", n_train=50, n_test=2, seed=9)
    medium = [*tiny[:1], "medium-reflect", *tiny[2:]]  # another recipe, the same tiles
    cases = [
        ([*base, *tiny, "--resume", "--seed", "1"], "trained on other tiles"),
        ([*base[:1], str(other_data), *base[2:], *tiny, "--resume"], "trained on other tiles"),
        ([*base, *medium, "--resume"], "resume with the run's own options"),
    ]
    for argv, message in cases:
        assert train_cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
        assert {name: (out / name).read_bytes() for name in kept} == kept, argv
    assert train_cli.main([*base, *tiny, "--resume"]) == 0  # the run's own options still resume it
    assert (out / "config.json").read_bytes() == kept["config.json"]


def test_a_run_without_held_out_tiles_is_not_exported(tiny_root, tmp_path, capsys):
    from unet_helpers import pretrained

    run = tmp_path / "run"
    argv = ["--data", str(tiny_root), "--processes", "1", "--out", str(run), *TINY, "--epochs", "1"]
    assert train_cli.main([*argv, "--test-fraction", "0"]) == 0
    export = ["export", "--run", str(run), "--data", str(tiny_root), "--out-dir", str(tmp_path / "w")]
    assert pretrained.main(export) == 2
    assert "holds out no tiles" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_checkpoints_and_models_given_where_the_other_belongs(tiny_root, tmp_path, capsys):
    """A folder that is not a run's, a shipped model's weights, notebook 09's denoiser, too many examples: each
    refused, saying what to pass instead. A run's folder is taken: its best stage, as an export would ship it."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(images / "a.png")
    run = tmp_path / "run"
    assert (
        train_cli.main(["--data", str(tiny_root), "--processes", "1", "--out", str(run), *TINY, "--epochs", "1"]) == 0
    )
    capsys.readouterr()
    weights = Path(predict_cli.__file__).parent / "weights" / "small-same.pt"
    masks = ["--images", str(images), "--out", str(tmp_path / "m")]
    loose = tmp_path / "loose"  # a folder with a checkpoint in it, but not a run's folder
    loose.mkdir()
    (loose / "best.pt").write_bytes((run / "best.pt").read_bytes())
    cases = [
        (["--checkpoint", str(loose), *masks], f"is a folder; pass {loose / 'best.pt'}"),
        (["--checkpoint", str(weights), *masks], "--pretrained NAME"),
        (["--pretrained", "denoiser", *masks], "is a denoiser (notebook 09's kind)"),
        (["--pretrained", "denoiser", "--examples", "2"], "is a denoiser"),
        (["--pretrained", str(weights.with_name("denoiser.json")), *masks], "is a denoiser"),  # by its card's path
        (["--pretrained", "small-same", "--examples", "500"], "--examples must be 1 to 10"),
        (["--pretrained", "small-same", "--images", str(tmp_path), "--out", str(tmp_path / "m")], "did you mean"),
    ]
    for argv, message in cases:
        assert predict_cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "m").exists()
    assert predict_cli.main(["--checkpoint", str(run), *masks]) == 0
    assert f"using {run / 'best.pt'}, the best validation tgs_score" in capsys.readouterr().out
    assert (tmp_path / "m" / "a.png").is_file()
    with pytest.raises(ValueError, match="1 to 10 tiles"):
        show_examples("small-same", n=11)
    # --data one level too deep, into train/
    assert train_cli.main(["--data", str(tiny_root / "train"), "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert f"pass --data {tiny_root}" in capsys.readouterr().err


# --- what a new user got wrong, tried on a copy of the stand-in ------------------------------------------------------


def test_the_trainer_never_replaces_an_options_file_of_the_users_in_out(tiny_root, tmp_path, capsys):
    """A config.json of the user's in --out was replaced by the run's own, and three more files with it."""
    out = tmp_path / "exp1"
    out.mkdir()
    mine = json.dumps({"recipe": "small-same", "epochs": 1})
    (out / "config.json").write_text(mine)
    argv = ["--data", str(tiny_root), "--processes", "1", *TINY, "--epochs", "1"]
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert train_cli.main([*argv, "--config", str(out / "config.json"), "--out", str(out), *extra]) == 2
        assert "not a config.json the trainer wrote" in capsys.readouterr().err
    assert (out / "config.json").read_text() == mine and sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_runs_own_config_json_resumes_it_and_repeats_it_elsewhere(tiny_root, tmp_path):
    """The resume errors say 'resume with the run's own options (its config.json)': --config takes that file."""
    out = tmp_path / "run"
    assert (
        train_cli.main(["--data", str(tiny_root), "--processes", "1", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    )
    assert train_cli.main(["--config", str(out / "config.json"), "--resume"]) == 0  # finished: loaded, not retrained
    assert json.loads((out / "history.json").read_text())["all"]["epoch"] == [1]
    again = tmp_path / "again"
    assert train_cli.main(["--config", str(out / "config.json"), "--out", str(again)]) == 0
    first, second = (json.loads((run / "config.json").read_text()) for run in (out, again))
    assert first["recipe_resolved"] == second["recipe_resolved"] and second["config"] == str(out / "config.json")


def test_a_runs_own_config_json_does_not_repeat_its_overwrite(tiny_root, tmp_path, capsys):
    """A run started with --overwrite saved overwrite: true in its config.json; --config with that file, to change an
    option, then deleted the very run it came from, with no --overwrite typed."""
    out = tmp_path / "run"
    argv = ["--data", str(tiny_root), "--processes", "1", "--out", str(out), *TINY, "--epochs", "1", "--overwrite"]
    assert train_cli.main(argv) == 0
    best = (out / "best.pt").read_bytes()
    assert train_cli.main(["--config", str(out / "config.json"), "--epochs", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "best.pt").read_bytes() == best


def test_files_of_an_unfinished_run_are_not_replaced_without_overwrite(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "split.json").write_text("{}")  # a run stopped before its first checkpoint, say
    argv = ["--data", str(tiny_root), "--processes", "1", "--out", str(out), *TINY, "--epochs", "1"]
    assert train_cli.main(argv) == 2
    assert "split.json" in capsys.readouterr().err and (out / "split.json").read_text() == "{}"
    assert train_cli.main([*argv, "--overwrite"]) == 0


def test_overwrite_removes_every_stage_of_the_earlier_run(tiny_root, tmp_path, capsys):
    """A fine-tune stage that outlived --overwrite was what predict --checkpoint RUN then used."""
    from unet_helpers.pretrained import best_checkpoint

    out = tmp_path / "run"
    argv = ["--data", str(tiny_root), "--processes", "1", "--out", str(out), *TINY, "--epochs", "1"]
    assert train_cli.main([*argv, "--finetune-epochs", "1", "--finetune-loss", "lovasz"]) == 0
    assert (out / "finetune" / "best.pt").is_file()
    capsys.readouterr()
    assert train_cli.main([*argv, "--overwrite"]) == 0
    assert "removed the earlier run's" in capsys.readouterr().out
    assert not (out / "finetune" / "best.pt").exists() and best_checkpoint(out)[0] == out / "best.pt"


def test_a_split_that_leaves_no_validation_tiles_is_refused(tmp_path, capsys):
    root = make_synthetic_tgs(tmp_path / "three", n_train=3, n_test=1, seed=4)
    argv = ["--data", str(root), "--processes", "1", "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "0 for validation" in err and "--val-fraction" in err and not (tmp_path / "run").exists()


def test_an_id_listed_twice_in_train_csv_is_refused_by_loader_and_check(tiny_root, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    lines = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(TGSDataError, match="more than once"):
        load_tgs_split(root)
    assert data_cli.main(["check", "--data", str(root)]) == 2
    assert "more than once" in capsys.readouterr().err


def test_the_check_compares_train_csv_with_the_mask_pngs(tiny_root, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    lines = (root / "train.csv").read_text().splitlines()
    first_id = lines[1].split(",")[0]
    (root / "train.csv").write_text("\n".join([lines[0], f"{first_id},1 2 3", *lines[2:]]) + "\n")
    assert data_cli.main(["check", "--data", str(root)]) == 2
    assert f"{first_id}: run-length string must hold 'start length' pairs" in capsys.readouterr().err
    (root / "train.csv").write_text("\n".join([lines[0], f"{first_id},1 5", *lines[2:]]) + "\n")
    assert data_cli.main(["check", "--data", str(root)]) == 2
    assert f"{first_id}: its run-length string decodes to 5 salt pixels" in capsys.readouterr().err


def test_a_train_csv_saved_with_a_byte_order_mark_reads_as_kaggles(tiny_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    (root / "train.csv").write_bytes(b"\xef\xbb\xbf" + (root / "train.csv").read_bytes())  # as Excel saves it
    assert load_tgs_split(root).ids == load_tgs_split(tiny_root).ids


def test_the_standin_command_on_a_file_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert data_cli.main(["standin", "--data", str(tmp_path / "afile")]) == 2
    assert "--data must name a folder" in capsys.readouterr().err


def test_a_one_pixel_wide_image_is_mirrored_without_hanging():
    import torch

    from unet_helpers.tiling import mirror_pad

    row = torch.arange(5.0).view(1, 1, 1, 5)
    padded = mirror_pad(row, 2, 3, 1, 1)  # a side of one pixel has nothing to reflect: it is repeated
    assert padded.shape == (1, 1, 6, 7) and torch.equal(padded[0, 0, :, 1:-1], row[0, 0].expand(6, 5))


def test_an_image_too_small_for_the_network_is_named_with_its_size(tiny_root, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(images / "tile.png")
    Image.fromarray(np.zeros((3, 300), np.uint8)).save(images / "sliver.png")
    out = tmp_path / "masks"
    assert predict_cli.main(["--pretrained", "medium-strong", "--images", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sliver.png (300x3" in err and "at least 101x101" in err and not out.exists()


def test_broken_cards_and_weights_are_named(tmp_path):
    from unet_helpers.pretrained import WEIGHTS_DIR, load_pretrained

    card = json.loads((WEIGHTS_DIR / "small-same.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(card))
    shutil.copy(WEIGHTS_DIR / "medium-strong.pt", tmp_path / "a.pt")  # another network's weights
    with pytest.raises(ValueError, match="a.pt does not hold the weights of the network its card describes"):
        load_pretrained(str(tmp_path / "a.json"))
    (tmp_path / "a.pt").write_bytes((WEIGHTS_DIR / "small-same.pt").read_bytes()[:1000])  # cut short
    with pytest.raises(ValueError, match="a.pt cannot be read as weights"):
        load_pretrained(str(tmp_path / "a.json"))
    (tmp_path / "a.pt").write_text("not weights at all\n")  # a text file (torch raised a bare KeyError)
    with pytest.raises(ValueError, match="a.pt cannot be read as weights"):
        load_pretrained(str(tmp_path / "a.json"))
    torch.save(torch.zeros(3), tmp_path / "a.pt")  # a tensor, not a state dict
    with pytest.raises(ValueError, match="a.pt holds a Tensor, not weights"):
        load_pretrained(str(tmp_path / "a.json"))
    (tmp_path / "a.json").write_text(json.dumps({k: v for k, v in card.items() if k != "model_config"}))
    with pytest.raises(ValueError, match="a.json is not a model card .it lacks model_config"):
        load_pretrained(str(tmp_path / "a.json"))
    (tmp_path / "a.json").write_text(json.dumps(card)[:100])
    with pytest.raises(ValueError, match="a.json cannot be read as a model card"):
        load_pretrained(str(tmp_path / "a.json"))


def test_a_model_exported_from_the_stand_in_is_not_called_real(tmp_path):
    from unet_helpers import pretrained

    standin = make_synthetic_tgs(tmp_path / "small", n_train=60, n_test=2)  # the stand-in's own ids (seed 0)
    run = tmp_path / "run"
    argv = ["--data", str(standin), "--processes", "1", "--out", str(run), *TINY, "--epochs", "1"]
    assert train_cli.main([*argv, "--test-fraction", "0.1"]) == 0
    export = ["export", "--run", str(run), "--data", str(standin), "--out-dir", str(tmp_path / "w"), "--name", "mine"]
    assert pretrained.main(export) == 0
    card = json.loads((tmp_path / "w" / "mine.json").read_text())
    assert (
        "stand-in" in card["summary"]
        and "stand-in" in card["data"]["source"]
        and "Kaggle" not in card["data"]["source"]
    )


def test_export_names_a_folder_that_is_no_run_and_data_without_the_runs_tiles(tiny_root, tmp_path, capsys):
    from unet_helpers import pretrained

    export = ["export", "--data", str(tiny_root), "--out-dir", str(tmp_path / "w")]
    assert pretrained.main([*export, "--run", str(tmp_path / "nosuch")]) == 2
    assert "is not a finished training run's folder (no config.json" in capsys.readouterr().err
    run = tmp_path / "run"
    argv = ["--data", str(tiny_root), "--processes", "1", "--out", str(run), *TINY, "--epochs", "1"]
    assert train_cli.main([*argv, "--test-fraction", "0.1"]) == 0
    other = make_synthetic_tgs(tmp_path / "other", n_train=20, n_test=1, seed=5)
    assert pretrained.main(["export", "--run", str(run), "--data", str(other), "--out-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "are not in --data" in err and str(tiny_root) in err and not (tmp_path / "w").exists()


def test_examples_from_a_data_folder_asked_for_by_name_are_not_swapped_for_the_stand_in(tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / "train" / "images").mkdir(parents=True)
    (broken / "train.csv").write_text("id,rle_mask\n")
    argv = ["--pretrained", "small-same", "--examples", "2", "--data", str(broken), "--figure", str(tmp_path / "f.png")]
    assert predict_cli.main(argv) == 2
    assert "is not usable as TGS Salt data" in capsys.readouterr().err and not (tmp_path / "f.png").exists()


def test_hidden_files_beside_the_images_are_not_read_as_images(tmp_path, capsys):
    """macOS writes ._name.png beside every copied file: they are not images and must not block the folder."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(images / "a.png")
    (images / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    out = tmp_path / "masks"
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(images), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_results_that_cannot_be_written_are_refused_before_predicting(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((101, 101), np.uint8)).save(images / "a.png")
    (tmp_path / "afile").write_text("")
    for where in (["--out", str(tmp_path / "afile" / "masks")], ["--submission", str(tmp_path / "afile" / "s.csv")]):
        assert predict_cli.main(["--pretrained", "small-same", "--images", str(images), *where]) == 2
        assert "afile is a file" in capsys.readouterr().err


def test_a_submission_from_images_that_are_not_kaggles_tiles_is_warned_about(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((120, 90), np.uint8)).save(images / "a.png")
    assert (
        predict_cli.main(
            ["--pretrained", "small-same", "--images", str(images), "--submission", str(tmp_path / "s.csv")]
        )
        == 0
    )
    assert "not every image is 101x101" in capsys.readouterr().err


def test_a_data_folder_that_does_not_exist_or_lacks_the_train_level_is_named(tmp_path, capsys):
    argv = ["--processes", "1", "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]
    assert train_cli.main(["--data", str(tmp_path / "nosuch"), *argv]) == 2
    assert "nosuch does not exist" in capsys.readouterr().err
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "masks").mkdir()
    assert train_cli.main(["--data", str(flat), *argv]) == 2
    assert "move them to" in capsys.readouterr().err


def test_the_standin_command_does_not_report_success_on_a_folder_still_unusable(tmp_path, capsys, monkeypatch):
    """A partial stand-in whose train.csv was edited (saved with a row too many, say) stays unusable after writing."""
    small = lambda root: make_synthetic_tgs(root, n_train=20, n_test=2)  # noqa: E731  the command's, made quick
    monkeypatch.setattr(data_cli, "make_synthetic_tgs", small)
    root = small(tmp_path / "partial")
    lines = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join([*lines, lines[1]]) + "\n")  # one id twice
    assert data_cli.main(["standin", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "still not usable" in err and "more than once" in err
