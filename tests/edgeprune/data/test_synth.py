"""Tests of the synthetic SAR scene generator: determinism, the YOLO files, and the statistics docs/synthetic-sar.md
claims. Small images (128 px) keep the file fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeprune.data.synth import (
    SynthConfig,
    render_power,
    render_scene,
    scene_rng,
    synthesize,
    to_uint8,
    yolo_lines,
)
from edgeprune.data.synth_clutter import draw_sea, speckle
from edgeprune.data.synth_ships import add_point_target

SIZE = 128
SMALL = SynthConfig(size=SIZE)


@pytest.fixture(scope="module")
def scenes() -> list:
    return [render_scene(scene_rng(7, "train", i), SMALL) for i in range(300)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n_train=5, n_val=3, size=SIZE, seed=11, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "preview.png"
    }


def _read_labels(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


# --- determinism -------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path, n_train=5, n_val=3, size=SIZE, seed=11, progress=False).parent
    assert _files(again) == _files(dataset)


def test_different_seed_gives_different_images(dataset: Path, tmp_path: Path) -> None:
    other = synthesize(tmp_path, n_train=5, n_val=3, size=SIZE, seed=12, progress=False).parent
    for split, n in (("train", 5), ("val", 3)):
        for i in range(n):
            name = f"images/{split}/{i:06d}.png"
            assert (other / name).read_bytes() != (dataset / name).read_bytes(), name


def test_scene_does_not_depend_on_dataset_size(dataset: Path, tmp_path: Path) -> None:
    small = synthesize(tmp_path, n_train=2, n_val=1, size=SIZE, seed=11, progress=False).parent
    for name in ("images/train/000000.png", "images/train/000001.png", "images/val/000000.png",
                 "labels/train/000001.txt", "labels/val/000000.txt"):
        assert (small / name).read_bytes() == (dataset / name).read_bytes(), name


def test_render_scene_is_deterministic_per_generator() -> None:
    a = render_scene(scene_rng(3, "val", 9), SMALL)
    b = render_scene(scene_rng(3, "val", 9), SMALL)
    c = render_scene(scene_rng(3, "train", 9), SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


# --- files -------------------------------------------------------------------------------------------------------


def test_layout_and_labels_match_scenes(dataset: Path) -> None:
    from PIL import Image

    for split, n in (("train", 5), ("val", 3)):
        assert sorted(p.name for p in (dataset / "images" / split).iterdir()) == [f"{i:06d}.png" for i in range(n)]
        for i in range(n):
            with Image.open(dataset / "images" / split / f"{i:06d}.png") as im:
                assert im.mode == "L" and im.size == (SIZE, SIZE)
                pixels = np.asarray(im)
            scene = render_scene(scene_rng(11, split, i), SMALL)
            assert np.array_equal(pixels, scene.image)
            text = (dataset / "labels" / split / f"{i:06d}.txt").read_text()
            assert text == yolo_lines(scene.boxes, SIZE)
            labels = _read_labels(dataset / "labels" / split / f"{i:06d}.txt")
            assert np.all(labels[:, 0] == 0)
            assert np.all((labels[:, 1:] > 0) & (labels[:, 1:] <= 1))
            cx, cy, w, h = labels[:, 1:].T
            assert np.all(cx - w / 2 >= -1e-6) and np.all(cx + w / 2 <= 1 + 1e-6)
            assert np.all(cy - h / 2 >= -1e-6) and np.all(cy + h / 2 <= 1 + 1e-6)
            assert all(len(x.split(".")[1]) == 6 for line in text.splitlines() for x in line.split()[1:])


def test_data_yaml_follows_the_ultralytics_convention(dataset: Path) -> None:
    doc = yaml.safe_load((dataset / "data.yaml").read_text())
    assert doc["path"] == "."
    assert doc["train"] == "images/train" and doc["val"] == "images/val"
    assert doc["nc"] == 1 and doc["names"] == ["ship"]
    assert doc["synth"]["seed"] == 11
    assert doc["synth"]["n_train"] == 5 and doc["synth"]["n_val"] == 3
    assert doc["synth"]["config"]["size"] == SIZE
    assert SynthConfig.from_mapping(doc["synth"]["config"]) == SMALL
    with pytest.raises(ValueError, match="unknown SynthConfig field"):
        SynthConfig.from_mapping({"sise": 3})


def test_preview_and_no_temporary_files(dataset: Path) -> None:
    assert (dataset / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in dataset.rglob("*") if p.name.endswith(".tmp")]


def test_rerun_with_fewer_scenes_removes_stale_files(tmp_path: Path) -> None:
    synthesize(tmp_path, n_train=4, n_val=2, size=64, seed=0, progress=False)
    synthesize(tmp_path, n_train=2, n_val=1, size=64, seed=0, progress=False)
    assert sorted(p.name for p in (tmp_path / "images/train").iterdir()) == ["000000.png", "000001.png"]
    assert sorted(p.name for p in (tmp_path / "labels/val").iterdir()) == ["000000.txt"]


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path, n_train=-1, n_val=0, progress=False)
    with pytest.raises(ValueError):
        scene_rng(-1, "train", 0)


def test_db_window_maps_to_the_byte_range() -> None:
    lo, hi = SMALL.db_window
    power = np.array([10 ** ((lo - 5) / 10), 10 ** (lo / 10), 10 ** ((lo + hi) / 20), 10 ** (hi / 10), 1e9])
    assert to_uint8(power.astype(np.float32), SMALL.db_window).tolist() == [0, 0, 128, 255, 255]


# --- the physics the docs claim -----------------------------------------------------------------------------------


def test_speckle_is_gamma_with_mean_one_and_variance_one_over_looks() -> None:
    rng = np.random.default_rng(0)
    for looks in (1.0, 2.5, 5.0):
        s = speckle(rng, (256, 256), looks)
        assert s.mean() == pytest.approx(1.0, abs=0.02)
        assert s.var() == pytest.approx(1.0 / looks, rel=0.05)


@pytest.mark.parametrize("dof", [2, 4])
def test_sea_clutter_is_k_distributed(dof: int) -> None:
    """Gamma texture (mean 1, variance 1/nu) x 1-look speckle: normalised second moment 2(1 + 1/nu) and a tail
    heavier than the exponential of pure speckle."""
    cfg = SynthConfig(size=SIZE, texture_dof=(dof, dof), range_gradient_db=(0.0, 0.0))
    textures, intensities = [], []
    for i in range(30):
        rng = np.random.default_rng(i)
        sea = draw_sea(rng, cfg)
        textures.append(sea.texture.ravel())
        intensities.append((sea.texture * speckle(rng, (SIZE, SIZE), 1.0)).ravel())
    tex, inten = np.concatenate(textures), np.concatenate(intensities)
    nu = dof / 2
    assert tex.min() >= 0 and tex.mean() == pytest.approx(1.0, abs=0.03)
    assert tex.var() == pytest.approx(1.0 / nu, rel=0.1)
    z = inten / inten.mean()
    assert np.mean(z**2) == pytest.approx(2.0 * (1.0 + 1.0 / nu), rel=0.1)
    for t in (4.0, 6.0, 8.0):
        assert np.mean(z > t) > 2.0 * np.exp(-t)


def test_sea_texture_is_spatially_correlated() -> None:
    sea = draw_sea(np.random.default_rng(1), SynthConfig(size=SIZE, texture_corr_frac=(0.02, 0.02)))
    t = sea.texture - sea.texture.mean()
    lag1 = np.mean(t[:, 1:] * t[:, :-1]) / t.var()
    assert lag1 > 0.3


def test_point_scatterer_has_a_sidelobe_cross_along_the_axes() -> None:
    layer = np.zeros((64, 64), np.float32)
    add_point_target(layer, 32.3, 32.3, 1e6, 1.4, 30)
    on_axis = layer[32, 32 + 9]  # a sidelobe along x, on the scatterer's row
    off_axis = layer[32 + 9, 32 + 9]
    assert layer[32, 32] == layer.max()
    assert on_axis > 1e2 * off_axis and on_axis > 0


def test_box_sizes_like_ssdd(scenes: list) -> None:
    boxes = np.concatenate([s.boxes for s in scenes])
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert 0.02 <= np.median(np.sqrt(w * h)) / SIZE <= 0.05
    assert np.minimum(w, h).min() >= SMALL.min_box_frac * SIZE - 1e-3
    assert boxes.min() >= 0 and boxes.max() <= SIZE


def test_hulls_are_elongated(scenes: list) -> None:
    ratio = np.concatenate([s.lengths / s.beams for s in scenes])
    assert ratio.min() >= 6.0 - 1e-4 and ratio.max() <= 8.0 + 1e-4


def test_boxes_bound_the_hulls(scenes: list) -> None:
    """The box lies between the hull's centreline (stern to bow tip) and its L x B rectangle, or is the minimum."""
    min_side = SMALL.min_box_frac * SIZE
    for s in scenes:
        w, h = s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]
        c, si = np.abs(np.cos(s.headings)), np.abs(np.sin(s.headings))
        assert np.all(w >= s.lengths * c - 1e-3) and np.all(h >= s.lengths * si - 1e-3)
        assert np.all(w <= np.maximum(s.lengths * c + s.beams * si, min_side) + 1e-3)
        assert np.all(h <= np.maximum(s.lengths * si + s.beams * c, min_side) + 1e-3)


def test_about_one_scene_in_five_is_inshore(scenes: list) -> None:
    share = np.mean([s.inshore for s in scenes])
    assert 0.13 <= share <= 0.27
    moored = np.concatenate([s.moored for s in scenes if s.inshore])
    assert moored.any()
    assert not any(s.moored.any() for s in scenes if not s.inshore)


def test_dim_boats_and_bright_ships_both_occur(scenes: list) -> None:
    snr = np.concatenate([s.snr_db for s in scenes])
    dim = np.concatenate([s.dim for s in scenes])
    assert 0.04 <= dim.mean() <= 0.2
    assert np.all((snr[dim] >= 3.0) & (snr[dim] <= 10.0))
    assert np.all((snr[~dim] >= 15.0) & (snr[~dim] <= 30.0))
    assert all(len(s.boxes) >= 1 for s in scenes if not s.inshore)


def test_bright_ships_stand_out_of_the_sea() -> None:
    cfg = SynthConfig(size=SIZE, inshore_fraction=0.0, dim_fraction=0.0)
    for i in range(10):
        power, scene = render_power(scene_rng(5, "val", i), cfg)
        background = np.median(power)
        for x1, y1, x2, y2 in scene.boxes.astype(int):
            assert power[y1 : y2 + 1, x1 : x2 + 1].max() > 10 * background
