"""Knowledge distillation (``zoo.training.distill``): the loss against a hand computation (one teacher and
an ensemble), the frozen teachers, tiny distilled ``train.py`` runs (with mixup, EMA and resume; with an
ensemble given as a Hydra list), and the refusals."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from conftest import compose_config
from zoo.data.transforms import normalize_uint8
from zoo.models.checkpoint import load_checkpoint, read_checkpoint, write_zoo_fields
from zoo.training import ClassificationModule, train
from zoo.training.distill import FrozenTeacher, distill_settings, kd_loss

STUDENT = {"name": "mobilenetv3_small_100", "width": 0.5}
MIXUP = {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5, "mode": "batch"}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo training checkpoint to teach with: ShuffleNetV2 0.5 after 2 steps at 32 px on the embedded set."""
    tmp = tmp_path_factory.mktemp("teacher")
    return Path(train(compose_config(tmp, "model=shufflenetv2", "model.width=0.5"))["last_ckpt"])


@pytest.fixture(scope="module")
def second_ckpt(tmp_path_factory: pytest.TempPathFactory, teacher_ckpt: Path) -> Path:
    """A second teacher checkpoint at another path (the same weights; tests that need two different
    teachers scale their classifiers apart, see :func:`confident`)."""
    return Path(shutil.copy(teacher_ckpt, tmp_path_factory.mktemp("second") / "second.ckpt"))


@pytest.fixture(scope="module")
def five_class_ckpt(tmp_path_factory: pytest.TempPathFactory, teacher_ckpt: Path) -> Path:
    """A zoo checkpoint of the teacher's network with a 5-class classifier (untrained)."""
    info = load_checkpoint(teacher_ckpt)[1]
    net = zoo.create_model(**{**info["model_config"], "num_classes": 5})
    ckpt = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}
    write_zoo_fields(ckpt, net, num_classes=5, meta={**info["preprocessing"], "class_folders": info["class_folders"][:5]},
                     has_ema=False, best_acc1=0.0)
    path = tmp_path_factory.mktemp("five") / "five.ckpt"
    torch.save(ckpt, path)
    return path


def student_meta(teacher_ckpt: Path, **changes: Any) -> dict[str, Any]:
    """The data facts of a student trained like the teacher (32 px, its classes), with ``changes``."""
    info = load_checkpoint(teacher_ckpt)[1]
    return {**info["preprocessing"], "class_folders": info["class_folders"], **changes}


def kd_module(*teachers: Path, meta: dict[str, Any] | None = None, **kw: Any) -> ClassificationModule:
    """A distilled student of one teacher checkpoint, or of the ensemble of several."""
    teacher = [str(p) for p in teachers] if len(teachers) > 1 else str(teachers[0])
    distill = {"name": "kd", "teacher": teacher, "alpha": 0.3, "temperature": 2.0, **kw.pop("distill", {})}
    return ClassificationModule(STUDENT, num_classes=10, loss={"label_smoothing": 0.1},
                                meta=meta or student_meta(teachers[0]), distill=distill, **kw)


def confident(module: ClassificationModule, scales: tuple[float, ...] = (100.0,)) -> ClassificationModule:
    """``module`` in eval mode (no dropout: the student's logits can be recomputed), each teacher's classifier
    weights scaled by its factor in ``scales`` so that the distillation term is far from 0 (the 2-step
    teacher is nearly uniform) and two copies of one checkpoint become two different teachers."""
    with torch.no_grad():
        for member, scale in zip(module.teacher.members, scales, strict=True):
            member.model.get_classifier().weight.mul_(scale)
    return module.eval()


def softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def hand_kd(student: torch.Tensor, teachers: list[torch.Tensor], temperature: float) -> float:
    """T^2 * mean over the batch of sum_k p_t,k (log p_t,k - log p_s,k), with plain floats; p_t is the
    mean over the ``teachers`` of their softmax at temperature T (Hinton et al. 2015, Sec. 1)."""
    total = 0.0
    for i, s_row in enumerate(student.tolist()):
        p_s = softmax(s_row, temperature)
        members = [softmax(t[i].tolist(), temperature) for t in teachers]
        p_t = [sum(column) / len(members) for column in zip(*members)]
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t))
    return temperature ** 2 * total / student.shape[0]


def hand_soft_ce(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over the batch of -sum_k target_k log softmax(logits)_k."""
    rows = [-sum(q * math.log(p) for p, q in zip(softmax(row, 1.0), t_row))
            for row, t_row in zip(logits.tolist(), target.tolist())]
    return sum(rows) / len(rows)


def smoothed(y: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    return torch.full((len(y), classes), smoothing / classes).scatter_(1, y[:, None], 1 - smoothing + smoothing / classes)


def test_kd_loss_is_hintons_term() -> None:
    student, teacher = torch.randn(5, 7) * 3, torch.randn(5, 7) * 3
    for temperature in (1.0, 4.0):
        assert float(kd_loss(student, teacher, temperature)) == pytest.approx(hand_kd(student, [teacher], temperature),
                                                                              rel=1e-5)
    assert float(kd_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_of_an_ensemble_is_against_the_mean_probabilities() -> None:
    student, logits = torch.randn(5, 7) * 3, torch.randn(5, 7) * 3
    teachers = [logits, -logits]  # mean logits 0: a uniform target, far from the mean of their probabilities
    for temperature in (1.0, 4.0):
        ensemble = hand_kd(student, teachers, temperature)
        mean_logits = hand_kd(student, [torch.zeros(5, 7)], temperature)
        assert abs(ensemble - mean_logits) > 0.05 * ensemble  # the two definitions really differ here
        assert float(kd_loss(student, teachers, temperature)) == pytest.approx(ensemble, rel=1e-5)
    # one teacher, as a list or not: the very same loss as the single-teacher formula, bit for bit
    assert torch.equal(kd_loss(student, teachers[:1], 4.0), kd_loss(student, teachers[0], 4.0))
    with pytest.raises(ValueError, match="at least one teacher"):
        kd_loss(student, [], 4.0)


def test_loss_with_hard_labels_by_hand(teacher_ckpt: Path) -> None:
    module = confident(kd_module(teacher_ckpt))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    out = module.training_loss(x, y)
    student, teacher = module.net(x), module.teacher.members[0].model(x)
    ce = hand_soft_ce(student, smoothed(y, 10, 0.1))  # label smoothing 0.1 in the CE
    kd = hand_kd(student, [teacher], 2.0)
    assert kd > 0.1
    assert float(out["task_loss"]) == pytest.approx(ce, rel=1e-5)
    assert float(out["kd_loss"]) == pytest.approx(kd, rel=1e-4)
    assert float(out["loss"]) == pytest.approx(0.7 * ce + 0.3 * kd, rel=1e-4)


def test_loss_with_mixup_targets_by_hand(teacher_ckpt: Path) -> None:
    module = confident(kd_module(teacher_ckpt, mixup=MIXUP))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 2])
    mixed, target = module.mixup_fn(x.clone(), y)  # timm mixes in place
    assert not torch.equal(mixed, x) and not torch.allclose(target, smoothed(y, 10, 0.1))  # really mixed
    out = module.training_loss(mixed, target)
    student, teacher = module.net(mixed), module.teacher.members[0].model(mixed)  # the teacher sees the mixed batch
    kd = hand_kd(student, [teacher], 2.0)
    assert kd > 0.1
    assert float(out["loss"]) == pytest.approx(0.7 * hand_soft_ce(student, target) + 0.3 * kd, rel=1e-4)


def test_loss_of_a_two_teacher_ensemble_by_hand(teacher_ckpt: Path, second_ckpt: Path) -> None:
    module = confident(kd_module(teacher_ckpt, second_ckpt), scales=(100.0, -60.0))
    assert module.teacher.record["teacher"] == [str(teacher_ckpt.resolve()), str(second_ckpt.resolve())]
    assert module.teacher.record["model"] == ["shufflenetv2_100"] * 2
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    out = module.training_loss(x, y)
    student = module.net(x)
    teachers = [member.model(x) for member in module.teacher.members]  # both see the student's batch
    kd, first_alone = hand_kd(student, teachers, 2.0), hand_kd(student, teachers[:1], 2.0)
    assert kd > 0.1 and abs(kd - first_alone) > 0.1  # the second teacher matters
    assert float(out["kd_loss"]) == pytest.approx(kd, rel=1e-4)
    assert float(out["loss"]) == pytest.approx(0.7 * hand_soft_ce(student, smoothed(y, 10, 0.1)) + 0.3 * kd, rel=1e-4)
    assert "mean of 2 teachers' probabilities" in module.describe_loss()


@pytest.mark.parametrize("teachers", [1, 2])
def test_teachers_stay_frozen_through_a_training_step(teacher_ckpt: Path, second_ckpt: Path, teachers: int) -> None:
    module = kd_module(teacher_ckpt, *[second_ckpt] * (teachers - 1), ema={"enabled": True, "decay": 0.5})
    assert len(module.teacher.members) == teachers
    module.train()  # what Lightning does before every training epoch
    assert all(not m.training for m in module.teacher.modules()) and module.net.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in module.net.state_dict().items()}
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0, weight_decay=0.1)  # even given every parameter
    module.training_loss(torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4]))["loss"].backward()
    optimizer.step()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in module.teacher.state_dict().items())  # BN statistics too
    assert any(not torch.equal(v, student_before[k]) for k, v in module.net.state_dict().items())
    assert not any("teacher" in k for k in module.ema.state_dict())  # the EMA copies the student only


def test_teacher_renormalizes_the_students_batch_exactly(teacher_ckpt: Path) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    module = kd_module(teacher_ckpt, meta=student_meta(teacher_ckpt, mean=mean, std=std))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    teacher_pre = load_checkpoint(teacher_ckpt)[0].pretrained_cfg
    expected = module.teacher.members[0].model(normalize_uint8(images, teacher_pre["mean"], teacher_pre["std"]))
    got = module.teacher(normalize_uint8(images, mean, std))[0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert "re-normalized" in module.teacher.notes[0]


@pytest.mark.parametrize("changes, message", [
    ({"interpolation": "bicubic"}, "set data.interpolation=bilinear"),
    ({"train_res": 64}, "trained at 32 px, the student's batches are 64 px: set data.train_res=32"),
])
def test_preprocessing_that_cannot_be_mapped_is_refused(teacher_ckpt: Path, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kd_module(teacher_ckpt, meta=student_meta(teacher_ckpt, **changes))


def test_teacher_with_other_classes_is_refused(teacher_ckpt: Path) -> None:
    folders = student_meta(teacher_ckpt)["class_folders"]
    with pytest.raises(ValueError, match="class 0 is"):
        kd_module(teacher_ckpt, meta=student_meta(teacher_ckpt, class_folders=folders[::-1]))


def test_a_teacher_with_another_class_count_is_refused_by_name(teacher_ckpt: Path, five_class_ckpt: Path) -> None:
    meta = student_meta(teacher_ckpt)
    message = f"the teacher {five_class_ckpt.resolve()} has 5 classes, the student's data 10"
    with pytest.raises(ValueError, match=message):
        kd_module(five_class_ckpt, meta=meta)
    with pytest.raises(ValueError, match=message):  # in an ensemble, after a good member
        kd_module(teacher_ckpt, five_class_ckpt, meta=meta)


@pytest.mark.parametrize("name, make", [
    ("mobilenetv3_small_075", lambda: zoo.create_model("mobilenetv3_small_075", num_classes=10)),
    ("test_resnet", lambda: __import__("timm").create_model("test_resnet", num_classes=10)),
])
def test_teacher_by_model_name_and_weights_file(tmp_path: Path, teacher_ckpt: Path, name: str, make) -> None:
    model = make().eval()
    torch.save(model.state_dict(), tmp_path / "teacher.pth")
    module = kd_module(teacher_ckpt, distill={"teacher": None, "teacher_name": name,
                                              "teacher_weights": str(tmp_path / "teacher.pth")})
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    student, teacher = module.meta, model.pretrained_cfg  # timm's test_resnet: mean = std = 0.5
    torch.testing.assert_close(module.teacher(normalize_uint8(images, student["mean"], student["std"]))[0],
                               model(normalize_uint8(images, teacher["mean"], teacher["std"])), atol=1e-4, rtol=1e-4)
    assert module.teacher.record["model"] == name and module.teacher.record["teacher_name"] == name
    torch.save(zoo.create_model("mobilenetv3_small_075", num_classes=5).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not fit"):
        kd_module(teacher_ckpt, distill={"teacher": None, "teacher_name": name,
                                         "teacher_weights": str(tmp_path / "other.pth")})


@pytest.mark.parametrize("distill, message", [
    ({"name": "kd"}, "distill=kd needs a teacher"),
    ({"name": "none", "teacher": "x.ckpt"}, "add distill=kd"),
    ({"name": "kd", "teacher_name": "resnet18"}, "needs trained weights"),
    ({"name": "kd", "teacher": []}, r"distill.teacher is an empty list: give one checkpoint .* or several"),
    ({"name": "kd", "teacher": ["a.ckpt", None]}, "distill.teacher lists checkpoint paths, got None"),
    ({"name": "kd", "teacher": "x.ckpt", "alpha": 1.5}, r"alpha .* must be in \[0, 1\]"),
    ({"name": "kd", "teacher": "x.ckpt", "temperature": 0}, "temperature must be > 0"),
    ({"name": "kd", "teacher_name": "no_such_net", "teacher_weights": "imagenet"}, "1000 ImageNet classes"),
])
def test_bad_distill_settings_say_what_is_expected(distill: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings = distill_settings(distill)
        ClassificationModule(STUDENT, num_classes=10, distill=settings)


def test_bad_teacher_path_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"distill.teacher: .*missing.ckpt does not exist"):
        train(compose_config(tmp_path, "model=mobilenetv3_small", "distill=kd", f"distill.teacher={tmp_path}/missing.ckpt"))
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="not a usable zoo training checkpoint"):
        train(compose_config(tmp_path, "model=mobilenetv3_small", "distill=kd", f"distill.teacher={tmp_path}/plain.ckpt"))
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[torch.Tensor]]:
    """Inputs of the student's training forwards and of every teacher forward, in call order."""
    recorded: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}

    def record(key: str, forward):
        def wrapped(self, x):
            if key == "teacher" or self.training:
                recorded[key].append(x.detach().clone())
            return forward(self, x)
        return wrapped

    monkeypatch.setattr(ClassificationModule, "forward", record("student", ClassificationModule.forward))
    monkeypatch.setattr(FrozenTeacher, "forward", record("teacher", FrozenTeacher.forward))
    return recorded


def test_distilled_run_with_mixup_ema_and_resume(tmp_path: Path, teacher_ckpt: Path, capsys,
                                                 seen: dict[str, list[torch.Tensor]]) -> None:
    args = ["model=mobilenetv3_small", "model.width=0.5", "distill=kd", f"distill.teacher={teacher_ckpt}",
            "aug=mixup", "ema.enabled=true", "ema.decay=0.5"]
    summary = train(compose_config(tmp_path, *args))
    text = capsys.readouterr().out
    assert "teacher: shufflenetv2_100 from checkpoint" in text and "teacher forward: params" in text
    assert summary["distill"]["teacher_macs"] > 0 and summary["distill"]["teacher"] == str(teacher_ckpt.resolve())
    # the teacher saw exactly the (mixed) batches the student trained on
    assert len(seen["teacher"]) == len(seen["student"]) == 2
    assert all(torch.equal(t, s) for t, s in zip(seen["teacher"], seen["student"]))

    last = Path(summary["last_ckpt"])
    ckpt = read_checkpoint(last)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    assert any(k.startswith("ema.module.") for k in ckpt["state_dict"])
    assert ckpt["zoo_distill"]["teacher"] == str(teacher_ckpt.resolve())
    assert ckpt["hyper_parameters"]["distill"]["teacher"] == str(teacher_ckpt)
    net, info = load_checkpoint(last)
    assert info["model_config"] == {**STUDENT, "num_classes": 10, "in_chans": 3} and net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)

    resumed = train(compose_config(tmp_path, *args, "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert resumed["epochs"] == 2 and read_checkpoint(last)["epoch"] == 1
    without_teacher = ClassificationModule(STUDENT, num_classes=10)
    with pytest.raises(ValueError, match="trained with teacher checkpoint .* this run has none"):
        without_teacher.on_load_checkpoint(read_checkpoint(last))


def test_distilled_run_with_an_ensemble_given_as_a_hydra_list(tmp_path: Path, teacher_ckpt: Path, second_ckpt: Path,
                                                               capsys, seen: dict[str, list[torch.Tensor]]) -> None:
    paths = [str(teacher_ckpt.resolve()), str(second_ckpt.resolve())]
    summary = train(compose_config(tmp_path, "model=mobilenetv3_small", "model.width=0.5", "distill=kd",
                                   f"distill.teacher=['{paths[0]}','{paths[1]}']"))
    text = capsys.readouterr().out
    assert f"teacher: shufflenetv2_100 + shufflenetv2_100 from ensemble of checkpoints {paths[0]}, {paths[1]}" in text
    single = zoo.count_params(load_checkpoint(teacher_ckpt)[0])
    assert summary["distill"]["teacher"] == paths and summary["distill"]["teacher_params"] == 2 * single
    # each of the 2 steps: both teachers saw exactly the student's batch
    assert len(seen["student"]) == 2 and len(seen["teacher"]) == 4
    assert all(torch.equal(t, seen["student"][i // 2]) for i, t in enumerate(seen["teacher"]))
    ckpt = read_checkpoint(summary["last_ckpt"])
    assert ckpt["zoo_distill"]["teacher"] == paths and ckpt["hyper_parameters"]["distill"]["teacher"] == paths
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    with pytest.raises(ValueError, match="trained with teacher ensemble of checkpoints .* this run has checkpoint"):
        kd_module(teacher_ckpt).on_load_checkpoint(ckpt)
