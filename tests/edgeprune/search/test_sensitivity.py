"""The search's first trials: the allocated seed writes the demo's cut (least Taylor importance per predicted
millisecond, down to the target) as the search's scope ratios."""
import torch

from edgeprune.checkpoint import load_model
from edgeprune.data.formats import load_dataset
from edgeprune.models import example_input
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import score_groups
from edgeprune.prune.plan import pruned_model
from edgeprune.search.sensitivity import allocated_seed
from edgeprune.search.space import SearchSpace, scopes_for
from tests.edgeprune.search.test_allocate import FlopsTable


def test_the_allocated_seed_is_the_allocation_as_scope_ratios(base, unit_maps_once):
    torch.manual_seed(0)
    model = load_model(base / "base.pt").eval()
    groups = find_groups(model, example_input(model))
    space = SearchSpace(groups, scopes_for(groups, "groups"))
    train = load_dataset(base / "data" / "data.yaml").train
    table = FlopsTable({})  # latency ∝ conv MACs: the table the test can check the cut against
    base_ms = table.predict(model)
    ratios = allocated_seed(model, groups, space, train, table, 0.5 * base_ms, base_ms, 64, batches=1)
    assert set(ratios) == set(space.scopes) and set(ratios.values()) <= set(space.grid())
    assert len(set(ratios.values())) > 2  # an allocation, not a uniform cut
    cut = pruned_model(model, space.plan(ratios, score_groups(groups, "l1")), example_input(model))
    assert 0.35 * base_ms < table.predict(cut) < 0.6 * base_ms  # the target, up to the grid's 0.05 steps
    assert all(p.grad is None for p in model.parameters())  # Taylor's gradients are not left behind
    # measured 2x the table's figure: the same target in measured ms asks the table for half as much
    harder = allocated_seed(model, groups, space, train, table, 0.5 * base_ms, 2 * base_ms, 64, batches=1)
    assert sum(harder.values()) > sum(ratios.values())
    # a target the base already meets cuts nothing
    assert set(allocated_seed(model, groups, space, train, table, 2 * base_ms, base_ms, 64, batches=1).values()) \
        == {0.0}
