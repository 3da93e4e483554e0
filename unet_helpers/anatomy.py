"""Looking inside a U-Net (notebook 07): feature maps, cut skip connections, receptive fields, border errors.

Everything here works on :class:`~unet_helpers.models.UNet` by its parts (``encoders``,
``bottleneck``, ``decoders``, ``head``) through forward hooks, so the network itself is unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .models import UNet


@torch.no_grad()
def feature_maps(model: UNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each level holds for input ``x`` (N, C, H, W): {"enc1": ..., "bottleneck": ..., "dec1": ..., "logits": ...}.

    ``encK`` is level K's output on the way down (what its skip carries), ``decK`` the same level's
    output on the way up; all (N, channels, side, side) at their true sides, on the CPU.
    """
    maps: dict[str, torch.Tensor] = {}
    parts = [(f"enc{k + 1}", m) for k, m in enumerate(model.encoders)] + [("bottleneck", model.bottleneck)]
    parts += [(f"dec{model.levels - 1 - k}", m) for k, m in enumerate(model.decoders)] + [("logits", model.head)]
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: maps.__setitem__(name, out.detach().cpu()))
        for name, m in parts
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        model.train(was_training)  # the model is left as it came
        for h in handles:
            h.remove()
    return maps


@contextmanager
def cut_skip(model: UNet, level: int, how: str = "zeros"):
    """Inside the ``with`` block, level ``level``'s skip connection carries zeros or its mean instead of features.

    ``how``: "zeros", or "mean" (each channel's mean over the image, so only the spatial detail is lost).
    """
    if how not in ("zeros", "mean"):
        raise ValueError(f"how must be 'zeros' or 'mean', got {how!r}")
    if not 1 <= level < model.levels:
        raise ValueError(f"this U-Net has skip connections at levels 1 to {model.levels - 1}, not {level}")
    decoder = model.decoders[model.levels - 1 - level]  # decoders run from the bottom level up

    def replace_skip(_module, args):
        x, skip = args
        flat = torch.zeros_like(skip) if how == "zeros" else skip.mean(dim=(-2, -1), keepdim=True).expand_as(skip)
        return x, flat

    handle = decoder.register_forward_pre_hook(replace_skip)
    try:
        yield model
    finally:
        handle.remove()


def _widening(block: nn.Module) -> int:
    """Pixels a block's convolutions add on each side of a window (1 per 3x3 convolution)."""
    return sum((m.kernel_size[0] - 1) // 2 for m in block.modules() if isinstance(m, nn.Conv2d))


def _check_countable(model: UNet) -> None:
    """The walk below knows 2x2 up-convolutions and blocks that see a few pixels around each one; refuse the rest."""
    unknown = [
        why
        for why, present in (
            (f"{model.upsample} upsampling (its reach is not a 2x2 up-convolution's)", model.upsample != "transpose"),
            (f"{model.attention} attention (its channel gate pools the whole map)", bool(model.attention)),
            ("a salt head (its verdict on the whole tile gates every pixel)", model.salt_head),
        )
        if present
    ]
    if unknown:
        raise ValueError(
            "the receptive field is counted here for the paper's kind of U-Net only; this one has "
            f"{'; '.join(unknown)}: measure what an output pixel depends on with effective_receptive_field instead"
        )


def receptive_window_by_position(model: UNet) -> list[tuple[int, int]]:
    """How far an output pixel's window reaches before and after it (in input pixels, along one axis), at each
    position of a pooling cell: the window is not centred on the pixel.

    Follow one output pixel back through the network, keeping the interval of positions it
    depends on in each feature map: a 3x3 convolution widens it by 1 on each side; a 2x2 pooling
    maps [a, b] to [2a, 2b + 1] one level up; a 2x2 up-convolution maps [a, b] to [a // 2, b // 2]
    one level down; at a concatenation the two paths' intervals are joined. Where the pixel sits
    in its 2**poolings cell decides how the halvings round, so the window's width differs by position.
    """
    _check_countable(model)
    levels = model.levels

    def encoder_out(level: int, a: int, b: int) -> tuple[int, int]:
        grow = _widening(model.encoders[level - 1])
        a, b = a - grow, b + grow
        return (a, b) if level == 1 else encoder_out(level - 1, 2 * a, 2 * b + 1)

    def decoder_out(level: int, a: int, b: int) -> tuple[int, int]:
        if level == levels:  # the bottleneck, below a pooling
            grow = _widening(model.bottleneck)
            return encoder_out(levels - 1, 2 * (a - grow), 2 * (b + grow) + 1)
        grow = _widening(model.decoders[levels - 1 - level].conv)
        a, b = a - grow, b + grow
        skip, below = encoder_out(level, a, b), decoder_out(level + 1, a // 2, b // 2)
        return min(skip[0], below[0]), max(skip[1], below[1])

    cell = 2 ** (levels - 1)
    reaches = []
    for position in range(cell):
        p = 1000 * cell + position  # far from 0, so that // rounds the same way everywhere
        low, high = decoder_out(1, p, p)
        reaches.append((p - low, high - p))
    return reaches


def receptive_field_by_position(model: UNet) -> list[int]:
    """The receptive field (in input pixels) of an output pixel at each position of a pooling cell: the width of
    its window (:func:`receptive_window_by_position`), the pixel itself included."""
    return [before + 1 + after for before, after in receptive_window_by_position(model)]


def textbook_receptive_field(levels: int, convolutions_per_block: int = 2) -> int:
    """The classic walk from input to output, which ignores where a pixel sits in its pooling cell: a 3x3
    convolution adds 2 * jump, a 2x2 pooling adds 1 * jump and doubles the jump (the size of a map's pixel in input
    pixels), a 2x2 up-convolution halves it. 18, 44, 96 and 200 for U-Nets of 2, 3, 4 and 5 levels."""
    field, jump = 1, 1
    for _ in range(levels - 1):  # down: a block's convolutions, then a pooling
        field += 2 * convolutions_per_block * jump + jump
        jump *= 2
    field += 2 * convolutions_per_block * jump  # the bottleneck
    for _ in range(levels - 1):  # up: an up-convolution, then a block's convolutions
        jump //= 2
        field += 2 * convolutions_per_block * jump
    return field


def receptive_field(model: UNet) -> int:
    """The theoretical receptive field of an output pixel: the widest window, in input pixels, that one sees.

    The classic walk from input to output (a k x k convolution adds (k - 1) * jump, a 2x2 pooling
    adds 1 * jump and doubles the jump, a 2x2 up-convolution halves it) gives 18, 44, 96 and 200
    for U-Nets of 2, 3, 4 and 5 levels; it is exact up to 3 levels. Deeper, an output pixel's
    window depends on where it sits in its pooling cell (see :func:`receptive_field_by_position`):
    96 is between 92 and 100, and the paper's 200 between 188 and 204. Padding does not change it.
    """
    return max(receptive_field_by_position(model))


def effective_receptive_field(model: UNet, images: torch.Tensor) -> np.ndarray:
    """How much each input pixel moves the centre output pixel: |d logit(centre) / d input| (Luo et al., 2016).

    ``images``: (N, C, S, S). Returns (S, S): each image's gradient magnitude (summed over channels) as a share of
    its own total, so that no one image with large gradients outweighs the others, averaged over the images and
    scaled to a maximum of 1. In eval mode, so batch norm uses its statistics.
    """
    was_training = model.training
    model.eval()
    try:
        x = images.clone().requires_grad_(True)
        out = model(x)
        centre = out.shape[-1] // 2
        (grad,) = torch.autograd.grad(out[:, 0, centre, centre].sum(), x)  # the input's only: no .grad on weights
    finally:
        model.train(was_training)  # the model is left as it came, even after an error
    grad = grad.abs().sum(1)  # (N, S, S)
    grad = (grad / grad.sum((1, 2), keepdim=True).clamp_min(1e-12)).mean(0)
    return (grad / grad.max().clamp_min(1e-12)).numpy()


def extent(heatmap: np.ndarray, level: float = 0.0) -> int:
    """Width (in pixels) of the columns of ``heatmap`` that hold any value above ``level``."""
    columns = np.flatnonzero((heatmap > level).any(axis=0))
    return int(columns[-1] - columns[0] + 1) if len(columns) else 0


def mass_radius(heatmap: np.ndarray, share: float) -> int:
    """The smallest r for which the square of side 2r + 1 centred on the centre pixel holds ``share`` of the total.

    A measure of how far the weight of a map such as :func:`effective_receptive_field` reaches, which a few stray
    pixels cannot stretch (unlike :func:`extent`).
    """
    total = heatmap.sum()
    cy, cx = heatmap.shape[0] // 2, heatmap.shape[1] // 2
    for r in range(max(heatmap.shape)):
        if heatmap[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1].sum() >= share * total:
            return r
    return max(heatmap.shape)


def error_by_border_distance(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of wrong pixels at each distance to the tile's border: (N, H, W) masks -> (min(H, W) + 1) // 2 values."""
    h, w = truth.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w]
    distance = np.minimum.reduce([ys, xs, h - 1 - ys, w - 1 - xs])
    wrong = np.asarray(pred, bool) != np.asarray(truth, bool)
    return np.array([wrong[:, distance == d].mean() for d in range((min(h, w) + 1) // 2)])


def checkerboard_index(maps: torch.Tensor) -> float:
    """How strongly feature maps carry a fixed 2x2 pattern: 0 for none, larger for a stronger checkerboard.

    A stride-2 transposed convolution paints every 2x2 block of its output with the same four kernel
    taps, so its output has a pattern that repeats every 2 pixels (Odena et al., 2016). Average each
    map over the four positions of a 2x2 cell (even/odd row, even/odd column): image content averages
    out, that pattern does not. The index is the spread of those four means divided by the map's own
    spread (standard deviations), averaged over the maps. ``maps``: (C, H, W) or (N, C, H, W).
    """
    maps = maps.detach().float()
    maps = maps.reshape(-1, *maps.shape[-2:])
    maps = maps[:, : maps.shape[-2] // 2 * 2, : maps.shape[-1] // 2 * 2]  # whole 2x2 cells
    phases = torch.stack([maps[:, i::2, j::2].mean((-2, -1)) for i in (0, 1) for j in (0, 1)], dim=1)  # (M, 4)
    spread = maps.std((-2, -1))
    keep = spread > 1e-8  # a constant map has no pattern to speak of
    return float((phases[keep].std(1, unbiased=False) / spread[keep]).mean()) if keep.any() else 0.0
