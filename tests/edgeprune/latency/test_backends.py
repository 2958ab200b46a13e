"""Backends on this machine: onnxruntime for real (a YOLOv5n at 64 px); torch-cuda and TensorRT where present."""
import importlib.util

import pytest
import torch
from torch import nn

from edgeprune.latency import MeasurementError, get_backend, measure, module_to_onnx
from edgeprune.latency.ort import OrtBackend
from edgeprune.latency.remote import RemoteBackend, parse_hosts
from edgeprune.latency.tensorrt import TensorRTBackend
from edgeprune.latency.torch_cuda import TorchCudaBackend

pytest.importorskip("onnxruntime")
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def yolo_onnx():
    from edgeprune.models import create_model

    torch.manual_seed(0)
    return module_to_onnx(create_model("yolov5n", num_classes=2).eval(), SHAPE)


def small():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_get_backend_specs():
    assert isinstance(get_backend(), OrtBackend) and isinstance(get_backend("onnxruntime", threads=1), OrtBackend)
    assert get_backend("ort", threads=1).fingerprint()["threads"] == 1
    assert isinstance(get_backend("torch-cuda", cuda_graph=True), TorchCudaBackend)
    assert isinstance(get_backend("tensorrt", precision="fp32"), TensorRTBackend)
    remote = get_backend("remote://a.local:8765,10.0.0.2:8765", token="t", backend="trt")
    assert isinstance(remote, RemoteBackend) and remote.hosts == ["a.local:8765", "10.0.0.2:8765"]
    with pytest.raises(ValueError, match="unknown latency backend"):
        get_backend("fpga")
    with pytest.raises(ValueError, match="host:port"):
        parse_hosts("remote://tx2.local")


def test_ort_measures_a_yolov5n(yolo_onnx):
    backend = OrtBackend(threads=1, warmup=2, runs=15, min_warmup_s=0.1)
    fp = backend.fingerprint()
    assert fp["threads"] == 1 and fp["backend"] == "ort" and fp["onnxruntime"] and fp["precision"] == "fp32"
    assert fp == backend.fingerprint()  # stable
    stats = backend.measure(yolo_onnx, SHAPE)
    assert stats.runs == 15 and len(stats.samples_ms) == 15 and stats.warmup >= 2
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p99_ms <= stats.max_ms < 1000
    assert stats.info["threads"] == 1 and stats.info["backend"] == "ort" and len(stats.info["attempts"]) >= 1
    assert stats.info["input_shapes"] == {"images": list(SHAPE)}


def test_ort_remeasures_a_wide_spread_and_keeps_the_tightest():
    backend = OrtBackend(threads=1, warmup=1, runs=5, max_cv=0.0, max_attempts=3, min_warmup_s=0.0)
    stats = backend.measure(module_to_onnx(small(), (1, 3, 16, 16)), (1, 3, 16, 16))
    attempts = stats.info["attempts"]
    assert len(attempts) == 3 and stats.info["noisy"] is True
    assert stats.cv == pytest.approx(min(a["cv"] for a in attempts))


def test_measure_accepts_module_bytes_and_path(tmp_path):
    backend = OrtBackend(threads=1, warmup=1, runs=3, min_warmup_s=0.0)
    shape = (1, 3, 16, 16)
    onnx = module_to_onnx(small(), shape)
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx)
    for model in (small(), onnx, path, str(path)):
        assert measure(model, shape, backend).runs == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        measure(tmp_path / "missing.onnx", shape, backend)


def test_ort_bad_model_and_bad_shape_are_measurement_errors():
    backend = OrtBackend(threads=1, warmup=1, runs=3, min_warmup_s=0.0)
    with pytest.raises(MeasurementError, match="onnxruntime"):
        backend.measure(b"not onnx", (1, 3, 16, 16))
    with pytest.raises(ValueError, match="input_shape"):
        backend.measure(module_to_onnx(small(), (1, 3, 16, 16)), (1, 0, 16))


def test_torch_cuda_refuses_onnx_clearly():
    with pytest.raises(MeasurementError, match="measure_module"):
        TorchCudaBackend().measure(b"...", (1, 3, 16, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the torch-cuda backend is not run here")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_torch_cuda_measures_a_module(cuda_graph):
    backend = TorchCudaBackend(cuda_graph=cuda_graph, warmup=3, runs=10)
    stats = backend.measure_module(small(), (1, 3, 32, 32))
    assert stats.runs == 10 and 0 < stats.median_ms < 1000 and stats.info["cuda_graph"] is cuda_graph
    assert backend.fingerprint()["device"]
    assert measure(small(), (1, 3, 32, 32), backend).runs == 10  # a module goes to measure_module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_torch_cuda_without_gpu_says_so():
    with pytest.raises(MeasurementError, match="CUDA GPU"):
        TorchCudaBackend().measure_module(small(), (1, 3, 16, 16))


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed here: the tensorrt backend is not run")
def test_tensorrt_measures_and_caches_the_engine(tmp_path):
    backend = TensorRTBackend(precision="fp32", workspace_mb=256, engine_cache_dir=tmp_path, warmup=2, runs=10)
    onnx = module_to_onnx(small(), (1, 3, 32, 32))
    first = backend.measure(onnx, (1, 3, 32, 32))
    second = backend.measure(onnx, (1, 3, 32, 32))
    assert first.runs == 10 and not first.info["engine_cached"] and second.info["engine_cached"]
    assert backend.fingerprint()["tensorrt"]


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed")
def test_tensorrt_without_tensorrt_says_so():
    with pytest.raises(MeasurementError, match="TensorRT"):
        TensorRTBackend().measure(module_to_onnx(small(), (1, 3, 16, 16)), (1, 3, 16, 16))
