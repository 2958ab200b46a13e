"""The structural hash and the SQLite latency cache, with a counting fake backend (no timing needed)."""
import multiprocessing
import sqlite3

import pytest
import torch
from torch import nn

from deploy.stats import LatencyStats
from edgeprune.latency import (
    CachedBackend,
    LatencyBackend,
    LatencyCache,
    measure,
    module_to_onnx,
    onnx_structure_hash,
)

pytest.importorskip("onnx")
SHAPE = (1, 3, 32, 32)


def tiny(width=8, seed=0, act=nn.ReLU):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), act(),
                         nn.Conv2d(width, 4, 1), nn.Upsample(scale_factor=2))


class Counting(LatencyBackend):
    name = "counting"

    def __init__(self, tag="a"):
        self.calls, self.tag = 0, tag

    def fingerprint(self):
        return {"backend": "counting", "tag": self.tag}

    def measure(self, onnx, input_shape):
        self.calls += 1
        return LatencyStats.from_samples([1.0, 2.0, 3.0], info={"n": self.calls})


def test_hash_ignores_weights_and_names_but_not_structure():
    a = module_to_onnx(tiny(seed=0), SHAPE)
    b = module_to_onnx(tiny(seed=1), SHAPE)
    assert a != b and onnx_structure_hash(a) == onnx_structure_hash(b)
    assert onnx_structure_hash(a) != onnx_structure_hash(module_to_onnx(tiny(width=6), SHAPE))  # pruned
    assert onnx_structure_hash(a) != onnx_structure_hash(module_to_onnx(tiny(act=nn.SiLU), SHAPE))  # op type
    assert onnx_structure_hash(a) != onnx_structure_hash(module_to_onnx(tiny(), (1, 3, 48, 48)))  # shapes


def test_hash_ignores_renamed_tensors_and_nodes_but_sees_attributes():
    import onnx

    m = onnx.load_from_string(module_to_onnx(tiny(), SHAPE))
    h = onnx_structure_hash(m.SerializeToString())
    renamed = onnx.ModelProto.FromString(m.SerializeToString())
    mapping = {}
    for i, node in enumerate(renamed.graph.node):
        node.name = f"n{i}"
        for k, out in enumerate(node.output):
            mapping[out] = f"t{i}_{k}"
    for t in renamed.graph.initializer:
        mapping[t.name] = "w_" + t.name[::-1]
        t.name = mapping[t.name]
    for node in renamed.graph.node:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        node.output[:] = [mapping.get(x, x) for x in node.output]
    for o in renamed.graph.output:
        o.name = mapping.get(o.name, o.name)
    onnx.checker.check_model(renamed)
    assert onnx_structure_hash(renamed.SerializeToString()) == h
    strided = onnx.ModelProto.FromString(m.SerializeToString())
    conv = next(n for n in strided.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "pads").ints[:] = [0, 0, 0, 0]
    assert onnx_structure_hash(strided.SerializeToString()) != h


def test_hash_sees_resize_scale():
    a = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Upsample(scale_factor=2))
    b = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Upsample(scale_factor=4))
    assert onnx_structure_hash(module_to_onnx(a, SHAPE)) != onnx_structure_hash(module_to_onnx(b, SHAPE))


def test_hash_of_bytes_that_are_not_onnx_is_a_clear_error():
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        onnx_structure_hash(b"not a model")


def test_second_measure_hits_across_cache_instances(tmp_path):
    path = tmp_path / "runs" / "latency.sqlite"
    inner = Counting()
    first = measure(tiny(seed=0), SHAPE, backend=inner, cache=LatencyCache(path))
    assert inner.calls == 1 and first.info["cache"] == "miss"
    # another "process": a new cache object on the same file, a new backend with the same fingerprint
    other = Counting()
    cached = CachedBackend(other, LatencyCache(path))
    again = cached.measure(module_to_onnx(tiny(seed=0), SHAPE), SHAPE)
    assert other.calls == 0 and cached.hits == 1 and again.median_ms == first.median_ms
    same_arch = cached.measure(module_to_onnx(tiny(seed=7), SHAPE), SHAPE)  # other weights: hit
    assert other.calls == 0 and cached.hits == 2 and same_arch.info["cache"] == "hit"
    cached.measure(module_to_onnx(tiny(width=6), SHAPE), SHAPE)  # pruned differently: miss
    assert other.calls == 1 and cached.misses == 1
    cached.measure(module_to_onnx(tiny(), SHAPE), (1, 3, 48, 48))  # other input shape: miss
    assert other.calls == 2
    third = CachedBackend(Counting(tag="b"), LatencyCache(path))  # other fingerprint: miss
    third.measure(module_to_onnx(tiny(), SHAPE), SHAPE)
    assert third.misses == 1 and third.backend.calls == 1
    assert len(LatencyCache(path)) == 4
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_measure_many_measures_new_structures_once(tmp_path):
    inner = Counting()
    cached = CachedBackend(inner, LatencyCache(tmp_path / "c.sqlite"))
    items = [(module_to_onnx(tiny(seed=s), SHAPE), SHAPE) for s in range(3)] + [(module_to_onnx(tiny(6), SHAPE), SHAPE)]
    out = cached.measure_many(items)
    assert len(out) == 4 and inner.calls == 2 and cached.misses == 2
    assert cached.measure_many(items[:1])[0].median_ms == 2.0 and inner.calls == 2


def test_stats_round_trip_keeps_samples_and_info(tmp_path):
    cache = LatencyCache(tmp_path / "c.sqlite")
    stats = LatencyStats.from_samples([1.0, 1.5, 2.5], warmup=3, info={"threads": 1})
    cache.put("h", (1, 3, 8, 8), {"x": 1}, stats)
    got = cache.get("h", [1, 3, 8, 8], {"x": 1})
    assert got.samples_ms == [1.0, 1.5, 2.5] and got.info == {"threads": 1} and got.warmup == 3
    assert cache.get("h", (1, 3, 8, 8), {"x": 2}) is None


def _writer(path, start):
    cache = LatencyCache(path)
    for i in range(start, start + 20):
        cache.put(f"h{i}", (1, 3, 8, 8), {"p": 1}, LatencyStats.from_samples([float(i)]))


def test_two_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    LatencyCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), k * 20)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(LatencyCache(path)) == 40


def test_corrupt_cache_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable latency cache"):
        LatencyCache(bad)


def test_measure_many_keeps_partial_results_of_a_failed_call(tmp_path):
    from edgeprune.latency import MeasurementError

    class HalfBroken(Counting):
        def measure_many(self, items):
            err = MeasurementError("second failed")
            err.results = [self.measure(*items[0]), MeasurementError("board gone")]
            raise err

    cached = CachedBackend(HalfBroken(), LatencyCache(tmp_path / "c.sqlite"))
    items = [(module_to_onnx(tiny(), SHAPE), SHAPE), (module_to_onnx(tiny(6), SHAPE), SHAPE)]
    with pytest.raises(MeasurementError, match="second failed"):
        cached.measure_many(items)
    assert cached.measure(*items[0]).info["cache"] == "hit"
