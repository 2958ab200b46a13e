"""What a user would pick instead of edgeprune, each through its own API, as models edgeprune can train and ship.

- `torch_pruning_uniform`: Torch-Pruning's `MagnitudePruner`, one ratio for every layer, `round_to=8`, the Detect
  convs ignored, L1 (`MagnitudeImportance(p=1)`) or BN-scale (`BNScaleImportance`) importance.
- `modelopt_fastnas`: NVIDIA ModelOpt's FastNAS (`modelopt.torch.prune.prune(mode="fastnas")`) under a FLOPs limit,
  with the caller's score function; `PeerUnavailable` with the exact reason where ModelOpt cannot run.
- `narrow_yolov5`: "just train a smaller model": a yolov5 of any width and depth multiple.

The pruned models come back through `edgeprune.checkpoint.adopt`: the same weights in an edgeprune-pruned copy of the
base, so that recovery, evaluation, checkpoints and export treat every row alike.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from edgeprune.checkpoint import adopt
from edgeprune.models.yolov5 import YOLOv5, YOLOv5Config

__all__ = ["PeerUnavailable", "modelopt_fastnas", "narrow_yolov5", "torch_pruning_raw", "torch_pruning_uniform"]


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message says why (the error it raised), for the table."""


def _detect_convs(model: nn.Module) -> list[nn.Module]:
    """The layers whose outputs the task fixes (the model's `output_layers`: YOLOv5's Detect convs, YOLOv8's box,
    class and DFL convs)."""
    return [model.get_submodule(name) for name in getattr(model, "output_layers", [])]


def torch_pruning_raw(model: nn.Module, ratio: float, importance: str = "l1", round_to: int = 8,
                      example: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` pruned by Torch-Pruning's MagnitudePruner as it is (its own module, its own choices)."""
    import torch_pruning as tp

    example = example if example is not None else torch.zeros(1, 3, 64, 64)
    imp = {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
           "bn": lambda: tp.importance.BNScaleImportance()}[importance]()
    work = copy.deepcopy(model).eval()
    pruner = tp.pruner.MagnitudePruner(work, example, importance=imp, pruning_ratio=ratio, round_to=round_to,
                                       ignored_layers=_detect_convs(work))
    with torch.no_grad():
        pruner.step()
    return work


def torch_pruning_uniform(model: nn.Module, ratio: float, importance: str = "l1", round_to: int = 8,
                          example: torch.Tensor | None = None) -> nn.Module:
    """`model` pruned by Torch-Pruning alone (edgeprune's graph code is not involved in choosing channels), as an
    edgeprune-pruned copy that checkpoints and trains like every other row (`adopt`)."""
    example = example if example is not None else torch.zeros(1, 3, 64, 64)
    return adopt(model, torch_pruning_raw(model, ratio, importance, round_to, example), example)


def modelopt_fastnas(model: nn.Module, flops_share: float, score: Callable[[nn.Module], float], loader,
                     example: torch.Tensor | None = None, checkpoint: str | None = None,
                     channel_divisor: int = 8) -> nn.Module:
    """`model` pruned by ModelOpt FastNAS to at most `flops_share` of its FLOPs, maximising `score`; batch norms
    recalibrated on `loader` (batches of (images, targets, paths), as edgeprune's loaders yield).

    `channel_divisor` 8 matches the others' rounding (Torch-Pruning's round_to, edgeprune's plans); FastNAS's own
    default, 32, offers a yolov5n's 16- to 64-channel layers one or two widths, so it refuses FLOPs limits below
    about 30 %."""
    try:
        import modelopt.torch.prune as mtp
    except Exception as e:  # ImportError, or a CUDA-only dependency failing at import
        raise PeerUnavailable(f"nvidia-modelopt does not import here: {type(e).__name__}: {e}") from None
    example = example if example is not None else torch.zeros(1, 3, 64, 64)
    work = copy.deepcopy(model).eval()
    config = {"data_loader": loader, "collect_func": lambda batch: batch[0], "score_func": score,
              "max_iter_data_loader": 4}
    if checkpoint:
        config["checkpoint"] = checkpoint
    try:
        mode = [("fastnas", _fastnas_rules(channel_divisor))]
        plain, _ = mtp.prune(work, mode=mode, constraints={"flops": f"{100 * flops_share:.1f}%"},
                             dummy_input=example, config=config)  # returns the exported (plain) pruned model
    except Exception as e:
        raise PeerUnavailable(f"ModelOpt FastNAS failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return adopt(model, plain, example)


def _fastnas_rules(divisor: int) -> dict:
    """FastNAS's default rules (modelopt.torch.prune.fastnas) with another channel divisor for convs and norms."""
    ratios = tuple(0.05 * i for i in range(1, 21))
    return {"nn.Conv2d": {"*": {"channels_ratio": ratios, "kernel_size": (), "channel_divisor": divisor}},
            "nn.BatchNorm2d": {"*": {"features_ratio": ratios, "feature_divisor": divisor}}}


def narrow_yolov5(width: float, depth: float, num_classes: int) -> nn.Module:
    """A fresh yolov5 with these multiples (yolov5n is 0.25 / 0.33, yolov5s 0.50 / 0.33)."""
    return YOLOv5(YOLOv5Config(depth_multiple=depth, width_multiple=width, num_classes=num_classes,
                               name=f"yolov5-w{width:g}-d{depth:g}"))
