"""Training and inference speed: our trainer, recipe by recipe, against the earlier project's way, side by side.

    python benchmarks/bench_training.py                 # CPU: images/s and peak memory, every recipe against the earlier way
    python benchmarks/bench_training.py --variants      # what each CPU setting is worth (side, channels_last, bfloat16, compile)
    python benchmarks/bench_training.py --inference     # milliseconds per 101x101 tile at batch 1 and 64
    python benchmarks/bench_training.py --epoch         # on a GPU: seconds for one epoch of 3,200 images per recipe

Ours: tiles decoded once (TGSSaltDataset, reflect-padded to the recipe's side: 104, or 144 for the
valid-padding net), the recipe's network, loss, optimizer and flips, batch 32, channels_last, the
engine's train_step. The earlier project's way: every item decodes its PNGs with PIL and runs PIL
transforms (resize to 104), batch 40, its ~500k-parameter reflect-padded U-Net, Adam, BCE, the
default memory format. Every measurement runs in its own process, one after the other, so that
its peak memory (max RSS, and CUDA's max allocated) is its own and nothing else shares the CPU.
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
from unet_helpers.losses import BCEWithLogitsLoss, make_loss  # noqa: E402
from unet_helpers.models import UNet  # noqa: E402
from unet_helpers.recipes import RECIPES, build_model, build_optimizer  # noqa: E402
from unet_helpers.utils import describe_device, get_device  # noqa: E402

EARLIER_NET = dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128), padding="same", padding_mode="reflect")


def measure_training(
    way: str,
    images: int,
    device: torch.device,
    side: int | None = None,
    channels_last: bool = True,
    bf16: bool = False,
    compile_: bool = False,
) -> dict:
    """One timed epoch of ``images`` images (after a warm-up epoch); ``way`` is a recipe name or "earlier"."""
    root = get_tgs_salt(verbose=False).root
    torch.manual_seed(0)
    started = time.perf_counter()
    if way == "earlier":
        model = UNet(**EARLIER_NET).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
        loss_fn, channels_last = BCEWithLogitsLoss(), False
        ids = sorted(p.stem for p in (Path(root) / "train/images").glob("*.png"))[:images]
        loader = DataLoader(PerItemPNGDataset(Path(root), ids), batch_size=40, shuffle=True)
    else:
        recipe = RECIPES[way]
        model = build_model(recipe).to(device)
        optimizer, loss_fn = build_optimizer(recipe, model), make_loss(recipe.loss)
        arrays = load_tgs_split(root)
        dataset = TGSSaltDataset(
            arrays,
            ids=arrays.ids[:images],
            channels=3,
            size=recipe.size,
            side=side or recipe.side,
            augment=recipe.augment,
        )
        loader = DataLoader(dataset, batch_size=recipe.batch_size, shuffle=True, pin_memory=device.type == "cuda")
    setup = time.perf_counter() - started
    amp_dtype = torch.bfloat16 if bf16 else amp_dtype_for(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile_:
        model = torch.compile(model)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    args = (model, loader, loss_fn, optimizer, device, scaler, amp_dtype, channels_last)
    warm = time.perf_counter()
    train_step(*args)  # warm-up (and compilation)
    warm = time.perf_counter() - warm
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    loss = train_step(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return dict(
        way=way,
        images=len(loader.dataset),
        seconds=seconds,
        images_per_s=len(loader.dataset) / seconds,
        setup_s=setup,
        warmup_s=warm,
        loss=loss,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0,
    )


@torch.no_grad()
def measure_inference(batch: int, side: int, channels_last: bool, device: torch.device, repeats: int) -> dict:
    """Milliseconds per tile for medium-strong's network (eval mode) at one batch size."""
    model = build_model(RECIPES["medium-strong"]).to(device).eval()
    x = torch.rand(batch, 3, side, side, device=device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model(x)  # warm-up
    best = float("inf")
    for _ in range(3):  # the best of three rounds: the least disturbed by anything else
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / (repeats * batch))
    return dict(ms_per_tile=1000 * best, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(**options) -> dict:
    """Run one measurement in a fresh process and return its result."""
    cmd = [sys.executable, __file__, "--child", json.dumps(options)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640, help="images per timed epoch on the CPU (default 640)")
    parser.add_argument("--epoch", action="store_true", help="time whole epochs of 3,200 images (for a GPU)")
    parser.add_argument("--variants", action="store_true", help="measure each CPU setting for medium-reflect")
    parser.add_argument("--inference", action="store_true", help="milliseconds per tile at batch 1 and 64")
    parser.add_argument("--compile", action="store_true", help="with --variants: also torch.compile (slow to compile)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    device = get_device()
    if args.child:
        options = json.loads(args.child)
        kind = options.pop("kind")
        result = (
            measure_inference(device=device, **options)
            if kind == "inference"
            else measure_training(device=device, **options)
        )
        print(json.dumps(result))
        return
    source = get_tgs_salt()  # make sure the data exists before the children start
    images = 3200 if args.epoch else args.images
    print(
        f"device: {describe_device(device)}, torch {torch.__version__}; data: {source.n_train:,} tiles "
        f"({'stand-in' if source.synthetic else 'real'})"
    )
    if args.inference:
        for channels_last in (False, True):
            for batch, side in ((1, 104), (64, 104), (1, 128), (64, 128)):
                r = child(
                    kind="inference",
                    batch=batch,
                    side=side,
                    channels_last=channels_last,
                    repeats=40 if batch == 1 else 2,
                )
                print(
                    f"inference medium-strong {side}x{side} batch {batch:3d} "
                    f"{'channels_last' if channels_last else 'NCHW         '}  {r['ms_per_tile']:6.2f} ms per tile"
                )
        return
    if args.variants:
        rows = [
            ("128 padded, NCHW, float32 (the trainer before)", dict(side=128, channels_last=False)),
            ("104 padded, NCHW, float32", dict(side=104, channels_last=False)),
            ("104 padded, channels_last, float32 (ours)", dict(side=104, channels_last=True)),
            ("104 padded, channels_last, bfloat16 autocast", dict(side=104, channels_last=True, bf16=True)),
        ]
        if args.compile:
            rows.append(("104 padded, channels_last, torch.compile", dict(side=104, channels_last=True, compile_=True)))
        base = None
        for label, options in rows:
            r = child(kind="training", way="medium-reflect", images=images, **options)
            base = base or r
            print(
                f"medium-reflect {label:52} {r['images_per_s']:6.1f} images/s  ({r['images_per_s'] / base['images_per_s']:.2f}x)"
                f"  loss after 2 epochs {r['loss']:.4f}  warm-up {r['warmup_s']:.0f} s"
            )
        return
    earlier = child(kind="training", way="earlier", images=images)
    print(
        f"{'earlier project (PNG per item, PIL, 104, batch 40)':54} {earlier['images_per_s']:6.1f} images/s  "
        f"{earlier['seconds'] * 3200 / images:6.1f} s per 3,200  peak RSS {earlier['peak_rss_mb']:5.0f} MB"
    )
    for name in RECIPES:
        r = child(kind="training", way=name, images=images)
        print(
            f"{'ours: ' + name + f' ({RECIPES[name].side}x{RECIPES[name].side})':54} {r['images_per_s']:6.1f} images/s  "
            f"{r['seconds'] * 3200 / images:6.1f} s per 3,200  peak RSS {r['peak_rss_mb']:5.0f} MB"
            + (f"  peak CUDA {r['peak_cuda_mb']:5.0f} MB" if r["peak_cuda_mb"] else "")
            + f"  ratio {r['images_per_s'] / earlier['images_per_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
