"""Figures people would rather look at than read. matplotlib is imported lazily, with the Agg canvas (no display)."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_training(metrics_csv: str | Path, out_png: str | Path) -> Path:
    """Losses and validation mAP per epoch from a training run's metrics.csv."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(csv.DictReader(Path(metrics_csv).open()))
    if not rows:
        raise ValueError(f"{metrics_csv}: no epochs recorded yet")
    epochs = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_map = fig.subplots(1, 2)
    for key in [k for k in rows[0] if k.endswith("_loss") and not k.startswith("kd_")]:
        ax_loss.plot(epochs, [float(r[key]) for r in rows], label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax_loss.legend()
    evaluated = [r for r in rows if r.get("map50") not in (None, "")]
    for key, label in (("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"), ("recall", "recall")):
        ax_map.plot([int(r["epoch"]) for r in evaluated], [float(r[key]) for r in evaluated], marker=".",
                    label=label)
    ax_map.set(xlabel="epoch", ylim=(0, 1), title="validation")
    ax_map.grid(alpha=0.3)
    ax_map.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    return out_png
