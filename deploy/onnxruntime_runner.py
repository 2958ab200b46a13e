"""Run and time an ONNX model with onnxruntime on the CPU (the embedded default latency backend).

Timing protocol: a fixed intra-op thread count (stated in the result), sequential execution, `warmup` untimed runs,
then `runs` timed runs of the same input, each timed with `time.perf_counter` around `session.run`. `stop` (a
callable returning None or a reason) is asked between runs, outside the timed region; its reason ends the timing
with `TimingStopped`. Random inputs are drawn in each input's own dtype, and `max_input_bytes` refuses input shapes
whose arrays would be larger, before anything is allocated.
"""

import os
import platform
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .machine import usable_cores
from .stats import LatencyStats, check_bytes, check_stop, nbytes, random_array

if TYPE_CHECKING:
    import numpy as np

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
             "tensor(bool)": "bool"}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    """Cores this process may use (respects taskset / cgroup affinity where the OS exposes it)."""
    return usable_cores()


class OnnxRuntimeRunner(object):
    """An onnxruntime CPU session over ONNX bytes or a file path."""

    def __init__(self, model: Union[bytes, bytearray, str, os.PathLike], threads: Optional[int] = None,
                 providers: Optional[Sequence[Any]] = None) -> None:
        import onnxruntime as ort

        self.threads = int(threads) if threads else default_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, (bytes, bytearray)) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            where = "the given bytes" if isinstance(model, (bytes, bytearray)) else str(model)
            raise ValueError("onnxruntime cannot load {}: {}. Is it an ONNX model "
                             "(export one with `edgeprune export`)?".format(where, e))
        self.ort_version = ort.__version__

    def input_shapes(self, shape: Optional[Sequence[int]] = None) -> Dict[str, Tuple[int, ...]]:
        """Concrete input shapes; `shape` fills dynamic dimensions of the first input (e.g. (1, 3, 320, 320))."""
        shapes = {}
        for i, inp in enumerate(self.session.get_inputs()):
            dims = list(inp.shape)
            if shape is not None and i == 0:
                dims = list(shape)
            if any(not isinstance(d, int) or d <= 0 for d in dims):
                raise ValueError("input {!r} has dynamic shape {}: pass an input shape such as 1,3,640,640"
                                 .format(inp.name, inp.shape))
            shapes[inp.name] = tuple(dims)
        return shapes

    def random_feed(self, shape: Optional[Sequence[int]] = None, seed: int = 0,
                    max_input_bytes: Optional[int] = None) -> Dict[str, "np.ndarray"]:
        """{input name: random array} in each input's dtype; ValueError when they would exceed max_input_bytes."""
        import numpy as np

        shapes = self.input_shapes(shape)
        inputs = self.session.get_inputs()
        dtypes = dict((i.name, np.dtype(ORT_TYPES.get(i.type, "float32"))) for i in inputs)
        total = sum(nbytes(shapes[i.name], dtypes[i.name].itemsize) for i in inputs)
        check_bytes("the random inputs {}".format(dict((k, list(v)) for k, v in shapes.items())), total,
                    max_input_bytes, "max_input_bytes")
        return dict((i.name, random_array(shapes[i.name], dtypes[i.name], seed + k)) for k, i in enumerate(inputs))

    def infer(self, feed: Dict[str, Any]) -> List[Any]:
        return self.session.run(None, feed)

    def time(self, shape: Optional[Sequence[int]] = None, warmup: int = 10, runs: int = 50, seed: int = 0,
             min_warmup_s: float = 0.5, stop: Optional[Callable[[], Optional[str]]] = None,
             max_input_bytes: Optional[int] = None) -> LatencyStats:
        """Median/p90/p99 over `runs` timed inferences after at least `warmup` untimed ones and `min_warmup_s`.

        The time floor matters for small models: the first session of a process needs a few hundred milliseconds
        (thread pool start, page faults, CPU clocks ramping up) before its timings settle, far more than 10 runs.
        """
        feed = self.random_feed(shape, seed, max_input_bytes)
        start, done = time.perf_counter(), 0
        while done < warmup or time.perf_counter() - start < min_warmup_s:
            check_stop(stop)
            self.session.run(None, feed)
            done += 1
        samples = []
        for _ in range(runs):
            check_stop(stop)
            t0 = time.perf_counter()
            self.session.run(None, feed)
            samples.append((time.perf_counter() - t0) * 1000.0)
        info = {
            "runner": "onnxruntime",
            "provider": self.session.get_providers()[0],
            "device": cpu_name(),
            "threads": self.threads,
            "onnxruntime": self.ort_version,
            "input_shapes": dict((k, list(v)) for k, v in self.input_shapes(shape).items()),
        }
        return LatencyStats.from_samples(samples, warmup=done, info=info)


def time_onnx(model: Union[bytes, bytearray, str, os.PathLike], shape: Optional[Sequence[int]] = None,
              warmup: int = 10, runs: int = 50, threads: Optional[int] = None,
              stop: Optional[Callable[[], Optional[str]]] = None,
              max_input_bytes: Optional[int] = None) -> LatencyStats:
    """Convenience: load `model` (path or bytes) and time it; returns LatencyStats."""
    return OnnxRuntimeRunner(model, threads=threads).time(shape=shape, warmup=warmup, runs=runs, stop=stop,
                                                          max_input_bytes=max_input_bytes)
