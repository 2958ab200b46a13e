"""Tests for edgeprune.evaluate.ops: box conversions, IoU, CIoU, NMS (against a brute-force reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeprune.evaluate.ops import (
    NMS_BLOCK,
    batched_nms,
    bbox_ciou,
    box_iou,
    nms,
    non_max_suppression,
    xywh2xyxy,
    xyxy2xywh,
)

# ---------------------------------------------------------------- references (independent of edgeprune.evaluate.ops)


def ref_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box ``a [4]`` against ``b [M, 4]``, float64."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / union


def ref_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float, classes: torch.Tensor | None = None) -> list[int]:
    """Textbook greedy NMS: take the best remaining box, drop every same-class box overlapping it > thr."""
    b, s = boxes.double().numpy(), scores.double().numpy()
    c = np.zeros(len(s)) if classes is None else classes.double().numpy()
    order = np.argsort(-s, kind="stable")
    suppressed = np.zeros(len(s), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= (ref_iou(b[i], b) > thr) & (c == c[i])
    return keep


def random_boxes(n: int, seed: int, clusters: int = 20, size: float = 640.0) -> torch.Tensor:
    """Clustered random xyxy boxes (float64) so NMS has real work: overlaps, chains, and survivors."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(clusters, 2, generator=g, dtype=torch.float64) * 60 + 8
    idx = torch.randint(0, clusters, (n,), generator=g)
    cxy = centres[idx] + torch.randn(n, 2, generator=g, dtype=torch.float64) * 6
    whn = wh[idx] * (1 + 0.25 * torch.rand(n, 2, generator=g, dtype=torch.float64))
    return torch.cat((cxy - whn / 2, cxy + whn / 2), dim=1)


def distinct_scores(n: int, seed: int) -> torch.Tensor:
    """Scores without ties (a permutation), so the greedy order is unambiguous."""
    g = torch.Generator().manual_seed(seed + 1000)
    return (torch.randperm(n, generator=g).double() + 1) / (n + 1)


# ---------------------------------------------------------------- conversions and IoU


def test_box_conversions_known_values_and_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert torch.equal(xywh2xyxy(xywh), torch.tensor([[8.0, 17.0, 12.0, 23.0]]))
    assert torch.equal(xyxy2xywh(xywh2xyxy(xywh)), xywh)
    batch = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    out = xywh2xyxy(batch)
    assert out.shape == batch.shape and out.dtype == torch.float64
    torch.testing.assert_close(xyxy2xywh(out), batch)
    arr = np.array([[1.0, 2.0, 5.0, 8.0]], dtype=np.float32)
    np.testing.assert_array_equal(xyxy2xywh(arr), np.array([[3.0, 5.0, 4.0, 6.0]], dtype=np.float32))
    assert xyxy2xywh(arr).dtype == np.float32
    with pytest.raises(ValueError, match="last dimension of 4"):
        xywh2xyxy(torch.zeros(3, 5))


def test_box_iou_values_and_degenerate_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    torch.testing.assert_close(iou[0], torch.tensor([1 / 3, 1.0, 0.0, 0.0]))
    assert torch.equal(iou[1], torch.zeros(4))  # empty box: IoU 0, not NaN


# ---------------------------------------------------------------- CIoU


def ref_ciou(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """CIoU of xyxy boxes written straight from Zheng et al. 2020 (alpha detached, no eps)."""
    w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
    w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
    iw = (torch.minimum(b1[..., 2], b2[..., 2]) - torch.maximum(b1[..., 0], b2[..., 0])).clamp(min=0)
    ih = (torch.minimum(b1[..., 3], b2[..., 3]) - torch.maximum(b1[..., 1], b2[..., 1])).clamp(min=0)
    iou = iw * ih / (w1 * h1 + w2 * h2 - iw * ih)
    c2 = (torch.maximum(b1[..., 2], b2[..., 2]) - torch.minimum(b1[..., 0], b2[..., 0])) ** 2 + (
        torch.maximum(b1[..., 3], b2[..., 3]) - torch.minimum(b1[..., 1], b2[..., 1])
    ) ** 2
    rho2 = ((b1[..., 0] + b1[..., 2] - b2[..., 0] - b2[..., 2]) / 2) ** 2 + (
        (b1[..., 1] + b1[..., 3] - b2[..., 1] - b2[..., 3]) / 2
    ) ** 2
    v = 4 / math.pi**2 * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    alpha = (v / (1 - iou + v)).detach()
    return iou - rho2 / c2 - alpha * v


def test_ciou_hand_computed_cases():
    # Same aspect, centres 1 apart: IoU = 2/6, enclosing 3x2 -> c^2 = 13, rho^2 = 1, v = 0.
    b1 = torch.tensor([0.0, 0.0, 2.0, 2.0], dtype=torch.float64)
    b2 = torch.tensor([1.0, 0.0, 3.0, 2.0], dtype=torch.float64)
    assert bbox_ciou(b1, b2, xywh=False).item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    # Different aspect: IoU = 4/8, c^2 = 2^2 + 4^2 = 20, rho^2 = 1, v = 4/pi^2 (atan(1/2) - atan(1))^2.
    b3 = torch.tensor([0.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(1.0)) ** 2
    expected = 0.5 - 1 / 20 - v * v / (v - 0.5 + 1)
    assert expected == pytest.approx(0.4467519, abs=1e-6)
    assert bbox_ciou(b1, b3, xywh=False).item() == pytest.approx(expected, abs=1e-6)


def test_ciou_identical_disjoint_and_concentric():
    box = torch.tensor([[5.0, 5.0, 4.0, 2.0]])  # xywh
    assert bbox_ciou(box, box).item() == pytest.approx(1.0, abs=1e-6)
    far = torch.tensor([[50.0, 5.0, 4.0, 2.0]])
    assert bbox_ciou(box, far).item() < 0
    touching = torch.tensor([[9.0, 5.0, 4.0, 2.0]])  # shares an edge: IoU 0 but rho > 0
    assert -1 < bbox_ciou(box, touching).item() < 0
    # Concentric, same aspect ratio: rho = 0 and v = 0, so CIoU is exactly the IoU.
    big = torch.tensor([[5.0, 5.0, 8.0, 4.0]])
    assert bbox_ciou(box, big).item() == pytest.approx(0.25, abs=1e-6)
    assert bbox_ciou(box, big).item() == pytest.approx(box_iou(xywh2xyxy(box), xywh2xyxy(big)).item(), abs=1e-6)


def test_ciou_matches_paper_formula_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    xy1 = torch.rand(64, 2, generator=g, dtype=torch.float64) * 20
    b1 = torch.cat((xy1, xy1 + torch.rand(64, 2, generator=g, dtype=torch.float64) * 10 + 1), 1)
    xy2 = xy1 + torch.randn(64, 2, generator=g, dtype=torch.float64) * 3
    b2 = torch.cat((xy2, xy2 + torch.rand(64, 2, generator=g, dtype=torch.float64) * 10 + 1), 1)
    p1, p2 = b1.clone().requires_grad_(True), b1.clone().requires_grad_(True)
    ours, ref = bbox_ciou(p1, b2, xywh=False), ref_ciou(p2, b2)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad, atol=1e-6, rtol=0)  # alpha treated as a constant
    # xywh input gives the same values as xyxy input.
    torch.testing.assert_close(bbox_ciou(xyxy2xywh(b1), xyxy2xywh(b2)), ours.detach())


def test_ciou_gradient_moves_prediction_toward_target():
    target = torch.tensor([[10.0, 10.0, 4.0, 4.0]])
    pred = torch.tensor([[7.0, 12.0, 3.0, 5.0]], requires_grad=True)
    for _ in range(200):
        loss = (1 - bbox_ciou(pred, target)).sum()
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        with torch.no_grad():
            pred -= 0.5 * grad
    assert bbox_ciou(pred, target).item() > 0.99


def test_ciou_broadcasts():
    a = torch.rand(3, 1, 4) + torch.tensor([0, 0, 1.0, 1.0])
    b = torch.rand(1, 5, 4) + torch.tensor([0, 0, 1.0, 1.0])
    assert bbox_ciou(a, b).shape == (3, 5)


# ---------------------------------------------------------------- NMS


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [40, 700, 1300])
def test_nms_matches_brute_force(seed: int, n: int):
    boxes, scores = random_boxes(n, seed), distinct_scores(n, seed)
    for thr in (0.3, 0.5, 0.7):
        kept = nms(boxes, scores, thr)
        assert kept.dtype == torch.long
        assert kept.tolist() == ref_nms(boxes, scores, thr)


def test_nms_resolves_suppression_chains_exactly():
    # Each box overlaps its neighbour (IoU 0.82) but not the one after (IoU 0.67 < 0.7): greedy NMS keeps every
    # other box.  A one-shot "Fast NMS" would keep only the first; chains also span block boundaries here.
    n = 2 * NMS_BLOCK + 7
    x = torch.arange(n, dtype=torch.float64)
    boxes = torch.stack((x, torch.zeros(n), x + 10, torch.full((n,), 10.0)), dim=1)
    scores = torch.linspace(1, 0.1, n, dtype=torch.float64)
    kept = nms(boxes, scores, 0.7)
    assert kept.tolist() == list(range(0, n, 2)) == ref_nms(boxes, scores, 0.7)


def test_nms_max_output_is_a_prefix_and_edge_cases():
    boxes, scores = random_boxes(1500, 7, clusters=400), distinct_scores(1500, 7)
    full = nms(boxes, scores, 0.5)
    assert full.numel() > 300
    assert nms(boxes, scores, 0.5, max_output=300).tolist() == full[:300].tolist()
    assert nms(boxes[:0], scores[:0], 0.5).shape == (0,)
    one = nms(boxes[:1], scores[:1], 0.5)
    assert one.tolist() == [0]
    with pytest.raises(ValueError, match="scores must be"):
        nms(boxes, scores[:-1], 0.5)


def test_batched_nms_is_class_aware():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([2, 1, 0]), 0.5).tolist() == [0, 1, 2]


def test_batched_nms_matches_per_class_reference_with_negative_coordinates():
    # Coordinates from -600 to ~+40: a "max + 1" offset would let classes overlap; ours must not.
    boxes, scores = random_boxes(900, 3) - 600.0, distinct_scores(900, 3)
    classes = torch.randint(0, 5, (900,), generator=torch.Generator().manual_seed(3))
    kept = batched_nms(boxes, scores, classes, 0.5)
    assert kept.tolist() == ref_nms(boxes, scores, 0.5, classes)


# ---------------------------------------------------------------- YOLOv5 non_max_suppression


def make_pred(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_non_max_suppression_semantics():
    # (cx, cy, w, h, obj, c0, c1, c2)
    img0 = make_pred(
        [
            [50, 50, 20, 20, 0.9, 0.9, 0.1, 0.1],  # kept: conf 0.81, class 0
            [51, 50, 20, 20, 0.8, 0.9, 0.1, 0.1],  # suppressed by the first (same class)
            [51, 51, 20, 20, 0.9, 0.1, 0.5, 0.1],  # same place, class 1: kept, conf 0.45
            [200, 200, 10, 10, 0.0005, 1.0, 0.0, 0.0],  # obj below conf_thres: dropped
        ]
    )
    img1 = make_pred([[10, 10, 4, 4, 0.0001, 1, 1, 1]] * 4)  # nothing passes
    pred = torch.stack((img0, img1))
    before = pred.clone()
    out = non_max_suppression(pred, conf_thres=0.001, iou_thres=0.6)
    assert torch.equal(pred, before)  # input untouched
    assert len(out) == 2 and out[1].shape == (0, 6) and out[1].dtype == torch.float32
    expected = torch.tensor([[40, 40, 60, 60, 0.81, 0], [41, 41, 61, 61, 0.45, 1]], dtype=torch.float32)
    torch.testing.assert_close(out[0], expected)
    # agnostic: the class-1 box is suppressed by the class-0 box.
    assert non_max_suppression(pred, agnostic=True)[0].shape == (1, 6)
    # multi_label: every class above conf_thres is a candidate, so class 2 (conf 0.09) also survives.
    multi = non_max_suppression(pred, multi_label=True)[0]
    assert multi[:, 4].tolist() == sorted(multi[:, 4].tolist(), reverse=True)
    assert multi[:, 5].tolist() == [0.0, 1.0, 2.0]
    assert multi[2, 4].item() == pytest.approx(0.09)
    # max_det truncates to the most confident rows.
    torch.testing.assert_close(non_max_suppression(pred, max_det=1)[0], expected[:1])


def test_non_max_suppression_matches_reference_on_random_predictions():
    g = torch.Generator().manual_seed(11)
    n, nc = 3000, 4
    pred = torch.rand(2, n, 5 + nc, generator=g, dtype=torch.float64)
    pred[..., :2] *= 320
    pred[..., 2:4] = pred[..., 2:4] * 60 + 4
    out = non_max_suppression(pred, conf_thres=0.05, iou_thres=0.5, max_det=100, max_nms=2000)
    for x, got in zip(pred, out):
        x = x[x[:, 4] > 0.05]
        conf, cls = (x[:, 5:] * x[:, 4:5]).max(1)
        m = conf > 0.05
        boxes, conf, cls = xywh2xyxy(x[m, :4]), conf[m], cls[m]
        top = torch.argsort(conf, descending=True)[:2000]
        keep = ref_nms(boxes[top], conf[top], 0.5, cls[top])[:100]
        expected = torch.cat((boxes[top][keep], conf[top][keep, None], cls[top][keep, None].double()), 1)
        assert got.shape == (100, 6)
        torch.testing.assert_close(got, expected.float())


def test_non_max_suppression_rejects_bad_input():
    with pytest.raises(ValueError, match="5 \\+ nc"):
        non_max_suppression(torch.zeros(1, 10, 5))
    with pytest.raises(ValueError, match="iou_thres"):
        non_max_suppression(torch.zeros(1, 10, 6), iou_thres=1.5)
