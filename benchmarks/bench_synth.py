"""Statistics and speed of the synthetic SAR generator at its defaults (the table in docs/synthetic-sar.md).

    python benchmarks/bench_synth.py [--scenes 500] [--out benchmarks/results/synth.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeprune.data.synth import SynthConfig, render_scene, scene_rng, synthesize


def scene_statistics(n: int, size: int, seed: int) -> dict:
    cfg = SynthConfig(size=size)
    sides, short, ships, inshore_counts, offshore_counts = [], [], [], [], []
    dim = moored = strong = 0
    for i in range(n):
        s = render_scene(scene_rng(seed, "train", i), cfg)
        w, h = s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]
        sides += list(np.sqrt(w * h) / size)
        short += list(np.minimum(w, h))
        (inshore_counts if s.inshore else offshore_counts).append(len(s.boxes))
        ships.append(len(s.boxes))
        dim, moored = dim + int(s.dim.sum()), moored + int(s.moored.sum())
        strong += int((s.snr_db >= cfg.strong_snr_db).sum())
    total = sum(ships)
    return {
        "scenes": n, "size": size, "seed": seed,
        "ships_per_scene": total / n, "ships_per_offshore_scene": float(np.mean(offshore_counts)),
        "ships_per_inshore_scene": float(np.mean(inshore_counts)) if inshore_counts else 0.0,
        "empty_scenes": int(sum(c == 0 for c in ships)),
        "box_side_frac_median": float(np.median(sides)),
        "box_side_frac_p10_p90": [float(np.percentile(sides, 10)), float(np.percentile(sides, 90))],
        "boxes_at_min_side": float(np.mean(np.isclose(short, cfg.min_box_frac * size, atol=0.05))),
        "dim_share": dim / total, "moored_share": moored / total, "with_sidelobes_share": strong / total,
        "inshore_share": len(inshore_counts) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--out", default="benchmarks/results/synth.json")
    args = ap.parse_args()
    stats = scene_statistics(args.scenes, args.size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(tmp, args.scenes, 0, size=args.size, seed=0, progress=False)
        stats["write_seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
