"""MOOL, the reward and the Pareto choice: the orderings a user relies on."""
import pytest

from edgeprune.search import Objective, Scores, choose, pareto_front, parse_ms

BASE = Scores(map50=0.80, map=0.50, latency_ms=10.0, flops=1e9, params=2e6)


def s(map50, ms, flops=5e8, params=1e6):
    return Scores(map50=map50, map=map50 / 2, latency_ms=ms, flops=flops, params=params)


@pytest.mark.parametrize("objective", [Objective(), Objective(target_latency_ms=8.0),
                                       Objective(mode="reward", target_latency_ms=8.0)])
def test_faster_wins_at_equal_accuracy_and_more_accurate_at_equal_latency(objective):
    def value(x):
        return objective.values(x, BASE)[0]  # minimised

    assert value(s(0.75, 5.0)) < value(s(0.75, 7.0))
    assert value(s(0.78, 6.0)) < value(s(0.70, 6.0))


def test_the_hard_target_beats_any_accuracy_gain_above_it():
    obj = Objective(target_latency_ms=6.0)
    under, over = s(0.60, 5.9), s(0.80, 6.6)
    assert obj.values(under, BASE)[0] < obj.values(over, BASE)[0]
    assert obj.constraints(under)[0] <= 0 < obj.constraints(over)[0]


def test_under_the_target_accuracy_decides_and_speed_only_breaks_ties():
    """The target is a budget: a plan 40 % under it must not beat a more accurate one at it (MOOL's plain λ_T·T/T₀
    made that trade at yolov5s 2×: 3.65× at 3 points of mAP@0.5:0.95)."""
    obj = Objective(target_latency_ms=5.0)
    at_target, far_under = s(0.76, 4.9), s(0.72, 3.0)
    assert obj.values(at_target, BASE)[0] < obj.values(far_under, BASE)[0]
    assert Objective().values(far_under, BASE)[0] < Objective().values(at_target, BASE)[0]  # without a target
    limited = Objective(latency_weight=0.0, flops_weight=1.0, max_flops=4e8)
    assert limited.values(s(0.76, 6.0, flops=3.9e8), BASE)[0] < limited.values(s(0.72, 6.0, flops=2e8), BASE)[0]


def test_flops_and_params_weights_count_when_latency_is_equal():
    obj = Objective(latency_weight=0.0, flops_weight=1.0, params_weight=0.5)
    assert obj.values(s(0.7, 6.0, flops=3e8), BASE)[0] < obj.values(s(0.7, 6.0, flops=6e8), BASE)[0]
    assert obj.values(s(0.7, 6.0, params=5e5), BASE)[0] < obj.values(s(0.7, 6.0, params=9e5), BASE)[0]


def test_pareto_mode_and_choice():
    obj = Objective(mode="pareto", max_flops=6e8)
    assert obj.directions == ["maximize", "minimize"] and obj.values(s(0.7, 6.0), BASE) == [0.7, 6.0]
    assert obj.constraints(s(0.7, 6.0, flops=7e8)) == [pytest.approx(1e8)]
    pts = [(0.80, 10.0), (0.78, 6.0), (0.70, 7.0), (0.60, 3.0), (0.79, 8.0)]
    assert pareto_front(pts) == [3, 1, 4, 0]  # (0.70, 7.0) is dominated by (0.78, 6.0)
    assert choose(pts, target_ms=7.5) == 1
    assert choose(pts, speedup=2.0, base_ms=10.0) == 3  # 5 ms or faster
    assert choose(pts, target_ms=1.0) is None


def test_bad_objectives_and_latencies_are_refused():
    with pytest.raises(ValueError, match="mode"):
        Objective(mode="fastest")
    with pytest.raises(ValueError, match="target latency"):
        Objective(mode="reward").values(s(0.7, 6.0), BASE)
    assert parse_ms("12ms") == 12.0 and parse_ms("0.5 s") == 500.0 and parse_ms(7) == 7.0
    with pytest.raises(ValueError, match="milliseconds"):
        parse_ms("fast")
