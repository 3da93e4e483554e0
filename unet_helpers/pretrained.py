"""Trained U-Nets that ship with the package: one per recipe of notebook 04, each with a card.

    from unet_helpers.pretrained import load_pretrained
    model, card = load_pretrained("medium-strong")      # a UNet in eval mode, and its card (a dict)

Each model is ``weights/<name>.pt`` (its state dict, stored in float16 to halve the file, but for any
tensor too large for float16; loaded back as float32) beside ``weights/<name>.json``, its card: the
recipe and its configuration, the exact training, validation and held-out tile ids, epochs, device and wall time, the per-epoch
history, the best validation tgs_score, the post-processing chosen on the validation tiles
(threshold, minimum salt area, flip TTA), the score on the held-out tiles, torch version and date.

The cards are written from a finished training run (``python -m unet_helpers.train ...
--test-fraction 0.1``) by::

    python -m unet_helpers.pretrained export --run runs/real/medium-strong --data data/tgs-salt --overwrite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data import N_TRAIN, TGSArrays, TGSSaltDataset, load_tgs_split
from .data.images import range_top
from .data.source import ids_of_pngs, is_standin_folder
from .engine import CheckpointError, keep_freed_memory, predict
from .metrics import iou, tgs_score
from .models import RecursiveUNet, UNet, count_parameters
from .postprocess import choose_postprocessing, to_masks
from .utils import half_state_dict, write_card

WEIGHTS_DIR = Path(__file__).parent / "weights"
NAMES = ("small-valid", "small-same", "medium-reflect", "medium-strong")  # the recipes of notebook 04
GENERATORS = ("denoiser",)  # notebook 09's flow-matching denoiser, which generates tiles with their masks


def available_pretrained(generators: bool = False) -> list[str]:
    """Names of the shipped segmentation models whose weights and card are both installed (with ``generators``,
    the shipped denoisers too)."""
    names = NAMES + (GENERATORS if generators else ())
    return [n for n in names if (WEIGHTS_DIR / f"{n}.pt").is_file() and (WEIGHTS_DIR / f"{n}.json").is_file()]


def model_files(name: str) -> tuple[Path, Path]:
    """(card, weights) of a shipped model by its name, or of an exported one by its card's path (a ``.json`` with
    its ``.pt`` beside it, as ``export --out-dir FOLDER`` writes them)."""
    if name.endswith(".json"):
        card = Path(name)
        for path in (card, card.with_suffix(".pt")):
            if not path.is_file():
                raise ValueError(
                    f"{path} not found: an exported model is its card (.json) with its weights (.pt, the same name) "
                    "beside it; write both with python -m unet_helpers.pretrained export --run RUN --data DATA "
                    "--name NAME --out-dir FOLDER"
                )
        return card, card.with_suffix(".pt")
    _check_name(name)
    return WEIGHTS_DIR / f"{name}.json", WEIGHTS_DIR / f"{name}.pt"


def load_card(name: str) -> dict:
    """The card of a shipped model, or of an exported one by its card's path (no weights loaded)."""
    return _read_card(model_files(name)[0])


def _read_card(path: Path) -> dict:
    """A card's JSON, with an error that names the file when it is not a card."""
    try:
        card = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{path} cannot be read as a model card ({err}); export it again (pretrained export)"
        ) from None
    if not isinstance(card, dict):
        raise ValueError(f"{path} is not a model card (it holds a {type(card).__name__}); export it again")
    needed = ["model_config"] if card.get("kind") == "denoiser" else ["model_config", "recipe", "postprocessing"]
    missing = [key for key in needed if key not in card]
    if missing:
        raise ValueError(f"{path} is not a model card (it lacks {', '.join(missing)}); export it again")
    return card


def load_pretrained(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """A shipped U-Net by name, in eval mode on ``device``, and its card: a segmenter (a ``UNet``, by recipe name)
    or the denoiser of notebook 09 (a ``RecursiveUNet`` with a time input, ``"denoiser"``). A path to an exported
    card (``runs/models/my-strong.json``) loads that model instead.

    Raises ``ValueError`` listing the names when ``name`` is not one of them.
    """
    card_path, weights = model_files(name)
    card = _read_card(card_path)
    return load_model(card, weights, device), card


def load_model(card: dict, weights: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network a card describes, with its exported weights (``weights``, a .pt of float16 tensors, some float32)
    loaded back in float32, in eval mode on ``device``: a shipped model, or a candidate exported elsewhere."""
    build = RecursiveUNet if card.get("kind") == "denoiser" else UNet
    model = build(**card["model_config"])
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file (RuntimeError), text (KeyError), another pickle (UnpicklingError), ...
        raise ValueError(
            f"{weights} cannot be read as weights ({type(err).__name__}: {err}); copy or export it again"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{weights} holds a {type(state).__name__}, not weights; copy or export it again")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, AttributeError) as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise ValueError(
            f"{weights} does not hold the weights of the network its card describes ({first[0].strip()}); "
            "a card and its .pt must come from the same export"
        ) from None
    return model.to(device).eval()


def segment(model: torch.nn.Module, card: dict, image, device: str | torch.device = "cpu") -> np.ndarray:
    """The salt mask (H, W, bool) of one grey image, made as the card's scores were made.

    ``image`` is (H, W): uint8 grey values 0..255 (as the tiles' PNGs hold them), uint16 (a 16-bit PNG: 0..65535, or
    0..255 when nothing is above, as the data reader takes it) or floats in [0, 1]; a colour image, a boolean mask or
    other whole numbers are refused with a message. It is padded
    as the network's training tiles were, predicted with flip TTA where the card chose it, then cut at the card's
    threshold, and emptied below its minimum salt area. Calling ``model`` on a bare 101x101 tile skips the padding
    (the shipped medium-strong then scores lower), and on 0..255 floats it finds no salt at all.
    """
    from .predict import predict_image  # here: the predictor imports this module

    array = np.asarray(image)
    if array.ndim != 2:
        hint = "; for a colour image take its grey levels first (PIL: .convert('L'))" if array.ndim == 3 else ""
        raise ValueError(f"segment takes one grey image (H, W), got shape {array.shape}{hint}")
    if array.dtype == bool:
        raise ValueError("segment takes a grey image, got a boolean array (a mask?): give the image itself")
    if array.dtype.kind in "ui" and array.dtype not in (np.uint8, np.uint16):  # which scale? not to be guessed
        raise ValueError(
            f"segment takes uint8 or uint16 grey levels or floats in [0, 1], got {array.dtype}: for 0..255 values, "
            "pass image.astype(np.uint8)"
        )
    if array.dtype == np.uint16:  # 16-bit grey, read by the data reader's rule: 0..255 if nothing is above
        array = array / range_top(array, Path("image"), "I;16", fractions=False)
    elif array.dtype == np.uint8:
        array = array / 255.0
    pixels = torch.as_tensor(array, dtype=torch.float64)
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(
            f"image values run from {float(pixels.min()):g} to {float(pixels.max()):g}: give uint8 grey values "
            "(0..255) or floats in [0, 1]"
        )
    post = card["postprocessing"]
    probs = predict_image(model, pixels.float()[None], card["recipe"], torch.device(device), post["tta"])
    return to_masks(probs[None].numpy(), post["threshold"], post["min_area"])[0]


def _check_name(name: str) -> None:
    if name not in available_pretrained(generators=True):
        known = ", ".join(available_pretrained(generators=True)) or "none are installed"
        raise ValueError(f"no shipped model named {name!r}; the names are: {known}")


def unseen_ids(card: dict, ids: list[str]) -> list[str]:
    """The ids among ``ids`` that the model neither trained on nor was chosen on (honest tiles to score)."""
    seen = set(card["data"]["train_ids"]) | set(card["data"]["val_ids"])
    return [i for i in ids if i not in seen]


# ---------------------------------------------------------------------------
# Scoring a model on tiles, with the card's post-processing
# ---------------------------------------------------------------------------


def predict_tiles(
    model: torch.nn.Module,
    recipe: dict,
    arrays: TGSArrays,
    device: torch.device | str = "cpu",
    tta: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Salt probabilities (N, 101, 101) for decoded tiles, prepared as the recipe trained them.

    ``progress`` shows a progress bar (tqdm.auto: in a terminal, JupyterLab and Colab alike).
    """
    dataset = TGSSaltDataset(
        arrays, channels=recipe["model"].get("in_channels", 3), size=recipe["size"], side=recipe["side"]
    )
    loader = DataLoader(dataset, batch_size=batch_size)
    probs = predict(model, loader, torch.device(device), channels_last=True, hflip_tta=tta, progress=progress)
    return probs[:, 0].numpy()


def score_tiles(probs: np.ndarray, truth: np.ndarray, threshold: float, min_area: int) -> dict:
    """tgs_score and IoU of post-processed predictions, with the all-empty baseline beside them."""
    masks = to_masks(probs, threshold, min_area)
    return dict(
        tiles=len(truth),
        tgs=round(float(tgs_score(masks, truth)), 4),
        iou=round(float(iou(masks, truth)), 4),
        empty_baseline=round(float(tgs_score(np.zeros_like(masks), truth)), 4),
    )


def example_ids(card: dict, arrays: TGSArrays, n: int = 8) -> list[str]:
    """``n`` tiles the model never saw, from empty to all salt (evenly spread over the salt coverage).

    Held-out tiles (used neither to train nor to choose the model) come first; on other data, e.g. the
    stand-in or Kaggle tiles beyond the card's, any tile outside the card's training and validation ids.
    """
    unseen = unseen_ids(card, arrays.ids)
    held_out = set(card["data"].get("held_out_ids", []))
    ids = [i for i in unseen if i in held_out] or unseen
    if not ids:
        raise ValueError("every tile here was used to train or choose this model; there is nothing unseen to show")
    order = np.argsort(arrays.subset(ids).coverage, kind="stable")
    picks = order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]
    return [ids[k] for k in picks]


MAX_EXAMPLES = 10  # tiles side by side in one figure: more would shrink each column below a readable size


def show_examples(name: str = "medium-strong", n: int = 8, data=None, device: str | torch.device = "cpu"):
    """A shipped model's predictions beside the truth on ``n`` tiles it never saw (1 to ``MAX_EXAMPLES``); returns
    (figure, scores).

    ``data``: a :class:`~unet_helpers.data.TGSSource` from ``get_tgs_salt()``, or a folder for it to look in
    (default ``data/tgs-salt``; without real data there, the offline stand-in, written on first use, and said
    so). The card's post-processing is applied. Rows: image, true mask, predicted mask, prediction over the image.
    """
    from .data import TGSSource, get_tgs_salt  # here: get_tgs_salt prints a banner and may write the stand-in
    from .metrics import tgs_score_per_image
    from .plots import salt_label, show_tiles

    if not 1 <= n <= MAX_EXAMPLES:
        raise ValueError(
            f"{n} examples: one figure shows 1 to {MAX_EXAMPLES} tiles readably; to score a model on every unseen "
            "tile, use benchmarks/compare_held_out.py"
        )
    model, card = load_pretrained(name, device)
    source = data if isinstance(data, TGSSource) else get_tgs_salt(data)
    arrays = load_tgs_split(source.root, "train")
    tiles = arrays.subset(example_ids(card, arrays, n))
    post = card["postprocessing"]
    probs = predict_tiles(model, card["recipe"], tiles, device, tta=post["tta"])
    masks = to_masks(probs, post["threshold"], post["min_area"])
    per_tile = tgs_score_per_image(masks, tiles.masks)
    titles = [f"{salt_label(c)}\nscore {s:.2f}" for c, s in zip(tiles.coverage, per_tile)]
    scores = score_tiles(probs, tiles.masks, post["threshold"], post["min_area"])
    result = f"tgs_score {scores['tgs']:.3f} (predicting no salt anywhere: {scores['empty_baseline']:.3f})"
    kind = "synthetic" if source.synthetic else "real"
    # The figure may travel without the terminal's words, so its title names the model and says what the tiles are.
    suptitle = f"{name} on {len(tiles)} {'SYNTHETIC stand-in' if source.synthetic else 'real TGS Salt'} tiles it never trained on: {result}"
    if source.synthetic:
        suptitle += "\nnot real data: the model learned real seismic tiles and finds little salt in synthetic ones"
    figure = show_tiles(tiles.images, tiles.masks, titles=titles, predictions=masks, suptitle=suptitle)
    print(f"{name} on {len(tiles)} {kind} tiles it never trained on: {result}")
    if source.synthetic:
        print(
            "These tiles are synthetic. The shipped models learned real seismic images and find little salt in the "
            "stand-in; on real tiles they never saw, medium-strong scores "
            f"{load_card('medium-strong')['held_out']['tgs']:.3f}. The real data: see data/README.md."
        )
    return figure, scores


# ---------------------------------------------------------------------------
# Writing a card from a training run
# ---------------------------------------------------------------------------


def best_checkpoint(run: Path) -> tuple[Path, dict]:
    """The checkpoint the run would ship: the best validation tgs_score of the main and fine-tune stages."""
    candidates = [p for p in (run / "best.pt", run / "averaged.pt", run / "finetune" / "best.pt") if p.is_file()]
    if not candidates:
        raise CheckpointError(f"{run} holds no best.pt; train first (python -m unet_helpers.train ... --out {run})")
    loaded = [(p, torch.load(p, map_location="cpu", weights_only=True)) for p in candidates]
    return max(loaded, key=lambda item: item[1]["best_score"])


# how a run was made, not what it does: left out of the command a card records
_RUN_ONLY = {"data", "out", "resume", "overwrite", "no_progress", "processes", "threads", "device", "config"}
_RUN_ONLY |= {"num_workers", "make_standin", "device_batches", "cuda_graph", "no_keep_memory", "no_channels_last"}


def training_command(config: dict) -> str:
    """The trainer's command line that made a run, from its ``config.json``: every option that is not its default."""
    from .train import build_parser  # here, not at the top: the trainer imports this module's neighbours

    words = ["python -m unet_helpers.train --data <tgs-salt>"]
    words += [f"--recipe {config['recipe']}"] if config.get("recipe") else []  # named even where it is the default
    for action in build_parser()._actions:
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        value = config.get(action.dest, action.default)
        named = action.dest == "fold" and config.get("folds")  # which fold, even fold 0, where there are folds
        if flag is None or action.dest in _RUN_ONLY | {"recipe"} or (value == action.default and not named):
            continue
        if value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words.append(f"{flag} {','.join(map(str, value))}")
        else:
            words.append(f"{flag} {value}")
    return " ".join(words)


def export(
    run: str | Path,
    data: str | Path,
    name: str | None = None,
    out_dir: Path = WEIGHTS_DIR,
    device_note: str | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
) -> dict:
    """Write ``out_dir/<name>.pt`` (float16 weights) and ``<name>.json`` (the card) from a finished run.

    An existing model of that name is refused, not replaced, unless ``overwrite`` (the command line's --overwrite).
    """
    run, data = Path(run), Path(data)
    if name is not None and (not name or Path(name).name != name or name in (".", "..")):
        raise ValueError(f"--name {name!r}: a model's name is a file name, without folders; use --out-dir for where")
    missing = [name for name in ("config.json", "split.json", "history.json") if not (run / name).is_file()]
    if missing:
        raise ValueError(
            f"{run} is not a finished training run's folder (no {', '.join(missing)}); pass the --out folder of "
            "python -m unet_helpers.train"
        )
    config = json.loads((run / "config.json").read_text())
    split = json.loads((run / "split.json").read_text())
    histories = json.loads((run / "history.json").read_text())
    recipe = config["recipe_resolved"]
    name = name or recipe["name"]
    if not split.get("test"):  # a card's score is on tiles the model never trained on or was chosen on
        raise ValueError(
            f"{run} holds out no tiles (its split.json has no held-out ids), so a card could not say how the model "
            "scores on tiles it never saw; train it with --test-fraction 0.1 (or --split-like medium-strong)"
        )
    existing = [p for p in (Path(out_dir) / f"{name}.pt", Path(out_dir) / f"{name}.json") if p.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{existing[0]} already exists; pass --overwrite to replace the model {name!r}, or choose --name or --out-dir"
        )
    path, checkpoint = best_checkpoint(run)
    model = UNet(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    half = half_state_dict(checkpoint["model"])
    rounded = UNet(**checkpoint["model_config"])
    rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    model, rounded = model.to(device), rounded.to(device)

    absent = sorted(set(split["val"] + split["test"]) - ids_of_pngs(data / "train" / "images"))
    if absent:
        raise ValueError(
            f"{len(absent)} of the run's validation and held-out tiles are not in --data {data} (e.g. "
            f"{', '.join(absent[:3])}); pass the data the run trained on: {config.get('data')} (its config.json)"
        )
    arrays = load_tgs_split(data, ids=split["val"] + split["test"])
    val, test = arrays.subset(split["val"]), arrays.subset(split["test"])
    # Everything about post-processing is chosen on the validation tiles; the held-out tiles are scored once.
    choices = {}
    for tta in (False, True):
        probs = predict_tiles(model, recipe, val, device, tta=tta)
        choices[tta] = dict(
            choose_postprocessing(probs, val.masks), plain_at_05=float(tgs_score(probs > 0.5, val.masks))
        )
    tta = choices[True]["score"] > choices[False]["score"]
    chosen = choices[tta]
    test_probs = predict_tiles(rounded, recipe, test, device, tta=tta)
    held_out = score_tiles(test_probs, test.masks, chosen["threshold"], chosen["min_area"])
    held_out_plain = score_tiles(predict_tiles(rounded, recipe, test, device, tta=False), test.masks, 0.5, 0)
    val_float16 = score_tiles(
        predict_tiles(rounded, recipe, val, device, tta=tta), val.masks, chosen["threshold"], chosen["min_area"]
    )

    split_seed = config["seed"] if config.get("split_seed") is None else config["split_seed"]
    n_tiles = len(split["train"]) + len(split["val"]) + len(split["test"])
    history = histories.get("all") or histories.get("main")
    planned = recipe["epochs"] + ((recipe.get("finetune_epochs") or 0) if recipe.get("finetune_loss") else 0)
    if len(history["epoch"]) < planned:
        print(f"warning: {run} ran {len(history['epoch'])} of its {planned} epochs: the run is unfinished")
    stage = "finetune" if path.parent.name == "finetune" else "main"
    synthetic = is_standin_folder(data)
    kind = "the offline stand-in's synthetic" if synthetic else "real TGS Salt"
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.pt"
    torch.save(half, weights)
    card = dict(
        name=name,
        summary=(
            f"U-Net {recipe['name']} trained from scratch on {kind} tiles: held-out tgs_score "
            f"{held_out['tgs']:.3f} on {held_out['tiles']} tiles (all-empty baseline {held_out['empty_baseline']:.3f})"
        ),
        recipe=recipe,
        model_config=checkpoint["model_config"],
        parameters=count_parameters(model),
        data=dict(
            source=(
                f"the offline stand-in (synthetic tiles written by unet_helpers.data), {n_tiles:,} of its tiles"
                if synthetic
                else f"Kaggle TGS Salt Identification Challenge, its training tiles ({n_tiles:,} of Kaggle's {N_TRAIN:,} "
                "were used)"
            ),
            split=(
                f"the split of {config['split_like']} (its ids): "
                if config.get("split_like")
                else f"stratified by salt coverage, seed {split_seed}: "
            )
            + f"{len(split['train'])} training, {len(split['val'])} validation, {len(split['test'])} held-out tiles"
            + (
                f"; fold {config['fold']} of {config['folds']} (seed {config.get('fold_seed', 0)}) of its training and "
                "validation tiles validates"
                if config.get("folds")
                else ""
            ),
            train_ids=split["train"],
            val_ids=split["val"],
            held_out_ids=split["test"],
        ),
        training=dict(
            epochs=recipe["epochs"],
            finetune_epochs=recipe.get("finetune_epochs", 0),
            epochs_run=len(history["epoch"]),
            chosen_checkpoint=f"{stage} stage, "
            + (
                f"the average of the snapshots of epochs {', '.join(map(str, checkpoint['averaged_epochs']))}"
                if checkpoint.get("averaged_epochs")
                else f"epoch {checkpoint['epoch']}"
            ),
            device=device_note or config.get("device", "cpu"),
            threads=config.get("threads"),
            wall_time_s=round(float(sum(history["seconds"])), 1),
            command=training_command(config),
        ),
        history={k: [round(float(v), 5) for v in vals] for k, vals in history.items()},
        best_val_tgs=round(float(checkpoint["best_score"]), 4),
        postprocessing=dict(
            threshold=chosen["threshold"],
            min_area=chosen["min_area"],
            tta=tta,
            chosen_on="validation tiles",
            val_tgs=dict(
                plain_at_0_5=round(choices[False]["plain_at_05"], 4),
                best_without_tta=round(choices[False]["score"], 4),
                best_with_tta=round(choices[True]["score"], 4),
            ),
        ),
        held_out=dict(held_out, plain_at_0_5_without_tta=held_out_plain["tgs"]),
        weights=dict(
            file=weights.name,
            dtype="float16",
            kept_float32=[k for k, v in half.items() if v.dtype == torch.float32],  # too large for float16
            bytes=weights.stat().st_size,
            sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
            val_tgs_float32=round(chosen["score"], 4),
            val_tgs_float16=val_float16["tgs"],
        ),
    )
    return write_card(out_dir / f"{name}.json", card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_helpers.pretrained", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models and their held-out scores")
    ex = sub.add_parser("export", help="write weights and card from a finished training run")
    ex.add_argument("--run", type=Path, required=True, help="the run's --out folder")
    ex.add_argument("--data", type=Path, required=True, help="the data folder the run trained on")
    ex.add_argument("--name", default=None, help="the model's name (default: the recipe's)")
    ex.add_argument(
        "--out-dir",
        type=Path,
        default=WEIGHTS_DIR,
        help="where to write NAME.json and NAME.pt (default: the package's weights folder, where the shipped models "
        "are; for your own models pass a folder of yours, e.g. runs/models, and predict with --pretrained "
        "runs/models/NAME.json)",
    )
    ex.add_argument("--device-note", default=None, help="what trained it, for the card (e.g. '2-core Xeon CPU')")
    ex.add_argument("--overwrite", action="store_true", help="replace a model of the same name in --out-dir")
    ex.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where to predict the validation and held-out tiles"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            if args.device == "cuda" and not torch.cuda.is_available():
                raise ValueError("--device cuda was asked for, but no GPU is visible; use --device cpu")
            if args.device == "cpu":
                # its five passes over the run's 600 validation and held-out tiles: 48 s instead of 76 s on this
                # project's 2-core EPYC with one thread (measured once), as for predict's command line
                keep_freed_memory()
            card = export(args.run, args.data, args.name, args.out_dir, args.device_note, args.overwrite, args.device)
            print(card["summary"])
            written = Path(args.out_dir) / f"{card['name']}.json"
            print(f"wrote {written} and its weights; predict with --pretrained {written}")
        else:
            for name in available_pretrained():
                card = load_card(name)
                print(
                    f"{name:16} {card['parameters']:>9,} parameters  held-out tgs_score {card['held_out']['tgs']:.3f}"
                    f"  ({card['held_out']['tiles']} tiles, empty baseline {card['held_out']['empty_baseline']:.3f})"
                )
            for name in set(available_pretrained(generators=True)) - set(available_pretrained()):
                card = load_card(name)
                print(f"{name:16} {card['parameters']:>9,} parameters  {card['summary']}")
    except (CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
