"""What an ONNX file holds: opset, inputs, outputs, parameter count and FLOPs, without any framework.

FLOPs follow the host's convention (edgeprune.evaluate.complexity): 2 × MACs of Conv, ConvTranspose, Gemm and
MatMul only, from shapes that `onnx.shape_inference` fills in after onnx-graphsurgeon folded the shape arithmetic
(without that, everything behind a `Tensor.chunk` has unknown shapes: yolov8n counted 0.06 of its 1.40 GFLOPs).
Nodes whose shapes stay unknown are counted in `unshaped`, so a partial count is never silent.
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


def folded(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` with its constants folded by onnx-graphsurgeon (ImportError without it), unused nodes removed,
    sorted, its IR version and producer kept.

    Shapes are inferred first: graphsurgeon folds `Shape -> Gather -> Slice` chains (what torch exports for
    `Tensor.chunk`, as in C2f) only where it knows the tensor's shape, and torch's exporter writes none of the
    intermediate shapes. Subgraphs that depend only on constants are evaluated with onnxruntime (graphsurgeon's
    choice)."""
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    graph.fold_constants().cleanup().toposort()
    return export_graph(gs, graph, model)


def export_graph(gs, graph, original: "onnx.ModelProto") -> "onnx.ModelProto":
    """A graphsurgeon graph → ModelProto keeping `original`'s IR version and producer (TensorRT 8.2's parser is
    old)."""
    model = gs.export_onnx(graph)
    model.ir_version = original.ir_version
    model.producer_name, model.producer_version = original.producer_name, original.producer_version
    return model


def _dims(value_info):
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _shaped(model, input_shape=None):
    """(the graph with shape arithmetic folded, name → shape for every tensor shape inference can reach)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    if input_shape is not None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(dims, input_shape):
            d.Clear()
            d.dim_value = int(v)
    try:
        model = folded(model)
    except ImportError:  # no onnx-graphsurgeon: shapes behind shape arithmetic stay unknown (see `unshaped`)
        pass
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi)
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return inferred, shapes


_COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _known(shape):
    return bool(shape) and all(isinstance(d, int) for d in shape)


def _node_macs(node, shapes):
    """Multiply-accumulates of a Conv, ConvTranspose, Gemm or MatMul; None where its shapes are unknown."""
    prod = lambda xs: int(np.prod(xs))  # noqa: E731
    out, a, b = (shapes.get(name) for name in (list(node.output[:1]) + list(node.input[:2])))
    if not (_known(out) and _known(a) and _known(b)):
        return None
    if node.op_type == "Conv":  # W: [Cout, Cin/g, k...]
        return prod(out) * prod(b[1:])
    if node.op_type == "ConvTranspose":  # W: [Cin, Cout/g, k...]
        return prod(a) * prod(b[1:])
    k = a[0] if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute) else a[-1]
    return prod(out) * k


def inspect(model: Any, input_shape: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Summary dict: opset, inputs/outputs with shapes, params, flops (at `input_shape` if given)."""
    m = load(model)
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    folded, shapes = _shaped(m, input_shape)
    macs = [_node_macs(n, shapes) for n in folded.graph.node if n.op_type in _COUNTED]
    init_names = set(t.name for t in m.graph.initializer)
    return {
        "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "producer": "{} {}".format(m.producer_name, m.producer_version).strip(),
        "inputs": [{"name": i.name, "shape": shapes.get(i.name, _dims(i))}
                   for i in m.graph.input if i.name not in init_names],
        "outputs": [{"name": o.name, "shape": shapes.get(o.name, _dims(o))} for o in m.graph.output],
        "nodes": len(m.graph.node),
        "params": params,
        "flops": 2 * sum(x for x in macs if x is not None),
        "unshaped": sum(x is None for x in macs),  # counted ops left out of flops: their shapes are unknown
    }
