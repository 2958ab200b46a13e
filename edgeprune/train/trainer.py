"""Train a detector: SGD or AdamW, linear warm-up then cosine decay, EMA of the weights, resumable.

Every epoch writes `last.pt` (and `best.pt` when validation fitness improves) atomically, and rewrites
`metrics.csv`, so a kill at any moment loses at most the epoch in flight; `resume=True` continues from `last.pt`.
Fitness is YOLOv5's `0.1 · mAP@0.5 + 0.9 · mAP@0.5:0.95`.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from deploy.machine import LoadMeter

from ..checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from ..data.dataset import build_loader
from ..evaluate.accuracy import evaluate
from ..models import YOLOv5, YOLOv8, detection_loss
from ..models.loss import LossGains
from ..utils.files import atomic_write_text, write_json
from ..utils.threads import TorchThreads
from .distill import AnchorFreeKD, DetectionKD, FeatureKD
from .sparsity import HeadInputs, Sparsifier, evenness, feature_attention_loss, layer_sparsity, plot_gamma


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    img_size: int = 320
    optimizer: str = "sgd"  # or "adamw"
    lr0: float = 0.01
    lrf: float = 0.01  # final lr = lr0 · lrf
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    warmup_bias_lr: float = 0.1
    ema: bool = True
    eval_every: int = 1
    seed: int = 0
    workers: int = 0
    threads: int = 0  # torch intra-op threads; 0 = the free cores, re-checked every epoch (edgeprune.utils.threads)
    channels_last: bool = True  # NHWC: about 25 % faster training on a 2-core CPU (oneDNN convolutions)
    sparsity: str = "none"  # none | bn-l1 | l1rr | heatmap (edgeprune.train.sparsity)
    sparsity_lambda: float = 1e-3
    attention_weight: float = 0.0  # > 0: feature-attention loss against the dense starting model (L1RR)
    kd_weight: float = 1.0  # with a teacher: loss = detection loss + kd_weight · DetectionKD (edgeprune.train.distill)
    kd_temperature: float = 1.0
    kd_box_weight: float = LossGains.box  # the KD box term's weight (why 0.05: edgeprune.train.distill)
    feature_kd: str = "none"  # with a teacher: none | mse | cwd on the neck's outputs (train.distill.FeatureKD)
    feature_kd_weight: float = 1.0
    self_reflection: float = 0.0  # a_T > 0: the student's previous-epoch predictions as soft targets, a_t = a_T·t/T


class ModelEMA:
    """Exponential moving average of the weights with YOLOv5's ramp: decay · (1 − exp(−updates / tau))."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0) -> None:
        self.ema = copy.deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, updates
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Three groups as in YOLOv5: conv weights (decayed), norm weights and biases (not decayed)."""
    decay, no_decay, biases = [], [], []
    for module in model.modules():
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            biases.append(module.bias)
        if isinstance(module, nn.modules.batchnorm._NormBase):
            no_decay.append(module.weight)
        elif isinstance(getattr(module, "weight", None), nn.Parameter):
            decay.append(module.weight)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(no_decay, lr=cfg.lr0, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(no_decay, lr=cfg.lr0, betas=(cfg.momentum, 0.999), weight_decay=0.0)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', not {cfg.optimizer!r}")
    opt.add_param_group({"params": decay, "weight_decay": cfg.weight_decay})
    opt.add_param_group({"params": biases, "weight_decay": 0.0})
    return opt


def cosine_factor(epoch: float, epochs: int, lrf: float) -> float:
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


def set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, it: int, iters_per_epoch: int) -> None:
    """Warm-up: the bias group falls from warmup_bias_lr, the others rise from 0; then cosine per iteration."""
    epoch = it / iters_per_epoch
    target = cfg.lr0 * cosine_factor(epoch, cfg.epochs, cfg.lrf)
    warmup_iters = round(cfg.warmup_epochs * iters_per_epoch)  # 0: none (1 gave the biases lr 0.1 once)
    for j, group in enumerate(opt.param_groups):
        if it < warmup_iters:
            start = cfg.warmup_bias_lr if j == 2 else 0.0
            group["lr"] = start + (target - start) * it / warmup_iters
        else:
            group["lr"] = target


def fitness(metrics: dict) -> float:
    return 0.1 * metrics["map50"] + 0.9 * metrics["map"]


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))  # epochs without validation leave blanks
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


class Trainer:
    """Holds the state of one training run so that it can be checkpointed and resumed."""

    def __init__(self, model: nn.Module, train_samples: list, val_samples: list, cfg: TrainConfig,
                 run_dir: str | Path, progress: bool = True, teacher: nn.Module | None = None) -> None:
        self.threads = TorchThreads(cfg.threads, log=tqdm.write)
        torch.manual_seed(cfg.seed)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.cfg, self.progress = model, cfg, progress
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_loader = build_loader(train_samples, cfg.img_size, cfg.batch_size, augment=True, shuffle=True,
                                         seed=cfg.seed, workers=cfg.workers)
        self.val_loader = build_loader(val_samples, cfg.img_size, cfg.batch_size, augment=False, shuffle=False,
                                       seed=cfg.seed, workers=cfg.workers) if val_samples else None
        self.criterion = detection_loss(model, cfg.img_size)
        self.optimizer = build_optimizer(model, cfg)
        self.ema = ModelEMA(model) if cfg.ema else None
        self.sparsifier = Sparsifier(model, cfg.sparsity, cfg.sparsity_lambda) if cfg.sparsity != "none" else None
        self._set_up_recovery(teacher)
        self.previous: nn.Module | None = None  # the student as it was at the end of the last epoch
        self.start_epoch, self.best, self.rows = 0, -1.0, []

    def _set_up_recovery(self, teacher: nn.Module | None) -> None:
        """The losses beside detection: KD from a teacher (response, optional feature), self-reflection, and the
        feature-attention loss against the model as training starts."""
        model, cfg = self.model, self.cfg
        self.teacher, self.kd, self.feature_kd = None, None, None
        if cfg.feature_kd != "none" and teacher is not None and not isinstance(model, YOLOv5):
            raise ValueError(f"feature KD (--feature-kd) is built for YOLOv5's neck; distil {type(model).__name__} "
                             f"with the response KD alone (--feature-kd none)")
        if teacher is not None:
            # a frozen copy: the caller's model stays as it was (it may be pruned or trained again later)
            self.teacher = copy.deepcopy(teacher).to(memory_format=self.memory_format).eval().requires_grad_(False)
            self.teacher.head.train()  # raw Detect maps, with the teacher's batch norms frozen in eval mode
            self.kd = self._distillation()
        if teacher is not None and cfg.feature_kd != "none":
            self.feature_kd = FeatureKD([m.in_channels for m in model.head.m], [m.in_channels for m in teacher.head.m],
                                        cfg.feature_kd, cfg.kd_temperature)
            if any(True for _ in self.feature_kd.parameters()):  # adapters, where the student is narrower
                self.optimizer.add_param_group({"params": list(self.feature_kd.parameters()),
                                                "weight_decay": cfg.weight_decay if cfg.optimizer == "sgd" else 0.0})
            self.student_feats, self.teacher_feats = HeadInputs(model), HeadInputs(self.teacher)
        self.reflect = self._distillation() if cfg.self_reflection > 0 else None
        self.dense = None
        if cfg.attention_weight > 0:  # the model as training starts: what the sparse model must keep attending to
            self.dense = copy.deepcopy(model).eval().requires_grad_(False)
            self.student_feats, self.dense_feats = HeadInputs(model), HeadInputs(self.dense)

    def _distillation(self) -> nn.Module:
        """The response KD of the model's head: anchor-based (YOLOv5) or anchor-free (YOLOv8 / YOLO11)."""
        if isinstance(self.model, YOLOv8):
            return AnchorFreeKD(self.model.head.reg_max, temperature=self.cfg.kd_temperature)
        return DetectionKD(w_box=self.cfg.kd_box_weight, temperature=self.cfg.kd_temperature)

    def resume(self) -> None:
        """Continue from `last.pt` in the run directory."""
        path = self.run_dir / "last.pt"
        ckpt = load_checkpoint(path)
        state = ckpt.get("train")
        if not state:
            raise CheckpointError(f"{path}: has no training state to resume from (was it saved by `train`?)")
        load_weights(self.model, state["model"], source=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            load_weights(self.ema.ema, state["ema"], source=str(path))
            self.ema.updates = state["ema_updates"]
        if self.sparsifier is not None:
            self.sparsifier.load_state_dict(state.get("sparsity"))
        if self.feature_kd is not None and state.get("feature_kd") is not None:
            self.feature_kd.load_state_dict(state["feature_kd"])
        if self.dense is not None and state.get("dense") is not None:
            load_weights(self.dense, state["dense"], source=str(path))
        self.start_epoch, self.best, self.rows = state["epoch"] + 1, state["best_fitness"], state["rows"]
        self.train_loader.sampler.epoch = self.start_epoch  # the same shuffles and augmentations as without the kill

    def fit(self) -> dict:
        cfg, nb = self.cfg, len(self.train_loader)
        for epoch in range(self.start_epoch, cfg.epochs):
            t0, load = time.perf_counter(), LoadMeter().start()
            losses = self._train_epoch(epoch, nb)
            row = {"epoch": epoch + 1, **{f"{name}_loss": v for name, v in zip(self.criterion.parts, losses)},
                   "lr": self.optimizer.param_groups[0]["lr"]}
            if self.kd is not None:
                row.update({f"kd_{name}": v for name, v in zip(self.kd.parts, self.kd_losses)})
            row["train_seconds"] = time.perf_counter() - t0
            row["images_per_second"] = len(self.train_loader.dataset) / row["train_seconds"]
            row["threads"], row["load_elsewhere"] = self.threads.threads, load.stop()
            self.threads.update(load.others)
            if self.sparsifier is not None:
                shares = layer_sparsity(self.model, 0.01, relative=True)
                row["gamma_l1"] = self.sparsifier.penalty()
                row["sparse_share"] = sum(shares.values()) / max(len(shares), 1)
            last = epoch + 1 == cfg.epochs
            if self.val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
                m = evaluate(self.eval_model, self.val_loader)
                row.update({k: m[k] for k in ("precision", "recall", "map50", "map")})
            self.rows.append(row)
            self._save(epoch, row)
        if self.sparsifier is not None:
            self._sparsity_report()
        return self.rows[-1] if self.rows else {}

    def _sparsity_report(self) -> None:
        """gamma.png (per-layer |γ| histograms) and sparsity.json (per-layer share under 1 % of the layer's largest
        |γ|, and how even that is across layers) in the run directory."""
        shares = layer_sparsity(self.eval_model, 0.01, relative=True)
        write_json(self.run_dir / "sparsity.json", {"method": self.cfg.sparsity, "lambda": self.cfg.sparsity_lambda,
                                                    "threshold": "0.01 x layer max |gamma|", "layers": shares,
                                                    "mean_share": sum(shares.values()) / max(len(shares), 1),
                                                    "evenness": evenness(shares)})
        plot_gamma(self.eval_model, self.run_dir / "gamma.png")

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.ema if self.ema is not None else self.model

    def _train_epoch(self, epoch: int, nb: int) -> list[float]:
        self.model.train()
        total = torch.zeros(len(self.criterion.parts))
        kd_total = torch.zeros(len(self.kd.parts) if self.kd is not None else 3)
        a_t = self._reflection_weight(epoch)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", disable=not self.progress)
        for i, (images, targets, _) in enumerate(bar):
            set_lr(self.optimizer, self.cfg, epoch * nb + i, nb)
            images = images.contiguous(memory_format=self.memory_format)
            out = self.model(images)
            loss, parts = self.criterion(out, targets)
            if self.dense is not None:
                with torch.no_grad():
                    self.dense(images)
                fa = feature_attention_loss(self.student_feats.features, self.dense_feats.features, targets)
                loss = loss + self.cfg.attention_weight * fa * images.shape[0]
            if a_t > 0:  # (1 − a_t)·y + a_t·p_{t−1}: the detection loss and KD from last epoch's self
                with torch.no_grad():
                    p_prev = self.previous(images)
                loss = (1 - a_t) * loss + a_t * self.reflect(out, p_prev)[0] * images.shape[0]
            if self.kd is not None:
                with torch.no_grad():
                    t_out = self.teacher(images)
                kd_loss, kd_parts = self.kd(out, t_out)
                if self.feature_kd is not None:
                    kd_loss = kd_loss + self.cfg.feature_kd_weight * self.feature_kd(self.student_feats.features,
                                                                                     self.teacher_feats.features)
                loss = loss + self.cfg.kd_weight * kd_loss * images.shape[0]  # the detection loss is × batch too
                kd_total += kd_parts
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
            if self.sparsifier is not None:  # after clipping, which must not shrink the penalty
                self.sparsifier.apply(epoch * nb + i, self.cfg.epochs * nb)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total += parts
            bar.set_postfix({name: f"{v:.4f}" for name, v in zip(self.criterion.parts, parts.tolist())})
        self.kd_losses = (kd_total / max(nb, 1)).tolist()
        return (total / max(nb, 1)).tolist()

    def _reflection_weight(self, epoch: int) -> float:
        """a_t for this epoch (0 in the first: there is no previous self yet), and the frozen previous self."""
        if self.reflect is None or epoch == 0:
            return 0.0
        self.previous = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.previous.head.train()  # raw maps, batch norms frozen
        return self.cfg.self_reflection * epoch / max(self.cfg.epochs - 1, 1)

    def _save(self, epoch: int, row: dict) -> None:
        score = fitness(row) if "map" in row else -1.0
        improved = score > self.best
        self.best = max(self.best, score)
        train_state = {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.ema.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "best_fitness": self.best, "rows": self.rows, "config": asdict(self.cfg),
            "sparsity": self.sparsifier.state_dict() if self.sparsifier is not None else None,
            "dense": self.dense.state_dict() if self.dense is not None else None,
            "feature_kd": self.feature_kd.state_dict() if self.feature_kd is not None else None,
        }
        weights = self.eval_model.state_dict()
        save_checkpoint(self.run_dir / "last.pt", self.model, metrics=row, train=train_state, state_dict=weights)
        if improved or self.val_loader is None:
            save_checkpoint(self.run_dir / "best.pt", self.model, metrics=row, state_dict=weights)
        write_csv(self.run_dir / "metrics.csv", self.rows)


def train(model: nn.Module, train_samples: list, val_samples: list, cfg: TrainConfig, run_dir: str | Path,
          resume: bool = False, progress: bool = True, teacher: nn.Module | None = None) -> dict:
    """Train `model` (distilling `teacher` when given) and return the last epoch's metrics row; checkpoints land
    in `run_dir`."""
    trainer = Trainer(model, train_samples, val_samples, cfg, run_dir, progress, teacher)
    if resume:
        trainer.resume()
    return trainer.fit()
