"""Write any loaded dataset (:class:`~edgeprune.data.formats.DatasetSpec`) in the ultralytics YOLO layout.

``out/images/{train,val}`` hold hard links to the source images (a copy where linking fails, e.g. across file
systems); nothing is re-encoded. ``out/labels/{train,val}/*.txt`` hold ``class cx cy w h`` normalised to the image
size, one file per image (empty for an image without objects). ``out/data.yaml`` names them. Every file is
written atomically (temporary name in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from edgeprune.data.labels import DatasetSpec, Sample
from edgeprune.utils.files import atomic_write_text

SPLITS = ("train", "val")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (copy if the file system refuses), replacing ``dst`` atomically."""
    if dst.exists() and dst.samefile(src):
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def yolo_label_text(sample: Sample) -> str:
    """The YOLO label file for one sample: ``class cx cy w h`` per box, normalised to the image size."""
    if len(sample.boxes) == 0:
        return ""
    b = sample.boxes.astype(np.float64)
    wh = np.array([sample.width, sample.height], dtype=np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2 / wh
    s = (b[:, 2:] - b[:, :2]) / wh
    return "".join(f"{int(k)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
                   for k, (x, y), (w, h) in zip(sample.classes, c, s))


def _unique_name(image: Path, used: set[str]) -> str:
    name, i = image.name, 1
    while name.lower() in used:  # same file name from two source folders: number the later ones
        name = f"{image.stem}_{i}{image.suffix}"
        i += 1
    used.add(name.lower())
    return name


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another --out or pass overwrite=True "
                              "(CLI: --overwrite) to replace the converted dataset there")
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for cache in (out / "labels").glob("*.cache"):  # ultralytics label caches would describe the old files
        cache.unlink()


def _write_split(samples: list[Sample], out: Path, split: str) -> set[Path]:
    written, used = set(), set()
    for s in samples:
        name = _unique_name(s.image, used)
        img, lab = out / "images" / split / name, (out / "labels" / split / name).with_suffix(".txt")
        _link_or_copy(s.image, img)
        atomic_write_text(lab, yolo_label_text(s))
        written |= {img, lab}
    return written


def convert_to_yolo(spec: DatasetSpec, out_dir: os.PathLike | str, overwrite: bool = False) -> Path:
    """Write ``spec`` as an ultralytics YOLO dataset under ``out_dir``; return the path of its data.yaml.

    With ``overwrite`` an existing conversion is replaced: files in ``images/{train,val}`` and
    ``labels/{train,val}`` that this conversion did not write are removed.
    """
    out = Path(out_dir).resolve()
    _prepare(out, overwrite)
    written: set[Path] = set()
    for split in SPLITS:
        written |= _write_split(getattr(spec, split), out, split)
    for split in SPLITS:
        for sub in ("images", "labels"):
            for f in (out / sub / split).iterdir():
                if f.is_file() and f not in written:
                    f.unlink()
    data = {"path": str(out), "train": "images/train", "val": "images/val", "nc": len(spec.names),
            "names": dict(enumerate(spec.names))}
    yaml_path = out / "data.yaml"
    header = f"# converted by edgeprune from {spec.fmt} dataset {spec.root}\n"
    atomic_write_text(yaml_path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return yaml_path
