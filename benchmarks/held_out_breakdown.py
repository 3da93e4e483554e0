"""Where the held-out score is lost: medium-strong's 300 held-out tiles by kind, for every recorded flagship candidate.

    python benchmarks/held_out_breakdown.py --data data/tgs-salt

Reads the per-tile scores of ``unet_helpers/records/flagship-candidates.json`` (medium-strong, the three candidates
and the five folds averaged) and the real masks of those tiles, and groups the tiles: empty, masks drawn as whole
columns (``is_column_mask``), and the other masks by salt coverage. For each group it prints the tiles, each model's
mean score and the points of the 300-tile mean that the group loses (its tiles' shortfall from 1, over 300): what a
lever would have to win back, and where. Then medium-strong's own predictions (its card's post-processing) say how
many tiles of each group it predicts empty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's unet_helpers, installed or not
from unet_helpers.data import load_tgs_split  # noqa: E402
from unet_helpers.data.dataset import is_column_mask  # noqa: E402
from unet_helpers.levers import load_flagship_candidates  # noqa: E402
from unet_helpers.postprocess import to_masks  # noqa: E402
from unet_helpers.pretrained import load_pretrained, predict_tiles  # noqa: E402
from unet_helpers.utils import print_table  # noqa: E402

BANDS = ((0.0, 0.05, "salt under 5%"), (0.05, 0.3, "5% to 30%"), (0.3, 0.7, "30% to 70%"), (0.7, 1.01, "70% or more"))


def groups(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean selections of the tiles, by kind: empty, column masks, then the other masks by salt coverage."""
    coverage = masks.reshape(len(masks), -1).mean(1)
    columns = is_column_mask(masks)
    kinds = {"empty": coverage == 0, "drawn as whole columns": columns}
    for low, high, name in BANDS:
        kinds[name] = (coverage > 0) & (coverage >= low) & (coverage < high) & ~columns
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"), help="the real TGS Salt data")
    args = parser.parse_args()
    record = load_flagship_candidates()
    ids = record["held_out_ids"]
    tiles = load_tgs_split(args.data, ids=ids).subset(ids)
    scores = {"medium-strong": np.array(record["medium_strong"])}
    for k, candidate in enumerate(record["candidates"]):
        scores[f"run {k + 1}"] = np.array(candidate["per_tile"])
    for k, fold_average in enumerate(record["fold_averages"]):  # e.g. "5 folds"; a second set of folds numbered
        scores[f"{len(fold_average['folds'])} folds" + (f" ({k + 1})" if k else "")] = np.array(
            fold_average["per_tile"]
        )
    model, card = load_pretrained("medium-strong")
    post = card["postprocessing"]
    predicted = to_masks(
        predict_tiles(model, card["recipe"], tiles, tta=post["tta"]), post["threshold"], post["min_area"]
    )
    predicted_empty = predicted.reshape(len(ids), -1).sum(1) == 0
    rows = []
    for name, chosen in groups(tiles.masks).items():
        row = {"tiles": name, "n": int(chosen.sum())}
        for model_name, per_tile in scores.items():
            lost = (1 - per_tile[chosen]).sum() / len(ids)
            row[model_name] = f"{per_tile[chosen].mean():.3f} (-{lost:.3f})"
        row["medium-strong predicts empty"] = int(predicted_empty[chosen].sum())
        rows.append(row)
    print(f"{len(ids)} held-out tiles of medium-strong: each model's mean on the group (points of the mean it loses)")
    print_table(rows)
    print("means:", ", ".join(f"{name} {per_tile.mean():.3f}" for name, per_tile in scores.items()))


if __name__ == "__main__":
    main()
