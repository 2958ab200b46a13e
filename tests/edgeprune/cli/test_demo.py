"""`edgeprune demo --quick` end to end, as a newcomer runs it: every step, the report, and numbers that agree."""
import json

import pytest

from edgeprune.cli import main
from edgeprune.report.page import COLUMNS, format_value
from tests.edgeprune.report.report_page import chrome, table


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def results(out):
    return json.loads((out / "results.json").read_text())


COMMON = ("data/data.yaml", "train/best.pt", "model.onnx", "pruned.onnx", "model_profile.json",
          "pruned_profile.json", "reference/best.pt", "reference.onnx", "reference_profile.json", "results.md",
          "report.html", "report.md", "report/layers.json", "report/detections.png", "report/widths.png")


def test_every_step_leaves_its_files(demo):
    r = results(demo)
    assert r["plan"]["method"] == "allocated" and r["files"]["plan"] == "prune/pruned.plan.json"
    for name in (*COMMON, "prune/pruned.pt", "prune/pruned.plan.json", "prune/pruned.progressive/progressive.json",
                 "prune/pruned.progressive/step1/plan.json"):
        assert (demo / name).stat().st_size > 0, name
    # the allocated path trains the base densely and searches nothing
    assert not (demo / "train" / "sparsity.json").exists() and not (demo / "search").exists()
    cut = json.loads((demo / "prune/pruned.progressive/progressive.json").read_text())["steps"]
    assert len(cut) == 1 and r["chosen"]["cut"]["measured_ms"] == cut[0]["measured_ms"]
    assert r["met_limits"] == (cut[0]["measured_ms"] <= cut[0]["goal_ms"] * 1.02)


def test_results_come_from_the_step_outputs(demo):
    r = results(demo)
    base, reference, pruned = r["rows"]
    for row, name in ((base, "model"), (reference, "reference"), (pruned, "pruned")):
        ev = json.loads((demo / f"{name}_eval.json").read_text())
        prof = json.loads((demo / f"{name}_profile.json").read_text())
        assert (row["mAP50"], row["mAP50-95"]) == (ev["map50"], ev["map"])
        assert (row["latency_ms"], row["GFLOPs"], row["params"]) == (prof["median_ms"], prof["GFLOPs"],
                                                                   prof["params"])
    assert pruned["GFLOPs"] < base["GFLOPs"] and pruned["params"] < base["params"]
    assert pruned["speedup"] == pytest.approx(base["latency_ms"] / pruned["latency_ms"])
    assert r["gains"]["flops_reduction"] == pytest.approx(1 - pruned["GFLOPs"] / base["GFLOPs"])
    # the reference is the dense base trained on for the recovery's epochs: as long as the pruned model in all
    assert reference["params"] == base["params"] and "dense" in reference["model"]
    epochs = [line.split(",")[0] for line in (demo / "reference" / "metrics.csv").read_text().splitlines()[1:]]
    plan = r["plan"]
    assert epochs[-1] == str(plan["finetune_epochs"])
    assert reference["model"].endswith(f"{plan['epochs']} + {plan['finetune_epochs']} ep")
    assert not (demo / "reference" / "sparsity.json").exists()
    assert r["gains"]["map50_vs_reference_points"] == pytest.approx(100 * (pruned["mAP50"] - reference["mAP50"]))


def test_report_tables_equal_results_json(demo):
    expected = [[format_value(key, row[key]) for key in COLUMNS] for row in results(demo)["rows"]]
    assert table((demo / "report.html").read_text(), "summary")[1:] == expected
    md = (demo / "report.md").read_text()
    assert all("| " + " | ".join(cells) + " |" in md for cells in expected)
    plan = json.loads((demo / results(demo)["files"]["plan"]).read_text())
    groups = table((demo / "report.html").read_text(), "groups")[1:]
    assert [int(g[2]) for g in groups] == [len(plan["keep"][name]) for name in plan["widths"]]


def test_report_renders_with_its_images(demo):
    driver = chrome()
    try:
        driver.get((demo / "report.html").as_uri())
        images = driver.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth)")
        # training, widths, layers, detections (the cut is a table; no γ section without sparsity training)
        assert len(images) == 4 and all(images), images
        assert table((demo / "report.html").read_text(), "cut")[-1][1] == format_value(
            "latency_ms", results(demo)["chosen"]["cut"]["measured_ms"])
    finally:
        driver.quit()


@pytest.mark.slow
def test_quick_demo_against_a_board_agent(tmp_path):
    """The same loop with one option changed: every latency comes from a jetson/ agent (here on loopback, timing
    with its onnxruntime backend, as no TensorRT is here)."""
    from jetson.agent import serve

    agent = serve("127.0.0.1", 0, state_dir=tmp_path / "agent", tegrastats=str(tmp_path / "no-tegrastats"),
                  trtexec=str(tmp_path / "no-trtexec")).start()
    try:
        spec = f"remote://127.0.0.1:{agent.server_address[1]}?backend=onnxruntime"
        assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--backend", spec]) == 0
        jobs = agent.store.summaries()
    finally:
        agent.close()
    r = results(tmp_path / "demo")
    assert r["backend"] == spec and len(jobs) > 2  # the search's measurements and both final profiles
    prof = json.loads((tmp_path / "demo" / "pruned_profile.json").read_text())
    assert prof["backend"] == spec and prof["median_ms"] == r["rows"][-1]["latency_ms"]


def test_quick_demo_says_plainly_that_it_is_a_smoke_run(demo):
    assert results(demo)["smoke_run"] is True
    assert "smoke run (--quick)" in (demo / "results.md").read_text()
    assert "SMOKE RUN (--quick)" in (demo / "report.html").read_text()


def test_a_second_run_goes_to_a_new_directory(tmp_path):
    from edgeprune.cli.demo import STATE, run_dir

    out = tmp_path / "demo"
    assert run_dir(out) == out  # new
    out.mkdir()
    assert run_dir(out) == out  # empty
    (out / STATE).write_text("{}")
    assert run_dir(out) == tmp_path / "demo2" and run_dir(out, exist_ok=True) == out
    (tmp_path / "demo2").mkdir()
    assert run_dir(out) == tmp_path / "demo3"
    assert run_dir(out, resume=True) == out  # OUT itself holds a run
    with pytest.raises(FileNotFoundError, match="no demo to resume"):
        run_dir(tmp_path / "other", resume=True)


def test_resume_continues_a_killed_demo_from_its_last_finished_step(demo, tmp_path, capsys):
    import shutil

    from edgeprune.cli.demo import STATE

    out = tmp_path / "killed"
    shutil.copytree(demo, out)
    state = json.loads((out / STATE).read_text())
    for unfinished in ("profile", "report"):  # as if killed while profiling
        del state["steps"][unfinished]
    (out / STATE).write_text(json.dumps(state))
    (out / "report.html").unlink()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    for skipped in ("data", "train", "ship base", "prune", "ship pruned"):
        assert f"# {skipped}: done in an earlier sitting, skipped" in printed
    assert "$ edgeprune train" not in printed and "$ edgeprune profile" in printed
    assert (out / "report.html").is_file() and "report" in json.loads((out / STATE).read_text())["steps"]


def test_resume_with_other_settings_is_refused(demo, tmp_path, capsys):
    import shutil

    out = tmp_path / "other"
    shutil.copytree(demo, out)
    assert main(["demo", "--quick", "--out", str(out), "--resume", "--seed", "7"]) == 2
    assert "other settings (seed)" in capsys.readouterr().err


@pytest.mark.slow  # 2 min: the default path above keeps every shared step in the default run
def test_quick_demo_with_the_search(tmp_path):
    """`--method search`: the base trained with BN sparsity, the latency search, KD; the report shows its front."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--method", "search", "--out", str(out), "--no-reference"]) == 0
    r = results(out)
    met = r["met_limits"]  # 4 trials of a smoke run may miss the limits: the closest plan then
    chosen = ("search/best.plan.json", "search/pruned.pt") if met else ("search/closest.plan.json",
                                                                         "search/closest.pt")
    assert r["plan"]["method"] == "search" and r["files"]["plan"] == chosen[0]
    for name in ("train/gamma.png", "train/sparsity.json", "search/result.json", "search/pareto.png", *chosen,
                 "finetune/best.pt", "report/pareto.png", "report/gamma_summary.png"):
        assert (out / name).stat().st_size > 0, name
    assert r["files"]["pruned checkpoint"] == "finetune/best.pt" and "bn-l1" in r["rows"][0]["model"]
