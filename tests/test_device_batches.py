"""Batches drawn and augmented on the device (the GPU path of the trainer), checked on the CPU."""

import numpy as np
import pytest
import torch

from unet_helpers import train as train_cli
from unet_helpers.data import TGSArrays, TGSSaltDataset, make_synthetic_tgs
from unet_helpers.data.device_batches import DeviceBatches


def arrays_whose_image_shows_the_mask(n=24, seed=0):
    """Tiles whose image is bright exactly where the mask is salt, in shapes that a flip or a crop would move."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 101, 101), np.uint8)
    for k in range(n):
        top, left = rng.integers(0, 60, 2)
        masks[k, top : top + rng.integers(10, 40), left : left + rng.integers(5, 40)] = 1
        masks[k, :, : rng.integers(0, 20)] = 1  # something on the left, so that a flip shows
    images = (40 + 160 * masks).astype(np.uint8)
    return TGSArrays([f"t{k}" for k in range(n)], images, masks, np.zeros(n, np.float32))


def batches(strong=False, epoch=0, **kwargs):
    ds = TGSSaltDataset(arrays_whose_image_shows_the_mask(), channels=3, augment=True, strong_augment=strong)
    loader = DeviceBatches(ds, batch_size=8, device="cpu", seed=3, **kwargs)
    loader.set_epoch(epoch)
    return list(loader)


def test_an_epoch_serves_every_tile_once_shuffled_by_epoch_and_split_between_processes():
    ds = TGSSaltDataset(arrays_whose_image_shows_the_mask(), channels=3)
    loader = DeviceBatches(ds, batch_size=5, device="cpu", seed=1)
    assert len(loader) == 5 and sum(len(images) for images, _ in loader) == 24
    loader.set_epoch(0)
    first = loader._indices().tolist()
    loader.set_epoch(1)
    assert sorted(first) == list(range(24)) and loader._indices().tolist() != first
    shares = [DeviceBatches(ds, 4, "cpu", seed=1, rank=r, world=2)._indices().tolist() for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(24)) and not set(shares[0]) & set(shares[1])


def test_flips_move_image_and_mask_together_and_happen_about_half_the_time():
    flipped = 0
    for images, masks in batches():
        assert images.shape[1:] == (3, 104, 104) and set(masks.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(images[:, :1] > 0.5, masks > 0.5)  # the bright pixels are still exactly the salt
        flipped += int((masks[:, 0, 20:80, 2:5].mean((1, 2)) < masks[:, 0, 20:80, -5:-2].mean((1, 2))).sum())
    assert 4 <= flipped <= 20  # of 24 tiles


def test_strong_augmentation_keeps_masks_binary_and_aligned_with_their_images():
    for images, masks in batches(strong=True):
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
        for image, mask in zip(images[:, 0], masks[:, 0]):
            if image.max() - image.min() < 0.1:  # a crop that caught no salt edge: nothing to line up
                assert mask.min() == mask.max()
                continue
            bright = image > (image.max() + image.min()) / 2
            assert (bright == (mask > 0.5)).float().mean() > 0.97  # bilinear edges against nearest ones
    same = [torch.equal(a[0], b[0]) for a, b in zip(batches(strong=True), batches(strong=True))]
    assert all(same)  # the same seed and epoch draw the same augmentations
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches(strong=True), batches(strong=True, epoch=1)))


def test_the_trainer_draws_its_batches_on_the_device_when_asked(tmp_path, capsys):
    root = make_synthetic_tgs(tmp_path / "tgs", n_train=40, n_test=2, seed=6)
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "medium-strong", "--features", "4,8"]
    argv += ["--epochs", "1", "--finetune-epochs", "0", "--batch-size", "8", "--limit-train", "16", "--limit-val", "8"]
    argv += ["--no-progress", "--device", "cpu", "--processes", "1", "--device-batches", "--strong-augment"]
    assert train_cli.main(argv) == 0
    assert "best validation tgs_score" in capsys.readouterr().out
    with pytest.raises(ValueError, match="without a depth channel"):
        DeviceBatches(TGSSaltDataset(arrays_whose_image_shows_the_mask(), depth_channel=True), 4, "cpu")


def test_each_augmentation_is_on_only_when_the_dataset_asks_for_it():
    arrays = arrays_whose_image_shows_the_mask()
    strong_only = DeviceBatches(TGSSaltDataset(arrays, augment=False, strong_augment=True), 8, "cpu")
    assert (strong_only.augment, strong_only.strong) == (False, True)  # zoom and jitter, but no flips
    plain = TGSSaltDataset(arrays, channels=1)
    loader = DeviceBatches(plain, 24, "cpu", seed=2)
    (images, masks), order = next(iter(loader)), loader._indices()
    assert torch.equal(images, plain.images[order]) and torch.equal(masks, plain.masks[order])  # untouched
