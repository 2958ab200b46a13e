"""Tests for edgeprune.evaluate.metrics.detection_metrics (pycocotools mAP + best-F1 precision/recall)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.evaluate.metrics import detection_metrics


def grid_boxes(n: int, size: float = 40.0, gap: float = 60.0, seed: int = 0) -> np.ndarray:
    """``n`` non-overlapping xyxy boxes of varied shape laid on a grid (so no prediction can hit two GTs)."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n)))
    idx = np.arange(n)
    x1, y1 = (idx % cols) * (size + gap), (idx // cols) * (size + gap)
    w, h = rng.uniform(0.5, 1.0, n) * size, rng.uniform(0.5, 1.0, n) * size
    return np.stack((x1, y1, x1 + w, y1 + h), axis=1)


def as_predictions(boxes: np.ndarray, classes: np.ndarray, conf: np.ndarray | float = 0.9) -> np.ndarray:
    conf = np.broadcast_to(np.asarray(conf, dtype=np.float64), (len(boxes),))
    return np.concatenate((boxes, conf[:, None], np.asarray(classes, dtype=np.float64)[:, None]), axis=1)


def shift_x(pred: np.ndarray, fraction: float) -> np.ndarray:
    """Shift boxes right by ``fraction`` of their width: IoU with the original is (1 - f) / (1 + f)."""
    out = pred.copy()
    w = out[:, 2] - out[:, 0]
    out[:, [0, 2]] += (fraction * w)[:, None]
    return out


@pytest.fixture
def scene() -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Four images, two classes, perfect predictions with distinct confidences; image 3 is empty."""
    rng = np.random.default_rng(1)
    preds, gts = [], []
    for i, n in enumerate((5, 3, 8, 0)):
        boxes = grid_boxes(n, seed=i)
        classes = rng.integers(0, 2, n)
        gts.append((boxes, classes))
        preds.append(as_predictions(boxes, classes, rng.uniform(0.5, 0.99, n)))
    return preds, gts


def test_perfect_predictions_score_one(scene):
    preds, gts = scene
    m = detection_metrics(preds, gts, num_classes=2)
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(1.0) and m["recall"] == pytest.approx(1.0)
    assert m["ap50_per_class"] == pytest.approx({0: 1.0, 1: 1.0})
    assert m["num_gt"] == 16 and m["num_images"] == 4 and m["num_predictions"] == 16


def test_shifted_boxes_drop_map_before_map50(scene):
    preds, gts = scene
    # f = 0.1 -> IoU 0.818: passes 0.50..0.80 (7 of 10 thresholds), fails 0.85..0.95.
    m = detection_metrics([shift_x(p, 0.1) for p in preds], gts, 2)
    assert m["map50"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(0.7)
    # f = 0.3 -> IoU 0.538: only the 0.50 threshold passes.
    m = detection_metrics([shift_x(p, 0.3) for p in preds], gts, 2)
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(0.1)
    # f = 0.4 -> IoU 0.429 < 0.5: every prediction is a false positive.
    m = detection_metrics([shift_x(p, 0.4) for p in preds], gts, 2)
    assert m["map50"] == 0.0 and m["map"] == 0.0 and m["recall"] == 0.0


def test_confidence_ordering_of_false_positives_matters(scene):
    preds, gts = scene
    fp = np.array([[2000.0, 2000.0, 2040.0, 2040.0, 0.0, 0.0]])  # far from every ground-truth box
    low = [np.concatenate((p, fp * [1, 1, 1, 1, 0, 1] + [0, 0, 0, 0, 0.01, 0])) for p in preds]
    m = detection_metrics(low, gts, 2)
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(1.0)  # the best-F1 threshold leaves the FPs out
    high = [np.concatenate((p, fp * [1, 1, 1, 1, 0, 1] + [0, 0, 0, 0, 0.999, 0])) for p in preds]
    m = detection_metrics(high, gts, 2)
    assert m["map50"] < 0.95 and m["ap50_per_class"][1] == pytest.approx(1.0)
    assert m["ap50_per_class"][0] < 0.9


def test_hand_made_precision_recall_and_ap():
    # One class, 3 GT.  By decreasing confidence: FP .95, TP .9, TP .8, FP .7, TP .6, FP .5.
    gt = grid_boxes(3)
    far = gt + 1000.0
    rows = [(far[0], 0.95), (gt[0], 0.9), (gt[1], 0.8), (far[1], 0.7), (gt[2], 0.6), (far[2], 0.5)]
    pred = np.array([[*box, conf, 0.0] for box, conf in rows])
    m = detection_metrics([pred], [(gt, np.zeros(3))], num_classes=1)
    # F1 = 2 TP / (n_gt + n_det) per threshold: 0, 2/5, 4/6, 4/7, 6/8, 6/9 -> best at 0.6 (TP 3 of 5 detections).
    assert m["conf_threshold"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(0.6) and m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.75)
    # COCO 101-point AP: interpolated precision is 2/3 for recall <= 2/3 (67 points) and 0.6 above (34 points).
    assert m["map50"] == pytest.approx((67 * 2 / 3 + 34 * 0.6) / 101)


def test_two_classes_several_images_are_scored_separately(scene):
    preds, gts = scene
    moved = [np.where((p[:, 5] == 1)[:, None], shift_x(p, 0.45), p) for p in preds]
    m = detection_metrics(moved, gts, 2)
    assert m["ap50_per_class"] == pytest.approx({0: 1.0, 1: 0.0})
    assert m["map50"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)  # macro average: class 0 recall 1, class 1 recall 0
    # A correct box with the wrong class label matches nothing.
    swapped = [np.concatenate((p[:, :5], 1 - p[:, 5:]), axis=1) for p in preds]
    assert detection_metrics(swapped, gts, 2)["map50"] == 0.0


def test_dense_image_is_not_truncated_at_100_detections():
    # COCOeval's default maxDets keeps 100 detections per image and class; 150 objects would cap recall at 2/3.
    gt = grid_boxes(150, size=20.0, gap=10.0)
    conf = np.linspace(0.99, 0.3, 150)
    m = detection_metrics([as_predictions(gt, np.zeros(150), conf)], [(gt, np.zeros(150))], 1)
    assert m["map50"] == pytest.approx(1.0) and m["recall"] == pytest.approx(1.0)


def test_empty_cases_are_defined_and_nan_free(scene):
    preds, gts = scene
    empty_gt = [(np.zeros((0, 4)), np.zeros(0)) for _ in preds]
    for p in (preds, [np.zeros((0, 6)) for _ in preds]):
        m = detection_metrics(p, empty_gt, 2)
        assert m["num_gt"] == 0 and m["ap50_per_class"] == {}
        assert all(m[k] == 0.0 for k in ("map50", "map", "precision", "recall", "f1"))
    m = detection_metrics([np.zeros((0, 6)) for _ in preds], gts, 2)  # a detector that finds nothing
    assert m["map50"] == 0.0 and m["precision"] == 0.0 and m["recall"] == 0.0
    assert m["ap50_per_class"] == {0: 0.0, 1: 0.0}
    values = [v for v in m.values() if isinstance(v, float)]
    assert np.isfinite(values).all()


def test_classes_without_ground_truth_are_left_out(scene):
    preds, gts = scene
    extra = [np.concatenate((p, as_predictions(grid_boxes(1) + 5000, [2], 0.99))) for p in preds]
    m = detection_metrics(extra, gts, num_classes=3)
    assert m["map50"] == pytest.approx(1.0)
    assert set(m["ap50_per_class"]) == {0, 1} and m["num_gt_per_class"][2] == 0


def test_accepts_torch_tensors(scene):
    preds, gts = scene
    m = detection_metrics(
        [torch.from_numpy(p).float() for p in preds],
        [(torch.from_numpy(b).float(), torch.from_numpy(c)) for b, c in gts],
        2,
    )
    assert m["map50"] == pytest.approx(1.0)


def test_bad_input_names_the_field(scene):
    preds, gts = scene
    with pytest.raises(ValueError, match="3 images"):
        detection_metrics(preds[:3], gts, 2)
    bad = [p.copy() for p in preds]
    bad[1][0, 5] = 7
    with pytest.raises(ValueError, match=r"predictions\[1\]: row 0 has class 7"):
        detection_metrics(bad, gts, 2)
    with pytest.raises(ValueError, match=r"predictions\[0\].*\[n, 6\]"):
        detection_metrics([p[:, :5] for p in preds], gts, 2)
    with pytest.raises(ValueError, match=r"ground_truths\[0\]"):
        detection_metrics(preds, [(b[:, ::-1], c) for b, c in gts], 2)
    with pytest.raises(ValueError, match="include 0.5"):
        detection_metrics(preds, gts, 2, iou_thresholds=[0.75])


@pytest.mark.parametrize("seed", range(3))
def test_best_f1_sweep_matches_brute_force(seed: int):
    from edgeprune.evaluate.metrics import _best_f1

    rng = np.random.default_rng(seed)
    n, k = 400, 4
    scores = np.round(rng.uniform(0, 1, n), 2)  # rounded: many tied scores
    tp, cls = rng.uniform(0, 1, n) < 0.4, rng.integers(0, k, n)
    n_gt = np.array([60, 0, 45, 30])  # class 1 has no ground truth: its detections must be ignored
    best = None
    for t in np.unique(scores)[::-1]:  # brute force, highest threshold first (ties keep the first)
        p, r, f = [], [], []
        for c in (0, 2, 3):
            m = (cls == c) & (scores >= t)
            p.append(tp[m].sum() / m.sum() if m.sum() else 0.0)
            r.append(tp[m].sum() / n_gt[c])
            f.append(2 * p[-1] * r[-1] / (p[-1] + r[-1]) if p[-1] + r[-1] else 0.0)
        if best is None or np.mean(f) > best[2] + 1e-12:
            best = (np.mean(p), np.mean(r), np.mean(f), t)
    got = _best_f1(scores, tp, cls, n_gt)
    assert (got["precision"], got["recall"], got["f1"], got["conf_threshold"]) == pytest.approx(best)
