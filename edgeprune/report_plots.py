"""The figures of the demo report (edgeprune.report): channel widths per group, latency per block, detections.

matplotlib is imported lazily with the Agg canvas (no display), as in edgeprune.plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Panel", "detection_panels", "plot_detections", "plot_layer_blocks", "plot_widths"]

BASE_COLOR, PRUNED_COLOR = "#9aa5b1", "#1f6feb"
TRUTH_COLOR, PRED_COLOR = "#2ea043", "#f0883e"
MAX_DRAWN = 50  # detections drawn per image, the most confident first


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_png)
    return out_png


def plot_widths(groups: list[str], before: list[int], after: list[int], out_png: str | Path) -> Path:
    """Channels of every prunable group before and after pruning, one bar pair per group."""
    fig = _figure(max(8.0, 0.2 * len(groups) + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(len(groups))
    ax.bar(x, before, width=0.8, color=BASE_COLOR, label="before")
    ax.bar(x, after, width=0.5, color=PRUNED_COLOR, label="after")
    ax.set_xticks(x, [g.removesuffix(".conv") for g in groups], rotation=90, fontsize=7)
    ax.set(ylabel="output channels", xlim=(-0.6, len(groups) - 0.4), title="channels per group")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, out_png)


def plot_layer_blocks(blocks: list[str], base_ms: list[float], pruned_ms: list[float], labels: tuple[str, str],
                      out_png: str | Path) -> Path:
    """Horizontal bars: time per module block of the base and the pruned model (first block on top)."""
    fig = _figure(8.0, 0.32 * len(blocks) + 1.4)
    ax = fig.subplots()
    y = np.arange(len(blocks))
    ax.barh(y - 0.2, base_ms, height=0.4, color=BASE_COLOR, label=labels[0])
    ax.barh(y + 0.2, pruned_ms, height=0.4, color=PRUNED_COLOR, label=labels[1])
    ax.set_yticks(y, blocks, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="ms (sum of node kernel times, median of runs)", title="latency per block")
    ax.grid(axis="x", alpha=0.3)
    ax.legend()
    return _save(fig, out_png)


@dataclass
class Panel:
    """One image as the model sees it (letterboxed, HxWx3 in [0, 1]), its true boxes and a model's detections."""

    image: np.ndarray
    truth: np.ndarray  # [n, 4] xyxy, input pixels
    detections: np.ndarray  # [m, 6] xyxy, conf, cls


def detection_panels(data_yaml: str | Path, checkpoints: list[tuple[str, Path]], img_size: int, images: int = 4,
                     conf: float = 0.25) -> list[tuple[str, list[Panel]]]:
    """(label, panels) of each (label, checkpoint): detections on the first `images` validation images."""
    import torch

    from .checkpoint import load_model
    from .data.dataset import DetectionDataset, collate
    from .data.formats import load_dataset
    from .evaluate import predict, targets_per_image

    samples = load_dataset(data_yaml).val[:images]
    dataset = DetectionDataset(samples, img_size, augment=False)
    batch, targets, _ = collate([dataset[i] for i in range(len(dataset))])
    truths = targets_per_image(targets, len(batch), img_size)
    pictures = [image.permute(1, 2, 0).numpy() for image in batch]
    out, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # a few images: threads only add overhead, and slow down many times on a busy CPU
    try:
        for label, path in checkpoints:
            dets = predict(load_model(path), batch, conf_thres=conf, max_det=MAX_DRAWN)
            out.append((label, [Panel(pic, boxes, d.numpy()) for pic, (boxes, _), d in zip(pictures, truths, dets)]))
    finally:
        torch.set_num_threads(threads)
    return out


def _draw(ax, panel: Panel) -> None:
    from matplotlib.patches import Rectangle

    h, w = panel.image.shape[:2]
    ax.imshow(panel.image)
    for x1, y1, x2, y2 in panel.truth:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=TRUTH_COLOR, lw=1.2, ls="--"))
    for x1, y1, x2, y2, score, _ in panel.detections:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=PRED_COLOR, lw=1.2))
        ax.text(max(x1, 0), max(y1, 0), f"{score:.2f}", color=PRED_COLOR, fontsize=6, va="bottom", clip_on=True)
    ax.set(xlim=(0, w), ylim=(h, 0), xticks=[], yticks=[])


def plot_detections(panels: list[tuple[str, list[Panel]]], out_png: str | Path, conf: float = 0.25) -> Path:
    """A grid: one row per model, one column per image; true boxes dashed, detections solid with scores."""
    from matplotlib.lines import Line2D

    cols = max(len(row) for _, row in panels)
    fig = _figure(3.0 * cols, 3.1 * len(panels) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(panels), cols, squeeze=False))
    for r, (label, row) in enumerate(panels):
        for c, panel in enumerate(row):
            _draw(axes[r, c], panel)
            n = len(panel.detections)
            axes[r, c].set_title(f"{label}: {n}{' (most confident)' if n >= MAX_DRAWN else ''} detections",
                                 fontsize=8)
        for c in range(len(row), cols):
            axes[r, c].axis("off")
    fig.legend(handles=[Line2D([], [], color=TRUTH_COLOR, ls="--", label="ground truth"),
                        Line2D([], [], color=PRED_COLOR, label=f"detection (score ≥ {conf})")],
               loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png
