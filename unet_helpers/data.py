"""TGS Salt Identification Challenge data: download, offline stand-in, RLE, dataset and split.

Kaggle's layout, which both the real data and the stand-in use::

    root/
      train/images/<id>.png   4,000 seismic tiles, 101 x 101
      train/masks/<id>.png    their salt masks (0 = sediment, 255 = salt)
      test/images/<id>.png    18,000 tiles to predict (1,000 in the stand-in)
      train.csv               id, rle_mask   (the masks again, run-length encoded)
      depths.csv              id, z          (depth of every train and test tile)
      sample_submission.csv   id, rle_mask   (the test ids, in submission format)

Nothing here ever deletes or rewrites a file that is already in the data folder.
"""
from __future__ import annotations

import csv
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

COMPETITION = "tgs-salt-identification-challenge"
RULES_URL = f"https://www.kaggle.com/c/{COMPETITION}/rules"
SIDE = 101
N_TRAIN, N_TEST = 4000, 18000
PAD_SIDE, RESIZE_SIDE = 128, 104


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


# ---------------------------------------------------------------------------
# Run-length encoding, Kaggle's way
# ---------------------------------------------------------------------------


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
    for start, length in numbers:
        if start < 1 or length < 1:
            raise TGSDataError(f"{name}: run {start} {length} is invalid; starts count from 1 and lengths are positive")
        if start - 1 + length > mask.size:
            raise TGSDataError(
                f"{name}: run {start} {length} ends at pixel {start - 1 + length}, past the "
                f"{height}x{width} image ({mask.size} pixels)"
            )
        mask[start - 1 : start - 1 + length] = 1
    return mask.reshape((width, height)).T  # column-major back to (H, W)


# ---------------------------------------------------------------------------
# Reading the folder
# ---------------------------------------------------------------------------


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


def _read_png(path: Path, kind: str) -> np.ndarray:
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

    def subset(self, ids) -> "TGSArrays":
        """The same arrays restricted to ``ids`` (in that order)."""
        where = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise TGSDataError(f"ids not in this split: {missing[:5]}")
        index = np.array([where[i] for i in ids], dtype=np.int64)
        return TGSArrays(list(ids), self.images[index], None if self.masks is None else self.masks[index], self.depths[index])


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
        images[k] = _read_png(image_path, "image")
        if masks is not None:
            mask_path = root / split / "masks" / f"{id_}.png"
            if not mask_path.is_file():
                raise TGSDataError(f"{image_path} has no mask: {mask_path} is missing")
            masks[k] = _read_png(mask_path, "mask")
    missing_depth = [i for i in ids if i not in depth_of]
    if missing_depth:
        raise TGSDataError(f"{root / 'depths.csv'} has no depth for ids {missing_depth[:5]}")
    depths = np.array([depth_of[i] for i in ids], dtype=np.float32)
    return TGSArrays(list(ids), images, masks, depths)


# ---------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------


class TGSSaltDataset(Dataset):
    """TGS Salt tiles as tensors, decoded once and kept in memory.

    Args:
        source: a data folder in Kaggle's layout, or a :class:`TGSArrays` already decoded.
        split: "train" (images and masks) or "test" (images only) when ``source`` is a folder.
        ids: restrict to these ids (e.g. one side of :func:`stratified_split`).
        channels: 1, or 3 (the grey image repeated, for networks built for RGB).
        depth_channel: append the tile's depth (z / 1000) as one more constant channel.
        size: "pad" (reflect-pad 101 -> 128, crop predictions back with :meth:`restore`),
            "resize" (bilinear to 104, as the earlier project did) or "none" (keep 101).
        side: the side to pad or resize to, instead of 128 or 104 (e.g. 144 for a valid-padding
            U-Net whose output must still cover the whole 101x101 tile).
        augment: random horizontal flips, applied identically to image and mask.

    Items: ``(image, mask)`` with image (C, S, S) float32 in [0, 1] and mask (1, S, S) float32
    in {0, 1}; for the test split, ``(image, index)``.
    """

    def __init__(self, source: str | Path | TGSArrays, split: str = "train", ids: list[str] | None = None,
                 channels: int = 3, depth_channel: bool = False, size: str = "pad", augment: bool = False,
                 side: int | None = None) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if size not in ("pad", "resize", "none"):
            raise ValueError(f"size must be 'pad', 'resize' or 'none', got {size!r}")
        if size != "none" and side is not None and side < SIDE:
            raise ValueError(f"side must be at least {SIDE} to {size} a {SIDE}x{SIDE} tile, got {side}")
        self._side = side if side is not None else {"pad": PAD_SIDE, "resize": RESIZE_SIDE, "none": SIDE}[size]
        if size == "none":
            self._side = SIDE
        arrays = source if isinstance(source, TGSArrays) else load_tgs_split(source, split)
        if ids is not None:
            arrays = arrays.subset(ids)
        self.arrays, self.ids = arrays, arrays.ids
        self.channels, self.depth_channel, self.size = channels, depth_channel, size
        self.flip = v2.RandomHorizontalFlip(p=0.5) if augment else None
        # Padding or resizing is done once here, not per item.
        self.images = self._fit(torch.from_numpy(arrays.images).unsqueeze(1).float().div_(255), "image")
        self.masks = None if arrays.masks is None else self._fit(torch.from_numpy(arrays.masks).unsqueeze(1).float(), "mask")
        self.depths = torch.from_numpy(arrays.depths / 1000.0).float()

    @property
    def side(self) -> int:
        """Side of the images this dataset returns."""
        return self._side

    @property
    def in_channels(self) -> int:
        """Channels of the images this dataset returns (for ``UNet(in_channels=...)``)."""
        return self.channels + int(self.depth_channel)

    def _fit(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """(N, 1, 101, 101) -> (N, 1, S, S) by the chosen size strategy."""
        if self.size == "pad":
            before = (self.side - SIDE) // 2
            return F.pad(x, (before, self.side - SIDE - before) * 2, mode="reflect")
        if self.size == "resize":
            mode = "bilinear" if kind == "image" else "nearest"
            return F.interpolate(x, size=(self.side, self.side), mode=mode, **({"align_corners": False} if kind == "image" else {}))
        return x

    def restore(self, output: torch.Tensor) -> torch.Tensor:
        """Bring (N, C, s, s) predictions back to the original (N, C, 101, 101) tile.

        ``s`` may be smaller than the input side (a valid-padding U-Net's output is the centre of
        its input), as long as the output still covers the tile.
        """
        if self.size == "pad":
            offset = (self.side - SIDE) // 2 - (self.side - output.shape[-1]) // 2  # tile's start in the output
            if offset < 0 or offset + SIDE > output.shape[-1]:
                raise ValueError(
                    f"an output of side {output.shape[-1]} from inputs of side {self.side} does not cover the "
                    f"{SIDE}x{SIDE} tile; pad to a larger side"
                )
            return output[..., offset : offset + SIDE, offset : offset + SIDE]
        if self.size == "resize":
            return F.interpolate(output, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
        return output

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.channels == 3:
            image = image.expand(3, -1, -1)
        if self.depth_channel:
            image = torch.cat([image, self.depths[index].expand(1, *image.shape[-2:])])
        if self.masks is None:
            return image.contiguous(), index
        mask = self.masks[index]
        if self.flip is not None:
            image, mask = self.flip(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return image.contiguous(), mask


def coverage_class(coverage: np.ndarray) -> np.ndarray:
    """Salt-coverage class 0..10: 0 for an empty mask, else ceil(coverage * 10)."""
    return np.ceil(np.asarray(coverage) * 10).astype(int)


def stratified_split(ids: list[str], classes, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded train/validation split with the same share of every class on both sides (80/20 by default)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    classes = np.asarray(classes)
    if len(classes) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(classes)} classes")
    rng = np.random.default_rng(seed)
    val = set()
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        rng.shuffle(members)
        val.update(members[: int(round(val_fraction * len(members)))].tolist())
    train_ids = [i for k, i in enumerate(ids) if k not in val]
    val_ids = [i for k, i in enumerate(ids) if k in val]
    return train_ids, val_ids


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
        raise TGSDataError(f"{path}: ids differ from {sample_path}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                           f"{len(extra)} unknown (e.g. {sorted(extra)[:3]})")
    for r in rows:
        rle_decode(r["rle_mask"], name=f"{path}: id {r['id']}")
    return len(rows)


# ---------------------------------------------------------------------------
# The offline stand-in
# ---------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, waves_per_side: float, size: int = SIDE, n_waves: int = 6) -> np.ndarray:
    """Random smooth field: a sum of plane waves about size/waves_per_side pixels long; (size, size), unit variance."""
    t = np.arange(size, dtype=np.float32) / size
    field = np.zeros((size, size), np.float32)
    for _ in range(n_waves):
        angle, k = rng.uniform(0, np.pi), 2 * np.pi * waves_per_side * rng.uniform(0.6, 1.4)
        u = k * np.sin(angle) * t[:, None] + rng.uniform(0, 2 * np.pi)  # along y, (size, 1)
        v = k * np.cos(angle) * t[None, :]  # along x, (1, size)
        field += np.cos(u) * np.cos(v) - np.sin(u) * np.sin(v)  # cos(u + v), as two outer products
    return (field - field.mean()) / (field.std() + 1e-8)


def _ricker(points: int, width: float) -> np.ndarray:
    t = np.arange(points) - (points - 1) / 2
    a = (t / width) ** 2
    return (1 - 2 * a) * np.exp(-a)


def _synthetic_tile(rng: np.random.Generator, salt: bool) -> tuple[np.ndarray, np.ndarray]:
    """One seismic-looking tile (uint8) and its salt mask (0/1)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    # Layered reflectors: a 1-D reflectivity series convolved with a wavelet, then bent.
    reflectivity = rng.standard_normal(420) * (rng.random(420) < 0.35)
    trace = np.convolve(reflectivity, _ricker(25, rng.uniform(1.5, 3.5)), mode="same")
    trace /= trace.std() + 1e-8
    fold = rng.uniform(2, 14) * np.sin(2 * np.pi * x / rng.uniform(60, 250) + rng.uniform(0, 2 * np.pi))
    dip = np.tan(np.radians(rng.uniform(-15, 15))) * x
    shift = np.zeros_like(x)
    if rng.random() < 0.5:  # a fault: the layers on one side slide by the throw
        x0, slope = rng.uniform(20, 80), rng.uniform(-0.6, 0.6)
        shift = np.where(x > x0 + slope * (y - 50), rng.uniform(-12, 12), 0.0)
    depth_in_trace = np.clip(y + fold + dip + shift + 150, 0, 419)
    layers = np.interp(depth_in_trace, np.arange(420), trace)
    layers *= 1 + 0.3 * _smooth_field(rng, 1.5)  # amplitude varies along the section
    image = layers + 0.25 * rng.standard_normal((SIDE, SIDE))

    mask = np.zeros((SIDE, SIDE), np.uint8)
    if salt:
        coverage = 1.0 if rng.random() < 0.08 else float(np.clip(rng.beta(0.6, 1.0), 0.004, 1.0))
        # Salt bodies: a smooth blob or a body below an irregular top, with a rough boundary.
        angle = rng.uniform(0, 2 * np.pi)
        trend = (np.cos(angle) * (x - 50) + np.sin(angle) * (y - 50)) / 30 * rng.uniform(0, 1.5)
        field = trend + _smooth_field(rng, rng.uniform(0.6, 1.6)) + 0.15 * _smooth_field(rng, 8, n_waves=10)
        mask = field >= np.quantile(field, 1 - coverage)
        bodies, n_bodies = ndimage.label(mask)
        if n_bodies > 1:  # keep the largest salt body, as TGS tiles mostly show one
            mask = bodies == np.bincount(bodies.ravel())[1:].argmax() + 1
        mask = mask.astype(np.uint8)
        # Inside the salt: chaotic, low-contrast texture; a bright reflector on its boundary.
        chaos = ndimage.gaussian_filter(rng.standard_normal((SIDE, SIDE)), 1.2)
        chaos /= chaos.std() + 1e-8
        salt_texture = 0.35 * chaos + 0.15 * layers + 0.2 * rng.standard_normal((SIDE, SIDE))
        image = np.where(mask == 1, salt_texture, image)
        rim = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=1)
        image = image + 0.8 * rim * rng.choice([-1, 1])
    contrast, brightness = rng.uniform(22, 45), rng.uniform(100, 150)
    return np.clip(brightness + contrast * image, 0, 255).astype(np.uint8), mask


def _unique_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids: list[str] = []
    seen = set()
    while len(ids) < n:
        id_ = rng.bytes(5).hex()  # Kaggle's ids are 10 hexadecimal characters
        if id_ not in seen:
            seen.add(id_)
            ids.append(id_)
    return ids


def _write_new(path: Path, write) -> None:
    """Write a file only if it is not there yet: never overwrite what a user has."""
    if not path.exists():
        tmp = path.with_name(path.name + ".partial")
        write(tmp)
        tmp.replace(path)


def make_synthetic_tgs(root: str | Path, n_train: int = N_TRAIN, n_test: int = 1000, seed: int = 0) -> Path:
    """Write an offline stand-in for TGS Salt in exactly Kaggle's layout (see the module docstring).

    Images look like seismic sections (folded, faulted reflectors and noise); salt bodies have
    a chaotic, lower-contrast texture and irregular boundaries; about 39% of masks are empty,
    and salt is a little more likely deeper down. The same seed writes the same files.
    Files that already exist are left as they are.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = _unique_ids(rng, n_train + n_test)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    depths = rng.uniform(51, 959, size=len(ids)).round().astype(int)
    for folder in ("train/images", "train/masks", "test/images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rle = {}
    for k, id_ in enumerate(ids):
        p_salt = 0.61 + 0.25 * (depths[k] - 505) / 454  # a weak link between depth and salt, 61% on average
        tile_rng = np.random.default_rng([seed, k])  # each tile from its own stream: same files for the same seed
        image, mask = _synthetic_tile(tile_rng, salt=tile_rng.random() < p_salt)
        split = "train" if k < n_train else "test"
        _write_new(root / split / "images" / f"{id_}.png",
                   lambda p: Image.fromarray(np.repeat(image[..., None], 3, axis=2)).save(p, format="PNG", compress_level=1))
        if split == "train":
            _write_new(root / "train" / "masks" / f"{id_}.png", lambda p: Image.fromarray(mask * 255).save(p, format="PNG", compress_level=1))
            rle[id_] = rle_encode(mask)

    def write_csv(header, rows):
        def write(path):
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
        return write

    _write_new(root / "train.csv", write_csv(["id", "rle_mask"], [(i, rle[i]) for i in train_ids]))
    _write_new(root / "depths.csv", write_csv(["id", "z"], zip(ids, depths.tolist())))
    _write_new(root / "sample_submission.csv", write_csv(["id", "rle_mask"], [(i, "1 1") for i in test_ids]))
    return root


# ---------------------------------------------------------------------------
# The real data from Kaggle
# ---------------------------------------------------------------------------

_CREDENTIALS_HELP = (
    "Kaggle credentials were not found. Either\n"
    "  * put kaggle.json (Kaggle > Settings > API > Create New Token) in ~/.kaggle/kaggle.json "
    "(or in the folder named by KAGGLE_CONFIG_DIR) and run `chmod 600 ~/.kaggle/kaggle.json`, or\n"
    "  * set the environment variables KAGGLE_USERNAME and KAGGLE_KEY, or\n"
    "  * on Colab, add KAGGLE_USERNAME and KAGGLE_KEY as secrets (the key icon on the left) "
    "and allow this notebook to use them."
)


def _load_colab_secrets() -> None:
    """On Colab, copy the KAGGLE_USERNAME / KAGGLE_KEY secrets into the environment, if granted."""
    if "google.colab" not in sys.modules:
        return
    try:
        from google.colab import userdata  # type: ignore

        for name in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
            if not os.environ.get(name):
                os.environ[name] = userdata.get(name)
    except Exception:  # secret missing or access not granted: fall back to the other ways
        pass


def kaggle_credentials_found() -> bool:
    """True when the kaggle package will find credentials (environment, kaggle.json or Colab secrets)."""
    _load_colab_secrets()
    if (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) or os.environ.get("KAGGLE_API_TOKEN"):
        return True
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    return any((f / "kaggle.json").is_file() or (f / "access_token").is_file() for f in folders)


def _kaggle_api():
    """The authenticated Kaggle API. Imported here, not at the top: importing kaggle authenticates."""
    if not kaggle_credentials_found():
        raise TGSDataError(_CREDENTIALS_HELP)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except Exception as err:  # the package authenticates on import and fails loudly
        raise TGSDataError(f"the kaggle package could not start ({err}).\n{_CREDENTIALS_HELP}") from None
    api = KaggleApi()
    api.authenticate()
    return api


def _http_status(err: Exception) -> int | None:
    for attr in ("status", "status_code"):
        if isinstance(getattr(err, attr, None), int):
            return getattr(err, attr)
    response = getattr(err, "response", None)
    if isinstance(getattr(response, "status_code", None), int):
        return response.status_code
    for code in (401, 403, 404):
        if str(code) in str(err):
            return code
    return None


def _explain_kaggle_error(err: Exception) -> TGSDataError:
    status = _http_status(err)
    if status == 403:
        return TGSDataError(
            f"Kaggle refused the download (HTTP 403): accept the competition's rules at {RULES_URL} "
            "while signed in with the account of your credentials, then run this again."
        )
    if status == 401:
        return TGSDataError(f"Kaggle rejected the credentials (HTTP 401): create a new API token.\n{_CREDENTIALS_HELP}")
    return TGSDataError(f"the Kaggle download failed: {err}")


def _archive_ok(path: Path) -> bool:
    """True when ``path`` is a complete zip archive (a truncated download is not)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def _extract_missing(archive: zipfile.ZipFile, target: Path, strip: str = "") -> None:
    """Extract the members whose files do not exist yet (never overwrite)."""
    for member in archive.infolist():
        name = member.filename[len(strip):] if strip and member.filename.startswith(strip) else member.filename
        if member.is_dir() or not name or name.startswith(("__MACOSX", "/")) or ".." in Path(name).parts:
            continue
        out = target / name
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src:
            _write_new(out, lambda p: p.write_bytes(src.read()))


def _unpack(archive_path: Path, root: Path) -> None:
    """Unpack Kaggle's competition archive into its layout: csv files, then train.zip and test.zip."""
    with zipfile.ZipFile(archive_path) as outer:
        for member in outer.namelist():
            if member.endswith(".csv"):
                _extract_missing_one(outer, member, root / Path(member).name)
        for inner_name in ("train.zip", "test.zip"):
            if inner_name in outer.namelist():
                split = inner_name[:-4]
                with outer.open(inner_name) as raw, zipfile.ZipFile(raw) as inner:
                    _extract_missing(inner, root / split, strip=f"{split}/")


def _extract_missing_one(archive: zipfile.ZipFile, member: str, out: Path) -> None:
    if not out.exists():
        _write_new(out, lambda p: p.write_bytes(archive.read(member)))


def download_tgs_salt(root: str | Path | None = None, quiet: bool = False) -> Path:
    """Download the competition's files with the kaggle package and unpack them into Kaggle's layout.

    Idempotent: a complete folder is left alone; a complete archive is not fetched again; a
    truncated archive is fetched again. Files already in ``root`` are never overwritten or deleted.
    Raises ``TGSDataError`` explaining what to do without credentials or with the rules not accepted.
    """
    root = Path(root) if root is not None else default_data_dir() / "tgs-salt"
    if not layout_problems(root, N_TRAIN, N_TEST):
        return root
    api = _kaggle_api()
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{COMPETITION}.zip"
    if not _archive_ok(archive):
        try:
            api.competition_download_files(COMPETITION, path=str(root), force=archive.exists(), quiet=quiet)
        except Exception as err:
            raise _explain_kaggle_error(err) from err
        if not _archive_ok(archive):
            raise TGSDataError(f"{archive} is incomplete after the download; run download_tgs_salt() again")
    _unpack(archive, root)
    problems = layout_problems(root, N_TRAIN, N_TEST)
    if problems:
        raise TGSDataError(f"{root} is still incomplete after unpacking {archive.name}: " + "; ".join(problems))
    return root


@dataclass
class TGSSource:
    """Where the data came from: ``root`` in Kaggle's layout, and whether it is the stand-in."""

    root: Path
    synthetic: bool

    @property
    def banner(self) -> str:
        if self.synthetic:
            return (
                f"Data: OFFLINE STAND-IN in {self.root} (synthetic seismic tiles in Kaggle's layout); results are on "
                "synthetic data. For the real TGS Salt data, add Kaggle credentials and accept the rules, see data/README.md."
            )
        return f"Data: Kaggle TGS Salt Identification Challenge in {self.root}"


def get_tgs_salt(root: str | Path | None = None, standin_root: str | Path | None = None, verbose: bool = True) -> TGSSource:
    """The data for the notebooks: the real data if it is there, else a download if credentials
    exist, else the offline stand-in (generated once), with a one-line banner saying which.
    """
    data_dir = default_data_dir()
    root = Path(root) if root is not None else data_dir / "tgs-salt"
    standin_root = Path(standin_root) if standin_root is not None else data_dir / "tgs-salt-standin"
    if not layout_problems(root):
        source = TGSSource(root, synthetic=False)
    elif kaggle_credentials_found():
        source = TGSSource(download_tgs_salt(root), synthetic=False)
    else:
        if layout_problems(standin_root, N_TRAIN, 1000):
            make_synthetic_tgs(standin_root)
        source = TGSSource(standin_root, synthetic=True)
    if verbose:
        print(source.banner)
    return source
