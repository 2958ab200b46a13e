"""Stage two of scoring: which trials are fine-tuned again, and a search that answers with one of them."""
import json
from types import SimpleNamespace

from edgeprune.search import Objective, SearchConfig, run_search
from edgeprune.search.rescore import shortlist


def row(trial, map50, ms, value):
    return {"trial": trial, "map50": map50, "map": map50 / 2, "latency_ms": ms, "gflops": 1.0, "mparams": 1.0,
            "values": [value], "ratios": {}}


def test_shortlist_takes_the_best_values_within_the_limits():
    ctx = SimpleNamespace(objective=Objective(target_latency_ms=10.0))
    rows = [row(0, 0.5, 12.0, -9.0), row(1, 0.4, 9.0, 0.3), row(2, 0.3, 8.0, 0.2), row(3, 0.2, 7.0, 0.5)]
    assert [r["trial"] for r in shortlist(rows, ctx, 2)] == [2, 1]  # trial 0 is best but over the target


def test_shortlist_in_pareto_mode_takes_the_most_accurate_front_points_within_the_target():
    ctx = SimpleNamespace(objective=Objective(mode="pareto", target_latency_ms=10.0))
    rows = [row(0, 0.5, 12.0, 0), row(1, 0.4, 9.0, 0), row(2, 0.35, 9.5, 0), row(3, 0.2, 7.0, 0)]
    assert [r["trial"] for r in shortlist(rows, ctx, 5)] == [1, 3]  # 2 is dominated by 1, 0 over the target


def test_a_search_with_rescore_answers_with_a_fine_tuned_trial_and_keeps_it(base):
    cfg = SearchConfig(checkpoint=str(base / "base.pt"), data=str(base / "data/data.yaml"), out=str(base / "run"),
                       img_size=64, trials=5, backend="none", measure="none", val_images=4, bn_batches=1,
                       batch_size=4, scopes="blocks", sensitivity=[], rescore_top=2, rescore_iters=2,
                       objective={"mode": "loss", "latency_weight": 0.0, "flops_weight": 1.0})
    logs: list[str] = []
    study, result = run_search(cfg, progress=False, log=logs.append)
    assert len(result["rescored"]) == 2
    assert all(r["iters"] == 2 and r["seconds"] > 0 for r in result["rescored"].values())
    chosen = result["chosen"]
    assert str(chosen["trial"]) in result["rescored"] and chosen["rescored"]["iters"] == 2
    assert json.loads((base / "run" / "result.json").read_text())["chosen"]["trial"] == chosen["trial"]
    assert sum("KD iterations" in line for line in logs) == 2
    logs.clear()  # the same command again: the rescored trials come from the study, none is fine-tuned again
    run_search(cfg, progress=False, log=logs.append)
    assert not any("KD iterations" in line for line in logs)
