"""What every dataset reader shares: the Sample and DatasetSpec types, LabelError, and the checks on images and boxes.

Boxes are float32 ``[N, 4]`` ``x1, y1, x2, y2`` in pixels of the original image (continuous coordinates: the image
spans ``[0, width] x [0, height]``); classes are zero-based int64. ``skip_bad=True`` skips a whole bad image
(a half-labelled image would teach the detector to ignore the objects whose labels were dropped), counts the skips
by kind in ``DatasetSpec.skipped`` and warns once with the totals.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

IMG_EXTS = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}
BOX_TOL_PX = 1.0  # a box may overshoot the image by max(1 px, 1 % of the side); it is then clipped
BOX_TOL_FRAC = 0.01
_T = TypeVar("_T")


@dataclass
class Sample:
    """One image and its boxes: ``boxes`` float32 [N, 4] xyxy pixels of the original image, ``classes`` int64 [N]."""
    image: Path
    boxes: np.ndarray
    classes: np.ndarray
    width: int
    height: int


@dataclass
class DatasetSpec:
    """A loaded dataset: class names, train and val samples, the dataset root, what was skipped (kind -> count)."""
    names: list[str]
    train: list[Sample]
    val: list[Sample]
    root: Path
    fmt: str = "yolo"
    skipped: dict[str, int] = field(default_factory=dict)


class LabelError(ValueError):
    """Bad dataset input. ``kind`` says what (``config`` errors are never skipped by ``skip_bad``)."""

    def __init__(self, file: os.PathLike | str, problem: str, fix: str, where: str | None = None,
                 kind: str = "malformed") -> None:
        self.file, self.where, self.kind = Path(file), where, kind
        loc = f"{file}, {where}" if where else f"{file}"
        super().__init__(f"{loc}: {problem}. {fix}")


SKIP = "or pass --skip-bad (Python: skip_bad=True) to skip this image"
SKIP_FIX = f"Fix it, {SKIP}"


SPLITS = ("train", "val")


class Skips:
    """Runs per-image parsers; with skip_bad, turns their LabelErrors into counts.

    Readers set `split` before each split. A bad image in a split the caller does not `need` (eval needs only
    val) is dropped without stopping and not warned about: it is not this command's business.
    """

    def __init__(self, skip_bad: bool, need: Iterable[str] = SPLITS) -> None:
        self.skip_bad, self.counts, self.examples = skip_bad, {}, []
        self.need, self.split = set(need), None

    def run(self, fn: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return fn(*args)
        except LabelError as e:
            if self.split is not None and self.split not in self.need and e.kind != "config":
                return None
            if not self.skip_bad or e.kind == "config":
                raise
            self.counts[e.kind] = self.counts.get(e.kind, 0) + 1
            if len(self.examples) < 3:
                self.examples.append(str(e))
            return None

    def finish(self, spec: DatasetSpec) -> DatasetSpec:
        spec.skipped = dict(self.counts)
        if self.counts:
            total = sum(self.counts.values())
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
            warnings.warn(f"skipped {total} bad image(s)/label(s) in {spec.root} ({kinds}); first: "
                          + " | ".join(self.examples), stacklevel=3)
        return spec


def keep(items: Iterable[_T | None]) -> list[_T]:
    return [x for x in items if x is not None]


# ----------------------------------------------------------------------------------------------------- checks
def image_size(path: Path, listed_in: str = "") -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    src = f" (listed in {listed_in})" if listed_in else ""
    if not path.is_file():
        raise LabelError(path, f"image not found{src}", f"Restore the image or remove its entry, {SKIP}",
                         kind="missing_image")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise LabelError(path, f"not a readable image{src} ({e.__class__.__name__})",
                         f"Replace or delete the file, {SKIP}", kind="not_an_image") from None


def check_box(box: Iterable[float], width: int, height: int, file: Path, where: str) -> np.ndarray:
    """Validate one xyxy pixel box against its image; clip overshoot within tolerance; raise LabelError otherwise."""
    b = np.asarray(list(box), dtype=np.float64)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise LabelError(file, f"box {b.tolist()} is not 4 finite numbers", SKIP_FIX, where)
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise LabelError(file, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px has zero or negative size", SKIP_FIX,
                         where, kind="empty_box")
    tx, ty = max(BOX_TOL_PX, BOX_TOL_FRAC * width), max(BOX_TOL_PX, BOX_TOL_FRAC * height)
    clipped = np.clip(b, 0, [width, height, width, height])
    if (x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty
            or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]):
        raise LabelError(file, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px lies outside the {width}x{height} image "
                         f"(tolerance {tx:g}x{ty:g} px)", SKIP_FIX, where, kind="box_outside_image")
    return clipped.astype(np.float32)


def make_sample(image: Path, boxes: list[np.ndarray], classes: list[int], w: int, h: int) -> Sample:
    b = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
    return Sample(image, b, np.asarray(classes, dtype=np.int64).reshape(-1), int(w), int(h))


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise LabelError(path, f"cannot read YAML ({e})", "Check the path and the YAML syntax", kind="config")
    if not isinstance(data, dict):
        raise LabelError(path, "is not a YAML mapping", "See docs/data.md for the expected keys", kind="config")
    return data


def root_of(cfg: dict, cfg_path: Path) -> Path:
    p = Path(str(cfg.get("path") or "."))
    return p if p.is_absolute() else (cfg_path.parent / p).resolve()
