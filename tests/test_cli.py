"""The command lines: python -m unet_helpers.train / predict, and torchrun with two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from unet_helpers import predict as predict_cli
from unet_helpers import recipes
from unet_helpers import train as train_cli
from unet_helpers.data import coverage_class, load_tgs_split, make_synthetic_tgs, stratified_split
from unet_helpers.models import UNet

# A tiny, quick configuration: no batch norm and no flips, so one process and two see identical batches.
TINY = [
    "--recipe",
    "small-same",
    "--features",
    "4,8",
    "--no-augment",
    "--lr",
    "0.01",
    "--scheduler",
    "none",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--limit-train",
    "64",
    "--limit-val",
    "16",
    "--finetune-epochs",
    "0",
    "--no-progress",
    "--device",
    "cpu",
    "--processes",
    "1",  # in this process: the tests below start torchrun themselves where they want several
]
ONE_EPOCH = ["1" if previous == "--epochs" else a for previous, a in zip([None, *TINY], TINY)]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_synthetic_tgs(tmp_path_factory.mktemp("tgs"), n_train=80, n_test=6, seed=2)


def write_card(root, folder):
    """A card (its data part) with sorted ids split 50 / 15 / the rest: (its path, (train, val, held-out ids))."""
    ids = sorted(load_tgs_split(root).ids)
    train, val, test = ids[:50], ids[50:65], ids[65:]
    card = folder / "card.json"
    card.write_text(json.dumps({"data": {"train_ids": train, "val_ids": val, "held_out_ids": test}}))
    return card, (train, val, test)


def history(out):
    return json.loads((out / "history.json").read_text())["all"]


def close(a, b, rtol=1e-5):
    return np.allclose(a, b, rtol=rtol, atol=1e-7)


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for action in train_cli.build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
            assert action.option_strings[0] in text


@pytest.mark.parametrize(
    "argv", [["--loss", "focal"], ["--padding", "full"], ["--epochs", "many"], ["--features", "16"]]
)
def test_unknown_option_values_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


def test_each_recipe_trains_on_the_smallest_side_its_network_takes():
    assert {name: r.side for name, r in recipes.RECIPES.items()} == {
        "small-valid": 144,
        "small-same": 104,
        "medium-reflect": 104,
        "medium-strong": 112,  # 4 poolings: a multiple of 16
    }
    assert recipes.fitting_side(dict(features=(16, 32, 64, 128, 256), padding="same")) == 112  # 4 poolings: 16 | 112
    assert recipes.fitting_side(dict(features=(64, 128, 256, 512, 1024))) == 300  # the paper's network: 300 -> 116
    assert UNet(3, 1, (16, 32, 64), padding="valid").output_side(144) >= 101  # 144 -> 104 covers a tile
    assert UNet(3, 1, (16, 32, 64), padding="valid").output_side(140) < 101
    args = train_cli.parse_args(["--recipe", "medium-strong", "--features", "16,32,64,128,256"])
    assert train_cli.recipe_from_args(args).side == 112  # another network gets its own side


def test_strong_augmentation_is_off_in_every_recipe_and_one_flag_turns_it_on(tiny_root):
    assert not any(r.strong_augment for r in recipes.RECIPES.values())
    assert train_cli.recipe_from_args(train_cli.parse_args(["--strong-augment"])).strong_augment
    args = train_cli.parse_args(["--strong-augment", "--size", "resize", "--side", "208"])
    recipe = train_cli.recipe_from_args(args)
    arrays = load_tgs_split(tiny_root)
    train_ds, val_ds = recipes.make_datasets(recipe, arrays, arrays.ids[:8], arrays.ids[8:12])
    assert train_ds.side == val_ds.side == 208
    assert train_ds.transform is not None and val_ds.transform is None  # validation tiles are never augmented


def test_three_way_split_is_disjoint_stratified_and_keeps_the_two_way_split(tiny_root):
    arrays = load_tgs_split(tiny_root)
    train, val, test = train_cli.split_three_ways(arrays, 0.2, 0.2, seed=0)
    assert (len(train), len(val), len(test)) == (48, 16, 16)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert sorted(train + val + test) == sorted(arrays.ids)
    empty = set(np.array(arrays.ids)[arrays.coverage == 0])
    assert abs(len(empty & set(test)) / 16 - len(empty) / 80) < 0.1
    # No held-out part: exactly the 80/20 split of notebooks 04-05.
    assert train_cli.split_three_ways(arrays, 0.2, 0.0, seed=0)[:2] == stratified_split(
        arrays.ids, coverage_class(arrays.coverage), 0.2, 0
    )


def test_split_like_trains_on_exactly_the_tiles_of_a_card_or_a_split_file(tiny_root, tmp_path, capsys):
    card, (train, val, test) = write_card(tiny_root, tmp_path)
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out), "--split-like", str(card), *ONE_EPOCH]) == 0
    written = json.loads((out / "split.json").read_text())
    assert (written["train"], written["val"], written["test"]) == (train, val, test)  # the ids, not a seed's split
    config = json.loads((out / "config.json").read_text())
    assert config["split_like"] == str(card)
    from unet_helpers.pretrained import export

    exported = export(out, tiny_root, name="like", out_dir=tmp_path / "card")
    assert exported["data"]["split"].startswith(f"the split of {card} (its ids): 50 training, 15 validation")
    assert exported["data"]["held_out_ids"] == test
    again = tmp_path / "again"  # a run's own split.json serves as well
    assert (
        train_cli.main(
            ["--data", str(tiny_root), "--out", str(again), "--split-like", str(out / "split.json"), *ONE_EPOCH]
        )
        == 0
    )
    assert json.loads((again / "split.json").read_text()) == written
    # a shipped model's card by name: its tiles are real Kaggle ids, which the stand-in does not hold
    assert (
        train_cli.main(
            ["--data", str(tiny_root), "--out", str(tmp_path / "r2"), "--split-like", "medium-strong", *ONE_EPOCH]
        )
        == 2
    )
    assert "--split-like medium-strong: 3000 of its tiles are not in" in capsys.readouterr().err
    assert train_cli.main(["--data", str(tiny_root), "--out", str(tmp_path / "r3"), "--split-like", "nope.json"]) == 2
    assert "neither a shipped model" in capsys.readouterr().err
    argv = ["--data", str(tiny_root), "--out", str(tmp_path / "r4"), "--split-like", str(card), "--split-seed", "1"]
    assert train_cli.main(argv) == 2
    assert "drop --split-seed" in capsys.readouterr().err
    argv = ["--data", str(tiny_root), "--out", str(tmp_path / "r5"), "--split-like", str(card), "--val-fraction", "0.5"]
    assert train_cli.main(argv) == 2  # the split's own parts, not fractions: refused, not silently ignored
    assert "drop --val-fraction 0.5" in capsys.readouterr().err


@pytest.mark.parametrize(
    "split, named",
    [
        (dict(train=["a", "b"], val=["b"], test=["c"]), "id b is listed in both its training and its validation"),
        (dict(train=["a"], val=["b"], test=["c", "a"]), "id a is listed in both its training and its held-out"),
        (dict(train=["a", "a"], val=["b"], test=[]), "id a is listed twice"),
    ],
)
def test_a_split_whose_parts_overlap_is_refused(tmp_path, split, named):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    with pytest.raises(train_cli.UsageError, match=named):
        train_cli.read_split(str(path))


def test_a_denoisers_card_holds_no_split(tmp_path):
    from unet_helpers.pretrained import model_files

    with pytest.raises(train_cli.UsageError, match="holds no training, validation and held-out ids"):
        train_cli.read_split(str(model_files("denoiser")[0]))


def test_folds_cross_validate_the_tiles_a_split_does_not_hold_out(tiny_root, tmp_path, capsys):
    card, (train, val, test) = write_card(tiny_root, tmp_path)
    at = ONE_EPOCH.index("--limit-val")
    fast = ONE_EPOCH[:at] + ONE_EPOCH[at + 2 :]  # validate on the whole fold
    splits = []
    for fold in range(3):
        out = tmp_path / f"fold{fold}"
        argv = ["--data", str(tiny_root), "--out", str(out), "--split-like", str(card), "--folds", "3"]
        assert train_cli.main([*argv, "--fold", str(fold), *fast]) == 0
        splits.append(json.loads((out / "split.json").read_text()))
    pooled = sorted(train + val)
    other_seed = tmp_path / "fold0-seed1"  # another training seed deals the same folds (they are seeded apart)
    argv = [
        "--data",
        str(tiny_root),
        "--out",
        str(other_seed),
        "--split-like",
        str(card),
        "--folds",
        "3",
        "--seed",
        "1",
    ]
    assert train_cli.main([*argv, *fast]) == 0
    assert json.loads((other_seed / "split.json").read_text())["val"] == splits[0]["val"]
    # without --split-like (and nothing held out), neither --seed nor --val-fraction changes the folds
    plain = []
    for name, options in (("a", []), ("b", ["--seed", "1"]), ("c", ["--val-fraction", "0.3"])):
        argv = ["--data", str(tiny_root), "--out", str(tmp_path / f"plain-{name}"), "--folds", "3", "--fold", "1"]
        assert train_cli.main([*argv, *fast, *options]) == 0
        plain.append(json.loads((tmp_path / f"plain-{name}" / "split.json").read_text())["val"])
    assert plain[0] == plain[1] == plain[2] and len(plain[0]) in (26, 27)
    for written in splits:
        assert written["test"] == test  # the held-out tiles stay out of every fold
        assert sorted(written["train"] + written["val"]) == pooled and not set(written["train"]) & set(written["val"])
    assert sorted(i for written in splits for i in written["val"]) == pooled  # every tile validated once
    from unet_helpers.pretrained import export

    models = []
    for fold in range(3):
        exported = export(tmp_path / f"fold{fold}", tiny_root, name=f"fold{fold}", out_dir=tmp_path / "cards")
        models += [str(tmp_path / "cards" / f"fold{fold}.json"), str(tmp_path / "cards" / f"fold{fold}.pt")]
    assert exported["data"]["split"].endswith("; fold 2 of 3 (seed 0) of its training and validation tiles validates")
    assert exported["data"]["val_ids"] == splits[2]["val"] and exported["data"]["held_out_ids"] == test
    first = json.loads((tmp_path / "cards" / "fold0.json").read_text())["training"]["command"]
    assert "--folds 3 --fold 0" in first  # fold 0 is named, though it is the default
    # the three averaged: post-processing chosen on every tile's out-of-fold prediction, the held-out tiles scored once
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "ensemble_held_out.py")
    record = tmp_path / "flagship.json"  # a flagship record on the same held-out tiles, as compare_held_out writes it
    record.write_text(json.dumps(dict(held_out_ids=test, empty=[], medium_strong=[], candidates=[])))
    label = ["--record", str(record), "--label", "three folds"]
    ensemble = subprocess.run(
        [sys.executable, script, *models, "--data", str(tiny_root), *label], capture_output=True, text=True, check=True
    )
    assert "out of fold, 65 tiles" in ensemble.stdout and "the average of all 3 models, held-out" in ensemble.stdout
    (average,) = json.loads(record.read_text())["fold_averages"]  # what notebook 08 draws
    assert average["label"] == "three folds" and len(average["per_tile"]) == len(test)
    assert average["held_out_tgs"] == pytest.approx(np.mean(average["per_tile"]), abs=1e-4)
    assert f"held-out {average['held_out_tgs']:.4f} on {len(test)} tiles" in ensemble.stdout
    assert [fold["val_ids"] for fold in average["folds"]] == [written["val"] for written in splits]
    assert average["out_of_fold"]["tiles"] == 65 == sum(fold["val_tiles"] for fold in average["folds"])
    for fold in average["folds"]:
        assert np.mean(fold["per_tile"]) == pytest.approx(fold["held_out_tgs"], abs=1e-4)
        assert (
            f"its fold ({fold['val_tiles']} tiles) {fold['own_fold_tgs']:.4f}, held-out {fold['held_out_tgs']:.4f}"
            in ensemble.stdout
        )
    data = ["--data", str(tiny_root)]
    for bad, message in (  # --record with a name, into a record that exists, of folds
        ([*models, *data, "--record", str(record)], "--record needs --label"),
        ([*models, *data, "--record", str(tmp_path / "none.json"), "--label", "x"], "no such file"),
        ([*models[:2], *models[:2], *data, *label], "these models share their validation tiles"),
    ):
        refused = subprocess.run([sys.executable, script, *bad], capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    card = json.loads((tmp_path / "cards" / "fold1.json").read_text())
    card["data"]["val_ids"] = splits[1]["val"] + splits[0]["val"][:1]  # one tile of fold 0 in it: not folds
    (tmp_path / "cards" / "other.json").write_text(json.dumps(card))
    other = [*models[:2], str(tmp_path / "cards" / "other.json"), models[3]]
    refused = subprocess.run([sys.executable, script, *other, "--data", str(tiny_root)], capture_output=True, text=True)
    assert refused.returncode == 1 and "validation tiles overlap" in refused.stderr
    for bad, message in (
        (["--folds", "1"], "--folds must be 2 or more"),
        (["--fold", "1"], "add --folds N"),
        (["--folds", "3", "--fold", "3"], "--fold must be 0 to 2 for --folds 3"),
    ):
        assert train_cli.main(["--data", str(tiny_root), "--out", str(tmp_path / "bad"), *bad, *fast]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_missing_data_folder_exits_2(tmp_path, capsys):
    assert train_cli.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "--make-standin" in err
    assert not (tmp_path / "run").exists()


def test_tiny_run_writes_checkpoints_history_and_config(tiny_root, tmp_path):
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY) == 0
    assert {"last.pt", "best.pt", "history.json", "config.json"} <= {p.name for p in out.iterdir()}
    h = history(out)
    assert h["epoch"] == [1, 2, 3] and h["train_loss"][-1] < h["train_loss"][0]
    assert json.loads((out / "config.json").read_text())["recipe_resolved"]["model"]["features"] == [4, 8]


def test_an_existing_run_is_kept_without_resume_or_overwrite(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY) == 0
    before = (out / "last.pt").read_bytes()
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out), "--overwrite"] + TINY) == 0


def test_resume_with_another_configuration_exits_2(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY) == 0
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out), "--resume"] + TINY + ["--lr", "0.1"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_options_from_a_config_file_and_the_command_line_wins(tiny_root, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = "{tiny_root}"\nfeatures = [4, 8]\nepochs = 1\nlimit-train = 32\nlimit_val = 16\n'
        'recipe = "small-same"\nfinetune_epochs = 0\ndevice = "cpu"\nno_progress = true\n'
    )
    out = tmp_path / "run"
    assert train_cli.main(["--config", str(config), "--out", str(out), "--epochs", "2"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe_resolved"]["epochs"] == 2 and saved["limit_train"] == 32
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 0.1}))
    assert train_cli.main(["--config", str(tmp_path / "bad.json")]) == 2
    assert "unknown option 'learning_rate'" in capsys.readouterr().err


def whole_and_interrupted(root, tmp_path, stop_after, monkeypatch):
    """Train TINY once to the end, and once stopped like a Colab disconnect after ``stop_after`` epochs.

    Returns the two output folders (whole, interrupted).
    """
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    assert train_cli.main(["--data", str(root), "--out", str(whole)] + TINY) == 0
    real_train = recipes.train

    def stopping_train(*args, **kwargs):
        callers_callback = kwargs.get("on_epoch_end")

        def stop(epoch, h):
            if callers_callback:
                callers_callback(epoch, h)  # still write history.json, as a real run does
            if epoch == stop_after:
                raise KeyboardInterrupt

        return real_train(*args, **dict(kwargs, on_epoch_end=stop))

    with monkeypatch.context() as m:
        m.setattr(recipes, "train", stopping_train)
        # Ctrl-C (or a Colab disconnect) ends the command with status 130 and one line saying how to go on.
        assert train_cli.main(["--data", str(root), "--out", str(interrupted)] + TINY) == 130
    return whole, interrupted


def test_interrupted_run_resumes_to_the_uninterrupted_history(tiny_root, tmp_path, monkeypatch):
    whole, broken = whole_and_interrupted(tiny_root, tmp_path, 2, monkeypatch)
    assert train_cli.main(["--data", str(tiny_root), "--out", str(broken), "--resume"] + TINY) == 0
    a, b = history(whole), history(broken)
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"] and a["val_tgs"] == b["val_tgs"]


def torchrun(args, n=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        "-m",
        "unet_helpers.train",
    ] + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_give_the_loss_curve_of_one(tiny_root, tmp_path):
    """Same global batch (16 = 2 x 8), same shuffles, gradients averaged by DDP: the same training.

    The curves agree to float32 rounding: DDP sums two per-rank mean gradients and halves them,
    one process takes one mean over 16 images; the order of additions differs, so results differ
    in the 7th significant digit (seen: 3e-7 relative after 3 epochs). rtol 1e-5 leaves room for
    that and would still catch a real difference, such as a wrong batch split (1e-2 and more).
    """
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(one)] + TINY) == 0
    result = torchrun(["--data", str(tiny_root), "--out", str(two)] + TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 process(es)" in result.stdout and result.stdout.count("epoch   1/3") == 1  # only rank 0 logs
    a, b = history(one), history(two)
    for key in ("train_loss", "val_loss", "val_iou"):
        assert close(a[key], b[key]), (key, a[key], b[key])
    assert a["val_tgs"] == b["val_tgs"]


def test_a_finished_run_gets_a_fine_tune_stage_without_training_its_main_stage_again(tiny_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY) == 0  # no fine-tune stage
    main_stage, before = (out / "last.pt").stat().st_mtime_ns, history(out)
    lovasz = ["--finetune-loss", "lovasz", "--finetune-lr", "0.001", "--finetune-epochs", "2", "--resume"]
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out)] + TINY + lovasz) == 0
    after = history(out)
    assert (out / "last.pt").stat().st_mtime_ns == main_stage  # the main stage was loaded, not trained again
    assert after["epoch"] == [1, 2, 3, 4, 5] and after["train_loss"][:3] == before["train_loss"]
    # a change to the main stage itself is still refused: its settings are in its checkpoint
    assert train_cli.main(["--data", str(tiny_root), "--out", str(out), "--resume"] + TINY + ["--lr", "0.02"]) == 2
    assert "differs in: lr" in capsys.readouterr().err


def _auto_args(*extra):
    return train_cli.parse_args(["--recipe", "small-same", *extra])


def test_processes_auto_is_two_on_a_cpu_with_two_cores_and_one_elsewhere(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(train_cli.sys, "platform", "linux")
    monkeypatch.setattr(train_cli.torch.cuda, "is_available", lambda: False)
    for cores, expected in ((1, 1), (2, 2), (16, 2)):
        monkeypatch.setattr(train_cli, "_usable_cores", lambda cores=cores: cores)
        assert train_cli.planned_processes(_auto_args()) == expected, cores
    assert train_cli.planned_processes(_auto_args("--threads", "1")) == 1  # the user shares out the cores
    assert train_cli.planned_processes(_auto_args("--batch-size", "15")) == 1  # 15 tiles do not split in two
    # batch norm over half a batch per process would change the training (SyncBatchNorm needs CUDA)
    assert train_cli.planned_processes(train_cli.parse_args(["--recipe", "medium-strong"])) == 1
    assert train_cli.planned_processes(_auto_args("--batch-norm")) == 1
    assert train_cli.planned_processes(_auto_args("--processes", "3")) == 3
    monkeypatch.setenv("WORLD_SIZE", "2")  # a process that torchrun started never starts more
    assert train_cli.planned_processes(_auto_args("--processes", "3")) == 1
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(train_cli.torch.cuda, "is_available", lambda: True)
    assert train_cli.planned_processes(_auto_args()) == 1  # a GPU: one process, torchrun for several
    with pytest.raises(train_cli.UsageError, match="torchrun"):
        train_cli.planned_processes(_auto_args("--processes", "2"))
    monkeypatch.setattr(train_cli.sys, "platform", "win32")
    assert train_cli.planned_processes(_auto_args("--device", "cpu")) == 1


def test_processes_2_trains_under_torchrun_like_one_process(tiny_root, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_cli.main(["--data", str(tiny_root), "--out", str(one)] + TINY) == 0
    assert train_cli.main(["--data", str(tiny_root), "--out", str(two)] + TINY + ["--processes", "2"]) == 0
    assert json.loads((two / "config.json").read_text())["processes"] == 2
    a, b = history(one), history(two)
    assert close(a["train_loss"], b["train_loss"]) and a["val_tgs"] == b["val_tgs"]
    # a usage error is found before any process starts: exit status 2, nothing launched
    assert train_cli.main(["--data", str(tiny_root), "--out", str(two)] + TINY + ["--processes", "2"]) == 2


def test_resume_across_a_change_in_the_number_of_processes(tiny_root, tmp_path, monkeypatch):
    whole, moved = whole_and_interrupted(tiny_root, tmp_path, 1, monkeypatch)
    result = torchrun(["--data", str(tiny_root), "--out", str(moved), "--resume"] + TINY)  # 1 process -> 2
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed" in result.stdout
    a, b = history(whole), history(moved)
    assert b["epoch"] == [1, 2, 3] and close(a["train_loss"], b["train_loss"]) and close(a["val_loss"], b["val_loss"])


# --- predict --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tiny_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    quick = [
        "--data",
        str(tiny_root),
        "--recipe",
        "small-same",
        "--features",
        "4,8",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--limit-train",
        "32",
        "--limit-val",
        "16",
        "--finetune-epochs",
        "0",
        "--no-progress",
        "--device",
        "cpu",
        "--processes",
        "1",
    ]
    assert train_cli.main(quick + ["--out", str(runs / "same")]) == 0
    assert train_cli.main(quick + ["--out", str(runs / "valid"), "--padding", "valid", "--side", "144"]) == 0
    return runs


@pytest.fixture
def odd_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in [("tile", (101, 101)), ("wide", (120, 230)), ("small", (37, 50))]:
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.mark.parametrize("kind", ["same", "valid"])
def test_predict_writes_a_mask_per_image_of_any_size(checkpoints, odd_images, tmp_path, kind):
    out = tmp_path / "masks"
    assert (
        predict_cli.main(
            [
                "--checkpoint",
                str(checkpoints / kind / "best.pt"),
                "--images",
                str(odd_images),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--tta",
            ]
        )
        == 0
    )
    for name, (h, w) in [("tile", (101, 101)), ("wide", (120, 230)), ("small", (37, 50))]:
        mask = np.asarray(Image.open(out / f"{name}.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}


def test_predict_submission_matches_kaggles_format(checkpoints, tiny_root, tmp_path):
    from unet_helpers.data import check_submission

    sub = tmp_path / "submission.csv"
    assert (
        predict_cli.main(
            [
                "--checkpoint",
                str(checkpoints / "same" / "best.pt"),
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
    assert check_submission(sub, tiny_root / "sample_submission.csv") == 6


def test_predict_never_overwrites_without_overwrite(checkpoints, odd_images, tmp_path, capsys):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "wide.png").write_bytes(b"mine")
    assert (
        predict_cli.main(
            [
                "--checkpoint",
                str(checkpoints / "same" / "best.pt"),
                "--images",
                str(odd_images),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err and (out / "wide.png").read_bytes() == b"mine"
    assert not (out / "tile.png").exists()


def test_predict_bad_inputs_exit_2(checkpoints, odd_images, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert predict_cli.main(["--checkpoint", str(junk), "--images", str(odd_images), "--out", str(tmp_path / "o")]) == 2
    assert "junk.pt cannot be read" in capsys.readouterr().err
    assert (
        predict_cli.main(
            [
                "--checkpoint",
                str(checkpoints / "same" / "best.pt"),
                "--images",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert predict_cli.main(["--checkpoint", "x.pt", "--images", "y"]) == 2  # neither --out nor --submission
    assert "pass --out DIR (mask PNGs) or --submission FILE" in capsys.readouterr().err
