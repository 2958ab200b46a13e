"""COCO detection json, as HRSID ships it (annotations/train2017.json, test2017.json, images/)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from .labels import SKIP_FIX, SPLITS, DatasetSpec, LabelError, Sample, Skips, check_box, image_size, keep, make_sample


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
        raise LabelError(path, "image entry has no file_name", SKIP_FIX, where)
    image = Path(str(im["file_name"]))
    image = image if image.is_absolute() else img_dir / image
    w, h = image_size(image, f"{path.name} {where}")
    if (im.get("width"), im.get("height")) not in ((None, None), (w, h)):
        raise LabelError(path, f"says {im.get('width')}x{im.get('height')} but {image.name} is {w}x{h}",
                         SKIP_FIX, where, kind="size_mismatch")
    boxes, classes = [], []
    for j, a in anns:
        awhere = f"annotations[{j}] (id {a.get('id')})"
        if a.get("iscrowd", 0):
            continue  # crowd regions are not objects to detect
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(x, (int, float)) for x in bb)):
            raise LabelError(path, f"bbox {bb!r} is not [x, y, w, h]", SKIP_FIX, awhere)
        if a.get("category_id") not in cat_index:
            raise LabelError(path, f"category_id {a.get('category_id')!r} is not in categories", SKIP_FIX,
                             awhere, kind="class_out_of_range")
        x, y, bw, bh = (float(v) for v in bb)
        boxes.append(check_box([x, y, x + bw, y + bh], w, h, path, awhere))
        classes.append(cat_index[a["category_id"]])
    return make_sample(image, boxes, classes, w, h)


def _coco_split(path: Path, img_dir: Path, skips: Skips) -> tuple[list[str], list[Sample]]:
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
                                     SKIP_FIX, f"annotations[{by_image[orphan][0][0]}]"))
    samples = keep(skips.run(_coco_sample, im, k, by_image.get(im.get("id"), []), cat_index, img_dir, path)
                    for k, im in enumerate(data["images"]) if isinstance(im, dict))
    return [str(c["name"]) for c in cats], samples


def _raise(e: Exception) -> None:
    raise e


def read_coco(train_json: os.PathLike | str | None, val_json: os.PathLike | str | None,
              images: os.PathLike | str, val_images: os.PathLike | str | None = None,
              skip_bad: bool = False, need: Iterable[str] = SPLITS) -> DatasetSpec:
    """Read COCO detection jsons (HRSID style). Category ids map to 0-based classes in ascending id order.

    ``images`` holds the train images (and the val images unless ``val_images`` is given); a missing json gives
    an empty split.
    """
    skips, names_by, splits = Skips(skip_bad, need), {}, {}
    for key, js, img_dir in (("train", train_json, images), ("val", val_json, val_images or images)):
        if js is None:
            splits[key] = []
            continue
        skips.split = key
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


def coco_image_dir(root: Path, json_path: Path) -> Path:
    stem = json_path.stem.removeprefix("instances_")
    cands = [root / "images" / stem, root / stem, root / "images", root / "JPEGImages"]
    for c in cands:
        if c.is_dir():
            return c
    raise LabelError(json_path, "no image folder found (looked for " + ", ".join(str(c) for c in cands) + ")",
                     "Put the images there or describe the layout in a format: coco YAML (docs/data.md)",
                     kind="config")


def coco_folder(root: Path, skip_bad: bool, need: Iterable[str] = SPLITS) -> DatasetSpec:
    jsons = sorted((root / "annotations").glob("*.json"))
    train = [j for j in jsons if _COCO_TRAIN.match(j.stem)]
    val = sorted((j for j in jsons if _COCO_VAL.match(j.stem)), key=lambda j: "test" in j.stem)
    if not train and not val:
        raise LabelError(root / "annotations", f"no train*/val*/test* json among {[j.name for j in jsons]}",
                         "Name them train2017.json / test2017.json or use a format: coco YAML", kind="config")
    tj, vj = (train[0] if train else None), (val[0] if val else None)
    img_t = coco_image_dir(root, tj) if tj else None
    img_v = coco_image_dir(root, vj) if vj else None
    return read_coco(tj, vj, img_t or img_v, img_v, skip_bad=skip_bad, need=need)
