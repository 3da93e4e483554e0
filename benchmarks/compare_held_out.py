"""A candidate model against the shipped medium-strong on medium-strong's own held-out tiles, tile by tile.

    python benchmarks/compare_held_out.py runs/flagship/card/levers.json runs/flagship/card/levers.pt

The candidate must have been trained on medium-strong's split (``--split-like medium-strong``), so that both are
scored on the same 300 real tiles neither trained on nor was chosen on; each uses its own card's post-processing
(threshold, minimum area, flip TTA), chosen on validation tiles. Prints both means, the tiles each wins, a paired
bootstrap 95% interval of the difference, and the means over the empty tiles and the tiles with salt.

``--record unet_helpers/records/flagship-candidates.json --label "..."`` also adds (or replaces) the candidate in that
record, with every tile's score for both models and the candidate's validation history: notebook 08 reads and draws it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's unet_helpers, installed or not
from unet_helpers.data import load_tgs_split  # noqa: E402
from unet_helpers.levers import add_flagship_candidate, bootstrap_interval, per_tile_difference  # noqa: E402
from unet_helpers.metrics import tgs_score_per_image  # noqa: E402
from unet_helpers.postprocess import to_masks  # noqa: E402
from unet_helpers.pretrained import load_model, load_pretrained, predict_tiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card", type=Path, help="the candidate's card (pretrained export's .json)")
    parser.add_argument("weights", type=Path, help="its float16 weights (.pt)")
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"), help="the real TGS Salt data")
    parser.add_argument("--record", type=Path, default=None, help="a record (.json) to add this candidate to")
    parser.add_argument("--label", default=None, help="the candidate's name in --record (how it was trained)")
    args = parser.parse_args()
    if args.record and not args.label:
        parser.error("--record needs --label, the candidate's name in the record")
    card = json.loads(args.card.read_text())
    base_model, base = load_pretrained("medium-strong")
    ids = base["data"]["held_out_ids"]
    if sorted(card["data"]["held_out_ids"]) != sorted(ids):
        sys.exit(
            f"error: {args.card} was not held out on medium-strong's tiles; train it with --split-like medium-strong"
        )
    test = load_tgs_split(args.data, ids=ids).subset(ids)
    model = load_model(card, args.weights)
    scores = []
    for network, its_card in ((base_model, base), (model, card)):
        post = its_card["postprocessing"]
        probs = predict_tiles(network, its_card["recipe"], test, "cpu", tta=post["tta"])
        scores.append(tgs_score_per_image(to_masks(probs, post["threshold"], post["min_area"]), test.masks))
    before, after = scores
    difference = after - before
    low, high = bootstrap_interval(difference)
    empty = test.masks.reshape(len(ids), -1).max(1) == 0
    print(f"{len(ids)} held-out tiles of medium-strong; candidate {args.card.name}")
    counts = per_tile_difference(before, after)
    print(
        f"tgs_score: medium-strong {before.mean():.4f}, candidate {after.mean():.4f}, difference {counts['mean']:+.4f}"
    )
    print(f"tiles: candidate better on {counts['wins']}, worse on {counts['losses']}, equal on {counts['ties']}")
    print(f"paired bootstrap 95% interval of the difference (2,000 resamples of the tiles): "
          f"{low:+.4f} to {high:+.4f}")  # fmt: skip
    print(f"empty tiles ({empty.sum()}): {before[empty].mean():.4f} against {after[empty].mean():.4f}; "
          f"tiles with salt ({(~empty).sum()}): {before[~empty].mean():.4f} against {after[~empty].mean():.4f}")  # fmt: skip
    if args.record:
        add_to_record(args.record, args.label, card, ids, empty, before, after)


def add_to_record(
    path: Path, label: str, card: dict, ids: list[str], empty: np.ndarray, before: np.ndarray, after: np.ndarray
) -> None:
    """Add the candidate to the record at ``path`` (replacing one of the same label), creating the record if need be."""
    record = json.loads(path.read_text()) if path.is_file() else None
    try:
        record = add_flagship_candidate(record, label, card, ids, empty, before, after)
    except ValueError as error:
        sys.exit(f"error: {path}: {error}")
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"added {label!r} to {path}")


if __name__ == "__main__":
    main()
