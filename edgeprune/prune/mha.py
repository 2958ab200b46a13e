"""`nn.MultiheadAttention` pruned by heads.

torch's attention cannot hold fewer heads than its embedding width implies: `F.multi_head_attention_forward`
derives `head_dim` from the query's width, so q, k and v must be as wide as the input. Cutting heads therefore
swaps the module's class for `HeadPrunedMultiheadAttention`, a subclass with the same parameters (the packed
`in_proj_weight` keeps its layout, `heads · head_dim` rows per projection instead of `embed_dim`) and a forward that
computes with the kept heads and projects back to `embed_dim` with the narrowed `out_proj`. The input and output
widths never change, so nothing around the attention does.

An attention with `bias_k`/`bias_v` or `add_zero_attn` is left alone: `mha_reason` says why.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .group import Group, Member


def mha_reason(m: nn.MultiheadAttention) -> str | None:
    """Why `m`'s heads cannot be cut (None when they can)."""
    if m.bias_k is not None or m.add_zero_attn:
        return "nn.MultiheadAttention with add_bias_kv or add_zero_attn: its heads are not cut"
    if m.num_heads < 2:
        return "nn.MultiheadAttention with one head: nothing to cut"
    return None


def mha_head_group(name: str, m: nn.MultiheadAttention) -> Group:
    """Group channel h = head h: its rows of q, k and v (the module's "out" side) and its columns of out_proj."""
    heads, hd = m.num_heads, m.head_dim
    rows = list(range(3 * heads * hd))
    members = [Member(name, m, "out", rows, [(r % (heads * hd)) // hd for r in rows]),
               Member(f"{name}.out_proj", m.out_proj, "in", list(range(heads * hd)),
                      [c // hd for c in range(heads * hd)])]
    return Group(f"{name}.heads", heads, members, counts=[(name, "num_heads")])


def mha_weight(m: nn.MultiheadAttention) -> torch.Tensor | None:
    """The q|k|v rows as one `[3 · heads · head_dim, E]` weight when packed (what importance scores), else None."""
    return m.in_proj_weight if m._qkv_same_embed_dim else None


def shrink_mha(m: nn.MultiheadAttention, keep_rows: list[int]) -> None:
    """Keep rows `keep_rows` of q|k|v (whole heads, the same heads in all three) and make `m` head-pruned."""
    inner = m.num_heads * m.head_dim
    keep = torch.as_tensor(keep_rows, dtype=torch.long)
    q_rows = keep[keep < inner]
    if not (torch.equal(keep[(keep >= inner) & (keep < 2 * inner)] - inner, q_rows)
            and torch.equal(keep[keep >= 2 * inner] - 2 * inner, q_rows)):
        raise ValueError("an attention keeps the same heads in q, k and v")

    def param(p, new):
        return nn.Parameter(new.detach().clone().contiguous(), requires_grad=p.requires_grad)

    if m._qkv_same_embed_dim:
        m.in_proj_weight = param(m.in_proj_weight, m.in_proj_weight[keep])
    else:
        for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            setattr(m, p, param(getattr(m, p), getattr(m, p)[q_rows]))
    if m.in_proj_bias is not None:
        m.in_proj_bias = param(m.in_proj_bias, m.in_proj_bias[keep])
    m.__class__ = HeadPrunedMultiheadAttention


def _merged_mask(attn_mask, key_padding_mask, batch: int, heads: int, q_len: int, k_len: int, dtype):
    """torch's masks as one additive float mask `[batch · heads, q_len, k_len]` (None when there is none)."""
    def additive(mask):
        if mask.dtype == torch.bool:
            return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))
        return mask.to(dtype)

    merged = None
    if attn_mask is not None:
        merged = additive(attn_mask)
        merged = merged.unsqueeze(0) if merged.dim() == 2 else merged
    if key_padding_mask is not None:
        pad = additive(key_padding_mask).view(batch, 1, 1, k_len).expand(-1, heads, -1, -1)
        pad = pad.reshape(batch * heads, 1, k_len)
        merged = pad if merged is None else merged + pad
    return merged


class HeadPrunedMultiheadAttention(nn.MultiheadAttention):
    """`nn.MultiheadAttention` whose q, k and v are `num_heads · head_dim` wide, fewer than `embed_dim`."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if is_causal and attn_mask is None:
            raise RuntimeError("is_causal=True needs the causal attn_mask too (as nn.MultiheadAttention does)")
        batched = query.dim() == 3
        if not batched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        out, weights = self._attend(query, key, value, key_padding_mask, attn_mask)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, (weights if batched else weights.squeeze(0))

    def _attend(self, query, key, value, key_padding_mask, attn_mask):
        """Attention on sequence-first `[L, N, E]` inputs: `(output [L, N, E], weights [N, heads, L, S])`."""
        heads, hd = self.num_heads, self.head_dim
        inner, (q_len, batch, _), k_len = heads * hd, query.shape, key.shape[0]
        if self._qkv_same_embed_dim:
            wq, wk, wv = self.in_proj_weight.split(inner)
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        bq, bk, bv = self.in_proj_bias.split(inner) if self.in_proj_bias is not None else (None,) * 3
        q = F.linear(query, wq, bq).reshape(q_len, batch * heads, hd).transpose(0, 1)
        k = F.linear(key, wk, bk).reshape(k_len, batch * heads, hd).transpose(0, 1)
        v = F.linear(value, wv, bv).reshape(k_len, batch * heads, hd).transpose(0, 1)
        scores = torch.bmm(q / math.sqrt(hd), k.transpose(1, 2))
        mask = _merged_mask(attn_mask, key_padding_mask, batch, heads, q_len, k_len, scores.dtype)
        weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        attended = torch.bmm(F.dropout(weights, self.dropout, self.training), v)
        out = self.out_proj(attended.transpose(0, 1).reshape(q_len, batch, inner))
        return out, weights.view(batch, heads, q_len, k_len)
