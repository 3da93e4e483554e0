"""Kaggle's run-length encoding, and submission files written and checked with it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .files import SIDE, TGSDataError, read_csv


def rle_encode(mask: np.ndarray) -> str:
    """Encode a binary (H, W) mask as Kaggle's run-length string.

    Pixels are numbered from 1, top to bottom then left to right (column-major); the
    string lists "start length" pairs of the salt runs. An empty mask is "".
    """
    pixels = np.asarray(mask).astype(bool).flatten(order="F")
    padded = np.concatenate([[False], pixels, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based starts and ends of runs
    changes[1::2] -= changes[::2]  # ends -> lengths
    return " ".join(map(str, changes))


def rle_decode(rle: str, shape: tuple[int, int] = (SIDE, SIDE), name: str = "mask") -> np.ndarray:
    """Decode a Kaggle run-length string into a (H, W) uint8 mask of 0 and 1.

    ``name`` (an id, say) is used in the error raised for a malformed string.
    """
    height, width = shape
    mask = np.zeros(height * width, dtype=np.uint8)
    tokens = (rle or "").split()
    if isinstance(rle, float) or len(tokens) % 2:  # NaN from a CSV reader, or an odd count
        raise TGSDataError(f"{name}: run-length string must hold 'start length' pairs, got {rle!r}")
    try:
        numbers = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise TGSDataError(f"{name}: run-length string must hold whole numbers, got {rle!r}") from None
    end_of_previous = 0  # Kaggle's runs are sorted and do not overlap
    for start, length in numbers:
        if start < 1 or length < 1:
            raise TGSDataError(f"{name}: run {start} {length} is invalid; starts count from 1 and lengths are positive")
        if start <= end_of_previous:
            raise TGSDataError(
                f"{name}: run {start} {length} starts at or before pixel {end_of_previous}, where the run before it "
                "ends; runs must be sorted by start and must not overlap"
            )
        end_of_previous = start - 1 + length
        if start - 1 + length > mask.size:
            raise TGSDataError(
                f"{name}: run {start} {length} ends at pixel {start - 1 + length}, past the "
                f"{height}x{width} image ({mask.size} pixels)"
            )
        mask[start - 1 : start - 1 + length] = 1
    return mask.reshape((width, height)).T  # column-major back to (H, W)


def write_submission(path: str | Path, ids: list[str], masks: np.ndarray) -> Path:
    """Write a Kaggle submission: a header ``id,rle_mask`` and one row per tile, masks (N, 101, 101) binary."""
    path = Path(path)
    if len(ids) != len(masks):
        raise ValueError(f"got {len(ids)} ids but {len(masks)} masks")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "rle_mask"])
        writer.writerows((id_, rle_encode(m)) for id_, m in zip(ids, masks))
    return path


def check_submission(path: str | Path, sample_path: str | Path) -> int:
    """Check a submission against Kaggle's ``sample_submission.csv``: same header and ids, every RLE valid.

    Returns the number of rows; raises ``TGSDataError`` naming the first problem.
    """
    rows, sample = read_csv(Path(path)), read_csv(Path(sample_path))
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if header != ["id", "rle_mask"]:
        raise TGSDataError(f"{path}: the header must be 'id,rle_mask', found {','.join(header)!r}")
    ids, expected = [r["id"] for r in rows], {r["id"] for r in sample}
    if len(ids) != len(set(ids)):
        raise TGSDataError(f"{path}: some ids appear more than once")
    if set(ids) != expected:
        missing, extra = expected - set(ids), set(ids) - expected
        raise TGSDataError(
            f"{path}: ids differ from {sample_path}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
            f"{len(extra)} unknown (e.g. {sorted(extra)[:3]})"
        )
    for r in rows:
        rle_decode(r["rle_mask"], name=f"{path}: id {r['id']}")
    return len(rows)
