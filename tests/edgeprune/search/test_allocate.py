"""Latency-budgeted allocation: the unit map predicts a pruned model's units exactly, and the greedy removes
channels in order of importance per predicted millisecond."""
import math

import pytest
import torch
from torch import nn

from edgeprune.latency.flops import FlopsPredictor
from edgeprune.latency.layers import decompose
from edgeprune.models import create_model, example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import group_widths_allowed, plan_from_widths, pruned_model
from edgeprune.search.allocate import UnitMap, allocate
from tests.edgeprune.zoo import ZOO

SHAPE = (1, 3, 64, 64)


class FlopsTable:
    """A synthetic latency table: every conv costs its MACs times a per-layer price, other units nothing."""

    def __init__(self, price: dict[str, float]) -> None:
        self.price = price

    def predict(self, model_or_units) -> float:
        units = model_or_units if isinstance(model_or_units, list) else decompose(model_or_units, SHAPE)
        return sum(self.price.get(u.name, 1.0) * u.cin * u.cout * u.attrs["h"] * u.attrs["w"] / 1e6
                   for u in units if u.op == "conv")


class Chain(nn.Module):
    """Three prunable convs and a task-fixed head."""

    output_layers = ["head"]

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(48, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Conv2d(32, 6, 1)

    def forward(self, x):
        return self.head(self.c(self.b(self.a(x))))


def _widths(groups, **changes):
    return {**{g.name: g.width for g in groups}, **changes}


@pytest.mark.parametrize("name", ["yolov5n", "yolov8", "fanout"])
def test_the_unit_map_predicts_the_units_of_a_pruned_model(name):
    torch.manual_seed(0)
    model, example = (create_model("yolov5n", 1).eval(), None) if name == "yolov5n" else ZOO[name]()
    model.eval()
    example = example if example is not None else example_input(model)
    shape = tuple(example.shape)
    groups = find_groups(model, example)
    umap = UnitMap.learn(model, groups, shape, example)
    scores = score_groups(groups, "l1")
    widths = {g.name: group_widths_allowed(g, 8, 8)[len(group_widths_allowed(g, 8, 8)) // 2] for g in groups}
    real = decompose(pruned_model(model, plan_from_widths(groups, scores, widths), example), shape)
    assert [(u.cin, u.cout) for u in umap.units_at(widths)] == [(u.cin, u.cout) for u in real]
    assert any((u.cin, u.cout) != (b.cin, b.cout) for u, b in zip(real, umap.units))  # something did change


@pytest.mark.parametrize("price", ["latency", "flops"])
def test_the_greedy_removes_the_cheapest_importance_per_millisecond_first(price):
    """The replay holds for any price: a latency table, or FLOPs (`prune --progressive --cost flops`)."""
    torch.manual_seed(0)
    model = Chain().eval()
    example = torch.zeros(SHAPE)
    groups = find_groups(model, example)
    scores = rankable(score_groups(groups, "l1"), "l1")
    # on the latency table's "device" layer c is slow: its input and output channels are dear
    table = FlopsTable({"c.0": 10.0}) if price == "latency" else FlopsPredictor(SHAPE)
    umap = UnitMap.learn(model, groups, SHAPE, example)
    start = table.predict(model)
    alloc = allocate(groups, scores, umap, table, 0.5 * start, round_to=8, min_width=8)
    assert alloc.reached and alloc.predicted_ms <= 0.5 * start
    # replay every move against real pruned models: each was the lowest importance per ms saved at its time
    widths = _widths(groups)
    for name, new, cost, saved in alloc.moves:
        now = table.predict(pruned_model(model, plan_from_widths(groups, scores, widths), example))
        ratios = {}
        for g in groups:
            lower = [w for w in group_widths_allowed(g, 8, 8) if w < widths[g.name]]
            if lower:
                trial = pruned_model(model, plan_from_widths(groups, scores, {**widths, g.name: lower[-1]}), example)
                gain = now - table.predict(trial)
                drop = torch.sort(scores[g.name], descending=True).values[lower[-1]:widths[g.name]].sum()
                ratios[g.name] = float(drop) / gain if gain > 0 else math.inf
        assert min(ratios.values()) == pytest.approx(ratios[name]) and saved == pytest.approx(now - table.predict(
            pruned_model(model, plan_from_widths(groups, scores, {**widths, name: new}), example)))
        widths[name] = new
    # it stopped at the first state under the budget
    before = alloc.predicted_ms + alloc.moves[-1][3]
    assert before > 0.5 * start
    first, slow = alloc.moves[0][0], next(g.name for g in groups if g.root.name == "c.0")
    assert (first == slow) == (price == "latency")  # the slow layer's outputs went first only where it is slow


def test_a_budget_below_the_smallest_widths_is_reported():
    model = Chain().eval()
    example = torch.zeros(SHAPE)
    groups = find_groups(model, example)
    scores = rankable(score_groups(groups, "l1"), "l1")
    table = FlopsTable({})
    alloc = allocate(groups, scores, UnitMap.learn(model, groups, SHAPE, example), table, 1e-6)
    assert not alloc.reached and all(w == 8 for w in alloc.widths.values())
    assert "smallest allowed widths" in alloc.reason and "--min-width" in alloc.reason
