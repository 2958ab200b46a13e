"""Checkpoints without pickled code: the model's family and config, its weights, and the training state.

A checkpoint is a plain dict that `torch.load(path, weights_only=True)` reads:

    {"format": "edgeprune-checkpoint", "version": 1,
     "model": {"family": "yolov5", "config": {...},    # rebuilds the architecture (or "factory": your function
               "plans": [...]},                        #   and its kwargs, "ultralytics": its yaml), then the plans
     "state_dict": {...},                              # the weights to use (the EMA weights when training had EMA)
     "metrics": {...}, "train": {...}}                 # optional: last metrics, state to resume training

Files are written atomically, so a kill mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import nn

from .models import build_base, example_input, family_of
from .utils.files import atomic_path

FORMAT = "edgeprune-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign, or does not fit the model it is loaded into."""


class PickledModelFile(CheckpointError):
    """A torch file that needs pickled Python objects to load: an ultralytics .pt, or a whole `torch.save(model)`."""


def atomic_save(obj: object, path: str | Path) -> None:
    """`torch.save` to a temporary file in the same folder, then rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: nn.Module, metrics: dict | None = None, train: dict | None = None,
                    state_dict: dict | None = None) -> None:
    """Save `model` (or `state_dict` for its weights, e.g. the EMA copy) with what rebuilds it.

    A `.safetensors` path writes the weights as safetensors with the rest as JSON metadata (no training state).
    """
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_spec(model),
        "state_dict": state_dict if state_dict is not None else model.state_dict(),
        "metrics": metrics or {},
    }
    if train is not None:
        ckpt["train"] = train
    if Path(path).suffix == ".safetensors":
        _save_safetensors(ckpt, Path(path))
    else:
        atomic_save(ckpt, path)


def _save_safetensors(ckpt: dict, path: Path) -> None:
    from safetensors.torch import save_file

    header = {k: v for k, v in ckpt.items() if k not in ("state_dict", "train")}
    tensors = {k: v.detach().contiguous() for k, v in ckpt["state_dict"].items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"edgeprune": json.dumps(header)})


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({e}).") from None
    if "edgeprune" not in meta:
        raise CheckpointError(f"{path}: safetensors file without edgeprune metadata: it holds weights but not the "
                              f"model they belong to. Save models with edgeprune.checkpoint.save_checkpoint.")
    return {**json.loads(meta["edgeprune"]), "state_dict": state_dict}


_FIX = "Pass a .pt written by edgeprune train / prune / search (the previous last.pt if this one was cut short)"


def _looks_like(path: Path) -> str:
    """What a file that torch cannot load as a checkpoint seems to be, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if path.suffix == ".onnx":
        return "an ONNX model (profile and the deploy tools take it as it is)"
    if head.startswith(b"PK\x03\x04"):
        return "a torch archive that does not load: damaged or truncated"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file"
    if head[:1] == b"\x80":
        return "a plain pickle file, not a torch checkpoint"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "neither a torch archive nor any format edgeprune knows (damaged?)"


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint; every failure names the file and says what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _validate(_load_safetensors(path), path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False (arbitrary code execution): never pass it on
        if "Unsupported global" not in str(e):
            raise CheckpointError(f"{path}: not an edgeprune checkpoint: {_looks_like(path)}. {_FIX}") from None
        raise PickledModelFile(
            f"{path}: not an edgeprune checkpoint: it needs pickled Python objects to load "
            f"(an ultralytics or full-model torch.save file?). Load that model in Python and pass its state_dict "
            f"to edgeprune.checkpoint.save_checkpoint."
        ) from None
    except Exception:  # torch raises RuntimeError, EOFError, IndexError, BadZipFile... on damaged files
        raise CheckpointError(f"{path}: not an edgeprune checkpoint: {_looks_like(path)}. {_FIX}") from None
    return _validate(ckpt, path)


def _validate(ckpt: object, path: Path) -> dict:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a torch file but not an edgeprune checkpoint (no 'format': '{FORMAT}' entry). "
            f"Save models with edgeprune.checkpoint.save_checkpoint."
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this edgeprune "
                              f"understands ({VERSION}); upgrade edgeprune.")
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry; it is incomplete.")
    return ckpt


def load_weights(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> nn.Module:
    """Load weights strictly, turning torch's long mismatch report into one readable error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} missing tensors (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
        raise CheckpointError(f"{source}: weights do not fit this model: {'; '.join(parts)}. "
                              f"Was it saved from another model size, class count or pruning plan?")
    model.load_state_dict(state_dict)
    return model


def load_model(path: str | Path, base: nn.Module | None = None) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights; returned in eval mode.

    `base`: for a model of your own that does not carry its source (built without
    `edgeprune.models.source.from_factory`), a fresh instance of the unpruned architecture; the checkpoint's
    pruning plans are applied to it before its weights are loaded.
    """
    ckpt = load_checkpoint(path)
    if base is None and ckpt["model"].get("family") == "module":
        try:
            build_base(ckpt["model"])
        except TypeError as e:
            raise CheckpointError(f"{path} holds {e}") from None
    try:
        if base is None:
            model = build_from_spec(ckpt["model"])
        else:
            model = apply_plans(base, ckpt["model"].get("plans", []))
    except (KeyError, TypeError, ValueError) as e:
        what = "the given base model" if base is not None else "its config"
        raise CheckpointError(f"{path}: cannot rebuild the pruned model from {what}: {e}. Is it the same "
                              f"architecture the checkpoint was pruned from?") from None
    return load_weights(model, ckpt["state_dict"], source=str(path)).eval()


def model_spec(model: nn.Module) -> dict:
    """`{"family": ..., "config": {...}, "plans": [...]}`: enough to rebuild `model`'s architecture without pickle.
    `plans` lists the pruning plans applied to the base model, in order (`prune.plan.plans_of`)."""
    from .prune.plan import plans_of

    spec = family_of(model)
    if plans_of(model):
        spec["plans"] = plans_of(model)
    return spec


def apply_plans(model: nn.Module, plans: list[dict]) -> nn.Module:
    """Re-apply recorded pruning plans to a freshly built base model."""
    if plans:
        from .prune.graph import group_widths  # torch-pruning is imported only when a model was pruned
        from .prune.plan import Plan, prune_model

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
    """The model `model_spec` described: its base built from the registry, its pruning plans re-applied."""
    return apply_plans(build_base(spec), spec.get("plans", []))


def adopt(base: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
    """An edgeprune-pruned copy of `base` that carries the weights of `pruned`, a copy of `base` that another tool
    (Torch-Pruning, NVIDIA ModelOpt, ...) pruned physically: same module names, fewer channels.

    Each group keeps as many channels as `pruned`'s root layer has; the channels themselves come with `pruned`'s
    state dict, so the result computes exactly what `pruned` computes, and saves and loads as an edgeprune
    checkpoint (base config + plan + weights) instead of a pickled module. Raises ValueError when `pruned` changed
    something that is not a group's width (its tensors then do not fit).
    """
    from .prune.graph import find_groups
    from .prune.plan import Plan, pruned_model

    modules = dict(pruned.named_modules())
    groups = find_groups(base, example_inputs)
    widths = {}
    for g in groups:
        root = modules.get(g.root.name)
        if root is None:
            raise ValueError(f"the pruned model has no layer {g.root.name} (was it renamed?)")
        widths[g.name] = root.weight.shape[0]
    plan = Plan({name: list(range(w)) for name, w in widths.items()}, {g.name: g.width for g in groups},
                {"mode": "adopted", "from": type(pruned).__name__})
    model = pruned_model(base, plan, example_inputs)
    load_weights(model, pruned.state_dict(), source="the pruned model")
    return model


def read_weights(path: str | Path) -> dict:
    """A state dict from an edgeprune checkpoint, a `torch.save(model.state_dict())` file (also one nested under
    "state_dict" or "model"), or a .safetensors file; read without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - damaged, foreign or pickled: one message
        raise CheckpointError(f"{path}: not a weights file: {_looks_like(path)}. Save weights with "
                              f"torch.save(model.state_dict(), path) or pass an edgeprune checkpoint") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj["state_dict"]
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict (a dict of tensors)")
    return obj


def load_source(source: str | Path, kwargs: dict | None = None, weights: str | Path | None = None) -> nn.Module:
    """Any model a verb takes, in eval mode:

    - an edgeprune checkpoint (.pt / .safetensors);
    - a registered name (`yolov5n`), built fresh with `kwargs`;
    - `package.module:function`, your factory, called with `kwargs` (models.source.from_factory);
    - an ultralytics `.yaml` (fresh) or `.pt` (trained), with ultralytics installed.

    `weights` (a state dict, .safetensors or checkpoint) are loaded into a model built from a name, a factory or a
    yaml. Whatever it is, the model saves as an edgeprune checkpoint that rebuilds it.
    """
    from .models import create_model, list_models
    from .models.source import from_factory, from_ultralytics

    text, path = str(source), Path(source)
    if path.suffix in (".pt", ".safetensors") or (path.is_file() and path.suffix not in (".yaml", ".yml")):
        if weights is not None:
            raise CheckpointError(f"{path}: a checkpoint brings its own weights; --weights is for a model built "
                                  f"from a name, a factory or a yaml")
        try:
            return load_model(path)
        except PickledModelFile as e:
            try:
                return from_ultralytics(path)
            except ImportError as missing:
                raise CheckpointError(f"{e} If it is an ultralytics model: {missing}") from None
    if text in list_models():
        model = create_model(text, **(kwargs or {}))
    elif ":" in text:
        model = from_factory(text, kwargs)
    elif path.suffix in (".yaml", ".yml"):
        model = from_ultralytics(path)
    else:
        raise CheckpointError(f"{text}: not a model edgeprune can load: pass a checkpoint file, a registered name "
                              f"({', '.join(list_models())}), package.module:function (a factory of yours) or an "
                              f"ultralytics .yaml / .pt")
    if weights is not None:
        load_weights(model, read_weights(weights), source=str(weights))
    return model.eval()
