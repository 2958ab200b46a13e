"""Run and time a TensorRT engine from Python on TensorRT 8.2 … 10.x, with pycuda or cuda-python.

TensorRT 8.2 and 8.4 run an engine through the bindings API (`num_bindings`, `set_binding_shape`,
`execute_async_v2` with a list of device pointers); 8.5 adds the tensor API (`num_io_tensors`, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`), and 10 removes the bindings API. `execute_api(version)` picks one.
CUDA comes from pycuda (what a TX2 on JetPack 4.6 has) or cuda-python (Orin, JetPack 5/6), whichever imports.

Timing protocol: inputs are copied to the GPU once; each run is one `execute` between two CUDA events on the
same stream, synchronized before the next run, so a sample is the GPU time of one inference without transfers
(trtexec's "GPU Compute Time"). `warmup` untimed runs come first. `stop` (a callable returning None or a reason) is
asked between runs, outside the events; its reason ends the timing with `TimingStopped`. `max_io_bytes` refuses an
input shape whose input and output buffers would be larger, before anything is allocated; random inputs are drawn
in place, in each input's own dtype.
"""

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

from .cuda import cuda_backend, device_name  # noqa: F401 (re-exported)
from .stats import LatencyStats, check_bytes, check_stop, fill_random, nbytes
from .trt_build import capture_logger, import_tensorrt, read_sidecar
from .trt_versions import parse_version

if TYPE_CHECKING:
    import numpy as np


def execute_api(version: Union[str, int, Tuple[int, ...]]) -> str:
    """'v2' (bindings API) before TensorRT 8.5, 'v3' (tensor API) from 8.5 on (the only one in 10)."""
    return "v2" if parse_version(version)[:2] < (8, 5) else "v3"


# ---------------------------------------------------------------- engine runner

class _Tensor(object):
    def __init__(self, name: str, is_input: bool, dtype: Any, shape: Iterable[int], index: int) -> None:
        self.name, self.is_input, self.dtype, self.shape, self.index = name, is_input, dtype, tuple(shape), index
        self.ptr, self.host = None, None


class EngineRunner(object):
    """A deserialized engine with device buffers; `infer(feed)` returns {output name: numpy array}.

    input_shape fills the dynamic dimensions of the first input (the shape the engine was built for by default,
    read from its `<engine>.json` sidecar). Use one runner from one thread; call `close()` (or use `with`).
    """

    def __init__(self, engine_path: Union[str, os.PathLike], input_shape: Optional[Sequence[int]] = None,
                 max_io_bytes: Optional[int] = None) -> None:
        import numpy as np

        self.np = np
        self.trt = trt = import_tensorrt()
        self.version = parse_version(trt.__version__)
        self.api = execute_api(self.version)
        self.info = read_sidecar(engine_path)
        self.max_io_bytes = max_io_bytes
        self.cuda = cuda_backend()
        try:
            self._load(engine_path)
            self._bind(input_shape)
        except BaseException:
            self.cuda.close()
            raise

    def _load(self, engine_path):
        logger = capture_logger(self.trt)
        logger.start()
        self.runtime = self.trt.Runtime(logger)
        if self.info.get("dla_core") is not None:
            self.runtime.DLA_core = int(self.info["dla_core"])
        with open(str(engine_path), "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            from .trt_build import EngineBuildError

            raise EngineBuildError("TensorRT {} cannot load {} (built by another TensorRT version or for another "
                                   "device? rebuild it on this board)".format(self.trt.__version__, engine_path),
                                   logger.errors)
        self.context = self.engine.create_execution_context()

    def _io(self):
        trt, e = self.trt, self.engine
        if self.api == "v2":
            return [_Tensor(e.get_binding_name(i), e.binding_is_input(i), trt.nptype(e.get_binding_dtype(i)),
                            e.get_binding_shape(i), i) for i in range(e.num_bindings)]
        names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        return [_Tensor(n, e.get_tensor_mode(n) == trt.TensorIOMode.INPUT, trt.nptype(e.get_tensor_dtype(n)),
                        e.get_tensor_shape(n), i) for i, n in enumerate(names)]

    def _bind(self, input_shape):
        """Fix dynamic input shapes (input_shape for the first input, else the sidecar's), then allocate."""
        self.tensors = self._io()
        built = self.info.get("input_shapes") or {}
        first = [t for t in self.tensors if t.is_input][:1]
        for t in self.tensors:
            if t.is_input and any(d < 0 for d in t.shape):
                shape = input_shape if (input_shape is not None and t in first) else built.get(t.name)
                if not shape:
                    raise ValueError("engine input {!r} is dynamic {}: pass input_shape".format(t.name, t.shape))
                self._set_input_shape(t, shape)
        for t in self.tensors:
            t.shape = self._context_shape(t)
        total = sum(nbytes(t.shape, self.np.dtype(t.dtype).itemsize) for t in self.tensors)
        check_bytes("the engine's input and output buffers {}".format(dict((t.name, list(t.shape))
                                                                           for t in self.tensors)),
                    total, self.max_io_bytes, "max_io_bytes")
        for t in self.tensors:
            t.host = self.np.zeros(t.shape, dtype=t.dtype)
            t.ptr = self.cuda.alloc(t.host.nbytes)
            if self.api == "v3":
                self.context.set_tensor_address(t.name, t.ptr)

    def _set_input_shape(self, t, shape):
        if self.api == "v2":
            self.context.set_binding_shape(t.index, tuple(shape))
        else:
            self.context.set_input_shape(t.name, tuple(shape))
        t.shape = tuple(shape)

    def _context_shape(self, t):
        if self.api == "v2":
            return tuple(self.context.get_binding_shape(t.index))
        return tuple(self.context.get_tensor_shape(t.name))

    def _execute(self):
        if self.api == "v2":
            ok = self.context.execute_async_v2(bindings=[t.ptr for t in self.tensors],
                                               stream_handle=self.cuda.stream_handle)
        else:
            ok = self.context.execute_async_v3(stream_handle=self.cuda.stream_handle)
        if not ok:
            raise RuntimeError("TensorRT execute_async_{} failed".format(self.api))

    @property
    def inputs(self) -> Dict[str, Tuple[int, ...]]:
        return dict((t.name, t.shape) for t in self.tensors if t.is_input)

    def infer(self, feed: Dict[str, Any]) -> Dict[str, "np.ndarray"]:
        """Copy `feed` (name → numpy array) in, run once, return {output name: numpy array}."""
        for t in self.tensors:
            if t.is_input:
                if t.name not in feed:
                    raise ValueError("missing input {!r} (engine inputs: {})".format(t.name, self.inputs))
                t.host[...] = self.np.asarray(feed[t.name], dtype=t.dtype).reshape(t.shape)
                self.cuda.htod(t.ptr, t.host)
        self._execute()
        outputs = {}
        for t in self.tensors:
            if not t.is_input:
                self.cuda.dtoh(t.host, t.ptr)
        self.cuda.sync()
        for t in self.tensors:
            if not t.is_input:
                outputs[t.name] = t.host.copy()
        return outputs

    def random_feed(self, seed: int = 0) -> Dict[str, "np.ndarray"]:
        """{input name: random array}, drawn into the input buffers themselves (no second copy)."""
        inputs = [t for t in self.tensors if t.is_input]
        return dict((t.name, fill_random(t.host, seed + k)) for k, t in enumerate(inputs))

    def time(self, warmup: int = 10, runs: int = 100, seed: int = 0,
             stop: Optional[Callable[[], Optional[str]]] = None) -> LatencyStats:
        """LatencyStats of `runs` GPU-timed executions after `warmup` untimed ones (module docstring)."""
        self.infer(self.random_feed(seed))  # inputs now on the device
        for _ in range(warmup):
            check_stop(stop)
            self._execute()
            self.cuda.sync()
        start, end = self.cuda.event_pair()
        samples = []
        for _ in range(int(runs)):
            check_stop(stop)
            self.cuda.record(start)
            self._execute()
            self.cuda.record(end)
            samples.append(self.cuda.elapsed_ms(start, end))
        info = {
            "runner": "tensorrt",
            "tensorrt": self.trt.__version__,
            "execute_api": self.api,
            "cuda": self.cuda.name,
            "device": self.cuda.device_name(),
            "precision": self.info.get("precision", "unknown"),
            "input_shapes": dict((k, list(v)) for k, v in self.inputs.items()),
            "timing": "CUDA events around each execute, inputs on the device",
        }
        return LatencyStats.from_samples(samples, warmup=warmup, info=info)

    def close(self) -> None:
        if self.cuda is not None:
            for t in getattr(self, "tensors", []):
                if t.ptr is not None:
                    self.cuda.free(t.ptr)
                    t.ptr = None
            self.context = self.engine = None
            self.cuda.close()
            self.cuda = None

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def time_engine(engine_path: Union[str, os.PathLike], warmup: int = 10, runs: int = 100,
                input_shape: Optional[Sequence[int]] = None, stop: Optional[Callable[[], Optional[str]]] = None,
                max_io_bytes: Optional[int] = None) -> LatencyStats:
    """Load `engine_path`, time it (see the module docstring) and return LatencyStats."""
    if not os.path.isfile(str(engine_path)):
        raise ValueError("{} does not exist: build an engine first (deploy.trt_build.build_engine)"
                         .format(engine_path))
    with EngineRunner(engine_path, input_shape=input_shape, max_io_bytes=max_io_bytes) as runner:
        stats = runner.time(warmup=warmup, runs=runs, stop=stop)
    stats.info["engine"] = os.path.basename(str(engine_path))
    return stats
