"""Detection KD: zero for identical outputs, positive otherwise, masked by the teacher's objectness, and it trains
a student toward its teacher."""
import pytest
import torch

from edgeprune.models import create_model
from edgeprune.train.distill import DetectionKD, FeatureKD, bernoulli_kl


def maps(seed, nc=2, shapes=((8, 8), (4, 4), (2, 2))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, h, w, 5 + nc, generator=g) for h, w in shapes]


def test_zero_for_identical_outputs_positive_otherwise():
    kd = DetectionKD()
    t = maps(0)
    loss, parts = kd([x.clone() for x in t], t)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and torch.allclose(parts, torch.zeros(3), atol=1e-6)
    loss, parts = kd(maps(1), t)
    assert loss.item() > 0 and (parts > 0).all()


def test_bernoulli_kl_is_a_divergence():
    a, b = torch.randn(100), torch.randn(100)
    assert (bernoulli_kl(a, b) >= -1e-6).all() and bernoulli_kl(a, a).abs().max() < 1e-6
    assert bernoulli_kl(a, b, temperature=4.0).mean() < bernoulli_kl(a, b).mean()  # softened


def test_classes_and_boxes_only_count_where_the_teacher_sees_objects():
    kd = DetectionKD(w_obj=0.0, w_box=1.0)
    t, s = maps(0), maps(0)
    for x in t:
        x[..., 4] = -30.0  # the teacher sees no object anywhere
    for x in s:
        x[..., :4] += 3.0  # the student's boxes and classes disagree...
        x[..., 5:] -= 3.0
        x[..., 4] = -30.0
    loss, _ = kd(s, t)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # ... where nothing is, which does not count
    t[0][0, 0, 0, 0, 4] = 30.0  # one confident teacher cell
    assert kd(s, t)[0].item() > 0.1


def test_gradients_reach_the_student_only():
    s = [x.requires_grad_() for x in maps(1)]
    t = [x.requires_grad_() for x in maps(0)]
    DetectionKD()(s, t)[0].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s) and all(x.grad is None for x in t)


def test_a_student_learns_its_teacher():
    torch.manual_seed(0)
    teacher, student = create_model("yolov5n", 1).train(), create_model("yolov5n", 1).train()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        target = teacher(x)
    kd = DetectionKD()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        loss, _ = kd(student(x), target)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_mismatched_maps_are_refused():
    with pytest.raises(ValueError, match="differ"):
        DetectionKD()(maps(0, nc=2), maps(0, nc=3))
    with pytest.raises(ValueError, match="levels"):
        DetectionKD()(maps(0)[:2], maps(0))
    with pytest.raises(ValueError, match="temperature"):
        DetectionKD(temperature=0)


@pytest.mark.parametrize("mode", ["mse", "cwd"])
def test_feature_kd_zero_when_equal_adapters_where_narrower(mode):
    torch.manual_seed(0)
    t = [torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)]
    same = FeatureKD([16, 32], [16, 32], mode)
    assert same([x.clone() for x in t], t).item() == pytest.approx(0.0, abs=1e-6)
    assert same([torch.rand_like(x) for x in t], t).item() > 0
    narrow = FeatureKD([8, 16], [16, 32], mode)
    s = [torch.rand(2, 8, 8, 8, requires_grad=True), torch.rand(2, 16, 4, 4, requires_grad=True)]
    loss = narrow(s, t)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in narrow.parameters()) and s[0].grad is not None
    with pytest.raises(ValueError, match="mse or cwd"):
        FeatureKD([8], [8], "l2")


def test_feature_kd_in_training_a_pruned_student(tmp_path):
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.data.formats import load_dataset
    from edgeprune.data.synth import synthesize
    from edgeprune.models import example_input
    from edgeprune.prune.graph import find_groups
    from edgeprune.prune.importance import score_groups
    from edgeprune.prune.plan import plan_from_ratios, prune_model
    from edgeprune.train.trainer import TrainConfig, train

    spec = load_dataset(synthesize(tmp_path / "d", 4, 2, size=64, seed=0, progress=False))
    torch.manual_seed(0)
    teacher = create_model("yolov5n", 1)
    student = create_model("yolov5n", 1)
    student.load_state_dict(teacher.state_dict())
    groups = find_groups(student, example_input(student))
    prune_model(student, plan_from_ratios(groups, score_groups(groups), 0.5), example_input(student))
    cfg = TrainConfig(epochs=1, batch_size=4, img_size=64, feature_kd="cwd", eval_every=1)
    row = train(student.train(), spec.train, spec.val, cfg, tmp_path / "run", progress=False, teacher=teacher)
    assert row["kd_obj"] > 0
    adapters = load_checkpoint(tmp_path / "run" / "last.pt")["train"]["feature_kd"]
    assert adapters and all(v.shape[0] > v.shape[1] for v in adapters.values())  # narrower student → wider teacher


def test_training_leaves_the_teacher_as_it_was(tmp_path):
    from edgeprune.data.formats import load_dataset
    from edgeprune.data.synth import synthesize
    from edgeprune.train.trainer import TrainConfig, train

    spec = load_dataset(synthesize(tmp_path / "d", 4, 2, size=64, seed=0, progress=False))
    teacher = create_model("yolov5n", 1).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train(create_model("yolov5n", 1), spec.train, spec.val, TrainConfig(epochs=1, batch_size=4, img_size=64),
          tmp_path / "run", progress=False, teacher=teacher)
    assert all(p.requires_grad for p in teacher.parameters()) and teacher.training
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_boxes_are_weighted_like_the_detection_loss_box_term():
    from edgeprune.models.loss import LossGains
    from edgeprune.train.trainer import TrainConfig
    kd = DetectionKD(w_obj=0.0, w_cls=0.0)
    loss, parts = kd(maps(1), maps(0))
    assert kd.w_box == LossGains().box == TrainConfig().kd_box_weight  # at 1 a thin student collapsed (distill.py)
    assert loss.item() == pytest.approx(LossGains().box * parts[2].item())


def test_anchor_free_kd_is_zero_for_identical_maps_and_weights_boxes_by_the_teachers_classes():
    from edgeprune.train.distill import AnchorFreeKD

    g = torch.Generator().manual_seed(0)
    t = [torch.randn(2, 64 + 3, h, h, generator=g) for h in (8, 4, 2)]
    kd = AnchorFreeKD(reg_max=16)
    loss, parts = kd([x.clone() for x in t], t)
    assert float(loss) == pytest.approx(0.0, abs=1e-5) and parts.shape == (2,)
    s = [x.clone().requires_grad_(True) for x in t]
    with torch.no_grad():
        s[0][:, :64] += torch.randn(2, 64, 8, 8, generator=g)  # other box distributions at level 0 only
    loss, parts = kd(s, t)
    assert float(parts[0]) == pytest.approx(0.0, abs=1e-5) and float(parts[1]) > 0
    loss.backward()
    assert s[0].grad[:, :64].abs().sum() > 0 and s[0].grad[:, 64:].abs().sum() < 1e-6
    quiet = [x.clone() for x in t]
    quiet[0][:, 64:] = -20.0  # the teacher sees nothing at level 0: its boxes there do not count
    loss_quiet, parts_quiet = kd([x.detach() for x in s], quiet)
    assert float(parts_quiet[1]) < 1e-3
