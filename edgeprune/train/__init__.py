"""Training and recovery: the trainer, sparsity on BatchNorm scales, detection distillation."""

from .trainer import TrainConfig, Trainer, train

__all__ = ["TrainConfig", "Trainer", "train"]
