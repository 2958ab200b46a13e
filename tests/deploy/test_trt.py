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
    import importlib
    try:
        importlib.import_module("polygraphy.backend.trt")
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


# ---------------------------------------------------------------- against the stand-ins (conftest.py)


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
