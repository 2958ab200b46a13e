"""One latency-statistics type for every runner (onnxruntime, TensorRT, trtexec, a remote board).

Times are milliseconds. Percentiles use linear interpolation between closest ranks (numpy's default), so a median
from here equals `numpy.median` of the same samples.
"""

import math


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
    `info` records what measured it: runner, device, threads, precision, software versions.
    """

    FIELDS = ("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "runs", "warmup")

    def __init__(self, median_ms, mean_ms, p90_ms, p99_ms, min_ms, max_ms, std_ms, runs, warmup=0,
                 samples_ms=None, info=None, layers=None):
        self.median_ms = float(median_ms)
        self.mean_ms = float(mean_ms)
        self.p90_ms = float(p90_ms)
        self.p99_ms = float(p99_ms)
        self.min_ms = float(min_ms)
        self.max_ms = float(max_ms)
        self.std_ms = float(std_ms)
        self.runs = int(runs)
        self.warmup = int(warmup)
        self.samples_ms = list(samples_ms) if samples_ms is not None else None
        self.info = dict(info or {})
        self.layers = layers  # optional per-layer profile: list of {"name", "median_ms", "percentage", ...}

    @classmethod
    def from_samples(cls, samples_ms, warmup=0, info=None):
        if not samples_ms:
            raise ValueError("LatencyStats.from_samples needs at least one timing")
        s = sorted(float(x) for x in samples_ms)
        n = len(s)
        mean = sum(s) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in s) / n)
        return cls(_percentile(s, 50), mean, _percentile(s, 90), _percentile(s, 99), s[0], s[-1], std, n,
                   warmup, samples_ms=list(samples_ms), info=info)

    @property
    def cv(self):
        """Coefficient of variation (std / mean): how noisy the measurement was."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else float("nan")

    @property
    def fps(self):
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self, with_samples=False):
        d = dict((k, getattr(self, k)) for k in self.FIELDS)
        d["cv"] = self.cv
        d["info"] = self.info
        if self.layers is not None:
            d["layers"] = self.layers
        if with_samples and self.samples_ms is not None:
            d["samples_ms"] = self.samples_ms
        return d

    @classmethod
    def from_dict(cls, d):
        kwargs = dict((k, d[k]) for k in cls.FIELDS if k in d)
        return cls(samples_ms=d.get("samples_ms"), info=d.get("info"), layers=d.get("layers"), **kwargs)

    def __repr__(self):
        return "LatencyStats(median={:.3f} ms, p90={:.3f}, p99={:.3f}, runs={}, cv={:.1%})".format(
            self.median_ms, self.p90_ms, self.p99_ms, self.runs, self.cv)
