"""Conversion to the ultralytics YOLO layout, and round trips back through the YOLO reader."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeprune.data.convert import convert_to_yolo
from edgeprune.data.formats import DatasetSpec, Sample, load_dataset


def _same_boxes(a: DatasetSpec, b: DatasetSpec) -> None:
    assert a.names == b.names
    for split in ("train", "val"):
        sa, sb = getattr(a, split), getattr(b, split)
        assert [s.image.name for s in sa] == [s.image.name for s in sb]
        for x, y in zip(sa, sb):
            assert (x.width, x.height) == (y.width, y.height)
            np.testing.assert_allclose(y.boxes, x.boxes, rtol=1e-3, atol=1e-3 * max(x.width, x.height))
            np.testing.assert_array_equal(y.classes, x.classes)


def test_voc_to_yolo_round_trip(tmp_path: Path, make_ssdd) -> None:
    src = load_dataset(make_ssdd(tmp_path))
    y = convert_to_yolo(src, tmp_path / "out")
    assert y == (tmp_path / "out/data.yaml").resolve()
    cfg = yaml.safe_load(y.read_text())
    assert cfg["names"] == {0: "ship"} and cfg["nc"] == 1 and cfg["train"] == "images/train"
    back = load_dataset(y)
    _same_boxes(src, back)
    assert (tmp_path / "out/labels/val/000009.txt").read_text() == ""  # background image: empty label file
    img = tmp_path / "out/images/train/000001.jpg"
    assert img.samefile(src.train[0].image) and os.stat(img).st_nlink == 2  # linked, not re-encoded
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_coco_to_yolo_round_trip(tmp_path: Path, make_hrsid) -> None:
    src = load_dataset(make_hrsid(tmp_path))
    _same_boxes(src, load_dataset(convert_to_yolo(src, tmp_path / "out")))


def test_existing_output_needs_overwrite_and_stale_files_go(tmp_path: Path, make_ssdd) -> None:
    src = load_dataset(make_ssdd(tmp_path))
    out = tmp_path / "out"
    convert_to_yolo(src, out)
    (out / "labels/train/old.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (out / "labels/train.cache").write_text("stale")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_to_yolo(src, out)
    convert_to_yolo(src, out, overwrite=True)
    assert not (out / "labels/train/old.txt").exists() and not (out / "labels/train.cache").exists()
    _same_boxes(src, load_dataset(out / "data.yaml"))


def test_same_file_names_from_two_folders_stay_apart(tmp_path: Path, make_ssdd) -> None:
    src = load_dataset(make_ssdd(tmp_path))
    other = load_dataset(make_ssdd(tmp_path / "b", {"000001": [(2, 2, 9, 9, 0)], "000009": []}))
    merged = DatasetSpec(src.names, src.train + other.train[:1], [], src.root, "voc")
    back = load_dataset(convert_to_yolo(merged, tmp_path / "out"))
    assert [s.image.name for s in back.train] == ["000001.jpg", "000001_1.jpg", "000002.jpg"]
    np.testing.assert_allclose(back.train[1].boxes, [[1, 1, 9, 9]], atol=1e-3)


def test_label_text_is_normalised(tmp_path: Path) -> None:
    s = Sample(tmp_path / "a.png", np.array([[0, 10, 50, 30]], np.float32), np.array([3]), 100, 40)
    from edgeprune.data.convert import yolo_label_text
    assert yolo_label_text(s) == "3 0.250000 0.500000 0.500000 0.500000\n"
