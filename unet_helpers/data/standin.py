"""An offline stand-in for TGS Salt: synthetic seismic tiles written in exactly Kaggle's files and modes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .files import N_TRAIN, SIDE, TGSDataError, write_new
from .rle import rle_encode


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


def looks_like_standin(train_ids: list[str], seed: int = 0) -> bool:
    """True when these are the stand-in's own ids (written with ``seed``), in a folder of any name."""
    first = train_ids[:5]
    return bool(first) and first == _unique_ids(np.random.default_rng(seed), len(first))


def _check_only_standin_files(root: Path, train_ids: list[str], test_ids: list[str]) -> None:
    """Refuse a folder that holds files of its own (real data, say): the stand-in is never mixed into them.

    An empty or missing folder, or one holding part of this same stand-in (an interrupted run), is fine.
    """
    if not root.is_dir():
        return
    ours = {"train.csv", "depths.csv", "sample_submission.csv"}
    ours |= {f"train/{kind}/{i}.png" for i in train_ids for kind in ("images", "masks")}
    ours |= {f"test/images/{i}.png" for i in test_ids}
    folders = {"train", "test", "train/images", "train/masks", "test/images"}
    foreign = [
        path.relative_to(root).as_posix()
        for path in sorted(root.rglob("*"))
        if path.relative_to(root).as_posix() not in ours | folders and not path.name.endswith(".partial")
    ]
    if foreign:
        raise TGSDataError(
            f"{root} already holds {len(foreign)} files that are not this stand-in's (e.g. {', '.join(foreign[:3])}), "
            "so the synthetic tiles are not written into it; choose a new or empty folder for the stand-in"
        )


def kaggle_mask_png(mask: np.ndarray) -> Image.Image:
    """A 0/1 mask as Kaggle stores it: mode L (8-bit, all 0) when empty, 16-bit I;16 with 0 and 65535 when it holds salt."""
    if not mask.any():
        return Image.fromarray(np.zeros(mask.shape, np.uint8))  # a uint8 array becomes mode L
    return Image.fromarray(mask.astype(np.uint16) * 65535)  # a uint16 array becomes mode I;16


def make_synthetic_tgs(root: str | Path, n_train: int = N_TRAIN, n_test: int = 1000, seed: int = 0) -> Path:
    """Write an offline stand-in for TGS Salt in exactly Kaggle's layout (see the module docstring).

    Files have Kaggle's modes: images are 8-bit RGB with three equal channels, masks are mode L
    when empty and 16-bit I;16 (0 and 65535) when they hold salt, so the code that reads the
    stand-in is the code that reads the real files.
    Images look like seismic sections (folded, faulted reflectors and noise); salt bodies have
    a chaotic, lower-contrast texture and irregular boundaries; about 39% of masks are empty,
    and salt is a little more likely deeper down. The same seed writes the same files.
    Files that already exist are left as they are.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = _unique_ids(rng, n_train + n_test)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    _check_only_standin_files(root, train_ids, test_ids)
    depths = rng.uniform(51, 959, size=len(ids)).round().astype(int)
    for folder in ("train/images", "train/masks", "test/images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rle = {}
    for k, id_ in enumerate(ids):
        p_salt = 0.61 + 0.25 * (depths[k] - 505) / 454  # a weak link between depth and salt, 61% on average
        tile_rng = np.random.default_rng([seed, k])  # each tile from its own stream: same files for the same seed
        image, mask = _synthetic_tile(tile_rng, salt=tile_rng.random() < p_salt)
        split = "train" if k < n_train else "test"
        write_new(
            root / split / "images" / f"{id_}.png",
            lambda p, image=image: Image.fromarray(np.repeat(image[..., None], 3, axis=2)).save(
                p, format="PNG", compress_level=1
            ),
        )
        if split == "train":
            write_new(
                root / "train" / "masks" / f"{id_}.png",
                lambda p, mask=mask: kaggle_mask_png(mask).save(p, format="PNG", compress_level=1),
            )
            rle[id_] = rle_encode(mask)

    def write_csv(header, rows):
        def write(path):
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)

        return write

    write_new(root / "train.csv", write_csv(["id", "rle_mask"], [(i, rle[i]) for i in train_ids]))
    write_new(root / "depths.csv", write_csv(["id", "z"], zip(ids, depths.tolist())))
    write_new(root / "sample_submission.csv", write_csv(["id", "rle_mask"], [(i, "1 1") for i in test_ids]))
    return root
