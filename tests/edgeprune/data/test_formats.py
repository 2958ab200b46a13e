"""Readers and label validation: YOLO data.yaml, COCO json in the HRSID layout, VOC xml in the SSDD layout."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeprune.data.formats import LabelError, detect_format, load_dataset, read_voc, yolo_label_path


def test_yolo_reads_boxes_exactly(tmp_path: Path, make_yolo) -> None:
    spec = load_dataset(make_yolo(tmp_path))
    assert spec.fmt == "yolo" and spec.names == ["ship", "boat"] and spec.root == (tmp_path / "ds").resolve()
    a, b = spec.train
    assert (a.width, a.height) == (80, 40) and a.image.name == "a.png"
    np.testing.assert_array_equal(a.boxes, np.array([[30, 10, 50, 30], [0, 0, 20, 20]], np.float32))
    assert a.boxes.dtype == np.float32 and a.classes.dtype == np.int64 and a.classes.tolist() == [0, 1]
    assert b.boxes.shape == (0, 4) and b.classes.shape == (0,)
    (c,) = spec.val
    np.testing.assert_allclose(c.boxes, [[20, 15, 40, 25]], atol=1e-4)


def test_yolo_dict_names_nc_and_folder_list(tmp_path: Path, make_yolo) -> None:
    y = make_yolo(tmp_path)
    y.write_text("path: ../ds\ntrain: [images/train, images/val]\nval: images/val\nnc: 2\nnames: {0: ship, 1: boat}\n")
    spec = load_dataset(y)
    assert spec.names == ["ship", "boat"] and len(spec.train) == 3 and len(spec.val) == 1
    y.write_text("path: ../ds\ntrain: images/train\nval: images/val\nnc: 3\nnames: [ship, boat]\n")
    with pytest.raises(LabelError, match="nc is 3"):
        load_dataset(y, skip_bad=True)  # a config error is never skipped


def test_yolo_polygon_line_gives_its_bounding_box(tmp_path: Path, make_yolo, write_file) -> None:
    y = make_yolo(tmp_path)
    write_file(tmp_path / "ds/labels/train/b.txt", "0 0.25 0.25 0.75 0.25 0.5 0.75\n")
    b = load_dataset(y).train[1]
    np.testing.assert_allclose(b.boxes, [[16, 16, 48, 48]])


def test_yolo_label_path_rule() -> None:
    assert yolo_label_path(Path("/d/images/x/images/train/a.b.jpg")) == Path("/d/images/x/labels/train/a.b.txt")
    assert yolo_label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


def test_box_overshoot_within_tolerance_is_clipped(tmp_path: Path, make_yolo, write_file) -> None:
    y = make_yolo(tmp_path)
    write_file(tmp_path / "ds/labels/train/b.txt", "0 0.5 0.5 1.01 0.5\n")  # 0.32 px past each side of 64
    np.testing.assert_allclose(load_dataset(y).train[1].boxes, [[0, 16, 64, 48]])


def test_coco_hrsid_layout(tmp_path: Path, make_hrsid) -> None:
    hr = make_hrsid(tmp_path)
    assert detect_format(hr) == "coco"
    spec = load_dataset(hr)
    assert spec.fmt == "coco" and spec.names == ["ship"] and spec.root == hr.resolve()
    a, b = spec.train
    np.testing.assert_array_equal(a.boxes, [[10, 20, 40, 35], [70.5, 50, 80, 60]])  # crowd box dropped
    assert a.classes.tolist() == [0, 0] and (a.width, a.height) == (80, 60)
    assert b.boxes.shape == (0, 4)
    np.testing.assert_array_equal(spec.val[0].boxes, [[1, 2, 4, 6]])


def test_coco_single_json_is_val_and_spec_yaml(tmp_path: Path, make_hrsid, write_file) -> None:
    hr = make_hrsid(tmp_path)
    spec = load_dataset(hr / "annotations/test2017.json")
    assert spec.train == [] and len(spec.val) == 1
    y = write_file(tmp_path / "hrsid.yaml", f"format: coco\npath: {hr}\n"
               "train: {annotations: annotations/train2017.json, images: images}\n"
               "val: {annotations: annotations/test2017.json, images: images}\n")
    spec = load_dataset(y)
    assert spec.fmt == "coco" and len(spec.train) == 2 and len(spec.val) == 1


def test_voc_ssdd_layout_one_based_coordinates(tmp_path: Path, make_ssdd) -> None:
    ss = make_ssdd(tmp_path)
    assert detect_format(ss) == "voc"
    spec = load_dataset(ss)
    assert spec.fmt == "voc" and spec.names == ["ship"]
    assert [s.image.name for s in spec.train] == ["000001.jpg", "000002.jpg"]
    assert [s.image.name for s in spec.val] == ["000009.jpg"]
    np.testing.assert_array_equal(spec.train[0].boxes, [[9, 4, 29, 20]])  # 1-based inclusive -> [x-1, x2]
    np.testing.assert_array_equal(spec.train[1].boxes, [[0, 0, 60, 40], [29, 9, 40, 20]])  # difficult kept
    assert spec.val[0].boxes.shape == (0, 4)


def test_voc_spec_yaml_names_and_split_lists(tmp_path: Path, make_ssdd, write_file) -> None:
    ss = make_ssdd(tmp_path)
    write_file(ss / "ImageSets/Main/test_inshore.txt", "000002\n")
    y = write_file(ss / "ssdd.yaml", "format: voc\ntrain: train\nval: ImageSets/Main/test_inshore.txt\n"
               "names: [boat, ship]\n")
    spec = load_dataset(y)
    assert spec.names == ["boat", "ship"] and spec.val[0].classes.tolist() == [1, 1]
    with pytest.raises(LabelError, match="not in names"):
        read_voc(ss, names=["boat"])


# ------------------------------------------------------------------------------------------------ bad labels
BAD_YOLO = {  # case -> (label text for a.txt, kind, text the message must contain)
    "three_fields": ("0 0.5 0.5 0.25 0.5\n0 0.5 0.5\n", "malformed", "line 2"),
    "letter": ("0 0.5 x 0.25 0.5\n", "malformed", "line 1"),
    "class_out_of_range": ("2 0.5 0.5 0.25 0.5\n", "class_out_of_range", "line 1"),
    "outside": ("0 0.9 0.5 0.4 0.5\n", "box_outside_image", "line 1"),
    "zero_size": ("0 0.5 0.5 0 0.5\n", "empty_box", "line 1"),
    "pixels": ("0 40 20 20 20\n", "box_outside_image", "normalised"),
}


@pytest.mark.parametrize("case", sorted(BAD_YOLO))
def test_bad_yolo_label_names_file_and_line(tmp_path: Path, case: str, make_yolo, write_file) -> None:
    text, kind, where = BAD_YOLO[case]
    y = make_yolo(tmp_path)
    write_file(tmp_path / "ds/labels/train/a.txt", text)
    with pytest.raises(LabelError) as e:
        load_dataset(y)
    assert "a.txt" in str(e.value) and where in str(e.value) and e.value.kind == kind
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        spec = load_dataset(y, skip_bad=True)
    assert spec.skipped == {kind: 1} and [s.image.name for s in spec.train] == ["b.png"]


def test_missing_image_and_non_image(tmp_path: Path, make_yolo, write_file) -> None:
    y = make_yolo(tmp_path)
    write_file(tmp_path / "ds/val.txt", "./images/val/c.png\n./images/val/gone.png\n")
    write_file(tmp_path / "ds/images/train/notes.png", "this is text, not a png")
    with pytest.raises(LabelError, match="notes.png") as e:
        load_dataset(y)
    assert e.value.kind == "not_an_image"
    (tmp_path / "ds/images/train/notes.png").unlink()
    with pytest.raises(LabelError, match="gone.png.*not found") as e:
        load_dataset(y)
    write_file(tmp_path / "ds/images/train/notes.png", "text")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        spec = load_dataset(y, skip_bad=True)
    assert spec.skipped == {"missing_image": 1, "not_an_image": 1} and len(spec.train) == 2 and len(spec.val) == 1
    assert len(w) == 1 and "skipped 2 bad" in str(w[0].message)  # warned once, with totals


def test_bad_coco_and_voc_name_file_and_element(tmp_path: Path, make_hrsid, make_ssdd, write_file) -> None:
    hr = make_hrsid(tmp_path)
    data = json.loads((hr / "annotations/test2017.json").read_text())
    data["annotations"][0]["bbox"] = [70, 50, 30, 30]
    data["annotations"].append({"id": 9, "image_id": 3, "bbox": [1, 1, 2, 2], "category_id": 7, "iscrowd": 0})
    write_file(hr / "annotations/test2017.json", json.dumps(data))
    with pytest.raises(LabelError, match=r"test2017\.json, annotations\[0\] \(id 1\).*outside"):
        load_dataset(hr)
    with pytest.warns(UserWarning):
        assert load_dataset(hr, skip_bad=True).skipped == {"box_outside_image": 1}
    (hr / "images/P0001_0_800_7200_8000.jpg").unlink()
    with pytest.raises(LabelError, match=r"P0001_0_800_7200_8000\.jpg: image not found \(listed in train2017"):
        load_dataset(hr)

    ss = make_ssdd(tmp_path, {"000001": [(10, 5, 70, 20, 0)], "000002": [(5, 5, 4, 9, 0)], "000009": []})
    with pytest.raises(LabelError, match=r"000001\.xml, <object> #1: box .* outside the 60x40 image"):
        load_dataset(ss)
    with pytest.warns(UserWarning):
        assert load_dataset(ss, skip_bad=True).skipped == {"box_outside_image": 1, "empty_box": 1}
    ss = make_ssdd(tmp_path / "b")
    write_file(ss / "Annotations/000009.xml", "<annotation><size>")
    with pytest.raises(LabelError, match=r"000009\.xml.*not valid XML"):
        load_dataset(ss)


def test_unknown_input_says_what_to_do(tmp_path: Path, make_hrsid, write_file) -> None:
    with pytest.raises(LabelError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(LabelError, match="not a dataset I recognise"):
        load_dataset(tmp_path)
    with pytest.raises(LabelError, match="describes a coco dataset, not voc"):
        load_dataset(make_hrsid(tmp_path) / "annotations/test2017.json", fmt="voc")
    y = write_file(tmp_path / "d.yaml", "names: [a]\ntrain: images\n")
    with pytest.raises(LabelError, match="has no 'val'"):
        load_dataset(y)
