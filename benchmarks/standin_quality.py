"""How good does a recipe get on the offline stand-in? Best validation tgs_score against the all-empty baseline.

    python benchmarks/standin_quality.py --recipe medium-strong --epochs 8 --finetune-epochs 2

Trains on the stand-in's stratified 80/20 split (3,200 / 800 tiles) with the recipe of notebook 04,
checkpointing to runs/standin-quality/<recipe> (an interrupted run resumes), and prints the
result. The all-empty baseline predicts no salt anywhere; its score is the share of empty masks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unet_helpers.data import coverage_class, get_tgs_salt, load_tgs_split, stratified_split
from unet_helpers.metrics import tgs_score
from unet_helpers.recipes import RECIPES, make_datasets, run_recipe
from unet_helpers.utils import describe_device, get_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="medium-strong", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the main stage (default: the recipe's)")
    parser.add_argument("--finetune-epochs", type=int, default=None)
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    recipe = recipe.scaled(args.epochs or recipe.epochs, args.finetune_epochs)
    device = get_device()
    source = get_tgs_salt()
    arrays = load_tgs_split(source.root)
    train_ids, val_ids = stratified_split(arrays.ids, coverage_class(arrays.coverage), seed=0)
    train_ds, val_ds = make_datasets(recipe, arrays, train_ids, val_ids)
    started = time.perf_counter()
    _, history = run_recipe(recipe, train_ds, val_ds, f"runs/standin-quality/{recipe.name}", device, progress=False)
    baseline = tgs_score(np.zeros_like(val_ds.arrays.masks), val_ds.arrays.masks)
    best = int(np.argmax(history["val_tgs"]))
    print(f"device: {describe_device(device)}, torch {torch.__version__}, synthetic={source.synthetic}")
    print(
        f"recipe {recipe.name}: {recipe.epochs} + {recipe.finetune_epochs} fine-tune epochs, "
        f"{np.mean(history['seconds']):.0f} s per epoch, {time.perf_counter() - started:.0f} s in this call"
    )
    print(
        f"best validation tgs_score {history['val_tgs'][best]:.3f} (epoch {history['epoch'][best]}), "
        f"IoU {history['val_iou'][best]:.3f}; all-empty baseline {baseline:.3f}"
    )


if __name__ == "__main__":
    main()
