"""The figures of the demo report (edgeprune.report.page): channel widths per group, latency per block, the BatchNorm γ
summary, detections.

matplotlib is imported lazily with the Agg canvas (no display), as in edgeprune.report.plots. Every figure is saved at
`DPI`; the γ summary and the detections are at most `PAGE_WIDTH_IN` wide, so the page's column shows them at
their natural size, and all their text is at least `MIN_FONT_PT` (10 pt at 100 dpi: 14 px on the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DPI", "MIN_FONT_PT", "Panel", "detection_panels", "detections_figure", "gamma_summary_figure",
           "plot_detections", "plot_gamma_summary", "plot_layer_blocks", "plot_widths"]

BASE_COLOR, PRUNED_COLOR = "#9aa5b1", "#1f6feb"
TRUTH_COLOR, PRED_COLOR = "#2ea043", "#f0883e"
MAX_DRAWN = 50  # detections drawn per image, the most confident first
MAX_LABELED = 8  # score labels per image, the most confident first (more would cover the image)
LABEL_PX = (38, 21)  # a score label's size on the page ("0.93" at MIN_FONT_PT with its padding), with a margin
DPI, PAGE_WIDTH_IN = 100, 10.0  # 1000 px: the page's column (1060 px less padding) shows it unscaled
MIN_FONT_PT, FONT_PT = 10, 11  # the smallest text of the γ summary and the detections; their default text
GAMMA_FLOOR = 1e-6  # |γ| under this are drawn at it (log axes)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _legible():
    """rc settings for the figures whose text must be legible: every default size at least MIN_FONT_PT."""
    import matplotlib

    return matplotlib.rc_context({"font.size": FONT_PT, "axes.titlesize": FONT_PT + 1, "axes.labelsize": FONT_PT,
                                  "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT,
                                  "legend.fontsize": MIN_FONT_PT, "figure.titlesize": FONT_PT + 1})


def _save(fig, out_png: str | Path, tight: bool = True) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(out_png)
    return out_png


def plot_widths(groups: list[str], before: list[int], after: list[int], out_png: str | Path) -> Path:
    """Channels of every prunable group before and after pruning, one bar pair per group."""
    fig = _figure(min(max(8.0, 0.2 * len(groups) + 2), PAGE_WIDTH_IN), 4.2)
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

    from ..checkpoint import load_model
    from ..data.dataset import DetectionDataset, collate
    from ..data.formats import load_dataset
    from ..evaluate.accuracy import predict, targets_per_image

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


def _blocks(names: list[str]) -> list[tuple[int, str]]:
    """(index of the first layer, block) for every run of layers in one block (the second name level: stage2)."""
    out: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        block = ".".join(name.split(".")[:2])
        if not out or out[-1][1] != block:
            out.append((i, block))
    return out


def _block_ticks(blocks: list[str]) -> list[str]:
    """Tick labels: the block's last part (stage2), the top module too at its first block (backbone.stem)."""
    tops = [b.split(".")[0] for b in blocks]
    return [b if i == 0 or tops[i - 1] != tops[i] else b.split(".", 1)[-1] for i, b in enumerate(blocks)]


def gamma_summary_figure(layers: list[tuple[str, np.ndarray]]):
    """Two panels: |γ| percentiles (10, 50, 90) of each BatchNorm layer in network order, and one histogram of all
    |γ| on a log axis. `layers`: (BatchNorm name, its |γ|) in network order."""
    names, values = [n for n, _ in layers], [np.maximum(np.abs(v), GAMMA_FLOOR) for _, v in layers]
    p10, p50, p90 = (np.array([np.percentile(v, q) for v in values]) for q in (10, 50, 90))
    with _legible():
        fig = _figure(PAGE_WIDTH_IN, 8.6)
        top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.2, 1.0]})
        x = np.arange(len(names))
        top.fill_between(x, p10, p90, color=PRUNED_COLOR, alpha=0.18, lw=0, label="10th–90th percentile")
        for p, style in ((p10, ":"), (p90, ":")):
            top.plot(x, p, color=PRUNED_COLOR, ls=style, lw=1.0)
        top.plot(x, p50, color=PRUNED_COLOR, marker="o", ms=4, lw=1.5, label="median")
        blocks = _blocks(names)
        for start, _ in blocks[1:]:
            top.axvline(start - 0.5, color="#d0d7de", lw=0.8, zorder=0)
        top.set_xticks([b for b, _ in blocks], _block_ticks([name for _, name in blocks]), rotation=90)
        top.set_yscale("log")
        top.set(xlim=(-0.5, len(names) - 0.5), ylabel="|γ|",
                title=f"|γ| per BatchNorm layer, in network order ({len(names)} layers; ticks: first layer of "
                      "each block)")
        top.grid(axis="y", alpha=0.3)
        top.legend(loc="best")
        _all_gamma(bottom, np.concatenate(values))
        fig.tight_layout()
    return fig


def _all_gamma(ax, values: np.ndarray) -> None:
    lo, hi = float(values.min()), float(values.max())
    lo, hi = (lo / 2, hi * 2) if hi / lo < 4 else (lo, hi)
    ax.hist(values, bins=np.geomspace(lo, hi, 60), color=BASE_COLOR)
    for q, style in ((10, ":"), (50, "-"), (90, "--")):
        ax.axvline(np.percentile(values, q), color=PRUNED_COLOR, ls=style, lw=1.5,
                   label=f"{q}th percentile: {np.percentile(values, q):.3g}")
    ax.set_xscale("log")
    floor = f"; under {GAMMA_FLOOR:g} drawn at {GAMMA_FLOOR:g}" if values.min() <= GAMMA_FLOOR else ""
    ax.set(xlabel=f"|γ| (log scale{floor})", ylabel="channels", title=f"all {len(values)} channels")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best")


def plot_gamma_summary(layers: list[tuple[str, np.ndarray]], out_png: str | Path) -> Path:
    """gamma_summary_figure saved to out_png."""
    with _legible():
        return _save(gamma_summary_figure(layers), out_png, tight=False)


def _score_labels(dets: np.ndarray, w: float, px: float) -> list[tuple[float, float, str, bool]]:
    """(x, y, text, inside) of the score labels to draw: the most confident detections first, at most MAX_LABELED,
    each skipped if it would overlap one already placed. `px`: display pixels per image pixel."""
    lw, lh = LABEL_PX[0] / px, LABEL_PX[1] / px
    placed: list[tuple[float, float]] = []
    out = []
    for x1, y1, _, _, score, *_ in dets:
        inside = y1 < lh  # no room above the box: the label goes inside its top edge
        x, y = min(max(x1, 0.0), w - lw), max(y1, 0.0)
        top = y if inside else y - lh
        if any(abs(x - px0) < lw and abs(top - py0) < lh for px0, py0 in placed):
            continue
        placed.append((x, top))
        out.append((x, y, f"{score:.2f}", inside))
        if len(out) == MAX_LABELED:
            break
    return out


def _draw(ax, panel: Panel, px: float) -> int:
    """The image, true boxes dashed, detections solid, score labels on the most confident that do not overlap;
    returns how many are labelled. `px`: display pixels per image pixel."""
    from matplotlib.patches import Rectangle

    h, w = panel.image.shape[:2]
    ax.imshow(panel.image)
    for x1, y1, x2, y2 in panel.truth:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=TRUTH_COLOR, lw=1.5, ls="--"))
    dets = panel.detections[np.argsort(-panel.detections[:, 4], kind="stable")] if len(panel.detections) else []
    for x1, y1, x2, y2, *_ in dets:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=PRED_COLOR, lw=1.5))
    labels = _score_labels(np.asarray(dets), w, px) if len(dets) else []
    for x, y, text, inside in labels:
        ax.text(x, y, text, fontsize=MIN_FONT_PT, color="black", va="top" if inside else "bottom", clip_on=True,
                bbox={"boxstyle": "square,pad=0.15", "fc": PRED_COLOR, "ec": "none", "alpha": 0.9})
    ax.set(xlim=(0, w), ylim=(h, 0), xticks=[], yticks=[])
    return len(labels)


def _panel_title(label: str, n: int, labelled: int) -> str:
    shown = f", {labelled} scores shown" if labelled < n else ""
    noun = "detection" if n == 1 else "detections"
    return f"{label}: {n}{' (most confident)' if n >= MAX_DRAWN else ''} {noun}{shown}"


def detections_figure(panels: list[tuple[str, list[Panel]]], conf: float = 0.25):
    """A grid: one column per model, one row per image (the models side by side on the same image)."""
    from matplotlib.lines import Line2D

    rows = max(len(row) for _, row in panels)
    cols = len(panels)
    side = min(4.6, (PAGE_WIDTH_IN - 0.4) / cols)
    with _legible():
        fig = _figure(side * cols + 0.4, (side + 0.45) * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False)
        for c, (label, row) in enumerate(panels):
            for r, panel in enumerate(row):
                labelled = _draw(axes[r, c], panel, 0.95 * side * DPI / max(panel.image.shape[:2]))
                axes[r, c].set_title(_panel_title(label, len(panel.detections), labelled), fontsize=MIN_FONT_PT)
            for r in range(len(row), rows):
                axes[r, c].axis("off")
        fig.legend(handles=[Line2D([], [], color=TRUTH_COLOR, ls="--", label="ground truth"),
                            Line2D([], [], color=PRED_COLOR, label=f"detection (score ≥ {conf})")],
                   loc="lower center", ncol=2, fontsize=FONT_PT)
        fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    return fig


def plot_detections(panels: list[tuple[str, list[Panel]]], out_png: str | Path, conf: float = 0.25) -> Path:
    """detections_figure saved to out_png: true boxes dashed, detections solid with scores."""
    with _legible():
        return _save(detections_figure(panels, conf), out_png, tight=False)
