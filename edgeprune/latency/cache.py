"""A persistent latency cache keyed by the *structure* of a model, its input shape and what measured it.

Key = (onnx_structure_hash(onnx), input shape, fingerprint JSON). The structural hash ignores weight values and
tensor/node names, so two candidates of a pruning search with the same channel counts share one measurement even
though their weights (and the exporter's names) differ; latency does not depend on the values of the weights.
Storage is SQLite (WAL, busy timeout), so several search workers on one machine share one file safely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from deploy.stats import LatencyStats

from .base import (
    LatencyBackend,
    MeasurementError,
    Shape,
    fingerprint_json,
    normalize_shape,
)

# Ops whose float constant inputs (beyond the data input) decide the computation's shape or cost: their values
# are hashed (a Resize with scale 2 differs from one with scale 4). Float constants elsewhere are weights.
_VALUE_OPS = {"Resize", "Upsample", "Pad", "ConstantOfShape", "Range", "Tile", "Expand", "Reshape", "Slice",
              "TopK", "NonMaxSuppression"}
_MAX_VALUE_ELEMENTS = 4096  # integer constants (shapes, axes, indices) up to this size are hashed by value


def _h(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
                          .encode()).hexdigest()


def _tensor_desc(t, with_values: bool) -> list:
    """dtype, dims and, for integer tensors (or when asked), the values of a TensorProto."""
    from onnx import TensorProto, numpy_helper

    desc = ["tensor", int(t.data_type), list(t.dims)]
    n = 1
    for d in t.dims:
        n *= int(d)
    integer = t.data_type in (TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8,
                              TensorProto.UINT8, TensorProto.BOOL)
    if (integer or with_values) and n <= _MAX_VALUE_ELEMENTS and t.data_location != TensorProto.EXTERNAL:
        try:
            desc.append(numpy_helper.to_array(t).ravel().tolist())
        except Exception:  # noqa: BLE001, S110 - an odd encoding: dims and dtype still describe it
            pass
    return desc


def _value_info_desc(vi) -> list:
    tt = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else "?" for d in tt.shape.dim]
    return ["value", int(tt.elem_type), dims]


def _attr_desc(a, with_values: bool):
    from onnx import AttributeProto, helper

    if a.type == AttributeProto.TENSOR:
        return _tensor_desc(a.t, with_values)
    if a.type == AttributeProto.GRAPH:
        return _graph_hash(a.g)
    if a.type == AttributeProto.GRAPHS:
        return [_graph_hash(g) for g in a.graphs]
    if a.type == AttributeProto.TENSORS:
        return [_tensor_desc(t, with_values) for t in a.tensors]
    value = helper.get_attribute_value(a)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, list):
        value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value


def _graph_hash(graph) -> str:
    """Merkle hash of a GraphProto: each tensor is named by the hash of what computes it, never by its name."""
    init = {t.name: t for t in graph.initializer}
    consumers_need_values = set()
    for node in graph.node:
        if node.op_type in _VALUE_OPS:
            consumers_need_values.update(node.input[1:])
    known: dict[str, str] = {}
    for i, vi in enumerate(x for x in graph.input if x.name not in init):
        known[vi.name] = _h("input", i, _value_info_desc(vi))
    for name, t in init.items():
        known[name] = _h("init", _tensor_desc(t, name in consumers_need_values))
    known[""] = "optional-absent"
    node_hashes = []
    pending = list(graph.node)
    while pending:  # ONNX graphs are topologically sorted; the loop also copes with ones that are not
        left = []
        for node in pending:
            ins = []
            for name in node.input:
                if name not in known:
                    break  # an outer-scope name (subgraph) or a later node's output
                ins.append(known[name])
            else:
                attrs = sorted((a.name, _attr_desc(a, node.op_type == "Constant" and any(
                    o in consumers_need_values for o in node.output))) for a in node.attribute)
                nh = _h("node", node.domain or "", node.op_type, attrs, ins)
                node_hashes.append(nh)
                for k, out in enumerate(node.output):
                    if out:
                        known[out] = _h("out", nh, k)
                continue
            left.append(node)
        if len(left) == len(pending):  # unresolved inputs (outer scope): hash them by position only
            for node in left:
                for name in node.input:
                    known.setdefault(name, "outer")
        pending = left
    outputs = [[known.get(o.name, "missing"), _value_info_desc(o)] for o in graph.output]
    return _h("graph", sorted(node_hashes), outputs)


def onnx_structure_hash(onnx: bytes) -> str:
    """A sha256 hex digest of the computation an ONNX model does, independent of its weight values and names.

    Hashed: opsets, graph topology, op types and domains, attributes, input/output/initializer shapes and dtypes,
    values of integer constants (shapes, axes, indices) and of float constants that feed shape-like inputs
    (Resize scales, Pad, Expand, ...). Not hashed: weight values, node and tensor names, doc strings, producer.
    """
    from deploy.onnx_info import load

    model = load(onnx)
    opsets = sorted((o.domain or "", int(o.version)) for o in model.opset_import)
    return _h("onnx-structure-v1", opsets, _graph_hash(model.graph))


class LatencyCache:
    """SQLite store of LatencyStats by (structural hash, input shape, fingerprint). Safe for several processes."""

    def __init__(self, path: str | Path = "runs/latency.sqlite", timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._memory = sqlite3.connect(":memory:") if str(path) == ":memory:" else None
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS latency (onnx_hash TEXT NOT NULL, input_shape TEXT NOT NULL, "
                       "fingerprint TEXT NOT NULL, stats TEXT NOT NULL, created_at REAL NOT NULL, "
                       "PRIMARY KEY (onnx_hash, input_shape, fingerprint))")

    def _connect(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        try:
            db = sqlite3.connect(str(self.path), timeout=self.timeout_s)
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path} is not a usable latency cache ({e}): delete it or pass another "
                             "path") from None
        return db

    @staticmethod
    def _key(onnx_hash: str, input_shape, fingerprint) -> tuple[str, str, str]:
        fp = fingerprint if isinstance(fingerprint, str) else fingerprint_json(fingerprint)
        return onnx_hash, ",".join(str(d) for d in normalize_shape(input_shape)), fp

    def get(self, onnx_hash: str, input_shape, fingerprint) -> LatencyStats | None:
        db = self._connect()
        try:
            row = db.execute("SELECT stats FROM latency WHERE onnx_hash=? AND input_shape=? AND fingerprint=?",
                             self._key(onnx_hash, input_shape, fingerprint)).fetchone()
        finally:
            if db is not self._memory:
                db.close()
        return LatencyStats.from_dict(json.loads(row[0])) if row else None

    def put(self, onnx_hash: str, input_shape, fingerprint, stats: LatencyStats) -> None:
        """Store `stats`; a figure already stored under the key stays (first writer wins)."""
        doc = json.dumps(stats.to_dict(with_samples=True), default=str)
        db = self._connect()
        try:
            with db:
                db.execute("INSERT OR IGNORE INTO latency VALUES (?, ?, ?, ?, ?)",
                           (*self._key(onnx_hash, input_shape, fingerprint), doc, time.time()))
        finally:
            if db is not self._memory:
                db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
        finally:
            if db is not self._memory:
                db.close()


class CachedBackend(LatencyBackend):
    """A backend behind a LatencyCache: a model whose structure, shape and fingerprint were measured before (by
    any process sharing the file) is answered from the cache. Counts `.hits` and `.misses`."""

    def __init__(self, backend: LatencyBackend, cache: LatencyCache) -> None:
        self.backend, self.cache = backend, cache
        self.name = backend.name
        self.hits = self.misses = 0
        self._fingerprint: dict | None = None

    # what the search asks of a backend is what the backend behind the cache does
    times_modules = property(lambda self: self.backend.times_modules)
    off_host = property(lambda self: self.backend.off_host)
    parallel = property(lambda self: self.backend.parallel)

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = self.backend.fingerprint()
        return self._fingerprint

    def _lookup(self, onnx: bytes, input_shape) -> tuple[str, Shape, LatencyStats | None]:
        shape = normalize_shape(input_shape)
        key = onnx_structure_hash(onnx)
        stats = self.cache.get(key, shape, self.fingerprint())
        if stats is not None:
            self.hits += 1
            stats.info["cache"] = "hit"
        return key, shape, stats

    def _store(self, key: str, shape: Shape, stats: LatencyStats) -> LatencyStats:
        self.misses += 1
        self.cache.put(key, shape, self.fingerprint(), stats)
        stats.info.setdefault("cache", "miss")
        return stats

    def measure(self, onnx: bytes, input_shape: Shape) -> LatencyStats:
        key, shape, stats = self._lookup(onnx, input_shape)
        return stats if stats is not None else self._store(key, shape, self.backend.measure(onnx, shape))

    def measure_module(self, module, input_shape: Shape, opset: int = 13, onnx: bytes | None = None) -> LatencyStats:
        """A torch module: its ONNX export (at `opset`) is the cache key; the backend times that export, or the
        module itself where it times modules (torch-cuda)."""
        if onnx is None:
            from .to_onnx import module_to_onnx
            onnx = module_to_onnx(module, input_shape, opset)
        if not self.backend.times_modules:
            return self.measure(onnx, input_shape)
        key, shape, stats = self._lookup(onnx, input_shape)
        return stats if stats is not None else self._store(key, shape,
                                                           self.backend.measure_module(module, shape))

    def measure_many(self, items: list[tuple[bytes, Shape]]) -> list[LatencyStats]:
        """Cached items are answered at once; the rest go to the backend together (remote: in parallel).
        A structure that appears twice in `items` is measured once."""
        results: list[LatencyStats | None] = [None] * len(items)
        todo: dict[tuple[str, Shape], list[int]] = {}
        first: dict[tuple[str, Shape], bytes] = {}
        for i, (onnx, shape) in enumerate(items):
            key, shape, stats = self._lookup(onnx, shape)
            if stats is not None:
                results[i] = stats
            else:
                todo.setdefault((key, shape), []).append(i)
                first.setdefault((key, shape), onnx)
        if todo:
            keys, error = list(todo), None
            try:
                measured = self.backend.measure_many([(first[k], k[1]) for k in keys])
            except MeasurementError as e:  # keep what did get measured (`.results`), then raise it again
                measured, error = getattr(e, "results", None) or [e] * len(keys), e
            for k, stats in zip(keys, measured):
                measured_now = isinstance(stats, LatencyStats)
                if measured_now:
                    self._store(k[0], k[1], stats)
                for n, i in enumerate(todo[k]):
                    results[i] = LatencyStats.from_dict(stats.to_dict(with_samples=True)) if measured_now and n \
                        else stats
            if error is not None:
                error.results = results  # in the order of `items`, cached answers included
                raise error
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.backend.close()
