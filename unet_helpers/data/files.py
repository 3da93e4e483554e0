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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TGSDataError
from .images import read_binary_mask, read_grey

SIDE = 101
N_TRAIN, N_TEST = 4000, 18000
PAD_SIDE, RESIZE_SIDE = 104, 104  # the smallest side a 3-pooling U-Net takes; the earlier project resized to 104


def get_data_hint(root: str | Path = "DIR") -> str:
    """What to run to get the data: from a terminal, and from Python."""
    return (
        f"get the data with `python -m unet_helpers.data download --data {root}` (Kaggle credentials: see "
        f"data/README.md; in Python: unet_helpers.data.get_tgs_salt()), or write the offline stand-in with "
        f"`python -m unet_helpers.data standin --data {root}`"
    )


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
        raise TGSDataError(f"{path} is missing; {get_data_hint(path.parent)}")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a file saved by Excel starts with a BOM
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
    """Decode one 101x101 tile to a (H, W) uint8 array: grey values for an image, 0/1 for a mask.

    Any image mode is read as ``images.read_grey`` / ``images.read_binary_mask`` explain (16-bit
    values scaled, not clipped); a tile of another size is refused.
    """
    array = read_grey(path) if kind == "image" else read_binary_mask(path)
    if array.shape != (SIDE, SIDE):
        raise TGSDataError(
            f"{path}: is {array.shape[1]}x{array.shape[0]} pixels, expected {SIDE}x{SIDE}", kind="wrong size"
        )
    return array


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


def _train_csv_ids(root: Path) -> list[str] | None:
    """The ids that ``train.csv`` lists, in its order; None when the folder has no train.csv."""
    if not (root / "train.csv").is_file():
        return None
    rows = read_csv(root / "train.csv")
    if rows and "id" not in rows[0]:
        raise TGSDataError(f"{root / 'train.csv'} has no 'id' column; it should be Kaggle's (id, rle_mask)")
    ids = [row["id"] for row in rows]
    repeated = repeated_ids(ids)
    if repeated:
        raise TGSDataError(
            f"{root / 'train.csv'} lists {len(repeated)} id(s) more than once ({_examples(repeated)}): a tile counted "
            "twice could land in both the training and the validation tiles; keep one row per id"
        )
    return ids


def repeated_ids(ids: list[str]) -> list[str]:
    """The ids listed more than once, sorted."""
    return sorted(id_ for id_, n in Counter(ids).items() if n > 1)


def _examples(ids: list[str], n: int = 3) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def load_tgs_split(root: str | Path, split: str = "train", ids: list[str] | None = None) -> TGSArrays:
    """Decode every PNG of a split once (the 4,000 training pairs are about 80 MB as uint8).

    Every file is checked before anything is returned, and every fault found is reported in one
    ``TGSDataError``: each kind of fault with its count and its first ids.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_dir = root / split / "images"
    if not image_dir.is_dir():
        raise TGSDataError(
            f"{image_dir} does not exist; point at a folder in Kaggle's layout, or {get_data_hint(root)}"
        )
    faults: dict[str, list[str]] = {}  # the kind of fault -> the ids that have it
    first_message: dict[str, str] = {}  # the kind of fault -> the message of its first file

    def fault(kind: str, id_: str, message: str = "") -> None:
        faults.setdefault(kind, []).append(id_)
        first_message.setdefault(kind, message)

    pngs = sorted(p.stem for p in image_dir.glob("*.png"))
    listed = _train_csv_ids(root) if split == "train" else None
    if ids is None:
        # train.csv says which tiles a training folder holds, so a missing image is found, not skipped.
        ids = listed if listed is not None else pngs
        for id_ in sorted(set(pngs) - set(ids)):
            fault("image without a row in train.csv", id_)
        if not ids:
            raise TGSDataError(f"{image_dir} holds no PNG images; {get_data_hint(root)}")
    depths_csv = root / "depths.csv"
    depth_of = {row["id"]: row.get("z") for row in read_csv(depths_csv)} if depths_csv.is_file() else None
    images = np.zeros((len(ids), SIDE, SIDE), np.uint8)
    masks = np.zeros((len(ids), SIDE, SIDE), np.uint8) if split == "train" else None
    for k, id_ in enumerate(ids):
        for folder, kind, out in (("images", "image", images), ("masks", "mask", masks)):
            if out is None:
                continue
            path = root / split / folder / f"{id_}.png"
            if not path.is_file():
                if kind == "mask":
                    fault("image without a mask", id_, f"{id_}.png has no mask: {path} is missing")
                else:
                    fault("image missing", id_, f"{path} is missing")
                continue
            try:
                out[k] = read_png(path, kind)
            except TGSDataError as err:
                fault(f"{kind}: {err.kind or 'unusable'}", id_, str(err))
    if depth_of is not None:
        for id_ in ids:
            z = depth_of.get(id_)
            try:
                float(z)
            except (TypeError, ValueError):
                fault("no depth in depths.csv" if z is None else "a depth in depths.csv that is not a number", id_)
    if faults or depth_of is None:
        lines = [f"{depths_csv.name} is missing"] if depth_of is None else []
        lines += [
            f"{kind}: {len(found)} tile{'s' * (len(found) != 1)} (ids {_examples(found)})"
            + (f"; the first: {first_message[kind]}" if first_message[kind] else "")
            for kind, found in faults.items()
        ]
        n_bad = len({i for found in faults.values() for i in found})
        count = (
            f" ({n_bad} of its {len(ids)} {split} tiles {'has' if n_bad == 1 else 'have'} a problem)" if n_bad else ""
        )
        raise TGSDataError(
            f"{root} is not usable as it is{count}:\n  - "
            + "\n  - ".join(lines)
            + f"\nFix or remove these files, or {get_data_hint(root)}."
        )
    depths = np.array([float(depth_of[i]) for i in ids], dtype=np.float32)
    return TGSArrays(list(ids), images, masks, depths)


def write_new(path: Path, write) -> None:
    """Write a file only if it is not there yet: never overwrite what a user has."""
    if not path.exists():
        tmp = path.with_name(path.name + ".partial")
        write(tmp)
        tmp.replace(path)
