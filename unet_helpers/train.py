"""Train a U-Net on TGS Salt from the command line, with the recipes of notebook 04.

    python -m unet_helpers.train --data data/tgs-salt --out runs/strong
    python -m unet_helpers.train --config my_run.toml --epochs 60
    torchrun --nproc_per_node=4 -m unet_helpers.train --data data/tgs-salt --out runs/strong

On a CPU with 2 or more cores it trains a network without batch norm as two data-parallel processes
by itself (--processes auto), about as fast there as one process with every thread; --processes 1
keeps it in one process.

Every option can also come from a JSON or TOML file (--config), with the option names as keys
(dashes or underscores); options given on the command line win. The output folder receives
last.pt / best.pt (and finetune/), history.json and config.json. Errors in the options, the
data or the checkpoints print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from .data import (
    TGSDataError,
    coverage_class,
    layout_problems,
    load_tgs_split,
    make_synthetic_tgs,
    stratified_folds,
    stratified_split,
)
from .data.files import get_data_hint
from .engine import CheckpointError, amp_dtype_for, rank_and_world
from .losses import LOSSES
from .models import PADDING_MODES, PADDINGS, UPSAMPLINGS
from .recipes import RECIPES, build_model, fitting_side, make_datasets, run_recipe


class UsageError(Exception):
    """A problem the user can fix by changing the command; reported with exit status 2."""


FRACTIONS = {"val_fraction": 0.2, "test_fraction": 0.0}  # the split's defaults (--split-like refuses others)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m unet_helpers.train",
        description="Train a U-Net on TGS Salt (one process, or several under torchrun with DistributedDataParallel).",
        epilog="Example: python -m unet_helpers.train --data data/tgs-salt --recipe medium-strong --out runs/strong",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        type=Path,
        default=Path("data/tgs-salt"),
        help="folder in Kaggle's layout (train/images, train/masks, depths.csv, ...); default data/tgs-salt",
    )
    g.add_argument(
        "--make-standin",
        action="store_true",
        help="if --data holds no data, first write the offline synthetic stand-in there",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=FRACTIONS["val_fraction"],
        help="share of tiles held out for validation (default 0.2)",
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        default=FRACTIONS["test_fraction"],
        help="share of tiles held out for neither training nor checkpoint choice, for an honest final "
        "score (default 0); the ids of all three parts go to split.json",
    )
    g.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the split alone (default: --seed), so runs with other seeds can share one split",
    )
    g.add_argument(
        "--split-like",
        default=None,
        metavar="MODEL_OR_JSON",
        help="train, validate and hold out exactly the tiles of a shipped model's card (e.g. medium-strong), of a "
        "card file or of a run's split.json, so that both are scored on the same unseen tiles (replaces "
        "--val-fraction, --test-fraction and --split-seed; with --folds, --split-seed seeds the folds)",
    )
    g.add_argument(
        "--folds",
        type=int,
        default=0,
        help="cross-validation: pool the training and validation tiles (the held-out tiles stay out), deal them into "
        "N folds stratified by salt coverage and validate on fold --fold; the folds are dealt from the sorted ids, "
        "seeded by --split-seed (default 0), not --seed, so fold runs that hold out the same tiles (--split-like, or "
        "the same --split-seed and --test-fraction) share their folds whatever their --seed and --val-fraction",
    )
    g.add_argument("--fold", type=int, default=0, help="with --folds: the fold to validate on, 0 to N-1 (default 0)")
    g.add_argument("--limit-train", type=int, default=None, help="use only the first N training tiles (quick runs)")
    g.add_argument("--limit-val", type=int, default=None, help="use only the first N validation tiles (quick runs)")
    g.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader worker processes per training process (default 0)"
    )

    g = p.add_argument_group("model and recipe (the recipe sets every value below; an option overrides it)")
    g.add_argument(
        "--recipe", default="medium-strong", choices=sorted(RECIPES), help="starting recipe (default medium-strong)"
    )
    g.add_argument("--features", type=_int_list, default=None, help="channels per level, e.g. 16,32,64,128")
    g.add_argument("--padding", choices=PADDINGS, default=None, help="'same' or 'valid' (the paper's) convolutions")
    g.add_argument(
        "--padding-mode", choices=PADDING_MODES, default=None, help="border of same convolutions, e.g. reflect"
    )
    g.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="BatchNorm after each convolution"
    )
    g.add_argument(
        "--upsample",
        choices=UPSAMPLINGS,
        default=None,
        help="transpose (the paper's 2x2 up-convolution) or bilinear (bilinear upsampling + a 1x1 convolution)",
    )
    g.add_argument(
        "--block",
        choices=("double", "residual"),
        default=None,
        help="two 3x3 convolutions, or the same with a shortcut",
    )
    g.add_argument(
        "--attention", choices=("none", "scse"), default=None, help="scse: channel and spatial gates after every block"
    )
    g.add_argument(
        "--hypercolumn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the head sees every decoder level, upsampled and concatenated",
    )
    g.add_argument(
        "--salt-head",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a second head that says whether a tile holds salt, trained beside the mask; it empties the tiles it "
        "calls empty",
    )
    g.add_argument("--size", choices=("pad", "resize", "none"), default=None, help="how tiles reach the network's side")
    g.add_argument(
        "--side",
        type=int,
        default=None,
        help="side to pad or resize 101x101 tiles to (default: the smallest the network takes: 104, 112 or 144)",
    )
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    g.add_argument(
        "--strong-augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also random zoom-in crops and brightness/contrast jitter",
    )

    g = p.add_argument_group("optimisation")
    g.add_argument("--loss", choices=sorted(LOSSES), default=None, help="training loss")
    g.add_argument(
        "--optimizer", choices=("adam", "adamw"), default=None, help="adam, or adamw (decoupled weight decay)"
    )
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--weight-decay", type=float, default=None, help="weight decay of the optimizer")
    g.add_argument(
        "--scheduler",
        choices=("plateau", "cosine", "cosine_restarts", "none"),
        default=None,
        help="plateau: ReduceLROnPlateau on the validation loss; cosine: cosine annealing; cosine_restarts: "
        "cosine cycles of --cycle-epochs, each ending in a restart",
    )
    g.add_argument(
        "--cycle-epochs",
        type=int,
        default=None,
        help="with cosine_restarts: epochs per cycle (default: the whole stage)",
    )
    g.add_argument(
        "--snapshot-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with cosine_restarts: average the weights saved at the end of every cycle, kept when it beats the best "
        "single epoch on validation (averaged.pt)",
    )
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the main stage; a recipe's fine-tune stage is scaled with it unless --finetune-epochs is "
        "given (medium-strong is 50 + 15: --epochs 10 trains 10 + 3, --epochs 1 trains 1 + 0)",
    )
    g.add_argument("--batch-size", type=int, default=None, help="global batch size, split over all processes")
    g.add_argument("--finetune-loss", choices=sorted(LOSSES), default=None, help="loss of the fine-tune stage (lovasz)")
    g.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="epochs of the fine-tune stage, whatever --epochs is (0: none; default: the recipe's, scaled with --epochs)",
    )
    g.add_argument("--finetune-lr", type=float, default=None, help="learning rate of the fine-tune stage")
    g.add_argument("--seed", type=int, default=0, help="seed of the split, the shuffles and the initial weights")

    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default runs/train)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    g.add_argument("--overwrite", action="store_true", help="start again even if --out already holds a run")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available")
    g.add_argument("--no-amp", action="store_true", help="train in float32 even on a GPU")
    g.add_argument(
        "--device-batches",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the training tiles on the device and draw and augment every batch there, without DataLoader "
        "workers (default: on a GPU, whose epochs a CPU-side loader paces; works on a CPU too)",
    )
    g.add_argument(
        "--cuda-graph",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record each training step once as a CUDA graph and replay it: one launch instead of about 300 kernels "
        "a step, 3.3x faster epochs on an H100 (default: on where possible, a bfloat16 GPU (Ampere or newer) in one "
        "process; asked for elsewhere, it says why not and trains as usual)",
    )
    g.add_argument("--no-channels-last", action="store_true", help="keep the default (N, C, H, W) memory format")
    g.add_argument(
        "--no-keep-memory",
        action="store_true",
        help="on a Linux CPU, leave the C allocator's defaults (by default it keeps freed memory for the next step)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 lets two runs share 2 cores without slowing each other",
    )
    g.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        help="training processes on a CPU, 'auto' or a number (default auto: 2 on a CPU with 2 or more cores, each "
        "with half of them, for networks without batch norm: two data-parallel processes train about as fast "
        "there as one with every thread); under torchrun, torchrun decides",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch is still printed)")
    g.add_argument("--config", type=Path, default=None, help="JSON or TOML file with any of these options")
    return p


def _processes(text: str) -> str | int:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number of at least 1, got {text!r}")
    return int(text)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, e.g. 16,32,64, got {text!r}"
        ) from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need at least 2 positive channel counts, got {text!r}")
    return values


def read_config_file(path: Path, parser: argparse.ArgumentParser) -> dict:
    """Options from a JSON or TOML file, as parser destinations; unknown keys are an error."""
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        if path.suffix == ".toml":
            try:
                import tomllib  # Python 3.11+
            except ImportError:
                raise UsageError(f"config file {path}: TOML needs Python 3.11 or newer; write it as JSON") from None
            values = tomllib.loads(path.read_text())
        else:
            values = json.loads(path.read_text())
    except (ValueError, OSError) as err:  # JSON and TOML syntax errors are ValueErrors
        raise UsageError(f"config file {path} cannot be parsed: {err}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config file {path} must hold option names and values, got a {type(values).__name__}")
    known = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    if "recipe_resolved" in values:  # a run's own config.json: what the trainer added to the options is not an option
        values = {k: v for k, v in values.items() if k not in ("config", "recipe_resolved", "processes", "device")}
        # nor what that command did to its folder: repeating its --overwrite would delete the very run it describes
        values = {k: v for k, v in values.items() if k not in ("overwrite", "resume")}
    out = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in known:
            raise UsageError(f"config file {path}: unknown option {key!r}; see --help for the names")
        try:
            out[dest] = _config_value(known[dest], value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise UsageError(f"config file {path}: {key}: {err}") from None
    return out


def _config_value(action: argparse.Action, value):
    """A value of a config file, checked as the command line would check it: never silently converted."""
    if value is None:
        return None
    flag = action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction)
    if flag:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    if action.dest == "features":
        return _int_list(",".join(map(str, value)) if isinstance(value, list) else str(value))
    if action.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"expected a whole number, got {value!r}")
    if action.type is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"expected a number, got {value!r}")
    if action.type is float:
        return float(value)
    if action.type is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path as text, got {value!r}")
        return Path(value)
    if callable(action.type) and action.type not in (int, str):
        return action.type(str(value))
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config is not None:
        parser.set_defaults(**read_config_file(first.config, parser))
    return parser.parse_args(argv)


def recipe_from_args(args: argparse.Namespace):
    recipe = RECIPES[args.recipe]
    model = dict(recipe.model)
    levers = ("upsample", "block", "attention", "hypercolumn", "salt_head")
    for key in ("features", "padding", "padding_mode", "batch_norm", *levers):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    if model.get("attention") == "none":
        model.pop("attention")  # the plain network
    if model.get("padding") == "valid":
        model.pop("padding_mode", None)  # valid convolutions have no border to fill
    overrides = {
        k: getattr(args, k)
        for k in (
            "size",
            "side",
            "augment",
            "strong_augment",
            "loss",
            "optimizer",
            "lr",
            "weight_decay",
            "scheduler",
            "epochs",
            "batch_size",
            "finetune_loss",
            "finetune_epochs",
            "finetune_lr",
            "cycle_epochs",
            "snapshot_average",
        )
        if getattr(args, k) is not None
    }
    if "side" not in overrides and model != recipe.model:
        overrides["side"] = fitting_side(model)  # another network may need another side
    if "epochs" in overrides and "finetune_epochs" not in overrides and recipe.finetune_loss and recipe.epochs:
        # --epochs scales the whole schedule: the fine-tune stage keeps its share (50 + 15 -> 10 + 3, 1 + 0).
        overrides["finetune_epochs"] = int(args.epochs * recipe.finetune_epochs / recipe.epochs + 0.5)
    recipe = dataclasses.replace(recipe, model=model, **overrides)
    check_numbers(args, recipe)
    return recipe


def check_numbers(args: argparse.Namespace, recipe) -> None:
    """Every number the user can give, in its range: nothing is silently clipped, rounded or ignored."""
    at_least = [
        ("--epochs", recipe.epochs, 1),
        ("--batch-size", recipe.batch_size, 1),
        ("--finetune-epochs", recipe.finetune_epochs, 0),
        ("--limit-train", args.limit_train, 1),
        ("--limit-val", args.limit_val, 1),
        ("--num-workers", args.num_workers, 0),
        ("--threads", args.threads, 1),
    ]
    for name, value, low in at_least:
        if value is not None and value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}")
    for name, value in (("--lr", recipe.lr), ("--finetune-lr", recipe.finetune_lr)):
        if not value > 0:
            raise UsageError(f"{name} must be above 0, got {value}")
    if recipe.cycle_epochs < 0:
        raise UsageError(f"--cycle-epochs must be 0 or more, got {recipe.cycle_epochs}")
    if recipe.snapshot_average and recipe.scheduler != "cosine_restarts":
        raise UsageError("--snapshot-average averages the ends of cosine cycles: add --scheduler cosine_restarts")
    if recipe.weight_decay < 0:
        raise UsageError(f"--weight-decay must be 0 or more, got {recipe.weight_decay}")
    if args.split_like is not None and args.split_seed is not None and not args.folds:
        raise UsageError("--split-like takes its split from the card or split.json: drop --split-seed")
    fractions = [f"--{key.replace('_', '-')} {getattr(args, key)}" for key, default in FRACTIONS.items()
                 if getattr(args, key) != default]  # fmt: skip
    if args.split_like is not None and fractions:
        source = f" (on the command line or in {args.config})" if getattr(args, "config", None) else ""
        raise UsageError(
            f"--split-like takes its split from the card or split.json: drop {' and '.join(fractions)}{source}"
        )
    if args.folds == 1 or args.folds < 0:
        raise UsageError(f"--folds must be 2 or more (or 0: no cross-validation), got {args.folds}")
    if args.fold and not args.folds:
        raise UsageError(f"--fold {args.fold} picks one of the --folds: add --folds N (e.g. --folds 5)")
    if args.folds and not 0 <= args.fold < args.folds:
        raise UsageError(f"--fold must be 0 to {args.folds - 1} for --folds {args.folds}, got {args.fold}")
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if not 0 <= args.test_fraction < 1 - args.val_fraction:
        raise UsageError(
            f"--test-fraction must be at least 0 and leave tiles to train on, got {args.test_fraction} "
            f"beside --val-fraction {args.val_fraction}"
        )
    if recipe.finetune_epochs and not recipe.finetune_loss:
        raise UsageError(
            f"--finetune-epochs {recipe.finetune_epochs} needs a fine-tune loss: the recipe {recipe.name} has none; "
            "add --finetune-loss lovasz"
        )
    if recipe.model.get("block") == "residual" and recipe.model.get("padding", "valid") == "valid":
        raise UsageError("--block residual needs --padding same: a shortcut must keep the side")
    if recipe.size != "none" and recipe.side < 101:
        raise UsageError(f"--side must be at least 101 to {recipe.size} a 101x101 tile, got {recipe.side}")
    if recipe.model.get("padding", "valid") == "valid" and recipe.size != "none":
        smallest = fitting_side(recipe.model)
        if recipe.side < smallest:
            raise UsageError(
                f"--side {recipe.side} is too small for valid convolutions: the output would not cover a whole "
                f"101x101 tile; this network needs --side {smallest} or more"
            )
        try:
            build_model(recipe).check_side(recipe.side)
        except ValueError as err:
            raise UsageError(f"--side {recipe.side}: {err}") from None


def read_split(source: str) -> tuple[list[str], list[str], list[str]]:
    """The train / validation / held-out ids of a shipped model's card (by name), of a card file or of a split.json.

    The ids themselves, not a seed: the same seed splits differently if the tiles come in another order.
    """
    from .pretrained import available_pretrained, load_card  # here: pretrained imports from this module's package

    if source in available_pretrained():
        return _split_of_card(source, load_card(source))
    path = Path(source)
    if not path.is_file():
        raise UsageError(
            f"--split-like {source}: neither a shipped model ({', '.join(available_pretrained())}) nor a file; "
            "name a model, a card's .json or a run's split.json"
        )
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"--split-like {path}: not valid JSON ({err})") from None
    if not isinstance(found, dict):
        raise UsageError(f"--split-like {path}: holds neither a card nor a split.json")
    if {"train", "val"} <= set(found):  # a run's split.json
        return _checked_split(source, [found["train"], found["val"], found.get("test", [])])
    return _split_of_card(source, found)


def _split_of_card(source: str, card: dict) -> tuple[list[str], list[str], list[str]]:
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    return _checked_split(source, [data.get(key) for key in ("train_ids", "val_ids", "held_out_ids")])


def _checked_split(source: str, parts: list) -> tuple[list[str], list[str], list[str]]:
    """Train / validation / held-out ids, refused (naming ``source``) if a part is missing or they overlap."""
    if not all(isinstance(part, list) for part in parts):
        raise UsageError(
            f"--split-like {source}: holds no training, validation and held-out ids (a segmenter's card or a run's "
            "split.json has them; a denoiser's card does not)"
        )
    seen: dict[str, str] = {}
    for name, ids in zip(("training", "validation", "held-out"), parts):
        for id_ in ids:
            if id_ in seen:
                where = "twice" if seen[id_] == name else f"in both its {seen[id_]} and its {name} tiles"
                raise UsageError(
                    f"--split-like {source}: id {id_} is listed {where}; a split's parts must not overlap "
                    "(a model validated on tiles it trained on reads too high)"
                )
            seen[id_] = name
    return parts[0], parts[1], parts[2]


def split_three_ways(
    arrays, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """Train / validation / held-out ids, each stratified by salt coverage; fractions are shares of all tiles.

    The held-out part is split off first, so a run with ``test_fraction=0`` has the same split as before.
    """
    ids, classes = arrays.ids, coverage_class(arrays.coverage)
    test_ids: list[str] = []
    if test_fraction > 0:
        ids, test_ids = stratified_split(ids, classes, test_fraction, seed)
        classes = coverage_class(arrays.subset(ids).coverage)
        val_fraction = val_fraction / (1 - test_fraction)
    train_ids, val_ids = stratified_split(ids, classes, val_fraction, seed)
    return train_ids, val_ids, test_ids


def split_seed(args: argparse.Namespace) -> int:
    """The seed of the split: ``--split-seed``, else ``--seed`` (the folds have their own: :func:`fold_seed`)."""
    return args.seed if args.split_seed is None else args.split_seed


def fold_seed(args: argparse.Namespace) -> int:
    """The seed of the folds: ``--split-seed``, else 0 (never ``--seed``: every fold's run must deal the same folds)."""
    return 0 if args.split_seed is None else args.split_seed


def fold_split(arrays, ids: list[str], folds: int, fold: int, seed: int) -> tuple[list[str], list[str]]:
    """Train / validation ids of one fold of a cross-validation over ``ids`` (``data.stratified_folds``)."""
    ids = sorted(ids)  # the same tiles deal the same folds, in whatever order the split listed them
    dealt = stratified_folds(ids, coverage_class(arrays.subset(ids).coverage), folds, seed)
    return [i for k, part in enumerate(dealt) if k != fold for i in part], dealt[fold]


def _setup_distributed(args: argparse.Namespace) -> torch.device:
    """Join the process group that torchrun describes in the environment; pick this process's device."""
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no GPU is visible; use --device cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    tmp.replace(path)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def planned_processes(args: argparse.Namespace) -> int:
    """How many training processes this command starts: 1 means it trains in this process.

    ``--processes auto`` chooses 2 on a CPU with 2 or more cores. There, two data-parallel
    processes with half of the threads each train about as fast as one process with all of them
    (benchmarks/bench_training.py, medium-reflect on 2 cores: 75.2 against 69.5 images/s in one run,
    80.6 against 78.5 with --variants in another, 68.8 against 65.0 on an AMD EPYC; runs vary by
    10-20%), and with the same global batch and no random augmentation they train the same network
    (notebook 06). It keeps 1 for a network with batch norm: on a CPU each process would normalise
    over its half of the batch (SyncBatchNorm needs CUDA),
    which changes the training, and the larger network gains nothing there anyway. It keeps 1 on
    a GPU, when ``--threads`` is given (the user is sharing out the cores), on Windows, and inside
    processes that torchrun started.
    """
    if "WORLD_SIZE" in os.environ:  # started by torchrun (or by --processes): the number is decided
        return 1
    on_cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    if args.processes != "auto":
        if args.processes > 1 and not on_cpu:
            raise UsageError(
                "--processes starts processes on the CPU; for several GPUs use "
                "torchrun --nproc_per_node=N -m unet_helpers.train ..."
            )
        return args.processes
    recipe = recipe_from_args(args)
    splits = recipe.batch_size % 2 == 0 and not recipe.model.get("batch_norm")
    if on_cpu and _usable_cores() >= 2 and splits and args.threads is None and sys.platform != "win32":
        return 2
    return 1


ERROR_FILE_VARIABLE = "UNET_TRAIN_ERROR_FILE"  # set by launch_processes: where a worker writes its error


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_processes(args: argparse.Namespace, argv: list[str], processes: int) -> int:
    """Run this same command as ``processes`` data-parallel CPU processes; its exit status.

    Everything that can be checked is checked here first, once: the options, the output folder and
    every data file, so a fault prints one message and no process starts. A worker that fails later
    (a checkpoint from another configuration, say) writes its message to a file instead of the
    terminal; this process prints each different message once, stops the other workers, which would
    otherwise wait for it, and exits with the worker's status: 2 for a problem the user can fix.
    """
    recipe = prepare(args)  # usage errors and the stand-in, once, before any process starts
    if recipe.batch_size % processes:
        raise UsageError(f"--batch-size {recipe.batch_size} must be divisible by the {processes} processes")
    load_training_data(args)  # every data fault, in one message
    threads = max(1, _usable_cores() // processes)
    print(
        f"training with {processes} data-parallel processes x {threads} thread(s) on the CPU "
        "(--processes 1 trains in one process)",
        flush=True,
    )
    command = [sys.executable, "-m", "unet_helpers.train", *argv]
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="unet-train-") as reports:
        workers = []
        for rank in range(processes):
            env = dict(
                os.environ,
                OMP_NUM_THREADS=str(threads),
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(processes),
                LOCAL_WORLD_SIZE=str(processes),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                **{ERROR_FILE_VARIABLE: str(Path(reports) / f"rank{rank}")},
            )
            workers.append(subprocess.Popen(command, env=env))
        try:
            while any(w.poll() is None for w in workers):
                if any(w.returncode not in (None, 0) for w in workers):
                    for w in workers:  # the others would wait for the failed one forever
                        if w.poll() is None:
                            w.terminate()
                time.sleep(0.1)
        except KeyboardInterrupt:  # Ctrl-C reached the workers too; let them stop (one may wait for the other)
            for w in workers:
                try:
                    w.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    w.kill()
            print(
                f"interrupted; to continue from the last finished epoch, run the same command with --resume ({args.out})"
            )
            return 130
        errors = [Path(reports) / f"rank{rank}.error" for rank in range(processes)]
        crashes = [Path(reports) / f"rank{rank}.crash" for rank in range(processes)]
        messages = list(dict.fromkeys(p.read_text() for p in errors if p.is_file()))  # each message once
        for message in messages:
            print(message, file=sys.stderr)
        if messages:
            return 2
        tracebacks = [p.read_text() for p in crashes if p.is_file()]
        if tracebacks:  # a real bug: show the first worker's traceback (the others only saw it fail)
            print(tracebacks[0], file=sys.stderr, end="")
            return 1
    return max(w.returncode for w in workers) if all(w.returncode >= 0 for w in workers) else 1


def _report(message: str, kind: str) -> bool:
    """In a worker of ``launch_processes``: leave ``message`` for it to print; False elsewhere."""
    where = os.environ.get(ERROR_FILE_VARIABLE)
    if not where:
        return False
    Path(f"{where}.{kind}").write_text(message)
    return True


def wants_cuda_graph(args: argparse.Namespace, device: torch.device, world: int) -> bool:
    """--cuda-graph as given; by default on for one process on a bfloat16 GPU (float16 needs a scaler that waits)."""
    if args.cuda_graph is not None:
        return args.cuda_graph
    return device.type == "cuda" and world == 1 and amp_dtype_for(device, not args.no_amp) != torch.float16


def prepare(args: argparse.Namespace, rank: int = 0, world: int = 1):
    """Check the command before any training (exit status 2 on a problem); write the stand-in if asked. The recipe."""
    recipe = recipe_from_args(args)
    out = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder for the checkpoints")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite starts it again: pass one of them")
    if args.resume and not (out / "last.pt").exists() and rank == 0 and ERROR_FILE_VARIABLE not in os.environ:
        print(f"note: {out} holds no run to resume (no last.pt), so a new one starts", flush=True)
    if (out / "last.pt").exists() and not (args.resume or args.overwrite):
        raise UsageError(
            f"{out} already holds a run (last.pt); pass --resume to continue it, --overwrite to start "
            "again, or choose another --out"
        )
    if (out / "config.json").is_file() and not _written_by_trainer(out / "config.json"):
        raise UsageError(
            f"{out / 'config.json'} is not a config.json the trainer wrote, and the trainer writes the run's own "
            "there: keep your options file elsewhere (--config my-options.json) or choose another --out"
        )
    written = [name for name in RUN_FILES if (out / name).exists()]
    if written and not (out / "last.pt").exists() and not (args.resume or args.overwrite):
        raise UsageError(
            f"{out} already holds {', '.join(written)}, which the trainer writes; pass --overwrite to start a run "
            "there anyway, or choose another --out"
        )
    if layout_problems(args.data, None, None) and args.make_standin and rank == 0:
        print(f"writing the offline stand-in into {args.data} ...", flush=True)
        make_synthetic_tgs(args.data)
    if world > 1:
        dist.barrier()  # the stand-in is complete before any rank reads it
    if not (args.data / "train" / "images").is_dir():
        if (args.data / "images").is_dir() and args.data.name == "train":  # one level too deep
            raise UsageError(
                f"data folder {args.data} is the train/ folder of a Kaggle layout; pass --data {args.data.parent}"
            )
        if not args.data.exists():
            raise UsageError(
                f"data folder {args.data} does not exist; point --data at a folder in Kaggle's layout, add "
                f"--make-standin to write the offline stand-in there, or {get_data_hint(args.data)}"
            )
        if (args.data / "images").is_dir() and (args.data / "masks").is_dir():  # the pairs, without Kaggle's layout
            raise UsageError(
                f"data folder {args.data} holds images/ and masks/ directly; Kaggle's layout has them under train/: "
                f"move them to {args.data / 'train' / 'images'} and {args.data / 'train' / 'masks'}, and add a "
                "depths.csv (id,z) with each tile's depth"
            )
        raise UsageError(
            f"data folder {args.data} holds no train/images; point --data at a folder in Kaggle's layout, add "
            f"--make-standin to train on the offline stand-in, or {get_data_hint(args.data)}"
        )
    return recipe


RUN_FILES = ("config.json", "split.json", "history.json")  # what the trainer writes in --out besides checkpoints


def _written_by_trainer(path: Path) -> bool:
    """Whether a config.json is one the trainer wrote (it records the recipe it resolved)."""
    try:
        return "recipe_resolved" in json.loads(path.read_text())
    except (ValueError, OSError):
        return False


def load_training_data(args: argparse.Namespace, rank: int = 0):
    """Every training tile of ``--data``, decoded and checked (all faults in one message)."""
    if not (args.data / "train.csv").is_file() and rank == 0 and ERROR_FILE_VARIABLE not in os.environ:
        print(
            f"note: {args.data} has no train.csv, so the tiles are the image/mask pairs found in train/images "
            "and train/masks",
            flush=True,
        )
    return load_tgs_split(args.data)


def check_same_split(out: Path, split: dict) -> None:
    """Refuse to resume the run in ``out`` on other tiles than it trained on (other --data, seed, fractions or
    limits): its checkpoints would go on learning from tiles its validation and held-out scores do not describe."""
    path = out / "split.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    changed = [part for part in ("train", "val", "test") if saved.get(part) != split[part]]
    if changed:

        def sizes(ids: dict) -> str:
            return "/".join(str(len(ids.get(part, []))) for part in ("train", "val", "test"))

        raise UsageError(
            f"--resume: the run in {out} trained on other tiles (its split.json, training/validation/held-out "
            f"{sizes(saved)}; this command deals {sizes(split)}, and its {', '.join(changed)} tiles differ): resume "
            "with the run's own --data, --seed and split options (its config.json), or start a new run in another --out"
        )


def run(args: argparse.Namespace) -> dict:
    """Train in this process (one of several under torchrun); the joined history of both stages."""
    device = _setup_distributed(args)
    rank, world = rank_and_world()
    recipe = prepare(args, rank, world)
    out = args.out
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays = load_training_data(args, rank)
    if args.split_like is not None:
        train_ids, val_ids, test_ids = read_split(args.split_like)
        missing = sorted(set(train_ids + val_ids + test_ids) - set(arrays.ids))
        if missing:
            raise UsageError(
                f"--split-like {args.split_like}: {len(missing)} of its tiles are not in {args.data} (e.g. "
                f"{', '.join(missing[:3])}); use the data it was made from (Kaggle's TGS Salt train/) or drop --split-like"
            )
    else:
        train_ids, val_ids, test_ids = split_three_ways(arrays, args.val_fraction, args.test_fraction, split_seed(args))
    if args.folds:  # cross-validation: this run validates on one fold of the tiles it does not hold out
        train_ids, val_ids = fold_split(arrays, train_ids + val_ids, args.folds, args.fold, fold_seed(args))
        cut = len(train_ids) > (args.limit_train or len(train_ids)) or len(val_ids) > (args.limit_val or len(val_ids))
        if cut and rank == 0:
            print(
                "warning: --limit-train/--limit-val cut this fold short: the folds no longer validate every tile once"
            )
    train_ids, val_ids = train_ids[: args.limit_train], val_ids[: args.limit_val]
    if not train_ids or not val_ids:
        raise UsageError(
            f"{len(arrays.ids)} tiles in {args.data} leave {len(train_ids)} for training and {len(val_ids)} for "
            "validation: a run needs both (the best epoch is chosen on validation); use more tiles or change "
            "--val-fraction / --test-fraction / --limit-train / --limit-val"
        )
    train_ds, val_ds = make_datasets(recipe, arrays, train_ids, val_ids)
    extra = dict(val_fraction=args.val_fraction, limit_train=args.limit_train, limit_val=args.limit_val)
    if args.test_fraction:
        extra["test_fraction"] = args.test_fraction
    if args.split_like is not None:  # the split's own ids, not the fractions
        extra = dict(split_like=args.split_like, limit_train=args.limit_train, limit_val=args.limit_val)
    if args.folds:
        extra.update(folds=args.folds, fold=args.fold, fold_seed=fold_seed(args))
    split = dict(train=train_ids, val=val_ids, test=test_ids)
    resuming = args.resume and (out / "last.pt").exists()
    if resuming:  # the run's own files stay as they are: a resume that is refused changes nothing in --out
        check_same_split(out, split)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming or not (out / "split.json").is_file():
            _write_json(out / "split.json", split)
        if not resuming or not (out / "config.json").is_file():
            _write_json(
                out / "config.json",
                dict(vars(args), recipe_resolved=recipe.config(), processes=world, device=str(device)),
            )
        print(
            f"{recipe.name}: {len(train_ids)} training / {len(val_ids)} validation / {len(test_ids)} held-out tiles "
            f"({recipe.side}x{recipe.side} inputs), {world} process(es) on "
            f"{device.type}, global batch {recipe.batch_size}\n{recipe.schedule()}",
            flush=True,
        )
    histories: dict[str, dict] = {}

    def save_history(stage: str, epoch: int, history: dict) -> None:
        if rank == 0:
            histories[stage] = history
            _write_json(out / "history.json", histories)

    _, history = run_recipe(
        recipe,
        train_ds,
        val_ds,
        out,
        device,
        resume=args.resume,
        overwrite=args.overwrite,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        seed=args.seed,
        amp=not args.no_amp,
        channels_last=not args.no_channels_last,
        keep_memory=not args.no_keep_memory,
        device_batches=device.type == "cuda" if args.device_batches is None else args.device_batches,
        cuda_graph=wants_cuda_graph(args, device, world),
        extra_config=extra,
        on_epoch_end=save_history,
    )
    if rank == 0:
        histories["all"] = history
        _write_json(out / "history.json", histories)
        best = max(history["val_tgs"])
        print(f"best validation tgs_score {best:.4f}; checkpoints and history.json in {out}", flush=True)
    return history


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)  # argparse itself exits with status 2 on an unknown option or value
        processes = planned_processes(args)
        if processes > 1:
            return launch_processes(args, sys.argv[1:] if argv is None else argv, processes)
        run(args)
    except (UsageError, TGSDataError, CheckpointError, ValueError) as err:
        if not _report(f"error: {err}", "error"):
            print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written, a full disk: one line, not a traceback
        message = f"error: {err.strerror or err} ({err.filename or 'a file'}); check the path and its permissions"
        if not _report(message, "error"):
            print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if ERROR_FILE_VARIABLE not in os.environ:  # the launcher says it once for all its workers
            print("interrupted; to continue from the last finished epoch, run the same command with --resume")
        return 130
    except Exception:
        if _report(traceback.format_exc(), "crash"):  # a worker: the launcher shows it, once
            return 1
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
