"""Knowledge distillation for anchor-based detectors: the student learns the teacher's raw Detect maps.

For maps `[B, A, H, W, 5 + C]` (YOLOv5 training output) of teacher and student at the same strides and anchors:

    L_KD = w_obj · KL(obj) + w_cls · Σ t_obj·KL(cls) / Σ t_obj + w_box · Σ t_obj·|σ(xywh_s) − σ(xywh_t)| / Σ t_obj

- Objectness and classes are sigmoid outputs, so each is a Bernoulli variable; KL(t‖s) between the teacher's and
  the student's probabilities (softened by `temperature`, scaled by T²) is zero exactly when they agree.
  Objectness is distilled everywhere (the background matters), classes and boxes only where the teacher sees an
  object: each cell is weighted by the teacher's objectness probability (response KD masked by teacher objectness).
- Boxes are compared after the sigmoid the decoder applies, i.e. in the decoder's own offset space. The box term
  is weighted like the detection loss's (YOLOv5's box gain, 0.05): an L1 over four sigmoids is ~20× the scale of
  1 − IoU, and at weight 1 it dominated the gradient until a thin student fired on whole images (docs/sparsity.md,
  benchmarks/results/recovery_kd_box.json).

`FeatureKD` adds feature distillation on the neck's outputs (MSE or channel-wise distillation), through 1×1
adapters where the pruned student is narrower than its teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.loss import LossGains

__all__ = ["AnchorFreeKD", "DetectionKD", "FeatureKD", "bernoulli_kl"]


def bernoulli_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
                 ) -> torch.Tensor:
    """Element-wise KL(teacher ‖ student) of Bernoulli variables given as logits, softened by `temperature`."""
    s = student_logits / temperature
    t = torch.sigmoid(teacher_logits / temperature)
    # BCE(s, t) − H(t) = KL(t ‖ σ(s)); both terms with logits for stability
    return F.binary_cross_entropy_with_logits(s, t, reduction="none") \
        - F.binary_cross_entropy_with_logits(teacher_logits / temperature, t, reduction="none")


class DetectionKD(nn.Module):
    parts = ("obj", "cls", "box")

    def __init__(self, w_obj: float = 1.0, w_cls: float = 1.0, w_box: float = LossGains.box,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, not {temperature}")
        self.w_obj, self.w_cls, self.w_box, self.temperature = w_obj, w_cls, w_box, temperature

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, [obj, cls, box] parts detached). The teacher's maps are detached here."""
        if len(student) != len(teacher):
            raise ValueError(f"student has {len(student)} detection levels, teacher {len(teacher)}")
        t2 = self.temperature ** 2
        obj = cls = box = student[0].new_zeros(())
        weight = student[0].new_zeros(())
        for s, t in zip(student, teacher):
            t = t.detach()
            if s.shape != t.shape:
                raise ValueError(f"student map {tuple(s.shape)} and teacher map {tuple(t.shape)} differ: distillation "
                                 "needs the same input size, anchors and classes")
            t_obj = torch.sigmoid(t[..., 4])
            obj = obj + bernoulli_kl(s[..., 4], t[..., 4], self.temperature).mean() * t2
            if s.shape[-1] > 5:
                kl = bernoulli_kl(s[..., 5:], t[..., 5:], self.temperature).sum(-1)
                cls = cls + (t_obj * kl).sum() * t2
            diff = (torch.sigmoid(s[..., :4]) - torch.sigmoid(t[..., :4])).abs().sum(-1)
            box = box + (t_obj * diff).sum()
            weight = weight + t_obj.sum()
        weight = weight.clamp_min(1.0)  # per expected object; an empty teacher does not blow the terms up
        cls, box, obj = cls / weight, box / weight, obj / len(student)
        loss = self.w_obj * obj + self.w_cls * cls + self.w_box * box
        return loss, torch.stack((obj, cls, box)).detach()


class AnchorFreeKD(nn.Module):
    """KD for the anchor-free head of YOLOv8 / YOLO11, raw maps `[B, 4·reg_max + C, H, W]`.

    Classes: Bernoulli KL on every cell (the class score is also the quality score, so the background matters as
    objectness does for YOLOv5). Boxes: localization distillation (Zheng et al., CVPR 2022): KL between the
    teacher's and the student's distributions over each side's `reg_max` bins, weighted by the teacher's highest
    class probability and averaged per expected object. The weights are not tuned yet (1 and 1).
    """

    parts = ("cls", "box")

    def __init__(self, reg_max: int = 16, w_cls: float = 1.0, w_box: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, not {temperature}")
        self.reg_max, self.w_cls, self.w_box, self.temperature = reg_max, w_cls, w_box, temperature

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, [cls, box] parts detached). The teacher's maps are detached here."""
        if len(student) != len(teacher):
            raise ValueError(f"student has {len(student)} detection levels, teacher {len(teacher)}")
        temp, bins = self.temperature, self.reg_max
        cls = box = weight = student[0].new_zeros(())
        for s, t in zip(student, teacher):
            t = t.detach()
            if s.shape != t.shape:
                raise ValueError(f"student map {tuple(s.shape)} and teacher map {tuple(t.shape)} differ: distillation "
                                 "needs the same input size and classes")
            b, _, h, w = s.shape
            (s_box, s_cls), (t_box, t_cls) = s.split((4 * bins, s.shape[1] - 4 * bins), 1), \
                t.split((4 * bins, t.shape[1] - 4 * bins), 1)
            cls = cls + bernoulli_kl(s_cls, t_cls, temp).sum(1).mean() * temp ** 2
            quality = torch.sigmoid(t_cls).amax(1)  # [B, H, W]: where the teacher sees an object
            log_s = F.log_softmax(s_box.view(b, 4, bins, h, w) / temp, 2)
            p_t = F.softmax(t_box.view(b, 4, bins, h, w) / temp, 2)
            kl = (p_t * (p_t.clamp_min(1e-12).log() - log_s)).sum(2).mean(1)  # [B, H, W], mean of the 4 sides
            box = box + (quality * kl).sum() * temp ** 2
            weight = weight + quality.sum()
        cls, box = cls / len(student), box / weight.clamp_min(1.0)
        return self.w_cls * cls + self.w_box * box, torch.stack((cls, box)).detach()


class FeatureKD(nn.Module):
    """Feature distillation on the neck's outputs (the maps the Detect head reads), student → teacher.

    A pruned student's maps are narrower than the teacher's: a 1×1 adapter per level (trained with the student)
    maps them to the teacher's width. `mode`:
    - `mse`: mean squared error, normalised by the teacher map's mean square (levels weigh alike);
    - `cwd`: channel-wise distillation — each channel's spatial map is a distribution (softmax over H×W at
      `temperature`), KL(teacher ‖ student) per channel, × T²; it teaches *where* each channel fires.
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int], mode: str = "cwd",
                 temperature: float = 1.0) -> None:
        super().__init__()
        if mode not in ("mse", "cwd"):
            raise ValueError(f"feature KD mode must be mse or cwd, not {mode!r}")
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"student has {len(student_channels)} feature levels, teacher {len(teacher_channels)}")
        self.mode, self.temperature = mode, temperature
        self.adapters = nn.ModuleList(nn.Conv2d(cs, ct, 1, bias=False) if cs != ct else nn.Identity()
                                      for cs, ct in zip(student_channels, teacher_channels))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        loss = student[0].new_zeros(())
        for adapt, s, t in zip(self.adapters, student, teacher):
            s, t = adapt(s), t.detach()
            if self.mode == "mse":
                loss = loss + (s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)
            else:
                tau = self.temperature
                ls = F.log_softmax(s.flatten(2) / tau, -1)
                lt = F.log_softmax(t.flatten(2) / tau, -1)
                loss = loss + (lt.exp() * (lt - ls)).sum(-1).mean() * tau ** 2
        return loss / len(student)
