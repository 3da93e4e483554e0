"""Small helpers every notebook needs: the device, seeding and the fast-mode switch."""

from __future__ import annotations

import datetime
import json
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

FAST_ENV = "UNET_FAST"
RUNS_ENV = "UNET_RUNS_DIR"


def fast_mode() -> bool:
    """True when ``UNET_FAST=1``: tests shrink data and epochs; unset, notebooks do the real run."""
    return os.environ.get(FAST_ENV, "0").strip().lower() in ("1", "true", "yes")


def runs_dir(name: str = "") -> Path:
    """Where the notebooks keep checkpoints: ``$UNET_RUNS_DIR/name`` (the Colab setup cell sets it, on Google
    Drive if asked), else ``../runs/name``, the git-ignored ``runs/`` beside ``notebooks/``."""
    return Path(os.environ.get(RUNS_ENV) or "../runs") / name


def get_device() -> torch.device:
    """The GPU when there is one (CUDA, then Apple's MPS), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A one-line description of what produced a notebook's outputs, e.g. 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads != 1 else ''}, {platform.machine()})"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def print_table(rows: list[dict], floats: str = ".3g") -> None:
    """Print a list of dicts as an aligned text table (one column per key of the first row)."""
    if not rows:
        return
    columns = list(rows[0])
    cell = lambda v: format(v, floats) if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def write_card(path: str | Path, card: dict) -> dict:
    """Write a shipped model's card as JSON, ending with the torch and Python versions and today's date."""
    card = dict(card, torch=torch.__version__, python=platform.python_version(), date=datetime.date.today().isoformat())
    Path(path).write_text(json.dumps(card, indent=1) + "\n")
    return card


def half_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict to ship: float16 (half the bytes) for every floating tensor float16 can hold.

    A tensor with a value beyond float16's largest (65,504) stays float32: float16 would store it as inf.
    Batch norm's running variance is the one that gets there (a channel whose activations have a standard
    deviation of a few hundred), and an inf there turns the channel's output into a constant, its bias.
    """
    largest = torch.finfo(torch.float16).max

    def fits(value: torch.Tensor) -> bool:
        return value.is_floating_point() and (value.numel() == 0 or bool(value.abs().max() <= largest))

    return {key: value.half() if fits(value) else value for key, value in state.items()}
