"""The YOLOv5 detection loss.

Targets are matched to anchors whose width/height ratio to the box is within `anchor_t` (4 by default), in the
cell that holds the box centre and in the two neighbouring cells nearest to it, so each box gets up to three
positive cells per matching anchor. Box loss is 1 − CIoU, objectness is BCE against the (detached, clamped) CIoU
of the prediction, classification is BCE. Gains follow YOLOv5's hyperparameters, scaled by the number of classes
and levels and by the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..evaluate.ops import bbox_ciou
from .yolov5 import Detect

# The two neighbours tried besides the centre cell: left/up/right/down offsets (in cells).
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)


@dataclass
class LossGains:
    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5
    anchor_t: float = 4.0
    balance: tuple = (4.0, 1.0, 0.4)  # objectness weight of P3, P4, P5


class YOLOv5Loss:
    """Callable: `loss, parts = criterion(raw_maps, targets)`; `parts` is `[box, obj, cls]` detached."""

    parts = ("box", "obj", "cls")

    def __init__(self, head: Detect, img_size: int = 640, gains: LossGains | None = None) -> None:
        g = gains or LossGains()
        nl, nc = head.nl, head.nc
        self.head = head
        self.anchor_t = g.anchor_t
        self.balance = g.balance[:nl]
        self.box_gain = g.box * 3 / nl
        self.cls_gain = g.cls * nc / 80 * 3 / nl
        self.obj_gain = g.obj * (img_size / 640) ** 2 * 3 / nl
        self.bce = nn.BCEWithLogitsLoss()

    def __call__(self, maps: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = maps[0].device
        lbox, lobj, lcls = (torch.zeros(1, device=device) for _ in range(3))
        for i, p in enumerate(maps):
            img, anchor, gy, gx, tbox, anchors, tcls = self._match(p, targets, i)
            tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=device)
            if img.numel():
                ps = p[img, anchor, gy, gx]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
                ciou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1.0 - ciou).mean()
                tobj[img, anchor, gy, gx] = ciou.detach().clamp(0).to(tobj.dtype)
                if self.head.nc > 1:
                    t = torch.zeros_like(ps[:, 5:])
                    t[torch.arange(len(tcls), device=device), tcls] = 1.0
                    lcls = lcls + self.bce(ps[:, 5:], t)
            lobj = lobj + self.bce(p[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        batch = maps[0].shape[0]
        return (lbox + lobj + lcls) * batch, torch.cat((lbox, lobj, lcls)).detach()

    def _match(self, p: torch.Tensor, targets: torch.Tensor, level: int):
        """Positive cells of one level: image, anchor, grid y/x indices, target box (cell-relative xywh), anchor wh."""
        na = self.head.na
        _, _, h, w, _ = p.shape
        anchors = self.head.anchors[level] / self.head.stride[level]  # in cells
        gain = torch.tensor([1, 1, w, h, w, h], dtype=targets.dtype, device=targets.device)
        t = targets * gain  # boxes in cells
        nt = t.shape[0]
        empty = torch.zeros(0, dtype=torch.long, device=p.device)
        if nt == 0:
            return empty, empty, empty, empty, torch.zeros(0, 4, device=p.device), torch.zeros(0, 2), empty
        ai = torch.arange(na, device=t.device).view(na, 1).repeat(1, nt)
        t = torch.cat((t.repeat(na, 1, 1), ai[..., None].to(t.dtype)), 2)  # [na, nt, 7]
        ratio = t[..., 4:6] / anchors[:, None]
        t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t]
        gxy = t[:, 2:4]
        gxi = gain[[2, 3]] - gxy
        j, k = ((gxy % 1 < 0.5) & (gxy > 1)).T
        left, m = ((gxi % 1 < 0.5) & (gxi > 1)).T
        mask = torch.stack((torch.ones_like(j), j, k, left, m))
        t = t.repeat((5, 1, 1))[mask]
        offsets = (torch.zeros_like(gxy)[None] + _OFFSETS.to(t.device)[:, None] * 0.5)[mask]
        img, cls = t[:, :2].long().T
        gxy = t[:, 2:4]
        gij = (gxy - offsets).long()
        gi = gij[:, 0].clamp_(0, w - 1)
        gj = gij[:, 1].clamp_(0, h - 1)
        anchor = t[:, 6].long()
        tbox = torch.cat((gxy - torch.stack((gi, gj), 1), t[:, 4:6]), 1)
        return img, anchor, gj, gi, tbox, anchors[anchor], cls
