"""Validation against held-out tiles with nothing chosen: medium-strong's recipe scored on both after every epoch.

    python benchmarks/split_gap.py --data data/tgs-salt --epochs 30 --seed 0 --out runs/split-gap \\
        --record unet_helpers/records/split-gap-seed0.json
    python benchmarks/split_gap.py --data data/tgs-salt --epochs 30 --seed 1 --out runs/split-gap-seed1 \\
        --record unet_helpers/records/split-gap-seed1.json
    python benchmarks/split_gap.py --data data/tgs-salt --epochs 30 --seed 2 --out runs/split-gap-seed2 \\
        --record unet_helpers/records/split-gap-seed2.json

Every shipped model scores 0.06-0.09 higher on its validation tiles than on its held-out tiles. Part of that is
choice: the checkpoint, threshold, minimum area and TTA were all chosen on the validation tiles, so they fit them. This
script takes choice away. It trains medium-strong's recipe (main stage only, shortened to ``--epochs``) on
medium-strong's 2,400 training tiles and, after every epoch, scores that epoch's network on medium-strong's 300
validation tiles and its 300 held-out tiles alike: threshold 0.5, no minimum area, no TTA. What gap is left at an epoch
that no one chose is the tiles themselves, as this network and this seed see them; more ``--seed``s (other initial
weights, batches and flips, the same tiles) show how much of it is the seed. The record (one line per epoch, and
every tile's score at the last epoch) is written after every epoch; ``--resume`` continues an interrupted run, and
first scores the epoch of its last checkpoint if the record lacks it. About 65 s an epoch on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's unet_helpers, installed or not
from unet_helpers.data import coverage_class, load_tgs_split  # noqa: E402
from unet_helpers.engine import model_from_checkpoint  # noqa: E402
from unet_helpers.metrics import tgs_score_per_image  # noqa: E402
from unet_helpers.postprocess import to_masks  # noqa: E402
from unet_helpers.pretrained import load_card, predict_tiles  # noqa: E402
from unet_helpers.recipes import get_recipe, make_datasets, run_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"), help="the real TGS Salt data")
    parser.add_argument("--epochs", type=int, default=30, help="main-stage epochs (cosine schedule over them)")
    parser.add_argument("--out", type=Path, default=Path("runs/split-gap"), help="checkpoint folder")
    parser.add_argument("--record", type=Path, default=None, help="where the record (.json) goes")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="start again, though --out holds a run")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (initial weights, batches, flips)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    card = load_card("medium-strong")
    split = card["data"]
    arrays = load_tgs_split(args.data, ids=split["train_ids"] + split["val_ids"] + split["held_out_ids"])
    sets = {"validation": arrays.subset(split["val_ids"]), "held_out": arrays.subset(split["held_out_ids"])}
    recipe = get_recipe("medium-strong").scaled(args.epochs, finetune_epochs=0)
    train_ds, val_ds = make_datasets(recipe, arrays, split["train_ids"], split["val_ids"])

    record = {
        "what": (
            "medium-strong's recipe (main stage, cosine over the epochs below) trained on medium-strong's training "
            "tiles and scored after every epoch on its validation and held-out tiles alike (threshold 0.5, no "
            "minimum area, no TTA): nothing was chosen on either set"
        ),
        "command": "python benchmarks/split_gap.py "
        + " ".join(a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")),
        "recipe": recipe.name,
        "epochs": args.epochs,
        "seed": args.seed,
        "device": f"CPU, {args.threads} threads",
        # each tile's salt-coverage class (0: no salt, k: up to k tenths salt), the classes the split was stratified by
        **{f"{name}_classes": coverage_class(tiles.coverage).tolist() for name, tiles in sets.items()},
        "per_epoch": [],
    }
    if args.resume and args.record and args.record.is_file():  # keep what the interrupted run scored
        earlier = json.loads(args.record.read_text())
        record.update({k: v for k, v in earlier.items() if k == "per_epoch" or k.endswith("_last_epoch")})

    def write_record() -> None:
        if args.record:
            args.record.write_text(json.dumps(record, indent=1) + "\n")

    last = args.out / "last.pt"  # the trainer writes it after every epoch, before on_epoch_end

    def score_epoch(stage: str, epoch: int, history: dict) -> None:
        model, _ = model_from_checkpoint(last)
        row = {"epoch": epoch}
        for name, tiles in sets.items():
            probs = predict_tiles(model, recipe.config(), tiles, "cpu", tta=False)
            per_tile = tgs_score_per_image(to_masks(probs, 0.5, 0), tiles.masks)
            row[name] = round(float(per_tile.mean()), 4)
            if epoch == args.epochs:
                record[f"{name}_per_tile_last_epoch"] = per_tile.round(2).tolist()
        record["per_epoch"] = [r for r in record["per_epoch"] if r["epoch"] != epoch] + [row]
        print(f"epoch {epoch}: validation {row['validation']:.4f}, held-out {row['held_out']:.4f}, "
              f"gap {row['validation'] - row['held_out']:+.4f}", flush=True)  # fmt: skip
        write_record()

    if args.resume and last.is_file():  # a run stopped after its checkpoint but before that epoch was scored
        epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
        if epoch not in {row["epoch"] for row in record["per_epoch"]}:
            score_epoch("main", epoch, {})
    run_recipe(
        recipe, train_ds, val_ds, args.out, torch.device("cpu"), resume=args.resume, overwrite=args.overwrite,
        progress=False, on_epoch_end=score_epoch, seed=args.seed,
    )  # fmt: skip
    record["per_epoch"].sort(key=lambda row: row["epoch"])
    write_record()  # also when --resume found the run finished
    missing = sorted(set(range(1, args.epochs + 1)) - {row["epoch"] for row in record["per_epoch"]})
    if missing:
        print(f"warning: the record lacks epochs {missing}: they were trained without --record; train again with "
              "--overwrite to score every epoch")  # fmt: skip
    gaps = np.array([r["validation"] - r["held_out"] for r in record["per_epoch"]])
    print(f"validation minus held-out over {len(gaps)} epochs: mean {gaps.mean():+.4f}, "
          f"last {gaps[-1]:+.4f}, range {gaps.min():+.4f} to {gaps.max():+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
