"""The CLI verbs end to end on a tiny synthetic set, and the one-line errors users get for bad input."""
import csv
import json

import pytest

from edgeprune.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["data", "synth", "--out", str(root / "data"), "--train", "8", "--val", "4", "--size", "96"]) == 0
    assert main(["train", "--data", str(root / "data/data.yaml"), "--epochs", "1", "--batch", "4", "--imgsz",
                 "96", "--out", str(root / "run"), "--no-progress"]) == 0
    return root


def test_eval_export_profile_chain(trained, capsys):
    ckpt = str(trained / "run/best.pt")
    assert main(["eval", ckpt, "--data", str(trained / "data/data.yaml"), "--imgsz", "96",
                 "--json", str(trained / "eval.json")]) == 0
    ev = json.loads((trained / "eval.json").read_text())
    assert ev["images"] == 4 and 0.0 <= ev["map"] <= ev["map50"] <= 1.0
    onnx_path = trained / "m.onnx"
    assert main(["export", ckpt, "--imgsz", "96", "--opset", "11", "--out", str(onnx_path)]) == 0
    assert main(["profile", str(onnx_path), "--imgsz", "96", "--runs", "5", "--warmup", "1", "--threads", "1",
                 "--json", str(trained / "p.json")]) == 0
    prof = json.loads((trained / "p.json").read_text())
    assert prof["threads"] == 1 and prof["runs"] == 5 and prof["median_ms"] > 0 and prof["GFLOPs"] > 0
    out = capsys.readouterr().out
    assert "median_ms" in out and "onnxruntime matches torch: output0 boxes within" in out


def test_export_engine_without_tensorrt_is_one_line_and_keeps_the_onnx(trained, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the engine builds (tests/deploy cover the build)")
    onnx_path, engine = trained / "e.onnx", trained / "e.engine"
    assert main(["export", str(trained / "run/best.pt"), "--imgsz", "96", "--out", str(onnx_path),
                 "--engine", str(engine)]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert onnx_path.stat().st_size > 0 and not engine.exists()


def test_profile_accepts_a_checkpoint(trained):
    assert main(["profile", str(trained / "run/best.pt"), "--imgsz", "64", "--runs", "3", "--warmup", "1"]) == 0


def test_prune_then_finetune_with_a_teacher(trained, capsys):
    ckpt, pruned = str(trained / "run/best.pt"), str(trained / "pruned.pt")
    assert main(["prune", ckpt, "--ratio", "0.5", "-o", pruned, "--imgsz", "96"]) == 0
    assert main(["finetune", pruned, "--data", str(trained / "data/data.yaml"), "--teacher", ckpt, "--epochs", "1",
                 "--batch", "4", "--imgsz", "96", "--out", str(trained / "ft"), "--no-progress"]) == 0
    assert f"distilled from {ckpt}" in capsys.readouterr().out
    row = list(csv.DictReader((trained / "ft/metrics.csv").open()))[-1]
    assert float(row["kd_obj"]) > 0 and "map50" in row


def test_prune_in_steps_with_teacher_assistants(trained, capsys):
    ckpt, out = str(trained / "run/best.pt"), trained / "chain.pt"
    assert main(["prune", ckpt, "--ratio", "0.5", "-o", str(out), "--imgsz", "96", "--steps", "2", "--assistant-kd",
                 "--data", str(trained / "data/data.yaml"), "--finetune-epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "step 1/2: distilling from the previous model" in printed and "step 2/2" in printed
    for step in (1, 2):
        row = list(csv.DictReader((trained / f"chain.step{step}/metrics.csv").open()))[-1]
        assert float(row["kd_obj"]) > 0
    from edgeprune.checkpoint import load_model
    from edgeprune.models import example_input

    model = load_model(out)  # rebuilt from the base and both step plans
    plan = json.loads(out.with_suffix(".plan.json").read_text())
    assert model(example_input(model)) is not None and plan["ratio"] > 0.4


@pytest.mark.slow  # 55 s, the table's calibration; the default run builds one in the search's end-to-end test
def test_profile_predicts_with_a_table_it_builds_once(trained, capsys):
    ckpt, lut = str(trained / "run/best.pt"), trained / "lut.json"
    argv = ["profile", ckpt, "--imgsz", "64", "--runs", "10", "--warmup", "2", "--threads", "1",
            "--predict", str(lut), "--json", str(trained / "pp.json")]
    assert main(argv) == 0
    assert "building a latency table" in capsys.readouterr().out and lut.is_file()
    assert main(argv) == 0  # second run: the saved table, nothing built
    out = capsys.readouterr().out
    assert "building" not in out and f"latency table {lut}" in out and "predicted_ms" in out
    prof = json.loads((trained / "pp.json").read_text())
    # a 64 px model runs in a fraction of a millisecond, where fixed overheads and noise dominate: only a gross
    # error (units, a missing term) is a failure here; benchmarks/bench_predictor.py measures the accuracy
    assert 1 / 3 < prof["predicted_ms"] / prof["median_ms"] < 3
    assert prof["fingerprint"]["backend"] == "ort" and prof["backend"] == "ort"


@pytest.mark.parametrize("argv, message", [
    (["eval", "missing.pt", "--data", "x.yaml"], "missing.pt: no such checkpoint"),
    (["profile", "__FILE__"], "is not a readable ONNX model"),
    (["profile", "__FILE__", "--predict", "lut.json"], "--predict needs a torch model"),
    (["profile", "__FILE__", "--backend", "tpu"], "unknown latency backend 'tpu'"),
    (["search", "x.pt", "--data", "d.yaml", "--speedup", "2", "--target-latency", "5ms"], "not both"),
    (["search", "x.pt", "--data", "d.yaml", "--mode", "reward"], "needs --target-latency or --speedup"),
    (["search", "x.pt", "--data", "d.yaml", "--backend", "none"], "--backend none has no latency"),
    (["search", "x.pt", "--data", "d.yaml", "--target-latency", "soon"], "write milliseconds"),
    (["train", "--data", "nowhere.yaml"], "nowhere.yaml: does not exist"),
    (["finetune", "missing.pt", "--data", "x.yaml"], "missing.pt: no such checkpoint"),
    (["prune", "x.pt", "--ratio", "0.5", "-o", "y.pt", "--steps", "3"], "--steps recovers the model"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    argv = [str(bad) if a == "__FILE__" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _break_a_label(data, split: str) -> None:
    """Write normalised-looking but impossible coordinates into the first label of `split`."""
    label = sorted((data / "labels" / split).glob("*.txt"))[0]
    label.write_text("0 2.0 0.5 0.1 0.1\n")


def test_eval_reads_only_the_validation_split_and_takes_skip_bad(trained, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(trained / "data", data)
    ckpt, yaml = str(trained / "run/best.pt"), str(data / "data.yaml")
    _break_a_label(data, "train")
    assert main(["eval", ckpt, "--data", yaml, "--imgsz", "64"]) == 0  # a bad *train* label is not eval's business
    _break_a_label(data, "val")
    assert main(["eval", ckpt, "--data", yaml, "--imgsz", "64"]) == 2
    err = capsys.readouterr().err
    assert "--skip-bad" in err and "outside the image" in err and "look like pixels" not in err
    assert main(["eval", ckpt, "--data", yaml, "--imgsz", "64", "--skip-bad", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["images"] == 3


@pytest.mark.parametrize("verb", ["train", "finetune", "eval", "search", "prune", "data convert"])
def test_every_verb_that_reads_a_dataset_offers_skip_bad(verb, capsys):
    with pytest.raises(SystemExit):
        main([*verb.split(), "--help"])
    assert "--skip-bad" in capsys.readouterr().out


def test_help_is_for_users_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "lazily" not in top and "exit codes" in top and "no trial met the hard limits" in top
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 30)", "(default: yolov5n)", "(default: 320)", "(default: 0)", "default: sgd"):
        assert default in out


def test_prune_warns_when_the_ratio_is_capped_and_widths_degenerate(trained, capsys):
    assert main(["prune", str(trained / "run/best.pt"), "--ratio", "0.99", "-o", str(trained / "p99.pt"),
                 "--imgsz", "64"]) == 0
    err = capsys.readouterr().err
    assert "asked for ratio 0.99, the plan reaches 0.9" in err and "cut to their minimum width" in err
    assert main(["prune", str(trained / "run/best.pt"), "--ratio", "0.3", "-o", str(trained / "p30.pt"),
                 "--imgsz", "64"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_profile_of_a_file_that_is_not_a_model_says_it_also_takes_onnx(tmp_path, capsys):
    notes = tmp_path / "notes.pt"
    notes.write_text("not a model")
    assert main(["profile", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "a text file" in err and ".onnx" in err and "weights_only" not in err


def test_results_are_written_with_the_users_umask(trained, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert main(["prune", str(trained / "run/best.pt"), "--ratio", "0.3", "-o", str(tmp_path / "p.pt"),
                     "--imgsz", "64"]) == 0
    finally:
        os.umask(old)
    for name in ("p.pt", "p.plan.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
