"""The U-Net inside diffusion models: a denoiser that generates TGS tiles and their salt masks together.

Flow matching (Lipman et al., 2023; Liu et al., 2023, "rectified flow"), the formulation of Stable Diffusion 3:

- a training pair (image, mask) is one point x0 with 2 channels in [-1, 1], 32x32 here;
- noising is a straight line to Gaussian noise: x_t = (1 - t) x0 + t noise, t in [0, 1] (t = 0 the data, t = 1 pure
  noise), in one step for any t, with no schedule of betas to choose;
- the network (``RecursiveUNet`` with a time input) is trained to predict the velocity along that line,
  v = noise - x0, with a plain mean squared error;
- sampling starts from noise at t = 1 and walks back along the predicted velocity: x_{t - dt} = x_t - dt v(x_t, t)
  (Euler steps of an ordinary differential equation: deterministic, so a seed gives the same tiles).

Training keeps an exponential moving average of the weights (EMA), which is what samples: it averages out the
noise of the last steps and gives cleaner tiles than the raw weights at no cost.

    python -m unet_helpers.diffusion train --data data/tgs-salt --out runs/denoiser --steps 8000 --threads 2
    python -m unet_helpers.diffusion train ... --resume          # continues from runs/denoiser/last.pt
    python -m unet_helpers.diffusion export --run runs/denoiser --out-dir runs/models  # denoiser.pt and its card
    (without --out-dir: into the package's weights folder, where the shipped denoiser is replaced only with --overwrite)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import TGSArrays, load_tgs_split
from .models import RecursiveUNet, count_parameters
from .utils import describe_device, half_state_dict, seed_everything, write_card

SIDE = 32  # generated tiles are 32x32: what 2 CPU cores train in an hour
# Channel 0 the image, channel 1 the mask. Four levels take 32x32 down to 4x4, so the deepest features see the
# whole tile (a salt body's outline is a whole-tile shape); 1.2M parameters, 0.25 s a step of 64 on 2 CPU cores.
DENOISER = dict(in_channels=2, out_channels=2, features=(24, 48, 96, 192), padding="same", time_dim=96, group_norm=True)


# ---------------------------------------------------------------------------
# Data: real tiles and masks, downsampled, as one 2-channel image in [-1, 1]
# ---------------------------------------------------------------------------


def tiles_to_pairs(arrays: TGSArrays, side: int = SIDE) -> torch.Tensor:
    """(N, 2, side, side) in [-1, 1]: each tile's image (area-averaged to ``side``) and its salt mask (the share of
    salt in each new pixel, then thresholded at one half, so it stays a 0/1 mask), both scaled to [-1, 1]."""
    images = torch.as_tensor(arrays.images, dtype=torch.float32)[:, None] / 255  # (N, 1, 101, 101) in [0, 1]
    masks = torch.as_tensor(arrays.masks, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(side, side), mode="area")
    masks = (F.interpolate(masks, size=(side, side), mode="area") > 0.5).float()
    return torch.cat([images, masks], dim=1) * 2 - 1


def pairs_to_tiles(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Generated (N, 2, S, S) in about [-1, 1] -> images (N, S, S) in [0, 1] and boolean masks (N, S, S)."""
    images = ((x[:, 0].clamp(-1, 1) + 1) / 2).numpy()
    return images, (x[:, 1] > 0).numpy()


# ---------------------------------------------------------------------------
# Flow matching: noising, the training loss, the sampler
# ---------------------------------------------------------------------------


def noisy(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise: the point a share t of the way from the data x0 to the noise. t is (N,)."""
    t = t.view(-1, 1, 1, 1)
    return (1 - t) * x0 + t * noise


def flow_matching_loss(model: torch.nn.Module, x0: torch.Tensor, generator: torch.Generator | None = None):
    """Mean squared error between the predicted and the true velocity noise - x0, at a uniform random t per tile."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    t = torch.rand(len(x0), generator=generator, device=x0.device)
    return F.mse_loss(model(noisy(x0, noise, t), t), noise - x0)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    n: int,
    steps: int = 50,
    seed: int = 0,
    side: int = SIDE,
    progress: bool = False,
    keep_every: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """``n`` generated pairs (n, 2, side, side): from noise at t = 1, ``steps`` Euler steps back to t = 0.

    The same seed gives the same tiles. With ``keep_every`` also returns the intermediate x_t every that many steps
    (to draw the tiles emerging from the noise).
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.in_channels, side, side, generator=generator).to(device)
    times = torch.linspace(1, 0, steps + 1)
    kept = [x.cpu()]
    for i in tqdm(range(steps), desc="sampling", disable=not progress, leave=False):
        t, t_next = times[i].item(), times[i + 1].item()
        velocity = model(x, torch.full((n,), t, device=device))
        x = x + (t_next - t) * velocity  # t_next < t: a step back towards the data
        if keep_every and (i + 1) % keep_every == 0:
            kept.append(x.cpu())
    return (x.cpu(), kept) if keep_every else x.cpu()


class EMA:
    """An exponential moving average of a model's weights: after each step, ema = decay ema + (1 - decay) w."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999) -> None:
        self.model, self.decay = copy.deepcopy(model).eval(), decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema, current in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema.is_floating_point():
                ema.lerp_(current, 1 - self.decay)
            else:
                ema.copy_(current)


def build_denoiser(config: dict | None = None) -> RecursiveUNet:
    return RecursiveUNet(**(config or DENOISER))


# ---------------------------------------------------------------------------
# Training, with checkpoints and --resume
# ---------------------------------------------------------------------------


def train_denoiser(
    pairs: torch.Tensor,
    out: Path,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = False,
    checkpoint_every: int = 250,
    config: dict | None = None,
    progress: bool = True,
    log_every: int = 250,
    snapshot_every: int = 2000,
    device: torch.device | str = "cpu",
) -> tuple[RecursiveUNet, dict]:
    """Train a denoiser on ``pairs`` (N, 2, S, S) for ``steps`` steps; returns the EMA model and the history.

    Random horizontal flips of each pair (salt bodies have no left or right). Adam with a learning rate that
    warms up over 200 steps and then stays; ``out/last.pt`` every ``checkpoint_every`` steps, so an interrupted
    run continues with ``resume=True``.
    """
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    device = torch.device(device)
    model = build_denoiser(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    ema = EMA(model)
    history: dict[str, list] = dict(step=[], loss=[], seconds=[])
    start, generator = 0, torch.Generator().manual_seed(seed)
    last = out / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        history, start = state["history"], state["step"]
        generator.set_state(state["generator"])
        print(f"resumed from {last} after step {start}", flush=True)
    elif last.is_file():
        raise FileExistsError(f"{last} already holds a run: pass --resume to continue it, or choose another --out")
    model.train()
    pairs = pairs.to(device)
    noise_generator = generator if device.type == "cpu" else None  # a CUDA run draws its noise from CUDA's own
    running, count, started = 0.0, 0, time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", disable=not progress)
    for step in bar:
        batch = pairs[torch.randint(len(pairs), (batch_size,), generator=generator).to(device)]
        flip = (torch.rand(batch_size, generator=generator) < 0.5).to(device)
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 200)
        loss = flow_matching_loss(model, batch, noise_generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        running, count = running + loss.item(), count + 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history["step"].append(step + 1)
            history["loss"].append(running / count)
            history["seconds"].append(time.perf_counter() - started)
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count, started = 0.0, 0, time.perf_counter()
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            state = dict(
                model=model.state_dict(),
                ema=ema.model.state_dict(),
                optimizer=optimizer.state_dict(),
                history=history,
                step=step + 1,
                generator=generator.get_state(),
                config=dict(config or DENOISER),
            )
            torch.save(state, out / "last.partial")
            (out / "last.partial").replace(last)  # never a half-written last.pt
        if (step + 1) % snapshot_every == 0:  # the EMA weights on the way, to see what longer training buys
            torch.save(ema.model.state_dict(), out / f"ema_step{step + 1:06d}.pt")
    return ema.model.eval(), history


# ---------------------------------------------------------------------------
# Evaluation without networks from the internet
# ---------------------------------------------------------------------------


def radial_power_spectrum(images: np.ndarray) -> np.ndarray:
    """Mean power of (N, S, S) images at each integer spatial frequency radius 1 .. S // 2 (the mean removed)."""
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fftshift(np.fft.fft2(centred), axes=(1, 2))) ** 2
    side = images.shape[-1]
    y, x = np.indices((side, side)) - side // 2
    radius = np.hypot(x, y).round().astype(int)
    mean_power = power.mean(axis=0)
    return np.array([mean_power[radius == r].mean() for r in range(1, side // 2 + 1)])


def nearest_neighbours(generated: np.ndarray, training: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each generated image (N, S, S) the index of the closest training image (M, S, S) and the distance,
    root mean squared over pixels."""
    g = torch.as_tensor(generated.reshape(len(generated), -1), dtype=torch.float32)
    t = torch.as_tensor(training.reshape(len(training), -1), dtype=torch.float32)
    distances = torch.cdist(g, t) / g.shape[1] ** 0.5
    best = distances.min(dim=1)
    return best.indices.numpy(), best.values.numpy()


def train_segmenter(
    images: np.ndarray, masks: np.ndarray, epochs: int = 30, seed: int = 0, batch_size: int = 32
) -> torch.nn.Module:
    """A small U-Net (16, 32, 64 channels, batch norm, BCE + Dice, flips) trained on (N, S, S) images in [0, 1] and
    boolean masks: the same segmenter for every training set it is compared on."""
    from .losses import make_loss
    from .models import UNet

    seed_everything(seed)
    model = UNet(1, 1, (16, 32, 64), padding="same", batch_norm=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn = make_loss("bce_dice")
    x = torch.as_tensor(images, dtype=torch.float32)[:, None]
    y = torch.as_tensor(masks, dtype=torch.float32)[:, None]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            xb, yb = x[index], y[index]
            flip = (torch.rand(len(xb), generator=generator) < 0.5).view(-1, 1, 1, 1)
            xb, yb = torch.where(flip, xb.flip(-1), xb), torch.where(flip, yb.flip(-1), yb)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model.eval()


@torch.no_grad()
def segment(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Boolean masks (N, S, S) predicted by ``model`` for images (N, S, S) in [0, 1]."""
    return (model(torch.as_tensor(images, dtype=torch.float32)[:, None])[:, 0] > 0).numpy()


# ---------------------------------------------------------------------------
# Command line: train, export
# ---------------------------------------------------------------------------


def export(
    run: Path,
    out_dir: Path | None,
    name: str = "denoiser",
    evaluation: dict | None = None,
    step: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the run's EMA weights (float16) and a card (data, steps, device, wall time, evaluation): the last
    step's, or with ``step`` the EMA snapshot of that step (``ema_step{step:06d}.pt``).

    ``out_dir`` None: the package's own weights folder. A model of that name already there is refused, not replaced,
    unless ``overwrite`` (the shipped denoiser is one).
    """
    from .pretrained import WEIGHTS_DIR

    out_dir = out_dir or WEIGHTS_DIR
    missing = [file for file in ("last.pt", "run.json") if not (run / file).is_file()]
    if missing:
        raise ValueError(
            f"{run} is not a denoiser run's folder (no {', '.join(missing)}); pass the --out folder of "
            "python -m unet_helpers.diffusion train"
        )
    existing = [path.name for path in (out_dir / f"{name}.pt", out_dir / f"{name}.json") if path.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{out_dir} already holds {' and '.join(existing)}; pass --overwrite to replace them, or export to "
            "another --out-dir"
        )
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    info = json.loads((run / "run.json").read_text())
    if step is not None and step != state["step"]:
        state["ema"] = torch.load(run / f"ema_step{step:06d}.pt", map_location="cpu", weights_only=True)
        keep = [k for k, s in enumerate(state["history"]["step"]) if s <= step]
        state["history"] = {key: [values[k] for k in keep] for key, values in state["history"].items()}
        state["step"] = step
    half = half_state_dict(state["ema"])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(half, out_dir / f"{name}.pt")
    model = build_denoiser(state["config"])
    card = dict(
        name=name,
        kind="denoiser",
        summary=f"flow-matching denoiser (RecursiveUNet with a time input), {count_parameters(model):,} parameters: "
        f"generates {info['side']}x{info['side']} TGS Salt tiles with their salt masks",
        model_config=state["config"],
        parameters=count_parameters(model),
        data=dict(
            source="the offline stand-in (synthetic tiles in Kaggle's layout)"
            if info.get("standin")
            else "Kaggle TGS Salt Identification Challenge, its training tiles",
            train_ids=info["train_ids"],
            note=info["ids_note"],
            side=info["side"],
        ),
        training=dict(
            steps=state["step"],
            batch_size=info["batch_size"],
            lr=info["lr"],
            device=info["device"],
            threads=info["threads"],
            wall_time_s=round(float(sum(state["history"]["seconds"])), 1),
            command=info["command"],
            chosen=info.get("chosen", "the EMA weights of the last step"),
        ),
        history=state["history"],
        evaluation=evaluation or {},
        weights=dict(
            file=f"{name}.pt",
            dtype="float16",
            kept_float32=[k for k, v in half.items() if v.dtype == torch.float32],  # too large for float16
            bytes=(out_dir / f"{name}.pt").stat().st_size,
        ),
    )
    return write_card(out_dir / f"{name}.json", card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_helpers.diffusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a denoiser on the shipped medium-strong model's training tiles")
    tr.add_argument("--data", type=Path, default=Path("data/tgs-salt"))
    tr.add_argument("--out", type=Path, default=Path("runs/denoiser"))
    tr.add_argument("--steps", type=int, default=8000)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument(
        "--threads", type=int, default=2, help="torch threads (set it: two runs on 2 cores each with 2 crawl)"
    )
    tr.add_argument("--resume", action="store_true")
    tr.add_argument("--no-progress", action="store_true")
    ex = sub.add_parser("export", help="write a finished run's EMA weights and card")
    ex.add_argument("--run", type=Path, default=Path("runs/denoiser"))
    ex.add_argument("--out-dir", type=Path, default=None)
    ex.add_argument("--evaluation", type=Path, default=None, help="a JSON file of evaluation numbers for the card")
    ex.add_argument("--step", type=int, default=None, help="export the EMA snapshot of this step instead of the last")
    ex.add_argument("--overwrite", action="store_true", help="replace a model of that name in --out-dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
            card = export(args.run, args.out_dir, evaluation=evaluation, step=args.step, overwrite=args.overwrite)
            print(card["summary"])
            return 0
        return _train_command(args, argv)
    except (ValueError, FileExistsError, OSError) as err:  # bad folders and files (TGSDataError is a ValueError)
        print(f"error: {err}", file=sys.stderr)
        return 2


RESUMED_OPTIONS = ("batch_size", "lr", "train_ids")  # what a resumed run must keep: its card reports them


def _train_command(args: argparse.Namespace, argv: list[str] | None) -> int:
    for name, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value < 1:
            print(f"error: {name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    from .data.source import is_standin_folder

    last, record = args.out / "last.pt", args.out / "run.json"
    if last.is_file() and not args.resume:  # before anything is written: the run's record stays its own
        raise FileExistsError(f"{last} already holds a run: pass --resume to continue it, or choose another --out")
    if args.resume and last.is_file() and not record.is_file():
        raise FileExistsError(
            f"{last} has no run.json beside it, so the settings it trained with cannot be checked: start a new run in "
            "another --out (or put the run's run.json back)"
        )
    torch.set_num_threads(args.threads)
    pairs, ids = training_pairs(args.data)
    info = dict(
        side=SIDE,
        train_ids=ids,
        ids_note="the shipped medium-strong model's training ids found in the data (its validation and held-out "
        "tiles stay unseen)",
        standin=is_standin_folder(args.data),
        batch_size=args.batch_size,
        lr=args.lr,
        device=describe_device(torch.device("cpu")),
        threads=args.threads,
        command="python -m unet_helpers.diffusion " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    if args.resume and last.is_file():
        saved = json.loads(record.read_text())
        changed = [key for key in RESUMED_OPTIONS if key in saved and saved[key] != info[key]]
        if changed:
            names = ", ".join("the data's training tiles" if key == "train_ids" else "--" + key.replace("_", "-")
                              for key in changed)  # fmt: skip
            raise ValueError(
                f"{args.out} holds a run trained with other settings ({names}); resume it with the options of "
                f"its run.json ({saved['command']}), or start a new run in another --out"
            )
        info = {**info, **saved}  # the record of how the run began stays (keys recorded only since then added)
    args.out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(info) + "\n")
    train_denoiser(
        pairs, args.out, args.steps, args.batch_size, args.lr, resume=args.resume, progress=not args.no_progress
    )
    return 0


def generation_split(arrays: TGSArrays) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids): the shipped medium-strong model's training and held-out tiles found in
    ``arrays``, so that the tiles its card scores stay unseen by the denoiser too. On the offline stand-in, whose ids
    are none of those, the first 80% and the last 10% of its tiles."""
    from .pretrained import load_card

    data = load_card("medium-strong")["data"]
    present = set(arrays.ids)
    train = [i for i in data["train_ids"] if i in present]
    held_out = [i for i in data["held_out_ids"] if i in present]
    if not train:
        n = len(arrays.ids)
        train, held_out = list(arrays.ids[: int(0.8 * n)]), list(arrays.ids[int(0.9 * n) :])
    return train, held_out


def training_pairs(data: Path) -> tuple[torch.Tensor, list[str]]:
    """The 32x32 pairs of the denoiser's training tiles in ``data`` (see ``generation_split``) and their ids."""
    arrays = load_tgs_split(data)
    ids, _ = generation_split(arrays)
    return tiles_to_pairs(arrays.subset(ids)), ids


if __name__ == "__main__":
    sys.exit(main())
