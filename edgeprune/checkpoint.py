"""Checkpoints without pickled code: the model's family and config, its weights, and the training state.

A checkpoint is a plain dict that `torch.load(path, weights_only=True)` reads:

    {"format": "edgeprune-checkpoint", "version": 1,
     "model": {"family": "yolov5", "config": {...}},   # rebuilds the architecture
     "state_dict": {...},                              # the weights to use (the EMA weights when training had EMA)
     "metrics": {...}, "train": {...}}                 # optional: last metrics, state to resume training

Files are written atomically, so a kill mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch
from torch import nn

from .models import build_from_spec, model_spec

FORMAT = "edgeprune-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign, or does not fit the model it is loaded into."""


def atomic_save(obj: object, path: str | Path) -> None:
    """`torch.save` to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, model: nn.Module, metrics: dict | None = None, train: dict | None = None,
                    state_dict: dict | None = None) -> None:
    """Save `model` (or `state_dict` for its weights, e.g. the EMA copy) with what rebuilds it."""
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_spec(model),
        "state_dict": state_dict if state_dict is not None else model.state_dict(),
        "metrics": metrics or {},
    }
    if train is not None:
        ckpt["train"] = train
    atomic_save(ckpt, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint; every failure names the file and says what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):
            raise CheckpointError(f"{path}: corrupt or not a torch file ({str(e).splitlines()[0]}). "
                                  f"Use the previous checkpoint or train again.") from None
        raise CheckpointError(
            f"{path}: not an edgeprune checkpoint: it needs pickled Python objects to load "
            f"(an ultralytics or full-model torch.save file?). Load that model in Python and pass its state_dict "
            f"to edgeprune.checkpoint.save_checkpoint."
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, BadZipFile... on damaged files
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Use the previous checkpoint or train again."
        ) from None
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


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights; returned in eval mode."""
    ckpt = load_checkpoint(path)
    try:
        model = build_from_spec(ckpt["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model from its config: {e}") from None
    return load_weights(model, ckpt["state_dict"], source=str(path)).eval()
