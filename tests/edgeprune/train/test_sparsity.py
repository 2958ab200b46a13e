"""Sparsity regularizers on BatchNorm scale factors: each pushes the γ it targets toward zero, the self-adaptive one
moves every layer, the heatmap one spreads sparsity evenly; diagnostics."""
import pytest
import torch
from torch import nn

from edgeprune.train.sparsity import (
    HeadInputs,
    Sparsifier,
    box_mask,
    evenness,
    feature_attention_loss,
    layer_sparsity,
    plot_gamma,
)


def two_layers(big=1.0, small=0.05, c=16):
    """Two BN layers with γ of very different magnitudes (a spread inside each layer too)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, c, 1), nn.BatchNorm2d(c), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c))
    with torch.no_grad():
        spread = torch.linspace(0.5, 1.5, c)
        m[1].weight.copy_(big * spread)
        m[3].weight.copy_(small * spread)
    return m


def run(model, method, steps=30, lam=1e-3, lr=1.0):
    """Steps of plain SGD on the penalty alone (no task loss)."""
    sp = Sparsifier(model, method, lam=lam, refresh=5, warmup=0.0)
    opt = torch.optim.SGD([bn.weight for _, bn in sp.layers], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        sp.apply(step, steps)
        opt.step()
    return sp


@pytest.mark.parametrize("method", ["bn-l1", "l1rr", "heatmap"])
def test_each_regularizer_pushes_gamma_toward_zero(method):
    m = two_layers()
    before = [bn.weight.abs().sum().item() for bn in (m[1], m[3])]
    run(m, method, steps=10)
    after = [bn.weight.abs().sum().item() for bn in (m[1], m[3])]
    assert all(a < b for a, b in zip(after, before))


def relative_drop(m):
    return [1 - m[i].weight.abs().mean().item() / w for i, w in ((1, 1.0), (3, 0.05))]


def test_self_adaptive_l1rr_moves_every_layer_plain_l1_only_the_weakest():
    plain = two_layers()
    run(plain, "bn-l1", steps=30)
    big, small = relative_drop(plain)
    assert small > 0.5 and big < 0.05  # the same absolute push: the small layer collapses, the big one barely moves
    adaptive = two_layers()
    run(adaptive, "l1rr", steps=30, lam=1e-2)
    big, small = relative_drop(adaptive)
    assert big > 0.1 and small > 0.1 and abs(big - small) < 0.2 * max(big, small)  # scaled to each layer: both move


def test_heatmap_sparsifies_layers_evenly():
    m_l1, m_hm = two_layers(), two_layers()
    run(m_l1, "bn-l1", steps=40, lam=1e-2)
    run(m_hm, "heatmap", steps=40, lam=1e-2)
    s_l1 = layer_sparsity(m_l1, 0.1, relative=True)
    s_hm = layer_sparsity(m_hm, 0.1, relative=True)
    assert sum(s_hm.values()) > 0 and evenness(s_hm) > evenness(s_l1)
    assert min(s_hm.values()) > 0  # every layer has channels near zero


def test_diagnostics(tmp_path):
    m = two_layers()
    with torch.no_grad():
        m[3].weight[:4] = 0.0
    shares = layer_sparsity(m, 0.01)
    assert shares == {"1": 0.0, "3": 0.25}
    assert evenness([0.3, 0.3, 0.3]) == pytest.approx(1.0) and evenness([0.0, 0.0, 0.9]) < 0.4
    assert evenness({"a": 0.0}) == 1.0
    assert plot_gamma(m, tmp_path / "g.png").stat().st_size > 1000


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="one of bn-l1, l1rr, heatmap"):
        Sparsifier(nn.BatchNorm2d(2), "l2")
    with pytest.raises(ValueError, match=">= 0"):
        Sparsifier(nn.BatchNorm2d(2), "bn-l1", lam=-1)


def test_state_round_trip():
    m = two_layers()
    sp = run(m, "l1rr", steps=3)
    again = Sparsifier(m, "l1rr")
    again.load_state_dict(sp.state_dict())
    assert all(torch.equal(again.weights[k], v) for k, v in sp.weights.items())


def test_feature_attention_loss_counts_only_inside_boxes():
    torch.manual_seed(0)
    dense = [torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8)]
    targets = torch.tensor([[0, 0, 0.25, 0.25, 0.25, 0.25], [1, 0, 0.75, 0.75, 0.2, 0.2]])
    assert feature_attention_loss([d.clone() for d in dense], dense, targets).item() == 0.0
    outside = [d.clone() for d in dense]
    for o in outside:
        h = o.shape[-1]
        o[0, :, h // 2:, h // 2:] *= 5  # image 0 changes only far from its box (top-left quarter)...
        o[1, :, : h // 4, : h // 4] *= 5  # ...image 1 only far from its box (bottom-right)
    inside = [d.clone() for d in dense]
    for o in inside:
        h = o.shape[-1]
        o[0, :, h // 8: h * 3 // 8, h // 8: h * 3 // 8] *= 5
    # outside changes reach the boxes only through the map's normalisation
    assert feature_attention_loss(inside, dense, targets) > 3 * feature_attention_loss(outside, dense, targets)
    scaled = [d * 7.0 for d in dense]  # attention is normalised: a sparser but proportional feature costs nothing
    assert feature_attention_loss(scaled, dense, targets).item() == pytest.approx(0.0, abs=1e-9)
    mask = box_mask(targets, 2, 16, 16)
    assert mask[0, 4, 4] == 1 and mask[0, 12, 12] == 0 and mask[1, 12, 12] == 1 and mask[1].sum() == 16


def test_head_inputs_are_the_neck_outputs():
    from edgeprune.models import create_model

    m = create_model("yolov5n", 1).eval()
    hook = HeadInputs(m)
    with torch.no_grad():
        m(torch.rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in hook.features] == [8, 4, 2]
    hook.remove()
