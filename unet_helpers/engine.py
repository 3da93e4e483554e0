"""Training and evaluation: ``train_step``, ``eval_step``, ``predict`` and ``train``.

``train`` runs epochs of ``train_step`` and ``eval_step``, steps any torch LR scheduler, and
writes a checkpoint after every epoch (``last.pt``: model, optimizer, scheduler, grad scaler,
history, config and random-number state) plus ``best.pt`` whenever the validation
``tgs_score`` improves. After a Colab disconnect, ``train(..., resume=True)`` continues from
``last.pt`` and produces the same history as a run that was never interrupted.

On CUDA it trains in mixed precision (bfloat16 on Ampere and newer GPUs, else float16 with a
gradient scaler). On the CPU it trains in float32: bfloat16 autocast was about 4x slower on the
2-core Xeon we measured, a virtual CPU that exposed neither avx512_bf16 nor AMX (20.7 against 78.5
images/s, benchmarks/bench_training.py --variants). On a 2-core AMD EPYC that exposes avx512_bf16 it was
1.5x faster (98.2 against 65.0, the same loss to 3 digits); choosing it by the CPU's features is not built yet.
On both it uses the channels_last memory format (1.3x faster on that CPU, the same numbers).
On a Linux CPU it also asks the C allocator to keep the memory that each step frees for the
next step (``keep_freed_memory``: 1.2x on that CPU, the same numbers).
"""

from __future__ import annotations

import ctypes
import os
import platform
import random
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler
from tqdm.auto import tqdm

from . import metrics
from .models import center_crop
from .utils import seed_everything

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_tgs", "val_iou", "val_dice", "lr", "seconds")


# Config keys that checkpoints carry only since a later version; an older checkpoint without one still resumes
# ("tiles": run_recipe's fingerprint of the training and validation tiles; the trainer checks its split.json too).
RECORDED_SINCE = ("tiles",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file and what to do."""


# ---------------------------------------------------------------------------
# Several processes (torchrun): who am I, and adding numbers up over all ranks
# ---------------------------------------------------------------------------


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless torch.distributed was initialised (e.g. under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over all ranks (a no-op in a single process)."""
    if rank_and_world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class ShardSampler(Sampler[int]):
    """Items rank, rank + world, rank + 2 world, ... in order: each validation tile on exactly one rank.

    Unlike DistributedSampler, it never repeats items to even out the shards, so metrics summed
    over ranks are exactly the metrics of the whole validation set.
    """

    def __init__(self, dataset, rank: int | None = None, world: int | None = None) -> None:
        default_rank, default_world = rank_and_world()
        self.n, self.rank = len(dataset), default_rank if rank is None else rank
        self.world = default_world if world is None else world

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or torch.compile) wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


# ---------------------------------------------------------------------------
# Precision and memory format
# ---------------------------------------------------------------------------


def amp_dtype_for(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """bfloat16 on Ampere or newer GPUs, float16 on older ones (Colab's T4), None (float32) on the CPU.

    We ask for the hardware (compute capability 8.0 or more) instead of calling
    ``torch.cuda.is_bf16_supported()``, which also answers True on a T4, where bfloat16 is
    only emulated: slow, and without cuDNN convolutions.
    """
    if not amp or device.type != "cuda":
        return None
    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep the memory PyTorch frees, so that the next training step reuses it.

    A training step allocates and frees the same large activation maps every time (a 32 x 16 x
    104 x 104 float map is 22 MB). By default glibc serves blocks that large with mmap() and
    hands them back to the kernel when freed, so every step page-faults all of its activation
    memory in again, zero-filled. Serving them from the heap and never trimming it keeps those
    pages for reuse: about 1.2x more training images per second on 2 CPU cores, the same
    numbers, the same peak memory (benchmarks/bench_training.py --variants). The memory is
    returned when the process ends. Returns False where the C library is not glibc (macOS,
    Windows), and nothing changes there. It changes the whole process (a notebook's kernel too).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return all(
        libc.mallopt(option, value) == 1
        for option, value in (
            (_M_MMAP_THRESHOLD, 2**30),  # blocks up to 1 GiB come from the heap, not from mmap()
            (_M_TRIM_THRESHOLD, 2**31 - 1),  # never give the heap's free top back to the kernel
            (_M_TOP_PAD, 2**30),  # grow the heap 1 GiB at a time (address space; pages count when touched)
        )
    )


def match_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Centre-crop the target to the output's side (a valid-padding U-Net's output is smaller)."""
    if target.shape[-2:] == logits.shape[-2:]:
        return target
    return center_crop(target, *logits.shape[-2:])


# ---------------------------------------------------------------------------
# One epoch
# ---------------------------------------------------------------------------


def one_step(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    autocast_cache: bool = True,
) -> torch.Tensor:
    """One optimizer step on one batch: forward, loss, backward, update; returns the loss (a tensor, no wait).

    images (B, C, H, W) and masks (B, 1, H, W) already on the model's device. ``autocast_cache`` False is what a
    CUDA graph needs (autocast's cache of cast weights would outlive the recording).
    """
    with torch.autocast(
        images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None, cache_enabled=autocast_cache
    ):
        logits = model(images)
        loss = loss_fn(logits.float(), match_target(masks, logits))
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # float16 needs loss scaling so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def train_step(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    graph: CudaGraphStep | None = None,
) -> float:
    """One pass over ``loader`` updating ``model``; returns the mean training loss per image.

    ``graph``: a ``CudaGraphStep`` of this model, loss and optimizer, which replays each step as one CUDA graph.
    """
    model.train()
    total, count = torch.zeros((), device=device), 0  # summed on the device: no wait for the GPU at every step
    for images, masks in tqdm(loader, desc="train", leave=False, disable=not progress):
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if graph is not None:
            loss = graph(images, masks)
        else:
            loss = one_step(model, images, masks, loss_fn, optimizer, scaler, amp_dtype)
        total += loss * len(images)
        count += len(images)
    total, count = all_sum([total.item(), count], device)
    return total / max(count, 1)


class CudaGraphStep:
    """A training step (forward, loss, backward, optimizer update) recorded once as a CUDA graph, then replayed.

    Why: a GPU runs work as *kernels* (small GPU programs: one convolution, one addition, one optimizer update of a
    few tensors), each launched by the CPU. One step of medium-strong on 32 tiles is about 300 of them, and launching
    them one by one from Python (15 ms a step on an H200) takes longer than the GPU needs to run them: the GPU idled
    60% of an epoch. A CUDA graph records the kernels of one step and launches all of them with one call.

    What the recording needs, and how this class meets it:

    - the same memory every step: each batch is copied into the same input tensors, the loss lands in the same
      output tensor, and the gradients stay where the recording put them;
    - nothing inside the step may make the CPU wait to read a value from the GPU: the optimizer (Adam or AdamW)
      runs with ``capturable=True`` (its step counts stay on the GPU), and its learning rate is a tensor on the GPU,
      refreshed from ``param_groups`` before every replay, so that a scheduler still sets it. Its other settings
      (betas, weight decay) are fixed at the recording: a scheduler of momentum would not reach the replays. float16
      needs a GradScaler, which reads the gradients' overflow flag on the CPU at every step: only bfloat16 (Ampere
      and newer) or float32 steps are recorded;
    - a warm-up: the first ``warmup`` steps run normally on a side stream (cuDNN picks its algorithms, the
      optimizer creates its state), then the next step of the same batch shape is recorded;
    - one batch shape: a batch of another size (an epoch's last) runs as a normal step.

    If the recording fails (an operation in the model or the loss that reads a GPU value on the CPU), it says so
    once and every step runs normally: the numbers are the same, only slower.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        amp_dtype: torch.dtype | None = None,
        warmup: int = 3,
    ) -> None:
        why_not = self.unsupported(optimizer, amp_dtype)
        if why_not:
            raise ValueError(f"a CUDA graph step is not possible here: {why_not}")
        self.model, self.loss_fn, self.optimizer, self.amp_dtype = model, loss_fn, optimizer, amp_dtype
        self.warmup, self.steps, self.shape = warmup, 0, None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.device = next(model.parameters()).device
        self._set_capturable(True)

    def _set_capturable(self, on: bool) -> None:
        """Adam's step counts live on the GPU when capturable (no reading them back), on the CPU otherwise."""
        for group in self.optimizer.param_groups:
            group["capturable"] = on
        for state in self.optimizer.state.values():  # a resumed optimizer holds them on the CPU
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(self.device if on else "cpu", torch.float32)

    @staticmethod
    def unsupported(optimizer: torch.optim.Optimizer, amp_dtype: torch.dtype | None) -> str:
        """Why a step with this optimizer and precision cannot be recorded ('' when it can)."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            return f"the step of {type(optimizer).__name__} is not recorded here (Adam and AdamW are)"
        if amp_dtype == torch.float16:
            return (
                "float16 needs a GradScaler, which reads a GPU value on the CPU at every step (a T4); bfloat16 does not"
            )
        if rank_and_world()[1] > 1:
            return "several processes (DistributedDataParallel) are not recorded here"
        if not params or params[0].device.type != "cuda":
            return "CUDA graphs need a CUDA device"
        return ""

    def _eager(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # "capturable=True but step() is running without CUDA graph capture"
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            return one_step(self.model, images, masks, self.loss_fn, self.optimizer, None, self.amp_dtype, False)

    def _record(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.static_images, self.static_masks = images.clone(), masks.clone()  # clone keeps channels_last
        groups = self.optimizer.param_groups
        self.lrs = [torch.tensor(float(group["lr"]), device=images.device) for group in groups]
        rates = [group["lr"] for group in groups]
        graph = torch.cuda.CUDAGraph()
        try:
            for group, lr in zip(groups, self.lrs):
                group["lr"] = lr  # the recording reads the rate from this tensor's memory
            self.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated inside the recording
            with torch.cuda.graph(graph):
                self.static_loss = one_step(
                    self.model, self.static_images, self.static_masks, self.loss_fn, self.optimizer,
                    None, self.amp_dtype, autocast_cache=False,
                )  # fmt: skip
        finally:
            for group, rate in zip(groups, rates):
                group["lr"] = rate  # the outside world (schedulers, checkpoints) keeps seeing a number
        self.graph = graph

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One step on this batch; returns its loss (a tensor that the next step overwrites: use it at once)."""
        with torch.cuda.device(self.device):  # streams and graphs belong to the model's GPU, not the current one
            return self._step(images, masks)

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        self.shape = self.shape or images.shape  # the shape of the first batch is the one recorded
        if self.failed or images.shape != self.shape:
            return self._eager(images, masks)
        if self.graph is None and self.steps < self.warmup:
            self.steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self._eager(images, masks)
            torch.cuda.current_stream().wait_stream(side)
            loss.record_stream(torch.cuda.current_stream())  # made on the side stream, read on this one
            return loss
        if self.graph is None:
            try:
                self._record(images, masks)
            except RuntimeError as err:
                self.failed = True
                print(f"could not record the training step as a CUDA graph; training without one ({err})", flush=True)
                torch.cuda.synchronize()
                self._set_capturable(False)  # the normal update is faster without it
                return self._eager(images, masks)
        self.static_images.copy_(images)
        self.static_masks.copy_(masks)
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])
        self.graph.replay()
        return self.static_loss


@torch.no_grad()
def recalibrate_batch_norm(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    batches: int = 20,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> None:
    """Recompute every BatchNorm's running mean and variance exactly, over ``batches`` training batches.

    BatchNorm's running statistics are a moving average taken while the weights change. With a
    high learning rate they lag behind the weights, and the network in eval mode (which uses
    them) can be far worse than in train mode. Averaging fresh statistics with frozen weights
    ("precise BN", Wu & Johnson 2021) removes that lag. A no-op for networks without BatchNorm.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative (equal-weight) average over the batches below
    model.train()
    for k, (images, _) in enumerate(loader):
        if k == batches:
            break
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        if rank_and_world()[1] > 1:  # the same statistics on every rank
            for buffer in (m.running_mean, m.running_var):
                dist.all_reduce(buffer)
                buffer /= rank_and_world()[1]


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    hflip_tta: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Salt probabilities for every item of ``loader``, in order, at the original tile size.

    Returns (N, 1, H, W) float32 on the CPU. The dataset's ``restore`` (if it has one) crops
    padding or undoes resizing. With ``hflip_tta`` the prediction of the mirrored image is
    mirrored back and averaged in (horizontal-flip test-time augmentation).
    """
    model.eval()
    restore = getattr(loader.dataset, "restore", lambda x: x)
    out = []
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
        images = batch[0].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.sigmoid(model(images).float())
            if hflip_tta:
                probs = (probs + torch.sigmoid(model(images.flip(-1)).float()).flip(-1)) / 2
        out.append(restore(probs).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def eval_step(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    threshold: float = 0.5,
    progress: bool = False,
) -> dict[str, float]:
    """Validation loss and metrics: tgs_score, IoU and Dice on the original 101x101 masks.

    ``loader`` must not shuffle: predictions are matched to the dataset's masks in order. Under
    torchrun give it a :class:`ShardSampler`; the sums are then added up over all ranks.
    """
    if not isinstance(loader.sampler, (SequentialSampler, ShardSampler)):
        raise ValueError("eval_step needs a loader with shuffle=False, so predictions line up with the masks")
    model.eval()
    restore = getattr(loader.dataset, "restore", lambda x: x)
    arrays = getattr(loader.dataset, "arrays", None)
    use_originals = isinstance(loader.sampler, SequentialSampler) and arrays is not None and arrays.masks is not None
    sums = np.zeros(5)  # loss * n, n, tgs, iou, dice
    seen = 0
    for images, masks in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images).float()
            target = match_target(masks, logits)
            loss = loss_fn(logits, target)
        pred = (restore(torch.sigmoid(logits)) > threshold).cpu()
        if use_originals:  # the original masks, untouched by padding or resizing
            truth = arrays.masks[seen : seen + len(images)]
        else:
            truth = restore(target).cpu() > 0.5
        seen += len(images)
        sums += [
            loss.item() * len(images),
            len(images),
            metrics.tgs_score_per_image(pred, truth).sum(),
            metrics.iou_per_image(pred, truth).sum(),
            metrics.dice_per_image(pred, truth).sum(),
        ]
    loss_sum, n, tgs, iou, dice = all_sum(sums.tolist(), device)
    n = max(n, 1)
    return {"loss": loss_sum / n, "tgs": tgs / n, "iou": iou / n, "dice": dice / n}


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def _rng_state() -> dict:
    """Every random-number state that shapes training, as plain tensors and lists (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def _set_rng_state(state: dict) -> None:
    # A checkpoint loaded with map_location="cuda" holds these tensors on the GPU; RNG states must be CPU byte tensors.
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))


def portable_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` without the CUDA graph's ``capturable`` setting, so a CPU (or a GPU without the
    graph) resumes from it as from any checkpoint.

    ``CudaGraphStep`` sets it again where a step is recorded.
    """
    state = optimizer.state_dict()
    for group in state["param_groups"]:  # copies: the optimizer itself keeps its setting
        if "capturable" in group:
            group["capturable"] = False
    # Adam's step counts back on the CPU, where an optimizer that is not capturable keeps them (on the GPU it would
    # read each one back at every step); new dicts, since state_dict() hands out the optimizer's own
    state["state"] = {
        key: {**value, "step": value["step"].cpu()} if torch.is_tensor(value.get("step")) else value
        for key, value in state["state"].items()
    }
    return state


def average_weights(state_dicts: list[dict]) -> dict:
    """The mean of several snapshots of one network, tensor by tensor (BatchNorm's counters from the last one).

    Averaging the weights of snapshots taken at the ends of cosine cycles (snapshot or "weight" averaging,
    Izmailov et al., 2018) gives one network near the centre of the region the snapshots explored. Its
    BatchNorm statistics no longer match its weights: recompute them (``recalibrate_batch_norm``) before use.
    """
    if not state_dicts:
        raise ValueError("no snapshots to average")
    return {
        key: torch.stack([sd[key].float() for sd in state_dicts]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in state_dicts[-1].items()
    }


def save_checkpoint(path: str | Path, **content) -> None:
    """Write a checkpoint atomically: an interruption while saving never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(content, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    optimizer=None,
    scheduler=None,
    scaler=None,
    config: dict | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Load a checkpoint (with ``weights_only=True``) and restore whatever objects are given.

    Raises ``CheckpointError`` naming the file when it is missing, unreadable (truncated,
    not a checkpoint) or from another configuration or network.
    """
    path = Path(path)
    _check_checkpoint_path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            "it may be truncated or not a checkpoint: use another file or train again"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    saved_model_config = checkpoint.get("model_config")
    if (
        model is not None
        and saved_model_config is not None
        and hasattr(model, "config")
        and model.config() != saved_model_config
    ):
        raise CheckpointError(
            f"{path} was saved for UNet({_fmt(saved_model_config)}) but the model is UNet({_fmt(model.config())}); "
            "build the model from the checkpoint's 'model_config' (on the command line: resume with the run's own "
            "options, in the config.json beside it) or use a matching checkpoint"
        )
    saved_config = checkpoint.get("config")
    if config is not None and saved_config is not None:
        # Main stages saved before their configs left out the fine-tune settings (which they never used) still resume.
        saved_config = {k: v for k, v in saved_config.items() if k in config or not k.startswith("finetune_")}
        # Options added since the checkpoint was written were off then: a new option left off still resumes it.
        off = {k: v for k, v in config.items() if k not in saved_config and (v is False or v is None or v == 0)}
        # What checkpoints record only since then (the tiles, RECORDED_SINCE) cannot be compared: taken as the same.
        since = {k: config[k] for k in RECORDED_SINCE if k in config and k not in saved_config}
        saved_config = {**off, **since, **saved_config}
    if config is not None and saved_config not in (None, config):
        changed = sorted(k for k in set(config) | set(saved_config) if config.get(k) != saved_config.get(k))
        differences = "; ".join(f"{k}, {saved_config.get(k)!r} there and {config.get(k)!r} now" for k in changed)
        raise CheckpointError(
            f"{path} belongs to a run with another configuration (differs in: {differences}); "
            "resume with the same settings, or start a new run in another folder"
        )
    try:
        if model is not None:
            model.load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler") is not None:
            scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} does not fit this model or optimizer: {str(err).splitlines()[0][:200]}"
        ) from None
    return checkpoint


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the U-Net a checkpoint was saved from and load its weights; returns (model, checkpoint)."""
    from .models import UNet  # local import: models does not need the engine

    path = Path(path)
    _check_checkpoint_path(path)
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
        if "model_config" not in saved and path.with_suffix(".json").is_file():  # a card's weights, not a checkpoint
            raise CheckpointError(
                f"{path} holds the weights of a model card ({path.with_suffix('.json').name} beside it), not a "
                "training checkpoint; load it by its card: --pretrained NAME for a shipped model, or "
                "pretrained.load_model(card, weights) for one you exported"
            )
        model = UNet(**saved["model_config"])
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint of this project ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
            "it may be truncated or from another program: use another file or train again"
        ) from None
    return model, load_checkpoint(path, model, map_location=map_location)


def _check_checkpoint_path(path: Path) -> None:
    """A checkpoint path that is not a file gets an error that says what to pass instead."""
    if path.is_dir():
        found = [p.relative_to(path) for p in (path / "best.pt", path / "last.pt", path / "finetune" / "best.pt")]
        found = [p for p in found if (path / p).is_file()]
        hint = f"pass {path / found[0]}" if found else "it holds no best.pt or last.pt: train first"
        raise CheckpointError(f"checkpoint {path} is a folder; {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train first, or check the path")


def _fmt(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    scheduler=None,
    device: torch.device | str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    amp: bool = True,
    channels_last: bool = True,
    keep_memory: bool = True,
    config: dict | None = None,
    progress: bool = True,
    verbose: bool = True,
    precise_bn_batches: int = 20,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    stage: str = "",
    cuda_graph: bool = False,
) -> dict[str, list]:
    """Train for ``epochs`` epochs and return the history (one list entry per epoch for HISTORY_KEYS).

    Args:
        scheduler: any torch LR scheduler; ReduceLROnPlateau is stepped with the validation loss.
        checkpoint_dir: where ``last.pt`` (every epoch) and ``best.pt`` (best validation tgs) go.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists (same config required).
        overwrite: start again even though ``checkpoint_dir`` already holds a run.
        amp: mixed precision on CUDA (see ``amp_dtype_for``); False trains in float32 everywhere.
        channels_last: keep activations as (N, H, W, C) in memory, which oneDNN (CPU) and cuDNN
            (tensor cores) convolve faster; False keeps PyTorch's default (N, C, H, W).
        keep_memory: on the CPU, call ``keep_freed_memory`` first (Linux with glibc); False
            leaves the C allocator as it is.
        config: plain settings saved with the checkpoints and compared on resume.
        precise_bn_batches: after each epoch, recompute BatchNorm statistics over this many training
            batches (see ``recalibrate_batch_norm``); 0 keeps the moving averages.
        on_epoch_end: called as ``on_epoch_end(epoch, history)`` after each epoch's checkpoint.
        stage: the name of this stage of a longer schedule ("main", "fine-tune"), in front of each epoch line.
        cuda_graph: on a GPU, replay each training step as one CUDA graph (``CudaGraphStep``); where that is not
            possible (float16, SGD, several processes, the CPU) it says why and trains as usual.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rank, world = rank_and_world()
    is_main = rank == 0
    progress, verbose = progress and is_main, verbose and is_main  # one process talks and writes
    amp_dtype = amp_dtype_for(device, amp)
    if keep_memory and device.type == "cpu":
        keep_freed_memory()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    config = dict(config or {})
    model_config = unwrap(model).config() if hasattr(unwrap(model), "config") else None

    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start_epoch, best = 1, -1.0
    last_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if last_path is not None and last_path.exists() and resume:
        checkpoint = load_checkpoint(
            last_path, unwrap(model), optimizer, scheduler, scaler, config=config, map_location=device
        )
        history, best = checkpoint["history"], checkpoint["best_score"]
        start_epoch = checkpoint["epoch"] + 1
        if world == 1:
            _set_rng_state(checkpoint["rng"])  # exact continuation of a single-process run
        if verbose:
            print(f"resumed from {last_path} after epoch {checkpoint['epoch']}")
    else:
        if last_path is not None and last_path.exists() and not overwrite:
            raise CheckpointError(
                f"{last_path} already holds a run; pass resume=True to continue it, overwrite=True to start "
                "again, or choose another checkpoint_dir"
            )
        seed_everything(seed)
    if checkpoint_dir is not None and world > 1:
        dist.barrier()  # every rank has read the old checkpoint before rank 0 writes a new one
    graph = None
    if cuda_graph:
        why_not = CudaGraphStep.unsupported(optimizer, amp_dtype)
        if why_not and verbose:
            print(f"no CUDA graph: {why_not}; training as usual")
        graph = None if why_not else CudaGraphStep(unwrap(model), loss_fn, optimizer, amp_dtype)

    bar = tqdm(
        range(start_epoch, epochs + 1),
        desc=f"{stage} epochs" if stage else "epochs",
        disable=not progress,
        initial=start_epoch - 1,
        total=epochs,
    )
    for epoch in bar:
        started = time.perf_counter()
        if world > 1:
            # Each rank draws its own augmentations; seeding per epoch keeps a resume with another
            # number of processes well defined.
            seed_everything(seed + 1000 * epoch + rank)
        if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
            train_loader.sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
        elif hasattr(train_loader, "set_epoch"):  # DeviceBatches: the same, on the device
            train_loader.set_epoch(epoch)
        train_loss = train_step(
            model, train_loader, loss_fn, optimizer, device, scaler, amp_dtype, channels_last, progress, graph
        )
        recalibrate_batch_norm(model, train_loader, device, precise_bn_batches, amp_dtype, channels_last)
        val = eval_step(model, val_loader, loss_fn, device, amp_dtype, channels_last, progress=progress)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val["loss"])
            else:
                scheduler.step()
        row = dict(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val["loss"],
            val_tgs=val["tgs"],
            val_iou=val["iou"],
            val_dice=val["dice"],
            lr=lr,
            seconds=time.perf_counter() - started,
        )
        for key in HISTORY_KEYS:
            history[key].append(row[key])
        improved = val["tgs"] > best
        best = max(best, val["tgs"])
        if checkpoint_dir is not None and is_main:
            content = dict(
                epoch=epoch,
                model=unwrap(model).state_dict(),
                optimizer=portable_state(optimizer),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                scaler=scaler.state_dict() if scaler is not None else None,
                history=history,
                config=config,
                model_config=model_config,
                best_score=best,
                rng=_rng_state(),
            )
            save_checkpoint(last_path, **content)
            if improved:
                save_checkpoint(Path(checkpoint_dir) / "best.pt", **content)
        if checkpoint_dir is not None and world > 1:
            dist.barrier()
        bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val['loss']:.3f}", tgs=f"{val['tgs']:.3f}")
        if verbose:
            tqdm.write(
                f"{stage + ' ' if stage else ''}epoch {epoch:>3}/{epochs}  train loss {train_loss:.4f}  val loss {val['loss']:.4f}  "
                f"val tgs {val['tgs']:.4f}  iou {val['iou']:.4f}  lr {lr:.2e}  {row['seconds']:.1f}s"
                + ("  *best" if improved else "")
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history
