"""Segment a folder of images with a trained checkpoint: mask PNGs, or a Kaggle submission.

    python -m unet_helpers.predict --checkpoint runs/strong/best.pt --images data/tgs-salt/test/images --out runs/masks
    python -m unet_helpers.predict --checkpoint runs/strong/best.pt --images data/tgs-salt/test/images \\
        --submission runs/submission.csv --tta

Images of any size work. A same-padding network gets the image with the mirrored border it was
trained with (101 -> 128 is 13 pixels a side); a valid-padding network predicts with the paper's
overlap-tile strategy. Existing files are never overwritten without --overwrite; errors print one
clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .data import SIDE, TGSDataError, write_submission
from .engine import CheckpointError, model_from_checkpoint
from .tiling import mirror_pad, predict_tiled
from .utils import get_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unet_helpers.predict",
                                description="Predict salt masks for a folder of images with a trained U-Net checkpoint.")
    p.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt written by training")
    p.add_argument("--images", type=Path, required=True, help="folder of images (PNG, JPEG, TIFF, BMP), any size")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="folder for the predicted masks, one PNG (0/255) per image, same names")
    out.add_argument("--submission", type=Path, help="write a Kaggle submission CSV (id = file name without suffix)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is salt (default 0.5)")
    p.add_argument("--tta", action="store_true", help="average with the prediction of the mirrored image")
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
def predict_image(model: torch.nn.Module, image: torch.Tensor, recipe: dict, device: torch.device, tta: bool) -> torch.Tensor:
    """Salt probabilities (H, W) for one (1, H, W) image."""
    x = image.to(device).expand(model.in_channels, -1, -1)[None]  # grey -> the channels the network takes
    height, width = x.shape[-2:]

    def run(batch: torch.Tensor) -> torch.Tensor:
        if model.padding == "valid":
            return torch.sigmoid(predict_tiled(model, batch, input_tile=recipe.get("side")))
        if recipe.get("size") == "resize":
            scale = recipe.get("side", SIDE) / SIDE
            resized = F.interpolate(batch, size=(round(height * scale), round(width * scale)), mode="bilinear", align_corners=False)
            return F.interpolate(torch.sigmoid(model(resized)), size=(height, width), mode="bilinear", align_corners=False)
        margin = (recipe.get("side", SIDE) - SIDE) // 2 if recipe.get("size", "pad") == "pad" else 0
        padded = mirror_pad(batch, margin, margin, margin, margin)
        return torch.sigmoid(model(padded))[..., margin : margin + height, margin : margin + width]

    probs = run(x)
    if tta:
        probs = (probs + run(x.flip(-1)).flip(-1)) / 2
    return probs[0, 0].cpu()


def run(args: argparse.Namespace) -> int:
    if not args.images.is_dir():
        raise UsageError(f"image folder {args.images} does not exist")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"{args.images} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.submission is not None and args.submission.exists() and not args.overwrite:
        raise UsageError(f"{args.submission} already exists; pass --overwrite to replace it")
    if args.out is not None and not args.overwrite:
        clashes = [args.out / f"{p.stem}.png" for p in paths if (args.out / f"{p.stem}.png").exists()]
        if clashes:
            raise UsageError(f"{len(clashes)} mask files already exist in {args.out} (e.g. {clashes[0].name}); "
                             "pass --overwrite to replace them, or choose another --out")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no GPU is visible; use --device cpu")
    device = get_device() if args.device == "auto" else torch.device(args.device)

    model, checkpoint = model_from_checkpoint(args.checkpoint, map_location=device)
    model.to(device).eval()
    recipe = checkpoint.get("config") or {}
    masks = []
    for path in paths:
        probs = predict_image(model, read_image(path), recipe, device, args.tta)
        mask = (probs > args.threshold).numpy().astype(np.uint8)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask * 255).save(args.out / f"{path.stem}.png")
        else:
            masks.append(mask)
    if args.submission is not None:
        write_submission(args.submission, [p.stem for p in paths], np.stack(masks) if len({m.shape for m in masks}) == 1 else masks)
        print(f"wrote {args.submission} with {len(paths)} rows")
    else:
        print(f"wrote {len(paths)} masks to {args.out}")
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
