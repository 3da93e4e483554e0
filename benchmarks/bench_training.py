"""Training throughput of the ~500k-parameter U-Net at 128x128: ours against the earlier project's way.

    python benchmarks/bench_training.py            # CPU: images/s and peak memory, both ways
    python benchmarks/bench_training.py --epoch    # on a GPU: seconds for one epoch of 3,200 images

Ours: tiles decoded once (TGSSaltDataset, reflect-padded to 128, flips), batch 32, the engine's
train_step (mixed precision and channels_last on CUDA). The earlier project's way: every item
decodes its PNGs with PIL and runs PIL transforms (resize to 104), batch 40. Each way runs in its
own process so that its peak memory (max RSS, and CUDA's max allocated) is its own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from bench_loader import PerItemPNGDataset  # noqa: E402

from unet_helpers.data import TGSSaltDataset, get_tgs_salt, load_tgs_split  # noqa: E402
from unet_helpers.engine import amp_dtype_for, train_step  # noqa: E402
from unet_helpers.losses import BCEWithLogitsLoss  # noqa: E402
from unet_helpers.models import UNet  # noqa: E402
from unet_helpers.utils import describe_device, get_device  # noqa: E402


def measure(way: str, images: int, device: torch.device) -> dict:
    root = get_tgs_salt(verbose=False).root
    torch.manual_seed(0)
    model = UNet(3, 1, (16, 32, 64, 128), padding="same", padding_mode="reflect").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    amp_dtype, channels_last = amp_dtype_for(device), device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    started = time.perf_counter()
    if way == "ours":
        arrays = load_tgs_split(root)
        dataset = TGSSaltDataset(arrays, ids=arrays.ids[:images], channels=3, size="pad", augment=True)
        loader = DataLoader(dataset, batch_size=32, shuffle=True, pin_memory=device.type == "cuda")
    else:
        ids = sorted(p.stem for p in (Path(root) / "train/images").glob("*.png"))[:images]
        loader = DataLoader(PerItemPNGDataset(Path(root), ids), batch_size=40, shuffle=True)
    setup = time.perf_counter() - started
    train_step(model, loader, BCEWithLogitsLoss(), optimizer, device, scaler, amp_dtype, channels_last)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train_step(model, loader, BCEWithLogitsLoss(), optimizer, device, scaler, amp_dtype, channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return dict(way=way, images=len(loader.dataset), seconds=seconds, images_per_s=len(loader.dataset) / seconds,
                setup_s=setup, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320, help="images per timed epoch on the CPU (default 320)")
    parser.add_argument("--epoch", action="store_true", help="time a whole epoch of 3,200 images (for a GPU)")
    parser.add_argument("--way", choices=["ours", "earlier"], help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    device = get_device()
    images = 3200 if args.epoch else args.images
    if args.way:
        print(json.dumps(measure(args.way, images, device)))
        return
    get_tgs_salt()  # make sure the data exists before the children start
    results = {}
    for way in ("ours", "earlier"):
        cmd = [sys.executable, __file__, "--way", way, "--images", str(images)] + (["--epoch"] if args.epoch else [])
        results[way] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print(f"device: {describe_device(device)}, torch {torch.__version__}; ~500k-parameter U-Net, one epoch of {images} images")
    for way, label in (("ours", "ours (decoded once, 128 padded, batch 32)"), ("earlier", "earlier (PNG per item, PIL, 104, batch 40)")):
        r = results[way]
        print(f"{label:44} {r['images_per_s']:7.1f} images/s  {r['seconds']:7.2f} s/epoch  peak RSS {r['peak_rss_mb']:6.0f} MB"
              + (f"  peak CUDA {r['peak_cuda_mb']:6.0f} MB" if r["peak_cuda_mb"] else ""))
    print(f"ratio: {results['ours']['images_per_s'] / results['earlier']['images_per_s']:.2f}x the earlier project's images/s")


if __name__ == "__main__":
    main()
