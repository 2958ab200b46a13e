"""Importance criteria: each scores every channel of every group from the layers the group touches."""
import pytest
import torch

from edgeprune.models import create_model, example_input
from edgeprune.models.loss import YOLOv5Loss
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import CRITERIA, rankable, score_groups


@pytest.fixture(scope="module")
def model_and_groups():
    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=1).eval()
    return model, find_groups(model, example_input(model))


@pytest.mark.parametrize("criterion", [c for c in CRITERIA if c != "taylor"])
def test_every_channel_gets_a_finite_score(model_and_groups, criterion):
    _, groups = model_and_groups
    scores = score_groups(groups, criterion)
    assert set(scores) == {g.name for g in groups}
    for g in groups:
        assert scores[g.name].shape == (g.width,) and torch.isfinite(scores[g.name]).all()


def test_bn_criterion_follows_gamma(model_and_groups):
    model, groups = model_and_groups
    stem = next(g for g in groups if g.name == "backbone.stem.conv")
    bn = model.backbone.stem.bn
    with torch.no_grad():
        saved = bn.weight.clone()
        bn.weight.copy_(torch.linspace(-2, 2, bn.weight.numel()))
    try:
        s = score_groups([stem], "bn")["backbone.stem.conv"]
        assert torch.allclose(s, torch.linspace(-2, 2, bn.weight.numel()).abs())  # |γ|, the only BN of the group
        fused = score_groups([stem], "fused", alpha=0.5)["backbone.stem.conv"]
        assert torch.allclose(fused, s / s.max())  # one group: global max = local max
    finally:
        with torch.no_grad():
            bn.weight.copy_(saved)


def test_l1_ranks_a_zeroed_channel_last(model_and_groups):
    model, groups = model_and_groups
    stem = next(g for g in groups if g.name == "backbone.stem.conv")
    conv, bn = model.backbone.stem.conv, model.backbone.stem.bn
    with torch.no_grad():
        saved = conv.weight[3].clone(), bn.weight[3].clone()
        conv.weight[3].zero_()
        bn.weight[3] = 0
    try:
        s = score_groups([stem], "l1")["backbone.stem.conv"]
        assert int(s.argmin()) == 3
    finally:
        with torch.no_grad():
            conv.weight[3], bn.weight[3] = saved


def test_taylor_needs_gradients_then_uses_them():
    torch.manual_seed(0)
    model = create_model("yolov5n", num_classes=1)
    groups = find_groups(model.eval(), example_input(model))
    with pytest.raises(ValueError, match="backward"):
        score_groups(groups, "taylor")
    model.train()
    loss, _ = YOLOv5Loss(model.head, img_size=64)(model(torch.rand(2, 3, 64, 64)),
                                                  torch.tensor([[0, 0, 0.5, 0.5, 0.2, 0.1]]))
    loss.backward()
    scores = score_groups(groups, "taylor")
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in scores.values())


def test_rankable_normalises_magnitudes_but_not_gamma():
    scores = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([10.0, 30.0])}
    assert torch.equal(rankable(scores, "l1")["a"], rankable(scores, "l1")["b"])
    assert rankable(scores, "bn") is scores
    with pytest.raises(ValueError, match="unknown importance"):
        score_groups([], "magic")
