"""Scores that predict what a pruned candidate will be worth *after* recovery, dearer than the search's screen.

The screen (candidate.py: mAP after batch-norm recalibration) is cheap but, at deep cuts, close to noise. These
two cost more and are what benchmarks/bench_proxy.py compares with it (Spearman rank correlation with the mAP
each plan reaches after the full KD recovery; figures in docs/search.md):

- `fine_tuned`: the recalibrated copy after a short KD fine-tune (NetAdapt's short-term fine-tune), then scored
  by mAP like the screen;
- `kd_loss`: the distillation loss of a copy against the teacher on held-out images (no labels needed).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..train.distill import DetectionKD

__all__ = ["fine_tuned", "kd_loss"]


def fine_tuned(model: nn.Module, teacher: nn.Module, images: list, img_size: int, run_dir: str | Path | None = None,
               batch_size: int = 16, lr0: float = 0.002) -> nn.Module:
    """`model` (changed in place) after one pass of KD fine-tuning over `images` (training samples: their number
    over `batch_size` is the iterations), lr0 constant to the end of a cosine, no warm-up, no EMA. Start from a
    BN-recalibrated copy: with BN momentum 0.03, 24 iterations leave half of the dense model's statistics in
    place, and the short fine-tune then scored below the recalibration alone (0.02 against 0.13 mAP@0.5)."""
    from ..train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(epochs=1, batch_size=batch_size, img_size=img_size, lr0=lr0, warmup_epochs=0.0, ema=False,
                      eval_every=1)
    with contextlib.nullcontext(str(run_dir)) if run_dir is not None else tempfile.TemporaryDirectory() as run:
        Trainer(model.train(), images, [], cfg, run, progress=False, teacher=teacher).fit()  # saves last.pt there
    return model.eval()


@torch.no_grad()
def kd_loss(model: nn.Module, teacher: nn.Module, loader, kd: DetectionKD | None = None) -> float:
    """Mean DetectionKD loss of `model` against `teacher` over `loader`'s images (lower is better); raw Detect
    maps with the batch norms frozen, as in training."""
    kd = kd or DetectionKD()
    student, teacher = model.eval(), copy.deepcopy(teacher).eval()
    student.head.train(), teacher.head.train()
    total, n = 0.0, 0
    for x, _, _ in loader:
        total += float(kd(student(x), teacher(x))[0]) * len(x)
        n += len(x)
    student.head.eval()
    return total / max(n, 1)
