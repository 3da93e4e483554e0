"""Segmentation losses for one-logit-per-pixel networks (binary masks).

Every loss takes ``logits`` and ``target`` of the same shape (N, 1, H, W) (or (N, H, W)),
target in {0, 1}, and returns a scalar.

* BCE with logits: per-pixel cross-entropy; ``pos_weight`` > 1 counts salt pixels more.
* Soft Dice: 1 - 2|P*T| / (|P| + |T|) with probabilities P; optimises overlap directly.
* BCE + Dice: pixel-wise stability plus an overlap term.
* Lovasz hinge (Berman, Triki, Blaschko, 2018): a convex surrogate of the IoU itself, used
  by the TGS Salt winners to fine-tune for the competition's IoU-based metric; and its symmetric
  form, which scores the sediment as an object too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits, with an optional weight for the positive (salt) pixels."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pos_weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


class SoftDiceLoss(nn.Module):
    """1 - soft Dice over each image, averaged over the batch; ``smooth`` keeps empty masks finite.

    An empty prediction of an empty mask scores 0 loss, as it should.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits).flatten(1)
        target = target.flatten(1)
        intersection = (probs * target).sum(1)
        dice = (2 * intersection + self.smooth) / (probs.sum(1) + target.sum(1) + self.smooth)
        return (1 - dice).mean()


class BCEDiceLoss(nn.Module):
    """``bce_weight`` * BCE + (1 - ``bce_weight``) * soft Dice."""

    def __init__(self, bce_weight: float = 0.5, pos_weight: float | None = None) -> None:
        super().__init__()
        self.bce, self.dice, self.bce_weight = BCEWithLogitsLoss(pos_weight), SoftDiceLoss(), bce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + (1 - self.bce_weight) * self.dice(logits, target)


def lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. errors sorted in decreasing order.

    ``sorted_truth`` (P,) holds the 0/1 labels in that order. Entry i is how much the IoU loss
    grows when the i-th largest error is counted as a mistake.
    """
    positives = sorted_truth.sum()
    intersection = positives - sorted_truth.cumsum(0)
    union = positives + (1 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Lovasz hinge of one image, flattened: logits (P,), truth (P,) in {0, 1}."""
    signs = 2.0 * truth - 1.0
    errors = 1.0 - logits * signs  # hinge errors: > 0 where a pixel is wrong or not confidently right
    errors_sorted, order = torch.sort(errors, descending=True)
    return torch.dot(F.relu(errors_sorted), lovasz_grad(truth[order]))


class LovaszHingeLoss(nn.Module):
    """The Lovasz hinge, per image and averaged over the batch.

    An image with an empty mask still gets a loss from its false positives: the IoU of an
    empty truth is 0 for any positive prediction (the TGS metric scores it 0 too).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float().flatten(1), target.float().flatten(1)
        return torch.stack([lovasz_hinge_flat(lg, t) for lg, t in zip(logits, target)]).mean()


class SymmetricLovaszLoss(nn.Module):
    """(Lovasz hinge of the salt + Lovasz hinge of the sediment) / 2: L(x, y) + L(-x, 1 - y), halved.

    The plain hinge optimises the IoU of the salt only; an empty tile then has no salt IoU to protect. The
    mirrored term scores the sediment as the object too, so false alarms on empty tiles cost as much as misses
    (the TGS Salt 9th place credited it with +0.02).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lovasz = LovaszHingeLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.lovasz(logits, target) + self.lovasz(-logits, 1 - target)) / 2


class SaltHeadLoss(nn.Module):
    """Deep supervision of a network's salt head: ``loss(logits, target) + weight * BCE(salt_logit, has salt)``.

    ``model`` is the network whose last forward pass set ``salt_logit`` (N, 1), one logit per tile for "this
    tile holds salt"; the engine calls the loss right after that pass, on the same batch.
    """

    def __init__(self, loss: nn.Module, model: nn.Module, weight: float = 0.1) -> None:
        super().__init__()
        self.loss, self.weight = loss, weight
        self.model = [model]  # a list: not registered as a submodule, so the loss holds no copy of its weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        has_salt = (target.flatten(1).amax(1, keepdim=True) > 0).float()
        salt = F.binary_cross_entropy_with_logits(self.model[0].salt_logit.float(), has_salt)
        return self.loss(logits, target) + self.weight * salt


LOSSES = {
    "bce": BCEWithLogitsLoss,
    "dice": SoftDiceLoss,
    "bce_dice": BCEDiceLoss,
    "lovasz": LovaszHingeLoss,
    "lovasz_symmetric": SymmetricLovaszLoss,
}


def make_loss(name: str, **kwargs) -> nn.Module:
    """A loss by name: 'bce', 'dice', 'bce_dice' or 'lovasz'."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)
