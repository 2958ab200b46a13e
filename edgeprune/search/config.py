"""The settings of one search, saved in its run directory so that workers and resumed runs share them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..utils.files import write_json

__all__ = ["SearchConfig", "parse_ms"]

# Settings that change what a trial means: a resumed run must not change them
FIXED = ("checkpoint", "data", "img_size", "scopes", "step", "max_ratio", "round_to", "min_width", "importance",
         "objective", "speedup", "val_images", "bn_batches", "conf_thres", "backend", "threads", "seed")


def parse_ms(text: str | float | None) -> float | None:
    """12, "12", "12ms", "12 ms" → 12.0; "0.012s" → 12.0."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip().lower().replace(" ", "")
    try:
        if t.endswith("ms"):
            return float(t[:-2])
        if t.endswith("s"):
            return float(t[:-1]) * 1000.0
        return float(t)
    except ValueError:
        raise ValueError(f"latency {text!r}: write milliseconds such as 12ms or 12.5") from None


@dataclass
class SearchConfig:
    checkpoint: str
    data: str
    out: str = "runs/search"
    img_size: int = 320
    trials: int = 100
    workers: int = 1
    batch_trials: int = 0  # trials per round, measured together (0: one per board of a remote backend, else 1)
    storage: str | None = None  # any SQLAlchemy URL; default: sqlite in the run directory
    study_name: str = "edgeprune-search"
    scopes: str = "groups"  # groups | blocks | stages | JSON file
    step: float = 0.05
    max_ratio: float = 0.9
    round_to: int = 8
    min_width: int = 8
    importance: str = "l1"
    objective: dict = field(default_factory=dict)  # edgeprune.search.objective.Objective fields
    backend: str = "ort"
    threads: int = 0  # onnxruntime threads per worker (0: cores / workers)
    runs: int = 30
    warmup: int = 10
    predict: str | None = None  # latency table path; default: lut.json in the run directory
    measure: str = "pareto"  # all | pareto | none
    val_images: int = 64
    bn_batches: int = 4
    rescore_top: int = 0  # stage two (search.rescore): the screen's best K trials fine-tuned and scored again
    rescore_iters: int = 24  # KD iterations of that fine-tune
    batch_size: int = 16
    conf_thres: float = 0.01
    allocated_seed: bool = True  # the first trial: one Taylor-allocated cut to the latency target (sensitivity.py)
    sensitivity: list = field(default_factory=lambda: [0.5])  # ratios; [] skips sensitivity and seeding
    seed: int = 0
    speedup: float | None = None  # latency target as a speed-up over the base model (measured on the backend)
    skip_bad: bool = False  # skip bad labels of the dataset instead of stopping
    heartbeat_s: int = 10
    grace_s: int = 30

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.run_dir / 'search.db').resolve()}"

    @property
    def lut_path(self) -> Path:
        return Path(self.predict) if self.predict else self.run_dir / "lut.json"

    def save(self) -> Path:
        return write_json(self.run_dir / "search.json", asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> SearchConfig:
        d = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check_resume(self) -> None:
        """Refuse to continue a run directory whose search used other settings (its trials would not compare)."""
        path = self.run_dir / "search.json"
        if not path.is_file():
            return
        old = SearchConfig.load(path)
        diff = [k for k in FIXED if getattr(old, k) != getattr(self, k)]
        if diff:
            shown = ", ".join(f"{k}: {getattr(old, k)!r} → {getattr(self, k)!r}" for k in diff[:4])
            raise ValueError(f"{path}: this run directory holds a search with other settings ({shown}); "
                             "resume it with the same options, or pass another --out")
