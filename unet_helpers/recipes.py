"""Training recipes: a model, its data options, loss, optimizer and schedule, in one plain record.

Notebook 04 compares them; the same names work everywhere a recipe is built, so a result in
the notebook can be reproduced from a script.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .data import TGSSaltDataset
from .engine import load_checkpoint, train
from .losses import make_loss
from .models import UNet


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run (plain values, so it can be saved in a checkpoint)."""

    name: str
    model: dict = field(default_factory=dict)  # UNet(**model)
    size: str = "pad"           # TGSSaltDataset size strategy
    side: int = 128             # padded side (144 for the valid-padding network: output 104 covers 101)
    augment: bool = False       # random horizontal flips
    loss: str = "bce"
    optimizer: str = "adam"     # "adam" or "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    scheduler: str = "plateau"  # "plateau" (ReduceLROnPlateau on the val loss), "cosine" or "none"
    epochs: int = 30
    batch_size: int = 32
    finetune_loss: str | None = None  # a second stage with another loss (the Lovasz hinge), from the best weights
    finetune_epochs: int = 0
    finetune_lr: float = 3e-4

    def config(self) -> dict:
        return asdict(self)

    def scaled(self, epochs: int, finetune_epochs: int | None = None) -> "Recipe":
        """The same recipe with fewer (or more) epochs, e.g. for fast mode."""
        return replace(self, epochs=epochs, finetune_epochs=self.finetune_epochs if finetune_epochs is None else finetune_epochs)


_SMALL = dict(in_channels=3, out_channels=1, features=(16, 32, 64))
_MEDIUM = dict(in_channels=3, out_channels=1, features=(16, 32, 64, 128))

RECIPES: dict[str, Recipe] = {
    # The earlier project's three variants: Adam 1e-4 with weight decay, BCE, ReduceLROnPlateau.
    "small-valid": Recipe("small-valid", dict(_SMALL, padding="valid"), side=144),
    "small-same": Recipe("small-same", dict(_SMALL, padding="same")),
    "medium-reflect": Recipe("medium-reflect", dict(_MEDIUM, padding="same", padding_mode="reflect")),
    # A stronger recipe: batch norm, flips, BCE + Dice, AdamW with a larger learning rate on a cosine
    # schedule, then a short Lovasz-hinge fine-tune that optimises IoU, what the competition scores.
    "medium-strong": Recipe(
        "medium-strong", dict(_MEDIUM, padding="same", padding_mode="reflect", batch_norm=True), augment=True,
        loss="bce_dice", optimizer="adamw", lr=3e-3, weight_decay=1e-4, scheduler="cosine", epochs=40,
        finetune_loss="lovasz", finetune_epochs=10, finetune_lr=3e-4,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


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
    return None


def make_datasets(recipe: Recipe, arrays, train_ids, val_ids) -> tuple[TGSSaltDataset, TGSSaltDataset]:
    """Training (with the recipe's augmentation) and validation datasets from decoded arrays."""
    options = dict(channels=recipe.model.get("in_channels", 3), size=recipe.size, side=recipe.side)
    return (TGSSaltDataset(arrays, ids=train_ids, augment=recipe.augment, **options),
            TGSSaltDataset(arrays, ids=val_ids, **options))


def run_recipe(recipe: Recipe, train_ds: TGSSaltDataset, val_ds: TGSSaltDataset, run_dir: str | Path,
               device: torch.device, resume: bool = True, overwrite: bool = False, num_workers: int = 0,
               progress: bool = True, verbose: bool = True) -> tuple[UNet, dict]:
    """Train a recipe (and its fine-tune stage); return the best model and the joined history.

    Checkpoints go to ``run_dir`` (and ``run_dir/finetune``); with ``resume`` an interrupted run
    continues where it stopped, and a finished one is loaded instead of trained again.
    """
    run_dir = Path(run_dir)
    generator = torch.Generator().manual_seed(0)
    train_loader = DataLoader(train_ds, batch_size=recipe.batch_size, shuffle=True, num_workers=num_workers,
                              generator=generator, pin_memory=device.type == "cuda", drop_last=len(train_ds) > recipe.batch_size)
    val_loader = DataLoader(val_ds, batch_size=2 * recipe.batch_size, num_workers=num_workers)
    model = build_model(recipe)
    optimizer = build_optimizer(recipe, model)
    history = train(model, train_loader, val_loader, make_loss(recipe.loss), optimizer, recipe.epochs,
                    scheduler=build_scheduler(recipe, optimizer, recipe.epochs), device=device, checkpoint_dir=run_dir,
                    resume=resume, overwrite=overwrite, config=recipe.config(), progress=progress, verbose=verbose)
    load_checkpoint(run_dir / "best.pt", model)
    if recipe.finetune_loss and recipe.finetune_epochs > 0:
        optimizer = build_optimizer(recipe, model, lr=recipe.finetune_lr)
        stage = train(model, train_loader, val_loader, make_loss(recipe.finetune_loss), optimizer, recipe.finetune_epochs,
                      scheduler=build_scheduler(recipe, optimizer, recipe.finetune_epochs), device=device,
                      checkpoint_dir=run_dir / "finetune", resume=resume, overwrite=overwrite,
                      config=dict(recipe.config(), stage="finetune"), progress=progress, verbose=verbose)
        offset = len(history["epoch"])
        history = {k: history[k] + ([e + offset for e in stage[k]] if k == "epoch" else stage[k]) for k in history}
        if max(stage["val_tgs"]) > max(history["val_tgs"][:offset]):
            load_checkpoint(run_dir / "finetune" / "best.pt", model)
        else:
            load_checkpoint(run_dir / "best.pt", model)
    return model, history
