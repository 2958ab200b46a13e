"""One measurement (`measure`): prepare (build or load), then time with tegrastats sampling around the timing.

The options live in jetson/options.py, the backends in jetson/backends.py, the worker that runs jobs one at a
time in jetson/worker.py; their public names are re-exported here for the board bench and older callers.
"""

import time
from typing import Any, Callable, Dict, Optional

from .backends import PREPARE, TRTEXEC_DEFAULT, MeasureEnv, backends, cuda_from_python, find_trtexec, trt_python_version  # noqa: F401
from .options import BACKENDS, OPTION_DEFAULTS, PRECISIONS, OptionError, parse_options, parse_shape  # noqa: F401
from .tegrastats import Sampler
from .worker import describe_error  # noqa: F401

__all__ = ["BACKENDS", "OPTION_DEFAULTS", "PRECISIONS", "PREPARE", "TRTEXEC_DEFAULT", "MeasureEnv", "OptionError",
           "backends", "cuda_from_python", "describe_error", "find_trtexec", "measure", "parse_options", "parse_shape",
           "trt_python_version"]


def _tegrastats_summary(sampler, stats, start, end):
    """Power and GPU load over the timed runs only (their total time ends at `end`), or over the whole
    measurement when the timed runs were shorter than one tegrastats interval."""
    if sampler is None:
        return None
    timed_s = (sum(stats.samples_ms) if stats.samples_ms else stats.runs * stats.mean_ms) / 1000.0
    summary = sampler.summary(max(start, end - timed_s), end)
    summary["window"] = "timed runs"
    if sampler.available and summary["samples"] == 0:
        summary = sampler.summary(start, end)
        summary["window"] = "whole measurement, warm-up included (timed runs shorter than the interval)"
    return summary


def measure(source: str, options: Dict[str, Any], env: MeasureEnv, sha256: Optional[str] = None,
            stop: Optional[Callable[[], Optional[str]]] = None) -> Dict[str, Any]:
    """Prepare (build or load), then time `source` (.onnx, or an engine for trt/trtexec) with tegrastats sampling
    around the timing only. Returns the result dict the agent stores and the board bench prints.

    `stop`: a callable returning None or the reason to stop (the worker's JobControl); the runners ask it between
    runs and raise deploy.stats.TimingStopped with that reason."""
    t0 = time.perf_counter()
    timer, engine = PREPARE[options["backend"]](source, options, env, sha256, stop)
    prepare_s = time.perf_counter() - t0
    sampler = Sampler(env.tegrastats, env.interval_ms).start() if options["tegrastats"] else None
    try:
        start_wall, start = time.time(), time.monotonic()
        stats = timer()
        end, end_wall = time.monotonic(), time.time()
    finally:
        if sampler is not None:
            sampler.stop()
    return {
        "latency": stats.to_dict(with_samples=True),
        "engine": engine,
        "prepare_s": prepare_s,
        "tegrastats": _tegrastats_summary(sampler, stats, start, end),
        "window": {"start": start_wall, "end": end_wall},
    }
