import csv
import json

import pytest
import torch

from edgeprune.checkpoint import load_checkpoint, load_model
from edgeprune.data.formats import load_dataset
from edgeprune.data.synth import synthesize
from edgeprune.models import create_model
from edgeprune.train.trainer import TrainConfig, Trainer, cosine_factor, set_lr, train


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return load_dataset(synthesize(root, 8, 4, size=96, seed=3, progress=False))


def _cfg(epochs=2, eval_every=1, **kw):
    return TrainConfig(epochs=epochs, batch_size=4, img_size=96, warmup_epochs=0.5, seed=1, eval_every=eval_every,
                       **kw)


def test_train_writes_checkpoints_and_metrics(tmp_path, spec):
    torch.manual_seed(0)
    last = train(create_model("yolov5n", 1), spec.train, spec.val, _cfg(), tmp_path, progress=False)
    assert {"map50", "map", "precision", "recall", "images_per_second"} <= set(last)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert load_checkpoint(tmp_path / "last.pt")["train"]["epoch"] == 1
    model = load_model(tmp_path / "best.pt")
    assert model.config.num_classes == 1


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_the_anchor_free_family_trains_and_distils_with_its_own_loss_parts(tmp_path, spec, name):
    torch.manual_seed(0)
    teacher = create_model(name, 1).eval()
    last = train(create_model(name, 1), spec.train, spec.val, _cfg(epochs=1), tmp_path, progress=False,
                 teacher=teacher)
    assert {"box_loss", "cls_loss", "dfl_loss", "kd_cls", "kd_box", "map50"} <= set(last)
    assert "obj_loss" not in last and last["kd_cls"] > 0 and last["kd_box"] > 0
    assert load_model(tmp_path / "best.pt").config.name == name


def test_epochs_without_validation_leave_blank_metrics(tmp_path, spec):
    train(create_model("yolov5n", 1), spec.train, spec.val, _cfg(epochs=3, eval_every=2), tmp_path, progress=False)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["map50"] != "" for r in rows] == [False, True, True]  # epoch 2, and the last epoch


class Killed(Exception):
    pass


@pytest.mark.parametrize("sparsity, distil, reflect, attention", [
    ("none", False, 0.0, 0.0), ("l1rr", False, 0.0, 1.0), ("none", True, 0.5, 0.0)])
def test_resume_after_a_kill_gives_the_same_weights(tmp_path, spec, monkeypatch, sparsity, distil, reflect,
                                                    attention):
    torch.manual_seed(0)
    init = create_model("yolov5n", 1).state_dict()

    def fresh():
        m = create_model("yolov5n", 1)
        m.load_state_dict(init)
        return m

    cfg = _cfg(epochs=3, sparsity=sparsity, sparsity_lambda=0.05, self_reflection=reflect,
               attention_weight=attention)
    teacher = create_model("yolov5n", 1) if distil else None  # mid-recovery: a student distilling a teacher
    train(fresh(), spec.train, spec.val, cfg, tmp_path / "straight", progress=False, teacher=teacher)

    save = Trainer._save

    def save_then_die(self, epoch, row):
        save(self, epoch, row)
        raise Killed  # the process dies right after the first epoch's checkpoint

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    with pytest.raises(Killed):
        train(fresh(), spec.train, spec.val, cfg, tmp_path / "killed", progress=False, teacher=teacher)
    monkeypatch.setattr(Trainer, "_save", save)
    train(fresh(), spec.train, spec.val, cfg, tmp_path / "killed", resume=True, progress=False, teacher=teacher)

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert b["train"]["epoch"] == 2 and len(b["train"]["rows"]) == 3
    assert ("kd_obj" in b["train"]["rows"][-1]) is distil
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, msg=k)


def test_sparsity_training_shrinks_gamma_and_reports_it(tmp_path, spec):
    def gamma_sum(path):
        sd = load_checkpoint(path)["train"]["model"]
        return sum(v.abs().sum().item() for k, v in sd.items() if k.endswith("bn.weight"))

    for method in ("none", "bn-l1"):
        torch.manual_seed(0)
        train(create_model("yolov5n", 1), spec.train, spec.val, _cfg(sparsity=method, sparsity_lambda=0.5),
              tmp_path / method, progress=False)
    assert gamma_sum(tmp_path / "bn-l1" / "last.pt") < gamma_sum(tmp_path / "none" / "last.pt") - 1.0
    rows = list(csv.DictReader((tmp_path / "bn-l1" / "metrics.csv").open()))
    assert float(rows[-1]["gamma_l1"]) > 0 and 0 <= float(rows[-1]["sparse_share"]) <= 1
    report = json.loads((tmp_path / "bn-l1" / "sparsity.json").read_text())
    assert report["method"] == "bn-l1" and 0 <= report["evenness"] <= 1 and report["layers"]
    assert (tmp_path / "bn-l1" / "gamma.png").is_file() and not (tmp_path / "none" / "sparsity.json").exists()


def test_self_reflection_weight_grows_and_the_previous_self_is_frozen(tmp_path, spec):
    trainer = Trainer(create_model("yolov5n", 1), spec.train, spec.val, _cfg(epochs=5, self_reflection=0.5),
                      tmp_path, progress=False)
    weights = [trainer._reflection_weight(e) for e in range(5)]
    assert weights == pytest.approx([0.0, 0.125, 0.25, 0.375, 0.5])
    prev = trainer.previous
    assert prev is not trainer.model and not any(p.requires_grad for p in prev.parameters())
    assert prev.head.training and not prev.backbone.training  # raw maps, frozen batch norms


def test_resume_without_a_run_is_a_clear_error(tmp_path, spec):
    trainer = Trainer(create_model("yolov5n", 1), spec.train, spec.val, _cfg(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="last.pt: no such checkpoint"):
        trainer.resume()


def test_cosine_schedule_ends_at_lrf():
    assert cosine_factor(0, 10, 0.01) == pytest.approx(1.0)
    assert cosine_factor(10, 10, 0.01) == pytest.approx(0.01)
    assert cosine_factor(5, 10, 0.01) == pytest.approx(0.505)


def test_no_warm_up_means_every_group_starts_at_lr0():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=0.0)
    set_lr(opt, TrainConfig(epochs=1, lr0=0.002, warmup_epochs=0.0), it=0, iters_per_epoch=24)
    assert [g["lr"] for g in opt.param_groups] == [0.002] * 3  # the bias group (2) too, not warmup_bias_lr 0.1
    set_lr(opt, TrainConfig(epochs=1, lr0=0.002, warmup_epochs=1.0), it=0, iters_per_epoch=24)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0, 0.1]  # with a warm-up: YOLOv5's start
