"""Reference solutions of the notebooks' exercises (see ``unet_helpers.exercises``). Try them yourself first!

The tests run each through the same check a learner's answer gets, so a check can neither fail a
right answer nor pass an empty one.
"""

from __future__ import annotations

import torch

SOLUTIONS: dict = {
    # 01.1: a 3x3 convolution costs out_side**2 x C_out x C_in x 9; the up-convolution out_side**2 x C_out x C_in
    "01.1": 282**2 * 128 * 64 * 9
    + 280**2 * 128 * 128 * 9
    + 200**2 * 128 * 256
    + 198**2 * 128 * 256 * 9
    + 196**2 * 128 * 128 * 9,
    "01.2": 44,
    "01.3": 4,
    "02.2": 16 * 1 + 1,
    "03.1": "2 2 7 3",
    "03.2": 112,
    "04.2": 1 - 1 / (0.1 * 101 * 101 + 1),
    "06.1": 482_033 * 4,
    "06.2": 2400 // 32,
    "07.1": 18,
    # 08.1: channel gate 64 -> 16 -> 64 (weights and biases), pixel gate 64 -> 1
    "08.1": (64 * 16 + 16) + (16 * 64 + 64) + (64 + 1),
    # 08.2: the 1x1 head sees the decoders' 256 + 128 + 64 + 32 channels instead of 32
    "08.2": (256 + 128 + 64 + 32 + 1) - (32 + 1),
    # 08.3: on an empty tile only the largest hinge error counts: 1 + 2
    "08.3": 3.0,
    "09.1": 0.3**2 / (0.7**2 + 0.3**2),
    "09.3": -2.0,
}


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """04.1: 1 - soft Dice per image (probabilities, +1 smoothing), averaged over the batch."""
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def level_forward(level: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """02.1: a UNetLevel's forward pass as the recursion: encode, then (above the bottleneck) the smaller U-Net."""
    skip = level.encode(x)
    if level.depth == 0:
        return skip
    return level.decode(level_forward(level.inner, level.pool(skip)), skip)


def tgs_one(pred, truth) -> float:
    """05.1: the competition's score of one tile from its predicted and true 0/1 masks."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    if not truth.any():
        return float(not pred.any())
    iou = (pred & truth).sum() / (pred | truth).sum()
    thresholds = [round(0.5 + 0.05 * k, 2) for k in range(10)]
    return sum(iou > t for t in thresholds) / len(thresholds)


def hflip_tta(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """05.2: average the probabilities of the image and of its mirror, mirrored back."""
    return (torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(-1))).flip(-1)) / 2


def zero_skip(module: torch.nn.Module, args: tuple) -> tuple:
    """07.2: a forward pre-hook for an UpBlock: keep what comes from below, replace the skip by zeros."""
    x, skip = args
    return x, torch.zeros_like(skip)


def heun_step(velocity_fn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """09.2: one Heun step of the flow-matching sampler, from time t to the smaller t_next: an Euler step, the velocity
    read again where it lands, and the step taken with the mean of the two velocities."""
    v1 = velocity_fn(x, t)
    x_euler = x + (t_next - t) * v1
    v2 = velocity_fn(x_euler, t_next)
    return x + (t_next - t) * (v1 + v2) / 2


SOLUTIONS.update(
    {
        "02.1": level_forward,
        "04.1": dice_loss,
        "05.1": tgs_one,
        "05.2": hflip_tta,
        "07.2": zero_skip,
        "09.2": heun_step,
    }
)
