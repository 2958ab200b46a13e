"""Dataset readers: YOLO txt (data.yaml), COCO json (HRSID) and Pascal VOC xml (SSDD), with label validation.

Every reader returns a :class:`DatasetSpec` whose samples hold boxes as float32 ``[N, 4]`` ``x1, y1, x2, y2`` in
pixels of the original image (continuous coordinates: the image spans ``[0, width] x [0, height]``) and zero-based
int64 classes. See docs/data.md for how each format is pointed at and for the VOC 1-based coordinate rule.

Bad labels raise :class:`LabelError` naming the file and line/element; ``skip_bad=True`` skips the whole image
instead (a half-labelled image would teach the detector to ignore the objects whose labels were dropped), counts
the skips by kind in ``DatasetSpec.skipped`` and warns once with the totals.
"""
from __future__ import annotations

import json
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

IMG_EXTS = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}
BOX_TOL_PX = 1.0  # a box may overshoot the image by max(1 px, 1 % of the side); it is then clipped
BOX_TOL_FRAC = 0.01
FORMATS = ("yolo", "coco", "voc")
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


_SKIP = "or pass skip_bad=True (CLI: --skip-bad) to skip this image"
_SKIP_FIX = f"Fix it, {_SKIP}"


class _Skips:
    """Runs per-image parsers; with skip_bad, turns their LabelErrors into counts."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad, self.counts, self.examples = skip_bad, {}, []

    def run(self, fn: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return fn(*args)
        except LabelError as e:
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


def _keep(items: Iterable[_T | None]) -> list[_T]:
    return [x for x in items if x is not None]


# ----------------------------------------------------------------------------------------------------- checks
def image_size(path: Path, listed_in: str = "") -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    src = f" (listed in {listed_in})" if listed_in else ""
    if not path.is_file():
        raise LabelError(path, f"image not found{src}", f"Restore the image or remove its entry, {_SKIP}",
                         kind="missing_image")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise LabelError(path, f"not a readable image{src} ({e.__class__.__name__})",
                         f"Replace or delete the file, {_SKIP}", kind="not_an_image") from None


def check_box(box: Iterable[float], width: int, height: int, file: Path, where: str) -> np.ndarray:
    """Validate one xyxy pixel box against its image; clip overshoot within tolerance; raise LabelError otherwise."""
    b = np.asarray(list(box), dtype=np.float64)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise LabelError(file, f"box {b.tolist()} is not 4 finite numbers", _SKIP_FIX, where)
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise LabelError(file, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px has zero or negative size", _SKIP_FIX,
                         where, kind="empty_box")
    tx, ty = max(BOX_TOL_PX, BOX_TOL_FRAC * width), max(BOX_TOL_PX, BOX_TOL_FRAC * height)
    clipped = np.clip(b, 0, [width, height, width, height])
    if (x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty
            or clipped[2] <= clipped[0] or clipped[3] <= clipped[1]):
        raise LabelError(file, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px lies outside the {width}x{height} image "
                         f"(tolerance {tx:g}x{ty:g} px)", _SKIP_FIX, where, kind="box_outside_image")
    return clipped.astype(np.float32)


def _sample(image: Path, boxes: list[np.ndarray], classes: list[int], w: int, h: int) -> Sample:
    b = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
    return Sample(image, b, np.asarray(classes, dtype=np.int64).reshape(-1), int(w), int(h))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise LabelError(path, f"cannot read YAML ({e})", "Check the path and the YAML syntax", kind="config")
    if not isinstance(data, dict):
        raise LabelError(path, "is not a YAML mapping", "See docs/data.md for the expected keys", kind="config")
    return data


def _root_of(cfg: dict, cfg_path: Path) -> Path:
    p = Path(str(cfg.get("path") or "."))
    return p if p.is_absolute() else (cfg_path.parent / p).resolve()


# ------------------------------------------------------------------------------------------------------- YOLO
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


def _yolo_line_box(parts: list[str], w: int, h: int, label: Path, where: str) -> tuple[float, np.ndarray]:
    try:
        v = [float(x) for x in parts]
    except ValueError:
        raise LabelError(label, f"non-numeric field in {' '.join(parts)!r}", _SKIP_FIX, where) from None
    if len(v) == 5:
        cx, cy, bw, bh = v[1:]
        if max(v[1:]) > 1.5:
            raise LabelError(label, f"coordinates {v[1:]} are not normalised: YOLO labels are 0..1 fractions of "
                             "the image size (these look like pixels)", _SKIP_FIX, where, kind="box_outside_image")
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
    elif len(v) >= 7 and len(v) % 2 == 1:  # segmentation polygon: use its bounding box
        xs, ys = np.asarray(v[1::2]) * w, np.asarray(v[2::2]) * h
        box = [xs.min(), ys.min(), xs.max(), ys.max()]
    else:
        raise LabelError(label, f"expected 5 fields 'class cx cy w h', got {len(v)}", _SKIP_FIX, where)
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
                                 f"Fix the class or add it to names, {_SKIP}", f"line {ln}",
                                 kind="class_out_of_range")
            boxes.append(box)
            classes.append(int(c))
    return _sample(image, boxes, classes, w, h)


def read_yolo(data_yaml: os.PathLike | str, skip_bad: bool = False) -> DatasetSpec:
    """Read an ultralytics-style dataset from its data.yaml."""
    path = Path(data_yaml).resolve()
    cfg = _read_yaml(path)
    root, names, skips = _root_of(cfg, path), _yolo_names(cfg, path), _Skips(skip_bad)
    for key in ("train", "val"):
        if cfg.get(key) is None:
            raise LabelError(path, f"has no '{key}' entry", f"Add {key}: images/{key} (a folder, a list of folders "
                             "or a .txt list of images)", kind="config")
    imgs = {key: _yolo_images(cfg[key], root, path, key) for key in ("train", "val")}
    splits = {key: _keep(skips.run(_yolo_sample, im, len(names)) for im in v) for key, v in imgs.items()}
    return skips.finish(DatasetSpec(names, splits["train"], splits["val"], root, "yolo"))


# ------------------------------------------------------------------------------------------------------- COCO
def _coco_load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LabelError(path, f"cannot read COCO json ({e})", "Check the path and the file", kind="config")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise LabelError(path, f"has no '{key}' list", "A COCO detection json needs images, annotations and "
                             "categories", where=key, kind="config")
    return data


def _coco_sample(im: dict, k: int, anns: list[tuple[int, dict]], cat_index: dict, img_dir: Path,
                 path: Path) -> Sample:
    where = f"images[{k}]"
    if "file_name" not in im:
        raise LabelError(path, "image entry has no file_name", _SKIP_FIX, where)
    image = Path(str(im["file_name"]))
    image = image if image.is_absolute() else img_dir / image
    w, h = image_size(image, f"{path.name} {where}")
    if (im.get("width"), im.get("height")) not in ((None, None), (w, h)):
        raise LabelError(path, f"says {im.get('width')}x{im.get('height')} but {image.name} is {w}x{h}",
                         _SKIP_FIX, where, kind="size_mismatch")
    boxes, classes = [], []
    for j, a in anns:
        awhere = f"annotations[{j}] (id {a.get('id')})"
        if a.get("iscrowd", 0):
            continue  # crowd regions are not objects to detect
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(x, (int, float)) for x in bb)):
            raise LabelError(path, f"bbox {bb!r} is not [x, y, w, h]", _SKIP_FIX, awhere)
        if a.get("category_id") not in cat_index:
            raise LabelError(path, f"category_id {a.get('category_id')!r} is not in categories", _SKIP_FIX,
                             awhere, kind="class_out_of_range")
        x, y, bw, bh = (float(v) for v in bb)
        boxes.append(check_box([x, y, x + bw, y + bh], w, h, path, awhere))
        classes.append(cat_index[a["category_id"]])
    return _sample(image, boxes, classes, w, h)


def _coco_split(path: Path, img_dir: Path, skips: _Skips) -> tuple[list[str], list[Sample]]:
    data = _coco_load(path)
    for k, c in enumerate(data["categories"]):
        if not (isinstance(c, dict) and "id" in c and "name" in c):
            raise LabelError(path, "category without id or name", "Fix the categories list",
                             f"categories[{k}]", kind="config")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[Any, list[tuple[int, dict]]] = {}
    for j, a in enumerate(data["annotations"]):
        by_image.setdefault(a.get("image_id") if isinstance(a, dict) else None, []).append((j, a))
    ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    for orphan in set(by_image) - ids:  # annotations of no listed image: a broken json, reported once per image id
        skips.run(_raise, LabelError(path, f"annotation for image_id {orphan!r}, which is not in images",
                                     _SKIP_FIX, f"annotations[{by_image[orphan][0][0]}]"))
    samples = _keep(skips.run(_coco_sample, im, k, by_image.get(im.get("id"), []), cat_index, img_dir, path)
                    for k, im in enumerate(data["images"]) if isinstance(im, dict))
    return [str(c["name"]) for c in cats], samples


def _raise(e: Exception) -> None:
    raise e


def read_coco(train_json: os.PathLike | str | None, val_json: os.PathLike | str | None,
              images: os.PathLike | str, val_images: os.PathLike | str | None = None,
              skip_bad: bool = False) -> DatasetSpec:
    """Read COCO detection jsons (HRSID style). Category ids map to 0-based classes in ascending id order.

    ``images`` holds the train images (and the val images unless ``val_images`` is given); a missing json gives
    an empty split.
    """
    skips, names_by, splits = _Skips(skip_bad), {}, {}
    for key, js, img_dir in (("train", train_json, images), ("val", val_json, val_images or images)):
        if js is None:
            splits[key] = []
            continue
        names_by[key], splits[key] = _coco_split(Path(js).resolve(), Path(img_dir).resolve(), skips)
    if len(names_by) == 2 and names_by["train"] != names_by["val"]:
        raise LabelError(Path(str(val_json)), f"categories {names_by['val']} differ from the train json's "
                         f"{names_by['train']}", "Use the same categories in both", kind="config")
    names = next(iter(names_by.values()), [])
    first = Path(str(train_json or val_json)).resolve()
    root = first.parent.parent if first.parent.name == "annotations" else Path(images).resolve().parent
    return skips.finish(DatasetSpec(names, splits["train"], splits["val"], root, "coco"))


_COCO_TRAIN = re.compile(r"^(instances_)?train(\d*)$")
_COCO_VAL = re.compile(r"^(instances_)?(val|test)(\d*)$")


def _coco_image_dir(root: Path, json_path: Path) -> Path:
    stem = json_path.stem.removeprefix("instances_")
    cands = [root / "images" / stem, root / stem, root / "images", root / "JPEGImages"]
    for c in cands:
        if c.is_dir():
            return c
    raise LabelError(json_path, "no image folder found (looked for " + ", ".join(str(c) for c in cands) + ")",
                     "Put the images there or describe the layout in a format: coco YAML (docs/data.md)",
                     kind="config")


def _coco_folder(root: Path, skip_bad: bool) -> DatasetSpec:
    jsons = sorted((root / "annotations").glob("*.json"))
    train = [j for j in jsons if _COCO_TRAIN.match(j.stem)]
    val = sorted((j for j in jsons if _COCO_VAL.match(j.stem)), key=lambda j: "test" in j.stem)
    if not train and not val:
        raise LabelError(root / "annotations", f"no train*/val*/test* json among {[j.name for j in jsons]}",
                         "Name them train2017.json / test2017.json or use a format: coco YAML", kind="config")
    tj, vj = (train[0] if train else None), (val[0] if val else None)
    img_t = _coco_image_dir(root, tj) if tj else None
    img_v = _coco_image_dir(root, vj) if vj else None
    return read_coco(tj, vj, img_t or img_v, img_v, skip_bad=skip_bad)


# -------------------------------------------------------------------------------------------------------- VOC
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
        raise LabelError(xml, f"<{tag}> is missing or not a number", _SKIP_FIX, where) from None


def _int_or_0(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0  # unreadable <size>: the image header decides


def _voc_sample(xml: Path, img_dir: Path, names: list[str] | None) -> tuple[Sample, list[str]]:
    """Parse one VOC xml. VOC pixel indices are 1-based and inclusive: (xmin, ymin, xmax, ymax) covers the
    continuous box [xmin - 1, ymin - 1, xmax, ymax] in 0-based pixel coordinates (width = xmax - xmin + 1)."""
    if not xml.is_file():
        raise LabelError(xml, "annotation file not found", _SKIP_FIX, kind="missing_label")
    try:
        ann = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise LabelError(xml, f"not valid XML ({e})", _SKIP_FIX) from None
    fname = (ann.findtext("filename") or "").strip()
    image = img_dir / (fname or xml.stem + ".jpg")
    if not image.is_file():  # filename missing or stale: try the annotation's id with the usual extensions
        alt = (img_dir / (xml.stem + e) for e in (".jpg", ".png", ".jpeg", ".tif", ".tiff", ".bmp"))
        image = next((p for p in alt if p.is_file()), image)
    w, h = image_size(image, xml.name)
    size = ann.find("size")
    xw, xh = (_int_or_0(size.findtext(t) if size is not None else None) for t in ("width", "height"))
    if xw and xh and (xw, xh) != (w, h):
        raise LabelError(xml, f"<size> says {xw}x{xh} but {image.name} is {w}x{h}", _SKIP_FIX, "<size>",
                         kind="size_mismatch")
    boxes, obj_names = [], []
    for i, obj in enumerate(ann.findall("object"), 1):
        where, bb = f"<object> #{i}", obj.find("bndbox")
        if bb is None:
            raise LabelError(xml, "object has no <bndbox> (rotated <robndbox> boxes are not supported)",
                             _SKIP_FIX, where)
        xmin, ymin, xmax, ymax = (_voc_text(bb, t, xml, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        name = (obj.findtext("name") or "").strip()
        if names is not None and name not in names:
            raise LabelError(xml, f"class {name!r} is not in names {names}", _SKIP_FIX, where,
                             kind="class_out_of_range")
        boxes.append(check_box([xmin - 1, ymin - 1, xmax, ymax], w, h, xml, where))
        obj_names.append(name)
    return _sample(image, boxes, [], w, h), obj_names


def read_voc(root: os.PathLike | str, train: str = "train", val: str = "val",
             names: list[str] | None = None, skip_bad: bool = False) -> DatasetSpec:
    """Read a VOC/SSDD folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt).

    ``train``/``val`` are split names (train falls back to trainval, val to test) or paths of .txt id lists.
    Without ``names`` the classes are the sorted set of object names found.
    """
    root = Path(root).resolve()
    img_dir = next((d for d in (root / "JPEGImages", root / "images") if d.is_dir()), root / "JPEGImages")
    skips, raw = _Skips(skip_bad), {}
    for key, split, fb in (("train", train, ("trainval",)), ("val", val, ("test",))):
        ids = _voc_ids(root, split, fb)
        raw[key] = _keep(skips.run(_voc_sample, root / "Annotations" / f"{i}.xml", img_dir, names) for i in ids)
    if names is None:
        names = sorted({n for split in raw.values() for _, ns in split for n in ns})
    index = {n: i for i, n in enumerate(names)}
    for s, ns in (pair for split in raw.values() for pair in split):
        s.classes = np.asarray([index[n] for n in ns], dtype=np.int64)
    spec = DatasetSpec(list(names), [s for s, _ in raw["train"]], [s for s, _ in raw["val"]], root, "voc")
    return skips.finish(spec)


# ----------------------------------------------------------------------------------------------- entry point
def _from_spec_yaml(path: Path, cfg: dict, skip_bad: bool) -> DatasetSpec:
    fmt, root = cfg["format"], _root_of(cfg, path)
    if fmt == "voc":
        return read_voc(root, str(cfg.get("train", "train")), str(cfg.get("val", "val")), cfg.get("names"),
                        skip_bad)
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
                     v.get("images"), skip_bad)


def detect_format(path: os.PathLike | str) -> str:
    """'yolo', 'coco' or 'voc': what load_dataset(path) reads there (a .yaml's ``format`` key, default yolo)."""
    p = Path(path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        fmt = _read_yaml(p).get("format", "yolo")
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


def load_dataset(path: os.PathLike | str, fmt: str = "auto", skip_bad: bool = False) -> DatasetSpec:
    """Load a dataset from a data.yaml (YOLO, or a ``format: coco|voc`` spec), a COCO json (its images become
    the val split), a COCO folder (annotations/*.json) or a VOC folder (Annotations/). See docs/data.md.

    ``fmt`` (auto, yolo, coco, voc) overrides detection for a folder; for a file it must agree with it.
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
        return read_yolo(p, skip_bad) if found == "yolo" else _from_spec_yaml(p, _read_yaml(p), skip_bad)
    if found == "yolo":
        return read_yolo(p / "data.yaml", skip_bad)
    if found == "voc":
        return read_voc(p, skip_bad=skip_bad)
    if p.is_file():  # a single COCO json: its images are the val split
        root = p.parent.parent if p.parent.name == "annotations" else p.parent
        return read_coco(None, p, _coco_image_dir(root, p), skip_bad=skip_bad)
    return _coco_folder(p, skip_bad)
