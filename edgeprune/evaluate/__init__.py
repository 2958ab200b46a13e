"""Evaluation: NMS and box ops, mAP through pycocotools, params and FLOPs."""

from .accuracy import evaluate, predict
from .complexity import count_flops, count_params

__all__ = ["count_flops", "count_params", "evaluate", "predict"]
