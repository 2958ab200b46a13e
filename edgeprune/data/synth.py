"""Synthetic SAR ship scenes and a YOLO-format dataset made of them (numpy, pillow and matplotlib only).

Public datasets (SSDD, HRSID) cannot be downloaded on the machines this project is built on, so tests and the demo
train on scenes drawn here: multiplicative Gamma speckle over K-distributed sea clutter with a swell-correlated
texture, elongated ship hulls of random heading with point scatterers and sinc sidelobe crosses on the strongest,
a few dim boats, and about one scene in five inshore (coast, heavy-tailed land, piers, moored ships). The model,
its parameters and what it leaves out are in docs/synthetic-sar.md.

Every scene has its own random generator, seeded by `np.random.SeedSequence([seed, split_id, index])`, so one
image never depends on another and a dataset can be re-rendered (or extended) scene by scene.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeprune.data.synth_clutter import db_to_power, draw_sea, speckle
from edgeprune.data.synth_config import SynthConfig
from edgeprune.data.synth_harbour import draw_harbour
from edgeprune.data.synth_ships import Hull, label_box, paint_ship, place_free_ships

SPLITS: dict[str, int] = {"train": 0, "val": 1}
GENERATOR_VERSION = 1


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered scene. Per-ship arrays are aligned with `boxes`."""

    image: np.ndarray  # uint8 [S, S]: dB of the power, through cfg.db_window
    boxes: np.ndarray  # float32 [N, 4]: x1, y1, x2, y2 in pixels (hull bounds, widened to min_box_frac)
    snr_db: np.ndarray  # float32 [N]: mean hull power over the local sea mean
    inshore: bool
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # hull length, px
    beams: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # hull beam, px
    headings: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # bow direction, rad from +x
    dim: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # drawn as a dim boat
    moored: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    looks: float = 1.0
    texture_shape: float = 1.0  # nu of the sea's K distribution


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene `index` of `split` ('train' or 'val'): independent of every other scene."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def _ship_count(rng: np.random.Generator, cfg: SynthConfig) -> int:
    lo, hi = cfg.ships_per_scene
    return int(np.clip(1 + rng.poisson(max(cfg.ships_mean - 1.0, 0.0)), lo, hi))


def render_power(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, Scene]:
    """Linear power [S, S] (float32, sea reference = 1) of one scene, and the scene's annotations (its `image`
    is the power through the dB window)."""
    size = cfg.size
    looks = float(rng.uniform(*cfg.looks))
    res_px = float(rng.uniform(*cfg.resolution_px))
    sea = draw_sea(rng, cfg)
    refl = sea.reflectivity
    points = np.zeros((size, size), np.float32)
    inshore = bool(rng.random() < cfg.inshore_fraction)
    hulls: list[Hull] = []
    solid = None
    if inshore:
        hulls, solid = draw_harbour(rng, cfg, sea.sigma0_row, refl, points)
        n_free = int(rng.poisson(cfg.inshore_free_ships))
    else:
        n_free = _ship_count(rng, cfg)
    hulls += place_free_ships(rng, cfg, n_free, solid, hulls)
    for hull in hulls:
        sigma0 = float(sea.sigma0_row[int(np.clip(hull.cx, 0, size - 1))])
        paint_ship(rng, cfg, hull, sigma0, refl, points, res_px)
    refl += np.float32(db_to_power(cfg.noise_floor_db))
    power = refl * speckle(rng, (size, size), looks) + points
    scene = _annotate(hulls, cfg, power, inshore, looks, sea.texture_shape)
    return power, scene


def _annotate(
    hulls: Sequence[Hull], cfg: SynthConfig, power: np.ndarray, inshore: bool, looks: float, nu: float
) -> Scene:
    boxes = [label_box(h, cfg.min_box_frac * cfg.size, cfg.size) for h in hulls]

    def column(values: list, dtype: type) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(len(hulls))

    return Scene(
        image=to_uint8(power, cfg.db_window),
        boxes=np.asarray(boxes, np.float32).reshape(len(hulls), 4),
        snr_db=column([h.snr_db for h in hulls], np.float32),
        inshore=inshore,
        lengths=column([h.length for h in hulls], np.float32),
        beams=column([h.beam for h in hulls], np.float32),
        headings=column([np.mod(h.heading, 2 * np.pi) for h in hulls], np.float32),
        dim=column([h.dim for h in hulls], bool),
        moored=column([h.moored for h in hulls], bool),
        looks=looks,
        texture_shape=nu,
    )


def to_uint8(power: np.ndarray, db_window: tuple[float, float]) -> np.ndarray:
    """Linear power → dB → clipped to `db_window` → 0..255 (uint8)."""
    lo, hi = db_window
    db = 10.0 * np.log10(np.maximum(power, np.float32(1e-12)))
    scaled = (db - np.float32(lo)) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, cfg: SynthConfig) -> Scene:
    """Render one scene from `rng` (see `scene_rng` for the dataset's seeding)."""
    return render_power(rng, cfg)[1]


def yolo_lines(boxes: np.ndarray, size: int) -> str:
    """YOLO label text for xyxy pixel boxes: one `0 cx cy w h` line per box, normalised, 6 decimals."""
    lines = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64) / size:
        lines.append(f"0 {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n")
    return "".join(lines)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _remove_stale(folder: Path, count: int, suffix: str) -> None:
    """Delete scene files numbered `count` or more, left by an earlier, larger run in the same folder."""
    for path in folder.glob(f"*{suffix}"):
        if re.fullmatch(r"\d{6,}", path.stem) and int(path.stem) >= count:
            path.unlink()


def _yaml_text(seed: int, n_train: int, n_val: int, cfg: SynthConfig) -> str:
    import yaml

    params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    doc = {
        "path": ".",
        "train": "images/train",
        "val": "images/val",
        "nc": 1,
        "names": ["ship"],
        "synth": {
            "generator": "edgeprune.data.synth",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "seeding": "numpy SeedSequence([seed, split_id, index]), split_id train=0 val=1",
            "n_train": n_train,
            "n_val": n_val,
            "config": params,
        },
    }
    return "# Synthetic SAR ship scenes (edgeprune.data.synth); `path: .` is this file's folder.\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=None
    )


def synthesize(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    size: int = 320,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    progress: bool = True,
) -> Path:
    """Write a YOLO-format dataset of synthetic SAR scenes under `out_dir` and return its data.yaml.

    Layout (ultralytics convention): images/{train,val}/000000.png (8-bit grayscale), labels/{train,val}/000000.txt,
    data.yaml and preview.png (the first training scenes with their boxes). `size` overrides `cfg.size`. Every file
    is written atomically; scene files numbered beyond n_train / n_val from an earlier run are removed."""
    if n_train < 0 or n_val < 0 or size < 32:
        raise ValueError(f"need n_train, n_val >= 0 and size >= 32, got {n_train}, {n_val}, {size}")
    cfg = dataclasses.replace(cfg or SynthConfig(), size=int(size))
    out = Path(out_dir)
    from tqdm import tqdm

    shown: list[Scene] = []
    with tqdm(total=n_train + n_val, desc="synthetic SAR", unit="scene", disable=not progress) as bar:
        for split, count in (("train", n_train), ("val", n_val)):
            images, labels = out / "images" / split, out / "labels" / split
            images.mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                scene = render_scene(scene_rng(seed, split, index), cfg)
                _write_atomic(images / f"{index:06d}.png", _png_bytes(scene.image))
                _write_atomic(labels / f"{index:06d}.txt", yolo_lines(scene.boxes, cfg.size).encode())
                if split == "train" and len(shown) < 12:
                    shown.append(scene)
                bar.update(1)
            _remove_stale(images, count, ".png")
            _remove_stale(labels, count, ".txt")
            (out / "labels" / f"{split}.cache").unlink(missing_ok=True)  # an ultralytics cache of old labels
    if shown:
        save_preview(shown, out / "preview.png")
    yaml_path = out / "data.yaml"
    _write_atomic(yaml_path, _yaml_text(seed, n_train, n_val, cfg).encode())
    return yaml_path


def save_preview(scenes: Sequence[Scene], path: str | Path, columns: int = 4) -> Path:
    """A grid of scenes with their boxes (green: bright ships, orange: dim boats), as a PNG at `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows = -(-len(scenes) // columns)
    fig = Figure(figsize=(3.4 * columns, 3.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, scene in enumerate(scenes):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(scene.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        for (x1, y1, x2, y2), dim in zip(scene.boxes, scene.dim):
            color = "orange" if dim else "lime"
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=0.8, ec=color))
        where = "inshore" if scene.inshore else "offshore"
        ax.set_title(f"{where}, {len(scene.boxes)} ships, L={scene.looks:.1f}, ν={scene.texture_shape:g}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    fig.canvas.draw()
    _write_atomic(Path(path), _palette_png(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    return Path(path)


def _palette_png(rgb: np.ndarray) -> bytes:
    """PNG with a palette of 128 grays and the box colours: speckle does not compress, so this halves the file
    against RGB."""
    from PIL import Image

    grays = np.repeat(np.linspace(0, 255, 128).round().astype(np.uint8)[:, None], 3, axis=1)
    colours = np.array([[0, 255, 0], [255, 165, 0]] + [[255, 255, 255]] * 126, np.uint8)
    palette = Image.new("P", (1, 1))
    palette.putpalette(np.concatenate([grays, colours]).ravel().tolist())
    image = Image.fromarray(rgb).quantize(palette=palette, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def preview(path: str | Path, n: int = 12, size: int = 320, seed: int = 0, cfg: SynthConfig | None = None) -> Path:
    """Render the first `n` training scenes of a dataset (same seeding as `synthesize`) into a preview grid.
    docs/img/synth-preview.png is `preview("docs/img/synth-preview.png")`."""
    cfg = dataclasses.replace(cfg or SynthConfig(), size=int(size))
    scenes = [render_scene(scene_rng(seed, "train", i), cfg) for i in range(n)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_preview(scenes, path)
