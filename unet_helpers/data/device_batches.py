"""Training batches drawn and augmented where the tiles live: on a GPU, without DataLoader workers.

A DataLoader augments tile by tile on the CPU, and on a GPU that CPU side paces the training (an H200
epoch of medium-strong took 3-5 s, most of it waiting). Here the padded tiles are copied to the device
once (2,400 tiles of 112x112 in float32 are 120 MB), and every augmentation is one tensor operation over
the whole batch:

- a horizontal flip of each tile with probability 1/2 (``torch.where`` between the batch and its mirror);
- with ``strong_augment``, as ``TGSSaltDataset`` does it with torchvision: with probability 1/2 a zoom-in
  crop of 50-100% of the area (aspect 0.8-1.25) resampled to the full side, one affine grid per tile
  (``F.grid_sample``: bilinear for the image, nearest for the mask, so it stays 0/1); with probability
  1/2 a brightness and a contrast change of up to 20%.

The same code runs on a CPU, which is how the tests check it. ``set_epoch`` reshuffles with a seed, and
under DistributedDataParallel each process takes its share of the same permutation, as DistributedSampler
does, so N processes still see the batches one process would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .dataset import TGSSaltDataset


class DeviceBatches:
    """Iterate (images, masks) batches of ``dataset``, augmented on ``device``; one pass is one epoch.

    Images come out (B, C, S, S) float in [0, 1], masks (B, 1, S, S) in {0, 1}, already on ``device``.
    """

    def __init__(
        self,
        dataset: TGSSaltDataset,
        batch_size: int,
        device: torch.device | str,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if dataset.masks is None or dataset.depth_channel:
            raise ValueError("DeviceBatches serves training tiles with masks and without a depth channel")
        self.device = torch.device(device)
        self.images = dataset.images.to(self.device)  # (N, 1, S, S), padded or resized once by the dataset
        self.masks = dataset.masks.to(self.device)
        self.channels = dataset.channels
        self.augment, self.strong = dataset.augment, dataset.strong_augment  # flips; crops and jitter
        self.batch_size, self.drop_last, self.seed = batch_size, drop_last, seed
        self.rank, self.world, self.epoch = rank, world, 0
        self.dataset, self.sampler = dataset, None  # read by the engine as from a DataLoader

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle (and new augmentations) for every epoch, the same on every process."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return order[self.rank :: self.world]

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        generator = torch.Generator(device=self.device).manual_seed(self.seed + 1000 * self.epoch + self.rank)
        indices = self._indices().to(self.device)
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                break
            images, masks = self.images[batch], self.masks[batch]
            if self.augment:
                images, masks = self._flip(images, masks, generator)
            if self.strong:
                images, masks = self._zoom(images, masks, generator)
                images = self._jitter(images, generator)
            yield images.expand(-1, self.channels, -1, -1).contiguous(), masks

    @staticmethod
    def _chosen(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """(n, 1, 1, 1) booleans, each True with probability 1/2."""
        return (torch.rand(n, generator=generator, device=device) < 0.5).view(n, 1, 1, 1)

    def _flip(self, images, masks, generator):
        flip = self._chosen(len(images), generator, images.device)
        return torch.where(flip, images.flip(-1), images), torch.where(flip, masks.flip(-1), masks)

    def _zoom(self, images, masks, generator):
        """Per tile, with probability 1/2: a crop of 50-100% of the area, aspect 0.8-1.25, resampled to the side."""
        n, device = len(images), images.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, generator=generator, device=device)

        area, ratio = uniform(0.5, 1.0), torch.exp(uniform(math.log(0.8), math.log(1.25)))
        width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        # In grid_sample's coordinates (-1 to 1) a crop of width w has its centre within 1 - w of the middle.
        centre_x, centre_y = uniform(-1, 1) * (1 - width), uniform(-1, 1) * (1 - height)
        keep = ~self._chosen(n, generator, device).view(n)
        width, height = torch.where(keep, 1.0, width), torch.where(keep, 1.0, height)
        centre_x, centre_y = torch.where(keep, 0.0, centre_x), torch.where(keep, 0.0, centre_y)
        zeros = torch.zeros_like(width)
        theta = torch.stack(
            [torch.stack([width, zeros, centre_x], 1), torch.stack([zeros, height, centre_y], 1)], 1
        )  # (n, 2, 3): output pixel -> where to read in the input
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="border", align_corners=False)
        return images, masks

    def _jitter(self, images, generator):
        """Per tile, with probability 1/2: brightness and contrast each scaled by a factor in [0.8, 1.2]."""
        n, device = len(images), images.device
        on = self._chosen(n, generator, device)
        brightness = torch.where(on, 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator, device=device), 1.0)
        contrast = torch.where(on, 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator, device=device), 1.0)
        images = (images * brightness).clamp(0, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * contrast + mean).clamp(0, 1)
