"""Get a calibrated latency predictor for a model on a backend: load the saved table, or build, calibrate and save it.

Used by `edgeprune profile --predict` and by the pruning-rate search. The calibration models are pruned copies of
the model itself (uniform ratios with and without rounding, plus random per-group plans), so the correction is
fitted on the kind of candidates the search will ask about (docs/latency-predictor.md).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

from torch import nn

from ..models import example_input
from ..prune.graph import find_groups
from ..prune.importance import score_groups
from ..prune.plan import plan_from_ratios, prune_model
from .predictor import LatencyPredictor, measure_models

__all__ = ["UNIFORM", "calibration_models", "default_align", "predictor_for", "pruned_copy"]

UNIFORM = ((0.0, 8), (0.3, 1), (0.3, 8), (0.5, 1), (0.5, 8), (0.7, 1), (0.7, 8))


def default_align(backend) -> int:
    """The channel multiple the backend's fast kernels want: onnxruntime's NCHWc block on this CPU (16 with
    AVX-512, else 8); TensorRT and CUDA: 8 (FP16 tensor cores), 32 for INT8."""
    fp = backend.fingerprint()
    if str(fp.get("precision", "")).lower() == "int8":
        return 32
    if getattr(backend, "name", "") in ("ort", "onnxruntime"):
        try:
            return 16 if " avx512f" in Path("/proc/cpuinfo").read_text() else 8
        except OSError:
            return 8
    return 8


def pruned_copy(model: nn.Module, ratios: dict[str, float] | float, round_to: int, groups=None,
                scores=None) -> nn.Module:
    """A copy of `model` with each group pruned by its ratio (L1 importance; min width 8)."""
    groups = groups if groups is not None else find_groups(model, example_input(model))
    scores = scores if scores is not None else score_groups(groups, "l1")
    m = copy.deepcopy(model).eval()
    prune_model(m, plan_from_ratios(groups, scores, ratios, round_to=round_to, min_width=8), example_input(m))
    return m


def calibration_models(model: nn.Module, random_plans: int = 2, seed: int = 0) -> list[nn.Module]:
    """The model itself, uniform prunings at 0.3 / 0.5 / 0.7 (round_to 1 and 8), and `random_plans` random
    per-group plans with each rounding (ratios in [0, 0.8]): unaligned widths let the fit see their cost."""
    groups = find_groups(model, example_input(model))
    scores = score_groups(groups, "l1")
    rng = random.Random(f"calibration-{seed}")
    plans = [(r, rt) for r, rt in UNIFORM]
    plans += [({g.name: rng.uniform(0.0, 0.8) for g in groups}, rt) for rt in (1, 8) for _ in range(random_plans)]
    return [pruned_copy(model, r, rt, groups, scores) for r, rt in plans]


def predictor_for(model: nn.Module, input_shape: tuple[int, ...], backend, path: str | Path | None = None,
                  levels: tuple[float, ...] = (0.2, 0.5, 1.0), align: int | None = None,
                  log=print) -> LatencyPredictor:
    """The predictor saved at `path` (its fingerprint must match the backend's, and its input shape the one
    asked for), or a new one built on `model`, calibrated on `calibration_models(model)` and saved there."""
    shape = tuple(int(d) for d in input_shape)
    if path is not None and Path(path).is_file():
        pred = LatencyPredictor.load(path, backend=backend)
        if pred.input_shape != shape:
            raise ValueError(f"{path}: latency table measured at input {list(pred.input_shape)}, asked for "
                             f"{list(shape)}; pass another --predict path to build a table for this shape")
        log(f"latency table {path}: {len(pred.entries)} entries, calibrated on {pred.calibration.get('n', 0)} "
            f"models (fit error {pred.calibration.get('fit_mape', float('nan')):.1f} %)")
        return pred
    align = default_align(backend) if align is None else align
    log(f"building a latency table on {getattr(backend, 'name', backend)} (align {align}) ...")
    pred = LatencyPredictor.build(model, shape, backend, levels=levels, align=align)
    cal = calibration_models(model)
    log(f"  {pred.stats['measured_units']} unit configurations measured in {pred.stats['measure_s']:.0f} s; "
        f"calibrating on {len(cal)} pruned copies ...")
    rec = pred.calibrate(cal, measure_models(cal, backend, shape))
    log(f"  T = {rec['a']:.3f}·ΣLUT + {rec['r']:.3f}·R + {rec['b']:.3f} ms (fit error {rec['fit_mape']:.1f} %, "
        f"{len(rec['outliers'])} outlier(s) left out)")
    if path is not None:
        pred.save(path)
        log(f"  saved {path}")
    return pred
