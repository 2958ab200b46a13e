"""The YOLOv8 / YOLO11 detection loss: task-aligned assignment, then BCE on classes, CIoU and DFL on boxes.

Assignment (TOOD's task-aligned assigner, as ultralytics uses it): a cell is a candidate for a box when its centre
lies inside the box; its alignment is `score^α · CIoU^β` (α 0.5, β 6) with the predicted score of the box's class
and the CIoU of the predicted box; each box takes its `topk` (10) best-aligned candidates, and a cell claimed by
several boxes goes to the one it overlaps most. Class targets are the one-hot class scaled by the normalized
alignment, so a well-placed prediction is asked for a high score and a poor one for a low score. Box loss is
1 − CIoU weighted by the target score; DFL is the cross-entropy of each side's distance distribution against the
two bins around the target distance. Gains: box 7.5, cls 0.5, dfl 1.5 (ultralytics' defaults).

Targets come as the trainer gives them: `[M, 6]` rows `(image, class, cx, cy, w, h)`, normalized to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate.ops import bbox_ciou, xywh2xyxy
from .yolov8_blocks import Detect, dist2bbox, make_anchors


@dataclass
class LossGainsV8:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5
    topk: int = 10
    alpha: float = 0.5
    beta: float = 6.0


class YOLOv8Loss:
    """Callable: `loss, parts = criterion(raw_maps, targets)`; `parts` is `[box, cls, dfl]` detached."""

    parts = ("box", "cls", "dfl")

    def __init__(self, head: Detect, img_size: int = 640, gains: LossGainsV8 | None = None) -> None:
        self.head, self.g = head, gains or LossGainsV8()
        self.bce = nn.BCEWithLogitsLoss(reduction="none")

    def __call__(self, maps: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head, b = self.head, maps[0].shape[0]
        x = torch.cat([m.view(b, head.no, -1) for m in maps], 2)
        distri, scores = x.split((4 * head.reg_max, head.nc), 1)
        distri, scores = distri.permute(0, 2, 1).contiguous(), scores.permute(0, 2, 1).contiguous()
        points, strides = make_anchors(maps, head.stride)  # in cells, [N, 2] and [N, 1]
        h, w = maps[0].shape[2] * head.stride[0], maps[0].shape[3] * head.stride[0]
        gt_labels, gt_boxes, gt_mask = self._batch_targets(targets, b, float(w), float(h))
        bins = distri.view(b, -1, 4, head.reg_max).softmax(3) @ torch.arange(head.reg_max, dtype=distri.dtype)
        pred_boxes = dist2bbox(bins, points, dim=-1)  # xywh in cells
        pred_xyxy = xywh2xyxy(pred_boxes)
        target_boxes, target_scores, fg = self._assign(scores.detach().sigmoid(), pred_xyxy.detach() * strides,
                                                       points * strides, gt_labels, gt_boxes, gt_mask)
        score_sum = target_scores.sum().clamp(min=1.0)
        lcls = self.bce(scores, target_scores.to(scores.dtype)).sum() / score_sum
        lbox = ldfl = torch.zeros((), device=scores.device)
        if fg.any():
            target_boxes = target_boxes / strides  # in cells
            weight = target_scores.sum(-1)[fg]
            ciou = bbox_ciou(pred_xyxy[fg], target_boxes[fg], xywh=False)
            lbox = ((1.0 - ciou) * weight).sum() / score_sum
            ltrb = torch.cat((points - target_boxes[..., :2], target_boxes[..., 2:] - points), -1)
            ltrb = ltrb.clamp(0, head.reg_max - 1 - 0.01)
            ldfl = (self._dfl(distri[fg].view(-1, head.reg_max), ltrb[fg]) * weight).sum() / score_sum
        parts = torch.stack((lbox * self.g.box, lcls * self.g.cls, ldfl * self.g.dfl))
        return parts.sum() * b, parts.detach()

    @staticmethod
    def _dfl(distri: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two bins around each target distance, weighted by nearness; mean of 4 sides."""
        left = target.long()
        w_left = left + 1 - target
        ce = lambda idx: F.cross_entropy(distri, idx.view(-1), reduction="none").view(left.shape)  # noqa: E731
        return (ce(left) * w_left + ce(left + 1) * (1 - w_left)).mean(-1)

    @staticmethod
    def _batch_targets(targets: torch.Tensor, b: int, w: float, h: float):
        """`[M, 6]` rows → per image `[b, K, 1]` classes, `[b, K, 4]` xyxy pixel boxes and a `[b, K, 1]` mask."""
        k = int(torch.bincount(targets[:, 0].long(), minlength=b).max()) if len(targets) else 0
        labels = torch.zeros(b, k, 1, device=targets.device)
        boxes = torch.zeros(b, k, 4, device=targets.device)
        mask = torch.zeros(b, k, 1, dtype=torch.bool, device=targets.device)
        for i in range(b):
            rows = targets[targets[:, 0] == i]
            n = len(rows)
            labels[i, :n, 0] = rows[:, 1]
            boxes[i, :n] = xywh2xyxy(rows[:, 2:6] * torch.tensor([w, h, w, h], device=targets.device))
            mask[i, :n] = True
        return labels, boxes, mask

    def _assign(self, scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask):
        """Task-aligned assignment → target boxes (xyxy px) `[b, N, 4]`, target scores `[b, N, C]`, fg `[b, N]`."""
        b, n, nc = scores.shape
        k = gt_boxes.shape[1]
        if k == 0:
            return torch.zeros_like(pred_boxes), torch.zeros_like(scores), torch.zeros(b, n, dtype=torch.bool)
        lt, rb = points[None, None] - gt_boxes[:, :, None, :2], gt_boxes[:, :, None, 2:] - points[None, None]
        inside = (torch.cat((lt, rb), -1).amin(-1) > 1e-9) & gt_mask  # [b, K, N]
        cls = gt_labels.long().squeeze(-1).clamp(0, nc - 1)  # [b, K]
        box_scores = scores.gather(2, cls[:, None, :].expand(b, n, k)).permute(0, 2, 1)  # [b, K, N]
        overlaps = bbox_ciou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :], xywh=False).clamp(0) * inside
        align = box_scores.pow(self.g.alpha) * overlaps.pow(self.g.beta) * inside
        top = align.topk(min(self.g.topk, n), dim=-1).indices  # [b, K, topk]
        pos = torch.zeros_like(align).scatter_(-1, top, 1.0) * inside  # [b, K, N]
        multi = pos.sum(1, keepdim=True) > 1  # a cell claimed by several boxes: the one it overlaps most
        best = F.one_hot(overlaps.argmax(1), k).permute(0, 2, 1).to(pos.dtype)
        pos = torch.where(multi, best, pos)
        fg = pos.sum(1) > 0  # [b, N]
        gt_idx = pos.argmax(1)  # [b, N]
        target_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, n, 4))
        target_cls = cls.gather(1, gt_idx)
        target_scores = F.one_hot(target_cls, nc).to(scores.dtype) * fg[..., None]
        align = align * pos
        norm = (align * (overlaps * pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + 1e-9)).amax(1)
        return target_boxes, target_scores * norm[..., None], fg
