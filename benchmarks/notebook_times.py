"""How long each notebook takes: measured on this machine's CPU, and estimated for a Colab T4.

    python benchmarks/notebook_times.py                  # reads the committed notebooks
    python benchmarks/notebook_times.py --t4-tflops 2.0  # the T4's assumed sustained training throughput

CPU: the committed notebooks were executed top to bottom (real data, fast mode off) with nbconvert, which
records when each cell started and finished; their sum is the notebook's run time on this machine.

T4 (an estimate, no GPU was measured): on a GPU, notebook 04 runs every recipe's full schedule instead of
the CPU budget. Its cost is counted in floating-point operations (torch's FlopCounterMode, forward and
backward of each recipe's network at its input side) and divided by an assumed sustained rate. 2 TFLOP/s is
below what a T4 sustains on ResNet-50 in float16 (about 250 images/s x 12.3 GFLOP = 3 TFLOP/s), because these
16-to-128-channel networks use its tensor cores less well. The other notebooks do little work on a network;
they spend their time loading data, drawing and, in 06, on the CPU by design, so their CPU time is used as
the estimate (Colab gives 2 CPU cores too). Add about a minute for the setup cell's install on Colab.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from unet_helpers.recipes import RECIPES, build_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN_TILES, VAL_TILES = 2400, 600  # notebook 04's 80/20 split of the 3,000 tiles here


def cpu_seconds(notebook: Path) -> float | None:
    """Sum of the cells' recorded execution times, or None when the notebook holds no timings."""
    total, found = 0.0, False
    for cell in json.loads(notebook.read_text())["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (
                datetime.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                for k in ("iopub.execute_input", "shell.execute_reply")
            )
            total, found = total + (end - start).total_seconds(), True
    return total if found else None


def training_flops(name: str) -> float:
    """Forward + backward floating-point operations for one training image of a recipe."""
    recipe = RECIPES[name]
    model = build_model(recipe)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, recipe.model.get("in_channels", 3), recipe.side, recipe.side)).sum().backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t4-tflops", type=float, default=2.0, help="assumed sustained T4 rate (default 2.0)")
    args = parser.parse_args()

    print("notebook                              CPU (measured)")
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        seconds = cpu_seconds(notebook)
        print(f"{notebook.stem:36} {'no timings' if seconds is None else f'{seconds / 60:6.1f} min'}")

    print(f"\nnotebook 04 on a GPU: the full schedules, at an assumed {args.t4_tflops} TFLOP/s sustained on a T4")
    total = 0.0
    for name, recipe in RECIPES.items():
        per_image = training_flops(name)
        epochs = recipe.epochs + recipe.finetune_epochs
        flops = epochs * (TRAIN_TILES * per_image + VAL_TILES * per_image / 3)  # validation: forward only
        total += flops
        print(
            f"  {name:15} {per_image / 1e9:5.2f} GFLOP per training image x {epochs:2d} epochs: {flops / 1e12:6.0f} TFLOP"
        )
    print(f"  all four: {total / 1e12:.0f} TFLOP, about {total / (args.t4_tflops * 1e12) / 60:.0f} min (estimate)")


if __name__ == "__main__":
    main()
