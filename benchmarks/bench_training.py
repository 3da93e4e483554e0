"""Training and inference speed: our trainer, recipe by recipe, against the earlier project's way, side by side.

    python benchmarks/bench_training.py                 # CPU: images/s and peak memory, every recipe against the earlier way
    python benchmarks/bench_training.py --variants      # what each CPU setting is worth (side, channels_last, bfloat16,
                                                        # compile, two 1-thread processes)
    python benchmarks/bench_training.py --inference     # milliseconds per 101x101 tile at batch 1 and 64
    python benchmarks/bench_training.py --epoch         # on a GPU: seconds per epoch of 2,400 tiles, GPU utilisation
    python benchmarks/bench_training.py --epoch --compile --json runs/bench-gpu.json   # also torch.compile; a record
    python benchmarks/bench_training.py --epoch --levers   # also the flagship's network (residual, scSE, hypercolumn)

Ours: tiles decoded once (TGSSaltDataset, reflect-padded to the recipe's side: 104, or 144 for the
valid-padding net), the recipe's network, loss, optimizer and flips, batch 32, channels_last, the
engine's train_step. The earlier project's way: every item decodes its PNGs with PIL and runs PIL
transforms (resize to 104), batch 40, its ~500k-parameter reflect-padded U-Net, Adam, BCE, the
default memory format. Every measurement runs in its own process, one after the other, so that
its peak memory (max RSS, and CUDA's max allocated) is its own and nothing else shares the CPU.
On a CPU each recipe is measured twice: in one process with all threads, and as two data-parallel
1-thread processes, which is what `python -m unet_helpers.train` does there by itself for networks
without batch norm (--processes auto). Figures vary by 10-20% between runs; --images 1280 steadies them.

On a GPU, --epoch times whole epochs of 2,400 tiles (the training part of an 80/10/10 split of the 3,000 real
tiles) for medium-strong (or --recipes): out of a DataLoader (0 workers, the trainer's default before), with the
batches drawn and augmented on the GPU (DeviceBatches, the trainer's default there), the same in batches of 128
(a quarter of the steps: how much of an epoch is the launching of each step's kernels), the same with the strong
augmentation, each step replayed as one CUDA graph (engine.CudaGraphStep), and with --compile also under torch.compile. Each is the mean of three epochs after a warm-up epoch,
while a thread reads the GPU's utilisation (NVML: the share of time a kernel was running) every 20 ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from bench_loader import PerItemPNGDataset  # noqa: E402

from unet_helpers.data import TGSSaltDataset, get_tgs_salt, load_tgs_split  # noqa: E402
from unet_helpers.data.device_batches import DeviceBatches
from unet_helpers.engine import CudaGraphStep, amp_dtype_for, keep_freed_memory, train_step  # noqa: E402
from unet_helpers.losses import BCEWithLogitsLoss, make_loss  # noqa: E402
from unet_helpers.models import UNet  # noqa: E402
from unet_helpers.recipes import RECIPES, build_loss, build_model, build_optimizer  # noqa: E402
from unet_helpers.utils import describe_device, get_device  # noqa: E402

LEVERS_NET = dict(block="residual", attention="scse", hypercolumn=True, salt_head=True)  # gpu_session's flagship
EARLIER_NET = dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128), padding="same", padding_mode="reflect")


def measure_training(
    way: str,
    images: int,
    device: torch.device,
    side: int | None = None,
    channels_last: bool = True,
    bf16: bool = False,
    compile_: bool = False,
    keep_memory: bool = True,
    device_batches: bool = False,
    strong_augment: bool | None = None,
    compile_mode: str | None = None,
    timed_epochs: int = 1,
    batch_size: int | None = None,
    cuda_graph: bool = False,
    levers: bool = False,
) -> dict:
    """Timed epochs of ``images`` images (after a warm-up epoch); ``way`` is a recipe name or "earlier".

    ``device_batches``: the tiles live on the device and each batch is drawn and augmented there
    (``DeviceBatches``, the trainer's ``--device-batches``) instead of coming out of a DataLoader.
    ``strong_augment`` overrides the recipe's; ``compile_mode`` compiles the model (torch.compile's mode,
    "default" for its default); ``batch_size`` overrides the recipe's (fewer, larger steps: on a GPU that is paced by
    launching kernels, an epoch's time follows its number of steps); ``cuda_graph`` replays each step as one CUDA graph
    (``CudaGraphStep``); ``levers`` trains the flagship candidates' network instead (residual blocks, scSE, a
    hypercolumn head, the salt head and its loss); the result is the mean of ``timed_epochs`` epochs.
    """
    root = get_tgs_salt(verbose=False).root
    torch.manual_seed(0)
    started = time.perf_counter()
    if keep_memory and device.type == "cpu":
        keep_freed_memory()  # as the trainer does on a Linux CPU
    if way == "earlier":
        model = UNet(**EARLIER_NET).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
        loss_fn, channels_last = BCEWithLogitsLoss(), False
        ids = sorted(p.stem for p in (Path(root) / "train/images").glob("*.png"))[:images]
        loader = DataLoader(PerItemPNGDataset(Path(root), ids), batch_size=40, shuffle=True)
    else:
        recipe = RECIPES[way]
        if levers:
            recipe = replace(recipe, model=dict(recipe.model, **LEVERS_NET))
        model = build_model(recipe).to(device)
        optimizer, loss_fn = build_optimizer(recipe, model), build_loss(recipe, recipe.loss, model)
        arrays = load_tgs_split(root)
        dataset = TGSSaltDataset(
            arrays,
            ids=arrays.ids[:images],
            channels=3,
            size=recipe.size,
            side=side or recipe.side,
            augment=recipe.augment,
            strong_augment=recipe.strong_augment if strong_augment is None else strong_augment,
        )
        batch = batch_size or recipe.batch_size
        if device_batches:
            loader = DeviceBatches(dataset, batch, device)
        else:
            loader = DataLoader(dataset, batch_size=batch, shuffle=True, pin_memory=device.type == "cuda")
    setup = time.perf_counter() - started
    amp_dtype = torch.bfloat16 if bf16 else amp_dtype_for(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile_ or compile_mode:
        model = torch.compile(model, mode=None if compile_mode in (None, "default") else compile_mode)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    graph = CudaGraphStep(model, loss_fn, optimizer, amp_dtype) if cuda_graph else None
    args = (model, loader, loss_fn, optimizer, device, scaler, amp_dtype, channels_last, False, graph)
    if device.type == "cuda":  # the peak over the warm-up too: a CUDA graph takes its memory when it is recorded
        torch.cuda.reset_peak_memory_stats()
    warm = time.perf_counter()
    train_step(*args)  # warm-up (and compilation)
    warm = time.perf_counter() - warm
    if device.type == "cuda":
        torch.cuda.synchronize()
    sampler = UtilisationSampler(device)
    started = time.perf_counter()
    for _ in range(timed_epochs):
        loss = train_step(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / timed_epochs
    return dict(
        gpu_utilisation=sampler.stop(),
        graph_recorded=None if graph is None else graph.graph is not None and not graph.failed,
        way=way,
        images=len(loader.dataset),
        seconds=seconds,
        images_per_s=len(loader.dataset) / seconds,
        setup_s=setup,
        warmup_s=warm,
        loss=loss,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0,
        # what the caching allocator holds, a graph's own memory pool included
        peak_cuda_reserved_mb=torch.cuda.max_memory_reserved() / 2**20 if device.type == "cuda" else 0.0,
    )


class UtilisationSampler:
    """Reads the GPU's utilisation (NVML, through torch.cuda.utilization) every 20 ms in a thread until stop()."""

    def __init__(self, device: torch.device) -> None:
        self.readings: list[int] = []
        self.running = device.type == "cuda"
        if self.running:
            try:
                torch.cuda.utilization(device)
            except Exception:  # no NVML (the nvidia-ml-py package) here: no readings
                self.running = False
        self.thread = threading.Thread(target=self._read, args=(device,), daemon=True)
        self.thread.start()

    def _read(self, device: torch.device) -> None:
        while self.running:
            self.readings.append(torch.cuda.utilization(device))
            time.sleep(0.02)

    def stop(self) -> float | None:
        """The mean reading in percent, or None where none could be taken."""
        self.running = False
        self.thread.join()
        return sum(self.readings) / len(self.readings) if self.readings else None


@torch.no_grad()
def measure_inference(
    batch: int, side: int, channels_last: bool, device: torch.device, repeats: int, keep_memory: bool = True
) -> dict:
    """Milliseconds per tile for medium-strong's network (eval mode) at one batch size."""
    if keep_memory and device.type == "cpu":
        keep_freed_memory()
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


def _ddp_rank(rank: int, world: int, port: int, way: str, images: int, results) -> None:
    """One process of a CPU data-parallel run: 1 thread, its share of each global batch of 32 (gloo)."""
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from unet_helpers.recipes import make_loaders

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    keep_freed_memory()
    dist.init_process_group("gloo", rank=rank, world_size=world)
    recipe = RECIPES[way]
    arrays = load_tgs_split(get_tgs_salt(verbose=False).root)
    dataset = TGSSaltDataset(
        arrays, ids=arrays.ids[:images], size=recipe.size, side=recipe.side, augment=recipe.augment
    )
    loader, _ = make_loaders(recipe, dataset, dataset)
    torch.manual_seed(0)
    model = DistributedDataParallel(build_model(recipe).to(memory_format=torch.channels_last))
    args = (
        model,
        loader,
        make_loss(recipe.loss),
        build_optimizer(recipe, model),
        torch.device("cpu"),
        None,
        None,
        True,
    )
    train_step(*args)  # warm-up
    dist.barrier()
    started = time.perf_counter()
    loss = train_step(*args)
    dist.barrier()
    seconds = time.perf_counter() - started
    if rank == 0:
        results.put(dict(way=way, images=images, seconds=seconds, images_per_s=images / seconds, loss=loss,
                         peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))  # fmt: skip
    dist.destroy_process_group()


def measure_training_ddp(way: str, images: int, processes: int, device: torch.device) -> dict:
    """The same timed epoch with ``processes`` data-parallel CPU processes of 1 thread each (DDP over gloo)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the processes to meet on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_rank, args=(processes, port, way, images, results), nprocs=processes)
    return dict(results.get(), setup_s=0.0, warmup_s=0.0, peak_cuda_mb=0.0)


def child(**options) -> dict:
    """Run one measurement in a fresh process and return its result."""
    cmd = [sys.executable, __file__, "--child", json.dumps(options)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


EPOCH_TILES = 2400  # the training part of an 80/10/10 split of the 3,000 real tiles


def epoch_table(args: argparse.Namespace, device: torch.device, source) -> None:
    """--epoch: seconds per epoch of 2,400 tiles and the GPU's utilisation, for each way of feeding the network."""
    # the rows gpu_session.py sizes its training from come first: a short loan may stop this early
    ways = [
        ("batches on the device, flips", dict(device_batches=True)),
        # one CUDA graph per step: the ~300 kernels of a step launched with one call
        ("batches on the device, flips, CUDA graph", dict(device_batches=True, cuda_graph=True)),
    ]
    if args.levers:  # the flagship candidates' network
        ways += [
            ("flagship's network (levers), flips", dict(device_batches=True, levers=True)),
            ("flagship's network (levers), flips, CUDA graph", dict(device_batches=True, levers=True, cuda_graph=True)),
        ]
    ways += [
        # the same epoch in a quarter of the steps: what launch-bound steps cost (the recipe itself keeps 32)
        ("batches on the device, flips, batch 128", dict(device_batches=True, batch_size=128)),
        ("DataLoader (0 workers), flips on the CPU", dict(device_batches=False)),
        ("batches on the device, strong augmentation", dict(device_batches=True, strong_augment=True)),
        (
            "batches on the device, strong augmentation, CUDA graph",
            dict(device_batches=True, strong_augment=True, cuda_graph=True),
        ),
    ]
    if args.compile:
        ways += [
            ("batches on the device, flips, torch.compile", dict(device_batches=True, compile_mode="default")),
            (
                "the same, compile mode reduce-overhead (CUDA graphs)",
                dict(device_batches=True, compile_mode="reduce-overhead"),
            ),
        ]
    rows = []
    for name in args.recipes:
        for label, options in ways:
            try:
                r = child(kind="training", way=name, images=EPOCH_TILES, timed_epochs=3, **options)
            except subprocess.CalledProcessError as err:
                print(f"{name}, {label}: failed\n{err.stderr[-2000:]}", flush=True)
                continue
            utilisation = "n/a" if r["gpu_utilisation"] is None else f"{r['gpu_utilisation']:.0f}%"
            print(
                f"{name} ({RECIPES[name].side}x{RECIPES[name].side}), {label:54} {r['seconds']:6.2f} s per epoch of "
                f"{r['images']:,}  {r['images_per_s']:7.0f} images/s  GPU busy {utilisation:>4}  "
                f"warm-up {r['warmup_s']:5.1f} s  peak CUDA {r['peak_cuda_mb']:5.0f} MB "
                f"(reserved {r['peak_cuda_reserved_mb']:5.0f})  loss {r['loss']:.4f}"
                + ("" if r["graph_recorded"] is None else f"  graph {'recorded' if r['graph_recorded'] else 'FAILED'}"),
                flush=True,
            )
            rows.append(dict(r, recipe=name, way=label, **options))
            if args.json:  # after every row, so that an interrupted run keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                record = dict(
                    device=describe_device(device), torch=torch.__version__, real_data=not source.synthetic, rows=rows
                )
                args.json.write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640, help="images per timed epoch on the CPU (default 640)")
    parser.add_argument("--epoch", action="store_true", help="time whole epochs of 2,400 tiles (for a GPU)")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["medium-strong"], help="with --epoch")
    parser.add_argument("--json", type=Path, default=None, help="with --epoch: also write the rows to this JSON file")
    parser.add_argument("--variants", action="store_true", help="measure each CPU setting for medium-reflect")
    parser.add_argument("--inference", action="store_true", help="milliseconds per tile at batch 1 and 64")
    parser.add_argument(
        "--compile", action="store_true", help="with --variants or --epoch: also torch.compile (slow to compile)"
    )
    parser.add_argument("--levers", action="store_true", help="with --epoch: also the flagship's network")
    parser.add_argument(
        "--device-batches", action="store_true", help="also time batches drawn on the device (always on a GPU)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    device = get_device()
    if args.child:
        options = json.loads(args.child)
        kind = options.pop("kind")
        measure = {"inference": measure_inference, "ddp": measure_training_ddp}.get(kind, measure_training)
        result = measure(device=device, **options)
        print(json.dumps(result))
        return
    source = get_tgs_salt()  # make sure the data exists before the children start
    images = args.images
    print(
        f"device: {describe_device(device)}, torch {torch.__version__}; data: {source.n_train:,} tiles "
        f"({'stand-in' if source.synthetic else 'real'})"
    )
    if args.epoch:
        epoch_table(args, device, source)
        return
    if args.inference:
        side_ = RECIPES["medium-strong"].side  # the smallest side its network takes
        settings = [(False, True), (True, False), (True, True)]  # (channels_last, keep_memory)
        for channels_last, keep_memory in settings if device.type == "cpu" else [(False, False), (True, False)]:
            for batch, side in ((1, side_), (64, side_), (1, 128), (64, 128)):
                r = child(
                    kind="inference",
                    batch=batch,
                    side=side,
                    channels_last=channels_last,
                    keep_memory=keep_memory,
                    repeats=40 if batch == 1 else 2,
                )
                print(
                    f"inference medium-strong {side}x{side} batch {batch:3d} "
                    f"{'channels_last' if channels_last else 'NCHW         '} "
                    f"{'freed memory kept' if keep_memory else 'malloc defaults '}  {r['ms_per_tile']:6.2f} ms per tile"
                )
        return
    if args.variants:
        rows = [
            ("128 padded, NCHW, float32 (the trainer before)", dict(side=128, channels_last=False, keep_memory=False)),
            ("104 padded, NCHW, float32", dict(side=104, channels_last=False, keep_memory=False)),
            ("104 padded, channels_last, float32", dict(side=104, channels_last=True, keep_memory=False)),
            ("104 padded, channels_last, float32, freed memory kept (ours)", dict(side=104, channels_last=True)),
            ("104 padded, channels_last, bfloat16 autocast", dict(side=104, channels_last=True, bf16=True)),
        ]
        if args.compile:
            rows.append(("104 padded, channels_last, torch.compile", dict(side=104, channels_last=True, compile_=True)))
        if device.type == "cpu":
            rows.append(("104 padded, channels_last, 2 processes x 1 thread (DDP)", dict(kind="ddp", processes=2)))
        base = None
        for label, options in rows:
            r = child(**{"kind": "training", **options}, way="medium-reflect", images=images)
            base = base or r
            print(
                f"medium-reflect {label:62} {r['images_per_s']:6.1f} images/s  ({r['images_per_s'] / base['images_per_s']:.2f}x)"
                f"  loss after 2 epochs {r['loss']:.4f}  warm-up {r['warmup_s']:.0f} s"
            )
        return
    earlier = child(kind="training", way="earlier", images=images, keep_memory=False)
    print(
        f"{'earlier project (PNG per item, PIL, 104, batch 40)':64} {earlier['images_per_s']:6.1f} images/s  "
        f"{earlier['seconds'] * 3200 / images:6.1f} s per 3,200  peak RSS {earlier['peak_rss_mb']:5.0f} MB"
    )
    if device.type == "cpu":  # for reference only: what our allocator setting alone would give the earlier way
        r = child(kind="training", way="earlier", images=images)
        print(
            f"{'  (the same with freed memory kept, for reference)':64} {r['images_per_s']:6.1f} images/s  "
            f"{r['seconds'] * 3200 / images:6.1f} s per 3,200  peak RSS {r['peak_rss_mb']:5.0f} MB"
            f"  ratio {r['images_per_s'] / earlier['images_per_s']:.2f}x"
        )
    ways = [("1 process", dict(kind="training"))]
    if device.type == "cuda" or args.device_batches:  # the GPU path: batches drawn and augmented on the device
        ways.append(("1 process, batches on the device", dict(kind="training", device_batches=True)))
    if device.type == "cpu":  # what `python -m unet_helpers.train` does here by itself (--processes auto)
        ways.append(("2 processes x 1 thread (DDP)", dict(kind="ddp", processes=2)))
    for name in RECIPES:
        for label, options in ways:
            r = child(**options, way=name, images=images)
            print(
                f"{'ours: ' + name + f' ({RECIPES[name].side}x{RECIPES[name].side}), ' + label:64} "
                f"{r['images_per_s']:6.1f} images/s  {r['seconds'] * 3200 / images:6.1f} s per 3,200  "
                f"peak RSS {r['peak_rss_mb']:5.0f} MB{' (each)' if options['kind'] == 'ddp' else ''}"
                + (f"  peak CUDA {r['peak_cuda_mb']:5.0f} MB" if r["peak_cuda_mb"] else "")
                + f"  ratio {r['images_per_s'] / earlier['images_per_s']:.2f}x"
            )


if __name__ == "__main__":
    main()
