"""Evaluate a detector on a validation loader: NMS, then COCO-style mAP through edgeprune.evaluate.metrics.

Predictions and ground truth are compared in the letterboxed input frame. IoU is invariant to the uniform scale
and shift that letterboxing applies, so mAP@0.5 and mAP@0.5:0.95 equal those in original image pixels.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .metrics import detection_metrics
from .ops import non_max_suppression, xywh2xyxy


def targets_per_image(targets: torch.Tensor, batch: int, img_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split `[M, 6]` normalised targets into per-image `(boxes xyxy in input pixels, classes)`."""
    out = []
    for i in range(batch):
        t = targets[targets[:, 0] == i]
        boxes = xywh2xyxy(t[:, 2:6] * img_size).numpy().astype(np.float32)
        out.append((boxes, t[:, 1].numpy().astype(np.int64)))
    return out


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, conf_thres: float = 0.001, iou_thres: float = 0.6,
            max_det: int = 300) -> list[torch.Tensor]:
    """Detections per image, `[n, 6]` = `(x1, y1, x2, y2, conf, cls)` in input pixels."""
    model.eval()
    y = as_rows(model(images), getattr(model, "row_layout", "yolov5"))
    return non_max_suppression(y, conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det)


def as_rows(y: torch.Tensor, layout: str) -> torch.Tensor:
    """A detector's eval output as YOLOv5 rows `[B, N, 5 + C]`: the anchor-free `[B, 4 + C, N]` of YOLOv8 /
    YOLO11 gets an objectness of 1, so that the score NMS ranks is the class score."""
    if layout == "yolov8":
        y = y.transpose(1, 2)
        return torch.cat((y[..., :4], torch.ones_like(y[..., :1]), y[..., 4:]), -1)
    return y


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int | None = None, conf_thres: float = 0.001,
             iou_thres: float = 0.6, max_det: int = 300, progress: bool = False) -> dict:
    """mAP@0.5, mAP@0.5:0.95, precision and recall of `model` over `loader` (a non-augmenting loader)."""
    nc = num_classes or model.config.num_classes
    device = next(model.parameters()).device
    preds, truths = [], []
    t0 = time.perf_counter()
    for images, targets, _ in tqdm(loader, desc="eval", leave=False, disable=not progress):
        dets = predict(model, images.to(device), conf_thres, iou_thres, max_det)
        preds += [d.cpu().numpy() for d in dets]
        truths += targets_per_image(targets, images.shape[0], images.shape[-1])
    result = detection_metrics(preds, truths, num_classes=nc)
    result["images"] = len(preds)
    result["seconds"] = time.perf_counter() - t0
    return result
