"""Average the predictions of several models trained on the same split: chosen on validation, held-out scored once.

    python benchmarks/ensemble_held_out.py CARD.json WEIGHTS.pt CARD.json WEIGHTS.pt [...] --data data/tgs-salt

Every model must have the same validation and held-out tiles (``--split-like`` the same model). Each model predicts
with flip TTA. Every subset of two or more models is averaged on the validation tiles with the threshold and minimum
area chosen there; the best subset on validation is then scored once on the held-out tiles, beside each model alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's unet_helpers, installed or not
from unet_helpers.data import load_tgs_split  # noqa: E402
from unet_helpers.metrics import tgs_score  # noqa: E402
from unet_helpers.postprocess import choose_postprocessing, to_masks  # noqa: E402
from unet_helpers.pretrained import load_model, predict_tiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="pairs of a card (.json) and its weights (.pt)")
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"), help="the real TGS Salt data")
    args = parser.parse_args()
    if len(args.models) % 2 or len(args.models) < 4:
        parser.error("give two or more models, each as its card and its weights")
    pairs = list(zip(args.models[::2], args.models[1::2]))
    cards = [json.loads(card.read_text()) for card, _ in pairs]
    val_ids, test_ids = cards[0]["data"]["val_ids"], cards[0]["data"]["held_out_ids"]
    for (card_path, _), card in zip(pairs, cards):
        if card["data"]["val_ids"] != val_ids or card["data"]["held_out_ids"] != test_ids:
            sys.exit(
                f"error: {card_path} has other validation or held-out tiles than {pairs[0][0]}; train it --split-like"
            )
    arrays = load_tgs_split(args.data, ids=val_ids + test_ids)
    val, test = arrays.subset(val_ids), arrays.subset(test_ids)
    val_probs, test_probs = [], []
    for (card_path, weights), card in zip(pairs, cards):
        model = load_model(card, weights)
        val_probs.append(predict_tiles(model, card["recipe"], val, "cpu", tta=True))
        test_probs.append(predict_tiles(model, card["recipe"], test, "cpu", tta=True))
        chosen = choose_postprocessing(val_probs[-1], val.masks)
        held_out = tgs_score(to_masks(test_probs[-1], chosen["threshold"], chosen["min_area"]), test.masks)
        print(f"{card_path.name}: validation {chosen['score']:.4f}, held-out {held_out:.4f} (alone, flip TTA)")
    best = None
    for size in range(2, len(pairs) + 1):
        for subset in itertools.combinations(range(len(pairs)), size):
            chosen = choose_postprocessing(np.mean([val_probs[k] for k in subset], 0), val.masks)
            print(f"average of {[pairs[k][0].name for k in subset]}: validation {chosen['score']:.4f} "
                  f"(threshold {chosen['threshold']}, minimum area {chosen['min_area']})")  # fmt: skip
            if best is None or chosen["score"] > best[1]["score"]:
                best = subset, chosen
    subset, chosen = best
    probs = np.mean([test_probs[k] for k in subset], 0)
    held_out = tgs_score(to_masks(probs, chosen["threshold"], chosen["min_area"]), test.masks)
    print(f"chosen on validation: the average of {[pairs[k][0].name for k in subset]}, validation "
          f"{chosen['score']:.4f}, held-out {held_out:.4f} on {len(test_ids)} tiles")  # fmt: skip


if __name__ == "__main__":
    main()
