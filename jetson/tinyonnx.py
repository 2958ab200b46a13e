"""The self-test's models, written as ONNX bytes without the onnx package (a TX2 may not have it), and a
pure-Python reference of the conv model's output for boards without onnxruntime or numpy.

- `conv_model()`: x [1, 3, 8, 8] → Conv(4 filters 3×3, pads 1, bias) → Relu → y [1, 4, 8, 8], opset 13, fixed
  weights. Small enough that TensorRT builds it in seconds on a TX2 and the reference runs in milliseconds.
- `efficientnms_model()`: boxes [1, 100, 4] and scores [1, 100, 2] → EfficientNMS_TRT (the NMS plugin that
  exported YOLO detectors end with) → num_detections, detection_boxes, detection_scores, detection_classes.
  Only TensorRT's ONNX parser (with its plugins registered) accepts it: onnx.checker and onnxruntime do not.

tests/jetson/test_selftest.py checks these bytes with onnx.checker and the reference against onnxruntime.
"""

import struct
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .protobuf import bytes_field, float_field, int_field

FLOAT, INT32 = 1, 6  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7  # AttributeProto.AttributeType
CONV_INPUT, CONV_OUTPUT = [1, 3, 8, 8], [1, 4, 8, 8]


def tensor(name: str, dims: Iterable[int], values: Sequence[float], data_type: int = FLOAT) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9) as little-endian float32."""
    raw = struct.pack("<{}f".format(len(values)), *values)
    return b"".join([int_field(1, d) for d in dims] + [int_field(2, data_type), bytes_field(8, name),
                                                        bytes_field(9, raw)])


def value_info(name: str, dims: Iterable[int], elem_type: int = FLOAT) -> bytes:
    """ValueInfoProto{name (1), type (2): TypeProto{tensor_type (1): {elem_type (1), shape (2): {dim (1)*}}}}."""
    shape = b"".join(bytes_field(1, int_field(1, d)) for d in dims)
    tensor_type = int_field(1, elem_type) + bytes_field(2, shape)
    return bytes_field(1, name) + bytes_field(2, bytes_field(1, tensor_type))


def attribute(name: str, value: Union[int, float, str, List[int]]) -> bytes:
    """AttributeProto for an int, float, str or list of ints (name (1), f (2), i (3), s (4), ints (8), type (20))."""
    head = bytes_field(1, name)
    if isinstance(value, list):
        return head + b"".join(int_field(8, v) for v in value) + int_field(20, _ATTR_INTS)
    if isinstance(value, float):
        return head + float_field(2, value) + int_field(20, _ATTR_FLOAT)
    if isinstance(value, str):
        return head + bytes_field(4, value) + int_field(20, _ATTR_STRING)
    return head + int_field(3, value) + int_field(20, _ATTR_INT)


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], attributes: Optional[Dict[str, Any]] = None,
         name: str = "") -> bytes:
    """NodeProto: input (1)*, output (2)*, name (3), op_type (4), attribute (5)*."""
    parts = [bytes_field(1, i) for i in inputs] + [bytes_field(2, o) for o in outputs]
    parts += [bytes_field(3, name or op_type.lower()), bytes_field(4, op_type)]
    parts += [bytes_field(5, attribute(k, v)) for k, v in sorted((attributes or {}).items())]
    return b"".join(parts)


def model(nodes: Iterable[bytes], inputs: Iterable[bytes], outputs: Iterable[bytes], initializers: Iterable[bytes] = (),
          name: str = "edgeprune-selftest", opset: int = 13, ir_version: int = 7) -> bytes:
    """ModelProto{ir_version (1), producer_name (2), graph (7), opset_import (8)} around one GraphProto{node (1)*,
    name (2), initializer (5)*, input (11)*, output (12)*}."""
    graph = b"".join([bytes_field(1, n) for n in nodes] + [bytes_field(2, name)]
                     + [bytes_field(5, t) for t in initializers] + [bytes_field(11, i) for i in inputs]
                     + [bytes_field(12, o) for o in outputs])
    opset_import = bytes_field(1, "") + int_field(2, opset)
    return int_field(1, ir_version) + bytes_field(2, name) + bytes_field(7, graph) + bytes_field(8, opset_import)


def conv_weights() -> Tuple[List[float], List[float]]:
    """(weights [4, 3, 3, 3], bias [4]) as flat lists: fixed values in [-0.5, 0.5], exact in float32."""
    weights = [((i * 37) % 17 - 8) / 16.0 for i in range(4 * 3 * 3 * 3)]
    bias = [(k - 1.5) / 8.0 for k in range(4)]
    return weights, bias


def conv_input() -> List[float]:
    """The self-test's input x [1, 3, 8, 8] as a flat list in [0, 1), exact in float32."""
    return [((i * 13) % 23) / 32.0 for i in range(3 * 8 * 8)]


def conv_model() -> bytes:
    weights, bias = conv_weights()
    nodes = [node("Conv", ["x", "w", "b"], ["h"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
             node("Relu", ["h"], ["y"])]
    return model(nodes, [value_info("x", CONV_INPUT)], [value_info("y", CONV_OUTPUT)],
                 [tensor("w", [4, 3, 3, 3], weights), tensor("b", [4], bias)], name="selftest-conv")


def conv_reference(x: Optional[Iterable[float]] = None) -> List[float]:
    """y of conv_model() for a flat input `x` (default conv_input()), as a flat list, in plain Python."""
    x = conv_input() if x is None else list(x)
    weights, bias = conv_weights()
    out = []
    for k in range(4):
        for r in range(8):
            for c in range(8):
                acc = bias[k]
                for ch in range(3):
                    for dr in range(3):
                        for dc in range(3):
                            rr, cc = r + dr - 1, c + dc - 1
                            if 0 <= rr < 8 and 0 <= cc < 8:
                                acc += weights[((k * 3 + ch) * 3 + dr) * 3 + dc] * x[(ch * 8 + rr) * 8 + cc]
                out.append(max(acc, 0.0))
    return out


def efficientnms_model(boxes: int = 100, classes: int = 2, keep: int = 10) -> bytes:
    attrs = {"background_class": -1, "box_coding": 0, "iou_threshold": 0.45, "max_output_boxes": keep,
             "plugin_version": "1", "score_activation": 0, "score_threshold": 0.25}
    outputs = [value_info("num_detections", [1, 1], INT32), value_info("detection_boxes", [1, keep, 4]),
               value_info("detection_scores", [1, keep]), value_info("detection_classes", [1, keep], INT32)]
    nms = node("EfficientNMS_TRT", ["boxes", "scores"], [o for o in ("num_detections", "detection_boxes",
                                                                     "detection_scores", "detection_classes")],
               attrs, name="batched_nms")
    return model([nms], [value_info("boxes", [1, boxes, 4]), value_info("scores", [1, boxes, classes])], outputs,
                 name="selftest-efficientnms")
