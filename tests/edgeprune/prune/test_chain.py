"""Teacher-assistant chains: nested step plans that shrink step by step and end exactly at the final plan."""
import pytest
import torch

from edgeprune.models import create_model, example_input
from edgeprune.prune.chain import prune_in_steps, step_plans
from edgeprune.prune.graph import find_groups
from edgeprune.prune.importance import rankable, score_groups
from edgeprune.prune.plan import plan_global


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    m = create_model("yolov5n", num_classes=1).eval()
    groups = find_groups(m, example_input(m))
    scores = score_groups(groups, "l1")
    return m, groups, scores, plan_global(groups, rankable(scores, "l1"), 0.6, round_to=8)


def widths(model):
    return {g.name: g.width for g in find_groups(model, example_input(model))}


def test_a_chain_shrinks_every_step_and_ends_at_the_plan(base):
    model, groups, scores, plan = base
    plans = step_plans(plan, groups, scores, steps=3)
    seen = []

    def recover(student, teacher, step):
        seen.append((step, sum(widths(teacher).values()), sum(widths(student).values())))
        return student

    models = prune_in_steps(model, plans, recover)
    totals = [sum(widths(m).values()) for m in models]
    assert len(models) == 3 and sum(widths(model).values()) > totals[0] > totals[1] > totals[2]
    # each assistant is distilled from the model before it: base → step 1 → step 2 → student
    assert [s[0] for s in seen] == [1, 2, 3] and all(t > s for _, t, s in seen)
    assert [s[1] for s in seen[1:]] == totals[:2]
    final = widths(models[-1])
    assert final == {name: len(idxs) for name, idxs in plan.keep.items()}
    # intermediate widths respect the rounding
    full = widths(model)
    for m in models[:-1]:
        assert all(w == full[n] or w % 8 == 0 or w == len(plan.keep[n]) for n, w in widths(m).items())


def test_the_student_keeps_the_plans_channels(base):
    model, groups, scores, plan = base
    one = prune_in_steps(model, [plan])[0]
    three = prune_in_steps(model, step_plans(plan, groups, scores, steps=3))[-1]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # no recovery in between: the same channels survive, so the same function
        torch.testing.assert_close(three(x), one(x))


def test_one_step_is_the_plan_itself(base):
    model, groups, scores, plan = base
    (only,) = step_plans(plan, groups, scores, steps=1)
    assert only.keep == {n: sorted(k) for n, k in plan.keep.items()}
    with pytest.raises(ValueError, match="at least 1"):
        step_plans(plan, groups, scores, steps=0)
