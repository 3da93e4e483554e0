"""TGS Salt as a PyTorch Dataset (decoded once, padded or resized once), and a stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import RandomResizedCrop, v2

from ..tiling import mirror_pad
from .files import PAD_SIDE, RESIZE_SIDE, SIDE, TGSArrays, load_tgs_split


class TGSSaltDataset(Dataset):
    """TGS Salt tiles as tensors, decoded once and kept in memory.

    Args:
        source: a data folder in Kaggle's layout, or a :class:`TGSArrays` already decoded.
        split: "train" (images and masks) or "test" (images only) when ``source`` is a folder.
        ids: restrict to these ids (e.g. one side of :func:`stratified_split`).
        channels: 1, or 3 (the grey image repeated, for networks built for RGB).
        depth_channel: append the tile's depth (z / 1000) as one more constant channel.
        size: "pad" (reflect-pad 101 -> 104, crop predictions back with :meth:`restore`),
            "resize" (bilinear to 104, as the earlier project did) or "none" (keep 101).
        side: the side to pad or resize to, instead of 104 (e.g. 144 for a valid-padding
            U-Net whose output must still cover the whole 101x101 tile).
        augment: random horizontal flips, applied identically to image and mask.
        strong_augment: also, each half of the time, a random zoom-in (a crop of 50-100% of the area,
            resized back to the side, :class:`RandomZoomIn`; the mask follows with nearest-exact) and a brightness and
            contrast jitter of up to 20% (the image only). Seismic tiles are never flipped upside down:
            depth has a direction.

    Items: ``(image, mask)`` with image (C, S, S) float32 in [0, 1] and mask (1, S, S) float32
    in {0, 1}; for the test split, ``(image, index)``.
    """

    def __init__(
        self,
        source: str | Path | TGSArrays,
        split: str = "train",
        ids: list[str] | None = None,
        channels: int = 3,
        depth_channel: bool = False,
        size: str = "pad",
        augment: bool = False,
        side: int | None = None,
        strong_augment: bool = False,
    ) -> None:
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
        self.augment, self.strong_augment = augment, strong_augment  # also read by DeviceBatches
        steps = [v2.RandomHorizontalFlip(p=0.5)] if augment else []
        if strong_augment:
            steps += [
                v2.RandomApply([RandomZoomIn(self._side)], p=0.5),
                v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.5),
            ]
        self.transform = v2.Compose(steps) if steps else None
        # Padding or resizing is done once here, not per item.
        self.images = self._fit(torch.from_numpy(arrays.images).unsqueeze(1).float().div_(255), "image")
        self.masks = (
            None if arrays.masks is None else self._fit(torch.from_numpy(arrays.masks).unsqueeze(1).float(), "mask")
        )
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
        return fit_to_network(x, self.size, self.side, kind)

    def restore(self, output: torch.Tensor) -> torch.Tensor:
        """Bring (N, C, s, s) predictions back to the original (N, C, 101, 101) tile.

        ``s`` may be smaller than the input side (a valid-padding U-Net's output is the centre of
        its input), as long as the output still covers the tile.
        """
        return restore_from_network(output, self.size, self.side)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.channels == 3:
            image = image.expand(3, -1, -1)
        if self.masks is None:
            return self._with_depth(image, index).contiguous(), index
        mask = self.masks[index]
        if self.transform is not None:
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return self._with_depth(image, index).contiguous(), mask

    def _with_depth(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """The depth channel goes on after the augmentation: a jitter of brightness must not change the depth."""
        if not self.depth_channel:
            return image
        return torch.cat([image, self.depths[index].expand(1, *image.shape[-2:])])


class RandomZoomIn(torch.nn.Module):
    """A random crop of 50-100% of the tile's area (aspect 0.8-1.25), resized back to ``side``: the image bilinear,
    the mask nearest-exact, both from the same crop, so that the mask stays on its image (torchvision's own
    ``RandomResizedCrop`` resizes a mask with the legacy "nearest", about half a pixel off the image)."""

    def __init__(self, side: int, scale: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (0.8, 1.25)):
        super().__init__()
        self.side, self.scale, self.ratio = side, scale, ratio

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top, left, height, width = RandomResizedCrop.get_params(image, self.scale, self.ratio)
        size = [self.side, self.side]
        image = v2.functional.resized_crop(image, top, left, height, width, size, antialias=True)
        plain = mask.as_subclass(torch.Tensor)  # as a plain tensor, so that the interpolation asked for is used
        plain = v2.functional.resized_crop(
            plain, top, left, height, width, size, interpolation=v2.InterpolationMode.NEAREST_EXACT
        )
        return image, tv_tensors.Mask(plain)


def fit_to_network(x: torch.Tensor, size: str, side: int, kind: str = "image") -> torch.Tensor:
    """Tiles (N, C, H, W) as the network takes them: ``size`` "pad", "resize" or "none", for tiles of side ``side``.

    "pad" mirrors ``side - 101`` pixels around the tile, (side - 101) // 2 above and left and the rest below and
    right (101 -> 104: 1 and 2); "resize" scales by side / 101 (bilinear for images, nearest-exact for masks).
    Written for 101x101 tiles; an image of another size gets the same border or scale. Training, evaluation and the command-line
    predictor all prepare their inputs here, so that a network always sees its tiles in the same place.
    """
    if size == "pad":
        before = (side - SIDE) // 2
        after = side - SIDE - before
        return mirror_pad(x, before, after, before, after)
    if size == "resize":
        height, width = x.shape[-2:]
        target = (round(height * side / SIDE), round(width * side / SIDE))
        if kind == "image":
            return F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        # "nearest-exact" samples each pixel's centre, as bilinear does; plain "nearest" (the legacy rule) reads
        # the pixel up and to the left, which puts the mask about half a pixel off its image
        return F.interpolate(x, size=target, mode="nearest-exact")
    return x


def restore_from_network(
    output: torch.Tensor, size: str, side: int, height: int = SIDE, width: int = SIDE
) -> torch.Tensor:
    """Undo :func:`fit_to_network` on the network's output (N, C, s, t): back to (N, C, height, width).

    For "pad" the output may be smaller than the input (a valid-padding U-Net's output is the centre of its input),
    as long as it still covers the tile.
    """
    if size == "pad":
        before = (side - SIDE) // 2
        in_height, in_width = height + side - SIDE, width + side - SIDE
        top = before - (in_height - output.shape[-2]) // 2  # the tile's first row in the output
        left = before - (in_width - output.shape[-1]) // 2
        if min(top, left) < 0 or top + height > output.shape[-2] or left + width > output.shape[-1]:
            raise ValueError(
                f"an output of {output.shape[-2]}x{output.shape[-1]} from inputs of {in_height}x{in_width} does not "
                f"cover the {height}x{width} tile; pad to a larger side"
            )
        return output[..., top : top + height, left : left + width]
    if size == "resize":
        return F.interpolate(output, size=(height, width), mode="bilinear", align_corners=False)
    return output


def coverage_class(coverage: np.ndarray) -> np.ndarray:
    """Salt-coverage class 0..10: 0 for an empty mask, else ceil(coverage * 10)."""
    return np.ceil(np.asarray(coverage) * 10).astype(int)


def is_column_mask(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N,) True where a mask holds salt and every column is all salt or none.

    Such masks are bands with straight vertical sides from the top of the tile to the bottom; about 3% of
    the TGS training masks look like this (notebook 05), and no seismic boundary in their images explains them.
    """
    masks = np.asarray(masks) > 0
    per_column = masks.sum(axis=1)  # (N, W): salt pixels in each column
    full_or_empty = (per_column == 0) | (per_column == masks.shape[1])
    return full_or_empty.all(axis=1) & masks.any(axis=(1, 2))


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


def stratified_folds(ids: list[str], classes, folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Deal the ids into ``folds`` seeded folds of (nearly) equal size, each class spread over them evenly.

    For cross-validation: fold k validates the network trained on all the other folds, so every tile is validated on
    exactly once. Each class's tiles are shuffled and dealt out in turn, the next class starting at the fold where the
    last one stopped, so the fold sizes differ by one tile at most. The ids keep their order within each fold.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    classes = np.asarray(classes)
    if len(classes) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(classes)} classes")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(ids), dtype=int)
    dealt = 0
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        rng.shuffle(members)
        fold_of[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return [[i for k, i in enumerate(ids) if fold_of[k] == f] for f in range(folds)]
