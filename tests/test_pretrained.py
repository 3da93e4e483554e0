"""The trained U-Nets that ship with the package: files, cards, loading by name, the predictor, exporting a run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unet_helpers import predict as predict_cli
from unet_helpers import pretrained
from unet_helpers import train as train_cli
from unet_helpers.data import check_submission, load_tgs_split, make_synthetic_tgs
from unet_helpers.engine import save_checkpoint
from unet_helpers.models import UNet, count_parameters
from unet_helpers.postprocess import choose_postprocessing, to_masks
from unet_helpers.recipes import RECIPES
from unet_helpers.utils import half_state_dict

MB = 2**20


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_synthetic_tgs(tmp_path_factory.mktemp("tgs"), n_train=60, n_test=5, seed=4)


def test_one_shipped_model_per_recipe_of_notebook_04():
    assert set(pretrained.NAMES) == set(RECIPES)
    assert pretrained.available_pretrained() == list(pretrained.NAMES)


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_shipped_files_and_card(name):
    weights = pretrained.WEIGHTS_DIR / f"{name}.pt"
    assert weights.stat().st_size <= 3 * MB
    card = pretrained.load_card(name)
    assert (
        card["name"] == name and card["recipe"]["name"] == name and card["weights"]["bytes"] == weights.stat().st_size
    )
    for key in (
        "recipe",
        "model_config",
        "data",
        "training",
        "history",
        "best_val_tgs",
        "postprocessing",
        "held_out",
        "torch",
        "date",
    ):
        assert key in card, key
    data = card["data"]
    train, val, held_out = set(data["train_ids"]), set(data["val_ids"]), set(data["held_out_ids"])
    assert not (train & val or train & held_out or val & held_out)  # three disjoint parts
    assert len(train) == 2400 and len(val) == 300 and len(held_out) == 300
    history = card["history"]
    assert (
        len(history["epoch"])
        == card["training"]["epochs"] + card["training"]["finetune_epochs"]
        == card["training"]["epochs_run"]
    )
    assert max(history["val_tgs"]) == pytest.approx(card["best_val_tgs"], abs=1e-4)
    assert card["training"]["wall_time_s"] == pytest.approx(sum(history["seconds"]), rel=1e-3)
    assert 0 < card["postprocessing"]["threshold"] < 1 and card["postprocessing"]["chosen_on"] == "validation tiles"
    # The earlier project's recipes and the strong one all beat predicting nothing on tiles they never saw.
    assert card["held_out"]["tgs"] > card["held_out"]["empty_baseline"] + 0.1


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_load_pretrained_by_name_gives_a_working_unet(name, tiny_root):
    model, card = pretrained.load_pretrained(name)
    assert isinstance(model, UNet) and not model.training
    assert model.config() == card["model_config"] and count_parameters(model) == card["parameters"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored in float16, used in float32
    arrays = load_tgs_split(tiny_root)
    probs = pretrained.predict_tiles(model, card["recipe"], arrays.subset(arrays.ids[:4]), tta=True)
    assert probs.shape == (4, 101, 101) and probs.dtype == np.float32 and 0 <= probs.min() and probs.max() <= 1


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError) as err:
        pretrained.load_pretrained("medium-strongest")
    assert "'medium-strongest'" in str(err.value)
    for name in pretrained.NAMES:
        assert name in str(err.value)


def test_unseen_ids_leave_out_training_and_validation_tiles():
    card = pretrained.load_card("medium-strong")
    ids = (
        card["data"]["train_ids"][:3] + card["data"]["val_ids"][:2] + card["data"]["held_out_ids"][:4] + ["0123456789"]
    )
    assert pretrained.unseen_ids(card, ids) == card["data"]["held_out_ids"][:4] + ["0123456789"]


# --- the command line --------------------------------------------------------------------------


def test_predict_with_a_shipped_model_uses_its_card(tiny_root, tmp_path, capsys):
    sub = tmp_path / "submission.csv"
    assert (
        predict_cli.main(
            [
                "--pretrained",
                "medium-strong",
                "--images",
                str(tiny_root / "test/images"),
                "--submission",
                str(sub),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert check_submission(sub, tiny_root / "sample_submission.csv") == 5
    post = pretrained.load_card("medium-strong")["postprocessing"]
    assert f"threshold {post['threshold']}, min area {post['min_area']}, tta {post['tta']}" in capsys.readouterr().out
    out = tmp_path / "masks"
    assert (
        predict_cli.main(
            [
                "--pretrained",
                "small-valid",
                "--images",
                str(tiny_root / "test/images"),
                "--out",
                str(out),
                "--threshold",
                "0.5",
                "--no-tta",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "threshold 0.5, min area" in capsys.readouterr().out and len(list(out.glob("*.png"))) == 5


def test_predict_unknown_shipped_model_exits_2(tiny_root, tmp_path, capsys):
    assert (
        predict_cli.main(
            ["--pretrained", "huge", "--images", str(tiny_root / "test/images"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no shipped model named 'huge'" in err and "medium-strong" in err
    assert not (tmp_path / "o").exists()


def test_batched_prediction_equals_one_image_at_a_time(tmp_path):
    model, card = pretrained.load_pretrained("medium-strong")
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((5, 1, 101, 101), dtype=np.float32))
    batched = predict_cli.predict_batch(model, images, card["recipe"], torch.device("cpu"), tta=True)
    single = torch.stack(
        [predict_cli.predict_image(model, im, card["recipe"], torch.device("cpu"), True) for im in images]
    )
    assert batched.shape == (5, 101, 101) and torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("name", ["small-valid", "small-same", "medium-reflect", "medium-strong"])
@pytest.mark.parametrize("tta", [False, True])
def test_the_command_line_predicts_what_the_card_scored(name, tta):
    """The predictor must give the probabilities the card's threshold, minimum area and TTA were chosen on.

    101 -> 104: TGSSaltDataset puts 1 mirrored pixel above and left, 2 below and right, and the engine's flip TTA
    mirrors that padded tile; the predictor once mirrored the tile before padding (2 pixels left, 1 right: another
    place on the pooling grid, probabilities up to 0.3 apart) and tiled valid networks' 101x101 tiles with another
    border (up to 0.6 apart, without TTA).
    """
    model, card = pretrained.load_pretrained(name)
    from unet_helpers.data.files import TGSArrays

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 101, 101), dtype=np.uint8)
    arrays = TGSArrays(["a", "b", "c"], images, None, np.zeros(3, np.float32))
    via_dataset = pretrained.predict_tiles(model, card["recipe"], arrays, tta=tta)
    grey = torch.from_numpy(images).float().div(255)[:, None]
    via_cli = predict_cli.predict_batch(model, grey, card["recipe"], torch.device("cpu"), tta=tta).numpy()
    assert np.allclose(via_dataset, via_cli, atol=1e-5)


def test_the_command_line_predicts_images_of_other_sizes():
    for name in ("small-valid", "medium-strong"):  # overlap tiles; a mirrored border
        model, card = pretrained.load_pretrained(name)
        probs = predict_cli.predict_batch(model, torch.rand(2, 1, 150, 130), card["recipe"], torch.device("cpu"), True)
        assert probs.shape == (2, 150, 130) and 0 <= probs.min() and probs.max() <= 1


# --- post-processing -----------------------------------------------------------------------------


def test_small_predictions_are_dropped_and_the_choice_is_made_on_the_given_tiles():
    probs = np.zeros((3, 101, 101), np.float32)
    probs[0, :3, :3] = 0.9  # 9 stray pixels on an empty tile
    probs[1, 20:60, 20:60] = 0.7  # a real body
    truth = np.zeros((3, 101, 101), np.uint8)
    truth[1, 20:60, 20:60] = 1
    assert to_masks(probs, 0.5, 0)[0].sum() == 9 and to_masks(probs, 0.5, 10)[0].sum() == 0
    assert to_masks(probs, 0.5, 10)[1].sum() == 1600 and to_masks(probs, 0.8, 0)[1].sum() == 0
    chosen = choose_postprocessing(probs, truth, thresholds=(0.5, 0.8), min_areas=(0, 10))
    assert (chosen["threshold"], chosen["min_area"], chosen["score"]) == (0.5, 10, 1.0)


# --- exporting a run ---------------------------------------------------------------------------


def test_a_running_variance_beyond_float16_is_shipped_in_float32_and_predicts_as_before():
    # A flagship candidate trained 320 epochs on an H100 had one channel's running variance at 419,787: float16 stored
    # it as inf, the channel's output became a constant (its bias), and validation fell from 0.845 to 0.807.
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    layer[1].running_var.copy_(torch.tensor([1.0, 0.5, 4.2e5, 3.0]))
    x = 300 * torch.randn(1, 2, 8, 8)
    state = half_state_dict(layer.state_dict())
    assert state["1.running_var"].dtype == torch.float32 and state["0.weight"].dtype == torch.float16
    assert torch.isinf(layer[1].running_var.half()).any()  # what plain .half() would have shipped
    shipped = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    expected = layer(x)
    torch.testing.assert_close(shipped(x), expected, rtol=1e-2, atol=0.1)  # float16 weights on inputs of size 300
    shipped.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in layer.state_dict().items()}
    )
    naive = shipped(x)
    assert (naive[:, 2] == layer[1].bias[2]).all() and expected[:, 2].std() > 0.1  # the channel is gone


def test_export_writes_float16_weights_and_a_complete_card(tiny_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = [
        "--data",
        str(tiny_root),
        "--recipe",
        "small-same",
        "--features",
        "4,8",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(run),
    ]
    assert train_cli.main(argv) == 0
    split = json.loads((run / "split.json").read_text())
    sizes = len(split["train"]), len(split["val"]), len(split["test"])
    assert sum(sizes) == 60 and all(abs(n - 12) <= 3 for n in sizes[1:])  # 20% each, rounded per coverage class
    card = pretrained.export(run, tiny_root, name="small-same", out_dir=tmp_path / "weights", device_note="test CPU")
    state = torch.load(tmp_path / "weights" / "small-same.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for k, v in state.items() if v.is_floating_point())
    assert card["weights"]["kept_float32"] == []
    assert card["data"]["held_out_ids"] == split["test"] and card["held_out"]["tiles"] == len(split["test"])
    assert card["training"]["device"] == "test CPU" and len(card["history"]["epoch"]) == 2
    assert card["torch"] == torch.__version__
    assert card["training"]["chosen_checkpoint"] in ("main stage, epoch 1", "main stage, epoch 2")
    # A snapshot average that won on validation is named as one, not by the epoch of the best.pt it was saved beside.
    best = torch.load(run / "best.pt", weights_only=False)
    save_checkpoint(run / "averaged.pt", **{**best, "best_score": 2.0}, averaged_epochs=[1, 2])
    averaged = pretrained.export(run, tiny_root, name="small-same", out_dir=tmp_path / "averaged", device_note="CPU")
    assert averaged["training"]["chosen_checkpoint"] == "main stage, the average of the snapshots of epochs 1, 2"
    # An exported model loads by its card's path, in Python and on the command line, with its card's post-processing.
    exported = tmp_path / "averaged" / "small-same.json"
    _, loaded_card = pretrained.load_pretrained(str(exported))
    assert loaded_card == averaged
    masks = tmp_path / "exported-masks"
    argv = ["--pretrained", str(exported), "--images", str(tiny_root / "test/images"), "--out", str(masks)]
    assert predict_cli.main(argv) == 0 and len(list(masks.glob("*.png"))) == len(
        list((tiny_root / "test/images").glob("*.png"))
    )
    with pytest.raises(ValueError, match="nope.pt not found: an exported model is its card"):
        (tmp_path / "nope.json").write_text("{}")
        pretrained.load_pretrained(str(tmp_path / "nope.json"))
    (run / "averaged.pt").unlink()
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "NAMES", ("small-same",))
    model, loaded = pretrained.load_pretrained("small-same")
    assert loaded == json.loads((tmp_path / "weights" / "small-same.json").read_text())
    assert torch.allclose(model.head.weight, state["head.weight"].float())
    # The command line never replaces a shipped model without --overwrite.
    before = (tmp_path / "weights" / "small-same.pt").read_bytes()
    export_args = ["export", "--run", str(run), "--data", str(tiny_root), "--name", "small-same"]
    assert pretrained.main([*export_args, "--out-dir", str(tmp_path / "weights")]) == 2
    assert (tmp_path / "weights" / "small-same.pt").read_bytes() == before
    with pytest.raises(ValueError, match="already"):  # nor does Python, unless asked: overwrite=False by default
        pretrained.export(run, tiny_root, name="small-same", out_dir=tmp_path / "weights")
    assert (tmp_path / "weights" / "small-same.pt").read_bytes() == before
    with pytest.raises(ValueError, match="a file name, without folders"):  # ../../x wrote outside --out-dir
        pretrained.export(run, tiny_root, name="../x", out_dir=tmp_path / "weights")
    assert not (tmp_path / "x.pt").exists()
    # A device it cannot use is refused before anything is written, with what to pass instead.
    out_dir = ["--out-dir", str(tmp_path / "elsewhere"), "--overwrite"]
    with pytest.raises(SystemExit):  # argparse: "invalid choice"
        pretrained.main([*export_args, *out_dir, "--device", "gpu"])
    if not torch.cuda.is_available():
        assert pretrained.main([*export_args, *out_dir, "--device", "cuda"]) == 2
        assert "no GPU is visible; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_example_tiles_are_unseen_held_out_first_and_spread_from_empty_to_full(tiny_root):
    arrays = load_tgs_split(tiny_root, "train")
    card = pretrained.load_card("medium-strong")
    ids = pretrained.example_ids(card, arrays, n=6)  # the stand-in's ids are none of the card's: all are unseen
    coverage = arrays.subset(ids).coverage
    assert len(set(ids)) == 6 and list(coverage) == sorted(coverage)
    assert coverage[0] == arrays.coverage.min() and coverage[-1] == arrays.coverage.max()
    # Pretend some tiles were trained on, some chosen on, and two held out: only the held-out two are shown.
    fake = dict(card, data=dict(train_ids=arrays.ids[:40], val_ids=arrays.ids[40:50], held_out_ids=arrays.ids[50:52]))
    assert sorted(pretrained.example_ids(fake, arrays, n=8)) == sorted(arrays.ids[50:52])
    with pytest.raises(ValueError, match="nothing unseen"):
        pretrained.example_ids(dict(card, data=dict(train_ids=arrays.ids, val_ids=[])), arrays)


def test_show_examples_draws_the_truth_beside_the_prediction_and_says_when_tiles_are_synthetic(tiny_root, capsys):
    from unet_helpers.data.source import TGSSource

    standin = TGSSource(tiny_root, synthetic=True, n_train=60, n_test=5)
    figure, scores = pretrained.show_examples("small-same", n=5, data=standin)
    assert len(figure.axes) == 4 * 5  # image, true mask, predicted mask, overlay for each of 5 tiles
    assert scores["tiles"] == 5 and 0 <= scores["tgs"] <= 1
    out = capsys.readouterr().out
    assert "small-same on 5 synthetic tiles" in out and "These tiles are synthetic" in out


def test_predict_examples_can_run_twice_but_never_replaces_a_file_it_did_not_draw(tiny_root, tmp_path, capsys):
    figure = tmp_path / "look.png"
    args = ["--pretrained", "small-same", "--examples", "4", "--data", str(tiny_root), "--figure", str(figure)]
    assert predict_cli.main(args) == 0
    assert figure.stat().st_size > 10_000 and "tgs_score" in capsys.readouterr().out
    # The README's flow runs the quick start twice (before and after getting the data): the figure is redrawn.
    assert predict_cli.main(args) == 0 and f"replaced {figure}" in capsys.readouterr().out
    assert Image.open(figure).info["Software"] == predict_cli.FIGURE_TAG
    # A file of the user's at that path is left alone, unless --overwrite says otherwise.
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(figure)
    before = figure.read_bytes()
    assert predict_cli.main(args) == 2 and "was not drawn by this command" in capsys.readouterr().err
    assert figure.read_bytes() == before
    assert predict_cli.main(args + ["--overwrite"]) == 0 and figure.read_bytes() != before
    assert predict_cli.main(["--checkpoint", "x.pt", "--examples", "4"]) == 2
    assert "--examples shows a shipped model" in capsys.readouterr().err
    assert predict_cli.main(["--pretrained", "small-same", "--images", str(tiny_root / "test/images")]) == 2
    assert "pass --out DIR" in capsys.readouterr().err


def test_a_card_records_the_command_that_trains_its_model_again():
    import shlex

    from unet_helpers import train as train_cli
    from unet_helpers.pretrained import training_command

    argv = ["--data", "d", "--recipe", "medium-strong", "--block", "residual", "--hypercolumn", "--no-augment"]
    argv += ["--split-like", "medium-strong", "--epochs", "64", "--features", "16,32,64", "--out", "runs/x", "--resume"]
    args = train_cli.parse_args(argv)
    config = json.loads(json.dumps(vars(args), default=str))  # as config.json holds it
    command = training_command(config)
    assert command.startswith("python -m unet_helpers.train --data <tgs-salt> --recipe medium-strong ")
    assert "--out" not in command and "--resume" not in command  # where a run went, not what it trained
    again = vars(train_cli.parse_args(shlex.split(command)[3:]))
    for key in ("block", "hypercolumn", "augment", "split_like", "epochs", "features", "recipe", "seed"):
        assert again[key] == vars(args)[key], key


def test_segment_gives_the_mask_the_cards_scores_were_made_with(tmp_path):
    """segment(model, card, image) == the card's path (predict_tiles + to_masks) on real-size tiles, uint8 or float;
    values outside 0..1 as floats are refused rather than read as a tile without salt."""
    from unet_helpers.pretrained import load_pretrained, predict_tiles, segment

    root = make_synthetic_tgs(tmp_path / "tiles", n_train=6, n_test=1, seed=3)
    tiles = load_tgs_split(root)
    model, card = load_pretrained("medium-strong")
    post = card["postprocessing"]
    expected = to_masks(
        predict_tiles(model, card["recipe"], tiles, "cpu", tta=post["tta"]), post["threshold"], post["min_area"]
    )
    for k in range(len(tiles)):
        assert np.array_equal(segment(model, card, tiles.images[k]), expected[k])
        assert np.array_equal(segment(model, card, tiles.images[k] / 255.0), expected[k])
    with pytest.raises(ValueError, match="uint8 grey values"):
        segment(model, card, tiles.images[0].astype(float))
    sixteen_bit = tiles.images[0].astype(np.uint16) * 257  # a 16-bit PNG of the same grey levels
    assert np.array_equal(segment(model, card, sixteen_bit), expected[0])
    as_written = tiles.images[0].astype(np.uint16)  # 16 bits holding 0..255 (PIL's convert("I;16")): read as 8-bit
    assert np.array_equal(segment(model, card, as_written), expected[0])
    refused = [
        (tiles.masks[0].astype(bool), "a boolean array"),  # a mask given where the image belongs
        (np.stack([tiles.images[0]] * 3, axis=-1), r"\.convert\('L'\)"),  # a colour image
        (tiles.images[0].astype(np.int64), "pass image.astype"),  # whole numbers of unknown scale
    ]
    for image, named in refused:
        with pytest.raises(ValueError, match=named):
            segment(model, card, image)
