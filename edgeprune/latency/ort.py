"""The embedded default backend: onnxruntime on this machine's CPU (deploy.onnxruntime_runner).

Protocol: a session with a fixed intra-op thread count (in the fingerprint), sequential execution, warm-up of at
least `warmup` runs and `min_warmup_s` seconds, then `runs` timed runs. When the spread is too wide (coefficient
of variation above `max_cv`, e.g. another process took a core) the measurement is repeated, up to
`max_attempts` in all, and the tightest attempt (lowest cv) is kept; `stats.info["attempts"]` lists every
attempt's median and cv. In `measure_many` the time floor applies to the first model of the batch; the process
is warm after it, so later models warm up for `warmup` runs and at least 0.1 s (a lookup table of a few hundred
tiny units then costs seconds of warm-up, not minutes). The cores other processes kept busy meanwhile are recorded
(`info["load_elsewhere"]`), and a backend warns once when they and its threads do not fit on the machine.
"""

from __future__ import annotations

import warnings

from deploy.machine import LoadMeter, is_loaded, load_note
from deploy.stats import LatencyStats

from .base import LatencyBackend, MeasurementError, Shape, normalize_shape


class OrtBackend(LatencyBackend):
    name = "ort"

    def __init__(self, threads: int | None = None, warmup: int = 10, runs: int = 50, max_cv: float = 0.1,
                 max_attempts: int = 3, min_warmup_s: float = 0.5) -> None:
        from deploy.onnxruntime_runner import default_threads

        self.threads = int(threads) if threads else default_threads()
        self.warmup, self.runs = int(warmup), int(runs)
        self.max_cv, self.max_attempts = float(max_cv), max(1, int(max_attempts))
        self.min_warmup_s = float(min_warmup_s)
        self.warned_load = False
        if self.runs < 1:
            raise ValueError("runs must be at least 1")

    def fingerprint(self) -> dict:
        import onnxruntime

        from deploy.onnxruntime_runner import cpu_name

        return {"backend": "ort", "runner": "onnxruntime", "provider": "CPUExecutionProvider",
                "device": cpu_name(), "onnxruntime": onnxruntime.__version__, "threads": self.threads,
                "precision": "fp32"}

    def measure_many(self, items: list[tuple[bytes, Shape]]) -> list[LatencyStats]:
        return [self.measure(onnx, shape, None if i == 0 else min(0.1, self.min_warmup_s))
                for i, (onnx, shape) in enumerate(items)]

    def measure(self, onnx: bytes, input_shape: Shape, min_warmup_s: float | None = None) -> LatencyStats:
        from deploy.onnxruntime_runner import OnnxRuntimeRunner

        floor = self.min_warmup_s if min_warmup_s is None else min_warmup_s
        shape = normalize_shape(input_shape)
        load = LoadMeter().start()
        try:
            runner = OnnxRuntimeRunner(bytes(onnx), threads=self.threads)
            attempts, best = [], None
            for _ in range(self.max_attempts):
                stats = runner.time(shape=shape, warmup=self.warmup, runs=self.runs, min_warmup_s=floor)
                attempts.append({"median_ms": stats.median_ms, "cv": stats.cv})
                if best is None or stats.cv < best.cv:
                    best = stats
                if stats.cv <= self.max_cv:
                    break
        except ValueError as e:
            raise MeasurementError(f"onnxruntime could not time the model at {shape}: {e}", "ort", str(e)) from e
        best.info.update(backend="ort", attempts=attempts, max_cv=self.max_cv,
                         noisy=best.cv > self.max_cv, load_elsewhere=load.stop())
        self._warn_if_loaded(load.others)
        return best

    def _warn_if_loaded(self, others: float | None) -> None:
        if not self.warned_load and is_loaded(others, self.threads):
            self.warned_load = True
            warnings.warn(f"onnxruntime timed with {self.threads} thread(s) while other processes kept cores busy "
                          f"({load_note(others)}): latencies are slower and noisier than on a quiet machine",
                          stacklevel=3)
