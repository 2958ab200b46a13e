"""The TensorRT stand-ins the deploy tests share: a `tensorrt` module with only the Python API of 8.2 (bindings,
max_workspace_size) or of 10.x (tensors, memory pools), and CUDA in host memory. Attributes of the other
generation do not exist, so a call of the wrong generation fails in the tests that use the `fake_trt` fixture."""

import sys
import time
import types

import numpy as np
import pytest

from deploy import cuda as deploy_cuda
from deploy import trt_build, trt_run


class FakeCuda(object):
    """Device memory in host bytearrays; events read the host clock."""
    name, stream_handle, closed = "fake-cuda", 7, False

    def __init__(self):
        self.mem = {}

    def alloc(self, nbytes):
        ptr = 1000 + 16 * len(self.mem)
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr):
        self.mem.pop(ptr)

    def htod(self, ptr, array):
        self.mem[ptr][:] = np.ascontiguousarray(array).tobytes()

    def dtoh(self, array, ptr):
        array[...] = self.read(ptr, array.dtype, array.shape)

    def read(self, ptr, dtype, shape):
        return np.frombuffer(bytes(self.mem[ptr]), dtype).reshape(shape)

    def sync(self):
        pass

    def event_pair(self):
        return [0.0], [0.0]

    def record(self, event):
        event[0] = time.perf_counter()

    def elapsed_ms(self, start, end):
        return (end[0] - start[0]) * 1000.0

    def device_name(self):
        return "Fake GPU"

    def close(self):
        self.closed = True


def _ns(**kw):
    return types.SimpleNamespace(**kw)


def _fake_trt(version, cuda):
    """A `tensorrt` module with only the API of 8.2 (bindings, max_workspace_size) or of 10 (tensors, pools).

    Its network has one input images [-1, 3, 8, 8]; its engine computes out = 2 × images.
    """
    v10 = version.startswith("10")
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.calls = version, []
    trt.ILogger = trt.IInt8EntropyCalibrator2 = object
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.BuilderFlag = _ns(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    trt.MemoryPoolType, trt.DeviceType = _ns(WORKSPACE="WORKSPACE"), _ns(DLA="DLA")
    trt.TensorIOMode, trt.nptype = _ns(INPUT="INPUT"), lambda dtype: np.float32
    trt.NetworkDefinitionCreationFlag = _ns() if v10 else _ns(EXPLICIT_BATCH=0)
    network = _ns(num_inputs=1, get_input=lambda i: _ns(name="images", shape=(-1, 3, 8, 8)))

    def parser(network, logger):
        p = _ns(num_errors=0, get_error=lambda i: "In node 0 (importModel): INVALID_GRAPH: bad model")
        p.parse = lambda data: p.__dict__.update(num_errors=int(data.startswith(b"bad"))) or not p.num_errors
        return p

    class Config(object):
        __slots__ = ("flags", "int8_calibrator", "default_device_type", "DLA_core", "profile", "cache") + (
            () if v10 else ("max_workspace_size",))

        def __init__(self):
            self.flags = []

        set_flag = lambda self, flag: self.flags.append(flag)  # noqa: E731
        add_optimization_profile = lambda self, profile: setattr(self, "profile", profile)  # noqa: E731
        set_calibration_profile = add_optimization_profile
        create_timing_cache = lambda self, data: trt.calls.append(("cache", bytes(data))) or _ns(  # noqa: E731
            serialize=lambda: b"timing-cache")
        set_timing_cache = lambda self, cache, ignore_mismatch: setattr(self, "cache", cache)  # noqa: E731
        get_timing_cache = lambda self: self.cache  # noqa: E731
        if v10:
            set_memory_pool_limit = lambda self, pool, size: trt.calls.append(("pool", pool, size))  # noqa: E731

    def build(net, config):
        trt.calls.append(("build", list(config.flags), getattr(config, "max_workspace_size", None)))
        return b"engine-bytes"

    trt.Builder = lambda logger: _ns(
        num_DLA_cores=0, create_network=lambda flags: trt.calls.append(("network", flags)) or network,
        create_builder_config=Config, build_serialized_network=build,
        create_optimization_profile=lambda: _ns(set_shape=lambda *a: trt.calls.append(("profile",) + a)))
    trt.OnnxParser = parser
    engine = _fake_engine(cuda, v10)
    trt.Runtime = lambda logger: _ns(DLA_core=0, deserialize_cuda_engine=lambda data: (
        None if data.startswith(b"bad") else engine))
    return trt


def _fake_engine(cuda, v10):
    def run(in_ptr, out_ptr, shape):
        cuda.mem[out_ptr][:] = (2 * cuda.read(in_ptr, np.float32, shape)).tobytes()
        return True

    def context():
        c = _ns(shape=(-1, 3, 8, 8), addr={})
        if v10:
            c.set_input_shape = lambda name, shape: c.__dict__.update(shape=tuple(shape))
            c.get_tensor_shape = lambda name: c.shape
            c.set_tensor_address = lambda name, ptr: c.addr.update({name: ptr})
            c.execute_async_v3 = lambda stream_handle: run(c.addr["images"], c.addr["out"], c.shape)
        else:
            c.set_binding_shape = lambda i, shape: c.__dict__.update(shape=tuple(shape))
            c.get_binding_shape = lambda i: c.shape
            c.execute_async_v2 = lambda bindings, stream_handle: run(bindings[0], bindings[1], c.shape)
        return c

    names = ["images", "out"]
    if v10:
        return _ns(num_io_tensors=2, get_tensor_name=names.__getitem__, create_execution_context=context,
                   get_tensor_mode=lambda n: "INPUT" if n == "images" else "OUTPUT",
                   get_tensor_dtype=lambda n: "FLOAT", get_tensor_shape=lambda n: (-1, 3, 8, 8))
    return _ns(num_bindings=2, get_binding_name=names.__getitem__, binding_is_input=lambda i: i == 0,
               get_binding_dtype=lambda i: "FLOAT", get_binding_shape=lambda i: (-1, 3, 8, 8),
               create_execution_context=context)


@pytest.fixture(params=["8.2.1.8", "10.3.0"])
def fake_trt(request, monkeypatch):
    cuda = FakeCuda()
    trt = _fake_trt(request.param, cuda)
    trt.cuda = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_build, "_LOGGER", None)
    monkeypatch.setattr(trt_run, "cuda_backend", lambda: cuda)
    monkeypatch.setattr(deploy_cuda, "cuda_backend", lambda: cuda)  # the calibrator asks deploy.cuda
    return trt
