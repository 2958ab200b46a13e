"""nn.MultiheadAttention pruned by heads: the head-pruned forward is torch's attention, a head group per
attention, exact when the cut heads contributed nothing, undone by undo, and exported to ONNX."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deploy.onnxruntime_runner import OnnxRuntimeRunner
from edgeprune.export import export_onnx
from edgeprune.prune.graph import analyze, apply_plan
from edgeprune.prune.mha import HeadPrunedMultiheadAttention, mha_head_group
from edgeprune.prune.surgery import cut


def _pair(**kwargs) -> tuple[nn.MultiheadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, **kwargs).eval()
    pruned = nn.MultiheadAttention(16, 4, **kwargs).eval()
    pruned.load_state_dict(ref.state_dict())
    pruned.__class__ = HeadPrunedMultiheadAttention
    return ref, pruned


@pytest.mark.parametrize("kwargs", [{}, {"batch_first": True}, {"kdim": 6, "vdim": 10}, {"bias": False}])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding"])
def test_with_every_head_the_forward_is_torchs(kwargs, masks):
    ref, pruned = _pair(**kwargs)
    n, length, src = 2, 5, 7
    first = (n, length) if kwargs.get("batch_first") else (length, n)
    first_kv = (n, src) if kwargs.get("batch_first") else (src, n)
    q = torch.rand(*first, 16)
    k, v = torch.rand(*first_kv, kwargs.get("kdim", 16)), torch.rand(*first_kv, kwargs.get("vdim", 16))
    extra = {"none": {}, "bool": {"attn_mask": torch.rand(length, src) > 0.7},
             "float": {"attn_mask": torch.randn(n * 4, length, src)},
             "padding": {"key_padding_mask": torch.tensor([[False] * src, [False] * 4 + [True] * 3])}}[masks]
    for average in (True, False):
        want = ref(q, k, v, average_attn_weights=average, **extra)
        got = pruned(q, k, v, average_attn_weights=average, **extra)
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_unbatched_input_and_no_weights():
    ref, pruned = _pair()
    x = torch.rand(5, 16)
    torch.testing.assert_close(pruned(x, x, x)[0], ref(x, x, x)[0], rtol=1e-5, atol=1e-5)
    assert pruned(x, x, x, need_weights=False)[1] is None


class Tokens(nn.Module):
    """A conv stem, self-attention over the cells, a conv head: the attention's width is the stem's."""

    def __init__(self, **mha) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True, **mha)
        self.head = nn.Conv2d(32, 5, 1)

    def forward(self, x):
        y = self.stem(x)
        b, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)
        t = t + self.attn(t, t, t, need_weights=False)[0]
        return self.head(t.transpose(1, 2).reshape(b, c, h, w))


def _tokens(**mha) -> tuple[Tokens, torch.Tensor]:
    torch.manual_seed(0)
    return Tokens(**mha).eval(), torch.rand(1, 3, 16, 16)


def test_an_attention_is_a_group_of_heads_and_its_width_is_left_alone():
    model, x = _tokens()
    an = analyze(model, x)
    heads = next(g for g in an.groups if g.name == "attn.heads")
    assert heads.width == 4 and heads.counts == [("attn", "num_heads")]
    assert {(m.name, m.kind) for m in heads.members} == {("attn", "out"), ("attn.out_proj", "in")}
    assert "MultiheadAttention" in an.excluded["stem"]  # the embedding width feeds q, k and v


def test_cutting_heads_that_contribute_nothing_changes_no_output(tmp_path):
    model, x = _tokens()
    with torch.no_grad():
        model.attn.out_proj.weight[:, 8:24] = 0  # heads 1 and 2 (head_dim 8) reach nothing
        before = model(x)
        apply_plan(model, {"attn.heads": [0, 3]}, x)
        after = model(x)
    assert type(model.attn) is HeadPrunedMultiheadAttention and model.attn.num_heads == 2
    assert model.attn.in_proj_weight.shape == (3 * 16, 32) and model.attn.out_proj.in_features == 16
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    again = next(g for g in analyze(model, x).groups if g.name == "attn.heads")  # a later step cuts further
    assert again.width == 2
    r = export_onnx(model, tmp_path / "m.onnx", img_size=16)  # compares onnxruntime with torch itself
    (got,) = OnnxRuntimeRunner(r.path).infer({"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), after, rtol=1e-4, atol=1e-4)


def test_undo_restores_the_attention():
    model, x = _tokens()
    group = next(g for g in analyze(model, x).groups if g.name == "attn.heads")
    with torch.no_grad():
        before = model(x)
        undo = cut(model, [(group, {1, 2})])
        assert model.attn.num_heads == 2
        undo()
        after = model(x)
    assert type(model.attn) is nn.MultiheadAttention and model.attn.num_heads == 4
    torch.testing.assert_close(after, before)


def test_an_attention_with_bias_kv_is_not_cut():
    model, x = _tokens(add_bias_kv=True)
    assert "attn.heads" not in {g.name for g in analyze(model, x).groups}


def test_a_torch_transformer_layer_with_cut_heads_matches_in_its_inference_fast_path():
    """nn.TransformerEncoderLayer in eval under no_grad calls a fused kernel with the attention's weights."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    x = torch.rand(2, 5, 32)
    with torch.no_grad():
        layer.self_attn.out_proj.weight[:, 8:16] = 0  # head 1 reaches nothing
        before = layer(x)
        cut(layer, [(mha_head_group("self_attn", layer.self_attn), {1})])
        after = layer(x)
    assert layer.self_attn.num_heads == 3
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
