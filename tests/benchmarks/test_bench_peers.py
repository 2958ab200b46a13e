"""The peer benchmark's table: one line per method, seeds averaged with their spread, speed-ups against the base
measured in the same pass, and a method that could not run kept as a line with its error."""
import pytest

from benchmarks.bench_peers import KD_BOX, current_kd
from benchmarks.peers_table import summarize, verdict


def _row(name, method, ms, m50, m5095, seconds=60.0, **extra):
    return {"name": name, "method": method, "latency_ms": ms, "p90_ms": 1.1 * ms, "mAP50": m50, "mAP50-95": m5095,
            "params": 1000, "GFLOPs": 0.5, "imgsz": 320, "seconds": seconds, **extra}


def test_seeds_are_averaged_with_their_spread_and_speedups_use_the_same_pass():
    rows = [_row("base", "base", 10.0, 0.8, 0.5),
            _row("t-tp-l1-s0", "(a) tp-l1", 5.0, 0.70, 0.40), _row("t-tp-l1-s1", "(a) tp-l1", 5.2, 0.74, 0.44),
            _row("t-tp-l1-s2", "(a) tp-l1", 4.9, 0.72, 0.42),
            _row("t-edgeprune-s0", "(e) edgeprune", 5.1, 0.75, 0.45, search_s=120.0),
            {"name": "t-modelopt", "method": "(b) modelopt-fastnas", "error": "ModelOpt FastNAS failed: X"}]
    table = {line["method"]: line for line in summarize(rows, target=5.0)}
    tp = table["(a) tp-l1"]
    assert tp["seeds"] == 3 and tp["latency_ms"] == 5.0  # the median over seeds
    assert tp["mAP50-95"] == pytest.approx(0.42) and tp["spread"] == "±0.020" and tp["spread50"] == "±0.020"
    assert tp["speedup"] == pytest.approx(2.0) and tp["vs target"] == "+0.0 %"
    assert table["(e) edgeprune"]["spread"] == "–" and table["(e) edgeprune"]["minutes"] == 3.0  # search included
    assert table["(b) modelopt-fastnas"] == {"method": "(b) modelopt-fastnas", "note": "ModelOpt FastNAS failed: X"}


def _line(method: str, ms: float, m: float, spread: str = "–") -> dict:
    """A summarized table line at a 5 ms target."""
    return {"method": method, "latency_ms": ms, "mAP50-95": m, "spread": spread,
            "vs target": f"{100 * (ms / 5 - 1):+.1f} %"}


def test_the_verdict_compares_edgeprune_with_the_best_method_that_meets_the_target():
    table = [_line("base", 10.0, 0.50), _line("(a) tp-l1", 5.1, 0.40, "±0.010"),
             _line("(c) narrow", 4.8, 0.43, "±0.020"), _line("(d) input", 6.0, 0.47),
             _line("(e) edgeprune", 4.9, 0.45, "±0.010")]
    v = verdict(table, 5.0)
    assert v["best_other"] == "(c) narrow"  # (d) is more accurate but 20 % too slow: it does not count
    assert v["missed_target"] == ["(d) input (+20.0 %)"] and "missed the target: (d) input" in v["text"]
    assert v["lead_points"] == pytest.approx(2.0) and v["beyond_spread"] is False  # 2 points < ±3 points of spread
    assert v["outside_window"] == ["(c) narrow (-4.0 %)"] and "faster than the ±3 % window: (c) narrow" in v["text"]


def test_the_verdict_takes_edgeprunes_more_accurate_path_and_never_counts_it_as_a_peer():
    table = [_line("(a) tp-l1", 5.0, 0.40), _line("(e) edgeprune", 5.0, 0.41), _line("(f) edgeprune-flops", 5.0, 0.47),
             _line("(h) edgeprune-progressive", 5.0, 0.44)]
    v = verdict(table, 5.0)
    assert v["best_other"] == "(a) tp-l1" and v["lead_points"] == pytest.approx(4.0)
    assert "edgeprune (h) edgeprune-progressive 0.440" in v["text"]


def test_rows_recovered_by_an_older_kd_loss_are_made_again():
    assert not current_kd({"name": "2x-tp-l1@0.3-s0", "training": "13 ep KD"})  # before the box weight was recorded
    assert current_kd({"name": "2x-tp-l1@0.3-s0", "training": "13 ep KD", "kd_box_weight": KD_BOX})
    assert current_kd({"name": "2x-narrow@0.25-s0", "training": "49 ep from scratch"})  # no teacher, nothing to redo


def test_the_one_shot_allocation_counts_as_edgeprunes_own_row_and_the_flops_control_does_not():
    table = [_line("(c) narrow", 5.0, 0.43), _line("(e) edgeprune", 5.0, 0.40), _line("(f) edgeprune-flops", 5.0, 0.49),
             _line("(i) edgeprune-allocated", 5.1, 0.46)]
    v = verdict(table, 5.0)
    assert v["best_other"] == "(c) narrow" and v["lead_points"] == pytest.approx(3.0)  # (i) against (c); (f) aside
