"""Small datasets in the real layouts (ultralytics YOLO, HRSID's COCO json, SSDD's VOC xml), built in tmp_path.

Tests take the builders as fixtures (`make_yolo`, `make_hrsid`, `make_ssdd`) and `write_file` / `write_image`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image


def _img(path: Path, w: int, h: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (w, h), 30).save(path, format=fmt)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _make_yolo(root: Path, names: str = "[ship, boat]") -> Path:
    """ds/images/{train,val}, ds/labels/..., and cfg/data.yaml pointing at ../ds (relative path)."""
    ds = root / "ds"
    _img(ds / "images/train/a.png", 80, 40)
    _write(ds / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n\n1 0.125 0.25 0.25 0.5\n")
    _img(ds / "images/train/b.png", 64, 64)  # no label file: background
    _img(ds / "images/val/c.png", 100, 50)
    _write(ds / "labels/val/c.txt", "1 0.3 0.4 0.2 0.2\n")
    _write(ds / "val.txt", "./images/val/c.png\n")
    return _write(root / "cfg/data.yaml", f"path: ../ds\ntrain: images/train\nval: val.txt\nnames: {names}\n")


def _make_hrsid(root: Path) -> Path:
    """HRSID layout: annotations/{train,test,train_test}2017.json + images/, category id 1 = ship."""
    hr = root / "HRSID"
    for name in ("P0001_0_800_7200_8000.jpg", "P0002_600_1400_0_800.jpg", "P0003_0_800_0_800.jpg"):
        _img(hr / "images" / name, 80, 60, "JPEG")

    def js(images: list[tuple[int, str]], anns: list[tuple[int, int, list[float], int]]) -> str:
        return json.dumps({
            "info": {"description": "HRSID"}, "licenses": [], "type": "instances",
            "images": [{"file_name": f, "height": 60, "width": 80, "id": i} for i, f in images],
            "annotations": [{"segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3]]],
                             "area": b[2] * b[3], "iscrowd": crowd, "image_id": im, "bbox": b,
                             "category_id": 1, "id": k} for k, (im, crowd, b, _) in enumerate(anns, 1)],
            "categories": [{"supercategory": "ship", "id": 1, "name": "ship"}]})

    _write(hr / "annotations/train2017.json", js(
        [(1, "P0001_0_800_7200_8000.jpg"), (2, "P0002_600_1400_0_800.jpg")],
        [(1, 0, [10, 20, 30, 15], 0), (1, 1, [0, 0, 5, 5], 0), (1, 0, [70.5, 50, 9.5, 10], 0)]))
    _write(hr / "annotations/test2017.json", js([(3, "P0003_0_800_0_800.jpg")], [(3, 0, [1, 2, 3, 4], 0)]))
    _write(hr / "annotations/train_test2017.json", "not even json")  # the union file must be ignored
    return hr


def _make_ssdd(root: Path, boxes: dict[str, list[tuple[int, ...]]] | None = None) -> Path:
    """SSDD layout: Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,test}.txt."""
    ss = root / "SSDD"
    boxes = boxes or {"000001": [(10, 5, 29, 20, 0)], "000002": [(1, 1, 60, 40, 1), (30, 10, 40, 20, 0)],
                      "000009": []}
    for stem, objs in boxes.items():
        _img(ss / f"JPEGImages/{stem}.jpg", 60, 40, "JPEG")
        xml_objs = "".join(
            f"<object><name>ship</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for x1, y1, x2, y2, d in objs)
        _write(ss / f"Annotations/{stem}.xml",
               f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{stem}.jpg</filename>\n"
               "\t<source><database>The SSDD Database</database></source>\n"
               "\t<size><width>60</width><height>40</height><depth>3</depth></size>\n"
               f"\t<segmented>0</segmented>{xml_objs}\n</annotation>\n")
    # SSDD's own rule: ids ending in 1 or 9 are test images; here only 9, so that 000001 stays in train
    _write(ss / "ImageSets/Main/train.txt", "".join(f"{k}\n" for k in boxes if not k.endswith("9")))
    _write(ss / "ImageSets/Main/test.txt", "".join(f"{k}\n" for k in boxes if k.endswith("9")))
    return ss


@pytest.fixture
def write_image():
    return _img


@pytest.fixture
def write_file():
    return _write


@pytest.fixture
def make_yolo():
    return _make_yolo


@pytest.fixture
def make_hrsid():
    return _make_hrsid


@pytest.fixture
def make_ssdd():
    return _make_ssdd
