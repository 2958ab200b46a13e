import pytest
import torch

from deploy.onnx_info import inspect
from deploy.onnxruntime_runner import OnnxRuntimeRunner, time_onnx


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), opset_version=13, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "b"}})
    return path


def test_times_a_real_model(conv_onnx):
    s = time_onnx(conv_onnx, shape=(1, 3, 32, 32), warmup=2, runs=20, threads=1)
    assert s.runs == 20 and len(s.samples_ms) == 20
    assert 0 < s.min_ms <= s.median_ms <= s.p99_ms <= s.max_ms
    assert s.info["threads"] == 1 and s.info["runner"] == "onnxruntime"


def test_dynamic_batch_needs_a_shape(conv_onnx):
    with pytest.raises(ValueError, match="dynamic shape"):
        OnnxRuntimeRunner(conv_onnx).time(warmup=0, runs=1)


def test_not_onnx_gets_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(ValueError, match="model.onnx"):
        OnnxRuntimeRunner(bad)
    with pytest.raises(ValueError, match="model.onnx"):
        inspect(bad)


def test_inspect_counts_conv_flops(conv_onnx):
    info = inspect(conv_onnx, input_shape=(1, 3, 32, 32))
    assert info["flops"] == 2 * (32 * 32 * 8 * 3 * 9 + 32 * 32 * 4 * 8)
    assert info["params"] == 8 * 27 + 8 + 4 * 8 + 4
    assert info["inputs"][0]["shape"] == [1, 3, 32, 32]
