"""Detection metrics: COCO mAP through pycocotools, and YOLOv5-style precision/recall at the best-F1 threshold.

See ``docs/metrics.md`` for the definitions and the reasons behind them.  In short:

* ``map50`` / ``map`` / per-class AP come from pycocotools' ``COCOeval`` (101-point interpolated AP, greedy
  matching by score), run on in-memory COCO objects with one area range (all boxes) and ``maxDets`` set to the
  largest number of predictions in any image, so nothing is truncated (COCO's default keeps 100 per image and
  class, which caps recall in dense scenes).
* ``precision`` / ``recall`` are macro averages over the classes that have ground truth, taken at the single
  confidence threshold that maximises the macro-averaged F1, using COCOeval's own matches at IoU 0.5.
* Classes without ground truth are left out of every average (as COCO and YOLOv5 do).  With no ground truth at
  all, every metric is 0.0 and ``num_gt`` is 0: the result is never NaN.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["COCO_IOU_THRESHOLDS", "detection_metrics"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50:0.05:0.95, as in pycocotools


def _numpy(x: Any, dtype: type) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on an accelerator
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_boxes(boxes: np.ndarray, where: str) -> None:
    if not np.isfinite(boxes).all():
        raise ValueError(f"{where}: boxes contain NaN or inf")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        raise ValueError(f"{where}: row {bad[0]} is not (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1")


def _check_classes(cls: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    as_int = np.rint(cls).astype(np.int64)
    bad = np.flatnonzero((np.abs(cls - as_int) > 1e-6) | (as_int < 0) | (as_int >= num_classes))
    if bad.size:
        raise ValueError(f"{where}: row {bad[0]} has class {cls[bad[0]]}, expected an integer in [0, {num_classes})")
    return as_int


def _prepare_predictions(pred: Any, index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``[n, 6]`` rows -> (boxes xyxy [n, 4], scores [n], classes [n] int)."""
    arr = _numpy(pred, np.float64)
    if arr.size == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    where = f"predictions[{index}]"
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"{where}: expected [n, 6] rows (x1, y1, x2, y2, conf, cls), got shape {arr.shape}")
    _check_boxes(arr[:, :4], where)
    if not np.isfinite(arr[:, 4]).all():
        raise ValueError(f"{where}: confidences contain NaN or inf")
    return arr[:, :4], arr[:, 4], _check_classes(arr[:, 5], num_classes, where)


def _prepare_ground_truth(gt: Any, index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``(boxes [m, 4], classes [m])`` -> validated float64 boxes and int64 classes."""
    where = f"ground_truths[{index}]"
    try:
        boxes, classes = gt
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a pair (boxes [m, 4], classes [m])") from None
    boxes, classes = _numpy(boxes, np.float64), _numpy(classes, np.float64).reshape(-1)
    if boxes.size == 0 and classes.size == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != classes.shape[0]:
        raise ValueError(f"{where}: boxes {boxes.shape} and classes {classes.shape} do not form [m, 4] and [m]")
    _check_boxes(boxes, where)
    return boxes, _check_classes(classes, num_classes, where)


def _xywh_list(boxes: np.ndarray) -> list[list[float]]:
    return np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1).tolist()


def _run_cocoeval(
    preds: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    gts: list[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    iou_thresholds: np.ndarray,
) -> COCOeval:
    """Build in-memory COCO objects (ids start at 1: COCOeval treats id 0 as "unmatched") and evaluate."""
    images = [{"id": i + 1} for i in range(len(gts))]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    annotations = []
    for i, (boxes, classes) in enumerate(gts):
        for box, c in zip(_xywh_list(boxes), classes.tolist()):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                 "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
    results = []
    for i, (boxes, scores, classes) in enumerate(preds):
        for box, s, c in zip(_xywh_list(boxes), scores.tolist(), classes.tolist()):
            results.append({"image_id": i + 1, "category_id": c + 1, "bbox": box, "score": s})
    max_per_image = max((len(p[1]) for p in preds), default=0)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "categories": categories, "annotations": annotations}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes indexes results[0] and fails on an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "categories": categories, "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.catIds = [c["id"] for c in categories]
        ev.params.iouThrs = iou_thresholds
        ev.params.maxDets = [max(max_per_image, 1)]  # never truncate: NMS already capped the detections
        ev.params.areaRng = [[0.0, float("inf")]]  # one range, "all"; small/medium/large are not needed
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev


def _matches_at(ev: COCOeval, t_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All evaluated detections as (scores, is_true_positive, class) at IoU threshold ``t_index``."""
    scores, tps, classes = [], [], []
    for e in ev.evalImgs:
        if e is None or not e["dtIds"]:
            continue
        keep = ~e["dtIgnore"][t_index].astype(bool)
        scores.append(np.asarray(e["dtScores"], dtype=np.float64)[keep])
        tps.append(e["dtMatches"][t_index][keep] > 0)
        classes.append(np.full(int(keep.sum()), e["category_id"] - 1, dtype=np.int64))
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    return np.concatenate(scores), np.concatenate(tps), np.concatenate(classes)


def _best_f1(scores: np.ndarray, tp: np.ndarray, cls: np.ndarray, n_gt: np.ndarray) -> dict[str, float]:
    """Macro precision/recall/F1 at the confidence threshold maximising macro F1 (classes with GT only).

    Each class's F1 is ``2 TP / (n_gt + n_det)`` (0 with no detections).  Walking detections by decreasing score
    changes one class's F1 per step, so the macro F1 at every candidate threshold (each distinct score) is one
    cumulative sum.  Ties in F1 go to the highest threshold.  A class with no detection above the threshold
    has precision 0.
    """
    with_gt = n_gt > 0
    keep = with_gt[cls]
    scores, tp, cls = scores[keep], tp[keep], cls[keep]
    if scores.size == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "conf_threshold": 0.0}
    order = np.argsort(-scores, kind="stable")
    scores, tp, cls = scores[order], tp[order], cls[order]
    delta = np.zeros(scores.size)
    for k in np.unique(cls):
        m = cls == k
        n_det = np.arange(1, m.sum() + 1)
        f1 = 2 * np.cumsum(tp[m]) / (n_gt[k] + n_det)
        delta[m] = np.diff(f1, prepend=0.0)
    macro_f1 = np.cumsum(delta) / with_gt.sum()
    group_ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    at_ends = macro_f1[group_ends]
    best = group_ends[np.flatnonzero(at_ends >= at_ends.max() - 1e-12)[0]]  # ties (up to rounding): highest
    threshold = scores[best]

    above = scores >= threshold
    classes = np.flatnonzero(with_gt)
    n_tp = np.bincount(cls[above & tp], minlength=n_gt.size)[classes]
    n_det = np.bincount(cls[above], minlength=n_gt.size)[classes]
    precision = np.divide(n_tp, n_det, out=np.zeros(classes.size), where=n_det > 0)
    recall = n_tp / n_gt[classes]
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(macro_f1[best]),
        "conf_threshold": float(threshold),
    }


def detection_metrics(
    predictions: Sequence[Any],
    ground_truths: Sequence[Any],
    num_classes: int,
    iou_thresholds: Sequence[float] | np.ndarray = COCO_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """COCO mAP and best-F1 precision/recall of a detector over a set of images.

    Args:
        predictions: one array-like per image, ``[n, 6]`` rows ``(x1, y1, x2, y2, conf, cls)`` (torch tensors
            or numpy arrays; an empty image may be ``[0, 6]`` or any empty array).
        ground_truths: one ``(boxes [m, 4] xyxy, classes [m])`` pair per image, in the same pixel frame as the
            predictions of that image.
        num_classes: classes are integers in ``[0, num_classes)``.
        iou_thresholds: IoU thresholds averaged into ``map``; must include 0.5 (for ``map50``).

    Returns:
        ``map50``, ``map`` (mean over ``iou_thresholds``), ``precision``, ``recall``, ``f1`` and
        ``conf_threshold`` (see :func:`_best_f1`), ``ap50_per_class`` and ``ap_per_class`` (dicts keyed by the
        class ids that have ground truth), ``num_gt_per_class`` (list), ``num_gt``, ``num_predictions``,
        ``num_images``, ``iou_thresholds``.  All floats are finite; with no ground truth they are 0.0.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"predictions has {len(predictions)} images but ground_truths has {len(ground_truths)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or (thresholds < 0).any() or (thresholds > 1).any():
        raise ValueError(f"iou_thresholds must be a non-empty list of values in [0, 1], got {iou_thresholds}")
    at_50 = np.flatnonzero(np.isclose(thresholds, 0.5))
    if at_50.size == 0:
        raise ValueError(f"iou_thresholds must include 0.5 (for map50), got {iou_thresholds}")

    preds = [_prepare_predictions(p, i, num_classes) for i, p in enumerate(predictions)]
    gts = [_prepare_ground_truth(g, i, num_classes) for i, g in enumerate(ground_truths)]
    n_gt = np.bincount(np.concatenate([g[1] for g in gts] + [np.zeros(0, np.int64)]), minlength=num_classes)
    result: dict[str, Any] = {
        "map50": 0.0, "map": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "conf_threshold": 0.0,
        "ap50_per_class": {}, "ap_per_class": {},
        "num_gt_per_class": n_gt.tolist(), "num_gt": int(n_gt.sum()),
        "num_predictions": int(sum(len(p[1]) for p in preds)), "num_images": len(gts),
        "iou_thresholds": thresholds.tolist(),
    }  # fmt: skip
    if result["num_gt"] == 0:  # AP and recall are undefined without ground truth; report zeros, not NaN
        return result

    ev = _run_cocoeval(preds, gts, num_classes, thresholds)
    # precision: [T, R, K, A, M]; entries are -1 only for classes without ground truth.
    ap = ev.eval["precision"][:, :, :, 0, -1].mean(axis=1)  # [T, K]
    classes = np.flatnonzero(n_gt > 0)
    t50 = int(at_50[0])
    result["ap50_per_class"] = {int(k): float(ap[t50, k]) for k in classes}
    result["ap_per_class"] = {int(k): float(ap[:, k].mean()) for k in classes}
    result["map50"] = float(ap[t50, classes].mean())
    result["map"] = float(ap[:, classes].mean())
    result.update(_best_f1(*_matches_at(ev, t50), n_gt))
    return result
