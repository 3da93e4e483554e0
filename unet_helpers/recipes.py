"""Training recipes: a model, its data options, loss, optimizer and schedule, in one plain record.

Notebook 04 compares them; the same names work everywhere a recipe is built, so a result in
the notebook can be reproduced from a script.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .data import TGSSaltDataset
from .data.device_batches import DeviceBatches
from .engine import (
    ShardSampler,
    amp_dtype_for,
    average_weights,
    eval_step,
    load_checkpoint,
    rank_and_world,
    recalibrate_batch_norm,
    save_checkpoint,
    train,
    unwrap,
)
from .losses import SaltHeadLoss, make_loss
from .models import UNet, input_side_for_output
from .utils import seed_everything


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run (plain values, so it can be saved in a checkpoint)."""

    name: str
    model: dict = field(default_factory=dict)  # UNet(**model)
    size: str = "pad"  # TGSSaltDataset size strategy
    side: int = 104  # padded side: the smallest the network takes (see fitting_side)
    augment: bool = False  # random horizontal flips
    strong_augment: bool = False  # also random zoom-in crops and brightness/contrast jitter
    loss: str = "bce"
    optimizer: str = "adam"  # "adam" or "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    scheduler: str = "plateau"  # "plateau" (ReduceLROnPlateau on the val loss), "cosine", "cosine_restarts" or "none"
    epochs: int = 30
    batch_size: int = 32
    finetune_loss: str | None = None  # a second stage with another loss (the Lovasz hinge), from the best weights
    finetune_epochs: int = 0
    finetune_lr: float = 3e-4
    cycle_epochs: int = 0  # cosine_restarts: the epochs of each cycle (0: one cycle, the whole stage)
    snapshot_average: bool = False  # average the main stage's weights at the end of every cycle (see run_recipe)

    def config(self) -> dict:
        return asdict(self)

    @property
    def has_finetune(self) -> bool:
        return bool(self.finetune_loss) and self.finetune_epochs > 0

    def schedule(self) -> str:
        """The training stages in one line, e.g. for the first lines a run prints."""
        main = f"{self.epochs} epoch{'s' * (self.epochs != 1)} of {self.loss} ({self.optimizer}, lr {self.lr:g}, {self.scheduler})"
        if not self.has_finetune:
            return f"1 stage: {main}"
        total = self.epochs + self.finetune_epochs
        return (
            f"2 stages, {total} epochs: main stage {main}, then fine-tune stage {self.finetune_epochs} "
            f"epoch{'s' * (self.finetune_epochs != 1)} of {self.finetune_loss} (lr {self.finetune_lr:g}) from the "
            "main stage's best weights"
        )

    def scaled(self, epochs: int, finetune_epochs: int | None = None) -> Recipe:
        """The same recipe with fewer (or more) epochs, e.g. for fast mode."""
        return replace(
            self, epochs=epochs, finetune_epochs=self.finetune_epochs if finetune_epochs is None else finetune_epochs
        )


def fitting_side(model: dict, tile: int = 101) -> int:
    """The smallest input side that a network built with ``UNet(**model)`` turns into a whole tile.

    Same padding: the next multiple of 2**poolings (104 for 2 or 3 poolings), so every pooling
    halves an even side and nothing is rounded. Valid padding: the smallest side whose output
    still covers the tile (144 for 3 levels: 144 -> 104). Fewer pixels is faster training: on
    2 CPU cores 104x104 trains about 2x faster than 128x128 (benchmarks/bench_training.py).
    """
    levels = len(model.get("features", (64, 128, 256, 512, 1024)))
    if model.get("padding", "valid") == "valid":
        return input_side_for_output(tile, levels)
    step = 2 ** (levels - 1)
    return -(-tile // step) * step


_SMALL = dict(in_channels=3, out_channels=1, features=(16, 32, 64))
_MEDIUM = dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128))
# One level more than _MEDIUM, 160 channels at the bottom (7x7 for a 112x112 input): its receptive field spans the
# whole tile. With 50 + 15 epochs it scored 0.753 on unseen real tiles, where _MEDIUM with 40 + 10 scored 0.737
# (1.42M parameters, 2.9 MB in float16, within the 3 MB of a shipped file).
_MEDIUM_DEEP = dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128, 160))

RECIPES: dict[str, Recipe] = {
    # The earlier project's three variants: Adam 1e-4 with weight decay, BCE, ReduceLROnPlateau.
    "small-valid": Recipe(
        "small-valid", dict(_SMALL, padding="valid"), side=fitting_side(dict(_SMALL, padding="valid"))
    ),
    "small-same": Recipe("small-same", dict(_SMALL, padding="same")),
    "medium-reflect": Recipe("medium-reflect", dict(_MEDIUM, padding="same", padding_mode="reflect")),
    # A stronger recipe: one more level, batch norm, flips, BCE + Dice, AdamW with a larger learning rate on a
    # cosine schedule, then a Lovasz-hinge fine-tune that optimises IoU, what the competition scores.
    "medium-strong": Recipe(
        "medium-strong",
        dict(_MEDIUM_DEEP, padding="same", padding_mode="reflect", batch_norm=True),
        side=fitting_side(dict(_MEDIUM_DEEP, padding="same")),
        augment=True,
        loss="bce_dice",
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        scheduler="cosine",
        # 100 main epochs instead of 50 (same seed and split) fitted the training tiles better (loss 0.14 against 0.20)
        # but scored 0.738 on the unseen tiles (validation 0.821): more training time is not what this network lacks.
        epochs=50,
        finetune_loss="lovasz",
        # 40 Lovasz epochs instead of 15 (lr 3e-4 or 6e-4, from the same main stage) scored 0.754 and 0.757 on the
        # unseen tiles, no better than these 15: the fine-tune is not what limits this network.
        finetune_epochs=15,
        finetune_lr=3e-4,
        # Trained again on one H200 GPU (same split and seed), held-out tgs_score on the 300 unseen tiles: this recipe
        # 0.747; with strong_augment and 100 + 20 epochs 0.755; inputs resized to 208x208 0.746, with strong_augment
        # and 100 + 20 epochs 0.761; the average of eight such networks' probabilities 0.769. All stay within the
        # noise of these 300 tiles (about 0.03) of this recipe's 0.753, so it is kept as it is. (The resized runs'
        # masks were resized with the legacy "nearest", half a pixel off their images; fixed since, not re-run.)
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def build_loss(recipe: Recipe, name: str, model: torch.nn.Module) -> torch.nn.Module:
    """The loss ``name``, with the salt head's deep supervision added when the network has one."""
    loss = make_loss(name)
    return SaltHeadLoss(loss, unwrap(model)) if recipe.model.get("salt_head") else loss


def build_model(recipe: Recipe) -> UNet:
    return UNet(**recipe.model)


def build_optimizer(recipe: Recipe, model: torch.nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[recipe.optimizer]
    return cls(model.parameters(), lr=lr or recipe.lr, weight_decay=recipe.weight_decay)


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, epochs: int):
    if recipe.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    if recipe.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if recipe.scheduler == "cosine_restarts":  # warm restarts: the rate falls along a cosine, then jumps back up
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(recipe.cycle_epochs or epochs, 1)
        )
    return None


def make_datasets(recipe: Recipe, arrays, train_ids, val_ids) -> tuple[TGSSaltDataset, TGSSaltDataset]:
    """Training (with the recipe's augmentation) and validation datasets from decoded arrays."""
    options = dict(channels=recipe.model.get("in_channels", 3), size=recipe.size, side=recipe.side)
    return (
        TGSSaltDataset(arrays, ids=train_ids, augment=recipe.augment, strong_augment=recipe.strong_augment, **options),
        TGSSaltDataset(arrays, ids=val_ids, **options),
    )


def make_loaders(
    recipe: Recipe,
    train_ds: TGSSaltDataset,
    val_ds: TGSSaltDataset,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    device_batches: torch.device | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Loaders whose global batches are the same for one process and for N under torchrun.

    ``recipe.batch_size`` is the global batch: each of N processes takes batch_size / N items of
    the same seeded shuffle (DistributedSampler), so N processes see exactly the batches that one
    process would. Validation tiles are split between ranks without repeats (ShardSampler).
    """
    rank, world = rank_and_world()
    if recipe.batch_size % world:
        raise ValueError(f"the batch size {recipe.batch_size} must be divisible by the {world} processes")
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    per_rank = recipe.batch_size // world
    if device_batches is not None:  # drawn and augmented on that device, no DataLoader (see DeviceBatches)
        train_loader = DeviceBatches(
            train_ds,
            per_rank,
            device_batches,
            seed,
            drop_last=len(train_ds) // world > per_rank,
            rank=rank,
            world=world,
        )
    else:
        train_loader = None
    train_loader = train_loader or DataLoader(
        train_ds,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=len(train_ds) // world > per_rank,
    )
    val_sampler = ShardSampler(val_ds) if world > 1 else None
    val_loader = DataLoader(
        val_ds, batch_size=2 * per_rank, sampler=val_sampler, num_workers=num_workers, pin_memory=pin_memory
    )
    return train_loader, val_loader


# a run's checkpoints of every stage: overwriting a run removes them, so that no stage of an earlier run outlives it
STAGE_FILES = ("last.pt", "best.pt", "averaged.pt", "finetune/last.pt", "finetune/best.pt")


def remove_earlier_run(out: Path) -> list[str]:
    """Delete the checkpoints of every stage of the run in ``out`` (and its snapshots); nothing else.

    Returns the files removed, relative to ``out``. ``run_recipe(overwrite=True)`` (the trainer's ``--overwrite``)
    calls it: an earlier run's ``finetune/best.pt``, ``averaged.pt`` or snapshots would otherwise be exported, or
    averaged into the new run, as if they were its own.
    """
    removed = [out / name for name in STAGE_FILES if (out / name).is_file()]
    removed += sorted((out / "snapshots").glob("epoch*.pt"))
    for path in removed:
        path.unlink()
    return [str(path.relative_to(out)) for path in removed]


def tiles_fingerprint(train_ds, val_ds) -> str | None:
    """The tiles a run trains and validates on, as a short string its checkpoints keep (None for other datasets).

    Counts and a hash of the ids, images and masks in order: resuming a run on other tiles (another split, a smaller
    subset, or the stand-in where the real data was) is then refused with a message, instead of silently handing back
    the earlier run's model and curves.
    """
    digest = hashlib.sha1()
    for dataset in (train_ds, val_ds):
        arrays = getattr(dataset, "arrays", None)
        if arrays is None:
            return None
        digest.update("\n".join(arrays.ids).encode() + b"\0")
        for pixels in (arrays.images, arrays.masks):
            if pixels is not None:
                digest.update(memoryview(np.ascontiguousarray(pixels)))  # no copy of the pixels
    return f"{len(train_ds)} training + {len(val_ds)} validation tiles, sha1 {digest.hexdigest()[:12]}"


def _use_snapshot_average(
    recipe, model, snapshots, run_dir, train_loader, val_loader, device, amp, channels_last, config, verbose
) -> None:
    """Average the cycle-end snapshots into ``model`` when that beats the best single epoch on validation.

    The average is written to ``run_dir/averaged.pt`` (a checkpoint like best.pt, which export considers too).
    Returns the main stage's checkpoint that ``model`` now holds and its validation tgs_score.
    """
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    paths = sorted(snapshots.glob("epoch*.pt"))
    if len(paths) < 2:
        return run_dir / "best.pt", best["best_score"]
    rank, _ = rank_and_world()
    epochs = [int(p.stem[5:]) for p in paths]  # epoch007.pt -> 7: the snapshots averaged, which a card names
    averaged = average_weights([torch.load(p, map_location="cpu", weights_only=True)["model"] for p in paths])
    unwrap(model).load_state_dict(averaged)
    amp_dtype = amp_dtype_for(device, amp)
    recalibrate_batch_norm(model, train_loader, device, 20, amp_dtype, channels_last)  # statistics for these weights
    scores = eval_step(model, val_loader, build_loss(recipe, recipe.loss, model), device, amp_dtype, channels_last)
    if verbose and rank == 0:
        print(
            f"average of {len(paths)} snapshots (epochs {', '.join(map(str, epochs))}): "
            f"val tgs {scores['tgs']:.4f} against {best['best_score']:.4f} for the best single epoch",
            flush=True,
        )
    if scores["tgs"] > best["best_score"] and rank == 0:
        save_checkpoint(
            run_dir / "averaged.pt",
            **{**best, "model": unwrap(model).state_dict(), "best_score": scores["tgs"], "config": config},
            averaged_epochs=epochs,  # not best.pt's epoch, which the rest of the checkpoint keeps
        )
    if scores["tgs"] <= best["best_score"]:
        load_checkpoint(run_dir / "best.pt", unwrap(model))
        return run_dir / "best.pt", best["best_score"]
    return run_dir / "averaged.pt", scores["tgs"]


def run_recipe(
    recipe: Recipe,
    train_ds: TGSSaltDataset,
    val_ds: TGSSaltDataset,
    run_dir: str | Path,
    device: torch.device,
    resume: bool = True,
    overwrite: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    verbose: bool = True,
    seed: int = 0,
    amp: bool = True,
    channels_last: bool = True,
    keep_memory: bool = True,
    extra_config: dict | None = None,
    on_epoch_end: Callable[[str, int, dict], None] | None = None,
    device_batches: bool | None = None,
    cuda_graph: bool = False,
) -> tuple[torch.nn.Module, dict]:
    """Train a recipe (and its fine-tune stage); return the best model and the joined history.

    Checkpoints go to ``run_dir`` (and ``run_dir/finetune``); with ``resume`` an interrupted run
    continues where it stopped, and a finished one is loaded instead of trained again. Under
    torchrun the model is wrapped in DistributedDataParallel and only rank 0 writes files.
    ``on_epoch_end(stage, epoch, history)`` is called after every epoch ("main" or "finetune").
    ``cuda_graph``: on a GPU, replay every training step as one CUDA graph (``engine.CudaGraphStep``).
    """
    run_dir = Path(run_dir)
    rank, world = rank_and_world()
    if overwrite and rank == 0:  # a new run: nothing of the earlier one's stages may be exported or averaged in
        removed = remove_earlier_run(run_dir)
        if removed and verbose:
            print(f"overwrite: removed the earlier run's {', '.join(removed)} from {run_dir}", flush=True)
    if device_batches is None:  # on a GPU the tiles live there and batches are drawn there (DeviceBatches)
        device_batches = device.type == "cuda"
    train_loader, val_loader = make_loaders(
        recipe, train_ds, val_ds, num_workers, device.type == "cuda", seed, device if device_batches else None
    )
    seed_everything(seed)  # the same initial weights for the same seed, in one process or several
    model = build_model(recipe).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1:
        if device.type == "cuda":  # batch statistics over the global batch, as in one process
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # The tiles go into the config that every checkpoint keeps: a finished run on other tiles is not resumed.
    config = dict(recipe.config(), seed=seed, tiles=tiles_fingerprint(train_ds, val_ds), **(extra_config or {}))
    # The main stage does not depend on the fine-tune settings: leaving them out of its checkpoints lets a finished
    # main stage be resumed with a longer (or another) fine-tune stage instead of being trained again.
    main_config = {k: v for k, v in config.items() if not k.startswith("finetune_")}

    snapshots = run_dir / "snapshots"  # the main stage's weights at the end of every cosine cycle
    cycle = recipe.cycle_epochs or recipe.epochs

    def callback(stage):
        def on_end(epoch, history):
            if stage == "main" and recipe.snapshot_average and epoch % cycle == 0 and rank == 0:
                save_checkpoint(snapshots / f"epoch{epoch:03d}.pt", model=unwrap(model).state_dict(), epoch=epoch)
            if on_epoch_end is not None:
                on_epoch_end(stage, epoch, history)

        return on_end

    optimizer = build_optimizer(recipe, model)
    two_stages = recipe.has_finetune
    if verbose and rank == 0 and two_stages:
        print(f"main stage: {recipe.epochs} epoch{'s' * (recipe.epochs != 1)} of {recipe.loss}", flush=True)
    history = train(
        model,
        train_loader,
        val_loader,
        build_loss(recipe, recipe.loss, model),
        optimizer,
        recipe.epochs,
        scheduler=build_scheduler(recipe, optimizer, recipe.epochs),
        device=device,
        checkpoint_dir=run_dir,
        resume=resume,
        overwrite=overwrite,
        seed=seed,
        amp=amp,
        channels_last=channels_last,
        keep_memory=keep_memory,
        config=main_config,
        progress=progress,
        verbose=verbose,
        on_epoch_end=callback("main"),
        stage="main" if two_stages else "",
        cuda_graph=cuda_graph,
    )
    load_checkpoint(run_dir / "best.pt", unwrap(model))
    main_best, main_score = run_dir / "best.pt", max(history["val_tgs"])
    if recipe.snapshot_average:  # the average of the cycle ends, where it beats the best single epoch
        main_best, main_score = _use_snapshot_average(
            recipe,
            model,
            snapshots,
            run_dir,
            train_loader,
            val_loader,
            device,
            amp,
            channels_last,
            main_config,
            verbose,
        )
    if two_stages:
        if verbose and rank == 0:
            print(
                f"fine-tune stage: {recipe.finetune_epochs} epoch{'s' * (recipe.finetune_epochs != 1)} of "
                f"{recipe.finetune_loss}, "
                "from the main stage's best weights",
                flush=True,
            )
        optimizer = build_optimizer(recipe, model, lr=recipe.finetune_lr)
        stage = train(
            model,
            train_loader,
            val_loader,
            build_loss(recipe, recipe.finetune_loss, model),
            optimizer,
            recipe.finetune_epochs,
            # one cosine over the whole fine-tune stage: restarts belong to the main stage's long schedule
            scheduler=build_scheduler(replace(recipe, cycle_epochs=0), optimizer, recipe.finetune_epochs),
            device=device,
            checkpoint_dir=run_dir / "finetune",
            resume=resume,
            overwrite=overwrite,
            seed=seed,
            amp=amp,
            channels_last=channels_last,
            keep_memory=keep_memory,
            config=dict(config, stage="finetune"),
            progress=progress,
            verbose=verbose,
            on_epoch_end=callback("finetune"),
            stage="fine-tune",
            cuda_graph=cuda_graph,
        )
        offset = len(history["epoch"])
        history = {k: history[k] + ([e + offset for e in stage[k]] if k == "epoch" else stage[k]) for k in history}
        if max(stage["val_tgs"]) > main_score:
            load_checkpoint(run_dir / "finetune" / "best.pt", unwrap(model))
        else:  # the main stage's best: its best epoch, or the snapshots' average where that won
            load_checkpoint(main_best, unwrap(model))
    return unwrap(model), history
