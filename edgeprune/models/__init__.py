"""Detector registry and factory: `create_model("yolov5s", num_classes=1)`.

Each family lives in its own file and registers its sizes here. A model is rebuilt from `(family, config dict)`,
which is what checkpoints store instead of a pickled module.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .yolov5 import YOLOv5, YOLOv5Config

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, Callable[[dict], nn.Module]] = {
    "yolov5": lambda cfg: YOLOv5(YOLOv5Config.from_dict(cfg)),
}


def register_model(name: str) -> Callable:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 80, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


def model_spec(model: nn.Module) -> dict:
    """`{"family": ..., "config": {...}, "plans": [...]}`: enough to rebuild `model`'s architecture without pickle.

    `plans` lists the pruning plans applied to the base model, in order (edgeprune.prune.prune_model records them).
    """
    if not isinstance(model, YOLOv5):
        raise TypeError(f"{type(model).__name__} is not a registered detector family ({', '.join(_FAMILIES)})")
    spec = {"family": "yolov5", "config": model.config.to_dict()}
    if getattr(model, "pruning_plans", None):
        spec["plans"] = model.pruning_plans
    return spec


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A small input that traces every layer (the shape pruning needs, not one the model is used at)."""
    return torch.zeros(1, getattr(getattr(model, "config", None), "in_channels", 3), size, size)


def apply_plans(model: nn.Module, plans: list[dict]) -> nn.Module:
    """Re-apply recorded pruning plans to a freshly built base model."""
    if plans:
        from ..graph import group_widths  # torch-pruning is imported only when a model was pruned
        from ..prune import Plan, prune_model

        for i, record in enumerate(plans):
            widths = group_widths(model, example_input(model))
            wrong = [f"{n}: {widths.get(n, 'absent')} here, {w} in the plan" for n, w in record["widths"].items()
                     if widths.get(n) != w]
            if wrong:
                raise ValueError(f"pruning plan {i + 1} does not fit this model ({len(wrong)} groups differ, "
                                 f"first {wrong[0]})")
            prune_model(model, Plan(record["keep"], record["widths"]), example_input(model))
    return model


def build_from_spec(spec: dict) -> nn.Module:
    family = spec.get("family")
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(_FAMILIES)}")
    return apply_plans(_FAMILIES[family](spec["config"]), spec.get("plans", []))


_YOLOV5_SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def _register_yolov5(size: str, depth: float, width: float) -> None:
    @register_model(f"yolov5{size}")
    def build(num_classes: int = 80, **kwargs) -> YOLOv5:
        cfg = YOLOv5Config(depth, width, num_classes=num_classes, name=f"yolov5{size}", **kwargs)
        return YOLOv5(cfg)


for _size, (_d, _w) in _YOLOV5_SIZES.items():
    _register_yolov5(_size, _d, _w)
