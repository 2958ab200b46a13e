"""TensorRT version numbers, however they come: "8.2.1.8", (8, 5), or trtexec's `[TensorRT v8201]` tag (pure)."""

import re
from typing import Tuple, Union


def parse_version(version: Union[str, int, Tuple[int, ...]]) -> Tuple[int, ...]:
    """(major, minor, patch[, build]) from "8.2.1.8", "10.3.0", (8, 5) or an int tag like 8201 / 101600."""
    if isinstance(version, tuple):
        return tuple(int(x) for x in version)
    if isinstance(version, int):
        return version_from_tag(version)
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if not m:
        raise ValueError("not a TensorRT version: {!r}".format(version))
    return tuple(int(x) for x in m.group(1).split("."))


def version_from_tag(tag: Union[int, str]) -> Tuple[int, int, int]:
    """trtexec's `[TensorRT vNNNN]` number: 8201 → (8, 2, 1); from 10 on two digits each: 101600 → (10, 16, 0)."""
    tag = int(tag)
    if tag >= 100000:
        return (tag // 10000, tag // 100 % 100, tag % 100)
    return (tag // 1000, tag // 100 % 10, tag % 100)


def version_string(version: Union[str, int, Tuple[int, ...]]) -> str:
    return ".".join(str(x) for x in parse_version(version))
