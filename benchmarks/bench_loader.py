"""One epoch of training batches out of the DataLoader: ours against per-item PNG decoding.

    python benchmarks/bench_loader.py [--root data/tgs-salt-standin]

Ours decodes the split once (TGSSaltDataset), then serves 3,200 images in batches of 32 with
random flips. The baseline is the earlier project's way: every item opens its image and mask
PNGs with PIL and runs PIL-based torchvision transforms. Single process (num_workers=0), CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import functional as TF

from unet_helpers.data import TGSSaltDataset, get_tgs_salt, load_tgs_split


class PerItemPNGDataset(Dataset):
    """The earlier project's loader: decode PNGs and apply PIL transforms on every access."""

    def __init__(self, root: Path, ids: list[str]):
        self.root, self.ids = root, ids
        self.to_tensor = transforms.ToTensor()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image = Image.open(self.root / "train/images" / f"{self.ids[i]}.png").convert("RGB")
        mask = Image.open(self.root / "train/masks" / f"{self.ids[i]}.png").convert("L")
        image, mask = (
            TF.resize(image, [104, 104]),
            TF.resize(mask, [104, 104], interpolation=transforms.InterpolationMode.NEAREST),
        )
        if random.random() < 0.5:
            image, mask = TF.hflip(image), TF.hflip(mask)
        return self.to_tensor(image), (self.to_tensor(mask) > 0.5).float()


def epoch_seconds(dataset: Dataset, batch_size: int = 32) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    start = time.perf_counter()
    for _batch in loader:
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=None, help="data folder in Kaggle's layout (default: get_tgs_salt())"
    )
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = args.root or get_tgs_salt().root
    torch.manual_seed(0)
    random.seed(0)

    start = time.perf_counter()
    arrays = load_tgs_split(root)
    decode = time.perf_counter() - start
    ids = arrays.ids[: args.images]
    ours = TGSSaltDataset(arrays, ids=ids, channels=3, size="pad", augment=True)
    baseline = PerItemPNGDataset(Path(root), ids)

    ours_s = min(epoch_seconds(ours) for _ in range(args.repeats))
    base_s = min(epoch_seconds(baseline) for _ in range(args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(ids)} images, batch 32, flips")
    print(f"one-time decode of {len(arrays)} pairs: {decode:.2f} s")
    print(f"ours (in memory):        {ours_s:.2f} s per epoch")
    print(f"per-item PNG + PIL:      {base_s:.2f} s per epoch")
    print(f"speed-up: {base_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
