"""The search space: scopes, the ratio grid, and plans that respect the pruning engine's rules."""
import json

import pytest
import torch

from edgeprune.models import create_model, example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import score_groups
from edgeprune.search import SearchSpace, scopes_for


@pytest.fixture(scope="module")
def groups():
    torch.manual_seed(0)
    m = create_model("yolov5n", num_classes=1).eval()
    return find_groups(m, example_input(m))


def test_scopes_cover_every_group_once(groups, tmp_path):
    names = {g.name for g in groups}
    for kind in ("groups", "blocks", "stages"):
        scopes = scopes_for(groups, kind)
        members = [n for gs in scopes.values() for n in gs]
        assert sorted(members) == sorted(names)
    assert len(scopes_for(groups, "groups")) == len(groups) > len(scopes_for(groups, "blocks")) \
        > len(scopes_for(groups, "stages")) >= 2
    f = tmp_path / "scopes.json"
    f.write_text(json.dumps({"early": ["backbone.stem*", "backbone.stage1*"], "neck": ["neck.*"]}))
    scopes = scopes_for(groups, str(f))
    assert set(scopes) == {"early", "neck"} and all(n.startswith("neck.") for n in scopes["neck"])


def test_bad_scope_files_name_the_file(groups, tmp_path):
    f = tmp_path / "scopes.json"
    f.write_text("[1, 2]")
    with pytest.raises(ValueError, match="scopes.json: scopes must be a JSON object"):
        scopes_for(groups, str(f))
    f.write_text(json.dumps({"nothing": ["no.such.*"]}))
    with pytest.raises(ValueError, match="matches no group"):
        scopes_for(groups, str(f))
    with pytest.raises(ValueError, match="use groups, blocks, stages"):
        scopes_for(groups, "layers")


def test_grid_snap_and_plans_keep_rounding(groups):
    space = SearchSpace(groups, scopes_for(groups, "stages"), step=0.05, max_ratio=0.9, round_to=8)
    grid = space.grid()
    assert grid[0] == 0.0 and grid[-1] == 0.9 and len(grid) == 19
    assert space.snap(0.33) == 0.35 and space.snap(2.0) == 0.9
    plan = space.plan({"backbone": 0.5, "neck": 0.0}, score_groups(groups, "l1"))
    by = {g.name: g for g in groups}
    for name, keep in plan.keep.items():
        assert len(keep) == by[name].width or len(keep) % 8 == 0
        if name.startswith("neck."):
            assert len(keep) == by[name].width
    assert plan.kept < plan.total and plan.info["search_ratios"] == {"backbone": 0.5, "neck": 0.0}
