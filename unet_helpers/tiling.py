"""The paper's overlap-tile strategy (Section 2, Figure 2).

A valid-padding U-Net predicts only the pixels whose full context lies inside the
input: a 572 input tile gives a 388 output tile, 92 pixels short on every side. To
segment an image of any size, the paper

1. mirrors the image at its border, so border pixels get a (reflected) context;
2. cuts overlapping input tiles whose output tiles sit edge to edge;
3. stitches the output tiles back together.

Tile offsets are kept on multiples of 2**(levels-1) (16 for the paper): the 2x2
poolings then see the same grid in every tile as in one big pass, so the stitched
result equals a whole-image prediction exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models import UNet, input_side_for_output, is_valid_input_side, output_side


def mirror_pad(image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror ``image`` (N, C, H, W) at its borders, as the paper does for missing context.

    Reflection about the border pixel (``F.pad``'s "reflect", numpy's ``np.pad(mode="reflect")``), repeated as often
    as the padding needs when it is larger than the image itself; a side of one pixel, which has nothing to reflect,
    is repeated instead.
    """

    def reflected(n: int, before: int, after: int) -> torch.Tensor:
        """Source index of each padded position along an axis of ``n`` pixels: reflection has period 2 (n - 1)."""
        positions = torch.arange(-before, n + after, device=image.device)
        if n == 1:
            return torch.zeros_like(positions)
        period = 2 * (n - 1)
        folded = positions % period
        return torch.where(folded < n, folded, period - folded)

    height, width = image.shape[-2:]
    if max(top, bottom) < height and max(left, right) < width and min(height, width) > 1:
        return F.pad(image, [left, right, top, bottom], mode="reflect")  # one reflection: the usual case
    rows, columns = reflected(height, top, bottom), reflected(width, left, right)
    return image.index_select(-2, rows).index_select(-1, columns)


@torch.no_grad()
def predict_tiled(model: UNet, image: torch.Tensor, input_tile: int | None = None) -> torch.Tensor:
    """Segment ``image`` (N, C, H, W) of any size with a valid-padding U-Net, tile by tile.

    Args:
        model: a :class:`UNet` with ``padding="valid"``.
        image: the whole image batch, (N, C, H, W).
        input_tile: side of the square input tiles; must be a side the model takes
            (default: the smallest one whose output tile covers 1/4 of the image side
            or 64 pixels, whichever is more).

    Returns:
        (N, out_channels, H, W) logits for every pixel of the image.
    """
    if model.padding != "valid":
        raise ValueError("predict_tiled is for valid-padding U-Nets; a same-padding U-Net takes the whole image")
    levels = model.levels
    height, width = image.shape[-2:]
    if input_tile is None:
        input_tile = input_side_for_output(max(64, math.ceil(max(height, width) / 4)), levels)
    if not is_valid_input_side(input_tile, levels):
        model.check_side(input_tile)  # raises with the nearest sides that work
    out_tile = output_side(input_tile, levels)
    margin = (input_tile - out_tile) // 2  # context lost on each side (92 for the paper)
    grid = 2 ** (levels - 1)
    stride = (out_tile // grid) * grid  # keep every tile on the pooling grid
    if stride == 0:
        raise ValueError(
            f"input_tile={input_tile} gives an output tile of {out_tile} pixels, smaller than {grid}; use a larger tile"
        )

    n_rows, n_cols = math.ceil(max(height - out_tile, 0) / stride) + 1, math.ceil(max(width - out_tile, 0) / stride) + 1
    covered_h, covered_w = (n_rows - 1) * stride + out_tile, (n_cols - 1) * stride + out_tile
    padded = mirror_pad(image, margin, margin + covered_h - height, margin, margin + covered_w - width)

    logits = image.new_zeros(image.shape[0], model.out_channels, covered_h, covered_w)
    was_training = model.training
    model.eval()  # batch norm with its running statistics: a tile must not be normalised by its own
    try:
        for r in range(n_rows):
            for c in range(n_cols):
                y, x = r * stride, c * stride
                tile = padded[..., y : y + input_tile, x : x + input_tile]
                # Later tiles overwrite the overlap; both sides agree there, being on the same grid.
                logits[..., y : y + out_tile, x : x + out_tile] = model(tile)
    finally:
        model.train(was_training)  # the model is left as it came, even after an error
    return logits[..., :height, :width]
