"""The demo report on a tiny but real run directory: synthetic data, a random-init yolov5n and a pruned copy made
with the pruning API, both exported, results.json from the real models; then the page in headless Chromium."""
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeprune.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.data.dataset import build_loader
from edgeprune.data.formats import load_dataset
from edgeprune.evaluate.accuracy import evaluate
from edgeprune.evaluate.complexity import count_flops, count_params
from edgeprune.export import export_onnx
from edgeprune.latency import get_backend, measure
from edgeprune.latency.ort_profile import module_path
from edgeprune.models import create_model, example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import score_groups
from edgeprune.prune.plan import plan_from_ratios, prune_model
from edgeprune.report.figures import DPI, MIN_FONT_PT, Panel, detections_figure, gamma_summary_figure
from edgeprune.report.page import COLUMNS, format_value, write_report
from edgeprune.train.sparsity import bn_layers
from edgeprune.utils.files import write_json
from tests.edgeprune.report import report_page
from tests.edgeprune.report.report_page import chrome, table

IMGSZ = 128
FIGURES = ["training.png", "pareto.png", "widths.png", "layers.png", "gamma_summary.png", "gamma.png",
           "detections.png"]
LEGIBLE = ["gamma_summary.png", "detections.png"]  # drawn with text of at least MIN_FONT_PT
MIN_TEXT_PX = 8  # the smallest text these figures may show on the page, in CSS px


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
    with torch.no_grad():  # γ spread as after sparsity training (a fresh model's are all 1)
        for _, bn in bn_layers(base):
            bn.weight.copy_(torch.rand(bn.weight.shape).pow(4) * 10 ** torch.empty(()).uniform_(-1.5, 0.3))
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


def test_groups_table_is_folded(run_dir):
    groups = len(json.loads((run_dir / "search" / "best.plan.json").read_text())["widths"])
    summary = f"<summary>Channels of each of the {groups} groups (table)</summary>"
    html, md = (run_dir / "report.html").read_text(), (run_dir / "report.md").read_text()
    assert f'<details id="groups-fold">{summary}' in html and "<details open" not in html
    assert html.index(summary) < html.index('<table id="groups"') < html.index("</details>", html.index(summary))
    folded = md[md.index(f"<details>{summary}"):]
    assert folded.index("| group | before | after | kept |") < folded.index("</details>")


def figure_texts(fig) -> list:
    from matplotlib.text import Text

    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_legible_figures_have_no_text_under_10pt():
    rng = np.random.default_rng(0)
    layers = [(f"backbone.stage{i // 4}.{i % 4}.bn", rng.random(16) ** 4) for i in range(24)]
    dets = np.array([[5, 5, 30, 28, 0.91, 0], [0, 0, 12, 12, 0.4, 0], *[[40, 40, 60, 60, 0.3, 0]] * 12])
    panel = Panel(rng.random((64, 64, 3)), np.array([[4, 4, 30, 30.0]]), dets)
    for fig in (gamma_summary_figure(layers), detections_figure([("base", [panel] * 3), ("pruned", [panel] * 3)])):
        texts = figure_texts(fig)
        assert len(texts) > 5 and min(t.get_fontsize() for t in texts) >= MIN_FONT_PT, \
            sorted((t.get_fontsize(), t.get_text()) for t in texts)[:3]
        assert fig.dpi == DPI


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
                    "model.onnx, pruned.onnx missing", "train/best.pt", "finetune/best.pt",
                    "No γ summary: train/best.pt (the base after sparsity training) is missing"):
        assert missing in html
    assert table(html, "summary")[1:] == expected_rows(run_dir)


def test_missing_results_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        write_report(tmp_path)


def test_page_renders_in_headless_chromium(run_dir, tmp_path):
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
        assert_page_not_blank(driver, tmp_path / "report.png")  # first: it makes the window as tall as the page
        assert_figures_legible(driver, tmp_path)
        assert_groups_fold(driver, run_dir)
    finally:
        driver.quit()


def png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def not_blank(pixels: np.ndarray) -> bool:
    """Something drawn: more than 2 % of the pixels clearly darker than white, and not one flat colour."""
    return pixels.std() > 10 and (pixels < 200).mean() > 0.02


def assert_figures_legible(driver, tmp_path: Path) -> None:
    """The figures drawn with ≥ MIN_FONT_PT text are not shrunk on the page so far that it falls under 8 CSS px;
    their element screenshots (saved in tmp_path) are that size and show something."""
    from selenium.webdriver.common.by import By

    for name in LEGIBLE:
        img = driver.find_element(By.CSS_SELECTOR, f'img[src="report/{name}"]')
        shown, natural = driver.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", img)
        smallest_px = MIN_FONT_PT / 72 * DPI * shown / natural
        assert smallest_px >= MIN_TEXT_PX, f"{name}: {natural} px wide shown at {shown} px: text {smallest_px:.1f} px"
        png = img.screenshot_as_png
        (tmp_path / name).write_bytes(png)
        pixels = png_pixels(png)
        assert abs(pixels.shape[1] - img.size["width"]) <= 2 and abs(pixels.shape[0] - img.size["height"]) <= 2
        assert not_blank(pixels), name


def assert_page_not_blank(driver, path: Path) -> None:
    """A screenshot of the whole page (the window made as tall as the page), saved to path, shows content."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(report_page.WINDOW[0], min(height + 200, 16000))
    png = driver.get_screenshot_as_png()
    path.write_bytes(png)
    assert not_blank(png_pixels(png)), path


def assert_groups_fold(driver, run_dir: Path) -> None:
    """The channel table is folded (closed, not displayed, no height) until its summary is clicked."""
    from selenium.webdriver.common.by import By

    fold, groups = driver.find_element(By.ID, "groups-fold"), driver.find_element(By.ID, "groups")
    height = "return arguments[0].getBoundingClientRect().height"
    assert fold.get_attribute("open") is None and not groups.is_displayed()
    assert driver.execute_script(height, groups) == 0
    fold.find_element(By.TAG_NAME, "summary").click()
    plan = json.loads((run_dir / "search" / "best.plan.json").read_text())
    assert fold.get_attribute("open") is not None and groups.is_displayed()
    assert driver.execute_script(height, groups) > 10 * len(plan["widths"])  # every row at least 10 px
    assert len(groups.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(plan["widths"])


@pytest.fixture
def no_driver(tmp_path, monkeypatch) -> None:
    """chromium present, chromedriver absent (fake paths), EDGEPRUNE_REQUIRE_BROWSER unset."""
    pytest.importorskip("selenium")
    (tmp_path / "chromium").write_text("")
    monkeypatch.setattr(report_page, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr(report_page, "CHROMEDRIVER", tmp_path / "chromedriver")
    monkeypatch.delenv(report_page.REQUIRE_BROWSER, raising=False)


MISSING_DRIVER = (r"chromium is installed but chromedriver is not \(.*chromedriver missing\): "
                  r"apt-get install chromium-driver")


def test_missing_chromedriver_skips_naming_the_package(no_driver):
    with pytest.raises(pytest.skip.Exception, match=MISSING_DRIVER):
        report_page.chrome()


def test_missing_chromedriver_fails_when_the_browser_is_required(no_driver, monkeypatch):
    monkeypatch.setenv(report_page.REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match=MISSING_DRIVER + r" \(EDGEPRUNE_REQUIRE_BROWSER=1"):
        report_page.chrome()
