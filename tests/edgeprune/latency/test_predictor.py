"""The per-layer lookup-table predictor: decomposition, one measurement per configuration, calibration, files.

Fake backends only (no timing): latency = FLOPs of the ONNX graph × a constant, so the truth of a whole model is
exactly a linear function of the sum of its units' entries.
"""
from collections import Counter

import pytest
import torch
from torch import nn

from deploy.stats import LatencyStats
from edgeprune.latency.layers import decompose, unit_onnx
from edgeprune.latency.predictor import FingerprintMismatch, LatencyPredictor, spearman

pytest.importorskip("onnx")
SHAPE = (1, 3, 32, 32)


class Block(nn.Module):
    def __init__(self, c_in, c_out, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Small(nn.Module):
    """stem 3→w (3×3 s2), two identical residual 1×1/3×3 pairs, maxpool, concat, head 1×1 (task-fixed)."""

    def __init__(self, w=16, mid=None):
        super().__init__()
        mid = mid or w
        self.stem = Block(3, w, 3, 2)
        self.a1, self.b1 = Block(w, mid), Block(mid, w, 3)
        self.a2, self.b2 = Block(w, mid), Block(mid, w, 3)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.out = Block(2 * w, w)
        self.head = nn.Conv2d(w, 6, 1)

    @property
    def output_layers(self):
        return ["head"]

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b1(self.a1(x))
        x = x + self.b2(self.a2(x))
        return self.head(self.out(torch.cat((x, self.pool(x)), 1)))


class FlopsBackend:
    """Deterministic latency proportional to FLOPs (plus nothing): counts what it is asked to measure."""

    name = "flops"

    def __init__(self, tag="a", scale=1e-6, offset=0.0):
        self.tag, self.scale, self.offset = tag, scale, offset
        self.calls, self.batches = 0, 0

    def fingerprint(self):
        return {"backend": "flops", "tag": self.tag}

    def _ms(self, onnx, shape):
        from deploy.onnx_info import inspect

        return inspect(onnx, shape)["flops"] * self.scale + self.offset

    def measure(self, onnx, shape):
        self.calls += 1
        return LatencyStats.from_samples([self._ms(onnx, shape)])

    def measure_many(self, items):
        self.batches += 1
        return [self.measure(o, s) for o, s in items]


def test_decompose_finds_fused_units_and_distinct_configurations():
    units = decompose(Small(), SHAPE)
    ops = Counter(u.op for u in units)
    assert ops == {"conv": 7, "add": 2, "maxpool": 1, "cat": 1}
    convs = [u for u in units if u.op == "conv"]
    # BN and SiLU fold into the conv before them; the head conv has a bias and no activation
    assert all(u.attrs["bn"] and u.attrs["act"] == "SiLU" for u in convs[:-1])
    assert not convs[-1].attrs["bn"] and convs[-1].attrs["act"] == "none" and convs[-1].attrs["bias"]
    assert convs[0].fixed_in and convs[0].attrs["h"] == 32 and convs[1].attrs["h"] == 16
    assert convs[-1].fixed_out and not convs[0].fixed_out
    # the two residual pairs repeat: 7 convs, 5 distinct configurations; both adds are one configuration
    assert len({u.key for u in convs}) == 5
    assert len({u.key for u in units}) == 5 + 1 + 1 + 1
    cat = next(u for u in units if u.op == "cat")
    assert (cat.cin, cat.attrs["inputs"], cat.shares) == (32, 2, [16, 16])
    onnx, shape = unit_onnx(convs[1])
    assert shape == (1, 16, 16, 16) and onnx[:2]


def test_each_configuration_is_measured_once_in_one_batch():
    be = FlopsBackend()
    pred = LatencyPredictor.build(Small(), SHAPE, be, levels=(0.5, 1.0))
    assert be.batches == 1
    assert be.calls == len(pred.entries) + 1  # every distinct grid configuration once, plus the empty model
    calls = be.calls
    pred.predict(Small())
    pred.predict(Small(w=8, mid=8))  # inside the grid: interpolated, nothing measured
    assert be.calls == calls


def test_pruned_model_predicts_faster_and_ranks_widths():
    pred = LatencyPredictor.build(Small(), SHAPE, FlopsBackend(), levels=(0.25, 1.0))
    widths = [4, 8, 12, 16]
    p = [pred.predict(Small(w=w)) for w in widths]
    assert p == sorted(p) and p[0] < p[-1]
    assert spearman(p, widths) == pytest.approx(1.0)


def test_calibration_recovers_a_linear_truth():
    be = FlopsBackend()
    pred = LatencyPredictor.build(Small(), SHAPE, be, levels=(0.25, 0.5, 1.0))
    models = [Small(w=w, mid=m) for w, m in [(16, 16), (8, 16), (16, 8), (12, 12), (8, 8), (4, 12)]]
    # conv cost is bilinear in (cin, cout), so the grid interpolates it exactly: truth = 3·ΣLUT + 2 exactly
    truth = [3.0 * pred.lut_sum(m) + 2.0 for m in models]
    before = pred.evaluate(models, truth)
    rec = pred.calibrate(models[:3], truth[:3])
    after = pred.evaluate(models[3:], truth[3:])
    assert rec["a"] == pytest.approx(3.0) and rec["b"] == pytest.approx(2.0)
    assert before["mape"] > 10 and after["mape"] < 1e-6 and after["spearman"] == pytest.approx(1.0)
    # recalibration with more points keeps the earlier ones
    assert pred.calibrate(models[3:], truth[3:], keep_previous=True)["n"] == 6


def test_calibration_fits_the_cost_of_unaligned_widths():
    pred = LatencyPredictor.build(Small(), SHAPE, FlopsBackend(), levels=(0.25, 0.5, 1.0), align=8)
    models = [Small(w=w, mid=m) for w, m in [(16, 16), (8, 8), (12, 16), (16, 12), (12, 12), (4, 8), (8, 12)]]
    feats = [pred.features(m) for m in models]
    assert feats[0][1] == 0 and feats[1][1] == 0 and all(r > 0 for _, r in feats[2:5])  # 12, 4: not multiples of 8
    truth = [2.0 * s + 0.5 * r + 1.0 for s, r in feats]
    rec = pred.calibrate(models, truth)
    assert rec["form"] == "a*S + r*R + b"
    assert (rec["a"], rec["r"], rec["b"]) == (pytest.approx(2.0), pytest.approx(0.5), pytest.approx(1.0))


def test_save_load_round_trip_and_other_device_refused(tmp_path):
    be = FlopsBackend("board-a")
    pred = LatencyPredictor.build(Small(), SHAPE, be, levels=(0.5, 1.0))
    pred.calibrate([Small(), Small(w=8)], [5.0, 3.0])
    path = pred.save(tmp_path / "lut.json")
    again = LatencyPredictor.load(path, backend=FlopsBackend("board-a"))
    m = Small(w=12)
    assert again.predict(m) == pytest.approx(pred.predict(m))
    assert (again.a, again.r, again.b, again.align) == (pred.a, pred.r, pred.b, pred.align)
    with pytest.raises(FingerprintMismatch, match="another device"):
        LatencyPredictor.load(path, backend=FlopsBackend("board-b"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not an edgeprune latency table"):
        LatencyPredictor.load(tmp_path / "bad.json")


def test_units_outside_the_table_are_measured_or_refused(tmp_path):
    be = FlopsBackend()
    pred = LatencyPredictor.build(Small(), SHAPE, be, levels=(1.0,))
    other = nn.Sequential(nn.Conv2d(3, 8, 5, 1, 2), nn.ReLU())  # a family the table has never seen
    calls = be.calls
    assert pred.predict(other) > 0 and be.calls == calls + 1
    offline = LatencyPredictor.load(pred.save(tmp_path / "lut.json"))
    with pytest.raises(KeyError, match="not in the lookup table"):
        offline.predict(nn.Sequential(nn.Conv2d(3, 4, 7, 1, 3)))


class SlowUnalignedBackend(FlopsBackend):
    """FLOPs × 3 for graphs holding a convolution whose prunable widths are not multiples of 8 (the slow kernel
    a runtime falls back to); the stem's 3 input channels and the head's 6 outputs are the task's."""

    def _ms(self, onnx, shape):
        import onnx as onnx_lib

        graph = onnx_lib.load_from_string(onnx).graph
        weights = {t.name: list(t.dims) for t in graph.initializer}
        slow = False
        for node in graph.node:
            if node.op_type == "Conv" and node.input[1] in weights:
                cout, cin = weights[node.input[1]][:2]
                slow |= any(c % 8 for c in (cout, cin) if c not in (3, 6))
        return super()._ms(onnx, shape) * (3.0 if slow else 1.0)


def test_unaligned_convolutions_are_read_from_their_own_grid():
    be = SlowUnalignedBackend()
    pred = LatencyPredictor.build(Small(), SHAPE, be, levels=(0.25, 0.5, 1.0), align=8)
    fam = next(g for g in pred.grids.values() if "ucin" in g and not g["fixed_in"] and not g["fixed_out"])
    assert all(c % 8 == 0 for c in fam["cin"]) and all(c % 8 for c in fam["ucin"])
    for w, mid in [(16, 16), (8, 16), (12, 12), (12, 16), (16, 12)]:
        m = Small(w=w, mid=mid)
        units = decompose(m, SHAPE)
        truth = sum(be._ms(*unit_onnx(u)) - pred.overhead_ms for u in units)
        # bilinear FLOPs in each regime: the grid of the unit's own regime interpolates it exactly
        assert pred.lut_sum(m) == pytest.approx(truth, rel=1e-6), (w, mid)
