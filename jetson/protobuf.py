"""Just enough of protobuf's wire format to read an ONNX model's graph inputs where the onnx package is missing
(TensorRT-only boards), and to write the self-test's tiny models without it.

Reading walks length-delimited fields as memoryviews, so a 100 MB model is never copied to find its inputs.
Field numbers are onnx.proto's (ModelProto.graph = 7, GraphProto.input = 11, ...): they have not changed since
ONNX 1.0 and cannot, by protobuf's compatibility rules.
"""

import struct
from typing import Iterator, List, Optional, Set, Tuple, Union

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


def read_varint(data: Union[bytes, bytearray, memoryview], i: int) -> Tuple[int, int]:
    """(value, next index) of the varint at data[i]; ValueError when it is cut short or over 64 bits."""
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return value, i


def iter_fields(data: Union[bytes, bytearray, memoryview]) -> Iterator[Tuple[int, int, Union[int, memoryview]]]:
    """(field number, wire type, value) for each field of one message: an int for varints and fixed-size fields,
    a memoryview for length-delimited ones. ValueError when the bytes are not a message or are cut short."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    i, n = 0, len(view)
    while i < n:
        key, i = read_varint(view, i)
        field, wire = key >> 3, key & 7
        if field == 0 or wire not in (VARINT, FIXED64, LENGTH, FIXED32):
            raise ValueError("not a protobuf message (field {}, wire type {})".format(field, wire))
        if wire == VARINT:
            value, i = read_varint(view, i)
        elif wire == LENGTH:
            length, i = read_varint(view, i)
            if i + length > n:
                raise ValueError("cut short inside field {}".format(field))
            value, i = view[i:i + length], i + length
        else:
            size = 8 if wire == FIXED64 else 4
            if i + size > n:
                raise ValueError("cut short inside field {}".format(field))
            value, i = int.from_bytes(bytes(view[i:i + size]), "little"), i + size
        yield field, wire, value


def field_numbers(data: Union[bytes, bytearray, memoryview]) -> Set[int]:
    """The set of top-level field numbers of a message (ValueError as iter_fields)."""
    return set(f for f, _w, _v in iter_fields(data))


def _text(view):
    return bytes(view).decode("utf-8", "replace")


def _dims(shape):
    """[int or None] from a TensorShapeProto: dim_value (1), else None for dim_param (2) or an empty dim."""
    dims = []
    for f, _w, dim in iter_fields(shape):
        if f != 1:
            continue
        value = None
        for g, wire, v in iter_fields(dim):
            if g == 1 and wire == VARINT and 0 < v < (1 << 63):
                value = v
        dims.append(value)
    return dims


def _value_info(view):
    """(name, elem_type or None, dims or None) of a ValueInfoProto holding a tensor type."""
    name, elem, dims = "", None, None
    for f, wire, v in iter_fields(view):
        if f == 1 and wire == LENGTH:
            name = _text(v)
        elif f == 2 and wire == LENGTH:
            for g, _w, tensor in iter_fields(v):
                if g != 1:  # TypeProto.tensor_type
                    continue
                for h, w2, x in iter_fields(tensor):
                    if h == 1 and w2 == VARINT:
                        elem = x
                    elif h == 2 and w2 == LENGTH:
                        dims = _dims(x)
    return name, elem, dims


def _tensor_name(view):
    for f, wire, v in iter_fields(view):
        if f == 8 and wire == LENGTH:  # TensorProto.name
            return _text(v)
    return ""


def onnx_inputs(model_bytes: Union[bytes, bytearray, memoryview]
                ) -> List[Tuple[str, Optional[int], Optional[List[Optional[int]]]]]:
    """[(name, elem_type, dims)] of a serialized ModelProto's graph inputs that are not initializers (the model's
    real inputs); dims hold None for dynamic dimensions. ValueError when the bytes are not a ModelProto."""
    graphs = [v for f, wire, v in iter_fields(model_bytes) if f == 7 and wire == LENGTH]
    if not graphs:
        raise ValueError("the model has no graph")
    inputs, initializers = [], set()
    for f, wire, v in iter_fields(graphs[-1]):
        if f == 11 and wire == LENGTH:
            inputs.append(_value_info(v))
        elif f == 5 and wire == LENGTH:
            initializers.add(_tensor_name(v))
    return [i for i in inputs if i[0] not in initializers]


# ---------------------------------------------------------------- writing

def varint(n: int) -> bytes:
    """The varint bytes of `n` (negative numbers as 64-bit two's complement, as protobuf writes int64)."""
    n &= _U64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def int_field(field: int, n: int) -> bytes:
    return varint(field << 3 | VARINT) + varint(n)


def bytes_field(field: int, data: Union[str, bytes, bytearray, memoryview]) -> bytes:
    data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return varint(field << 3 | LENGTH) + varint(len(data)) + data


def float_field(field: int, x: float) -> bytes:
    return varint(field << 3 | FIXED32) + struct.pack("<f", float(x))
