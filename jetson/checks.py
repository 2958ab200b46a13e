"""What a submitted model must pass before it is queued: base64 that decodes, ONNX that parses whole, weights in
the file itself, an input shape that fits, and arrays within the agent's memory limits (jetson/limits.py).

External data is refused wherever a tensor uses it (initializers, node attributes, subgraphs) *before*
onnx.checker runs: the checker resolves an external file's relative path against the agent's working directory,
so its answer ("not a regular file" or nothing) would tell a client which files exist on the board. No path from
a request ever reaches the filesystem.
"""

import base64
import binascii
from typing import TYPE_CHECKING, Any, Dict, Optional, Set, Union

from . import protobuf
from .limits import Limits, check_inputs, check_model, model_inputs
from .options import OptionError

if TYPE_CHECKING:
    import onnx

_DEFAULT_LIMITS = []


def default_limits() -> Limits:
    """Limits from this machine's memory, read once (check_onnx without explicit limits uses them)."""
    if not _DEFAULT_LIMITS:
        _DEFAULT_LIMITS.append(Limits.for_board())
    return _DEFAULT_LIMITS[0]


def decode_model(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise OptionError("onnx must be the model file as base64 text", "onnx")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise OptionError("onnx is not valid base64 ({})".format(e), "onnx")


def protobuf_fields(data: Union[bytes, bytearray, memoryview]) -> Set[int]:
    """Top-level field numbers of a protobuf message; ValueError when the bytes are not one (or are cut short)."""
    return protobuf.field_numbers(data)


def _fit_shape(inputs, shape):
    """OptionError when the first input is dynamic and no shape is given, or the shape does not fit it."""
    if not inputs:
        return
    name, _elem, dims = inputs[0]
    dims = dims or []
    shown = [d if d else "?" for d in dims]
    if shape is None:
        if None in dims:
            raise OptionError("input {!r} has dynamic shape {}: pass input_shape such as [1, 3, 640, 640]"
                              .format(name, shown), "input_shape")
        return
    if len(shape) != len(dims) or any(d and d != s for d, s in zip(dims, shape)):
        raise OptionError("input_shape {} does not fit the model's input {!r} {}".format(shape, name, shown),
                          "input_shape")


def _check_without_onnx(data, shape, limits):
    """Where the onnx package is missing (TensorRT-only boards): the bytes must be a whole ModelProto with
    ir_version (1), graph (7) and opset_import (8); its inputs are read at the protobuf level."""
    try:
        missing = {1, 7, 8} - protobuf_fields(data)
        inputs = protobuf.onnx_inputs(data) if not missing else []
    except ValueError as e:
        raise OptionError("the model is not a readable ONNX file ({}); is it truncated?".format(e), "onnx")
    if missing:
        raise OptionError("the model lacks ModelProto fields {} (graph, opset): is it truncated?"
                          .format(sorted(missing)), "onnx")
    _fit_shape(inputs, shape)
    check_inputs(inputs, shape, limits)


def _graph_tensors(graph):
    """Every TensorProto of a graph: initializers, sparse initializers' values, node attributes, subgraphs."""
    for t in graph.initializer:
        yield t
    for s in graph.sparse_initializer:
        yield s.values
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            for t in a.tensors:
                yield t
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                for t in _graph_tensors(g):
                    yield t


def uses_external_data(model: "onnx.ModelProto") -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data)
               for t in _graph_tensors(model.graph))


def check_onnx(data: bytes, options: Dict[str, Any], limits: Optional[Limits] = None) -> None:
    """Reject at submission what cannot run or would be too large: bytes that are not ONNX, a truncated file,
    weights kept in a separate file, an input shape that does not fit the model or the agent's limits."""
    limits = limits or default_limits()
    try:
        import onnx
    except ImportError:
        return _check_without_onnx(data, options["input_shape"], limits)
    from deploy.onnx_info import load
    try:
        model = load(data)
    except ValueError as e:
        raise OptionError(str(e), "onnx")
    if not model.graph.node or not model.graph.output or not model.opset_import:
        raise OptionError("the model has no nodes, outputs or opset: is the file truncated?", "onnx")
    if uses_external_data(model):
        raise OptionError("the model keeps tensors in a separate .data file: export it as one file "
                          "(torch.onnx.export(..., external_data=False) or `edgeprune export`)", "onnx")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError, and protobuf errors on odd graphs
        raise OptionError("the model fails onnx.checker: {}".format(str(e).strip().splitlines()[0]), "onnx")
    _fit_shape(model_inputs(model), options["input_shape"])
    check_model(model, options["input_shape"], limits)
