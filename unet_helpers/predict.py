"""Segment a folder of images with a trained U-Net: mask PNGs, or a Kaggle submission.

    python -m unet_helpers.predict --pretrained medium-strong --images data/tgs-salt/test/images --out runs/masks
    python -m unet_helpers.predict --pretrained medium-strong --images data/tgs-salt/test/images --submission runs/submission.csv
    python -m unet_helpers.predict --checkpoint runs/strong --images my_images/ --out runs/masks --tta
    python -m unet_helpers.predict --pretrained medium-strong --examples 8 --figure examples.png

``--pretrained NAME`` takes a model shipped with the package (see ``unet_helpers.pretrained``) and
its card's post-processing (threshold, minimum salt area, flip TTA), each of which an option can
override; ``--checkpoint`` takes a training run's folder (its best stage, as an export would ship it)
or one of its files. Images of any size work, read in batches of images of the same size. A
101x101 tile gets the mirrored border it was trained with (101 -> 104 is 1 pixel above and left,
2 below and right), and flip TTA mirrors the padded tile, as training and the cards' scores do;
a valid-padding network predicts images of other sizes with the paper's overlap-tile strategy. Existing files are never
overwritten without --overwrite; errors print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .data import SIDE, TGSDataError, write_submission
from .data.dataset import fit_to_network, restore_from_network
from .data.images import read_grey
from .data.source import folder_problems
from .engine import CheckpointError, keep_freed_memory, model_from_checkpoint
from .postprocess import to_masks
from .pretrained import (
    GENERATORS,
    MAX_EXAMPLES,
    available_pretrained,
    best_checkpoint,
    load_card,
    load_pretrained,
    show_examples,
)
from .tiling import predict_tiled
from .utils import get_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m unet_helpers.predict",
        description="Predict salt masks for a folder of images with a trained U-Net.",
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--pretrained",
        metavar="NAME",
        help="a model shipped with the package ("
        + (", ".join(available_pretrained()) or "none installed")
        + "), or the card of one you exported (`pretrained export ... --out-dir FOLDER`: FOLDER/NAME.json)",
    )
    model.add_argument(
        "--checkpoint",
        type=Path,
        help="a training run's --out folder (its best stage: the main stage's best.pt, averaged.pt or finetune/best.pt, "
        "whichever scored highest on validation), or one checkpoint file; threshold 0.5, no minimum area and no TTA "
        "unless given (`python -m unet_helpers.pretrained export --run RUN --data DATA --name NAME --out-dir FOLDER` chooses "
        "them on the run's validation tiles; then predict with --pretrained FOLDER/NAME.json)",
    )
    tiles = p.add_mutually_exclusive_group(required=True)
    tiles.add_argument("--images", type=Path, help="folder of images (PNG, JPEG, TIFF, BMP), any size")
    tiles.add_argument(
        "--examples",
        type=int,
        metavar="N",
        help=f"with --pretrained: N tiles (1 to {MAX_EXAMPLES}) the model never saw, from data/tgs-salt (else the "
        "offline stand-in), drawn beside their truth in --figure",
    )
    p.add_argument("--data", type=Path, default=None, help="data folder for --examples (default data/tgs-salt)")
    p.add_argument(
        "--figure",
        type=Path,
        help="with --examples: the PNG to draw them in (default examples.png; an earlier run's figure is replaced)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, help="folder for the predicted masks, one PNG (0/255) per image, same names")
    out.add_argument("--submission", type=Path, help="write a Kaggle submission CSV (id = file name without suffix)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability above which a pixel is salt (default: the card's for --pretrained, else 0.5)",
    )
    p.add_argument(
        "--min-area",
        type=int,
        default=None,
        help="masks with fewer salt pixels are emptied (default: the card's for --pretrained, else 0)",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the prediction of the mirrored image (default: the card's for --pretrained, else off)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="images of the same size predicted together (default 64)"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace mask files or a submission that already exist, or a --figure that this command did not draw "
        "(a figure drawn by an earlier --examples run is replaced without it)",
    )
    return p


class UsageError(Exception):
    pass


def read_image(path: Path) -> torch.Tensor:
    """A grey image as (1, H, W) float in [0, 1], read exactly as the training tiles are.

    Every image mode is scaled to the 8-bit grey values the network trained on (a 16-bit image is
    divided by 257, not clipped at 255); a mode that has no grey value is refused, naming the file
    (see ``unet_helpers.data.images``).
    """
    return torch.from_numpy(read_grey(path).astype(np.float32) / 255.0)[None]


def read_images(paths: list[Path]) -> dict[Path, torch.Tensor]:
    """Every image of ``paths``; the files that cannot be used are all reported in one error."""
    images, problems = {}, []
    for p in tqdm(paths, desc="reading", unit="image", leave=False, disable=len(paths) < 500):
        try:
            images[p] = read_image(p)
        except TGSDataError as err:
            problems.append(str(err))
    if problems:
        shown = "\n  - ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UsageError(
            f"{len(problems)} of the {len(paths)} images cannot be used, so nothing was written:\n  - {shown}"
        )
    return images


@torch.no_grad()
def predict_batch(
    model: torch.nn.Module, images: torch.Tensor, recipe: dict, device: torch.device, tta: bool
) -> torch.Tensor:
    """Salt probabilities (N, H, W) for a batch of grey images (N, 1, H, W) of one size.

    The images are padded or resized as the recipe trained its tiles (``fit_to_network``, which the training data
    and the card's scores use too), and flip TTA mirrors that padded input, as ``engine.predict`` does: mirroring
    the image before an uneven border (101 -> 104 is 1 pixel before and 2 after) would move it against the
    network's pooling grid and give other probabilities than the ones the card's post-processing was chosen on.
    """
    x = images.to(device).expand(-1, model.in_channels, -1, -1)  # grey -> the channels the network takes
    x = x.contiguous(memory_format=torch.channels_last)
    height, width = x.shape[-2:]
    size, side = recipe.get("size", "pad"), recipe.get("side", SIDE)

    def run(flip: bool) -> torch.Tensor:
        if model.padding == "valid" and (height, width) != (SIDE, SIDE):
            # an image of another size than the tiles it trained on: the paper's overlap tiles, over the whole image
            image = x.flip(-1) if flip else x
            probs = torch.sigmoid(predict_tiled(model, image, input_tile=side))
            return probs.flip(-1) if flip else probs
        network_input = fit_to_network(x, size, side)
        if flip:
            network_input = network_input.flip(-1)
        probs = torch.sigmoid(model(network_input))
        if flip:
            probs = probs.flip(-1)
        return restore_from_network(probs, size, side, height, width)

    probs = run(flip=False)
    if tta:
        probs = (probs + run(flip=True)) / 2
    return probs[:, 0].float().cpu()


def predict_image(
    model: torch.nn.Module, image: torch.Tensor, recipe: dict, device: torch.device, tta: bool
) -> torch.Tensor:
    """Salt probabilities (H, W) for one (1, H, W) image."""
    return predict_batch(model, image[None], recipe, device, tta)[0]


def check_segmenter(name: str) -> None:
    """Refuse a model that does not segment (notebook 09's denoiser generates tiles), by name or by its card's kind,
    naming the ones that do."""
    generates = name in GENERATORS
    if name.endswith(".json"):  # an exported card: its kind says (a card that cannot be read: loading it says why)
        try:
            generates = load_card(name).get("kind") == "denoiser"
        except ValueError:
            pass
    if generates:
        raise UsageError(
            f"--pretrained {name} is a denoiser (notebook 09's kind): it generates tiles with their masks and does not "
            f"find salt in an image; pass one of the segmentation models: {', '.join(available_pretrained())}"
        )


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """(model, recipe, post-processing defaults) from --pretrained or --checkpoint."""
    if args.pretrained is not None:
        check_segmenter(args.pretrained)
        model, card = load_pretrained(args.pretrained, device)
        return model, card["recipe"], card["postprocessing"]
    path = args.checkpoint
    if path.is_dir() and (path / "config.json").is_file():  # a run's folder: the checkpoint an export would ship
        path, _ = best_checkpoint(path)
        print(f"--checkpoint {args.checkpoint}: using {path}, the best validation tgs_score of the run's stages")
    model, checkpoint = model_from_checkpoint(path, map_location=device)
    return model.to(device).eval(), checkpoint.get("config") or {}, dict(threshold=0.5, min_area=0, tta=False)


FIGURE_TAG = "unet_helpers.predict --examples"  # written into the PNGs of --figure, so a rerun may replace them


def _written_by_us(path: Path) -> bool:
    """True when ``path`` is a figure that an earlier ``--examples`` run wrote (its PNG carries our tag)."""
    try:
        with Image.open(path) as img:
            return img.info.get("Software") == FIGURE_TAG
    except OSError:
        return False


def run_examples(args: argparse.Namespace) -> int:
    """--examples N: the quick look at a shipped model, as ``pretrained.show_examples`` draws it."""
    if args.pretrained is None:
        raise UsageError("--examples shows a shipped model: pass --pretrained NAME (see --help for the names)")
    check_segmenter(args.pretrained)
    if not 1 <= args.examples <= MAX_EXAMPLES:
        raise UsageError(
            f"--examples must be 1 to {MAX_EXAMPLES} (one readable figure), got {args.examples}; to score a model on "
            "every tile it never saw, use benchmarks/compare_held_out.py"
        )
    ignored = [
        name
        for name, value in (
            ("--out", args.out),
            ("--submission", args.submission),
            ("--threshold", args.threshold),
            ("--min-area", args.min_area),
            ("--tta/--no-tta", args.tta),
            ("--batch-size", args.batch_size),
        )
        if value is not None
    ]
    if ignored:
        raise UsageError(
            f"{', '.join(ignored)} do(es) not apply to --examples, which draws a figure with the card's post-processing; "
            "leave it out, or predict a folder with --images"
        )
    if args.data is not None and not args.data.is_dir():
        raise UsageError(f"--data {args.data} is not a folder; point it at the TGS Salt data, or leave it out")
    if args.data is not None:  # a folder asked for by name is used or refused, never swapped for the stand-in
        problems = folder_problems(args.data)
        if problems:
            raise UsageError(
                f"--data {args.data} is not usable as TGS Salt data: {'; '.join(problems[:3])}; fix it "
                "(python -m unet_helpers.data check --data ...), or leave --data out"
            )
    figure_path = args.figure or Path("examples.png")
    if figure_path.suffix.lower() != ".png":
        raise UsageError(f"--figure must name a .png file, got {figure_path}")
    if figure_path.is_dir():
        raise UsageError(f"--figure {figure_path} is a folder; name a .png file")
    replacing = figure_path.exists()
    if replacing and not args.overwrite and not _written_by_us(figure_path):
        raise UsageError(
            f"{figure_path} already exists and was not drawn by this command, so it is left alone; "
            "pass --overwrite to replace it, or choose another --figure"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no GPU is visible; use --device cpu")
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    device = get_device() if args.device == "auto" else torch.device(args.device)
    figure, _ = show_examples(args.pretrained, args.examples, data=args.data, device=device)
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    # "tight": the whole figure, row labels included, as a notebook shows it
    figure.savefig(figure_path, dpi=100, bbox_inches="tight", metadata={"Software": FIGURE_TAG})
    print(
        f"{'replaced' if replacing else 'wrote'} {figure_path}: image, true mask, predicted mask and overlay of each tile"
    )
    return 0


def _check_folder_options(args: argparse.Namespace) -> list[Path]:
    """The checks of a folder prediction that need no model; the image paths, in order."""
    for name, value in (("--figure", args.figure), ("--data", args.data)):
        if value is not None:
            raise UsageError(f"{name} goes with --examples; a folder prediction writes --out or --submission")
    if args.out is None and args.submission is None:
        raise UsageError("pass --out DIR (mask PNGs) or --submission FILE (a Kaggle CSV)")
    if not args.images.is_dir():
        what = "is a file, not a folder" if args.images.exists() else "does not exist"
        raise UsageError(f"image folder {args.images} {what}; --images takes a folder of images")
    # hidden files (macOS writes ._name.png beside every copied image) are not images of the user's
    paths = sorted(
        p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    others = sorted(
        p.name for p in args.images.iterdir() if p.is_file() and p not in paths and not p.name.startswith(".")
    )
    if paths and others:  # said, not silently passed over
        print(f"note: {len(others)} file(s) in {args.images} are not images and are skipped: {', '.join(others[:3])}")
    if not paths:
        inside = [f for f in ("images", "train/images", "test/images") if (args.images / f).is_dir()]
        hint = f"; did you mean --images {args.images / inside[0]}?" if inside else ""
        raise UsageError(f"{args.images} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    stems: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        stems[p.stem].append(p.name)
    shared = [names for names in stems.values() if len(names) > 1]
    if shared:
        raise UsageError(
            f"{len(shared)} name{' is' if len(shared) == 1 else 's are'} used by more than one image (e.g. "
            f"{' and '.join(shared[0])}), and each mask "
            "(or submission row) is named after its image; rename or move one of each"
        )
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.min_area is not None and args.min_area < 0:
        raise UsageError(f"--min-area must be 0 or more, got {args.min_area}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out} is a file; name a folder for the masks")
        if args.out.resolve() == args.images.resolve():
            raise UsageError(
                f"--out {args.out} is the image folder itself: the masks would replace the images of the same name; "
                "choose another --out"
            )
    if args.submission is not None and args.submission.is_dir():
        raise UsageError(f"--submission {args.submission} is a folder; name a .csv file")
    return paths


def run(args: argparse.Namespace) -> int:
    if args.examples is not None:
        return run_examples(args)
    paths = _check_folder_options(args)
    batch_size = args.batch_size or 64
    if args.submission is not None and args.submission.exists() and not args.overwrite:
        raise UsageError(f"{args.submission} already exists; pass --overwrite to replace it")
    if args.out is not None and not args.overwrite:
        clashes = [args.out / f"{p.stem}.png" for p in paths if (args.out / f"{p.stem}.png").exists()]
        if clashes:
            raise UsageError(
                f"{len(clashes)} mask files already exist in {args.out} (e.g. {clashes[0].name}); "
                "pass --overwrite to replace them, or choose another --out"
            )
    # where the results go is checked before any image is predicted, not after (and nothing is created yet)
    target = args.out if args.out is not None else args.submission.parent
    existing = next(folder for folder in (target.absolute(), *target.absolute().parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        what = "is a file" if not existing.is_dir() else "cannot be written to"
        raise UsageError(f"{existing} {what}, so {target} cannot hold the results; choose another path")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no GPU is visible; use --device cpu")
    device = get_device() if args.device == "auto" else torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # batch 64 then costs 5.7 ms per tile on 2 cores, not 9.3 (bench_training.py --inference)

    images = read_images(paths)  # every unusable image is reported before the model is loaded
    model, recipe, defaults = _load_model(args, device)
    model = model.to(memory_format=torch.channels_last)
    threshold = defaults["threshold"] if args.threshold is None else args.threshold
    min_area = defaults["min_area"] if args.min_area is None else args.min_area
    tta = defaults["tta"] if args.tta is None else args.tta
    by_size = defaultdict(list)  # one batch holds images of one size
    for p in paths:
        by_size[tuple(images[p].shape[-2:])].append(p)
    if args.submission is not None and set(by_size) - {(SIDE, SIDE)}:
        print(
            f"warning: not every image is {SIDE}x{SIDE}; Kaggle's TGS Salt submissions are for its 101x101 test "
            "tiles, and would not accept these rows",
            file=sys.stderr,
        )
    masks: dict[Path, np.ndarray] = {}
    chunks = [group[i : i + batch_size] for group in by_size.values() for i in range(0, len(group), batch_size)]
    for chunk in tqdm(chunks, desc="predicting", unit="batch", leave=False, disable=len(chunks) < 4):
        try:
            probs = predict_batch(model, torch.stack([images[p] for p in chunk]), recipe, device, tta).numpy()
        except ValueError as err:  # a side the network cannot take (UNet.check_side), once padded as in training
            height, width = images[chunk[0]].shape[-2:]
            raise UsageError(
                f"{chunk[0].name} ({width}x{height}; {len(by_size[(height, width)])} image(s) of that size) is too "
                f"small or too narrow for this network ({str(err).splitlines()[0]}); images of at least "
                f"{SIDE}x{SIDE}, the tiles it trained on, always work: pad or resize it"
            ) from None
        masks.update(zip(chunk, to_masks(probs, threshold, min_area).astype(np.uint8)))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for p in paths:
            Image.fromarray(masks[p] * 255).save(args.out / f"{p.stem}.png")
        print(f"wrote {len(paths)} masks to {args.out} (threshold {threshold}, min area {min_area}, tta {tta})")
    else:
        ordered = [masks[p] for p in paths]
        write_submission(args.submission, [p.stem for p in paths], np.stack(ordered) if len(by_size) == 1 else ordered)
        print(f"wrote {args.submission} with {len(paths)} rows (threshold {threshold}, min area {min_area}, tta {tta})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, CheckpointError, TGSDataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be written, a full disk: one line, not a traceback
        print(
            f"error: {err.strerror or err} ({err.filename or 'a file'}); check the path and its permissions",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
