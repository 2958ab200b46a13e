"""What an ONNX file holds: opset, inputs, outputs, parameter count and FLOPs, without any framework.

FLOPs follow the host's convention (edgeprune.complexity): 2 × MACs of Conv, ConvTranspose, Gemm and MatMul only,
from shapes that `onnx.shape_inference` fills in.
"""

from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import onnx


def load(model: Any) -> "onnx.ModelProto":
    """An onnx.ModelProto from a path, bytes or a ModelProto, with a clear error for a file that is not ONNX."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_from_string(bytes(model))
        return onnx.load(str(model))
    except Exception as e:  # protobuf's DecodeError, or OSError
        where = "the given bytes" if isinstance(model, (bytes, bytearray)) else str(model)
        raise ValueError("{} is not a readable ONNX model ({}: {}). Export one with `edgeprune export`."
                         .format(where, type(e).__name__, e))


def _dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _shapes(model, input_shape=None):
    """Name → concrete shape for every tensor shape inference can reach."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    if input_shape is not None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(dims, input_shape):
            d.Clear()
            d.dim_value = int(v)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi)
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _node_macs(node, shapes):
    prod = lambda xs: int(np.prod(xs)) if xs else 0  # noqa: E731
    out = shapes.get(node.output[0])
    if out is None or any(not isinstance(d, int) for d in out):
        return 0
    if node.op_type in ("Conv", "ConvTranspose"):
        w = shapes.get(node.input[1])
        if not w:
            return 0
        if node.op_type == "Conv":  # W: [Cout, Cin/g, k...]
            return prod(out) * prod(w[1:])
        inp = shapes.get(node.input[0])  # W: [Cin, Cout/g, k...]
        return prod(inp) * prod(w[1:]) if inp and all(isinstance(d, int) for d in inp) else 0
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes.get(node.input[0])
        if not a or not isinstance(a[-1], int):
            return 0
        k = a[-1]
        if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute):
            k = a[0]
        return prod(out) * k
    return 0


def inspect(model: Any, input_shape: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Summary dict: opset, inputs/outputs with shapes, params, flops (at `input_shape` if given)."""
    m = load(model)
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    shapes = _shapes(m, input_shape)
    macs = sum(_node_macs(n, shapes) for n in m.graph.node)
    init_names = set(t.name for t in m.graph.initializer)
    return {
        "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "producer": "{} {}".format(m.producer_name, m.producer_version).strip(),
        "inputs": [{"name": i.name, "shape": shapes.get(i.name, _dims(i))}
                   for i in m.graph.input if i.name not in init_names],
        "outputs": [{"name": o.name, "shape": shapes.get(o.name, _dims(o))} for o in m.graph.output],
        "nodes": len(m.graph.node),
        "params": params,
        "flops": 2 * macs,
    }
