"""Plans: rounding, minimum widths, global ranking with the channel replacement policy, JSON round trip."""
from types import SimpleNamespace

import pytest
import torch

from edgeprune.prune.plan import Plan, allowed_widths, nearest_width, plan_from_ratios, plan_global


def fake_groups(seed: int, n: int = 30):
    g = torch.Generator().manual_seed(seed)
    widths = torch.randint(4, 300, (n,), generator=g).tolist()
    groups = [SimpleNamespace(name=f"layer{i}", width=w) for i, w in enumerate(widths)]
    # importance spread differs by group, as real layers' do
    scores = {x.name: torch.rand(x.width, generator=g) * float(torch.rand(1, generator=g) * 3 + 0.1) for x in groups}
    return groups, scores


def test_allowed_widths():
    assert allowed_widths(64, 8, 8) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert allowed_widths(20, 8, 8) == [8, 16, 20]  # the full width is always allowed
    assert allowed_widths(6, 8, 8) == [6]  # too narrow to prune: stays whole
    assert allowed_widths(64, 8, 20) == [24, 32, 40, 48, 56, 64]
    assert allowed_widths(10, 1, 3) == list(range(3, 11))
    assert nearest_width(12, [8, 16]) == 16 and nearest_width(11.9, [8, 16]) == 8


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_global_plan_meets_the_ratio_within_one_rounding_step(seed, ratio):
    groups, scores = fake_groups(seed)
    plan = plan_global(groups, scores, ratio, round_to=8, min_width=16)
    target = plan.total * (1 - ratio)
    assert abs(plan.kept - target) <= 8  # (4) within one rounding step of the request
    for grp in groups:
        kept = len(plan.keep[grp.name])
        assert kept >= min(16, grp.width)  # no group under its minimum
        assert kept % 8 == 0 or kept == grp.width  # (5) multiples of round_to where the layer allows it


def test_crp_moves_channels_when_minimums_bind():
    # Every channel of group "a" is the least important: global ranking alone would empty it.
    groups = [SimpleNamespace(name="a", width=64), SimpleNamespace(name="b", width=64)]
    scores = {"a": torch.full((64,), 0.01), "b": torch.linspace(0.5, 1.0, 64)}
    plan = plan_global(groups, scores, 0.5, round_to=8, min_width=16)
    assert len(plan.keep["a"]) == 16  # held at its minimum ...
    assert len(plan.keep["b"]) == 48  # ... and the rest of the 64 channels came out of b
    assert plan.keep["b"] == list(range(16, 64))  # b lost its least important channels


def test_global_ranking_prunes_unimportant_groups_first():
    groups = [SimpleNamespace(name="weak", width=64), SimpleNamespace(name="strong", width=64)]
    scores = {"weak": torch.rand(64) * 0.1, "strong": 1 + torch.rand(64)}
    plan = plan_global(groups, scores, 0.25, round_to=8, min_width=8)
    assert len(plan.keep["strong"]) == 64 and len(plan.keep["weak"]) == 32


def test_per_group_ratios_keep_the_most_important():
    groups = [SimpleNamespace(name="a", width=32), SimpleNamespace(name="b", width=16)]
    scores = {"a": torch.arange(32.0), "b": torch.arange(16.0).flip(0)}
    plan = plan_from_ratios(groups, scores, {"a": 0.5, "b": 0.0}, round_to=8, min_width=8)
    assert plan.keep["a"] == list(range(16, 32)) and plan.keep["b"] == list(range(16))
    with pytest.raises(ValueError, match="ratio of a"):
        plan_from_ratios(groups, scores, {"a": 1.0})


def test_plan_json_round_trip_and_bad_files(tmp_path):
    groups, scores = fake_groups(0, n=5)
    plan = plan_global(groups, scores, 0.5)
    back = Plan.load(plan.save(tmp_path / "p.json"))
    assert back.keep == plan.keep and back.widths == plan.widths and back.ratio == pytest.approx(plan.ratio)
    (tmp_path / "bad.json").write_text('{"format": "edgeprune-plan", "widths": {"a": 4}, "keep": {"a": [7]}}')
    with pytest.raises(ValueError, match=r"bad.json: group 'a'"):
        Plan.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an edgeprune plan"):
        Plan.load(tmp_path / "other.json")


def test_ratio_for_flops_leaves_at_most_the_share():
    from edgeprune.evaluate.complexity import count_flops
    from edgeprune.models import create_model, example_input
    from edgeprune.prune.graph import find_groups
    from edgeprune.prune.importance import score_groups
    from edgeprune.prune.plan import pruned_model, ratio_for_flops

    model = create_model("yolov5n", 1).eval()
    groups = find_groups(model, example_input(model))
    scores = score_groups(groups, "l1")
    f0 = count_flops(model, 64)
    ratio, plan = ratio_for_flops(lambda r: plan_from_ratios(groups, scores, r), model, 0.4, 64, steps=8)
    share = count_flops(pruned_model(model, plan, example_input(model)), 64) / f0
    assert 0.3 < share <= 0.4 and 0.0 < ratio < 0.95
    assert count_flops(model, 64) == f0  # the model itself is not pruned
