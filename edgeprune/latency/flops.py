"""The FLOPs objective as a latency predictor: latency taken to be proportional to the convolutions' FLOPs.

This is what a pruner that budgets FLOPs assumes (Torch-Pruning's `pruning_ratio` against a FLOPs target, NVIDIA
ModelOpt's FastNAS under a FLOPs limit). `prune --progressive --cost flops` hands it to the same allocation as the
latency table (edgeprune.search.allocate), so the channels go in order of importance per FLOP saved instead of per
millisecond the target saves, and the schedule still measures every cut on the backend and re-aims it until the
measured latency meets the target. Comparing the two at equal measured latency isolates what the board's own
latency table adds (bench_peers row (j) against (i)).

Only convolutions count, as in edgeprune.evaluate.complexity.count_flops: adds, concatenations, pooling and
upsampling cost next to nothing in FLOPs, though they take time on a real board: part of what this objective
misses.
"""

from __future__ import annotations

import math

from torch import nn

from .layers import Unit, decompose

__all__ = ["FlopsPredictor", "unit_flops"]


def unit_flops(u: Unit) -> float:
    """FLOPs (2 × MACs) of one latency unit; 0 for anything but a convolution."""
    if u.op != "conv":
        return 0.0
    a = u.attrs
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    if a["padding"] == "same":
        ho, wo = math.ceil(a["h"] / sh), math.ceil(a["w"] / sw)
    else:
        ph, pw = (0, 0) if a["padding"] == "valid" else a["padding"]
        ho = (a["h"] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (a["w"] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    mode = a["groups_mode"]
    per_out = 1 if mode == "depthwise" else u.cin if mode == "dense" else u.cin // int(mode.split(":")[1])
    return 2.0 * per_out * u.cout * kh * kw * ho * wo


class FlopsPredictor:
    """Predicts `ms_per_gflop` × the units' GFLOPs: a LatencyPredictor's `predict` and `align` for a FLOPs budget.

    `fit(model, shape, measured_ms)` sets the scale from the base's measured latency, so its predictions read in
    the target's milliseconds (the base predicted exactly; everything else as FLOPs would have it)."""

    def __init__(self, input_shape: tuple[int, ...], ms_per_gflop: float = 1.0, align: int = 8) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.ms_per_gflop = float(ms_per_gflop)
        self.align = int(align)  # the channel block kept widths are multiples of (prune's --round-to)

    @classmethod
    def fit(cls, model: nn.Module, input_shape: tuple[int, ...], measured_ms: float, align: int = 8
            ) -> FlopsPredictor:
        gflops = cls(input_shape).gflops(model)
        if gflops <= 0:
            raise ValueError("the model has no convolutions to count FLOPs on: --cost flops needs a conv net")
        return cls(input_shape, measured_ms / gflops, align)

    def gflops(self, model: nn.Module | list[Unit]) -> float:
        units = model if isinstance(model, list) else decompose(model, self.input_shape)
        return sum(unit_flops(u) for u in units) / 1e9

    def predict(self, model: nn.Module | list[Unit]) -> float:
        return self.ms_per_gflop * self.gflops(model)
