"""Pascal VOC xml, as SSDD ships it (Annotations/*.xml, JPEGImages/, ImageSets/Main/{train,test}.txt)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

import numpy as np

from .labels import SKIP_FIX, SPLITS, DatasetSpec, LabelError, Sample, Skips, check_box, image_size, keep, make_sample


def _voc_ids(root: Path, split: str, fallbacks: tuple[str, ...]) -> list[str]:
    if split.endswith(".txt"):
        cands = [Path(split) if Path(split).is_absolute() else root / split]
    else:
        cands = [root / "ImageSets" / "Main" / f"{s}.txt" for s in (split, *fallbacks)]
    for c in cands:
        if c.is_file():
            return [ln.split()[0] for ln in c.read_text(encoding="utf-8").splitlines() if ln.strip()]
    raise LabelError(cands[0], "split list not found", "Add ImageSets/Main/train.txt and test.txt (one image id "
                     "per line) or name the lists in a format: voc YAML (docs/data.md)", kind="config")


def _voc_text(el: ET.Element, tag: str, xml: Path, where: str) -> float:
    try:
        return float(el.findtext(tag))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(xml, f"<{tag}> is missing or not a number", SKIP_FIX, where) from None


def _int_or_0(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0  # unreadable <size>: the image header decides


def _voc_sample(xml: Path, img_dir: Path, names: list[str] | None) -> tuple[Sample, list[str]]:
    """Parse one VOC xml. VOC pixel indices are 1-based and inclusive: (xmin, ymin, xmax, ymax) covers the
    continuous box [xmin - 1, ymin - 1, xmax, ymax] in 0-based pixel coordinates (width = xmax - xmin + 1)."""
    if not xml.is_file():
        raise LabelError(xml, "annotation file not found", SKIP_FIX, kind="missing_label")
    try:
        ann = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise LabelError(xml, f"not valid XML ({e})", SKIP_FIX) from None
    fname = (ann.findtext("filename") or "").strip()
    image = img_dir / (fname or xml.stem + ".jpg")
    if not image.is_file():  # filename missing or stale: try the annotation's id with the usual extensions
        alt = (img_dir / (xml.stem + e) for e in (".jpg", ".png", ".jpeg", ".tif", ".tiff", ".bmp"))
        image = next((p for p in alt if p.is_file()), image)
    w, h = image_size(image, xml.name)
    size = ann.find("size")
    xw, xh = (_int_or_0(size.findtext(t) if size is not None else None) for t in ("width", "height"))
    if xw and xh and (xw, xh) != (w, h):
        raise LabelError(xml, f"<size> says {xw}x{xh} but {image.name} is {w}x{h}", SKIP_FIX, "<size>",
                         kind="size_mismatch")
    boxes, obj_names = [], []
    for i, obj in enumerate(ann.findall("object"), 1):
        where, bb = f"<object> #{i}", obj.find("bndbox")
        if bb is None:
            raise LabelError(xml, "object has no <bndbox> (rotated <robndbox> boxes are not supported)",
                             SKIP_FIX, where)
        xmin, ymin, xmax, ymax = (_voc_text(bb, t, xml, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        name = (obj.findtext("name") or "").strip()
        if names is not None and name not in names:
            raise LabelError(xml, f"class {name!r} is not in names {names}", SKIP_FIX, where,
                             kind="class_out_of_range")
        boxes.append(check_box([xmin - 1, ymin - 1, xmax, ymax], w, h, xml, where))
        obj_names.append(name)
    return make_sample(image, boxes, [], w, h), obj_names


def read_voc(root: os.PathLike | str, train: str = "train", val: str = "val",
             names: list[str] | None = None, skip_bad: bool = False, need: Iterable[str] = SPLITS) -> DatasetSpec:
    """Read a VOC/SSDD folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt).

    ``train``/``val`` are split names (train falls back to trainval, val to test) or paths of .txt id lists.
    Without ``names`` the classes are the sorted set of object names found.
    """
    root = Path(root).resolve()
    img_dir = next((d for d in (root / "JPEGImages", root / "images") if d.is_dir()), root / "JPEGImages")
    skips, raw = Skips(skip_bad, need), {}
    for key, split, fb in (("train", train, ("trainval",)), ("val", val, ("test",))):
        skips.split = key
        ids = _voc_ids(root, split, fb)
        raw[key] = keep(skips.run(_voc_sample, root / "Annotations" / f"{i}.xml", img_dir, names) for i in ids)
    if names is None:
        names = sorted({n for split in raw.values() for _, ns in split for n in ns})
    index = {n: i for i, n in enumerate(names)}
    for s, ns in (pair for split in raw.values() for pair in split):
        s.classes = np.asarray([index[n] for n in ns], dtype=np.int64)
    spec = DatasetSpec(list(names), [s for s, _ in raw["train"]], [s for s, _ in raw["val"]], root, "voc")
    return skips.finish(spec)
