"""Average the predictions of several models trained on the same split: chosen on validation, held-out scored once.

    python benchmarks/ensemble_held_out.py CARD.json WEIGHTS.pt CARD.json WEIGHTS.pt [...] --data data/tgs-salt

Every model must have the same validation and held-out tiles (``--split-like`` the same model). Each model predicts
with flip TTA. Every subset of two or more models is averaged on the validation tiles with the threshold and minimum
area chosen there; the best subset on validation is then scored once on the held-out tiles, beside each model alone.

Folds of a cross-validation (``train --split-like medium-strong --folds 5 --fold K``, one model per K) share their
held-out tiles and validate on disjoint folds. Then every fold's model predicts its own fold, the threshold and minimum
area are chosen on those out-of-fold predictions of all the tiles together, and the average of all the models is scored
once on the held-out tiles; ``--record unet_helpers/records/flagship-candidates.json --label "..."`` adds the average,
every held-out tile's score and each fold's, to that record, which notebook 08 draws. (The settings are chosen on one
model's predictions per tile and applied to an average of five, whose probabilities are less extreme: the usual
compromise, since an average of models none of which trained on a tile exists only for the held-out tiles.)
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
from unet_helpers.levers import add_fold_average  # noqa: E402
from unet_helpers.metrics import tgs_score, tgs_score_per_image  # noqa: E402
from unet_helpers.postprocess import choose_postprocessing, to_masks  # noqa: E402
from unet_helpers.pretrained import load_model, predict_tiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="pairs of a card (.json) and its weights (.pt)")
    parser.add_argument("--data", type=Path, default=Path("data/tgs-salt"), help="the real TGS Salt data")
    parser.add_argument("--record", type=Path, default=None, help="folds: a flagship record (.json) to add them to")
    parser.add_argument("--label", default=None, help="the folds' name in --record (how they were trained)")
    args = parser.parse_args()
    if len(args.models) % 2 or len(args.models) < 4:
        parser.error("give two or more models, each as its card and its weights")
    if args.record and not args.label:
        parser.error("--record needs --label, the folds' name in the record")
    if args.record and not args.record.is_file():
        parser.error(f"--record {args.record}: no such file; name a flagship record, written by compare_held_out.py "
                     "--record (unet_helpers/records/flagship-candidates.json)")  # fmt: skip
    pairs = list(zip(args.models[::2], args.models[1::2]))
    cards = [json.loads(card.read_text()) for card, _ in pairs]
    val_ids, test_ids = cards[0]["data"]["val_ids"], cards[0]["data"]["held_out_ids"]
    if all(card["data"]["val_ids"] != val_ids for card in cards[1:]):
        folds(args.data, pairs, cards, args.record, args.label)
        return
    if args.record:
        parser.error("--record takes the folds of one cross-validation; these models share their validation tiles")
    for (card_path, _), card in zip(pairs, cards):
        if card["data"]["val_ids"] != val_ids or card["data"]["held_out_ids"] != test_ids:
            sys.exit(
                f"error: {card_path} has other validation or held-out tiles than {pairs[0][0]}; give either models "
                "trained --split-like the same model, or all the folds of one cross-validation (--folds)"
            )
    arrays = load_tgs_split(args.data, ids=val_ids + test_ids)
    val, test = arrays.subset(val_ids), arrays.subset(test_ids)
    val_probs, test_probs, _ = zip(
        *(alone(card_path, weights, card, val, test) for (card_path, weights), card in zip(pairs, cards))
    )
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


def alone(
    card_path: Path, weights: Path, card: dict, val, test, what: str = "validation"
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One model's flip-TTA probabilities on its validation tiles and on the held-out tiles, and how it scores
    alone (printed too), with the threshold and minimum area chosen on its validation tiles."""
    model = load_model(card, weights)
    val_probs = predict_tiles(model, card["recipe"], val, "cpu", tta=True)
    test_probs = predict_tiles(model, card["recipe"], test, "cpu", tta=True)
    chosen = choose_postprocessing(val_probs, val.masks)
    per_tile = tgs_score_per_image(to_masks(test_probs, chosen["threshold"], chosen["min_area"]), test.masks)
    held_out = float(per_tile.mean())
    print(f"{card_path.name}: {what} {chosen['score']:.4f}, held-out {held_out:.4f} (alone, flip TTA)")
    scores = dict(val_tiles=len(val_probs), own_fold_tgs=round(chosen["score"], 4), held_out_tgs=round(held_out, 4))
    scores["per_tile"] = [round(float(s), 1) for s in per_tile]  # its score on each held-out tile
    return val_probs, test_probs, scores


def folds(
    data: Path, pairs: list[tuple[Path, Path]], cards: list[dict], record: Path | None = None, label: str | None = None
) -> None:
    """The models of a cross-validation: post-processing chosen out of fold, their average scored on held-out tiles."""
    test_ids = cards[0]["data"]["held_out_ids"]
    fold_ids = [card["data"]["val_ids"] for card in cards]
    every = [i for ids in fold_ids for i in ids]
    for (card_path, _), card in zip(pairs, cards):
        if card["data"]["held_out_ids"] != test_ids or set(card["data"]["train_ids"]) & set(test_ids):
            sys.exit(
                f"error: {card_path} holds out other tiles than {pairs[0][0]}; train every fold --split-like one card"
            )
    if len(set(every)) != len(every):
        sys.exit("error: the models' validation tiles overlap, so they are not folds of one cross-validation; give "
                 "either folds (disjoint validation tiles) or models that share their validation tiles")  # fmt: skip
    pool = {i for card in cards for i in card["data"]["train_ids"] + card["data"]["val_ids"]}
    if set(every) != pool:
        print(f"warning: these {len(pairs)} models validate {len(every)} of the {len(pool)} tiles their folds were "
              "dealt from: not every fold is here, or a fold was cut short (--limit-val)")  # fmt: skip
    arrays = load_tgs_split(data, ids=every + test_ids)
    test = arrays.subset(test_ids)
    out_of_fold, test_probs, each = [], [], []
    for (card_path, weights), card, ids in zip(pairs, cards, fold_ids):
        own, held, scores = alone(card_path, weights, card, arrays.subset(ids), test, f"its fold ({len(ids)} tiles)")
        out_of_fold.append(own), test_probs.append(held), each.append(scores)
    chosen = choose_postprocessing(np.concatenate(out_of_fold), arrays.subset(every).masks)
    per_tile = tgs_score_per_image(
        to_masks(np.mean(test_probs, 0), chosen["threshold"], chosen["min_area"]), test.masks
    )
    held_out = float(per_tile.mean())
    print(f"out of fold, {len(every)} tiles: {chosen['score']:.4f} (threshold {chosen['threshold']}, minimum area "
          f"{chosen['min_area']}); the average of all {len(pairs)} models, held-out {held_out:.4f} on "
          f"{len(test_ids)} tiles")  # fmt: skip
    if record:
        chosen_out = dict(tiles=len(every), tgs=round(chosen["score"], 4), threshold=chosen["threshold"], min_area=chosen["min_area"])  # fmt: skip
        try:
            written = add_fold_average(
                json.loads(record.read_text()), label, cards, each, chosen_out, test_ids, per_tile
            )
        except ValueError as error:
            sys.exit(f"error: {record}: {error}")
        record.write_text(json.dumps(written, indent=1) + "\n")
        print(f"added to {record} as {label!r}")


if __name__ == "__main__":
    main()
