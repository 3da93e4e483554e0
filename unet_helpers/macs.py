"""What a forward pass costs: multiply-accumulates (MACs) counted from each layer's own arithmetic.

One MAC is one multiplication added to a sum. Per layer, for one image:

- ``Conv2d``: every output value is a dot product over ``C_in / groups x kH x kW`` inputs, so
  MACs = output values x (C_in / groups) x kH x kW. A 3x3 convolution from 64 to 128 channels
  with a 280x280 output costs 280 * 280 * 128 * 64 * 9 = 5.78 G.
- ``ConvTranspose2d``: every *input* value is multiplied by the ``C_out x kH x kW`` weights it
  spreads over the output, so MACs = input values x (C_out / groups) x kH x kW. For the U-Net's
  2x2 up-convolution with stride 2 each output value receives exactly one tap per input channel:
  MACs = output values x C_in.
- ``Linear``: output values x in_features.

Biases, ReLU, pooling and batch norm add no MACs here (they are a few operations per value, not a
dot product). ``torchinfo`` counts a transposed convolution as if every one of its weights met
every output pixel (weights x output pixels), which is ``stride x stride`` times too many for
stride = kernel: 4x for the U-Net's up-convolutions.
"""

from __future__ import annotations

import torch
from torch import nn


def layer_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one call of ``module`` on one image (``inputs`` and ``output`` are (1, C, H, W) or (1, F))."""
    if isinstance(module, nn.ConvTranspose2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return inputs[0].numel() * module.out_channels // module.groups * kernel
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * module.in_channels // module.groups * kernel
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, int]:
    """MACs of every convolution and linear layer of ``model`` for one input of ``input_size`` (C, H, W).

    Returns {layer name: MACs}, in the order the layers ran; ``sum(...values())`` is the total.
    """
    counts: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(
            lambda m, args, out, name=name: counts.__setitem__(name, counts.get(name, 0) + layer_macs(m, args[0], out))
        )
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        model(torch.zeros(1, *input_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return counts
