"""The demo report on a tiny but real run directory: synthetic data, a random-init yolov5n and a pruned copy made
with the pruning API, both exported, results.json from the real models; then the page in headless Chromium."""
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from report_page import chrome, table

from edgeprune.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.complexity import count_flops, count_params
from edgeprune.data.dataset import build_loader
from edgeprune.data.formats import load_dataset
from edgeprune.evaluate import evaluate
from edgeprune.export import export_onnx
from edgeprune.files import write_json
from edgeprune.graph import find_groups
from edgeprune.importance import score_groups
from edgeprune.latency import get_backend, measure
from edgeprune.latency.ort_profile import module_path
from edgeprune.models import create_model, example_input
from edgeprune.prune import plan_from_ratios, prune_model
from edgeprune.report import COLUMNS, format_value, write_report

IMGSZ = 128
FIGURES = ["training.png", "pareto.png", "widths.png", "layers.png", "gamma.png", "detections.png"]


def small_png(path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=50)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1, 2], [1, 0, 2])
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def row(name: str, model, onnx: Path, data_yaml: Path, base_ms: float | None = None) -> dict:
    backend = get_backend("ort", threads=1, warmup=2, runs=10, max_attempts=1, min_warmup_s=0.0)
    ms = measure(onnx, (1, 3, IMGSZ, IMGSZ), backend).median_ms
    loader = build_loader(load_dataset(data_yaml).val, IMGSZ, batch_size=4, augment=False, shuffle=False)
    ev = evaluate(model, loader)
    return {"model": name, "params": count_params(model), "GFLOPs": count_flops(model, IMGSZ) / 1e9,
            "latency_ms": ms, "speedup": (base_ms or ms) / ms, "mAP50": ev["map50"], "mAP50-95": ev["map"]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: torch's two-thread kernels slow down many times on a busy 2-core CPU
    try:
        yield make_run_dir(tmp_path_factory.mktemp("demo"))
    finally:
        torch.set_num_threads(threads)


def make_run_dir(out: Path) -> Path:
    data_yaml = out / "data" / "data.yaml"
    assert main(["data", "synth", "--out", str(out / "data"), "--train", "2", "--val", "4", "--size", str(IMGSZ)]) == 0
    torch.manual_seed(0)
    base = create_model("yolov5n", num_classes=1).eval()
    groups = find_groups(base, example_input(base))
    plan = plan_from_ratios(groups, score_groups(groups, "l1"), 0.5, round_to=8)
    pruned = prune_model(copy.deepcopy(base), plan, example_input(base)).eval()
    plan.save(out / "search" / "best.plan.json")
    save_checkpoint(out / "train" / "best.pt", base)
    save_checkpoint(out / "finetune" / "best.pt", pruned)
    export_onnx(base, out / "model.onnx", img_size=IMGSZ, verify=False)
    export_onnx(pruned, out / "pruned.onnx", img_size=IMGSZ, verify=False)
    rows = [row("yolov5n", base, out / "model.onnx", data_yaml)]
    rows.append(row("yolov5n pruned", pruned, out / "pruned.onnx", data_yaml, rows[0]["latency_ms"]))
    write_json(out / "results.json", {"rows": rows, "backend": "onnxruntime CPU, 1 thread", "imgsz": IMGSZ,
                                      "seconds": 12.5, "files": {"pruned model": "finetune/best.pt"}})
    for name in ("training.png", "search/pareto.png", "train/gamma.png"):
        small_png(out / name, name)
    write_report(out, log=lambda *a: None)
    return out


def expected_rows(run_dir: Path) -> list[list[str]]:
    results = json.loads((run_dir / "results.json").read_text())
    return [[format_value(key, r[key]) for key in COLUMNS] for r in results["rows"]]


def test_report_files_exist(run_dir):
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    for name in FIGURES + ["layers.json"]:
        assert (run_dir / "report" / name).stat().st_size > 0, name


def test_summary_table_shows_results_json(run_dir):
    html = (run_dir / "report.html").read_text()
    rows = table(html, "summary")
    assert rows[0] == list(COLUMNS.values())
    assert rows[1:] == expected_rows(run_dir)
    md = (run_dir / "report.md").read_text()
    for cells in expected_rows(run_dir):
        assert "| " + " | ".join(cells) + " |" in md


def test_groups_table_follows_the_plan(run_dir):
    plan = json.loads((run_dir / "search" / "best.plan.json").read_text())
    rows = table((run_dir / "report.html").read_text(), "groups")[1:]
    assert [r[:3] for r in rows] == [[g, str(w), str(len(plan["keep"][g]))] for g, w in plan["widths"].items()]


def test_layers_json_times_conv_blocks(run_dir):
    layers = json.loads((run_dir / "report" / "layers.json").read_text())
    for key in ("base", "pruned"):
        blocks, nodes = layers[key]["blocks"], layers[key]["nodes"]
        conv_blocks = {".".join(module_path(n)[:2]) for n in nodes if "Conv" in n and module_path(n)}
        assert {"backbone.stem", "backbone.stage4", "neck.out5"} <= conv_blocks
        assert all(blocks[b] > 0 for b in conv_blocks)
        assert layers[key]["total_ms"] == pytest.approx(sum(nodes.values()))
    assert layers["pruned"]["total_ms"] < layers["base"]["total_ms"]


def test_page_is_offline_and_images_are_relative(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for name in FIGURES:
        assert f'src="report/{name}"' in html and f"(report/{name})" in (run_dir / "report.md").read_text()


def test_missing_optional_inputs_are_named(tmp_path, run_dir):
    shutil.copy(run_dir / "results.json", tmp_path / "results.json")
    write_report(tmp_path, log=lambda *a: None)
    html = (tmp_path / "report.html").read_text()
    for missing in ("search/pareto.png is missing", "train/gamma.png is missing", "search/best.plan.json is missing",
                    "model.onnx, pruned.onnx missing", "train/best.pt", "finetune/best.pt"):
        assert missing in html
    assert table(html, "summary")[1:] == expected_rows(run_dir)


def test_missing_results_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        write_report(tmp_path)


def test_page_renders_in_headless_chromium(run_dir):
    from selenium.webdriver.common.by import By

    driver = chrome()
    try:
        driver.get((run_dir / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert sorted(src for src, _ in images) == sorted(f"report/{n}" for n in FIGURES)
        assert all(ok for _, ok in images), images
        text = driver.find_element(By.ID, "summary").text
        for cells in expected_rows(run_dir):
            for cell in cells:
                assert cell in text
    finally:
        driver.quit()
