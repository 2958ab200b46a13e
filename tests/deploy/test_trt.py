"""TensorRT build and run.

Three kinds of tests:
- version-dependent choices (pure functions) and calibration data, everywhere;
- the build and run code paths against stand-ins that expose only the TensorRT 8.2 or only the 10.x Python API
  (attributes of the other version raise AttributeError), so a call of the wrong generation fails here;
- the real thing, where TensorRT and a GPU exist (skipped otherwise, saying what is missing).
"""

import json
import os
import sys
import time
import types

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy import calibrator, trt_build, trt_run
from deploy.trt_build import EngineBuildError, build_engine

REAL_TRT = trt_build.tensorrt_version() is not None

# ---------------------------------------------------------------- pure version logic


def test_parse_version():
    assert trt_build.parse_version("8.2.1.8") == (8, 2, 1, 8)
    assert trt_build.parse_version("10.3.0") == (10, 3, 0)
    assert trt_build.parse_version(8201) == (8, 2, 1)
    assert trt_build.parse_version(101600) == (10, 16, 0)
    assert trt_build.parse_version("8.6.2.post1") == (8, 6, 2)
    with pytest.raises(ValueError):
        trt_build.parse_version("tensorrt")


@pytest.mark.parametrize("version, flags, workspace, api", [
    ("8.2.1", ["EXPLICIT_BATCH"], "max_workspace_size", "v2"),
    ("8.4.1", ["EXPLICIT_BATCH"], "set_memory_pool_limit", "v2"),
    ("8.5.2", ["EXPLICIT_BATCH"], "set_memory_pool_limit", "v3"),
    ("8.6.2", ["EXPLICIT_BATCH"], "set_memory_pool_limit", "v3"),
    ("10.3.0", [], "set_memory_pool_limit", "v3"),
])
def test_api_choice_by_version(version, flags, workspace, api):
    assert trt_build.network_flag_names(version) == flags
    assert trt_build.workspace_api(version) == workspace
    assert trt_run.execute_api(version) == api


def test_precision_flags():
    assert trt_build.precision_flag_names("fp32") == []
    assert trt_build.precision_flag_names("int8") == ["FP16", "INT8"]
    with pytest.raises(ValueError, match="precision"):
        trt_build.precision_flag_names("fp8")


def test_polygraphy_calibrator_only_from_85():
    assert not calibrator.use_polygraphy_calibrator("8.2.1")
    try:
        import polygraphy.backend.trt  # noqa: F401
        has_polygraphy = True
    except ImportError:
        has_polygraphy = False
    assert calibrator.use_polygraphy_calibrator("10.3.0") == has_polygraphy


# ---------------------------------------------------------------- calibration data


def test_letterbox_matches_the_host(tmp_path):
    torch = pytest.importorskip("torch")
    from PIL import Image

    from edgeprune.data.dataset import AugmentConfig, DetectionDataset
    from edgeprune.data.labels import Sample

    rng = np.random.RandomState(0)
    images = [("rgb.png", rng.randint(0, 255, (30, 50, 3), np.uint8)),
              ("gray.png", rng.randint(0, 255, (40, 20), np.uint8)),
              ("big.jpg", rng.randint(0, 255, (128, 256, 3), np.uint8))]
    samples = []
    for name, a in images:
        Image.fromarray(a).save(str(tmp_path / name))
        samples.append(Sample(tmp_path / name, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                              a.shape[1], a.shape[0]))
    host = DetectionDataset(samples, img_size=64, augment=False, config=AugmentConfig(cache=False))
    for i, (name, _) in enumerate(images):
        ours = calibrator.load_image(tmp_path / name, 64, 64)
        assert ours.shape == (3, 64, 64) and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, host[i][0].numpy())
    assert torch.is_tensor(host[0][0])


def test_calibration_batches_from_a_folder(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(str(tmp_path / "{}.png".format(i)))
    (tmp_path / "notes.txt").write_text("not an image")
    data = calibrator.CalibrationData(tmp_path, (2, 3, 32, 32))
    batches = list(data)
    assert len(data) == 2 and len(batches) == 2  # the fifth image would make an incomplete batch
    assert batches[0].shape == (2, 3, 32, 32) and batches[0].dtype == np.float32
    assert batches[0][0, 1, 0, 0] == pytest.approx(114 / 255.0)  # gray pad above the 40x30 image
    assert len(list(data)) == 2  # re-iterable
    assert len(calibrator.CalibrationData(tmp_path, (1, 3, 32, 32), max_batches=3)) == 3


def test_calibration_batches_from_npy(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(str(path), np.random.rand(7, 3, 16, 16).astype(np.float32))
    data = calibrator.CalibrationData(path, (3, 3, 16, 16))
    assert [b.shape for b in data] == [(3, 3, 16, 16)] * 2
    with pytest.raises(ValueError, match="calib.npy holds an array"):
        calibrator.CalibrationData(path, (1, 3, 32, 32))
    with pytest.raises(ValueError, match="fewer than one batch"):
        calibrator.CalibrationData(path, (8, 3, 16, 16))
    with pytest.raises(ValueError, match="neither a folder"):
        calibrator.CalibrationData(tmp_path / "missing.npy", (1, 3, 16, 16))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        calibrator.CalibrationData(empty, (1, 3, 16, 16))


# ---------------------------------------------------------------- stand-ins for TensorRT 8.2 / 10.x and CUDA


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
    return trt


def test_build_with_the_versions_api(fake_trt, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")
    cache = tmp_path / "timing.cache"
    info = build_engine(onnx_path, tmp_path / "m.engine", precision="fp16", workspace_mb=256,
                        input_shape=(1, 3, 8, 8), timing_cache=cache)
    assert (tmp_path / "m.engine").read_bytes() == b"engine-bytes" and cache.read_bytes() == b"timing-cache"
    assert json.loads((tmp_path / "m.engine.json").read_text()) == info
    assert info["input_shapes"] == {"images": [1, 3, 8, 8]} and info["precision"] == "fp16"
    assert info["tensorrt"] == fake_trt.__version__ and len(info["onnx_sha256"]) == 64
    calls = dict((c[0], c[1:]) for c in fake_trt.calls)
    if fake_trt.__version__.startswith("10"):
        assert calls["network"] == (0,) and calls["pool"] == ("WORKSPACE", 256 << 20)
        assert calls["build"] == (["FP16"], None)
    else:
        assert calls["network"] == (1,) and calls["build"] == (["FP16"], 256 << 20)
    assert calls["cache"] == (b"",) and calls["profile"] == ("images",) + ([1, 3, 8, 8],) * 3
    info = build_engine(onnx_path, tmp_path / "m.engine", input_shape=(1, 3, 8, 8), timing_cache=cache)
    assert info["timing_cache_hit"]


def test_build_errors(fake_trt, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"bad onnx")
    with pytest.raises(EngineBuildError) as e:
        build_engine(bad, tmp_path / "m.engine", input_shape=(1, 3, 8, 8))
    assert e.value.log_lines == ["[E] In node 0 (importModel): INVALID_GRAPH: bad model"]
    good = tmp_path / "m.onnx"
    good.write_bytes(b"onnx")
    with pytest.raises(ValueError, match="dynamic shape"):
        build_engine(good, tmp_path / "m.engine")
    with pytest.raises(ValueError, match="DLA"):
        build_engine(good, tmp_path / "m.engine", input_shape=(1, 3, 8, 8), dla_core=0)
    with pytest.raises(ValueError, match="calib"):
        build_engine(good, tmp_path / "m.engine", precision="int8")
    assert not (tmp_path / "m.engine").exists()


def test_hand_written_calibrator(fake_trt, tmp_path):
    npy = tmp_path / "calib.npy"
    np.save(str(npy), np.random.rand(4, 3, 8, 8).astype(np.float32))
    cache = tmp_path / "calib.cache"
    calib = calibrator._entropy_calibrator(fake_trt, calibrator.CalibrationData(npy, (2, 3, 8, 8)), str(cache))
    assert calib.get_batch_size() == 2 and calib.read_calibration_cache() is None
    ptrs = [calib.get_batch(["images"]) for _ in range(3)]
    assert ptrs[0] == ptrs[1] and len(ptrs[0]) == 1 and ptrs[2] is None and fake_trt.cuda.closed
    calib.write_calibration_cache(b"scales")
    assert calib.read_calibration_cache() == b"scales"


def test_polygraphy_calibrator_from_85(fake_trt, tmp_path):
    pytest.importorskip("polygraphy.backend.trt", reason="polygraphy is not installed")
    if fake_trt.__version__.startswith("8.2"):
        pytest.skip("Polygraphy's calibrator is used from TensorRT 8.5 on")
    if REAL_TRT:
        pytest.skip("Polygraphy caches the tensorrt module it first sees: the real-TensorRT tests cover this")
    fake_trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (object,), {"__init__": lambda self: None})
    fake_trt.IInt8LegacyCalibrator = fake_trt.IInt8Calibrator = type("Other", (object,), {})
    np.save(str(tmp_path / "calib.npy"), np.random.rand(4, 3, 8, 8).astype(np.float32))
    (tmp_path / "calib.cache").write_bytes(b"scales")
    calib = calibrator.make_calibrator(fake_trt, "10.3.0", "images", (2, 3, 8, 8), tmp_path / "calib.npy",
                                       tmp_path / "calib.cache")
    assert type(calib).__module__.startswith("polygraphy")
    assert calib.get_batch_size() == 2 and calib.read_calibration_cache() == b"scales"


def test_runner_with_the_versions_api(fake_trt, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine-bytes")
    trt_build.write_json_atomic(str(engine) + ".json", {"input_shapes": {"images": [2, 3, 8, 8]},
                                                        "precision": "fp16"})
    with trt_run.EngineRunner(engine) as runner:
        assert runner.api == ("v3" if fake_trt.__version__.startswith("10") else "v2")
        assert runner.inputs == {"images": (2, 3, 8, 8)}
        x = np.random.rand(2, 3, 8, 8).astype(np.float32)
        np.testing.assert_array_equal(runner.infer({"images": x})["out"], 2 * x)
        with pytest.raises(ValueError, match="missing input"):
            runner.infer({})
    stats = trt_run.time_engine(engine, warmup=2, runs=5, input_shape=(1, 3, 8, 8))
    assert stats.runs == 5 and stats.info["runner"] == "tensorrt" and stats.info["precision"] == "fp16"
    assert stats.info["input_shapes"] == {"images": [1, 3, 8, 8]} and stats.info["device"] == "Fake GPU"
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"bad engine")
    with pytest.raises(EngineBuildError, match="cannot load"):
        trt_run.EngineRunner(bad)


# ---------------------------------------------------------------- the real TensorRT


def _require_tensorrt():
    if trt_build.tensorrt_version() is None:
        pytest.skip("TensorRT is not installed: `import tensorrt` fails (no GPU build/run on this machine)")
    try:
        trt_run.cuda_backend().close()
    except ImportError as e:
        pytest.skip("TensorRT is installed but CUDA is not usable from Python: {}".format(e))


def test_without_tensorrt_the_error_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"x")
    with pytest.raises(ImportError, match="TensorRT is not installed"):
        build_engine(onnx_path, tmp_path / "m.engine")
    assert trt_build.tensorrt_version() is None


def _conv_onnx(path, batch=1):
    w = numpy_helper.from_array(np.random.RandomState(0).randn(4, 3, 3, 3).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["out"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 4, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path.write_bytes(model.SerializeToString())
    return path


def test_real_build_run_and_time(tmp_path):
    _require_tensorrt()
    from deploy.onnxruntime_runner import OnnxRuntimeRunner

    onnx_path = _conv_onnx(tmp_path / "conv.onnx", batch="batch")
    cache = tmp_path / "timing.cache"
    info = build_engine(onnx_path, tmp_path / "conv.engine", precision="fp32", input_shape=(2, 3, 16, 16),
                        timing_cache=cache)
    assert info["input_shapes"] == {"images": [2, 3, 16, 16]} and cache.stat().st_size > 0
    x = np.random.rand(2, 3, 16, 16).astype(np.float32)
    with trt_run.EngineRunner(tmp_path / "conv.engine") as runner:
        got = runner.infer({"images": x})["out"]
    want = OnnxRuntimeRunner(onnx_path, threads=1).infer({"images": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    stats = trt_run.time_engine(tmp_path / "conv.engine", warmup=5, runs=20)
    assert stats.runs == 20 and 0 < stats.median_ms < 100


def test_real_int8_with_npy_calibration(tmp_path):
    _require_tensorrt()
    onnx_path = _conv_onnx(tmp_path / "conv.onnx")
    np.save(str(tmp_path / "calib.npy"), np.random.rand(4, 3, 16, 16).astype(np.float32))
    build_engine(onnx_path, tmp_path / "int8.engine", precision="int8", calib_source=tmp_path / "calib.npy",
                 calib_cache=tmp_path / "calib.cache")
    assert (tmp_path / "calib.cache").stat().st_size > 0


def test_real_build_error_has_tensorrt_lines(tmp_path):
    _require_tensorrt()
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="nowhere")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("nowhere", 1)])
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(EngineBuildError) as e:
        build_engine(path, tmp_path / "bad.engine", precision="fp32")
    assert e.value.log_lines and not os.path.exists(str(tmp_path / "bad.engine"))
