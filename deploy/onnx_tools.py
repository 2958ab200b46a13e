"""ONNX graph tools on onnx-graphsurgeon: inspect, fold constants, and append TensorRT's EfficientNMS_TRT.

The detector ONNX from `edgeprune export` has either one output `output0` [B, N, 5 + C] with rows
`(cx, cy, w, h, objectness, class scores...)` (layout "yolo") or two outputs `boxes` [B, N, 4] (x1, y1, x2, y2)
and `scores` [B, N, C] (layout "nms"). `add_efficient_nms` turns the first into the second inside the graph
(Slice, Mul and, for corner boxes, Sub/Add/Concat — the same arithmetic as edgeprune.export.NMSReadyOutputs) and
appends an EfficientNMS_TRT node, so the engine emits final detections:
`num_detections` int32 [B, 1], `detection_boxes` float32 [B, K, 4], `detection_scores` float32 [B, K],
`detection_classes` int32 [B, K], K = max_output_boxes.

The plugin node is written in the custom domain "trt.plugins" (declared in opset_import) so that onnx.checker
accepts the graph; TensorRT's ONNX parser looks plugins up by op type only and ignores the domain.
onnxruntime cannot run the plugin; `decode_outputs` builds the same graph without it for checking.

Only onnx-graphsurgeon API that exists since 0.3 (what TensorRT 8.2 ships for Python 3.6) is used.
"""

import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Union

import numpy as np

from .onnx_info import export_graph, folded, load
from .onnx_info import inspect as _inspect

if TYPE_CHECKING:
    import onnx

NMS_OP = "EfficientNMS_TRT"
NMS_DOMAIN = "trt.plugins"
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def inspect(model: Any, input_shape: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """deploy.onnx_info.inspect: opset, inputs, outputs, params, FLOPs."""
    return _inspect(model, input_shape)


def _gs():
    try:
        import onnx_graphsurgeon as gs
    except ImportError as e:
        raise ImportError("onnx-graphsurgeon is not installed ({}): `pip install onnx-graphsurgeon` (on a TX2 "
                          "with Python 3.6, the wheel that comes with TensorRT 8.2)".format(e))
    return gs


def fold_constants(model: Any) -> "onnx.ModelProto":
    """Constant folding + dead-node cleanup + topological sort (graphsurgeon); returns a ModelProto that computes
    the same outputs with fewer nodes (onnx_info.folded, which says how)."""
    _gs()  # the install hint when graphsurgeon is missing
    return folded(load(model))


def detector_layout(model: Any) -> str:
    """'yolo' (one [B, N, 5 + C] output) or 'nms' (outputs boxes + scores), else ValueError."""
    names = [o.name for o in load(model).graph.output]
    if names == ["output0"]:
        return "yolo"
    if sorted(names) == ["boxes", "scores"]:
        return "nms"
    raise ValueError("outputs {} are neither a YOLO 'output0' [B, N, 5 + C] nor 'boxes' + 'scores': export the "
                     "detector with `edgeprune export`".format(names))


def _const(gs, name, values):
    return gs.Constant(name, np.asarray(values, dtype=np.int64))


def _slice(gs, graph, tensor, start, end, name):
    """tensor[..., start:end] along the last axis (axis 2 of a rank-3 tensor)."""
    name = "nms_prep/" + name
    out = gs.Variable(name, dtype=np.float32)
    node = gs.Node("Slice", name=name,
                   inputs=[tensor, _const(gs, name + "_starts", [start]), _const(gs, name + "_ends", [end]),
                           _const(gs, name + "_axes", [2])], outputs=[out])
    graph.nodes.append(node)
    return out


def _binary(gs, graph, op, a, b, name):
    """a <op> b; the graph's own outputs keep their names, intermediate tensors are prefixed nms_prep/."""
    out = gs.Variable(name if name == "scores" else "nms_prep/" + name, dtype=np.float32)
    graph.nodes.append(gs.Node(op, name="nms_prep/" + name, inputs=[a, b], outputs=[out]))
    return out


def _decode(gs, graph, box_coding):
    """From `output0` add boxes [B, N, 4] (corners, or centre-size when box_coding=1) and scores [B, N, C]."""
    out = graph.outputs[0]
    if out.shape is None or len(out.shape) != 3 or not isinstance(out.shape[2], int) or out.shape[2] < 6:
        raise ValueError("output0 must be [B, N, 5 + C] with a static last dimension, not {}".format(out.shape))
    width = int(out.shape[2])
    if box_coding == 1:
        boxes = _slice(gs, graph, out, 0, 4, "boxes")
        boxes.name = "boxes"
    else:
        xy, wh = _slice(gs, graph, out, 0, 2, "xy"), _slice(gs, graph, out, 2, 4, "wh")
        half = _binary(gs, graph, "Mul", wh, gs.Constant("nms_prep/half", np.array([0.5], dtype=np.float32)),
                       "half_wh")
        x1y1 = _binary(gs, graph, "Sub", xy, half, "x1y1")
        x2y2 = _binary(gs, graph, "Add", xy, half, "x2y2")
        boxes = gs.Variable("boxes", dtype=np.float32)
        graph.nodes.append(gs.Node("Concat", name="nms_prep/boxes", attrs={"axis": 2},
                                   inputs=[x1y1, x2y2], outputs=[boxes]))
    obj = _slice(gs, graph, out, 4, 5, "objectness")
    cls = _slice(gs, graph, out, 5, width, "class_scores")
    scores = _binary(gs, graph, "Mul", obj, cls, "scores")
    batch, n = out.shape[0], out.shape[1]
    boxes.shape, scores.shape = [batch, n, 4], [batch, n, width - 5]
    return boxes, scores


def _prepare(model, box_coding):
    """(gs, graph, original, boxes, scores) with the graph's outputs set to boxes + scores."""
    if box_coding not in (0, 1):
        raise ValueError("box_coding must be 0 (x1, y1, x2, y2) or 1 (cx, cy, w, h), not {!r}".format(box_coding))
    gs = _gs()
    original = load(model)
    layout = detector_layout(original)
    opset = max(o.version for o in original.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 10:
        raise ValueError("opset {} < 10: Slice takes its bounds as inputs from opset 10 on; re-export with "
                         "opset 11-13".format(opset))
    graph = gs.import_onnx(original)
    if layout == "yolo":
        boxes, scores = _decode(gs, graph, box_coding)
    else:
        if box_coding != 0:
            raise ValueError("the 'nms' layout already has corner boxes: use box_coding=0")
        outs = dict((o.name, o) for o in graph.outputs)
        boxes, scores = outs["boxes"], outs["scores"]
    graph.outputs = [boxes, scores]
    return gs, graph, original, boxes, scores


def decode_outputs(model: Any, box_coding: int = 0) -> "onnx.ModelProto":
    """The detector with outputs boxes + scores exactly as EfficientNMS_TRT would receive them (no plugin)."""
    gs, graph, original, _, _ = _prepare(model, box_coding)
    graph.cleanup().toposort()
    return export_graph(gs, graph, original)


def nms_attributes(max_output_boxes: int = 100, score_threshold: float = 0.25, iou_threshold: float = 0.45,
                   class_agnostic: bool = False, box_coding: int = 0) -> Dict[str, Any]:
    """EfficientNMS_TRT's plugin fields as TensorRT documents them (background_class -1: every class is real)."""
    if not 0.0 <= float(iou_threshold) <= 1.0 or not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError("score_threshold and iou_threshold must lie in [0, 1]")
    return {
        "plugin_version": "1",
        "background_class": -1,
        "max_output_boxes": int(max_output_boxes),
        "score_threshold": float(score_threshold),
        "iou_threshold": float(iou_threshold),
        "score_activation": 0,  # scores are already probabilities (sigmoid applied in the model)
        "class_agnostic": int(bool(class_agnostic)),
        "box_coding": int(box_coding),
    }


def add_efficient_nms(model: Any, max_output_boxes: int = 100, score_threshold: float = 0.25,
                      iou_threshold: float = 0.45, class_agnostic: bool = False, box_coding: int = 0,
                      domain: str = NMS_DOMAIN) -> "onnx.ModelProto":
    """Append EfficientNMS_TRT to a detector ONNX (path, bytes or ModelProto); returns the new ModelProto.

    domain="" writes the node in the default domain as NVIDIA's samples do (onnx.checker then rejects it).
    """
    attrs = nms_attributes(max_output_boxes, score_threshold, iou_threshold, class_agnostic, box_coding)
    gs, graph, original, boxes, scores = _prepare(model, box_coding)
    batch, k = boxes.shape[0] if boxes.shape else "batch", attrs["max_output_boxes"]
    outputs = [gs.Variable("num_detections", dtype=np.int32, shape=[batch, 1]),
               gs.Variable("detection_boxes", dtype=np.float32, shape=[batch, k, 4]),
               gs.Variable("detection_scores", dtype=np.float32, shape=[batch, k]),
               gs.Variable("detection_classes", dtype=np.int32, shape=[batch, k])]
    graph.nodes.append(gs.Node(NMS_OP, name="efficient_nms", attrs=attrs, inputs=[boxes, scores], outputs=outputs))
    graph.outputs = outputs
    graph.cleanup().toposort()
    out = export_graph(gs, graph, original)
    if domain:
        _set_plugin_domain(out, domain)
    return out


def _set_plugin_domain(model, domain):
    """Put the plugin node in `domain` and declare it (graphsurgeon 0.3 has no Node.domain)."""
    for node in model.graph.node:
        if node.op_type == NMS_OP:
            node.domain = domain
    if not any(o.domain == domain for o in model.opset_import):
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, 1


def save(model: "onnx.ModelProto", path: Union[str, os.PathLike]) -> Union[str, os.PathLike]:
    """Write a ModelProto atomically (the conventions' rule for finished work)."""
    from .files import write_atomic

    write_atomic(path, model.SerializeToString())
    return path
