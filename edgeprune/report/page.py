"""The demo's report: one offline page (`report.html`) and the same content in Markdown (`report.md`).

`write_report(run_dir)` reads what `edgeprune demo` leaves in its run directory:

    results.json              the before/after rows (required); its `files` name the plan and the pruned checkpoint
    training.png              training curves
    the cut                   results.json's `chosen.cut`: goal, predicted and measured latency of the allocated cut
    search/pareto.png         or, for a demo run with `--method search`, the search's Pareto front
    the plan                  every group's width before, the channels it keeps (prune/pruned.plan.json, or
                              search/best.plan.json)
    model.onnx, pruned.onnx   timed node by node with onnxruntime's profiler (1 thread)
    train/best.pt             (search runs) the base after sparsity training: its BatchNorm |γ|, per layer and all
    train/gamma.png           the training's per-layer γ histograms (folded under the γ summary)
    data/data.yaml, train/best.pt, the pruned checkpoint    detections of both models on 4 validation images

and writes `report.html`, `report.md` and, under `report/`, the figures (copied or drawn) and `layers.json` (the
per-node and per-block latency). A missing input other than results.json leaves its section saying what is
missing. The page has inline CSS, no scripts and no network references; images are relative paths. Long parts (the
channel table, the per-layer histograms) are folded in <details>, closed until clicked, in both files.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..latency.ort_profile import OTHER, by_block, layer_times
from ..utils.files import atomic_write_text, write_json
from .tables import format_value, markdown_table

__all__ = ["COLUMNS", "format_value", "summary_rows", "write_report"]

COLUMNS = {"model": "model", "params": "params", "GFLOPs": "GFLOPs", "latency_ms": "latency (ms)",
           "speedup": "speed-up", "mAP50": "mAP@0.5", "mAP50-95": "mAP@0.5:0.95"}
ASSETS = "report"
DETECTION_IMAGES, DETECTION_CONF = 4, 0.25
PROFILE_RUNS, PROFILE_WARMUP = 20, 5


def summary_rows(results: dict) -> list[dict[str, str]]:
    """The before/after table: results.json rows, formatted, keyed by column titles."""
    return [{title: format_value(key, row.get(key)) for key, title in COLUMNS.items()} for row in results["rows"]]


@dataclass
class Text:
    text: str
    note: bool = False  # a remark, such as a missing input


@dataclass
class Table:
    rows: list[dict[str, str]]
    id: str = ""
    compact: bool = False


@dataclass
class Image:
    path: str  # relative to the run directory
    alt: str


@dataclass
class Fold:
    """Parts shown under a one-line summary, closed until clicked (<details>; GitHub renders it in Markdown too)."""

    summary: str
    parts: list
    id: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    parts: list = field(default_factory=list)


def _copy(run_dir: Path, source: str, name: str, what: str, hint: str) -> list:
    """Copy an existing figure into report/, or say that it is missing."""
    src = run_dir / source
    if not src.is_file():
        return [Text(f"No {what}: {source} is missing. {hint}", note=True)]
    shutil.copy2(src, run_dir / ASSETS / name)
    return [Image(f"{ASSETS}/{name}", what)]


def summary_section(results: dict) -> Section:
    rows = results["rows"]
    parts: list = [Table(summary_rows(results), id="summary")]
    if len(rows) >= 2:
        parts.append(Text(f"Latency: {results.get('backend', 'onnxruntime CPU')}, input {results.get('imgsz')} px; "
                          f"speed-up = the first row's latency / the row's latency."))
    return Section("Before and after", "summary", parts)


def cut_section(results: dict) -> Section:
    """The allocated cut: the latency it aimed at, what the table predicted and what the backend measured."""
    section = Section("Cut to the target", "cut")
    chosen = results.get("chosen") or {}
    cut = chosen.get("cut")
    if not cut:
        section.parts.append(Text("No cut record: results.json has no chosen.cut (did the prune step finish?).",
                                  note=True))
        return section
    rows = [{"": "base", "latency (ms)": format_value("latency_ms", chosen.get("base_ms"))},
            {"": "goal", "latency (ms)": format_value("latency_ms", cut["goal_ms"])},
            {"": "predicted by the latency table", "latency (ms)": format_value("latency_ms", cut["predicted_ms"])},
            {"": "measured", "latency (ms)": format_value("latency_ms", cut["measured_ms"])}]
    met = "met" if results.get("met_limits", True) else "MISSED"
    section.parts += [Table(rows, id="cut"), Text(
        f"One cut to the target ({met}): the channels of least Taylor importance per millisecond saved, as the "
        f"backend's calibrated latency table predicts (its figures drift from the backend's; the cut aims at the "
        f"goal rescaled by the base's predicted / measured latency), re-aimed up to 3 times until the measured "
        f"latency meets the goal; then the whole recovery (KD from the base). The before/after table above is "
        f"measured again, back to back.")]
    return section


def widths_section(run_dir: Path, results: dict) -> Section:
    from ..prune.plan import Plan
    from .figures import plot_widths

    section = Section("Channels per group", "widths")
    named = (results.get("files") or {}).get("plan")
    candidates = [run_dir / named] if named else [run_dir / "search" / n for n in ("best.plan.json",
                                                                                     "closest.plan.json")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        section.parts.append(Text(f"No plan: {candidates[0].relative_to(run_dir)} is missing (did the pruning "
                                  f"step finish?).", note=True))
        return section
    if not results.get("met_limits", True) or path.name.startswith("closest"):
        section.parts.append(Text("This plan missed the latency target (or the search's hard limits): it is the "
                                  "closest one.", note=True))
    plan = Plan.load(path)
    groups = list(plan.widths)
    after = [plan.kept_width(g) for g in groups]
    before = [plan.widths[g] for g in groups]
    plot_widths(groups, before, after, run_dir / ASSETS / "widths.png")
    rows = [{"group": g, "before": str(b), "after": str(a), "kept": f"{a / b:.0%}"}
            for g, b, a in zip(groups, before, after)]
    section.parts += [
        Text(f"{plan.kept} of {plan.total} channels kept over {len(groups)} coupled-channel groups "
             f"(pruning ratio {plan.ratio:.2f})."),
        Image(f"{ASSETS}/widths.png", "channels per group before and after pruning"),
        Fold(f"Channels of each of the {len(groups)} groups (table)", [Table(rows, id="groups", compact=True)],
             id="groups-fold")]
    return section


def _profile(onnx: Path, imgsz: int) -> dict:
    nodes = layer_times(onnx, (1, 3, imgsz, imgsz), threads=1, runs=PROFILE_RUNS, warmup=PROFILE_WARMUP)
    return {"file": onnx.name, "total_ms": sum(nodes.values()), "blocks": by_block(nodes), "nodes": nodes}


def latency_section(run_dir: Path, imgsz: int, labels: tuple[str, str], log=print) -> Section:
    from .figures import plot_layer_blocks

    section = Section("Latency per block", "layers")
    files = [run_dir / "model.onnx", run_dir / "pruned.onnx"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        section.parts.append(Text(f"No per-layer latency: {', '.join(missing)} missing.", note=True))
        return section
    log("report: profiling model.onnx and pruned.onnx node by node (onnxruntime, 1 thread)")
    base, pruned = (_profile(f, imgsz) for f in files)
    write_json(run_dir / ASSETS / "layers.json", {"backend": "onnxruntime CPU profiler, 1 thread",
                                                  "input_shape": [1, 3, imgsz, imgsz], "unit": "ms",
                                                  "base": {"model": labels[0], **base},
                                                  "pruned": {"model": labels[1], **pruned}})
    blocks = _grouped(list(dict.fromkeys([*base["blocks"], *pruned["blocks"]])))
    b_ms, p_ms = ([m["blocks"].get(k, 0.0) for k in blocks] for m in (base, pruned))
    plot_layer_blocks(blocks, b_ms, p_ms, labels, run_dir / ASSETS / "layers.png")
    rows = [_block_row(k, b, p) for k, b, p in zip(blocks, b_ms, p_ms)]
    rows.append(_block_row("total", base["total_ms"], pruned["total_ms"]))
    section.parts += [
        Text("Sum of node kernel times per module block, from onnxruntime's profiler (CPU, 1 thread, median of "
             f"{PROFILE_RUNS} runs after {PROFILE_WARMUP} warm-up runs). Executor overhead between nodes is not "
             "included, so totals are a little under the latency in the table above. A block named after a top "
             "module alone (neck, head) holds that module's own operations (concatenations, the head's box "
             "decoding); 'other' holds the layout conversions onnxruntime inserts. Per-node figures: "
             "report/layers.json."),
        Image(f"{ASSETS}/layers.png", "latency per block, base and pruned"),
        Table(rows, id="blocks", compact=True)]
    return section


def _grouped(blocks: list[str]) -> list[str]:
    """Blocks in order of run, kept together under their top module ("neck" beside "neck.out3"), "other" last."""
    tops = list(dict.fromkeys(b.split(".")[0] for b in blocks if b != OTHER))
    rank = {top: i for i, top in enumerate(tops + [OTHER])}
    return sorted(blocks, key=lambda b: rank[b.split(".")[0]])  # stable: run order within a top module


def _block_row(block: str, base_ms: float, pruned_ms: float) -> dict[str, str]:
    ratio = base_ms / pruned_ms if pruned_ms > 0 else None
    return {"block": block, "base (ms)": format_value("block_ms", base_ms),
            "pruned (ms)": format_value("block_ms", pruned_ms), "speed-up": format_value("ratio", ratio)}


def gamma_section(run_dir: Path) -> Section:
    """The γ summary drawn from train/best.pt, and the training's own per-layer histograms folded under it."""
    section = Section("BatchNorm γ", "gamma")
    checkpoint = run_dir / "train" / "best.pt"
    if checkpoint.is_file():
        section.parts += _gamma_summary(checkpoint, run_dir / ASSETS / "gamma_summary.png")
    else:
        section.parts.append(Text("No γ summary: train/best.pt (the base after sparsity training) is missing.",
                                  note=True))
    grid = _copy(run_dir, "train/gamma.png", "gamma.png", "per-layer γ histograms of the training",
                 "Training writes them when it runs with --sparsity.")
    section.parts.append(Fold("Per-layer histograms from the training (train/gamma.png)", grid, id="gamma-fold")
                         if isinstance(grid[0], Image) else grid[0])
    return section


def _gamma_summary(checkpoint: Path, out_png: Path) -> list:
    import numpy as np

    from ..checkpoint import CheckpointError, load_model
    from ..train.sparsity import bn_layers
    from .figures import plot_gamma_summary

    try:
        model = load_model(checkpoint)
    except CheckpointError as e:
        return [Text(f"No γ summary: {e}", note=True)]
    layers = [(name, bn.weight.detach().abs().numpy()) for name, bn in bn_layers(model)]
    if not layers:
        return [Text("No γ summary: train/best.pt has no BatchNorm layers.", note=True)]
    plot_gamma_summary(layers, out_png)
    values = np.concatenate([g for _, g in layers])
    small = sum(int((g < 0.01 * g.max()).sum()) for _, g in layers) / len(values)
    return [Text(f"|γ|, the BatchNorm scale factors of the {len(layers)} BatchNorm layers of train/best.pt (the base "
                 f"after sparsity training): channels with small |γ| are the ones BN importance prunes first. Over "
                 f"all {len(values)} channels the median |γ| is {np.median(values):.3g}, and {small:.1%} are under "
                 f"1 % of their layer's largest |γ| (the share train/sparsity.json counts per layer)."),
            Image(f"{ASSETS}/gamma_summary.png", "|γ| percentiles per BatchNorm layer and a histogram of all |γ|")]


def detections_section(run_dir: Path, imgsz: int, labels: tuple[str, str], pruned: str = "finetune/best.pt"
                       ) -> Section:
    from .figures import MAX_LABELED, detection_panels, plot_detections

    section = Section("Detections", "detections")
    data_yaml = run_dir / "data" / "data.yaml"
    checkpoints = [(labels[0], run_dir / "train" / "best.pt"), (labels[1], run_dir / pruned)]
    missing = [str(p.relative_to(run_dir)) for p in [data_yaml, *(c for _, c in checkpoints)] if not p.is_file()]
    if missing:
        section.parts.append(Text(f"No detections: {', '.join(missing)} missing.", note=True))
        return section
    panels = detection_panels(data_yaml, checkpoints, imgsz, DETECTION_IMAGES, DETECTION_CONF)
    plot_detections(panels, run_dir / ASSETS / "detections.png", DETECTION_CONF)
    section.parts += [
        Text(f"The first {DETECTION_IMAGES} validation images at {imgsz} px (letterboxed as the models see them): "
             f"ground truth dashed green, detections with score ≥ {DETECTION_CONF} solid orange, the most "
             f"confident (up to {MAX_LABELED} per image, where their labels do not overlap) with their score; base "
             "and pruned side by side."),
        Image(f"{ASSETS}/detections.png", "detections of the base and the pruned model")]
    return section


def _files_section(results: dict) -> Section | None:
    files = results.get("files")
    if not isinstance(files, dict) or not files:
        return None
    return Section("Files", "files", [Table([{"what": str(k), "file": str(v)} for k, v in files.items()],
                                            compact=True)])


def load_results(run_dir: Path) -> dict:
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json in this run directory; run `edgeprune demo` into it "
                                f"first (the report summarises a finished demo run)")
    try:
        results = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, dict) or not results.get("rows"):
        raise ValueError(f"{path}: expected {{\"rows\": [...], ...}} with one row per model")
    return results


def write_report(run_dir: str | Path, log=print) -> Path:
    """Write run_dir/report.html, run_dir/report.md and run_dir/report/ (figures, layers.json); return the HTML."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    (run_dir / ASSETS).mkdir(exist_ok=True)
    imgsz = int(results.get("imgsz", 320))
    names = [str(r.get("model", "")) for r in results["rows"]]
    labels = (names[0] or "base", names[-1] if len(names) > 1 else "pruned")
    searched = (results.get("plan") or {}).get("method", "search") == "search"  # runs before 2026-12-07 searched
    pruned = (results.get("files") or {}).get("pruned checkpoint", "finetune/best.pt")
    sections = [
        summary_section(results),
        Section("Training", "training", _copy(run_dir, "training.png", "training.png", "training curves",
                                              "The demo draws them from train/metrics.csv.")),
        Section("Pareto front", "pareto", _copy(run_dir, "search/pareto.png", "pareto.png",
                                                "Pareto front of the search", "Did the search run?"))
        if searched else cut_section(results),
        widths_section(run_dir, results),
        latency_section(run_dir, imgsz, labels, log),
        *([gamma_section(run_dir)] if searched else []),  # the sparsity-trained base's γ, which BN importance ranks
        detections_section(run_dir, imgsz, labels, pruned),
    ]
    sections += [s for s in [_files_section(results)] if s is not None]
    subtitle = _subtitle(results, labels)
    atomic_write_text(run_dir / "report.md", render_markdown("edgeprune demo report", subtitle, sections))
    page = atomic_write_text(run_dir / "report.html", render_html("edgeprune demo report", subtitle, sections))
    log(f"report: wrote {page}, {run_dir / 'report.md'} and {run_dir / ASSETS}/")
    return page


def _subtitle(results: dict, labels: tuple[str, str]) -> str:
    parts = [f"{labels[0]} → {labels[1]}", f"input {results.get('imgsz', '?')} px"]
    if results.get("backend"):
        parts.append(f"latency on {results['backend']}")
    if isinstance(results.get("seconds"), (int, float)):
        parts.append(f"whole run {results['seconds'] / 60:.1f} min")
    if results.get("smoke_run"):
        parts.append("SMOKE RUN (--quick): trained for a few epochs only, its mAP says nothing")
    return " · ".join(parts)


def _md_part(part) -> list[str]:
    """A part's Markdown lines, a blank line after each block (which GitHub needs around a table in <details>)."""
    if isinstance(part, Fold):
        inner = [line for p in part.parts for line in _md_part(p)]
        return [f"<details><summary>{html.escape(part.summary)}</summary>", "", *inner, "</details>", ""]
    if isinstance(part, Text):
        return [f"*{part.text}*" if part.note else part.text, ""]
    if isinstance(part, Table):
        return [markdown_table(part.rows) if part.rows else "*(empty)*", ""]
    return [f"![{part.alt}]({part.path})", ""]


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", subtitle, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for part in s.parts:
            lines += _md_part(part)
    return "\n".join(lines)


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1060px; margin: 2rem auto; padding: 0 1.2rem; }
h1 { margin-bottom: .2rem; } .subtitle { color: #57606a; margin-top: 0; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; margin-top: 2.2rem; }
nav a { margin-right: 1rem; color: #0969da; text-decoration: none; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid #d0d7de; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f8fa; }
table.compact { font-size: .8rem; } table.compact th, table.compact td { padding: .15rem .6rem; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
.note { color: #9a6700; background: #fff8c5; padding: .4rem .7rem; border-radius: 6px; }
details { margin: .6rem 0 1rem; } summary { cursor: pointer; color: #0969da; }
"""


def _html_table(table: Table) -> str:
    if not table.rows:
        return "<p class='note'>(empty)</p>"
    cols = list(table.rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols) + "</tr>" for r in table.rows)
    attrs = (f' id="{table.id}"' if table.id else "") + (' class="compact"' if table.compact else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_part(part) -> str:
    if isinstance(part, Fold):
        inner = "\n".join(_html_part(p) for p in part.parts)
        attrs = f' id="{part.id}"' if part.id else ""
        return f"<details{attrs}><summary>{html.escape(part.summary)}</summary>\n{inner}</details>"
    if isinstance(part, Text):
        return f"<p{' class=note' if part.note else ''}>{html.escape(part.text)}</p>"
    if isinstance(part, Table):
        return _html_table(part)
    return f'<p><img src="{html.escape(part.path)}" alt="{html.escape(part.alt)}"></p>'


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_html_part(p) for p in s.parts) + "</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p class=subtitle>{html.escape(subtitle)}</p>\n<nav>{nav}</nav>\n"
            f"{body}\n</body></html>\n")
