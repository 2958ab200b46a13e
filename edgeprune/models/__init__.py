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
_FAMILIES: dict[str, tuple[type, Callable[[dict], nn.Module]]] = {}  # family -> (its class, config dict -> model)


def register_family(name: str, cls: type, build: Callable[[dict], nn.Module]) -> None:
    """A detector family checkpoints can rebuild: instances of `cls` carry a `config` with `to_dict()`, and
    `build(config_dict)` makes a fresh, unpruned one."""
    _FAMILIES[name] = (cls, build)


register_family("yolov5", YOLOv5, lambda cfg: YOLOv5(YOLOv5Config.from_dict(cfg)))


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


def build_base(spec: dict) -> nn.Module:
    """The unpruned model a spec names (its family and config); edgeprune.checkpoint re-applies the plans."""
    family = spec.get("family")
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[family][1](spec["config"])


def family_of(model: nn.Module) -> dict:
    """`{"family": ..., "config": {...}}` of a model of a registered family; TypeError for any other module."""
    for name, (cls, _) in _FAMILIES.items():
        if isinstance(model, cls):
            return {"family": name, "config": model.config.to_dict()}
    raise TypeError(f"{type(model).__name__} is not a registered detector family ({', '.join(_FAMILIES)})")


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A small input that traces every layer (the shape pruning needs, not one the model is used at)."""
    return torch.zeros(1, getattr(getattr(model, "config", None), "in_channels", 3), size, size)


_YOLOV5_SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def _register_yolov5(size: str, depth: float, width: float) -> None:
    @register_model(f"yolov5{size}")
    def build(num_classes: int = 80, **kwargs) -> YOLOv5:
        cfg = YOLOv5Config(depth, width, num_classes=num_classes, name=f"yolov5{size}", **kwargs)
        return YOLOv5(cfg)


for _size, (_d, _w) in _YOLOV5_SIZES.items():
    _register_yolov5(_size, _d, _w)
