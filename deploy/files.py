"""Atomic writes and file hashes for the device side (Python 3.6, no torch): a finished engine, sidecar or job
record is either the old file or the new one, never half of each."""

import hashlib
import json
import os
import tempfile
from typing import Any, Union


def file_sha256(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Union[str, os.PathLike], data: Any) -> None:
    """Write bytes (or a buffer such as trt.IHostMemory) to `path` through a temporary file and os.replace."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: Union[str, os.PathLike], obj: Any) -> None:
    """JSON through write_atomic; an unexpected type (a numpy scalar) is written as text, not a failed write."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))
