"""Segment a folder of images with a trained U-Net: mask PNGs, or a Kaggle submission.

    python -m unet_helpers.predict --pretrained medium-strong --images data/tgs-salt/test/images --out runs/masks
    python -m unet_helpers.predict --pretrained medium-strong --images data/tgs-salt/test/images --submission runs/submission.csv
    python -m unet_helpers.predict --checkpoint runs/strong/best.pt --images my_images/ --out runs/masks --tta
    python -m unet_helpers.predict --pretrained medium-strong --examples 8 --figure examples.png

``--pretrained NAME`` takes a model shipped with the package (see ``unet_helpers.pretrained``) and
its card's post-processing (threshold, minimum salt area, flip TTA), each of which an option can
override; ``--checkpoint`` takes a training run's own file. Images of any size work, read in
batches of images of the same size. A same-padding network gets the image with the mirrored
border it was trained with (101 -> 104 is 1 pixel above and left, 2 below and right); a
valid-padding network predicts with the paper's overlap-tile strategy. Existing files are never
overwritten without --overwrite; errors print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .data import SIDE, TGSDataError, write_submission
from .engine import CheckpointError, keep_freed_memory, model_from_checkpoint
from .postprocess import to_masks
from .pretrained import available_pretrained, load_pretrained, show_examples
from .tiling import mirror_pad, predict_tiled
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
        help="a model shipped with the package: " + (", ".join(available_pretrained()) or "none installed"),
    )
    model.add_argument("--checkpoint", type=Path, help="best.pt or last.pt written by training")
    tiles = p.add_mutually_exclusive_group(required=True)
    tiles.add_argument("--images", type=Path, help="folder of images (PNG, JPEG, TIFF, BMP), any size")
    tiles.add_argument(
        "--examples",
        type=int,
        metavar="N",
        help="with --pretrained: N tiles the model never saw, from data/tgs-salt (else the offline stand-in), "
        "drawn beside their truth in --figure",
    )
    p.add_argument("--data", type=Path, default=None, help="data folder for --examples (default data/tgs-salt)")
    p.add_argument("--figure", type=Path, help="with --examples: the PNG to draw them in (default examples.png)")
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
    p.add_argument("--batch-size", type=int, default=64, help="images of the same size predicted together (default 64)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace mask files or a submission that already exist")
    return p


class UsageError(Exception):
    pass


def read_image(path: Path) -> torch.Tensor:
    """A grey image as (1, H, W) float in [0, 1], as the training data."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{path} cannot be read as an image ({err})") from None
    return torch.from_numpy(array)[None]


@torch.no_grad()
def predict_batch(
    model: torch.nn.Module, images: torch.Tensor, recipe: dict, device: torch.device, tta: bool
) -> torch.Tensor:
    """Salt probabilities (N, H, W) for a batch of grey images (N, 1, H, W) of one size."""
    x = images.to(device).expand(-1, model.in_channels, -1, -1)  # grey -> the channels the network takes
    x = x.contiguous(memory_format=torch.channels_last)
    height, width = x.shape[-2:]

    def run(batch: torch.Tensor) -> torch.Tensor:
        if model.padding == "valid":
            return torch.sigmoid(predict_tiled(model, batch, input_tile=recipe.get("side")))
        if recipe.get("size") == "resize":
            scale = recipe.get("side", SIDE) / SIDE
            resized = F.interpolate(
                batch, size=(round(height * scale), round(width * scale)), mode="bilinear", align_corners=False
            )
            return F.interpolate(
                torch.sigmoid(model(resized)), size=(height, width), mode="bilinear", align_corners=False
            )
        # The border the network was trained with: TGSSaltDataset pads (side - 101) // 2 before, the rest after.
        extra = recipe.get("side", SIDE) - SIDE if recipe.get("size", "pad") == "pad" else 0
        before, after = extra // 2, extra - extra // 2
        padded = mirror_pad(batch, before, after, before, after)
        return torch.sigmoid(model(padded))[..., before : before + height, before : before + width]

    probs = run(x)
    if tta:
        probs = (probs + run(x.flip(-1)).flip(-1)) / 2
    return probs[:, 0].float().cpu()


def predict_image(
    model: torch.nn.Module, image: torch.Tensor, recipe: dict, device: torch.device, tta: bool
) -> torch.Tensor:
    """Salt probabilities (H, W) for one (1, H, W) image."""
    return predict_batch(model, image[None], recipe, device, tta)[0]


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """(model, recipe, post-processing defaults) from --pretrained or --checkpoint."""
    if args.pretrained is not None:
        model, card = load_pretrained(args.pretrained, device)
        return model, card["recipe"], card["postprocessing"]
    model, checkpoint = model_from_checkpoint(args.checkpoint, map_location=device)
    return model.to(device).eval(), checkpoint.get("config") or {}, dict(threshold=0.5, min_area=0, tta=False)


def run_examples(args: argparse.Namespace) -> int:
    """--examples N: the quick look at a shipped model, as ``pretrained.show_examples`` draws it."""
    if args.pretrained is None:
        raise UsageError("--examples shows a shipped model: pass --pretrained NAME (see --help for the names)")
    if args.examples < 1:
        raise UsageError(f"--examples must be at least 1, got {args.examples}")
    figure_path = args.figure or Path("examples.png")
    if figure_path.exists() and not args.overwrite:
        raise UsageError(f"{figure_path} already exists; pass --overwrite to replace it, or choose another --figure")
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    figure, _ = show_examples(args.pretrained, args.examples, data=args.data)
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=80)
    print(f"wrote {figure_path}: image, true mask, predicted mask and overlay of each tile")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.examples is not None:
        return run_examples(args)
    if args.out is None and args.submission is None:
        raise UsageError("pass --out DIR (mask PNGs) or --submission FILE (a Kaggle CSV)")
    if not args.images.is_dir():
        raise UsageError(f"image folder {args.images} does not exist")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"{args.images} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.min_area is not None and args.min_area < 0 or args.batch_size < 1:
        raise UsageError("--min-area must be 0 or more and --batch-size at least 1")
    if args.submission is not None and args.submission.exists() and not args.overwrite:
        raise UsageError(f"{args.submission} already exists; pass --overwrite to replace it")
    if args.out is not None and not args.overwrite:
        clashes = [args.out / f"{p.stem}.png" for p in paths if (args.out / f"{p.stem}.png").exists()]
        if clashes:
            raise UsageError(
                f"{len(clashes)} mask files already exist in {args.out} (e.g. {clashes[0].name}); "
                "pass --overwrite to replace them, or choose another --out"
            )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no GPU is visible; use --device cpu")
    device = get_device() if args.device == "auto" else torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # batch 64 then costs 5.7 ms per tile on 2 cores, not 9.3 (bench_training.py --inference)

    model, recipe, defaults = _load_model(args, device)
    model = model.to(memory_format=torch.channels_last)
    threshold = defaults["threshold"] if args.threshold is None else args.threshold
    min_area = defaults["min_area"] if args.min_area is None else args.min_area
    tta = defaults["tta"] if args.tta is None else args.tta
    images = {p: read_image(p) for p in paths}
    by_size = defaultdict(list)  # one batch holds images of one size
    for p in paths:
        by_size[tuple(images[p].shape[-2:])].append(p)
    masks: dict[Path, np.ndarray] = {}
    chunks = [
        group[i : i + args.batch_size] for group in by_size.values() for i in range(0, len(group), args.batch_size)
    ]
    for chunk in tqdm(chunks, desc="predicting", unit="batch", leave=False, disable=len(chunks) < 4):
        probs = predict_batch(model, torch.stack([images[p] for p in chunk]), recipe, device, tta).numpy()
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


if __name__ == "__main__":
    sys.exit(main())
