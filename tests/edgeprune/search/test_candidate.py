"""Scoring a candidate: BN recalibration and the policy deciding which candidates the board measures."""
import pytest
import torch
from torch import nn

from edgeprune.search.candidate import Evaluator, recalibrate_bn


def test_bn_recalibration_replaces_the_running_statistics():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    loader = [(torch.randn(8, 3, 4, 4) * 3 + 5, None, None) for _ in range(3)]
    recalibrate_bn(m, loader, batches=2)
    x = torch.cat([b[0] for b in loader[:2]])
    with torch.no_grad():
        y = m[0](x)
    assert torch.allclose(m[1].running_mean, y.mean((0, 2, 3)), atol=1e-4)
    assert not m.training and m[1].momentum == 0.1  # momentum restored


class Policy(Evaluator):
    """Only the measuring policy: no model, data or backend behind it."""

    def __init__(self, measure, predictor=True):
        self.measure_policy, self.backend, self.margin = measure, object(), 0.05
        self.predictor = object() if predictor else None


FRONT = [(0.80, 10.0), (0.70, 6.0), (0.50, 4.0)]


@pytest.mark.parametrize("map50, predicted, measured", [
    (0.75, 7.0, True),    # between two measured points: would enter the front
    (0.65, 7.0, False),   # slower and less accurate than (0.70, 6.0), even 5 % faster
    (0.69, 6.2, True),    # within the predictor's margin of (0.70, 6.0): measure to be sure
    (0.40, 3.0, True),    # the fastest so far
])
def test_pareto_policy_measures_what_may_enter_the_front(map50, predicted, measured):
    assert Policy("pareto")._should_measure(map50, predicted, FRONT) is measured


def test_all_none_and_no_predictor():
    assert Policy("all")._should_measure(0.1, 99.0, FRONT)
    assert not Policy("none")._should_measure(0.9, 1.0, FRONT)
    assert Policy("pareto", predictor=False)._should_measure(0.1, None, FRONT)
