"""Graph surgery on real detector ONNX: constant folding and the EfficientNMS_TRT head.

onnxruntime cannot run the TensorRT plugin, so the plugin node is checked as a graph (onnx.checker, attributes,
outputs) and the arithmetic in front of it numerically through `decode_outputs`.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnx_graphsurgeon", reason="onnx-graphsurgeon is not installed")

from deploy import onnx_tools  # noqa: E402
from deploy.onnxruntime_runner import OnnxRuntimeRunner  # noqa: E402

N, C = 10, 3


def _tiny_detector(batch="batch"):
    """x [B, N, 5 + C] → output0 = sigmoid(x * (c1 + c2)); c1 + c2 is a constant subgraph to fold."""
    c1 = numpy_helper.from_array(np.full((1, 1, 5 + C), 0.5, np.float32), "c1")
    c2 = numpy_helper.from_array(np.full((1, 1, 5 + C), 1.5, np.float32), "c2")
    nodes = [helper.make_node("Add", ["c1", "c2"], ["c12"]), helper.make_node("Mul", ["x", "c12"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["output0"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, N, 5 + C])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, N, 5 + C])],
                              [c1, c2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # what TensorRT 8.2's parser knows
    onnx.checker.check_model(model)
    return model


def _run(model, feed):
    return OnnxRuntimeRunner(model.SerializeToString(), threads=1).infer(feed)


def _dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def yolo_onnx(tmp_path_factory):
    """The host's yolov5n (2 classes) exported at 64 px in both layouts."""
    torch = pytest.importorskip("torch")
    from edgeprune.export import export_onnx
    from edgeprune.models import create_model

    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=2).eval()
    folder = tmp_path_factory.mktemp("yolo")
    export_onnx(model, folder / "yolo.onnx", img_size=64, opset=13)
    export_onnx(model, folder / "nms.onnx", img_size=64, opset=13, layout="nms")
    return folder / "yolo.onnx", folder / "nms.onnx"


def test_fold_removes_constant_nodes_and_keeps_outputs():
    model = _tiny_detector()
    folded = onnx_tools.fold_constants(model)
    assert len(folded.graph.node) == len(model.graph.node) - 1
    assert folded.ir_version == 7
    x = np.random.RandomState(0).randn(2, N, 5 + C).astype(np.float32)
    np.testing.assert_array_equal(_run(folded, {"x": x})[0], _run(model, {"x": x})[0])


def test_fold_keeps_yolov5_outputs(yolo_onnx):
    folded = onnx_tools.fold_constants(yolo_onnx[0])
    onnx.checker.check_model(folded, full_check=True)
    x = np.random.RandomState(1).rand(1, 3, 64, 64).astype(np.float32)
    want = OnnxRuntimeRunner(yolo_onnx[0], threads=1).infer({"images": x})[0]
    np.testing.assert_array_equal(_run(folded, {"images": x})[0], want)
    before, after = onnx_tools.inspect(yolo_onnx[0]), onnx_tools.inspect(folded)
    assert after["flops"] == before["flops"] and after["nodes"] <= before["nodes"]


@pytest.mark.parametrize("box_coding", [0, 1])
def test_decode_matches_numpy(box_coding):
    x = np.random.RandomState(2).randn(2, N, 5 + C).astype(np.float32)
    (y,) = _run(_tiny_detector(), {"x": x})
    boxes, scores = _run(onnx_tools.decode_outputs(_tiny_detector(), box_coding), {"x": x})
    xy, wh = y[..., :2], y[..., 2:4]
    want = np.concatenate([xy - wh / 2, xy + wh / 2], -1) if box_coding == 0 else y[..., :4]
    np.testing.assert_allclose(boxes, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scores, y[..., 5:] * y[..., 4:5], rtol=1e-6)


def test_decode_of_yolo_export_equals_the_hosts_nms_layout(yolo_onnx):
    """Our in-graph decode computes what edgeprune.export's NMSReadyOutputs computes in torch."""
    x = np.random.RandomState(3).rand(1, 3, 64, 64).astype(np.float32)
    got = _run(onnx_tools.decode_outputs(yolo_onnx[0]), {"images": x})
    want = OnnxRuntimeRunner(yolo_onnx[1], threads=1).infer({"images": x})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


def _check_nms_graph(model, batch, num_classes, max_boxes, box_coding):
    onnx.checker.check_model(model, full_check=True)
    (node,) = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert node.domain == onnx_tools.NMS_DOMAIN
    assert any(o.domain == onnx_tools.NMS_DOMAIN for o in model.opset_import)
    attrs = dict((a.name, helper.get_attribute_value(a)) for a in node.attribute)
    assert attrs["plugin_version"] == b"1" and attrs["background_class"] == -1
    assert attrs["max_output_boxes"] == max_boxes and attrs["score_activation"] == 0
    assert attrs["box_coding"] == box_coding and attrs["class_agnostic"] == 0
    assert attrs["score_threshold"] == pytest.approx(0.3) and attrs["iou_threshold"] == pytest.approx(0.5)
    outs = dict((o.name, o) for o in model.graph.output)
    assert list(outs) == list(onnx_tools.NMS_OUTPUTS)
    assert _dims(outs["num_detections"]) == [batch, 1]
    assert _dims(outs["detection_boxes"]) == [batch, max_boxes, 4]
    assert _dims(outs["detection_scores"]) == _dims(outs["detection_classes"]) == [batch, max_boxes]
    types = [outs[n].type.tensor_type.elem_type for n in onnx_tools.NMS_OUTPUTS]
    assert types == [TensorProto.INT32, TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT32]
    boxes_in, scores_in = node.input
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = dict((v.name, _dims(v)) for v in inferred.graph.value_info)
    assert shapes[scores_in][-1] == num_classes and shapes[boxes_in][-1] == 4


@pytest.mark.parametrize("box_coding", [0, 1])
def test_nms_on_tiny_detector(box_coding):
    model = onnx_tools.add_efficient_nms(_tiny_detector(), max_output_boxes=20, score_threshold=0.3,
                                         iou_threshold=0.5, box_coding=box_coding)
    _check_nms_graph(model, "batch", C, 20, box_coding)


def test_nms_on_yolov5_exports(yolo_onnx, tmp_path):
    for path in yolo_onnx:
        model = onnx_tools.add_efficient_nms(path, max_output_boxes=50, score_threshold=0.3, iou_threshold=0.5)
        _check_nms_graph(model, 1, 2, 50, 0)
        saved = onnx_tools.save(model, tmp_path / (path.stem + "_nms.onnx"))
        assert onnx.load(str(saved)).graph.output[0].name == "num_detections"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic write left no temp file


def test_default_domain_option():
    model = onnx_tools.add_efficient_nms(_tiny_detector(), domain="")
    (node,) = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert node.domain == "" and [o.domain for o in model.opset_import] == [""]


def test_bad_inputs_get_clear_errors(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(ValueError, match="neither a YOLO"):
        onnx_tools.add_efficient_nms(helper.make_model(graph))
    with pytest.raises(ValueError, match="box_coding"):
        onnx_tools.add_efficient_nms(_tiny_detector(), box_coding=2)
    with pytest.raises(ValueError, match="iou_threshold"):
        onnx_tools.add_efficient_nms(_tiny_detector(), iou_threshold=1.5)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="broken.onnx"):
        onnx_tools.fold_constants(bad)


def test_nms_layout_rejects_centre_size_coding(yolo_onnx):
    with pytest.raises(ValueError, match="corner boxes"):
        onnx_tools.add_efficient_nms(yolo_onnx[1], box_coding=1)
