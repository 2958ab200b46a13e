"""Dataset entry point and the YOLO reader: `load_dataset(path)` reads YOLO txt (data.yaml), COCO json (HRSID) or
Pascal VOC xml (SSDD), validating every label. See docs/data.md for how each format is pointed at.

Bad labels raise :class:`LabelError` naming the file and line/element; ``skip_bad=True`` skips the whole image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .coco import coco_folder, coco_image_dir, read_coco
from .labels import (
    IMG_EXTS,
    SKIP,
    SKIP_FIX,
    SPLITS,
    DatasetSpec,
    LabelError,
    Sample,
    Skips,
    check_box,
    image_size,
    keep,
    make_sample,
    read_yaml,
    root_of,
)
from .voc import read_voc

__all__ = ["DatasetSpec", "LabelError", "Sample", "detect_format", "load_dataset", "read_coco", "read_voc",
           "read_yolo", "yolo_label_path"]
FORMATS = ("yolo", "coco", "voc")


def _yolo_names(cfg: dict, path: Path) -> list[str]:
    names, nc = cfg.get("names"), cfg.get("nc")
    if isinstance(names, dict):
        idx = {int(k): str(v) for k, v in names.items() if str(k).isdigit()}
        if sorted(idx) != list(range(len(names))):
            raise LabelError(path, f"'names' keys {list(names)} are not 0..{len(names) - 1}",
                             "Number the classes from 0 without gaps", where="names", kind="config")
        names = [idx[i] for i in range(len(idx))]
    elif names is None and nc is not None:
        names = [f"class{i}" for i in range(int(nc))]
    elif not isinstance(names, list):
        raise LabelError(path, "'names' is missing or neither a list nor a mapping", "Write names: [ship]",
                         where="names", kind="config")
    if nc is not None and int(nc) != len(names):
        raise LabelError(path, f"nc is {nc} but names has {len(names)} entries", "Make them agree",
                         where="nc", kind="config")
    return [str(n) for n in names]


def _yolo_images(entry: Any, root: Path, cfg_path: Path, key: str) -> list[Path]:
    out: list[Path] = []
    for e in entry if isinstance(entry, list) else [entry]:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMG_EXTS and f.is_file())
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line)
                    if not q.is_absolute():  # relative to the list's folder, else to the dataset root
                        q = p.parent / q if (p.parent / q).exists() or not (root / q).exists() else root / q
                    out.append(q)
        else:
            raise LabelError(cfg_path, f"{p} is neither a folder nor a .txt list of images",
                             "Fix the path (relative paths are resolved against 'path')", where=key, kind="config")
    return out


def yolo_label_path(image: Path) -> Path:
    """The ultralytics rule: the last ``/images/`` becomes ``/labels/`` and the extension ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = str(image)
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def _unnormalised(coords: list[float], w: int, h: int) -> str:
    """Why coordinates above 1 are there: pixels (whole numbers, several above 8, within the image) or just wrong."""
    pixels = all(float(c).is_integer() for c in coords) and sum(c > 8 for c in coords) >= 2 \
        and max(coords[0], coords[2]) <= w + 1 and max(coords[1], coords[3]) <= h + 1
    return f"these look like pixels of the {w}x{h} image: divide x and w by {w}, y and h by {h}" if pixels \
        else "these lie outside the image"


def _yolo_line_box(parts: list[str], w: int, h: int, label: Path, where: str) -> tuple[float, np.ndarray]:
    try:
        v = [float(x) for x in parts]
    except ValueError:
        raise LabelError(label, f"non-numeric field in {' '.join(parts)!r}", SKIP_FIX, where) from None
    if len(v) == 5:
        cx, cy, bw, bh = v[1:]
        if max(v[1:]) > 1.5:
            raise LabelError(label, f"coordinates {v[1:]} are not normalised: YOLO labels are 0..1 fractions of "
                             f"the image size ({_unnormalised(v[1:], w, h)})", SKIP_FIX, where,
                             kind="box_outside_image")
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
    elif len(v) >= 7 and len(v) % 2 == 1:  # segmentation polygon: use its bounding box
        xs, ys = np.asarray(v[1::2]) * w, np.asarray(v[2::2]) * h
        box = [xs.min(), ys.min(), xs.max(), ys.max()]
    else:
        raise LabelError(label, f"expected 5 fields 'class cx cy w h', got {len(v)}", SKIP_FIX, where)
    return v[0], check_box(box, w, h, label, where)


def _yolo_sample(image: Path, nc: int) -> Sample:
    w, h = image_size(image)
    label = yolo_label_path(image)
    boxes, classes = [], []
    if label.is_file():
        for ln, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            c, box = _yolo_line_box(parts, w, h, label, f"line {ln}")
            if not c.is_integer() or not 0 <= c < nc:
                raise LabelError(label, f"class {c:g} is out of range: data.yaml names {nc} class(es), 0..{nc - 1}",
                                 f"Fix the class or add it to names, {SKIP}", f"line {ln}",
                                 kind="class_out_of_range")
            boxes.append(box)
            classes.append(int(c))
    return make_sample(image, boxes, classes, w, h)


def read_yolo(data_yaml: os.PathLike | str, skip_bad: bool = False, need: Iterable[str] = SPLITS) -> DatasetSpec:
    """Read an ultralytics-style dataset from its data.yaml; splits not in `need` are not read at all."""
    path = Path(data_yaml).resolve()
    cfg = read_yaml(path)
    root, names, skips = root_of(cfg, path), _yolo_names(cfg, path), Skips(skip_bad, need)
    for key in ("train", "val"):
        if cfg.get(key) is None:
            raise LabelError(path, f"has no '{key}' entry", f"Add {key}: images/{key} (a folder, a list of folders "
                             "or a .txt list of images)", kind="config")
    imgs = {key: _yolo_images(cfg[key], root, path, key) for key in ("train", "val")}
    splits = {key: keep(skips.run(_yolo_sample, im, len(names)) for im in v) if key in skips.need else []
              for key, v in imgs.items()}
    return skips.finish(DatasetSpec(names, splits["train"], splits["val"], root, "yolo"))


def _from_spec_yaml(path: Path, cfg: dict, skip_bad: bool, need: Iterable[str]) -> DatasetSpec:
    fmt, root = cfg["format"], root_of(cfg, path)
    if fmt == "voc":
        return read_voc(root, str(cfg.get("train", "train")), str(cfg.get("val", "val")), cfg.get("names"),
                        skip_bad, need)
    parts = {}
    for key in ("train", "val"):
        e = cfg.get(key) or {}
        if not isinstance(e, dict) or ("annotations" in e) != ("images" in e):
            raise LabelError(path, f"'{key}' must be {{annotations: x.json, images: folder}}", "See docs/data.md",
                             where=key, kind="config")
        parts[key] = {k: (root / str(v)) for k, v in e.items()}
    t, v = parts["train"], parts["val"]
    if not t and not v:
        raise LabelError(path, "has neither train nor val", "See docs/data.md", kind="config")
    return read_coco(t.get("annotations"), v.get("annotations"), t.get("images") or v["images"],
                     v.get("images"), skip_bad, need)


def detect_format(path: os.PathLike | str) -> str:
    """'yolo', 'coco' or 'voc': what load_dataset(path) reads there (a .yaml's ``format`` key, default yolo)."""
    p = Path(path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        fmt = read_yaml(p).get("format", "yolo")
        if fmt not in FORMATS:
            raise LabelError(p, f"format {fmt!r} is not one of {FORMATS}", "Fix the format key", kind="config")
        return fmt
    if p.suffix == ".json":
        return "coco"
    if p.is_dir():
        for fmt, probe in (("voc", "Annotations/*.xml"), ("coco", "annotations/*.json"), ("yolo", "data.yaml")):
            if any(p.glob(probe)):
                return fmt
    raise LabelError(p, "not a dataset I recognise (looked for a .yaml, a .json, Annotations/*.xml, "
                     "annotations/*.json, data.yaml)", "Point at one of those (see docs/data.md)", kind="config")


def load_dataset(path: os.PathLike | str, fmt: str = "auto", skip_bad: bool = False,
                 need: Iterable[str] = SPLITS) -> DatasetSpec:
    """Load a dataset from a data.yaml (YOLO, or a ``format: coco|voc`` spec), a COCO json (its images become
    the val split), a COCO folder (annotations/*.json) or a VOC folder (Annotations/). See docs/data.md.

    ``fmt`` (auto, yolo, coco, voc) overrides detection for a folder; for a file it must agree with it.
    ``need``: the splits the caller uses (``("val",)`` for eval); a bad label elsewhere never stops it.
    """
    p = Path(path)
    if not p.exists():
        raise LabelError(p, "does not exist", "Check the dataset path", kind="config")
    if fmt not in ("auto",) + FORMATS:
        raise LabelError(p, f"unknown format {fmt!r}", f"Use auto or one of {', '.join(FORMATS)}", kind="config")
    is_yaml = p.suffix in (".yaml", ".yml")
    found = detect_format(p) if fmt == "auto" or p.is_file() else fmt  # a file's own format decides
    if fmt not in ("auto", found):
        raise LabelError(p, f"describes a {found} dataset, not {fmt}", "Pass the matching format or auto",
                         kind="config")
    p = p.resolve()
    if is_yaml:
        return read_yolo(p, skip_bad, need) if found == "yolo" else _from_spec_yaml(p, read_yaml(p), skip_bad, need)
    if found == "yolo":
        return read_yolo(p / "data.yaml", skip_bad, need)
    if found == "voc":
        return read_voc(p, skip_bad=skip_bad, need=need)
    if p.is_file():  # a single COCO json: its images are the val split
        root = p.parent.parent if p.parent.name == "annotations" else p.parent
        return read_coco(None, p, coco_image_dir(root, p), skip_bad=skip_bad, need=need)
    return coco_folder(p, skip_bad, need)
