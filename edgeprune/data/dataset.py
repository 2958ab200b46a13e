"""Training/eval dataset: letterbox, RAM cache, SAR-safe augmentation, collate and the inverse letterbox.

An item is ``(image, labels, meta)``: ``image`` float32 ``[3, S, S]`` in ``[0, 1]`` (grayscale replicated to three
channels), ``labels`` float32 ``[n, 5]`` = ``class, cx, cy, w, h`` normalised to ``S``, and ``meta`` a dict with
``path``, ``index``, ``orig_hw`` = (h, w), ``img_size`` = S, and the map from original pixels to network pixels:
``x_net = x * ratio[0] + pad[0]`` (y likewise), then ``S - x_net`` if ``flip[0]`` (``flip[1]`` flips y).
The map includes the augmentation, so :func:`unletterbox` inverts augmented items too.

Randomness comes from the key: ``dataset[(index, seed)]`` is a pure function of its arguments (that is what the
loader of :func:`build_loader` feeds, so results do not depend on the number of workers); ``dataset[index]`` draws
the seed from the dataset's own generator, seeded by ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from deploy.calibrator import to_8bit
from edgeprune.data.labels import LabelError, Sample

PAD_VALUE = 114


@dataclass
class AugmentConfig:
    """Augmentation and caching. No colour jitter: SAR amplitude is one channel with physical meaning."""

    fliplr: float = 0.5  # probability of a left-right flip
    flipud: float = 0.5  # up-down flip: SAR scenes have no "up", so this is as safe as fliplr
    scale: float = 0.5  # zoom factor drawn uniformly in [1 - scale, 1 + scale]
    translate: float = 0.1  # shift drawn uniformly in [-translate, translate] * S along each axis
    cache: bool = True  # keep decoded, resized uint8 images in RAM
    cache_mb: int | None = None  # RAM budget of that cache; None: half the memory available at start
    min_visible: float = 0.3  # drop a box that keeps less than this fraction of its area after the crop
    min_side: float = 2.0  # drop a box narrower or lower than this many network pixels after augmentation


def _available_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


def load_resized(sample: Sample, size: int) -> tuple[np.ndarray, float, float]:
    """Decode ``sample.image`` and resize it (bilinear, aspect kept) so that its long side is ``size``.

    Returns ``(uint8 [h, w, C], rx, ry)`` with C = 1 for grayscale (also RGB files whose channels are equal) and
    rx, ry the exact scale factors new/old per axis.
    """
    w, h = sample.width, sample.height
    r = size / max(w, h)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    try:
        with Image.open(sample.image) as im:
            if im.size != (w, h):
                raise LabelError(sample.image, f"is {im.size[0]}x{im.size[1]} but was {w}x{h} when the dataset "
                                 "was loaded", "Reload the dataset", kind="size_mismatch")
            if im.format == "JPEG":
                im.draft(None, (nw, nh))  # decode at a reduced DCT scale when the image is much larger
            im = to_8bit(im)
            if im.size != (nw, nh):
                im = im.resize((nw, nh), Image.BILINEAR)
            a = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        if isinstance(e, LabelError):
            raise
        raise LabelError(sample.image, f"cannot decode the image ({e})", "Replace or delete the file",
                         kind="not_an_image") from None
    if a.ndim == 3 and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        a = a[..., :1]
    return np.ascontiguousarray(a if a.ndim == 3 else a[..., None]), nw / w, nh / h


def _paste(canvas: np.ndarray, img: np.ndarray, x0: int, y0: int) -> None:
    """Copy ``img`` onto ``canvas`` with its top-left corner at (x0, y0), cropping what falls outside."""
    S_h, S_w = canvas.shape[:2]
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, S_w), min(y0 + h, S_h)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = img[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    im = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).resize((w, h), Image.BILINEAR)
    out = np.asarray(im)
    return out if out.ndim == 3 else out[..., None]


class DetectionDataset(Dataset):
    """Letterboxed detection samples; see the module docstring for items, meta and randomness."""

    def __init__(self, samples: Sequence[Sample], img_size: int = 640, augment: bool = False,
                 config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.samples, self.img_size, self.augment = list(samples), int(img_size), augment
        self.config = config or AugmentConfig()
        self.seed, self._rng = seed, np.random.default_rng(seed)
        self._cache: dict[int, tuple[np.ndarray, float, float]] = {}
        budget = self.config.cache_mb if self.config.cache_mb is not None else _available_mb() // 2
        self._cache_left = budget * 2**20 if self.config.cache else 0

    def __len__(self) -> int:
        return len(self.samples)

    def _resized(self, index: int) -> tuple[np.ndarray, float, float]:
        hit = self._cache.get(index)
        if hit is None:
            hit = load_resized(self.samples[index], self.img_size)
            if hit[0].nbytes <= self._cache_left:  # fill while the budget lasts, then decode on demand
                self._cache[index], self._cache_left = hit, self._cache_left - hit[0].nbytes
        return hit

    def _geometry(self, img: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, float, float,
                                                                                  int, int, bool, bool]:
        """Zoom the resized image and place it: returns (image, fx, fy, x0, y0, flip_lr, flip_ud)."""
        S, (h, w) = self.img_size, img.shape[:2]
        if rng is None:
            return img, 1.0, 1.0, int(round((S - w) / 2 - 0.1)), int(round((S - h) / 2 - 0.1)), False, False
        c = self.config
        f = rng.uniform(1 - c.scale, 1 + c.scale)
        mw, mh = max(1, round(w * f)), max(1, round(h * f))
        if (mw, mh) != (w, h):
            img = _resize(img, mw, mh)
        tx, ty = rng.uniform(-c.translate, c.translate, 2) * S
        x0, y0 = int(round((S - mw) / 2 + tx)), int(round((S - mh) / 2 + ty))
        lr, ud = rng.random() < c.fliplr, rng.random() < c.flipud
        return img, mw / w, mh / h, x0, y0, bool(lr), bool(ud)

    def _boxes(self, s: Sample, ratio: tuple[float, float], pad: tuple[int, int], flip: tuple[bool, bool],
               ) -> torch.Tensor:
        """Boxes in network pixels -> labels [n, 5] (class, cx, cy, w, h normalised to S)."""
        S = self.img_size
        b = s.boxes.astype(np.float64) * np.tile(ratio, 2) + np.tile(pad, 2)
        if flip[0]:
            b[:, [0, 2]] = S - b[:, [2, 0]]
        if flip[1]:
            b[:, [1, 3]] = S - b[:, [3, 1]]
        clipped = b.clip(0, S)
        keep = np.ones(len(b), dtype=bool)
        if self.augment:
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
            c = self.config
            keep = (cw * ch >= c.min_visible * area) & (cw >= c.min_side) & (ch >= c.min_side)
        b = clipped[keep]
        out = np.empty((len(b), 5), dtype=np.float32)
        out[:, 0] = s.classes[keep]
        out[:, 1:3] = (b[:, :2] + b[:, 2:]) / 2 / S
        out[:, 3:5] = (b[:, 2:] - b[:, :2]) / S
        return torch.from_numpy(out)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        index, seed = key if isinstance(key, tuple) else (int(key), None)
        if self.augment and seed is None:
            seed = int(self._rng.integers(2**63 - 1))
        s, S = self.samples[index], self.img_size
        img, rx, ry = self._resized(index)
        rng = np.random.default_rng(seed) if self.augment else None
        img, fx, fy, x0, y0, lr, ud = self._geometry(img, rng)
        canvas = np.full((S, S, img.shape[2]), PAD_VALUE, dtype=np.uint8)
        _paste(canvas, img, x0, y0)
        if lr:
            canvas = canvas[:, ::-1]
        if ud:
            canvas = canvas[::-1]
        image = torch.from_numpy(np.ascontiguousarray(canvas)).permute(2, 0, 1).float().div_(255)
        image = image.expand(3, S, S).contiguous() if image.shape[0] == 1 else image.contiguous()
        ratio, pad, flip = (rx * fx, ry * fy), (x0, y0), (lr, ud)
        meta = {"path": str(s.image), "index": index, "orig_hw": (s.height, s.width), "img_size": S,
                "ratio": ratio, "pad": pad, "flip": flip}
        return image, self._boxes(s, ratio, pad, flip), meta


def unletterbox(boxes: torch.Tensor | np.ndarray, meta: dict[str, Any], clip: bool = True,
                ) -> torch.Tensor | np.ndarray:
    """Map boxes ``[..., 4+]`` (xyxy in network pixels, e.g. detections ``[n, 6]``) back to original pixels.

    Only the first four columns change; the type (tensor or array) is kept; ``clip`` clips to the image.
    """
    if isinstance(boxes, torch.Tensor):
        out = boxes.clone() if boxes.is_floating_point() else boxes.float()
    else:
        a = np.asarray(boxes)
        out = np.array(a, dtype=a.dtype if a.dtype.kind == "f" else np.float32)
    S, (rx, ry), (px, py) = meta["img_size"], meta["ratio"], meta["pad"]
    lr, ud = meta.get("flip", (False, False))
    h, w = meta["orig_hw"]
    xs, ys = out[..., [0, 2]], out[..., [1, 3]]
    if lr:
        xs = S - xs[..., [1, 0]]
    if ud:
        ys = S - ys[..., [1, 0]]
    xs, ys = (xs - px) / rx, (ys - py) / ry
    if clip:
        xs, ys = xs.clip(0, w), ys.clip(0, h)
    out[..., [0, 2]], out[..., [1, 3]] = xs, ys
    return out


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor, dict]]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  list[dict]]:
    """Stack a batch: images [B, 3, S, S], targets [M, 6] = (image_index, class, cx, cy, w, h), metas."""
    images, labels, metas = zip(*batch)
    targets = [torch.cat([torch.full((len(lb), 1), float(i)), lb], 1) for i, lb in enumerate(labels)]
    return torch.stack(images), torch.cat(targets) if targets else torch.zeros((0, 6)), list(metas)


class SeededSampler(Sampler):
    """Yields ``(index, seed)`` keys: a new order (when shuffling) and new augmentation seeds every epoch,
    reproducible from ``seed`` and ``epoch`` whatever the number of workers. Set ``epoch`` to resume."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**63 - 1, self.n)
        return iter([(int(i), int(seeds[i])) for i in order])


def build_loader(samples: Sequence[Sample], img_size: int, batch_size: int, augment: bool, shuffle: bool,
                 seed: int = 0, workers: int = 0, config: AugmentConfig | None = None) -> DataLoader:
    """A DataLoader of :func:`collate` batches. With workers > 0 the workers persist so that their caches do."""
    ds = DetectionDataset(samples, img_size, augment, config, seed)
    return DataLoader(ds, batch_size=batch_size, sampler=SeededSampler(len(ds), shuffle, seed),
                      num_workers=workers, collate_fn=collate, persistent_workers=workers > 0,
                      drop_last=False)
