"""Detector registry and factory: `create_model("yolov5s", num_classes=1)`.

Each family lives in its own file and registers its sizes here. A model is rebuilt from `(family, config dict)`,
which is what checkpoints store instead of a pickled module. Models of your own come in through `source.py`
(a factory function, an ultralytics yaml or .pt) and are rebuilt the same way, from the source they carry.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .source import build_factory, build_ultralytics, source_of
from .yolov5 import YOLOv5, YOLOv5Config
from .yolov8 import SCALES as _YOLOV8_SCALES
from .yolov8 import YOLOv8, YOLOv8Config

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, tuple[type | None, Callable[[dict], nn.Module]]] = {}  # family -> (class, config -> model)


def register_family(name: str, cls: type | None, build: Callable[[dict], nn.Module]) -> None:
    """A detector family checkpoints can rebuild: instances of `cls` carry a `config` with `to_dict()`, and
    `build(config_dict)` makes a fresh, unpruned one. `cls` None: models that carry their source (source.py)."""
    _FAMILIES[name] = (cls, build)


register_family("yolov5", YOLOv5, lambda cfg: YOLOv5(YOLOv5Config.from_dict(cfg)))
register_family("yolov8", YOLOv8, lambda cfg: YOLOv8(YOLOv8Config.from_dict(cfg)))  # YOLOv8 and YOLO11
register_family("factory", None, build_factory)  # no class: recognised by the source the model carries
register_family("ultralytics", None, build_ultralytics)


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
    if family == "module":
        raise TypeError(f"a {spec['config']['class']} that edgeprune cannot build alone: pass a fresh instance as "
                        f"`base` (load_model(path, base=...)), or build the model with "
                        f"edgeprune.models.source.from_factory (CLI: --model package.module:function) so that its "
                        f"checkpoints record how")
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[family][1](spec["config"])


def family_of(model: nn.Module) -> dict:
    """`{"family": ..., "config": {...}}`: a registered family and its config, the source a model built from a
    factory or an ultralytics file carries, or, for any other module, family "module" and its class (a checkpoint
    of it loads with `load_model(path, base=...)`)."""
    source = source_of(model)
    if source is not None:
        return source
    for name, (cls, _) in _FAMILIES.items():
        if cls is not None and isinstance(model, cls):
            return {"family": name, "config": model.config.to_dict()}
    cls = type(model)
    return {"family": "module", "config": {"class": f"{cls.__module__}.{cls.__qualname__}"}}


def detection_loss(model: nn.Module, img_size: int):
    """The loss of a detector family edgeprune trains: `loss, parts = criterion(raw maps, targets)`."""
    from .loss import YOLOv5Loss
    from .loss_v8 import YOLOv8Loss

    if isinstance(model, YOLOv8):
        return YOLOv8Loss(model.head, img_size=img_size)
    if isinstance(model, YOLOv5):
        return YOLOv5Loss(model.head, img_size=img_size)
    raise ValueError(f"edgeprune trains its YOLOv5 and YOLOv8 / YOLO11 families; {type(model).__name__} has no loss "
                     f"here (prune, export and profile it; train it with your own code)")


def input_channels(model: nn.Module) -> int:
    """The model's input channels: its config's, else the first convolution's, else 3."""
    config = getattr(model, "config", None)
    if hasattr(config, "in_channels"):
        return config.in_channels
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def example_input(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A small input that traces every layer (the shape pruning needs, not one the model is used at)."""
    return torch.zeros(1, input_channels(model), size, size)


_YOLOV5_SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def _register_yolov5(size: str, depth: float, width: float) -> None:
    @register_model(f"yolov5{size}")
    def build(num_classes: int = 80, **kwargs) -> YOLOv5:
        cfg = YOLOv5Config(depth, width, num_classes=num_classes, name=f"yolov5{size}", **kwargs)
        return YOLOv5(cfg)


for _size, (_d, _w) in _YOLOV5_SIZES.items():
    _register_yolov5(_size, _d, _w)


def _register_yolov8(version: str, size: str) -> None:
    name = f"yolov8{size}" if version == "v8" else f"yolo11{size}"

    @register_model(name)
    def build(num_classes: int = 80, **kwargs) -> YOLOv8:
        return YOLOv8(YOLOv8Config(version, size, num_classes=num_classes, name=name, **kwargs))


for _version, _sizes in _YOLOV8_SCALES.items():
    for _size in _sizes:
        _register_yolov8(_version, _size)
