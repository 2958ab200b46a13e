"""Parameter and FLOP counts of a torch model.

FLOPs here are 2 × multiply-accumulates of convolutions and matrix products, counted by torch's own
`FlopCounterMode` at a given input size; element-wise work (activations, adds, BN in eval) is not counted, which is
the convention of thop, ultralytics and the pruning papers this project follows (GFLOPs = 2 × GMACs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, img_size: int | tuple[int, int] = 640, in_channels: int = 3) -> int:
    """FLOPs (2 × MACs) of one forward pass on a single image of `img_size`."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, h, w, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
