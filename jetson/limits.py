"""What one request may make the agent allocate or occupy, and the size estimate of a model at an input shape.

A 1 KB request can name a huge input shape; the arrays it would make the agent allocate are estimated before the
job is queued and refused (400, field `input_shape`) when they are too large:

- the model's inputs at the shape that would run (the declared shape, or `input_shape` for the first input),
  in their own dtype, summed: at most `max_input_mb`;
- with the onnx package, every tensor that shape inference reaches at that shape (intermediate activations and
  outputs): none larger than `max_tensor_mb`. Without onnx (TensorRT-only boards) only the inputs are checked,
  from a protobuf-level reading of the graph (jetson/protobuf.py).

The runners check the same bounds again before allocating (deploy's `max_input_bytes`, `max_io_bytes`), and so
does the random INT8 calibration data. Defaults come from the board's memory (`/proc/meminfo`): inputs up to 1/32
of it (245 MB on an 8 GB TX2), one tensor up to 1/16, the TensorRT workspace up to all of it; `serve()` and the
CLI take explicit values.
"""

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .options import OptionError

if TYPE_CHECKING:
    import onnx

ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
              17: 1, 18: 1, 19: 1, 20: 1}  # TensorProto.DataType → bytes per element (STRING left out)
ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
ASSUMED_TOTAL_MB = 8192  # when the board's memory cannot be read: a TX2's
SMALL_INITIALIZER = 1024  # bytes: shape-like constants keep their data for shape inference (Reshape, Resize)


def _clamp(x, lo, hi):
    return max(lo, min(hi, x))


def board_memory_mb(root: str = "/") -> Optional[int]:
    """MemTotal in MB from /proc/meminfo under `root`, or None."""
    try:
        with open(os.path.join(root, "proc/meminfo")) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Limits(object):
    """Per-request bounds (sizes in MB, times in seconds); None picks the default derived from `total_mb`."""

    def __init__(self, total_mb: Optional[float] = None, max_input_mb: Optional[float] = None,
                 max_tensor_mb: Optional[float] = None, max_workspace_mb: Optional[int] = None,
                 job_time_limit_s: float = 1800.0, max_job_time_limit_s: float = 7200.0, max_queued: int = 64) -> None:
        self.total_mb_measured = total_mb is not None
        self.total_mb = int(total_mb) if total_mb else ASSUMED_TOTAL_MB
        self.max_input_mb = float(max_input_mb or _clamp(self.total_mb / 32.0, 16, 1024))
        self.max_tensor_mb = float(max_tensor_mb or _clamp(self.total_mb / 16.0, 32, 2048))
        self.max_workspace_mb = int(max_workspace_mb or max(1024, self.total_mb))
        self.max_job_time_limit_s = float(max_job_time_limit_s)
        self.job_time_limit_s = min(float(job_time_limit_s), self.max_job_time_limit_s)
        self.max_queued = int(max_queued)

    @classmethod
    def for_board(cls, root: str = "/", **given: Any) -> "Limits":
        return cls(total_mb=board_memory_mb(root), **given)

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 2 ** 20)

    @property
    def max_tensor_bytes(self) -> int:
        return int(self.max_tensor_mb * 2 ** 20)

    @property
    def max_io_bytes(self) -> int:
        """The bound on a TensorRT runner's input and output buffers together."""
        return self.max_input_bytes + self.max_tensor_bytes

    def to_dict(self) -> Dict[str, Any]:
        return {"memory_total_mb": self.total_mb if self.total_mb_measured else None,
                "max_input_mb": self.max_input_mb, "max_tensor_mb": self.max_tensor_mb,
                "max_workspace_mb": self.max_workspace_mb, "job_time_limit_s": self.job_time_limit_s,
                "max_job_time_limit_s": self.max_job_time_limit_s, "max_queued": self.max_queued}


def _nbytes(dims, elem):
    n = ELEM_BYTES.get(elem)
    if n is None or not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
        return None
    for d in dims:
        n *= d
    return n


def _describe(name, dims, elem):
    return "{!r} {} {}".format(name, list(dims), ELEM_NAMES.get(elem, "type {}".format(elem)))


def check_inputs(inputs: Sequence[Tuple[str, Optional[int], Optional[Sequence[Optional[int]]]]],
                 input_shape: Optional[Sequence[int]], limits: Limits) -> None:
    """`inputs`: [(name, elem_type, dims)] with the first input's dims replaced by `input_shape` when given.
    OptionError when their arrays together exceed max_input_mb."""
    total, parts = 0, []
    for k, (name, elem, dims) in enumerate(inputs):
        if k == 0 and input_shape is not None:
            dims = list(input_shape)
        size = _nbytes(dims, elem)
        if size:
            total += size
            parts.append(_describe(name, dims, elem))
    if total > limits.max_input_bytes:
        raise OptionError("the model's inputs at this shape ({}) would take {:.1f} MB, over this agent's limit of "
                          "{:.0f} MB (--max-input-mb): ask for a smaller input_shape".format(
                              ", ".join(parts), total / 2.0 ** 20, limits.max_input_mb), "input_shape")


def _skeleton(model, input_shape):
    """A copy of `model` for shape inference without its weights: large initializers become graph inputs with
    their shapes (no data copied), small ones keep their data (Reshape targets), the first input gets
    `input_shape`."""
    import onnx
    from onnx import helper

    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    graph, src = skeleton.graph, model.graph
    graph.node.extend(src.node)
    graph.output.extend(src.output)
    init = set()
    for t in src.initializer:
        init.add(t.name)
        if t.ByteSize() <= SMALL_INITIALIZER:
            graph.initializer.add().CopyFrom(t)
        else:
            graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    first = True
    for i in src.input:
        if i.name in init:
            continue
        copy = graph.input.add()
        copy.CopyFrom(i)
        if first and input_shape is not None:
            dims = copy.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shape):
                d.Clear()
                d.dim_value = int(v)
        first = False
    return skeleton


def _largest_tensor(model, input_shape):
    """(bytes, description) of the largest tensor shape inference reaches, or None when it fails."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_skeleton(model, input_shape))
    except Exception:  # shape inference gives up on some graphs: the input check and the runners still hold
        return None
    best = None
    g = inferred.graph
    for vi in list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        size = _nbytes(dims, t.elem_type)
        if size and (best is None or size > best[0]):
            best = (size, _describe(vi.name, dims, t.elem_type))
    return best


def model_inputs(model: "onnx.ModelProto") -> List[Tuple[str, int, List[Optional[int]]]]:
    """[(name, elem_type, dims)] of an onnx.ModelProto's real inputs (not initializers)."""
    init = set(t.name for t in model.graph.initializer)
    out = []
    for i in model.graph.input:
        if i.name in init:
            continue
        t = i.type.tensor_type
        out.append((i.name, t.elem_type, [d.dim_value if d.dim_value > 0 else None for d in t.shape.dim]))
    return out


def check_model(model: "onnx.ModelProto", input_shape: Optional[Sequence[int]], limits: Limits) -> None:
    """Refuse (OptionError, field input_shape) a ModelProto whose inputs or largest tensor at `input_shape` are
    over the limits."""
    check_inputs(model_inputs(model), input_shape, limits)
    largest = _largest_tensor(model, input_shape)
    if largest and largest[0] > limits.max_tensor_bytes:
        raise OptionError("at this input shape the model's tensor {} would take {:.1f} MB, over this agent's "
                          "limit of {:.0f} MB for one tensor (--max-tensor-mb): ask for a smaller input_shape"
                          .format(largest[1], largest[0] / 2.0 ** 20, limits.max_tensor_mb), "input_shape")
