"""Nested model outputs as a flat list of tensors: what tracing, probing and export all need from a model whose
forward returns a tuple, a dict, or leaves a None in its outputs (RT-DETR's denoising metadata, for one)."""

from __future__ import annotations

import torch


def flatten_tensors(x) -> list[torch.Tensor]:
    """The tensors of a nested output (tensor, list, tuple, dict), in order; anything else (None) is dropped."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in flatten_tensors(item)]
    return []
