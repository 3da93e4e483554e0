"""U-Net models: the paper's network written out by hand, and a configurable version.

Ronneberger, Fischer, Brox (2015), *U-Net: Convolutional Networks for Biomedical
Image Segmentation*, arXiv:1505.04597, Figure 1::

    572 ─conv─ 570 ─conv─ 568 ─────────── copy and crop ──────────► 392 ─conv─ 390 ─conv─ 388 ─1x1─► 388
                            │ pool                                    ▲ up-conv
                           284 ─conv─ 282 ─conv─ 280 ── crop ──► 200 ─conv─ 198 ─conv─ 196
                                                  │ pool                   ▲ up-conv
                                                 140 ─ 138 ─ 136 ─ crop ► 104 ─ 102 ─ 100
                                                              │ pool        ▲
                                                             68 ─ 66 ─ 64 ► 56 ─ 54 ─ 52
                                                                    │ pool  ▲
                                                                   32 ─ 30 ─ 28   (bottleneck)

Channels double on the way down (64, 128, 256, 512, 1024) and halve on the way up.
Every 3x3 convolution is unpadded ("valid"), so each one trims one pixel from every
border; that is why the output (388) is smaller than the input (572).

Shapes below are written (N, C, H, W): batch, channels, height, width.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PADDINGS = ("valid", "same")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
UPSAMPLINGS = ("transpose", "bilinear")

# ---------------------------------------------------------------------------
# Small building blocks shared by both networks
# ---------------------------------------------------------------------------


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the middle ``height x width`` window of ``x`` (N, C, H, W).

    This is the paper's "copy and crop": the encoder's feature map is larger than
    the upsampled decoder map, because valid convolutions lost the border pixels.
    """
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def init_paper_(module: nn.Module) -> None:
    """Paper initialisation: weights ~ Normal(0, sqrt(2 / N)), biases 0.

    N is the number of incoming nodes of one unit. For a 3x3 convolution with
    C input channels that is 9 * C. A 2x2 up-convolution with stride 2 places
    each kernel tap on its own output pixel, so one output unit sees only C
    inputs: N = C * k * k / (stride * stride).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            taps = m.kernel_size[0] * m.kernel_size[1]
            n_in = m.in_channels * taps // (m.stride[0] * m.stride[1])
        else:
            continue
        nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / n_in))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _check_input(x: torch.Tensor, in_channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"expected a 4-D tensor (batch, channels, height, width), got {shape}; "
            "add a batch dimension with x.unsqueeze(0) for a single image"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"the network was built for {in_channels} input channel(s) but the input has "
            f"{x.shape[1]}; pass images with {in_channels} channel(s) or build the model "
            f"with in_channels={x.shape[1]}"
        )


# ---------------------------------------------------------------------------
# Size arithmetic for valid (unpadded) convolutions
# ---------------------------------------------------------------------------


def _walk_sides(input_side: int, levels: int, padding: str) -> list[tuple[str, int]] | None:
    """The (layer name, side) list for a square input, or None where the input cannot pass."""
    trim = 2 if padding == "valid" else 0  # a 3x3 valid conv trims 1 pixel from each border
    s = input_side
    sides = [("input", s)]
    skip_sides = {}
    for level in range(1, levels):
        for k in (1, 2):
            s -= trim
            sides.append((f"enc{level}.conv{k}", s))
        if s < 1 or (padding == "valid" and s % 2):  # 2x2 pooling needs an even side
            return None
        skip_sides[level] = s
        s = math.ceil(s / 2)
        sides.append((f"pool{level}", s))
    for k in (1, 2):
        s -= trim
        sides.append((f"bottleneck.conv{k}", s))
    if s < 1:
        return None
    for level in range(levels - 1, 0, -1):
        s *= 2
        if padding == "same":  # an odd side was pooled up (ceil_mode): the extra row and column are cut off
            s = min(s, skip_sides[level])
        sides.append((f"up{level}", s))
        for k in (1, 2):
            s -= trim
            sides.append((f"dec{level}.conv{k}", s))
    if s < 1:
        return None
    sides.append(("output", input_side if padding == "same" else s))
    return sides


def feature_map_sides(input_side: int, levels: int = 5, padding: str = "valid") -> list[tuple[str, int]]:
    """Every feature-map side a square input goes through, as (layer name, side).

    With ``levels=5`` and an input of 572 this is the paper's Figure 1:
    572, 570, 568, 284, 282, 280, ..., 32, 30, 28, 56, 54, 52, ..., 392, 390, 388.
    Raises ``ValueError`` naming the nearest sides that work when the input cannot
    pass through (an odd side before a pooling, or a side that shrinks below 1).
    """
    _check_padding(padding)
    if padding == "same" and input_side < 2 ** (levels - 1):
        raise ValueError(_too_small_message(input_side, levels, "same"))
    sides = _walk_sides(input_side, levels, padding)
    if sides is None:
        raise ValueError(_bad_side_message(input_side, levels))
    return sides


def output_side(input_side: int, levels: int = 5, padding: str = "valid") -> int:
    """Side of the output for a square input side, e.g. 572 -> 388 for the paper."""
    return feature_map_sides(input_side, levels, padding)[-1][1]


def is_valid_input_side(input_side: int, levels: int = 5) -> bool:
    """True when a valid-padding U-Net of ``levels`` levels can take this side."""
    return _walk_sides(input_side, levels, "valid") is not None


def nearest_valid_input_sides(side: int, levels: int = 5) -> tuple[int | None, int]:
    """The largest valid side <= ``side`` (None if there is none) and the smallest >= ``side``.

    Valid sides are spaced 2**(levels-1) apart: 572 and 556 and 588 for the paper.
    """
    below = next((s for s in range(side, 0, -1) if is_valid_input_side(s, levels)), None)
    above = next(s for s in itertools.count(max(side, 1)) if is_valid_input_side(s, levels))
    return below, above


def input_side_for_output(min_output_side: int, levels: int = 5) -> int:
    """Smallest valid input side whose output is at least ``min_output_side``."""
    s = 1
    while not (is_valid_input_side(s, levels) and output_side(s, levels) >= min_output_side):
        s += 1
    return s


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; use 'valid' (the paper's) or 'same'")


def _check_config(
    in_channels: int,
    out_channels: int,
    features: Sequence[int],
    padding: str,
    padding_mode: str,
    upsample: str = "transpose",
) -> tuple[int, ...]:
    """The arguments of a configurable U-Net, checked; the features as a tuple of ints."""
    _check_padding(padding)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"unknown padding_mode {padding_mode!r}; use one of {', '.join(PADDING_MODES)}")
    if padding == "valid" and padding_mode != "zeros":
        raise ValueError("padding_mode only matters with padding='same'; leave it at 'zeros' for valid padding")
    features = tuple(int(f) for f in features)
    if len(features) < 2 or min(features) < 1:
        raise ValueError(f"features must list at least 2 positive channel counts, got {features}")
    if in_channels < 1 or out_channels < 1:
        raise ValueError("in_channels and out_channels must be at least 1")
    if upsample not in UPSAMPLINGS:
        raise ValueError(f"unknown upsample {upsample!r}; use one of {', '.join(UPSAMPLINGS)}")
    return features


def _check_side(side: int, levels: int, padding: str, padding_mode: str = "zeros") -> None:
    """Raise ``ValueError`` naming the nearest sides that work if a U-Net cannot take ``side``."""
    if padding == "same":
        # a reflected border needs a pixel to reflect beside each one: the bottom map must be 2 pixels wide
        smallest = 2 ** (levels - 1) + (padding_mode == "reflect")
        if side < smallest:
            raise ValueError(f"an input side of {side} is too small; use at least {smallest}")
    elif not is_valid_input_side(side, levels):
        raise ValueError(_bad_side_message(side, levels))


def _bad_side_message(side: int, levels: int) -> str:
    below, above = nearest_valid_input_sides(side, levels)
    if below is None:
        return _too_small_message(side, levels, "valid")
    options = " or ".join(str(s) for s in (below, above) if s is not None)
    return (
        f"a valid-padding U-Net with {levels} levels cannot take an input side of {side}: "
        f"a feature map would have an odd side before a 2x2 pooling. "
        f"The nearest sides that work are {options}; mirror-pad or crop the image to one of them "
        f"(see unet_helpers.tiling), or use padding='same'"
    )


def _too_small_message(side: int, levels: int, padding: str) -> str:
    if padding == "valid":
        smallest = nearest_valid_input_sides(1, levels)[1]
        return (
            f"an input side of {side} is too small for a valid-padding U-Net with {levels} levels; "
            f"the smallest side that works is {smallest}; mirror-pad the image (see unet_helpers.tiling) "
            "or use padding='same'"
        )
    return f"an input side of {side} is too small; use at least {2 ** (levels - 1)}"


# ---------------------------------------------------------------------------
# 1. The paper's network, every layer written out by hand
# ---------------------------------------------------------------------------


class UNetOriginal(nn.Module):
    """The U-Net of Figure 1, layer by layer: 23 convolutional layers, 31,030,658 parameters.

    Input (N, 1, 572, 572) -> output (N, 2, 388, 388) logits for 2 classes.
    Layers are registered in the order data flows through them, so their
    weights can be copied one-to-one into :class:`UNet` (see ``transfer_weights``).
    """

    def __init__(self) -> None:
        super().__init__()
        conv = lambda c_in, c_out: nn.Conv2d(c_in, c_out, kernel_size=3)  # noqa: E731 unpadded 3x3
        up = lambda c_in, c_out: nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)  # noqa: E731

        # Contracting path (left side of the U)
        self.enc1_conv1, self.enc1_conv2 = conv(1, 64), conv(64, 64)
        self.enc2_conv1, self.enc2_conv2 = conv(64, 128), conv(128, 128)
        self.enc3_conv1, self.enc3_conv2 = conv(128, 256), conv(256, 256)
        self.enc4_conv1, self.enc4_conv2 = conv(256, 512), conv(512, 512)
        # Bottom of the U
        self.bottleneck_conv1, self.bottleneck_conv2 = conv(512, 1024), conv(1024, 1024)
        # Expansive path (right side): up-conv halves the channels, concat doubles them back
        self.up4 = up(1024, 512)
        self.dec4_conv1, self.dec4_conv2 = conv(1024, 512), conv(512, 512)
        self.up3 = up(512, 256)
        self.dec3_conv1, self.dec3_conv2 = conv(512, 256), conv(256, 256)
        self.up2 = up(256, 128)
        self.dec2_conv1, self.dec2_conv2 = conv(256, 128), conv(128, 128)
        self.up1 = up(128, 64)
        self.dec1_conv1, self.dec1_conv2 = conv(128, 64), conv(64, 64)
        # 1x1 convolution maps the 64 features of each pixel to 2 class scores
        self.head = nn.Conv2d(64, 2, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        init_paper_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, 2, H - 184, W - 184); 572 -> 388."""
        _check_input(x, 1)
        for side in x.shape[-2:]:
            if not is_valid_input_side(side, 5):
                raise ValueError(_bad_side_message(side, 5))
        relu = F.relu
        e1 = relu(self.enc1_conv2(relu(self.enc1_conv1(x))))  # 572 -> 570 -> 568
        e2 = relu(self.enc2_conv2(relu(self.enc2_conv1(self.pool(e1)))))  # 284 -> 282 -> 280
        e3 = relu(self.enc3_conv2(relu(self.enc3_conv1(self.pool(e2)))))  # 140 -> 138 -> 136
        e4 = relu(self.enc4_conv2(relu(self.enc4_conv1(self.pool(e3)))))  # 68 -> 66 -> 64
        b = relu(self.bottleneck_conv2(relu(self.bottleneck_conv1(self.pool(e4)))))  # 32 -> 30 -> 28

        d = self.up4(b)  # 28 -> 56, 1024 -> 512 channels
        d = torch.cat([center_crop(e4, *d.shape[-2:]), d], dim=1)  # 64 cropped to 56; 1024 channels
        d = relu(self.dec4_conv2(relu(self.dec4_conv1(d))))  # 56 -> 54 -> 52
        d = self.up3(d)  # 52 -> 104
        d = torch.cat([center_crop(e3, *d.shape[-2:]), d], dim=1)  # 136 cropped to 104
        d = relu(self.dec3_conv2(relu(self.dec3_conv1(d))))  # 104 -> 102 -> 100
        d = self.up2(d)  # 100 -> 200
        d = torch.cat([center_crop(e2, *d.shape[-2:]), d], dim=1)  # 280 cropped to 200
        d = relu(self.dec2_conv2(relu(self.dec2_conv1(d))))  # 200 -> 198 -> 196
        d = self.up1(d)  # 196 -> 392
        d = torch.cat([center_crop(e1, *d.shape[-2:]), d], dim=1)  # 568 cropped to 392
        d = relu(self.dec1_conv2(relu(self.dec1_conv1(d))))  # 392 -> 390 -> 388
        return self.head(d)  # (N, 2, 388, 388)


# ---------------------------------------------------------------------------
# 2. The same network from a configuration: one rule repeated at every level
# ---------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional batch norm and) ReLU.

    (N, C_in, H, W) -> (N, C_out, H - 4, W - 4) with valid padding, (N, C_out, H, W) with same.
    """

    def __init__(
        self, c_in: int, c_out: int, padding: str, padding_mode: str, batch_norm: bool, group_norm: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        normed = batch_norm or group_norm
        for c in (c_in, c_out):
            layers.append(
                nn.Conv2d(
                    c, c_out, 3, padding=1 if padding == "same" else 0, padding_mode=padding_mode, bias=not normed
                )
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            if group_norm:  # statistics of each image alone: what a denoiser needs, whose batches mix noise levels
                layers.append(nn.GroupNorm(8, c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualDoubleConv(nn.Module):
    """DoubleConv with a shortcut: ReLU(conv-BN-ReLU-conv-BN(x) + shortcut(x)), the shortcut a 1x1 convolution
    when the channels change (He et al., 2016). Same padding only. (N, C_in, H, W) -> (N, C_out, H, W).
    """

    def __init__(self, c_in: int, c_out: int, padding: str, padding_mode: str, batch_norm: bool) -> None:
        super().__init__()
        if padding != "same":
            raise ValueError("residual blocks need padding='same': the shortcut must keep the side")
        norm = (lambda: nn.BatchNorm2d(c_out)) if batch_norm else nn.Identity  # noqa: E731
        conv = lambda a, b: nn.Conv2d(a, b, 3, padding=1, padding_mode=padding_mode, bias=not batch_norm)  # noqa: E731
        self.body = nn.Sequential(conv(c_in, c_out), norm(), nn.ReLU(inplace=True), conv(c_out, c_out), norm())
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(nn.Conv2d(c_in, c_out, 1), norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation (Roy, Navab, Wachinger, 2018).

    Two gates in (0, 1), added: one per channel from the map's global average (which channels matter here),
    one per pixel from a 1x1 convolution (where to look). (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.pixel_gate = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.channel_gate(x)) + x * torch.sigmoid(self.pixel_gate(x))


def conv_block(
    c_in: int,
    c_out: int,
    padding: str,
    padding_mode: str,
    batch_norm: bool,
    block: str = "double",
    attention: str | None = None,
) -> nn.Module:
    """The block of every level: a DoubleConv (the paper) or a ResidualDoubleConv, optionally followed by scSE."""
    layers = (DoubleConv if block == "double" else ResidualDoubleConv)(c_in, c_out, padding, padding_mode, batch_norm)
    return layers if attention is None else nn.Sequential(layers, SCSE(c_out))


class UpBlock(nn.Module):
    """Up-convolution, crop-and-concatenate with the skip connection, then a DoubleConv.

    (N, 2C, h, w) and skip (N, C, H, W) -> (N, C, ...). ``upsample="bilinear"`` replaces the paper's 2x2
    transposed convolution by bilinear upsampling and a 1x1 convolution (Odena et al., 2016): every output
    pixel is then computed the same way, where the transposed convolution paints each 2x2 block with the
    same four weights, a checkerboard (notebook 07 measures it).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        padding: str,
        padding_mode: str,
        batch_norm: bool,
        upsample: str = "transpose",
        block: str = "double",
        attention: str | None = None,
        group_norm: bool = False,
    ) -> None:
        super().__init__()
        self.padding = padding
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(c_in, c_out, 1)
            )
        if group_norm:
            self.conv = DoubleConv(2 * c_out, c_out, padding, padding_mode, batch_norm, group_norm=True)
        else:
            self.conv = conv_block(2 * c_out, c_out, padding, padding_mode, batch_norm, block, attention)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.padding == "valid":
            # The paper: the skip is larger (valid convs trimmed it less); crop its centre.
            skip = center_crop(skip, *x.shape[-2:])
        else:
            # Same padding with an odd side: pooling rounded up (ceil_mode), so the upsampled
            # map has one extra row/column at the bottom/right; drop it to align with the skip.
            x = x[..., : skip.shape[-2], : skip.shape[-1]]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """A U-Net built from a configuration; the defaults are the paper's network.

    Args:
        in_channels: channels of the input image (1 for the paper, 3 for RGB-like TGS tiles).
        out_channels: output maps: 2 class scores in the paper, 1 logit for binary masks.
        features: channels at each level, top to bottom; ``len(features)`` levels.
        padding: "valid" (unpadded, the paper: the output is smaller than the input) or
            "same" (the output has the input's side, any side >= 2**(levels-1)).
        padding_mode: how "same" convolutions pad the border: "zeros" or "reflect", ...
        batch_norm: add BatchNorm2d after each 3x3 convolution (not in the paper).
        upsample: "transpose" (the paper's 2x2 up-convolution) or "bilinear" (bilinear upsampling and a
            1x1 convolution, see :class:`UpBlock`).
        block: "double" (two 3x3 convolutions, the paper) or "residual" (:class:`ResidualDoubleConv`).
        attention: None, or "scse" after every block (:class:`SCSE`).
        hypercolumn: the head sees every decoder level's output, upsampled to full size and concatenated,
            instead of the top level's alone (Hariharan et al., 2015); same padding only.
        salt_head: a second head on the bottleneck says whether the tile holds any salt (``salt_logit``, one
            logit per tile, trained beside the mask by ``losses.SaltHeadLoss``); in eval mode a tile it calls
            empty gets its mask logits capped at -10, an empty mask, as the TGS winners emptied such tiles.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H', W'), H' = output_side(H) for
    valid padding, H' = H for same padding.

    Examples:
        >>> UNet()                                            # the paper: 31,030,658 parameters
        >>> UNet(3, 1, (16, 32, 64), padding="same")          # ~100k, the earlier project
        >>> UNet(3, 1, (16, 32, 64, 128), padding="same", padding_mode="reflect")  # ~500k
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        padding: str = "valid",
        padding_mode: str = "zeros",
        batch_norm: bool = False,
        upsample: str = "transpose",
        block: str = "double",
        attention: str | None = None,
        hypercolumn: bool = False,
        salt_head: bool = False,
    ) -> None:
        super().__init__()
        features = _check_config(in_channels, out_channels, features, padding, padding_mode, upsample)
        if block not in ("double", "residual") or attention not in (None, "scse"):
            raise ValueError(
                f"block must be 'double' or 'residual' and attention None or 'scse', got {block!r}, {attention!r}"
            )
        if hypercolumn and padding != "same":  # valid levels are not centred on one another: no one scale lines up
            raise ValueError("hypercolumn=True needs padding='same': a valid U-Net's levels cover different windows")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.features, self.padding = features, padding
        self.padding_mode, self.batch_norm, self.upsample = padding_mode, batch_norm, upsample
        self.block, self.attention, self.hypercolumn, self.salt_head = block, attention, hypercolumn, salt_head
        block = dict(
            padding=padding, padding_mode=padding_mode, batch_norm=batch_norm, block=block, attention=attention
        )

        # Down: one DoubleConv per level above the bottom.
        channels_in = (in_channels,) + features[:-2]
        self.encoders = nn.ModuleList(conv_block(c_in, c, **block) for c_in, c in zip(channels_in, features[:-1]))
        self.bottleneck = conv_block(features[-2], features[-1], **block)
        # Up: mirror the encoders, from the bottom level back to the top.
        self.decoders = nn.ModuleList(
            UpBlock(c_in, c_out, **block, upsample=upsample) for c_in, c_out in zip(features[:0:-1], features[-2::-1])
        )
        self.head = nn.Conv2d(sum(features[:-1]) if hypercolumn else features[0], out_channels, kernel_size=1)
        if salt_head:  # does the tile hold salt at all? From the bottleneck, which sees the whole tile
            self.salt_classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features[-1], 1))
        self.salt_logit: torch.Tensor | None = None  # (N, 1), set by every forward pass of a network with a salt head
        # ceil_mode lets "same" networks take odd sides (101 -> 51 -> 26 -> 13).
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=(padding == "same"))
        init_paper_(self)

    @property
    def levels(self) -> int:
        return len(self.features)

    def output_side(self, input_side: int) -> int:
        """Side of the output for this input side (the input side itself for same padding)."""
        self.check_side(input_side)
        return output_side(input_side, self.levels, self.padding)

    def check_side(self, side: int) -> None:
        """Raise ``ValueError`` naming the nearest sides that work if ``side`` does not."""
        _check_side(side, self.levels, self.padding, self.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        for side in x.shape[-2:]:
            self.check_side(side)
        skips = []
        for encoder in self.encoders:  # contracting path: remember each level's features
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        if self.salt_head:
            self.salt_logit = self.salt_classifier(x)
        levels = []
        for decoder, skip in zip(self.decoders, reversed(skips)):  # expansive path
            x = decoder(x, skip)
            levels.append(x)
        if self.hypercolumn:  # every decoder level, upsampled to the top level's size, side by side
            height, width = x.shape[-2:]
            # by each level's own scale (2, 4, ...), then cut to the top's size: with ceil_mode pooling a level's last
            # pixel reaches past the tile's edge, so stretching the level to the size would shift it off its place
            scales = [2 ** (len(levels) - 1 - k) for k in range(len(levels))]
            x = torch.cat(
                [
                    F.interpolate(m, scale_factor=s, mode="bilinear")[..., :height, :width]
                    for m, s in zip(levels, scales)
                ],
                dim=1,
            )
        logits = self.head(x)
        if self.salt_head and not self.training:  # a tile the salt head calls empty gets an empty mask
            empty = (self.salt_logit < 0).view(-1, 1, 1, 1)
            logits = torch.where(empty, logits.clamp(max=-10.0), logits)
        return logits

    def config(self) -> dict:
        """The constructor arguments, so a checkpoint can rebuild the same network."""
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            features=list(self.features),
            padding=self.padding,
            padding_mode=self.padding_mode,
            batch_norm=self.batch_norm,
        ) | {  # the levers, only when used: cards and checkpoints of the plain networks stay as they were
            key: value
            for key, value in dict(
                upsample=self.upsample,
                block=self.block,
                attention=self.attention,
                hypercolumn=self.hypercolumn,
                salt_head=self.salt_head,
            ).items()
            if value not in ("transpose", "double", None, False)
        }


# ---------------------------------------------------------------------------
# 3. The same network as the recursion it is: a U-Net holds a smaller U-Net
# ---------------------------------------------------------------------------


class UNetLevel(nn.Module):
    """A U-Net of depth ``len(features) - 1``, without its 1x1 head, defined by recursion.

    Depth 0 is the bottleneck: one DoubleConv. A U-Net of depth d is a DoubleConv (``encode``),
    then, on the pooled map, a U-Net of depth d - 1 (``inner``), then an up-convolution, the
    concatenated skip and a DoubleConv (``decode``, an :class:`UpBlock`).
    (N, c_in, H, W) -> (N, features[0], H', W'), H' as for :class:`UNet`.

    With ``time_dim`` (a diffusion denoiser, notebook 09) the level also takes a time embedding
    (N, time_dim) and scales and shifts its features by it after ``encode`` and after ``decode``:
    h * (1 + scale) + shift, one scale and one shift per channel from a linear layer that starts at
    zero, so that an untrained denoiser computes what the same network without time does.
    """

    def __init__(
        self,
        c_in: int,
        features: Sequence[int],
        padding: str,
        padding_mode: str,
        batch_norm: bool,
        upsample: str = "transpose",
        time_dim: int | None = None,
        group_norm: bool = False,
    ) -> None:
        super().__init__()
        block = dict(padding=padding, padding_mode=padding_mode, batch_norm=batch_norm, upsample=upsample)
        self.depth = len(features) - 1
        self.encode = DoubleConv(c_in, features[0], padding, padding_mode, batch_norm, group_norm)
        if self.depth > 0:
            self.pool = nn.MaxPool2d(2, 2, ceil_mode=(padding == "same"))
            self.inner = UNetLevel(features[0], features[1:], **block, time_dim=time_dim, group_norm=group_norm)
            self.decode = UpBlock(features[1], features[0], **block, group_norm=group_norm)
        if time_dim is not None:
            self.encode_time = zero_linear(time_dim, 2 * features[0])
            self.decode_time = zero_linear(time_dim, 2 * features[0]) if self.depth > 0 else None

    def forward(self, x: torch.Tensor, time: torch.Tensor | None = None) -> torch.Tensor:
        skip = self.encode(x)
        if time is not None:
            skip = scale_and_shift(skip, self.encode_time(time))
        if self.depth == 0:
            return skip  # the bottom of the U
        out = self.decode(self.inner(self.pool(skip), time), skip)
        return out if time is None else scale_and_shift(out, self.decode_time(time))


def zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear layer whose weights and bias start at zero."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def scale_and_shift(h: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """h (N, C, H, W) * (1 + scale) + shift, with params (N, 2C) = [scale | shift] for each image and channel."""
    scale, shift = params[:, :, None, None].chunk(2, dim=1)
    return h * (1 + scale) + shift


class SinusoidalEmbedding(nn.Module):
    """Times t in [0, 1], shape (N,), -> (N, dim): sin and cos of 1000 t at ``dim / 2`` frequencies from 1 to
    1/10,000 (the Transformer's position code, which DDPM uses for its step number), so that nearby times get
    similar vectors and the network can tell t = 0.50 from t = 0.51."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.register_buffer("frequencies", torch.exp(-math.log(10_000) * torch.arange(half) / (half - 1)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 1000 * t[:, None].float() * self.frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class RecursiveUNet(nn.Module):
    """:class:`UNet` as a recursion: a :class:`UNetLevel` of depth ``len(features) - 1``, then the 1x1 head.

    The arguments of :class:`UNet` up to ``upsample`` (the other levers, block, attention, hypercolumn and the
    salt head, are :class:`UNet`'s alone), the same layers, registered in the same order (encoders top to
    bottom, the bottleneck, decoders bottom to top, the head), so ``transfer_weights`` maps it onto
    :class:`UNet` and :class:`UNetOriginal` and back, and their outputs are identical (tested).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        padding: str = "valid",
        padding_mode: str = "zeros",
        batch_norm: bool = False,
        upsample: str = "transpose",
        time_dim: int | None = None,
        group_norm: bool = False,
    ) -> None:
        super().__init__()
        self.features = _check_config(in_channels, out_channels, features, padding, padding_mode, upsample)
        self.in_channels, self.padding, self.padding_mode, self.time_dim = in_channels, padding, padding_mode, time_dim
        self.unet = UNetLevel(
            in_channels, self.features, padding, padding_mode, batch_norm, upsample, time_dim, group_norm
        )
        self.head = nn.Conv2d(self.features[0], out_channels, kernel_size=1)
        init_paper_(self)
        if time_dim is not None:  # the time input of a diffusion denoiser: t -> sinusoids -> a small MLP
            self.time_embedding = nn.Sequential(
                SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, in_channels, H, W) -> (N, out_channels, H', W'); a denoiser (``time_dim``) also takes t (N,)."""
        _check_input(x, self.in_channels)
        for side in x.shape[-2:]:
            _check_side(side, len(self.features), self.padding, self.padding_mode)
        if (t is None) != (self.time_dim is None):
            raise ValueError(
                "this network has a time input (time_dim): pass t, one time per image"
                if t is None
                else "this network has no time input: build it with time_dim=... to pass t"
            )
        return self.head(self.unet(x, None if t is None else self.time_embedding(t)))


def transfer_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target``, in registration order.

    :class:`UNetOriginal` and the default :class:`UNet` register the same layers in the
    same order (encoders, bottleneck, up-conv + decoder per level, head), so this maps one
    onto the other. Raises ``ValueError`` if the two do not line up tensor for tensor.
    """
    src, dst = list(source.state_dict().values()), list(target.state_dict().items())
    if len(src) != len(dst):
        raise ValueError(
            f"cannot transfer weights: the source has {len(src)} tensors, the target {len(dst)}; "
            "build both networks with the same levels, features and batch_norm"
        )
    with torch.no_grad():
        for tensor, (name, target_tensor) in zip(src, dst):
            if tensor.shape != target_tensor.shape:
                raise ValueError(
                    f"cannot transfer weights: {name} has shape {tuple(target_tensor.shape)} in the target "
                    f"but {tuple(tensor.shape)} in the source"
                )
            target_tensor.copy_(tensor)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_conv_layers(model: nn.Module) -> int:
    """Convolutional layers (3x3, up-convolutions and the 1x1 head): 23 in the paper."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
