import numpy as np
import onnx
import pytest
import torch

from deploy.onnx_info import inspect
from deploy.onnxruntime_runner import OnnxRuntimeRunner
from edgeprune.evaluate.complexity import count_flops
from edgeprune.export import ATOL, RTOL, export_onnx
from edgeprune.models import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("yolov5n", num_classes=2).eval()


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_export_matches_torch(tmp_path, model, opset):
    r = export_onnx(model, tmp_path / "m.onnx", img_size=128, opset=opset)
    proto = onnx.load(r.path)
    assert proto.opset_import[0].version == opset
    assert not list(tmp_path.glob("*.data"))  # weights inside the single file
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    (got,) = OnnxRuntimeRunner(r.path).infer({"images": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 7)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_nms_layout(tmp_path, model):
    r = export_onnx(model, tmp_path / "m.onnx", img_size=128, layout="nms", dynamic_batch=True)
    x = torch.rand(2, 3, 128, 128)
    boxes, scores = OnnxRuntimeRunner(r.path).infer({"images": x.numpy()})
    with torch.no_grad():
        y = model(x).numpy()
    np.testing.assert_allclose(boxes[..., 2] - boxes[..., 0], y[..., 2], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(scores, y[..., 5:] * y[..., 4:5], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", ["yolov5n", "yolov8n", "yolo11n"])
def test_flops_agree_between_torch_and_onnx(tmp_path, name):
    model = create_model(name, num_classes=2).eval()
    r = export_onnx(model, tmp_path / "m.onnx", img_size=160)
    info = inspect(r.path)
    assert info["flops"] == count_flops(model, 160) and info["unshaped"] == 0
    assert "Shape" not in {n.op_type for n in onnx.load(r.path).graph.node}  # C2f's chunk folded to slices


def test_without_graphsurgeon_a_partial_count_says_so(tmp_path, monkeypatch):
    """torch writes C2f's chunk as shape arithmetic; unfolded, the convolutions behind it have unknown shapes."""
    model = create_model("yolov8n", num_classes=2).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 160, 160),), str(path), opset_version=13, dynamo=False)
    import deploy.onnx_info

    def no_graphsurgeon(model):
        raise ImportError("onnx_graphsurgeon")

    monkeypatch.setattr(deploy.onnx_info, "folded", no_graphsurgeon)
    info = inspect(path)
    assert info["unshaped"] > 0 and info["flops"] < count_flops(model, 160)


def test_failed_export_leaves_no_file(tmp_path, model):
    with pytest.raises(ValueError, match="layout"):
        export_onnx(model, tmp_path / "m.onnx", layout="bogus")
    assert not list(tmp_path.iterdir())
