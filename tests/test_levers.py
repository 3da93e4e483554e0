"""What the TGS Salt winners added to a U-Net, each as a few lines of the package (issue 20's levers)."""

import argparse
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from unet_helpers import train as train_cli
from unet_helpers.data import make_synthetic_tgs
from unet_helpers.losses import LovaszHingeLoss, SymmetricLovaszLoss, make_loss
from unet_helpers.models import SCSE, ResidualDoubleConv, UNet, count_parameters, transfer_weights


def test_the_symmetric_lovasz_loss_scores_salt_and_sediment_alike():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 1, 12, 12), (torch.rand(3, 1, 12, 12) > 0.6).float()
    lovasz = LovaszHingeLoss()
    expected = (lovasz(logits, target) + lovasz(-logits, 1 - target)) / 2
    assert torch.allclose(make_loss("lovasz_symmetric")(logits, target), expected)
    # swapping what is salt and what is sediment (and the logits' sign) leaves it unchanged
    assert torch.allclose(SymmetricLovaszLoss()(-logits, 1 - target), expected)
    confident = 5 * (2 * target - 1)  # right everywhere, past the margin
    assert SymmetricLovaszLoss()(confident, target) == 0


def test_scse_gates_channels_and_pixels_with_values_between_0_and_1():
    torch.manual_seed(0)
    x = torch.rand(2, 8, 10, 10)
    gated = SCSE(8)(x)
    assert gated.shape == x.shape
    assert (gated >= 0).all() and (gated <= 2 * x + 1e-6).all()  # x * (a + b) with a, b in (0, 1)
    x[:, 3] = 0
    assert (SCSE(8)(x)[:, 3] == 0).all()  # a gate scales; it cannot make a dead channel speak


def test_a_residual_block_adds_its_shortcut():
    torch.manual_seed(0)
    block = ResidualDoubleConv(4, 8, "same", "zeros", batch_norm=False)
    x = torch.randn(1, 4, 9, 9)
    for conv in block.body:
        if isinstance(conv, nn.Conv2d):
            nn.init.zeros_(conv.weight), nn.init.zeros_(conv.bias)
    assert torch.allclose(block(x), torch.relu(block.shortcut(x)))  # with a silent body, only the shortcut is left
    with pytest.raises(ValueError, match="need padding='same'"):
        ResidualDoubleConv(4, 8, "valid", "zeros", batch_norm=False)


@pytest.mark.parametrize(
    "lever", [dict(block="residual"), dict(attention="scse"), dict(hypercolumn=True), dict(upsample="bilinear")]
)
def test_each_lever_keeps_the_unets_shapes_and_round_trips_its_config(lever):
    base = dict(in_channels=3, out_channels=1, features=(8, 16, 32), padding="same", batch_norm=True)
    torch.manual_seed(0)
    plain, levered = UNet(**base), UNet(**base, **lever)
    x = torch.randn(2, 3, 101, 101)
    assert levered.eval()(x).shape == (2, 1, 101, 101)
    assert count_parameters(levered) != count_parameters(plain)
    assert UNet(**levered.config()).config() == levered.config() and all(
        levered.config()[k] == v for k, v in lever.items()
    )
    rebuilt = UNet(**levered.config())
    transfer_weights(levered, rebuilt)
    assert torch.equal(levered.eval()(x), rebuilt.eval()(x))


def test_the_plain_unets_config_and_layers_do_not_change():
    """The shipped weights and every checkpoint hold the plain network: its config and tensor names stay as they were."""
    plain = UNet(3, 1, (16, 32, 64), padding="same")
    assert set(plain.config()) == {"in_channels", "out_channels", "features", "padding", "padding_mode", "batch_norm"}
    assert "encoders.0.0.weight" in plain.state_dict() and "head.weight" in plain.state_dict()


def test_a_hypercolumn_head_sees_every_decoder_level():
    net = UNet(3, 1, (8, 16, 32, 64), padding="same", hypercolumn=True)
    assert net.head.in_channels == 8 + 16 + 32
    x = torch.randn(1, 3, 48, 48, requires_grad=True)
    net(x).sum().backward()
    assert all(d.conv[0].weight.grad.abs().sum() > 0 for d in net.decoders)


@pytest.mark.parametrize("side", [101, 112, 211])
def test_the_hypercolumn_puts_every_level_back_on_the_pixels_it_covers(side):
    """With ceil_mode pooling a level's last pixel reaches past the tile (101 -> 51 -> 26 -> 13 covers 104): each level
    is upsampled by its own scale and cut to the top's size, not stretched to it, so a level's pixel k lands on the
    input pixels it covers. Checked by feeding the head, through hooks, a column ramp at each level."""
    torch.manual_seed(0)
    net = UNet(1, 1, (4, 4, 4, 4), padding="same", hypercolumn=True).eval()
    ramps = []

    def ramp(module, args, output):  # replace the decoder's output by its own column index
        ramps.append(output.shape[-1])
        return torch.arange(output.shape[-1], dtype=output.dtype).expand_as(output).clone()

    handles = [d.register_forward_hook(ramp) for d in net.decoders]
    seen = {}
    handles.append(net.head.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0])))
    with torch.no_grad():
        net(torch.rand(1, 1, side, side))
    for h in handles:
        h.remove()
    x = seen["x"]  # (1, 3 levels x 4 channels, side, side): the deepest level first
    for k in range(len(ramps)):
        scale = 2 ** (len(ramps) - 1 - k)
        read = x[0, 4 * k, 0]  # the level's column coordinate each output column reads
        interior = torch.arange(scale, side - 2 * scale)  # away from the clamped borders
        expected = (interior + 0.5) / scale - 0.5  # output column c covers the level's (c + 0.5) / scale - 0.5
        assert torch.allclose(read[interior], expected, atol=1e-4), (side, scale)
    with pytest.raises(ValueError, match="hypercolumn=True needs padding='same'"):
        UNet(1, 1, (4, 8), padding="valid", hypercolumn=True)


def test_the_trainer_takes_the_levers_from_the_command_line(tmp_path, capsys):
    root = make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2, seed=4)
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "small-same", "--features", "4,8"]
    argv += ["--batch-norm", "--block", "residual", "--attention", "scse", "--hypercolumn", "--upsample", "bilinear"]
    argv += ["--epochs", "1", "--batch-size", "8", "--limit-train", "16", "--limit-val", "8", "--no-progress"]
    argv += ["--device", "cpu", "--processes", "1", "--finetune-loss", "lovasz_symmetric", "--finetune-epochs", "1"]
    assert train_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "fine-tune stage 1 epoch of lovasz_symmetric" in out
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert checkpoint["model_config"] | {} == UNet(**checkpoint["model_config"]).config()
    assert {checkpoint["model_config"][k] for k in ("block", "attention", "hypercolumn", "upsample")} == {
        "residual",
        "scse",
        True,
        "bilinear",
    }
    assert train_cli.main([*argv[:6], "--block", "residual", "--padding", "valid"]) == 2
    assert "--block residual needs --padding same" in capsys.readouterr().err


def test_cosine_restarts_with_snapshot_averaging_keep_the_average_only_when_it_is_better(tmp_path, capsys):
    from unet_helpers.engine import average_weights
    from unet_helpers.recipes import RECIPES, build_optimizer, build_scheduler

    a, b = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(2)}, {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)}
    averaged = average_weights([a, b])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and averaged["n"] == 7  # counters: the last one's
    recipe = RECIPES["small-same"].__class__(name="r", scheduler="cosine_restarts", cycle_epochs=2, lr=1.0)
    optimizer = build_optimizer(recipe, nn.Linear(1, 1))
    scheduler = build_scheduler(recipe, optimizer, epochs=6)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert rates[0] == 1.0 and rates[1] < 1.0 and rates[2] == 1.0  # the rate restarts every 2 epochs

    root = make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2, seed=5)
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "small-same", "--features", "4,8"]
    argv += ["--scheduler", "cosine_restarts", "--cycle-epochs", "1", "--snapshot-average", "--epochs", "3"]
    argv += ["--batch-size", "8", "--limit-train", "16", "--limit-val", "8", "--no-progress", "--device", "cpu"]
    argv += ["--processes", "1", "--batch-norm"]
    assert train_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "average of 3 snapshots (epochs 1, 2, 3)" in out
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").glob("*.pt")) == [
        "epoch001.pt",
        "epoch002.pt",
        "epoch003.pt",
    ]
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)["best_score"]
    averaged = tmp_path / "run" / "averaged.pt"
    if averaged.exists():  # kept only when strictly better than the best single epoch
        assert torch.load(averaged, weights_only=False)["best_score"] > best
    assert train_cli.main([*argv[:6], "--snapshot-average"]) == 2
    assert "add --scheduler cosine_restarts" in capsys.readouterr().err


def test_after_a_fine_tune_that_loses_the_averaged_main_stage_is_what_the_run_returns(tmp_path, monkeypatch):
    from unet_helpers import recipes
    from unet_helpers.data import load_tgs_split
    from unet_helpers.engine import load_checkpoint, save_checkpoint

    real = recipes._use_snapshot_average

    def average_that_wins(recipe, model, snapshots, run_dir, *rest):
        real(recipe, model, snapshots, run_dir, *rest)
        best = torch.load(run_dir / "best.pt", weights_only=False)
        with torch.no_grad():  # an average no fine-tune epoch can beat: a score of 2
            for p in model.parameters():
                p.add_(0.5)
        save_checkpoint(run_dir / "averaged.pt", **{**best, "model": model.state_dict(), "best_score": 2.0})
        return run_dir / "averaged.pt", 2.0

    monkeypatch.setattr(recipes, "_use_snapshot_average", average_that_wins)
    arrays = load_tgs_split(make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2, seed=5))
    recipe = recipes.RECIPES["small-same"].scaled(2, 1)
    recipe = dataclasses.replace(
        recipe, model=dict(recipe.model, features=(4, 8)), scheduler="cosine_restarts", cycle_epochs=1,
        snapshot_average=True, finetune_loss="lovasz", batch_size=8,
    )  # fmt: skip
    train_ds, val_ds = recipes.make_datasets(recipe, arrays, arrays.ids[:16], arrays.ids[16:24])
    model, history = recipes.run_recipe(recipe, train_ds, val_ds, tmp_path / "run", torch.device("cpu"), progress=False)
    assert len(history["epoch"]) == 3 and max(history["val_tgs"]) <= 1  # the fine-tune ran and did not reach 2
    averaged = recipes.build_model(recipe)
    load_checkpoint(tmp_path / "run" / "averaged.pt", averaged)
    for kept, expected in zip(model.state_dict().values(), averaged.state_dict().values()):
        assert torch.equal(kept, expected)


def test_overwriting_a_run_from_python_leaves_nothing_of_the_earlier_runs_stages(tmp_path):
    """run_recipe(overwrite=True), as the trainer's --overwrite: an earlier run's fine-tune checkpoint, averaged
    weights or snapshots would otherwise be exported (best_checkpoint picks the highest score) or averaged in."""
    from unet_helpers import recipes
    from unet_helpers.data import load_tgs_split

    arrays = load_tgs_split(make_synthetic_tgs(tmp_path / "tgs", n_train=24, n_test=2, seed=6))
    recipe = recipes.RECIPES["small-same"].scaled(1, 0)
    recipe = dataclasses.replace(recipe, model=dict(recipe.model, features=(4, 8)), batch_size=8)
    run = tmp_path / "run"
    stale = [run / "averaged.pt", run / "finetune" / "best.pt", run / "snapshots" / "epoch099.pt"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"an earlier run's")
    (run / "notes.txt").write_text("the user's")
    train_ds, val_ds = recipes.make_datasets(recipe, arrays, arrays.ids[:16], arrays.ids[16:])
    recipes.run_recipe(
        recipe, train_ds, val_ds, run, torch.device("cpu"), overwrite=True, progress=False, verbose=False
    )
    assert not any(path.exists() for path in stale)
    assert (run / "best.pt").is_file() and (run / "notes.txt").read_text() == "the user's"  # nothing else touched


def test_a_finished_run_is_not_handed_back_for_other_tiles(tmp_path):
    """Notebook 04 once returned its real-data run's model and curves when its data became the stand-in: a run's
    folder named the recipe and the seed only. The tiles are now part of the config every checkpoint keeps."""
    from unet_helpers import recipes
    from unet_helpers.data import load_tgs_split
    from unet_helpers.engine import CheckpointError

    recipe = recipes.RECIPES["small-same"].scaled(1, 0)
    recipe = dataclasses.replace(recipe, model=dict(recipe.model, features=(4, 8)), batch_size=8)
    run, cpu = tmp_path / "run", torch.device("cpu")
    first = load_tgs_split(make_synthetic_tgs(tmp_path / "a", n_train=24, n_test=2, seed=6))
    other = load_tgs_split(make_synthetic_tgs(tmp_path / "b", n_train=24, n_test=2, seed=7))
    _, history = recipes.run_recipe(
        recipe, *recipes.make_datasets(recipe, first, first.ids[:16], first.ids[16:]), run, cpu, progress=False
    )
    again = recipes.make_datasets(recipe, first, first.ids[:16], first.ids[16:])
    assert recipes.tiles_fingerprint(*again).startswith("16 training + 8 validation tiles, sha1 ")
    _, resumed = recipes.run_recipe(recipe, *again, run, cpu, progress=False, verbose=False)  # the same tiles
    assert resumed["val_tgs"] == history["val_tgs"]
    checkpoint = torch.load(run / "last.pt", weights_only=False)  # as written before checkpoints kept the tiles
    del checkpoint["config"]["tiles"]
    torch.save(checkpoint, run / "last.pt")
    _, old = recipes.run_recipe(recipe, *again, run, cpu, progress=False, verbose=False)
    assert old["val_tgs"] == history["val_tgs"]  # still resumed (loaded), not refused for a key it could not record
    torch.save(
        dict(checkpoint, config=dict(checkpoint["config"], tiles=recipes.tiles_fingerprint(*again))), run / "last.pt"
    )
    for train_ids, val_ids, arrays in (
        (first.ids[:12], first.ids[16:], first),  # fewer training tiles
        (first.ids[8:], first.ids[:8], first),  # another split of the same tiles
        (other.ids[:16], other.ids[16:], other),  # other data with as many tiles
    ):
        datasets = recipes.make_datasets(recipe, arrays, train_ids, val_ids)
        with pytest.raises(CheckpointError, match=r"differs in: tiles, '16 training \+ 8 validation tiles, sha1 "):
            recipes.run_recipe(recipe, *datasets, run, cpu, progress=False, verbose=False)


def test_the_salt_head_learns_beside_the_mask_and_empties_the_tiles_it_calls_empty():
    from unet_helpers.losses import SaltHeadLoss, SoftDiceLoss

    torch.manual_seed(0)
    net = UNet(3, 1, (8, 16, 32), padding="same", salt_head=True)
    x = torch.randn(4, 3, 48, 48)
    target = torch.zeros(4, 1, 48, 48)
    target[:2, :, 10:20, 10:20] = 1  # two tiles with salt, two empty
    logits = net.train()(x)
    assert net.salt_logit.shape == (4, 1)
    expected = SoftDiceLoss()(logits, target) + 0.1 * nn.functional.binary_cross_entropy_with_logits(
        net.salt_logit, torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    )
    assert torch.allclose(SaltHeadLoss(SoftDiceLoss(), net)(logits, target), expected)
    net.eval()
    with torch.no_grad():
        net.salt_classifier[-1].bias.fill_(-100.0)  # it calls every tile empty
        assert (net(x) <= -10).all()
        net.salt_classifier[-1].bias.fill_(100.0)  # it calls every tile salty: the masks are the decoder's own
        assert net(x).max() > -10
    assert UNet(**net.config()).config()["salt_head"] is True


def test_the_trainer_supervises_the_salt_head(tmp_path):
    root = make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2, seed=7)
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "small-same", "--features", "4,8"]
    argv += ["--salt-head", "--epochs", "1", "--batch-size", "8", "--limit-train", "16", "--limit-val", "8"]
    argv += ["--no-progress", "--device", "cpu", "--processes", "1"]
    assert train_cli.main(argv) == 0
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert checkpoint["model_config"]["salt_head"] is True and "salt_classifier.2.weight" in checkpoint["model"]


# --- the lever table (unet_helpers.levers): rows, records, the summary --------------------------------------------


def test_every_row_is_medium_strong_with_its_one_change():
    from unet_helpers.levers import ROWS, row_recipe
    from unet_helpers.recipes import RECIPES

    strong = RECIPES["medium-strong"]
    assert row_recipe("baseline") == strong
    scse = row_recipe("+ scSE")
    assert scse.model == {**strong.model, "attention": "scse"} and scse.loss == strong.loss
    assert row_recipe("- fifth level").model["features"] == (16, 32, 64, 128)
    assert row_recipe("- Lovasz stage").finetune_epochs == 0 and not row_recipe("- Lovasz stage").has_finetune
    restarts = row_recipe("+ cosine restarts, snapshots averaged")
    assert (restarts.scheduler, restarts.cycle_epochs, restarts.snapshot_average) == ("cosine_restarts", 10, True)
    # a short run still restarts, and each cycle still anneals (the rate steps once an epoch): 8 epochs, 2 cycles of 4
    assert row_recipe("+ cosine restarts, snapshots averaged", epochs=8).cycle_epochs == 4
    # and every budget is whole cycles: a run that stopped part way up a cycle would end at a high rate
    for epochs, cycle in ((50, 10), (20, 4), (12, 4), (30, 6), (16, 4)):
        assert row_recipe("+ cosine restarts, snapshots averaged", epochs=epochs).cycle_epochs == cycle
        assert epochs % cycle == 0 and 2 <= epochs // cycle <= 5
    with pytest.raises(ValueError, match="13 main epochs do not divide.*e.g. 10, 12, 14, 15, 16"):
        row_recipe("+ cosine restarts, snapshots averaged", epochs=13)
    # without batch norm both stages train at a thirtieth of the rates: the fine-tune a tenth of the main stage's, as
    # in medium-strong (at medium-strong's 3e-4 it would train three times faster than the main stage)
    no_bn = row_recipe("- batch norm (lr 1e-4)")
    assert no_bn.model["batch_norm"] is False and (no_bn.lr, no_bn.finetune_lr) == (1e-4, 1e-5)
    assert strong.lr / strong.finetune_lr == pytest.approx(10) == no_bn.lr / no_bn.finetune_lr
    # the side follows the network: four poolings fit 101 in 104 pixels, five in 112
    assert (row_recipe("- fifth level").side, strong.side) == (104, 112)
    short = row_recipe("+ symmetric Lovasz", epochs=8)  # the fine-tune keeps its share: 50 + 15 -> 8 + 2
    assert (short.epochs, short.finetune_epochs, short.finetune_loss) == (8, 2, "lovasz_symmetric")
    assert len(ROWS) == 14 and sum(name.startswith("+") for name in ROWS) == 7
    with pytest.raises(ValueError, match="unknown row 'scse'.*\\+ scSE"):
        row_recipe("scse")


def test_the_summary_compares_each_seed_with_the_baseline_of_the_same_seed():
    from unet_helpers.levers import markdown_table, summarise

    record = {
        "rows": {
            "baseline": {"scores": {"0": 0.70, "1": 0.60}, "baselines": {"0": 0.70, "1": 0.60}},
            "+ a": {"scores": {"0": 0.72, "1": 0.63}, "baselines": {"0": 0.70, "1": 0.60}},  # +0.02, +0.03
            "+ b": {"scores": {"0": 0.75, "1": 0.55}, "baselines": {"0": 0.70, "1": 0.60}},  # +0.05, -0.05
            "+ c": {"scores": {"0": 0.71, "1": None}, "baselines": {"0": 0.70, "1": 0.60}},  # one seed unfinished
        }
    }
    base, a, b, c = summarise(record)
    assert base["real"] is None and base["mean"] == pytest.approx(0.65)
    assert a["differences"] == pytest.approx([0.02, 0.03]) and a["difference"] == pytest.approx(0.025)
    assert a["real"] and 0 < a["p"] < 0.2  # above its spread; a paired t-test of two seeds is still weak evidence
    assert b["difference"] == pytest.approx(0) and not b["real"] and b["p"] == pytest.approx(1)
    # one seed so far: a difference but no spread, so no verdict either way ("-", not "no")
    assert c["seeds"] == 1 and c["differences"] == pytest.approx([0.01]) and c["real"] is None
    assert a["difference_seeds"] == [0, 1] and c["difference_seeds"] == [0]
    table = markdown_table([base, a, b, c])
    assert "| + a | 0.675 +- 0.064 | +0.025 +- 0.007 | yes | 0.13 |" in table
    assert "| + c | 0.710 +- nan | +0.010 +- nan | - | - |" in table
    later = summarise({"rows": {"+ d": {"scores": {"0": None, "1": 0.62}, "baselines": {"0": 0.70, "1": 0.60}}}})[0]
    assert later["difference_seeds"] == [1]  # seed 1's difference stays seed 1's when seed 0 is still to come


def test_every_row_can_be_read_against_the_other_run_of_its_seeds_baseline():
    from unet_helpers.levers import against_other_runs, rerun_gaps, summarise

    record = {
        "baseline_reruns": {"1": [0.60, 0.64]},
        "rows": {
            "baseline": {"scores": {"0": 0.70, "1": 0.60}, "baselines": {"0": 0.70, "1": 0.60}},
            "+ a": {"scores": {"0": 0.72, "1": 0.62}, "baselines": {"0": 0.70, "1": 0.60}, "note": "why"},
            "+ b": {"scores": {"0": 0.69, "1": 0.65}, "baselines": {"0": 0.70, "1": 0.64}},
        },
    }
    assert rerun_gaps(record) == {"1": pytest.approx(0.04)}
    swapped = against_other_runs(record)
    assert swapped["rows"]["+ a"]["baselines"] == {"0": 0.70, "1": 0.64}  # seed 0 ran once: kept
    assert swapped["rows"]["+ b"]["baselines"] == {"0": 0.70, "1": 0.60}
    a = summarise(swapped)[1]
    assert a["differences"] == pytest.approx([0.02, -0.02]) and a["note"] == "why"
    assert against_other_runs({"rows": record["rows"]})["rows"] == record["rows"]  # no reruns: nothing to swap


def test_a_table_measured_in_parts_merges_into_one_record():
    from unet_helpers.levers import known_score, merge_records, rerun_gaps, summarise

    # A first loan: seed 0 of every row, and seed 0's baseline once of twice
    first = {
        "epochs": 50, "finetune_epochs": 15, "seeds": [0, 1], "device": "NVIDIA H200", "command": "part 1",
        "baseline_reruns": {"0": [0.70, None], "1": [None, None]},
        "rows": {
            "baseline": {"scores": {"0": 0.70, "1": None}, "baselines": {"0": 0.70, "1": None}},
            "+ a": {"scores": {"0": 0.72, "1": None}, "baselines": {"0": 0.70, "1": None}, "note": "why"},
        },
    }  # fmt: skip
    assert known_score(first, "+ a", 0) == 0.72 and known_score(first, "+ a", 1) is None
    assert known_score(first, "baseline", 0, run=1) is None and known_score(first, "+ a", 0, run=1) is None
    # A second loan on another card trains what the first lacks; its "+ a" is compared with its own baseline
    second = {
        "epochs": 50, "finetune_epochs": 15, "seeds": [0, 1], "device": "NVIDIA H100", "command": "part 2",
        "baseline_reruns": {"0": [None, 0.66], "1": [0.60, 0.62]},
        "rows": {
            "baseline": {"scores": {"0": None, "1": 0.60}, "baselines": {"0": None, "1": 0.60}},
            "+ a": {"scores": {"0": None, "1": 0.65}, "baselines": {"0": None, "1": 0.60}},
        },
    }  # fmt: skip
    merged = merge_records([first, second])
    assert merged["rows"]["baseline"]["scores"] == {"0": 0.70, "1": 0.60}
    assert merged["rows"]["+ a"] == {
        "scores": {"0": 0.72, "1": 0.65},
        "baselines": {"0": 0.70, "1": 0.60},
        "note": "why",
        "calls": {"0": 0, "1": 1},  # which call trained each run: "part 1" and "part 2" of the merged command
    }
    assert merged["baseline_reruns"] == {"0": [0.70, 0.66], "1": [0.60, 0.62]}
    assert rerun_gaps(merged) == {"0": pytest.approx(0.04), "1": pytest.approx(0.02)}
    assert merged["device"] == "NVIDIA H200; NVIDIA H100" and merged["parts"] == 2 and merged["seeds"] == [0, 1]
    assert summarise(merged)[1]["differences"] == pytest.approx([0.02, 0.05])
    # A row whose part ran no baseline for its seed takes the first baseline run of that seed
    third = {**second, "rows": {"+ b": {"scores": {"0": 0.69, "1": None}, "baselines": {"0": None, "1": None}}}}
    assert merge_records([first, third])["rows"]["+ b"]["baselines"] == {"0": 0.70, "1": None}
    assert rerun_gaps(first) == {}  # the second run is still to come
    # levers.py --previous writes each part's record as the merge of everything before it: given the first part and
    # that merge, nothing is counted twice
    again = merge_records([first, merged, {**second, "command": "part 3", "date": "2026-11-27"}])
    assert again["parts"] == 3 and again["command"] == "part 1; part 2; part 3"
    assert again["device"] == "NVIDIA H200; NVIDIA H100" and again["rows"] == merged["rows"]
    # a run of the third call is that call's, and a merged part's runs keep the calls it recorded
    third_call = {**second, "command": "part 3", "rows": {"+ a": {"scores": {"0": None, "1": 0.61}, "baselines": {}}}}
    assert merge_records([first, third_call, merged])["rows"]["+ a"]["calls"] == {"0": 0, "1": 1}
    assert merge_records([merged, third_call])["rows"]["+ a"]["calls"] == {"0": 0, "1": 1}
    assert merge_records([first, {**second, "command": "part 3"}])["rows"]["+ a"]["calls"] == {"0": 0, "1": 1}
    # a run the part found trained by an earlier call of the same folder, whose command it does not hold: unknown
    found = {**second, "command": "part 3", "rows": {"+ a": {**second["rows"]["+ a"], "calls": {"0": None, "1": None}}}}
    assert merge_records([first, found])["rows"]["+ a"]["calls"] == {"0": 0, "1": None}
    with pytest.raises(ValueError, match=r"different budgets.*\(8, 2\), \(50, 15\)"):
        merge_records([first, {**second, "epochs": 8, "finetune_epochs": 2}])
    # a part dealt on another split compared its rows on other tiles: refused, whatever its budget
    assert merged["split"] == {"val_fraction": 0.2, "test_fraction": 0.1}  # the table's, where a part names none
    with pytest.raises(ValueError, match=r"different splits.*\(0.1, 0.1\), \(0.2, 0.1\)"):
        merge_records([first, {**second, "split": {"val_fraction": 0.1, "test_fraction": 0.1}}])


def test_the_shipped_lever_record_holds_every_row_for_every_seed():
    from unet_helpers.levers import ROWS, available_records, load_record, summarise

    assert "levers-h200-8+2-epochs" in available_records()
    record = load_record("levers-h200-8+2-epochs")
    assert list(record["rows"]) == list(ROWS) and record["seeds"] == [0, 1]
    assert (record["epochs"], record["finetune_epochs"]) == (8, 2)
    assert (
        set(record["baseline_reruns"]) == {"1"}
        and record["rows"]["baseline"]["scores"]["1"] in record["baseline_reruns"]["1"]
    )
    assert "not a test" in record["rows"]["+ cosine restarts, snapshots averaged"]["note"]
    for row in summarise(record):
        assert row["seeds"] == 2 and all(0.39 < s < 1 for s in row["scores"])
    with pytest.raises(ValueError, match="no lever record 'levers-nope'.*levers-h200"):
        load_record("levers-nope")


def test_the_lever_record_at_medium_strongs_budget_says_how_many_of_its_runs_are_measured():
    from unet_helpers.levers import ROWS, load_record, summarise

    record = load_record("levers-h200-50+15-epochs")
    assert (record["epochs"], record["finetune_epochs"]) == (50, 15) and record["seeds"] == [0, 1, 2]
    assert list(record["rows"]) == list(ROWS)
    scores = [s for row in record["rows"].values() for s in row["scores"].values() if s is not None]
    reruns = [s for runs in record["baseline_reruns"].values() for s in runs[1:] if s is not None]
    assert all(0.39 < s < 1 for s in scores + reruns)  # every measured run beats predicting nothing
    runs = len(ROWS) * 3 + sum(len(r) - 1 for r in record["baseline_reruns"].values())
    assert runs == 45 and f"{len(scores) + len(reruns)} of the table's {runs} runs" in record["what"]
    assert "70/20/10 (2,100 training, 600 validation, 300 held-out" in record["what"]
    assert record["split"] == {"val_fraction": 0.2, "test_fraction": 0.1}  # what levers.train_row deals
    # every seed's differences are against that seed's baseline, which each measured row has
    for name, row in record["rows"].items():
        for seed, score in row["scores"].items():
            assert score is None or row["baselines"][seed] == record["rows"]["baseline"]["scores"][seed], (name, seed)
    assert all(row["seeds"] >= 1 for row in summarise(record))


def test_the_whole_lever_table_at_medium_strongs_budget_says_what_notebook_08_reads_in_it():
    """Notebook 08, section 3: the rerun gaps, the four rows that keep their direction on every seed by more than
    their seed's gap and the pooled gap, the two p values below 0.05, and none below 0.07 against the reruns."""
    from unet_helpers.levers import against_other_runs, load_record, rerun_gaps, summarise

    record = load_record("levers-h200-50+15-epochs")
    gaps = rerun_gaps(record)
    assert [round(gaps[seed], 3) for seed in ("0", "1", "2")] == [0.010, 0.001, 0.003]
    pooled = np.sqrt(np.mean(np.square(list(gaps.values()))))
    assert round(pooled, 3) == 0.006
    table = {row["name"]: row for row in summarise(record) if row["name"] != "baseline"}
    clear = {
        name
        for name, row in table.items()
        if all(
            np.sign(d) == np.sign(row["difference"]) and abs(d) > max(gap, pooled)
            for d, gap in zip(row["differences"], (gaps["0"], gaps["1"], gaps["2"]))
        )
    }
    assert clear == {
        "+ residual blocks",
        "+ empty/non-empty head, deep supervision",
        "- batch norm (lr 1e-4)",
        "- BCE + Dice (BCE alone)",
    }
    assert {name for name, row in table.items() if row["p"] < 0.05} == {
        "- batch norm (lr 1e-4)",
        "- BCE + Dice (BCE alone)",
    }
    same_sign = {name for name, row in table.items() if len({np.sign(d) for d in row["differences"]}) == 1}
    assert len(same_sign) == 8  # the four above, no flips, the hypercolumn head, cosine restarts, Adam + plateau
    others = against_other_runs(record)
    assert min(row["p"] for row in summarise(others) if row["name"] != "baseline") > 0.065  # 0.07 at the least


def test_the_lever_table_trains_every_rows_second_seed_and_the_rerun_gap_before_any_third_seed():
    """Measured in parts of about 16 runs a GPU loan, the table reads best after each loan when a seed's baseline rerun
    (the noise a difference is read against) and every row's second seed come before any row's third seed."""
    from unet_helpers.levers import ROWS, known_score, load_record, without_changed_rows

    bench = load_levers_benchmark()
    rows = list(ROWS)
    jobs = bench.job_order(rows, [0, 1, 2], baseline_runs=2)
    assert len(jobs) == len(set(jobs)) == 45 and jobs[0] == ("baseline", 0, 0)
    assert jobs[len(rows)] == ("baseline", 0, 1)  # seed 0's rerun right after seed 0's rows
    second_seed = max(jobs.index((name, 1, 0)) for name in rows)
    assert second_seed < jobs.index(("baseline", 1, 1)) < min(jobs.index((name, 2, 0)) for name in rows)
    assert bench.job_order(rows, [0], baseline_runs=1) == [(name, 0, 0) for name in rows]

    # the shipped record holds the whole table: every row on three seeds and every seed's baseline rerun, with no row
    # changed since its runs, so --previous of it would train nothing again
    record = without_changed_rows(load_record("levers-h200-50+15-epochs"))
    assert [job for job in jobs if known_score(record, *job) is None] == []


def test_a_rows_own_change_wins_over_the_trainer_options_the_benchmark_passes_on(tmp_path):
    """The options after ``--`` change the baseline for every row; a row's own change must still be made, or
    "- Lovasz stage" given --finetune-epochs 15 would train exactly as the baseline does."""
    from unet_helpers.train import parse_args

    bench = load_levers_benchmark()
    args = argparse.Namespace(data=tmp_path, out=tmp_path / "runs", device_batches=False)
    extra = ["--epochs=8", "--finetune-epochs", "2", "--lr", "0.002"]
    assert bench.epochs_of(extra) == 8 and bench.epochs_of(extra, "--finetune-epochs") == 2
    assert bench.epochs_of(["--epochs", "8", "--epochs", "9"]) == 9 and bench.epochs_of([]) is None

    def parsed(name):
        command = bench.train_command(name, 0, args, extra)
        return parse_args(command[command.index("--data") :])

    assert (parsed("baseline").finetune_epochs, parsed("baseline").lr) == (2, 0.002)
    assert parsed("- Lovasz stage").finetune_epochs == 0 and parsed("- Lovasz stage").epochs == 8
    assert (parsed("- batch norm (lr 1e-4)").lr, parsed("- batch norm (lr 1e-4)").finetune_lr) == (1e-4, 1e-5)
    assert parsed("+ cosine restarts, snapshots averaged").cycle_epochs == 4


def test_a_row_changed_since_an_earlier_part_is_trained_again():
    """Each row of a record holds the options its runs were trained with. When a row changes (the batch-norm row's
    fine-tune rate, 2026-11-27), the runs the earlier parts hold of it are taken out, so the next part trains them
    again, and no merge mixes runs of two trainings in one row."""
    from unet_helpers.levers import (
        ROWS,
        changed_rows,
        known_score,
        load_record,
        merge_records,
        recorded_options,
        without_changed_rows,
    )

    no_bn = "- batch norm (lr 1e-4)"
    old = ["--no-batch-norm", "--lr", "1e-4"]

    def part(options, score, command):
        return {
            "epochs": 50, "finetune_epochs": 15, "seeds": [0], "command": command,
            "rows": {
                "baseline": {"options": [], "scores": {"0": 0.70}, "baselines": {"0": 0.70}, "calls": {"0": 0}},
                no_bn: {"options": options, "scores": {"0": score}, "baselines": {"0": 0.70}, "calls": {"0": 0},
                        "note": "about the old run"},
            },
        }  # fmt: skip

    earlier = part(old, 0.69, "call a")
    assert changed_rows(earlier) == [no_bn] and changed_rows(part(ROWS[no_bn], 0.69, "c")) == []
    cleaned = without_changed_rows(earlier)
    assert known_score(cleaned, no_bn, 0) is None and known_score(cleaned, "baseline", 0) == 0.70
    assert cleaned["rows"][no_bn]["options"] == ROWS[no_bn] and "note" not in cleaned["rows"][no_bn]
    assert earlier["rows"][no_bn]["scores"] == {"0": 0.69}  # the part itself is left as it was
    merged = merge_records([cleaned, part(ROWS[no_bn], 0.72, "call b")])
    assert merged["rows"][no_bn]["scores"] == {"0": 0.72} and merged["rows"][no_bn]["options"] == ROWS[no_bn]
    assert merged["rows"][no_bn]["calls"] == {"0": 1} and merged["rows"]["baseline"]["calls"] == {"0": 0}
    with pytest.raises(ValueError, match="different options.*without_changed_rows"):
        merge_records([earlier, part(ROWS[no_bn], 0.72, "call b")])
    # the shipped records: the batch-norm row's runs were trained at the old fine-tune rate, and say so; at 8 + 2
    # epochs the cosine-restart row ran one 10-epoch cycle (its note), where the row now restarts every 4 epochs
    restarts = "+ cosine restarts, snapshots averaged"
    record = load_record("levers-h200-8+2-epochs")
    assert changed_rows(record) == [restarts, no_bn] and record["rows"][no_bn]["options"] == old
    assert "3e-4" in record["rows"][no_bn]["note"] and "1e-5" in record["rows"][no_bn]["note"]
    for n, row in record["rows"].items():
        assert n in (restarts, no_bn) or row["options"] == recorded_options(n, record["epochs"]), n
    # at 50 + 15 epochs the batch-norm row's seed 0 was trained again at today's rate: nothing left to retrain
    record = load_record("levers-h200-50+15-epochs")
    assert changed_rows(record) == [] and "note" not in record["rows"][no_bn]
    assert all(row["options"] == recorded_options(n, record["epochs"]) for n, row in record["rows"].items())
    assert recorded_options(restarts, 50)[-2:] == ["--cycle-epochs", "10"]
    assert load_record("levers-h200-8+2-epochs")["rows"][restarts]["options"][-1] == "10"


def test_a_notebook_row_is_split_and_trained_as_the_benchmark_trains_it(tmp_path, monkeypatch):
    import unet_helpers.levers as levers
    from unet_helpers.data import load_tgs_split
    from unet_helpers.train import parse_args

    bench = load_levers_benchmark()
    args = argparse.Namespace(data=tmp_path, out=tmp_path / "runs", device_batches=False)
    command = bench.train_command("+ scSE", 2, args, ["--epochs", "3"])
    parsed = parse_args(command[command.index("--data") :])
    assert (parsed.val_fraction, parsed.test_fraction) == (levers.VAL_FRACTION, levers.TEST_FRACTION) == (0.2, 0.1)
    assert parsed.seed == 2 and parsed.split_seed is None and parsed.attention == "scse"
    seen = {}

    def split_and_stop(arrays, val_fraction, test_fraction, seed):
        seen.update(val=val_fraction, test=test_fraction, seed=seed)
        raise KeyboardInterrupt  # enough: the split is what is checked

    monkeypatch.setattr(levers, "split_three_ways", split_and_stop)
    arrays = load_tgs_split(make_synthetic_tgs(tmp_path / "tgs", n_train=20, n_test=2, seed=6))
    with pytest.raises(KeyboardInterrupt):
        levers.train_row("+ scSE", arrays, tmp_path / "run", torch.device("cpu"), seed=2)
    assert seen == dict(val=parsed.val_fraction, test=parsed.test_fraction, seed=parsed.seed)


def test_the_lever_benchmark_refuses_an_earlier_part_of_another_budget_or_split_before_training(tmp_path):
    import json

    bench = load_levers_benchmark()
    part = {"epochs": 50, "finetune_epochs": 15, "split": {"val_fraction": 0.2, "test_fraction": 0.1}, "rows": {}}
    path = tmp_path / "part1.json"
    path.write_text(json.dumps(part))
    assert bench.read_record(path, 50, 15) == part
    with pytest.raises(SystemExit, match="part1.json was trained for 50 \\+ 15 epochs, this call for 8 \\+ 2"):
        bench.read_record(path, 8, 2)
    path.write_text(json.dumps({**part, "split": {"val_fraction": 0.1, "test_fraction": 0.1}}))
    with pytest.raises(SystemExit, match="part1.json dealt the split .*0.1.*must share the split"):
        bench.read_record(path, 50, 15)
    with pytest.raises(SystemExit, match="nope.json: no such file"):
        bench.read_record(tmp_path / "nope.json", 50, 15)


def test_a_lever_record_keeps_no_machines_folders_in_its_command():
    bench = load_levers_benchmark()
    argv = [
        "--data",
        str(bench.ROOT / "data" / "tgs-salt"),
        "--out",
        "/tmp/lv",
        "--deadline",
        "459.894",
        "--only",
        "+ scSE",
        "--",
        "--epochs",
        "50",
    ]
    assert bench.recorded_command(argv) == (  # a command that can be pasted back into a shell
        "python benchmarks/levers.py --data data/tgs-salt --out /tmp/lv --deadline 460 --only '+ scSE' -- --epochs 50"
    )


def test_the_flagship_candidates_are_scored_on_medium_strongs_own_held_out_tiles():
    from unet_helpers.levers import load_flagship_candidates
    from unet_helpers.pretrained import load_card

    record, card = load_flagship_candidates(), load_card("medium-strong")
    assert record["held_out_ids"] == card["data"]["held_out_ids"] and len(record["held_out_ids"]) == 300
    medium_strong = np.array(record["medium_strong"])
    assert medium_strong.mean() == pytest.approx(card["held_out"]["tgs"], abs=1e-4)
    assert sum(record["empty"]) == 117  # the tiles without salt among the 300
    assert len(record["candidates"]) == 3
    for candidate in record["candidates"]:
        scores = np.array(candidate["per_tile"])
        assert len(scores) == 300 and np.allclose(scores * 10, np.round(scores * 10))  # ten thresholds: tenths
        assert scores.mean() == pytest.approx(candidate["held_out_tgs"], abs=1e-4)
        assert len(candidate["val_history"]) == candidate["epochs_run"]
        assert 0.77 < candidate["held_out_tgs"] < 0.79 < 0.83 < candidate["val_tgs"]["best_with_tta"]  # goal: 0.82
        assert "--split-like medium-strong" in candidate["command"]
        assert 0.77 < candidate["held_out_plain"] <= candidate["held_out_tgs"]  # post-processing chosen on validation
        assert candidate["weights"]["val_tgs_float16"] <= candidate["weights"]["val_tgs_float32"]
    # the export that stored a running variance of 419,787 in float16 (inf) is kept in the record, and lost 0.04
    before = record["candidates"][-1]["weights"]["before_fix"]
    assert before["val_tgs_float16"] < record["candidates"][-1]["weights"]["val_tgs_float16"] - 0.03


def test_the_recorded_folds_validate_every_tile_of_medium_strongs_split_once_and_hold_out_its_held_out_tiles():
    from unet_helpers.levers import load_flagship_candidates
    from unet_helpers.pretrained import load_card

    record, card = load_flagship_candidates(), load_card("medium-strong")
    (average,) = record["fold_averages"]
    folds = [fold["val_ids"] for fold in average["folds"]]
    pool = card["data"]["train_ids"] + card["data"]["val_ids"]
    assert len(folds) == 5 and sorted(i for ids in folds for i in ids) == sorted(pool)  # each of the 2,700 once
    assert {len(ids) for ids in folds} == {540} and not set(pool) & set(record["held_out_ids"])
    assert "--folds 5 --fold 0" in average["command"] and "--split-like medium-strong" in average["command"]
    scores = np.array(average["per_tile"])
    assert len(scores) == 300 and scores.mean() == pytest.approx(average["held_out_tgs"], abs=1e-4)
    alone = [fold["held_out_tgs"] for fold in average["folds"]]
    assert all(np.mean(fold["per_tile"]) == pytest.approx(fold["held_out_tgs"], abs=1e-4) for fold in average["folds"])
    assert average["out_of_fold"]["tiles"] == 2700 and max(alone) < average["held_out_tgs"] < 0.82  # goal: 0.82


def test_a_flagship_candidate_is_added_to_its_record_or_replaces_one_of_the_same_label():
    from unet_helpers.levers import add_flagship_candidate

    def card(epochs):
        return dict(
            training=dict(command="python -m unet_helpers.train ...", device="cpu", epochs_run=epochs,
                          wall_time_s=120.0, chosen_checkpoint="main stage, epoch 2"),
            recipe=dict(epochs=epochs, cycle_epochs=None),
            postprocessing=dict(val_tgs=dict(best_with_tta=0.8)),
            history=dict(val_tgs=[0.5 + 0.01 * k for k in range(epochs)]),
        )  # fmt: skip

    ids, empty = ["a", "b", "c"], np.array([True, False, False])
    base = np.array([1.0, 0.3, 0.0])
    record = add_flagship_candidate(None, "first", card(2), ids, empty, base, np.array([0.0, 0.5, 0.7]))
    assert record["empty"] == [True, False, False] and record["medium_strong"] == [1.0, 0.3, 0.0]
    (first,) = record["candidates"]
    assert first["held_out_tgs"] == 0.4 and first["per_tile"] == [0.0, 0.5, 0.7] and first["training_minutes"] == 2.0
    assert first["val_history"] == [0.5, 0.51] and first["epochs_run"] == 2
    record = add_flagship_candidate(record, "second", card(3), ids, empty, base, np.array([1.0, 0.4, 0.1]))
    record = add_flagship_candidate(record, "first", card(4), ids, empty, base, np.array([1.0, 1.0, 1.0]))
    assert [c["label"] for c in record["candidates"]] == ["second", "first"]  # replaced, not added twice
    assert record["candidates"][1]["held_out_tgs"] == 1.0
    with pytest.raises(ValueError, match="other held-out tiles"):
        add_flagship_candidate(record, "third", card(2), ["a", "b", "d"], empty, base, base)


def test_a_row_trains_and_is_scored_on_its_held_out_tiles(tmp_path):
    from unet_helpers.data import load_tgs_split
    from unet_helpers.levers import train_row
    from unet_helpers.postprocess import MIN_AREAS, THRESHOLDS

    arrays = load_tgs_split(make_synthetic_tgs(tmp_path / "tgs", n_train=60, n_test=2, seed=6))
    got = train_row("+ scSE", arrays, tmp_path / "run", torch.device("cpu"), epochs=1, limit_train=8, progress=False)
    assert got["recipe"].model["attention"] == "scse" and len(got["history"]["epoch"]) == 1
    assert 0 <= got["held_out_tgs"] <= 1 and got["threshold"] in THRESHOLDS and got["min_area"] in MIN_AREAS
    again = train_row("+ scSE", arrays, tmp_path / "run", torch.device("cpu"), epochs=1, limit_train=8, progress=False)
    assert again["held_out_tgs"] == got["held_out_tgs"]  # the finished run is loaded, not trained again
    # flip TTA is chosen on the validation tiles, as the benchmark's export chooses it (a tie: without); the same
    # run, loaded (this test once left limit_train out here, and the run on 8 tiles was handed back for all 45)
    fixed = {
        flip: train_row(
            "+ scSE", arrays, tmp_path / "run", torch.device("cpu"), epochs=1, limit_train=8, tta=flip, progress=False
        )
        for flip in (False, True)
    }
    assert got["tta"] == (fixed[True]["val_tgs"] > fixed[False]["val_tgs"])
    assert got["val_tgs"] == max(f["val_tgs"] for f in fixed.values())
    assert got["held_out_tgs"] == fixed[got["tta"]]["held_out_tgs"]


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_tiles():
    from unet_helpers.levers import bootstrap_interval

    rng = np.random.default_rng(1)
    few, many = rng.choice([-1.0, 0.0, 0.0, 0.1, 1.0], 50), rng.choice([-1.0, 0.0, 0.0, 0.1, 1.0], 800)
    for d in (few, many):
        low, high = bootstrap_interval(d)
        assert low < d.mean() < high
    assert np.ptp(bootstrap_interval(many)) < np.ptp(bootstrap_interval(few)) / 2  # about 1 / sqrt(16) as wide
    assert bootstrap_interval(np.full(30, 0.1)) == pytest.approx((0.1, 0.1))  # every tile the same: no spread
    assert bootstrap_interval(few, seed=3) == bootstrap_interval(few, seed=3)  # the same draws for the same seed


def test_per_tile_wins_ties_and_losses():
    from unet_helpers.levers import per_tile_difference

    assert per_tile_difference([0.5, 1.0, 0.0, 0.2], [0.7, 1.0, 0.0, 0.1]) == dict(
        wins=1, ties=2, losses=1, mean=pytest.approx(0.025)
    )


def test_resplit_gaps_keep_each_class_count_per_side_and_tell_a_real_difference_from_the_luck_of_the_split():
    from unet_helpers.levers import resplit_gaps

    rng = np.random.default_rng(1)
    classes = np.repeat([0, 1, 2], [40, 30, 30])
    alike = rng.random(100), rng.random(100)  # two draws of one distribution
    gaps = resplit_gaps(*alike, classes, classes, draws=2000)
    assert gaps.shape == (2000,) and abs(gaps.mean()) < 0.01  # re-splits centre on no gap
    observed = alike[0].mean() - alike[1].mean()
    assert 0.02 < (np.abs(gaps) >= abs(observed)).mean()  # an ordinary draw is not unusual
    shifted = alike[0] + 0.2  # the first set really is easier
    assert (resplit_gaps(shifted, alike[1], classes, classes, draws=2000) >= 0.2).mean() < 0.001
    # Where each class scores the same on both sides, no re-split that keeps each class's counts can open a gap.
    first, second = np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(50), np.zeros(50)]
    by_class = np.r_[np.zeros(50, int), np.ones(50, int)]
    assert np.allclose(resplit_gaps(first, second, by_class, by_class, draws=50), 0)
    assert np.array_equal(resplit_gaps(*alike, classes, classes, draws=20, seed=4),
                          resplit_gaps(*alike, classes, classes, draws=20, seed=4))  # fmt: skip


def test_a_split_gap_seed_never_measured_is_refused_with_the_seeds_that_were():
    from unet_helpers.levers import load_split_gap

    with pytest.raises(FileNotFoundError, match=r"seed 7.*\[0, 1, 2\]"):
        load_split_gap(7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_split_gap_record_scores_medium_strongs_own_tiles_at_every_epoch(seed):
    from unet_helpers.levers import load_flagship_candidates, load_split_gap, split_gap_seeds
    from unet_helpers.pretrained import load_card

    assert split_gap_seeds() == [0, 1, 2]  # notebook 08 reads all three
    record, card = load_split_gap(seed), load_card("medium-strong")
    assert record["seed"] == seed and f"--seed {seed}" in record["command"]
    assert [row["epoch"] for row in record["per_epoch"]] == list(range(1, record["epochs"] + 1))
    last = record["per_epoch"][-1]
    for name, ids in (("validation", card["data"]["val_ids"]), ("held_out", card["data"]["held_out_ids"])):
        scores, classes = np.array(record[f"{name}_per_tile_last_epoch"]), np.array(record[f"{name}_classes"])
        assert len(scores) == len(classes) == len(ids) == 300
        assert scores.mean() == pytest.approx(last[name], abs=1e-4)  # the same epoch's scores, tile by tile
        assert np.allclose(scores * 10, np.round(scores * 10))  # ten IoU thresholds: every tile scores in tenths
        assert set(classes) <= set(range(11))
    # class 0 is a tile without salt: the same held-out tiles the flagship record calls empty
    assert [c == 0 for c in record["held_out_classes"]] == load_flagship_candidates()["empty"]
    # the split was stratified by class: each class gave the two sets the same number of tiles, give or take one
    counts = [np.bincount(record[f"{name}_classes"], minlength=11) for name in ("validation", "held_out")]
    assert np.abs(counts[0] - counts[1]).max() <= 1


def test_every_flagship_candidate_of_the_gpu_session_is_a_command_the_trainer_accepts(tmp_path):
    """A candidate's options are first parsed on a lent GPU, where a typo costs the loan; here they are parsed as the
    trainer will. The lean candidates are what the whole 50 + 15 table points to (notebook 08, section 3)."""
    import importlib.util
    import types
    from pathlib import Path

    from unet_helpers.train import parse_args, recipe_from_args

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.py"
    spec = importlib.util.spec_from_file_location("gpu_session", path)
    session = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(session)
    fake = types.SimpleNamespace(args=argparse.Namespace(data=tmp_path, smoke=False), work=tmp_path / "work")
    recipes = {}
    for name, (options, cost) in session.CANDIDATES.items():
        command = session.train_command(name, options, 80, fake)
        recipes[name] = recipe_from_args(parse_args(command[command.index("--data") :]))
        assert cost >= 1 and recipes[name].epochs + recipes[name].finetune_epochs == 80, name
    lean = recipes["levers-lean"]
    assert (lean.loss, lean.finetune_loss) == ("bce", "lovasz") and lean.model["batch_norm"]
    assert lean.model["block"] == "residual" and lean.model["salt_head"] and "attention" not in lean.model
    assert recipes["levers-lean-wide"].model["features"] == (24, 48, 96, 192, 240)
    finer = recipes["levers-lean-208"]  # the lean candidate on tiles resized to 208, a side its 4 poolings take
    assert (finer.size, finer.side) == ("resize", 208) and finer.model == lean.model
    from unet_helpers.recipes import build_model

    assert build_model(finer).eval()(torch.zeros(1, 3, 208, 208)).shape == (1, 1, 208, 208)


def load_levers_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "levers.py"
    spec = importlib.util.spec_from_file_location("levers_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def python_command(code: str) -> list[str]:
    import sys

    return [sys.executable, "-c", code]


def write_card_code(card, score: float | str) -> str:
    """Python that writes a run's card holding its held-out score (a number, or Python that computes it), as
    ``pretrained export`` does."""
    return (
        f"import json, pathlib; p = pathlib.Path({str(card)!r}); p.parent.mkdir(parents=True, exist_ok=True); "
        f"p.write_text(json.dumps({{'held_out': {{'tgs': {score}}}}}))"
    )


def card_after_waiting_code(card, marker, first: str = "") -> str:
    """Python that runs ``first``, waits up to 10 s for the file ``marker``, then writes the card: held-out 0.7 if the
    marker appeared, 0.0 if it did not (so the card tells the test what happened meanwhile)."""
    return (
        f"import pathlib, time\n{first}\nseen = pathlib.Path({str(marker)!r})\n"
        "for _ in range(500):\n    if seen.exists(): break\n    time.sleep(0.02)\n"
        + write_card_code(card, "0.7 if seen.exists() else 0.0")
    )


def test_the_lever_benchmark_at_its_deadline_stops_training_but_exports_a_trained_run(tmp_path, monkeypatch, capsys):
    """A part of the table on a lent GPU ends at its deadline; a run already trained is exported even so, since the
    next part starts on a fresh machine where its checkpoint would be gone."""
    import argparse
    import threading
    import time

    bench = load_levers_benchmark()
    args = argparse.Namespace(out=tmp_path, parallel=2, data=tmp_path, device_batches=False, deadline=None)
    exporting, stopped = tmp_path / "exporting", tmp_path / "stopped"

    def fake_training(name, seed, args, extra, repeat=0):  # the baseline trains at once, the other row for a minute
        return python_command(f"import time; time.sleep({0 if name == 'baseline' else 60})")

    def fake_export(name, seed, args, repeat=0):  # marks that it started; its card says whether it outlived stop()
        card = bench.card_path(name, seed, args, repeat)
        return python_command(card_after_waiting_code(card, stopped, first=f"pathlib.Path({str(exporting)!r}).touch()"))

    monkeypatch.setattr(bench, "train_command", fake_training)
    monkeypatch.setattr(bench, "export_command", fake_export)
    runner = bench.Runner(args, [])
    started = time.perf_counter()
    table = threading.Thread(target=runner.run, args=([("baseline", 0, 0), ("+ scSE", 0, 0)],))
    table.start()
    while not exporting.exists():  # the deadline comes while the baseline is being exported
        assert time.perf_counter() - started < 30, "the baseline's export never started"
        time.sleep(0.02)
    runner.stop()
    stopped.touch()
    table.join(timeout=30)
    assert not table.is_alive()
    assert bench.held_out("baseline", 0, args) == 0.7  # exported after the deadline
    assert bench.held_out("+ scSE", 0, args) is None  # its training was stopped, not waited for
    assert time.perf_counter() - started < 30
    out = capsys.readouterr().out
    assert "baseline, seed 0: done" in out and "+ scSE, seed 0: stopped at the deadline" in out


def test_the_lever_benchmark_trains_the_next_run_while_the_last_one_is_exported(tmp_path, monkeypatch):
    """An export must not hold a training slot: with one slot, the second run trains while the first is exported
    (on a GPU the slots are what keeps it busy). The first export waits for the second training to start."""
    import argparse

    bench = load_levers_benchmark()
    args = argparse.Namespace(out=tmp_path, parallel=1, data=tmp_path, device_batches=False, deadline=None)
    second_started = tmp_path / "second-training-started"

    def fake_training(name, seed, args, extra, repeat=0):  # the second run marks that its training started
        return python_command(
            "" if name == "baseline" else f"import pathlib; pathlib.Path({str(second_started)!r}).touch()"
        )

    def fake_export(name, seed, args, repeat=0):  # the baseline's score says whether the next training ran meanwhile
        card = bench.card_path(name, seed, args, repeat)
        if name != "baseline":
            return python_command(write_card_code(card, 0.71))
        return python_command(card_after_waiting_code(card, second_started))

    monkeypatch.setattr(bench, "train_command", fake_training)
    monkeypatch.setattr(bench, "export_command", fake_export)
    bench.Runner(args, []).run([("baseline", 0, 0), ("+ scSE", 0, 0)])
    assert bench.held_out("+ scSE", 0, args) == 0.71
    assert bench.held_out("baseline", 0, args) == 0.7  # the second run trained while the first was exported


def test_a_run_an_earlier_call_trained_in_the_same_folder_is_not_trained_again_and_is_marked_so(
    tmp_path, monkeypatch, capsys
):
    import argparse

    bench = load_levers_benchmark()
    args = argparse.Namespace(out=tmp_path, parallel=1, data=tmp_path, device_batches=False, deadline=None)
    monkeypatch.setattr(bench, "train_command", lambda *a, **k: python_command("raise SystemExit(5)"))
    card = bench.card_path("+ scSE", 1, args)
    card.parent.mkdir(parents=True)
    card.write_text('{"held_out": {"tgs": 0.7}}')  # what an earlier call on this machine left
    runner = bench.Runner(args, [])
    assert runner.run([("+ scSE", 1, 0)]) == 0  # no training was started (it would have failed with 5)
    assert runner.done_before == {("+ scSE", 1, 0)} and "earlier call" in capsys.readouterr().out


def test_the_lever_benchmark_starts_no_training_that_would_not_finish_by_its_deadline(tmp_path, monkeypatch, capsys):
    """On a lent GPU a run cut off at the deadline of a loan's last call is lost with the machine: once one run has
    shown how long a run takes, a run that would end after the deadline is left for the next part, and the call ends
    sooner instead. With time enough, every run trains."""
    import argparse

    bench = load_levers_benchmark()
    started = tmp_path / "started"

    def fake_training(name, seed, args, extra, repeat=0):  # every training takes 2 s and leaves a mark
        mark = f"{name}-{repeat}"
        return python_command(
            f"import pathlib, time; (pathlib.Path({str(started)!r}) / {mark!r}).touch(); time.sleep(2)"
        )

    def fake_export(name, seed, args, repeat=0):
        return python_command(write_card_code(bench.card_path(name, seed, args, repeat), 0.7))

    monkeypatch.setattr(bench, "train_command", fake_training)
    monkeypatch.setattr(bench, "export_command", fake_export)
    jobs = [("baseline", 0, 0), ("+ scSE", 0, 0), ("baseline", 0, 1)]
    for deadline, trained in ((3.0, ["baseline-0"]), (30.0, ["+ scSE-0", "baseline-0", "baseline-1"])):
        started.mkdir()
        args = argparse.Namespace(
            out=tmp_path / str(deadline), parallel=1, data=tmp_path, device_batches=False, deadline=deadline
        )
        assert bench.Runner(args, []).run(jobs) == 0
        assert sorted(p.name for p in started.iterdir()) == trained  # 2 s + 2 s would end after 3 s
        assert [bench.held_out(*job[:2], args, job[2]) for job in jobs] == [
            0.7 if f"{job[0]}-{job[2]}" in trained else None for job in jobs
        ]
        out = capsys.readouterr().out
        if deadline == 3.0:
            assert "2 runs not started, as they would not have finished by the deadline" in out
            assert "+ scSE, seed 0; baseline, seed 0, run 2. The next part trains them." in out
        else:
            assert "not started" not in out and out.count(": done") == 3
        started.rename(tmp_path / f"started-{deadline}")


def test_the_lever_benchmark_reports_a_failed_run_and_goes_on_with_the_others(tmp_path, monkeypatch, capsys):
    """A run that fails in training or in export, or whose job raises, is reported as failed with its stage and
    counted; the other runs are trained and exported, so the part's table is still written (and the script then exits
    non-zero)."""
    import argparse

    bench = load_levers_benchmark()
    args = argparse.Namespace(out=tmp_path, parallel=2, data=tmp_path, device_batches=False, deadline=None)

    def fake_training(name, seed, args, extra, repeat=0):
        if name == "- flips":
            raise RuntimeError("a broken row")
        return python_command("raise SystemExit(2)" if name == "+ hypercolumn head" else "")

    def fake_export(name, seed, args, repeat=0):
        card = bench.card_path(name, seed, args, repeat)
        return python_command("raise SystemExit(3)" if name == "baseline" else write_card_code(card, 0.71))

    monkeypatch.setattr(bench, "train_command", fake_training)
    monkeypatch.setattr(bench, "export_command", fake_export)
    jobs = [("baseline", 0, 0), ("- flips", 0, 0), ("+ hypercolumn head", 0, 0), ("+ scSE", 0, 0)]
    assert bench.Runner(args, []).run(jobs) == 3
    assert bench.held_out("+ scSE", 0, args) == 0.71
    assert bench.held_out("baseline", 0, args) is None and bench.held_out("+ hypercolumn head", 0, args) is None
    out = capsys.readouterr().out
    assert "baseline, seed 0: FAILED in export (3), see export.log" in out
    assert "+ hypercolumn head, seed 0: FAILED in training (2), see train.log" in out
    assert "- flips, seed 0: FAILED with an error" in out and "RuntimeError: a broken row" in out
    assert "+ scSE, seed 0: done" in out

    stopped = bench.Runner(args, [])  # after the deadline, nothing more is trained
    stopped.stop()
    assert stopped.run([("+ residual blocks", 0, 0)]) == 0
    assert "+ residual blocks, seed 0: not started, the deadline had passed" in capsys.readouterr().out
    assert bench.held_out("+ residual blocks", 0, args) is None
