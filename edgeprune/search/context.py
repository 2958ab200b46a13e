"""Everything a search worker needs, built from a SearchConfig: model, groups, space, data, latency, evaluator."""

from __future__ import annotations

import torch

from deploy.machine import usable_cores

from ..checkpoint import load_model
from ..data.dataset import build_loader
from ..data.formats import load_dataset
from ..models import example_input
from ..prune.graph import find_groups
from ..prune.importance import score_groups
from .candidate import Evaluator
from .config import SearchConfig
from .objective import Objective
from .space import SearchSpace, scopes_for

__all__ = ["SearchContext", "cpu_share"]


def cpu_share(workers: int) -> int:
    """Cores per worker on this machine (at least 1)."""
    return max(1, usable_cores() // max(1, workers))


class SearchContext:
    def __init__(self, cfg: SearchConfig, build_predictor: bool = False, log=print) -> None:
        self.cfg = cfg
        self.objective = Objective(**cfg.objective)
        torch.set_num_threads(cpu_share(cfg.workers))
        self.model = load_model(cfg.checkpoint).eval()
        self.groups = find_groups(self.model, example_input(self.model))
        self.importance = score_groups(self.groups, cfg.importance)  # per channel, to rank what a plan keeps
        self.space = SearchSpace(self.groups, scopes_for(self.groups, cfg.scopes), cfg.step, cfg.max_ratio,
                                 cfg.round_to, cfg.min_width)
        spec = load_dataset(cfg.data, skip_bad=cfg.skip_bad)
        self.train_samples = spec.train  # the stage-two fine-tune's images (search.rescore)
        val = spec.val[: cfg.val_images] if cfg.val_images else spec.val
        if not val:
            raise ValueError(f"{cfg.data}: the validation split is empty; the search scores candidates on it")
        self.val_loader = build_loader(val, cfg.img_size, cfg.batch_size, augment=False, shuffle=False)
        # augmented like training: the weights expect the statistics of augmented images (recalibrating on plain
        # ones cost the unpruned yolov5n 0.87 -> 0.66 mAP@0.5 on the demo set; augmented: 0.87 -> 0.87)
        self.bn_loader = build_loader(spec.train, cfg.img_size, cfg.batch_size, augment=True, shuffle=True,
                                      seed=cfg.seed)
        self.backend = self._backend()
        self.predictor = self._predictor(build_predictor, log)
        self.evaluator = Evaluator(self.model, self.groups, self.importance, self.space, self.bn_loader,
                                   self.val_loader, cfg.img_size, self.predictor, self.backend, cfg.measure,
                                   cfg.bn_batches, cfg.conf_thres)

    def _backend(self):
        from ..latency import CachedBackend, LatencyCache, get_backend, timing_options

        cfg = self.cfg
        if cfg.backend == "none":
            return None
        opts = timing_options(cfg.backend, threads=cfg.threads or cpu_share(cfg.workers), runs=cfg.runs,
                              warmup=cfg.warmup)
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        return CachedBackend(get_backend(cfg.backend, **opts), LatencyCache(cfg.run_dir / "latency.sqlite"))

    def _predictor(self, build: bool, log):
        if self.backend is None or self.cfg.measure == "all":
            return None
        from ..latency.calibrate import predictor_for
        from ..latency.predictor import LatencyPredictor

        shape = (1, 3, self.cfg.img_size, self.cfg.img_size)
        if build:
            return predictor_for(self.model, shape, self.backend.backend, self.cfg.lut_path, log=log)
        return LatencyPredictor.load(self.cfg.lut_path, backend=self.backend.backend)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
