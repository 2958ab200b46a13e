"""Where a model comes from, for models that are not one of edgeprune's own families.

    from_factory("mypkg.nets:build", {"num_classes": 1})   # a function of yours that returns an nn.Module
    from_ultralytics("yolov8n.yaml")                       # or yolo11n.pt: ultralytics, an optional extra

A model built this way carries its *source* (`source_of`): the factory's path and its JSON keyword arguments, or
the ultralytics model's yaml. A checkpoint stores that source, the pruning plans and the weights, so it is rebuilt
by calling the factory (or building the yaml) again: never a pickled module, which would tie the file to one
version of the code and run whatever it holds when loaded.

Ultralytics heads are switched to their export layout (`export_layout`): one output tensor `[B, 4 + C, N]` (boxes
`cx, cy, w, h` in input pixels, class scores after sigmoid), what `yolo export format=onnx` writes, instead of the
training-time tuple that also returns the neck's feature maps (which would pin those maps' widths as outputs).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from pathlib import Path

from torch import nn

SOURCE_ATTR = "edgeprune_source"  # where a model carries its source (copied along by copy.deepcopy)
ULTRALYTICS_HEADS = ("Detect", "Segment", "Pose", "OBB", "v10Detect", "RTDETRDecoder", "WorldDetect", "YOLOEDetect")
_ULTRALYTICS_FIX = "pip install -c constraints.txt ultralytics (torch stays pinned), or build the model in Python"


def source_of(model: nn.Module) -> dict | None:
    """`{"family": "factory" | "ultralytics", "config": {...}}` for a model built here, else None."""
    source = getattr(model, SOURCE_ATTR, None)
    return copy.deepcopy(source) if source is not None else None


def _mark(model: nn.Module, source: dict) -> nn.Module:
    object.__setattr__(model, SOURCE_ATTR, source)  # a plain attribute, not a submodule or a buffer
    return model


def _import_attr(ref: str):
    """`package.module:function` (or `:Class.method`) → the object; the working directory is importable, as for
    `python -m` (uvicorn and gunicorn do the same), so `--model my_nets:build` finds ./my_nets.py."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model factory {ref!r}: expected package.module:function (e.g. mypkg.nets:build)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model factory {ref!r}: cannot import {module_name} ({e}); install the package or run "
                         f"from the folder that holds it") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model factory {ref!r}: {module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model factory {ref!r}: {attr} is not callable")
    return obj


def from_factory(ref: str, kwargs: dict | None = None) -> nn.Module:
    """`ref(**kwargs)`, marked with its source. `kwargs` must be JSON (a checkpoint stores them as such)."""
    kwargs = dict(kwargs or {})
    try:
        kwargs = json.loads(json.dumps(kwargs))
    except TypeError as e:
        raise ValueError(f"model factory {ref!r}: keyword arguments must be JSON values ({e})") from None
    model = _import_attr(ref)(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {ref!r} returned {type(model).__name__}, not a torch nn.Module")
    return _mark(model, {"family": "factory", "config": {"factory": ref, "kwargs": kwargs}})


def build_factory(config: dict) -> nn.Module:
    return from_factory(config["factory"], config.get("kwargs"))


def export_layout(model: nn.Module) -> nn.Module:
    """Switch ultralytics heads (found by class name, so ultralytics is not imported) to their export forward:
    one tensor out, as `yolo export format=onnx` does, and say so in `row_layout` for a detection model (its
    `[B, 4 + C, N]` is what edgeprune's YOLOv8 gives). Other modules are left as they are."""
    for m in model.modules():
        if type(m).__name__ in ULTRALYTICS_HEADS and hasattr(m, "export"):
            m.export, m.format = True, "onnx"
            if hasattr(m, "dynamic"):
                m.dynamic = False
    if type(model).__name__ == "DetectionModel" and type(model.model[-1]).__name__ in ("Detect", "v10Detect"):
        object.__setattr__(model, "row_layout", "yolov8")
    return model


def from_ultralytics(path: str | Path, num_classes: int | None = None) -> nn.Module:
    """An ultralytics detector from its yaml (fresh weights) or its .pt (trained weights), in float32 eval mode
    with its head in the export layout, marked with its source (the yaml, with the class count it ended with).

    A .pt is unpickled by ultralytics: it runs code from the file, so use files you trust (your own training)."""
    path = Path(path)
    if path.suffix == ".pt" and not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (edgeprune does not download ultralytics weights)")
    try:
        from ultralytics import RTDETR, YOLO
    except ImportError as e:
        raise ImportError(f"{path}: an ultralytics model needs ultralytics ({e}): {_ULTRALYTICS_FIX}") from None
    wrapper = (RTDETR if "rtdetr" in path.name.lower() else YOLO)(str(path))
    model = wrapper.model
    if num_classes is not None and path.suffix in (".yaml", ".yml") and model.yaml.get("nc") != num_classes:
        model = type(model)(cfg=dict(model.yaml, nc=num_classes), verbose=False)
    model = export_layout(model.float().eval())
    return _mark(model, {"family": "ultralytics", "config": {"class": type(model).__name__,
                                                             "yaml": json.loads(json.dumps(model.yaml))}})


def build_ultralytics(config: dict) -> nn.Module:
    """A fresh (unpruned, untrained) ultralytics model from the yaml a checkpoint stored."""
    try:
        from ultralytics.nn import tasks
    except ImportError as e:
        raise ImportError(f"this checkpoint holds an ultralytics {config.get('class')}, which needs ultralytics "
                          f"({e}): {_ULTRALYTICS_FIX}") from None
    model = getattr(tasks, config["class"])(cfg=copy.deepcopy(config["yaml"]), verbose=False)
    model = export_layout(model.float().eval())
    return _mark(model, {"family": "ultralytics", "config": copy.deepcopy(config)})
