"""One latency-statistics type for every runner (onnxruntime, TensorRT, trtexec, a remote board), and what every
runner shares: the stop check between runs and random inputs that cost no more memory than the input itself.

Times are milliseconds. Percentiles use linear interpolation between closest ranks (numpy's default), so a median
from here equals `numpy.median` of the same samples.

A sample is the time of one *run* of the model at its input shape. `batch` says how many images one run holds
when that is known (trtexec's implicit batch, `--batch=N`: every latency is per batch of N while trtexec's
throughput counts images); `fps` is images per second when the batch is known, runs per second otherwise.
"""

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np


def _percentile(sorted_ms, q):
    """q in [0, 100] over an ascending list, linear interpolation (numpy's 'linear' method)."""
    if not sorted_ms:
        raise ValueError("no samples")
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


class LatencyStats(object):
    """Summary of repeated timings of one model on one device.

    `samples_ms` keeps the raw timings when the runner had them (trtexec's text summary gives only the summary).
    `info` records what measured it: runner, device, threads, precision, software versions. `batch`: images per
    run when known (None: one run at the model's input shape, whatever its first dimension).
    """

    FIELDS = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "runs", "warmup", "batch")

    def __init__(self, median_ms: float, mean_ms: float, p90_ms: float, p99_ms: float, min_ms: float, max_ms: float,
                 std_ms: float, runs: int, warmup: int = 0, samples_ms: Optional[Iterable[float]] = None,
                 info: Optional[Dict[str, Any]] = None, layers: Optional[List[Dict[str, Any]]] = None,
                 batch: Optional[int] = None) -> None:
        self.median_ms = float(median_ms)
        self.mean_ms = float(mean_ms)
        self.p90_ms = float(p90_ms)
        self.p99_ms = float(p99_ms)
        self.min_ms = float(min_ms)
        self.max_ms = float(max_ms)
        self.std_ms = float(std_ms)
        self.runs = int(runs)
        self.warmup = int(warmup)
        self.batch = int(batch) if batch else None
        self.samples_ms = list(samples_ms) if samples_ms is not None else None
        self.info = dict(info or {})
        self.layers = layers  # optional per-layer profile: list of {"name", "median_ms", "percentage", ...}

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], warmup: int = 0, info: Optional[Dict[str, Any]] = None,
                     batch: Optional[int] = None) -> "LatencyStats":
        if not samples_ms:
            raise ValueError("LatencyStats.from_samples needs at least one timing")
        s = sorted(float(x) for x in samples_ms)
        n = len(s)
        mean = sum(s) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in s) / n)
        return cls(_percentile(s, 50), mean, _percentile(s, 90), _percentile(s, 99), s[0], s[-1], std, n,
                   warmup, samples_ms=list(samples_ms), info=info, batch=batch)

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): how noisy the measurement was."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else float("nan")

    @property
    def runs_per_s(self) -> float:
        """Runs (batches) per second at the median latency."""
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    @property
    def images_per_s(self) -> Optional[float]:
        """Images per second at the median latency, or None when the batch is not known."""
        return self.runs_per_s * self.batch if self.batch else None

    @property
    def fps(self) -> float:
        """Images per second when the batch is known, else runs per second."""
        return self.images_per_s if self.batch else self.runs_per_s

    @property
    def latency_unit(self) -> str:
        return "ms per batch of {} images".format(self.batch) if self.batch else "ms per run"

    def to_dict(self, with_samples: bool = False) -> Dict[str, Any]:
        d = dict((k, getattr(self, k)) for k in self.FIELDS)
        d["cv"] = self.cv
        d["latency_unit"] = self.latency_unit
        if self.batch:
            d["images_per_s"] = self.images_per_s
        d["info"] = self.info
        if self.layers is not None:
            d["layers"] = self.layers
        if with_samples and self.samples_ms is not None:
            d["samples_ms"] = self.samples_ms
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LatencyStats":
        kwargs = dict((k, d[k]) for k in cls.FIELDS if k in d)
        return cls(samples_ms=d.get("samples_ms"), info=d.get("info"), layers=d.get("layers"), **kwargs)

    def __repr__(self) -> str:
        return "LatencyStats(median={:.3f} ms{}, p90={:.3f}, p99={:.3f}, runs={}, cv={:.1%})".format(
            self.median_ms, " per batch of {}".format(self.batch) if self.batch else "", self.p90_ms, self.p99_ms,
            self.runs, self.cv)


# ---------------------------------------------------------------- shared by the runners

class TimingStopped(RuntimeError):
    """A timing loop was stopped between two runs (cancelled, or past its time limit); the message says why."""


def check_stop(stop: Optional[Callable[[], Optional[str]]]) -> None:
    """Raise TimingStopped when `stop` (a callable returning None or the reason to stop) says so."""
    if stop is not None:
        reason = stop()
        if reason:
            raise TimingStopped(str(reason))


def nbytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of an array of `shape` (a list of positive ints) with items of `itemsize` bytes, without numpy."""
    n = int(itemsize)
    for d in shape:
        n *= int(d)
    return n


def check_bytes(what: str, size: int, limit: Optional[int], option: str) -> None:
    """ValueError naming `what` when `size` bytes exceed `limit` (None: no limit)."""
    if limit is not None and size > limit:
        raise ValueError("{} would take {:.1f} MB, over the limit of {:.1f} MB ({}): ask for a smaller input "
                         "shape".format(what, size / 2.0 ** 20, limit / 2.0 ** 20, option))


def fill_random(array: "np.ndarray", seed: int = 0, chunk: int = 1 << 20) -> "np.ndarray":
    """Fill `array` in place: floats uniform in [0, 1), anything else zeros, `chunk` elements at a time.

    numpy's RandomState draws float64 only (its dtype argument is newer than the numpy of JetPack 4.6), so a
    whole-array draw would take twice the array's memory before the cast; chunks keep that to 8 MB."""
    import numpy as np

    flat = array.reshape(-1)  # a view: the arrays here are freshly allocated, hence contiguous
    if array.dtype.kind != "f":
        flat[...] = 0
        return array
    rng = np.random.RandomState(seed)
    for start in range(0, flat.size, chunk):
        end = min(start + chunk, flat.size)
        flat[start:end] = rng.random_sample(end - start)
    return array


def random_array(shape: Iterable[int], dtype: Any, seed: int = 0) -> "np.ndarray":
    """A new array of `shape` in the model's own `dtype`, filled by `fill_random`."""
    import numpy as np

    return fill_random(np.empty(tuple(int(d) for d in shape), dtype=dtype), seed)
