"""Per-layer lookup-table latency predictor, calibrated on full-model measurements (HALP / NetAdapt idea).

Measuring every candidate of a pruning search on a board is slow; most queries are answered here instead:

1. `build` decomposes the base model into units at their real shapes (edgeprune.latency.layers: a conv with its
   BN and activation is one unit, as runtimes fuse them; pools, upsamples, adds and concats are units of their
   own) and groups them into *families* (same op, kernel, stride, H×W, activation; different channel counts).
   For each family it measures a small grid of channel counts (fractions `levels` of the base widths, rounded to
   multiples of 8, plus the base widths), one tiny ONNX model per grid point, all in one `measure_many` call.
2. A unit's latency is read from the table (exact key) or interpolated bilinearly over its family's
   (cin, cout) grid; channel counts outside the grid are extrapolated linearly.
3. Fusion across units, launch overheads and memory traffic between layers are not additive, so the model's
   latency is `T ≈ a · Σ LUT + b`, fitted by least squares on a few full-model measurements (`calibrate`).
   Convolutions whose channel counts are not multiples of `align` make the runtime change memory layout
   around them (a whole-graph cost no isolated unit shows), so the full form is
   `T ≈ a · Σ LUT + r · R + b`, R = millions of tensor elements entering and leaving such convolutions.

The table belongs to one device: it is saved with the backend's fingerprint, and `load` refuses a table whose
fingerprint differs from the backend it is asked to serve. See docs/latency-predictor.md.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..utils.files import atomic_write_text
from .fit import fit_correction, mape, pearson, spearman
from .layers import Unit, decompose, unit_onnx

__all__ = ["FingerprintMismatch", "LatencyPredictor", "mape", "measure_models", "model_onnx", "spearman"]

FORMAT = "edgeprune-latency-lut"
UNIT_CHUNK, MODEL_CHUNK = 64, 4  # models per measure_many call (one progress step each)


class FingerprintMismatch(ValueError):
    """A lookup table measured on one device was offered for another."""


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def model_onnx(model: nn.Module, input_shape: tuple[int, ...], opset: int = 13) -> bytes:
    """ONNX bytes of a whole model at a static input shape (TorchScript exporter, eval mode, no verification)."""
    was = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(*input_shape),), buf, opset_version=opset, dynamo=False,
                              do_constant_folding=True, input_names=["images"])
    finally:
        model.train(was)
    return buf.getvalue()


def measure_models(models: Iterable[nn.Module], backend, input_shape: tuple[int, ...]) -> list[float]:
    """Median latency (ms) of each whole model on `backend`, all sent in one `measure_many` call."""
    try:  # the backends' own export (same graph as `edgeprune export`, and the latency cache's key)
        from .to_onnx import module_to_onnx as export
    except ImportError:
        export = model_onnx
    models, out = list(models), []
    with tqdm(total=len(models), desc="calibration models", unit="model") as bar:
        for i in range(0, len(models), MODEL_CHUNK):  # chunks: a progress bar, and parallel boards stay busy
            jobs = [(export(m, input_shape), tuple(input_shape)) for m in models[i:i + MODEL_CHUNK]]
            out += [s.median_ms for s in backend.measure_many(jobs)]
            bar.update(len(jobs))
    return out


def _axis(values: list[int], levels: tuple[float, ...], fixed: bool, step: int) -> list[int]:
    """Grid points for one channel axis: the base widths, plus fractions of the widest rounded to `step`."""
    pts = set(values)
    if not fixed:
        top = max(values)
        for f in levels:
            c = f * top
            q = step if top >= 2 * step and top % step == 0 else 1
            pts.add(max(q, round(c / q) * q))
    return sorted(p for p in pts if p >= 1)


def _off_axis(axis: list[int], fixed: bool, align: int) -> list[int]:
    """Unaligned companions of an axis's points: a point that is a multiple of `align` moves half a block down
    (up where that leaves < 1); the others stay."""
    if fixed:
        return list(axis)
    half = max(align // 2, 1)
    return sorted({p if p % align else p - half if p > half else p + half for p in axis})


def _bracket(axis: list[int], v: float) -> tuple[int, int, float]:
    """Indices (i, j) of the grid points around v and the weight of j (may be < 0 or > 1: extrapolation)."""
    if len(axis) == 1:
        return 0, 0, 0.0
    k = bisect_right(axis, v)
    i = min(max(k - 1, 0), len(axis) - 2)
    j = i + 1
    return i, j, (v - axis[i]) / (axis[j] - axis[i])


# ---------------------------------------------------------------------------------------------------------------
# the predictor
# ---------------------------------------------------------------------------------------------------------------
class LatencyPredictor:
    """Lookup-table latency predictor for one input shape on one device.

        pred = LatencyPredictor.build(model, (1, 3, 320, 320), backend)   # measures the LUT
        pred.calibrate(models, measured_ms)                                # fits T ≈ a·ΣLUT + r·R + b
        pred.predict(candidate)                                            # ms
        pred.evaluate(held_out, measured_ms)                               # {"mape": ..., "spearman": ...}
        pred.save("lut.json"); LatencyPredictor.load("lut.json", backend=backend)
    """

    def __init__(self, input_shape: tuple[int, ...], fingerprint: dict, backend_name: str = "",
                 entries: dict[str, float] | None = None, grids: dict[str, dict] | None = None,
                 overhead_ms: float = 0.0, a: float = 1.0, b: float = 0.0, calibration: dict | None = None,
                 backend=None, r: float = 0.0, align: int = 8) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.fingerprint = dict(fingerprint)
        self.backend_name = backend_name
        self.entries = dict(entries or {})  # unit key -> ms (launch overhead already subtracted)
        self.grids = dict(grids or {})  # family -> {"cin": [...], "cout": [...], "template": unit key}
        self.overhead_ms = float(overhead_ms)
        self.a, self.b = float(a), float(b)
        self.r = float(r)  # ms per million elements crossing a layout change (unaligned convolutions)
        self.align = int(align)
        self.calibration = dict(calibration or {"n": 0})
        self.backend = backend  # when set, units the table lacks are measured on demand
        self.stats = {"measured_units": 0, "measure_s": 0.0}

    # -- building -----------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, model: nn.Module | Callable[[], nn.Module], input_shape: tuple[int, ...], backend,
              levels: tuple[float, ...] = (0.2, 0.5, 1.0), step: int = 8, align: int | None = 8,
              calibration_models: list[nn.Module] | None = None) -> LatencyPredictor:
        """Measure the table for `model` (or `model()` when a factory is given) at `input_shape` on `backend`.

        For every family of units, channel counts on a grid (`levels` × the widest base width, rounded to
        `step`, plus the base widths; axes fixed by the task, such as the image channels or Detect outputs,
        are not varied) are measured once each. `align` is the channel multiple the runtime's fast kernels want
        (onnxruntime's NCHWc convolutions: 16 with AVX-512, 8 with AVX2; TensorRT FP16: 8): convolutions whose
        channel counts are not multiples of it make the runtime change memory layout around them, a cost of
        the whole graph that isolated units do not show; the correction models it (see `features`).
        `calibration_models`, when given, are measured whole and used to fit the correction.
        """
        if not isinstance(model, nn.Module):
            model = model()
        pred = cls(input_shape, backend.fingerprint(), getattr(backend, "name", ""), backend=backend)
        pred.align = int(align) if align else 0
        step = max(step, pred.align)  # grid points on the fast path: multiples of the runtime's channel block
        fams: dict[str, list[Unit]] = {}
        for u in decompose(model, pred.input_shape):
            fams.setdefault(u.family, []).append(u)
        todo: dict[str, Unit] = {}
        for fam, us in fams.items():
            if us[0].op == "other":
                for u in us:
                    todo.setdefault(u.key, u)
                continue
            grid = pred._family_grid(us, levels, step)
            pred.grids[fam] = grid
            t = us[0]
            for cin_key, cout_key in (("cin", "cout"), ("ucin", "ucout")):
                for ci in grid.get(cin_key) or []:
                    for co in (grid[cout_key] if grid["cout"] is not None else [ci]):
                        u = t.with_channels(ci, co)
                        todo.setdefault(u.key, u)
        pred._measure(list(todo.values()), with_overhead=True)
        if calibration_models:
            pred.calibrate(calibration_models, measure_models(calibration_models, backend, pred.input_shape))
        return pred

    def _family_grid(self, us: list[Unit], levels: tuple[float, ...], step: int) -> dict:
        """The channel grid of one family: `cin` × `cout` on the fast path (multiples of `step`), and for dense
        convolutions `ucin` × `ucout` just off it (widths that are not multiples of `align`, which the runtime
        runs with slower kernels: onnxruntime's im2col + GEMM instead of its NCHWc convolution). One-axis units
        (pools, adds, concats, depthwise convs) have `cout` None: their output width follows the input."""
        t = us[0]
        fixed_in, fixed_out = all(u.fixed_in for u in us), all(u.fixed_out for u in us)
        two = t.channel_dims == 2
        cin = _axis([u.cin for u in us], levels, fixed_in, step)
        cout = _axis([u.cout for u in us], levels, fixed_out, step) if two else None
        gmode = t.attrs.get("groups_mode", "dense")
        if gmode.startswith("grouped:"):  # channel counts must stay multiples of the group count
            g = int(gmode.split(":")[1])
            cin = sorted({max(g, c - c % g) for c in cin})
            cout = sorted({max(g, c - c % g) for c in cout})
        grid = {"template": t.key, "fixed_in": fixed_in, "fixed_out": fixed_out or not two, "cin": cin,
                "cout": cout}
        if two and gmode == "dense" and self.align > 1 and not (fixed_in and fixed_out):
            grid["ucin"], grid["ucout"] = _off_axis(cin, fixed_in, self.align), _off_axis(cout, fixed_out, self.align)
        return grid

    def _measure(self, units: list[Unit], with_overhead: bool = False) -> None:
        if self.backend is None:
            raise KeyError(f"{len(units)} unit(s) are not in the lookup table (first: {units[0].key}) and no "
                           "backend is attached to measure them: build the table for this model, or pass "
                           "backend= to LatencyPredictor.load")
        t0 = time.perf_counter()
        jobs = units + [Unit("act", 1, 1, {"act": "ReLU", "h": 1, "w": 1})] if with_overhead else units
        stats = []
        # one measure_many call per chunk (a remote pool of boards shares each chunk): a progress bar, no silence
        with tqdm(total=len(jobs), desc="latency table", unit="unit", disable=len(jobs) < UNIT_CHUNK) as bar:
            for i in range(0, len(jobs), UNIT_CHUNK):
                chunk = [unit_onnx(u) for u in jobs[i:i + UNIT_CHUNK]]
                stats += self.backend.measure_many(chunk)
                bar.update(len(chunk))
        if with_overhead:
            self.overhead_ms = stats[-1].median_ms
        for u, s in zip(units, stats):
            self.entries[u.key] = max(s.median_ms - self.overhead_ms, 0.0)
        self.stats["measured_units"] += len(units)
        self.stats["measure_s"] += time.perf_counter() - t0

    # -- predicting ---------------------------------------------------------------------------------------------
    def _unaligned(self, g: dict | None, u: Unit) -> bool:
        if not self.align or u.op != "conv" or g is None:
            return False
        dims = ([] if g["fixed_in"] else [u.cin]) + ([] if g["fixed_out"] else [u.cout])
        return any(c % self.align for c in dims)

    def _grid_value(self, g: dict, u: Unit) -> float | None:
        """Interpolate `u` over its family's grid: the off-path grid for unaligned convolutions when there is one."""
        tmpl = json.loads(g["template"])
        off = "ucin" in g and self._unaligned(g, u)
        cin, cout = (g["ucin"], g["ucout"]) if off else (g["cin"], g["cout"])

        def at(ci, co) -> float | None:
            key = json.dumps({**tmpl, "cin": ci, "cout": co}, sort_keys=True, separators=(",", ":"))
            return self.entries.get(key)

        i, j, wi = _bracket(cin, u.cin)
        if cout is None:  # one channel axis: cout follows cin
            lo, hi = at(cin[i], cin[i]), at(cin[j], cin[j])
            return None if lo is None or hi is None else lo + wi * (hi - lo)
        k, m, wo = _bracket(cout, u.cout)
        vals = [at(cin[i], cout[k]), at(cin[j], cout[k]), at(cin[i], cout[m]), at(cin[j], cout[m])]
        if any(v is None for v in vals):
            return None
        v00, v10, v01, v11 = vals
        return v00 * (1 - wi) * (1 - wo) + v10 * wi * (1 - wo) + v01 * (1 - wi) * wo + v11 * wi * wo

    def features(self, model_or_units: nn.Module | list[Unit]) -> tuple[float, float]:
        """(S, R): S = Σ of the units' table entries in ms; R = millions of tensor elements entering and leaving
        convolutions whose (prunable) channel counts are not multiples of `align` (the layout changes the
        runtime inserts around them). Units the table cannot answer are measured when a backend is attached
        (KeyError otherwise).
        """
        units = model_or_units if isinstance(model_or_units, list) else decompose(model_or_units, self.input_shape)
        total, transit, missing = 0.0, 0.0, []
        for u in units:
            g = self.grids.get(u.family)
            if self._unaligned(g, u):
                st = u.attrs["stride"]
                transit += (u.cin * u.attrs["h"] * u.attrs["w"]
                            + u.cout * -(-u.attrs["h"] // st[0]) * -(-u.attrs["w"] // st[1])) / 1e6
            v = self.entries.get(u.key)
            if v is None and g is not None:
                v = self._grid_value(g, u)
            if v is None:
                missing.append(u)
            else:
                total += max(v, 0.0)
        if missing:
            self._measure(list({u.key: u for u in missing}.values()))
            total += sum(self.entries[u.key] for u in missing)
        return total, transit

    def lut_sum(self, model_or_units: nn.Module | list[Unit]) -> float:
        """Σ of the units' table entries (ms), before the correction."""
        return self.features(model_or_units)[0]

    def _correct(self, s: float, r: float) -> float:
        return self.a * s + self.r * r + self.b

    def predict(self, model: nn.Module | list[Unit]) -> float:
        """Predicted latency (ms) of `model` (or of its units, see `features`) at the table's input shape:
        a · ΣLUT + r · R + b."""
        return self._correct(*self.features(model))

    # -- correction ---------------------------------------------------------------------------------------------
    def calibrate(self, models: list[nn.Module], measured_ms: list[float], keep_previous: bool = False) -> dict:
        """Fit the correction by least squares on whole models with measured latencies (ms).

        `T = a · ΣLUT + r · R + b` (R: see `features`) when the calibration models have enough spread in R (at
        least 5 models, some with unaligned widths, r ≥ 0 fitted); otherwise `T = a · ΣLUT + b` (r = 0), and with
        a single point (or one ΣLUT) a scale only (b = 0). With `keep_previous`, the new points are added to
        those of earlier calls (recalibration with more data); otherwise they replace them. The fit is robust
        to one or two disturbed measurements (`_robust_fit`); points it leaves out are listed in `outliers`.
        Returns the calibration record: a, r, b, n, outliers, the form used and the fit's own MAPE (all points).
        """
        if len(models) != len(measured_ms) or not models:
            raise ValueError(f"calibrate needs one measured latency per model ({len(models)} models, "
                             f"{len(measured_ms)} latencies)")
        pts = [(*self.features(m), float(t)) for m, t in zip(models, measured_ms)]
        if keep_previous:
            pts = [tuple(p) for p in self.calibration.get("points", [])] + pts
        X = np.array([[p[0], p[1]] for p in pts], dtype=float)
        y = np.array([p[2] for p in pts], dtype=float)
        fit, out = fit_correction(X, y)
        n = len(pts)
        self.a, self.r, self.b = float(fit[1]), float(fit[2]), float(fit[3])
        pred = [self._correct(p[0], p[1]) for p in pts]
        self.calibration = {"form": fit[0], "a": self.a, "r": self.r, "b": self.b, "n": n,
                            "outliers": [int(i) for i in np.flatnonzero(out)], "fit_mape": mape(pred, list(y)),
                            "points": [list(p) for p in pts]}
        return {k: v for k, v in self.calibration.items() if k != "points"}

    def evaluate(self, models: list[nn.Module], measured_ms: list[float]) -> dict:
        """Error of the predictor against measured latencies (ms) of models it was not calibrated on.

        Returns mape (%), max_ape (%), spearman and pearson correlations, mean signed error (%, > 0 means the
        predictor overestimates), n, and the (predicted, measured) pairs.
        """
        pred = [self.predict(m) for m in models]
        true = [float(t) for t in measured_ms]
        ape = [100.0 * abs(p - t) / t for p, t in zip(pred, true)]
        return {"n": len(true), "mape": sum(ape) / len(ape), "max_ape": max(ape),
                "bias": 100.0 * sum((p - t) / t for p, t in zip(pred, true)) / len(true),
                "spearman": spearman(pred, true), "pearson": pearson(pred, true),
                "predicted_ms": pred, "measured_ms": true}

    # -- persistence --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "backend": self.backend_name, "fingerprint": self.fingerprint,
                "input_shape": list(self.input_shape), "overhead_ms": self.overhead_ms,
                "a": self.a, "r": self.r, "b": self.b, "align": self.align, "calibration": self.calibration,
                "grids": self.grids, "entries": self.entries}

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path, backend=None, fingerprint: dict | None = None) -> LatencyPredictor:
        """Read a saved table. With `backend` (or a `fingerprint`), refuse a table measured on another device."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read latency table ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not an edgeprune latency table (no 'format': '{FORMAT}')")
        want = backend.fingerprint() if backend is not None else fingerprint
        if want is not None and dict(want) != d["fingerprint"]:
            diff = sorted(k for k in set(want) | set(d["fingerprint"]) if want.get(k) != d["fingerprint"].get(k))
            shown = ", ".join(f"{k}: table {d['fingerprint'].get(k)!r} vs backend {want.get(k)!r}" for k in diff[:4])
            raise FingerprintMismatch(f"{path}: this latency table was measured on another device or setup "
                                      f"({shown}); build a new one on this backend (LatencyPredictor.build)")
        return cls(d["input_shape"], d["fingerprint"], d.get("backend", ""), d["entries"], d["grids"],
                   d.get("overhead_ms", 0.0), d.get("a", 1.0), d.get("b", 0.0), d.get("calibration"), backend,
                   d.get("r", 0.0), d.get("align", 0))
