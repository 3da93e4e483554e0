"""Kaggle's TGS Salt files: the folder layout, reading the PNGs and CSVs, decoding a split into arrays.

Kaggle's layout, which both the real data and the stand-in use::

    root/
      train/images/<id>.png   4,000 seismic tiles, 101 x 101, 8-bit RGB with three equal channels
      train/masks/<id>.png    their salt masks: mode L (all 0) when empty, 16-bit I;16 (0 and 65535) with salt
      test/images/<id>.png    18,000 tiles to predict (1,000 in the stand-in)
      train.csv               id, rle_mask   (the masks again, run-length encoded)
      depths.csv              id, z          (depth of every train and test tile)
      sample_submission.csv   id, rle_mask   (the test ids, in submission format)

Nothing here ever overwrites or deletes a file in the data folder (``write_new`` only adds files).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SIDE = 101
N_TRAIN, N_TEST = 4000, 18000
PAD_SIDE, RESIZE_SIDE = 104, 104  # the smallest side a 3-pooling U-Net takes; the earlier project resized to 104


class TGSDataError(ValueError):
    """A problem with a TGS Salt file or id; the message names it and says what to do."""


def default_data_dir() -> Path:
    """``$UNET_DATA_DIR``, else the repository's ``data/`` (found from the working folder), else ``./data``."""
    if os.environ.get("UNET_DATA_DIR"):
        return Path(os.environ["UNET_DATA_DIR"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "unet_helpers").is_dir() and (folder / "data").is_dir():
            return Path(os.path.relpath(folder / "data"))
    return Path("data")


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; a clear error when it is missing."""
    if not path.is_file():
        raise TGSDataError(f"{path} is missing; get the data with unet_helpers.data.get_tgs_salt()")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def layout_problems(root: Path, n_train: int | None = N_TRAIN, n_test: int | None = N_TEST) -> list[str]:
    """What is missing from a Kaggle-layout folder ([] when it is complete)."""
    root = Path(root)
    problems = []
    for name in ("train.csv", "depths.csv", "sample_submission.csv"):
        if not (root / name).is_file():
            problems.append(f"{name} is missing")
    for folder, expected in (("train/images", n_train), ("train/masks", n_train), ("test/images", n_test)):
        found = len(list((root / folder).glob("*.png"))) if (root / folder).is_dir() else 0
        if expected is not None and found < expected:
            problems.append(f"{folder} holds {found} of {expected} PNGs")
    return problems


def read_png(path: Path, kind: str) -> np.ndarray:
    """Decode one 101x101 PNG to a (H, W) uint8 array; masks come back as 0/1."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise TGSDataError(f"{path}: cannot be read as a PNG ({err}); download it again") from None
    if array.shape[:2] != (SIDE, SIDE):
        raise TGSDataError(f"{path}: is {array.shape[1]}x{array.shape[0]} pixels, expected {SIDE}x{SIDE}")
    if array.ndim == 3:  # RGB(A) with equal channels: keep one
        array = array[..., 0]
    if kind == "image":
        if mode.startswith("I"):  # 16-bit grayscale
            array = (array.astype(np.float32) / 257).round()
        return array.astype(np.uint8)
    full = 65535 if mode.startswith("I") else 1 if mode == "1" else 255
    values = np.unique(array)
    if not set(values.tolist()) <= {0, full}:
        raise TGSDataError(
            f"{path}: a mask must hold only 0 and {full}, found values {values[:6].tolist()}; "
            "check that it is a mask and not an image"
        )
    return (array == full).astype(np.uint8)


@dataclass
class TGSArrays:
    """One split decoded into memory: ids, (N, 101, 101) uint8 images, 0/1 masks (None for test), depths."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    depths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def coverage(self) -> np.ndarray:
        """Share of salt pixels of each mask, (N,)."""
        return self.masks.reshape(len(self), -1).mean(axis=1)

    def subset(self, ids) -> TGSArrays:
        """The same arrays restricted to ``ids`` (in that order)."""
        where = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise TGSDataError(f"ids not in this split: {missing[:5]}")
        index = np.array([where[i] for i in ids], dtype=np.int64)
        return TGSArrays(
            list(ids), self.images[index], None if self.masks is None else self.masks[index], self.depths[index]
        )


def load_tgs_split(root: str | Path, split: str = "train", ids: list[str] | None = None) -> TGSArrays:
    """Decode every PNG of a split once (the 4,000 training pairs are about 80 MB as uint8).

    Raises ``TGSDataError`` naming the folder, file or id when something is wrong.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_dir = root / split / "images"
    if not image_dir.is_dir():
        raise TGSDataError(
            f"{image_dir} does not exist; get the data with unet_helpers.data.get_tgs_salt({str(root)!r}) "
            "or point root at a folder in Kaggle's layout"
        )
    if ids is None:
        ids = sorted(p.stem for p in image_dir.glob("*.png"))
        if not ids:
            raise TGSDataError(f"{image_dir} holds no PNG images")
    depth_of = {row["id"]: float(row["z"]) for row in read_csv(root / "depths.csv")}
    images = np.empty((len(ids), SIDE, SIDE), np.uint8)
    masks = np.empty((len(ids), SIDE, SIDE), np.uint8) if split == "train" else None
    for k, id_ in enumerate(ids):
        image_path = image_dir / f"{id_}.png"
        if not image_path.is_file():
            raise TGSDataError(f"image of id {id_} is missing: {image_path}")
        images[k] = read_png(image_path, "image")
        if masks is not None:
            mask_path = root / split / "masks" / f"{id_}.png"
            if not mask_path.is_file():
                raise TGSDataError(f"{image_path} has no mask: {mask_path} is missing")
            masks[k] = read_png(mask_path, "mask")
    missing_depth = [i for i in ids if i not in depth_of]
    if missing_depth:
        raise TGSDataError(f"{root / 'depths.csv'} has no depth for ids {missing_depth[:5]}")
    depths = np.array([depth_of[i] for i in ids], dtype=np.float32)
    return TGSArrays(list(ids), images, masks, depths)


def write_new(path: Path, write) -> None:
    """Write a file only if it is not there yet: never overwrite what a user has."""
    if not path.exists():
        tmp = path.with_name(path.name + ".partial")
        write(tmp)
        tmp.replace(path)
