"""DetectionDataset: letterbox and its inverse, augmentation geometry, flips, cache, collate and the loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeprune.data.dataset import AugmentConfig, DetectionDataset, build_loader, collate, unletterbox
from edgeprune.data.formats import LabelError, Sample

S = 64


def _scene(path: Path, w: int, h: int, boxes: list[list[float]], mode: str = "L") -> Sample:
    """Black image with a white filled rectangle at each integer box."""
    a = np.zeros((h, w), np.uint8)
    for x1, y1, x2, y2 in boxes:
        a[int(y1):int(y2), int(x1):int(x2)] = 255
    im = Image.fromarray(a)
    (im.convert("RGB") if mode == "RGB" else im).save(path)
    return Sample(path, np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(boxes), np.int64), w, h)


def _xyxy(labels: torch.Tensor) -> np.ndarray:
    c, wh = labels[:, 1:3].numpy() * S, labels[:, 3:5].numpy() * S
    return np.concatenate([c - wh / 2, c + wh / 2], 1)


@pytest.mark.parametrize("w,h", [(100, 60), (37, 90)])
def test_letterbox_unletterbox_round_trip(tmp_path: Path, w: int, h: int) -> None:
    s = _scene(tmp_path / "a.png", w, h, [[10, 12, 30, 40], [0, 0, w, h]])
    image, labels, meta = DetectionDataset([s], S)[0]
    assert image.shape == (3, S, S) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert meta["orig_hw"] == (h, w) and meta["path"] == str(s.image) and meta["flip"] == (False, False)
    back = unletterbox(torch.from_numpy(_xyxy(labels)), meta)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), s.boxes, atol=1.0)
    det = np.concatenate([_xyxy(labels), [[0.9, 0], [0.8, 0]]], 1)  # detections [n, 6]: extra columns kept
    np.testing.assert_allclose(unletterbox(det, meta)[:, :4], s.boxes, atol=1.0)
    assert unletterbox(det, meta)[0, 4] == pytest.approx(0.9)
    # gray padding where the image is not, and the image centred
    px, py = meta["pad"]
    assert (px == 0) != (py == 0) and abs((S - 2 * px) - w * meta["ratio"][0]) < 1
    pad = image[:, :, :px] if px else image[:, :py, :]
    assert torch.allclose(pad, torch.tensor(114 / 255))


def test_grayscale_and_rgb_give_equal_channels(tmp_path: Path) -> None:
    g = _scene(tmp_path / "g.png", 50, 50, [[5, 5, 20, 20]])
    c = _scene(tmp_path / "c.png", 50, 50, [[5, 5, 20, 20]], mode="RGB")
    ig, ic = DetectionDataset([g, c], S)[0][0], DetectionDataset([g, c], S)[1][0]
    assert torch.equal(ig[0], ig[2]) and torch.equal(ig, ic)


def test_16bit_image_is_stretched(tmp_path: Path) -> None:
    a = np.zeros((20, 20), np.uint16)
    a[5:10, 5:10] = 4000
    Image.fromarray(a).save(tmp_path / "a.png")
    s = Sample(tmp_path / "a.png", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 20, 20)
    image = DetectionDataset([s], 20)[0][0]
    assert image.max() == 1.0 and image.min() == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_augmented_boxes_stay_on_the_object(tmp_path: Path, seed: int) -> None:
    s = _scene(tmp_path / "a.png", 120, 80, [[20, 10, 50, 40], [70, 40, 110, 70]])
    cfg = AugmentConfig(scale=0.5, translate=0.3)
    image, labels, meta = DetectionDataset([s], S, augment=True, config=cfg)[(0, seed)]
    white = (image[0] > 0.6).numpy()
    boxes = _xyxy(labels)
    covered = np.zeros_like(white)
    for x1, y1, x2, y2 in boxes:
        assert x2 - x1 >= 2 and y2 - y1 >= 2
        bx = white[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
        assert bx.mean() > 0.7  # the box sits on white pixels
        covered[max(int(y1) - 1, 0):int(y2) + 2, max(int(x1) - 1, 0):int(x2) + 2] = True
    assert not (white & ~covered).any()  # and every clearly white pixel is inside a box (1 px for blur)
    # unletterbox inverts the whole augmentation (zoom, shift, flips) for boxes that were not cropped
    whole = (boxes > 0.5).all(1) & (boxes < S - 0.5).all(1)
    for b in unletterbox(boxes[whole], meta, clip=False):
        assert np.abs(s.boxes - b).max(1).min() < 1.5


def test_flips_mirror_image_and_boxes(tmp_path: Path) -> None:
    s = _scene(tmp_path / "a.png", 64, 64, [[4, 8, 20, 30]])
    plain = DetectionDataset([s], S)[0]
    for lr, ud in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        cfg = AugmentConfig(fliplr=lr, flipud=ud, scale=0.0, translate=0.0)
        image, labels, meta = DetectionDataset([s], S, augment=True, config=cfg)[(0, 3)]
        dims = [d for d, f in ((2, lr), (1, ud)) if f]
        assert torch.equal(image, plain[0].flip(dims)) and meta["flip"] == (bool(lr), bool(ud))
        exp = plain[1].clone()
        if lr:
            exp[:, 1] = 1 - exp[:, 1]
        if ud:
            exp[:, 2] = 1 - exp[:, 2]
        torch.testing.assert_close(labels, exp)
        np.testing.assert_allclose(unletterbox(_xyxy(labels), meta), s.boxes, atol=1e-4)


def test_boxes_cropped_away_are_dropped(tmp_path: Path) -> None:
    s = _scene(tmp_path / "a.png", 64, 64, [[0, 0, 6, 6], [30, 30, 40, 40]])
    cfg = AugmentConfig(fliplr=0, flipud=0, scale=0.0, translate=0.5)
    counts = set()
    for seed in range(20):
        _, labels, meta = DetectionDataset([s], S, augment=True, config=cfg)[(0, seed)]
        counts.add(len(labels))
        b = _xyxy(labels)
        assert ((b[:, 2:] - b[:, :2]) >= 2 - 1e-4).all() and (b >= -1e-4).all() and (b <= S + 1e-4).all()
    assert 0 in counts or 1 in counts  # some shift cropped a box away


def test_augmentation_is_deterministic_per_key(tmp_path: Path) -> None:
    s = _scene(tmp_path / "a.png", 80, 50, [[10, 10, 30, 30]])
    a = DetectionDataset([s], S, augment=True)
    b = DetectionDataset([s], S, augment=True, config=AugmentConfig(cache=False))
    for seed in (1, 2):
        x, y = a[(0, seed)], b[(0, seed)]
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    assert not torch.equal(a[(0, 1)][0], a[(0, 2)][0])
    assert len(a._cache) == 1 and len(b._cache) == 0


def test_collate_and_loader(tmp_path: Path) -> None:
    samples = [_scene(tmp_path / f"{i}.png", 40 + 10 * i, 40, [[5, 5, 15, 15]] * i) for i in range(4)]
    images, targets, metas = collate([DetectionDataset(samples, S)[i] for i in range(3)])
    assert images.shape == (3, 3, S, S) and targets.shape == (3, 6) and len(metas) == 3
    assert targets[:, 0].tolist() == [1, 2, 2]
    loader = build_loader(samples, S, batch_size=2, augment=True, shuffle=True, seed=5)
    assert len(loader) == 2
    first = [(t.clone(), [m["index"] for m in ms]) for _, t, ms in build_loader(samples, S, 2, True, True, seed=5)]
    again = [(t, [m["index"] for m in ms]) for _, t, ms in build_loader(samples, S, 2, True, True, seed=5)]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, again))
    epochs = [[m["index"] for _, _, ms in loader for m in ms] for _ in range(3)]
    assert all(sorted(e) == [0, 1, 2, 3] for e in epochs) and len({tuple(e) for e in epochs}) > 1


def test_undecodable_image_raises_label_error(tmp_path: Path) -> None:
    s = _scene(tmp_path / "a.jpg", 64, 64, [[4, 4, 20, 20]])
    data = s.image.read_bytes()
    s.image.write_bytes(data[: len(data) // 2])
    with pytest.raises(LabelError, match="a.jpg: cannot decode"):
        DetectionDataset([s], S)[0]
