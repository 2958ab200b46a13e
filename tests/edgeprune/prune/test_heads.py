"""YOLO11's attention pruned by heads: a group per attention block, exact when the cut head contributed nothing,
and left out (with the reason) where the model's forward reads the attention's width from its input."""

from __future__ import annotations

import time

import torch

from edgeprune.models import create_model, example_input
from edgeprune.models.yolov8_blocks import Attention
from edgeprune.prune.graph import analyze, apply_plan

HEADS = "model.10.m.0.attn.heads"


def _yolo11():
    torch.manual_seed(0)
    return create_model("yolo11n", num_classes=2).eval()  # C2PSA's attention: 128 channels, 2 heads of 64


def test_the_attention_of_yolo11_is_a_group_of_heads():
    model = _yolo11()
    t0 = time.perf_counter()
    an = analyze(model, example_input(model))
    seconds = time.perf_counter() - t0
    heads = next(g for g in an.groups if g.name == HEADS)
    assert heads.width == 2 and heads.counts == [("model.10.m.0.attn", "num_heads")]
    assert {m.name for m in heads.members} == {f"model.10.m.0.attn.{n}" for n in ("qkv.conv", "qkv.bn", "pe.conv",
                                                                                   "pe.bn", "proj.conv")}
    print(f"analysis of yolo11n: {seconds:.2f} s, {len(an.groups)} groups")


def test_cutting_a_head_that_contributes_nothing_changes_no_output():
    model, x = _yolo11(), torch.rand(1, 3, 128, 128)
    attn = model.get_submodule("model.10.m.0.attn")
    with torch.no_grad():
        attn.proj.conv.weight[:, attn.head_dim:] = 0  # head 1's values reach nothing
        before = model(x)
        apply_plan(model, {HEADS: [0]}, example_input(model))
        after = model(x)
    assert attn.num_heads == 1 and attn.qkv.conv.out_channels == 2 * attn.key_dim + attn.head_dim
    assert attn.proj.conv.in_channels == attn.head_dim and attn.pe.conv.out_channels == attn.head_dim
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


class WidthFromInput(Attention):
    """ultralytics' forward: the attention's width read from its input's shape."""

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, h * w).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        return self.proj((v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w)))


def test_a_forward_that_reads_the_width_from_its_input_leaves_the_heads_alone():
    model = _yolo11()
    block = model.get_submodule("model.10.m.0")
    old = block.attn
    block.attn = WidthFromInput(128, num_heads=2)
    block.attn.load_state_dict(old.state_dict())
    an = analyze(model, example_input(model))
    assert HEADS not in {g.name for g in an.groups}
    assert "breaks the forward pass" in an.excluded[HEADS]
