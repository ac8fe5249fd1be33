"""Knowledge distillation: a frozen teacher (or an ensemble) and the logit-distillation loss (Hinton et al. 2015).

The student is trained on ``(1 - alpha) * task loss + alpha * T^2 * KL(p_t || p_s)``, where ``p_t`` and
``p_s`` are the teacher's and the student's softmax at temperature ``T`` ("Distilling the Knowledge in
a Neural Network", Hinton et al. 2015, Sec. 2: the ``T^2`` keeps the soft term's gradients at the same
scale when ``T`` changes). The task loss is whatever the run uses (cross-entropy with label smoothing,
or the soft-target cross-entropy of mixup/cutmix). As in "Knowledge distillation: A good teacher is
patient and consistent" (Beyer et al. 2022), the teacher sees exactly the augmented (mixed) batch the
student sees. timm's ``train.py --kd-model-name`` (``timm.task.LogitDistillationTask``) computes the
same term.

The teacher is a zoo training checkpoint (``distill.teacher``) or a zoo/timm model name with a weights
file (``distill.teacher_name`` + ``distill.teacher_weights``). ``distill.teacher`` may also list several
checkpoints, whose ensemble teaches: as Hinton et al. 2015 (Sec. 1) distil an ensemble into one net, its
soft targets are the arithmetic mean of the members' temperature-softened probabilities,
``p_t = mean_i softmax(z_i / T)``, not the softmax of their mean logits (:func:`ensemble_log_probs`); for
one teacher that is its own ``softmax(z / T)``. Every teacher runs frozen: no gradients, eval mode
(also after ``.train()``), under ``torch.no_grad``. The batch arrives normalized with the student's
mean/std; a teacher with other mean/std gets it re-normalized, an exact affine map. What cannot be
mapped exactly (another interpolation, another training resolution, other classes) is refused before
training starts, with the setting to change.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.preprocess import Preprocessing
from zoo.models.checkpoint import load_checkpoint
from zoo.models.registry import create_model, list_models

__all__ = ["DISTILL_KINDS", "FrozenTeacher", "TeacherEnsemble", "build_teacher", "distill_settings",
           "ensemble_log_probs", "kd_loss", "load_teacher", "same_teacher", "teacher_label"]

#: ``distill.name`` choices (``configs/distill/``): no teacher, or logit distillation.
DISTILL_KINDS = ("none", "kd")
#: The ``distill`` keys that name the teacher (what a resumed run must keep).
TEACHER_KEYS = ("teacher", "teacher_name", "teacher_weights", "teacher_weights_from")


def ensemble_log_probs(teacher_logits: torch.Tensor | Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """``log(mean_i softmax(z_i / T))``: the log of an ensemble's soft targets, the arithmetic mean of its
    members' probabilities at temperature ``T`` (Hinton et al. 2015, Sec. 1), not the softmax of the mean
    logits. ``teacher_logits``: one teacher's logits, or a sequence of every member's.

    Computed stably as ``logsumexp_i log_softmax(z_i / T) - log n``; for one teacher this is exactly its
    ``log_softmax(z / T)``.
    """
    members = [teacher_logits] if isinstance(teacher_logits, torch.Tensor) else list(teacher_logits)
    if not members:
        raise ValueError("no teacher logits: an ensemble needs at least one teacher")
    log_probs = torch.stack([F.log_softmax(z.float() / temperature, dim=-1) for z in members])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(members))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | Sequence[torch.Tensor],
            temperature: float) -> torch.Tensor:
    """``T^2 * KL(p_t || softmax(student / T))``, averaged over the batch (Hinton et al. 2015, Sec. 2), where
    ``p_t`` is the teacher's ``softmax(teacher / T)`` or, for a sequence of several teachers' logits, the
    ensemble's mean probabilities (:func:`ensemble_log_probs`)."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = ensemble_log_probs(teacher_logits, temperature)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature ** 2


class FrozenTeacher(nn.Module):
    """A teacher network that never trains: no gradients, always in eval mode, run under ``torch.no_grad``.

    Args:
        model: the teacher network.
        student_mean, student_std: the normalization of the batches it receives ([0, 1] units).
        teacher_mean, teacher_std: the normalization it was trained with; when they differ from the
            student's, :meth:`renormalize` maps the batch exactly:
            ``x_t = (x_s * std_s + mean_s - mean_t) / std_t``.
    """

    def __init__(self, model: nn.Module, student_mean: Sequence[float], student_std: Sequence[float],
                 teacher_mean: Sequence[float], teacher_std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.model.requires_grad_(False)
        s_mean, s_std, t_mean, t_std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                                        for v in (student_mean, student_std, teacher_mean, teacher_std))
        self.same_normalization = torch.equal(s_mean, t_mean) and torch.equal(s_std, t_std)
        self.register_buffer("scale", s_std / t_std, persistent=False)
        self.register_buffer("shift", (s_mean - t_mean) / t_std, persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stays in eval mode whatever ``mode`` is (Lightning calls ``.train()`` on the whole module)."""
        return super().train(False)

    def renormalize(self, x: torch.Tensor) -> torch.Tensor:
        """A batch normalized for the student, normalized for the teacher (the identity when both agree)."""
        return x if self.same_normalization else x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.renormalize(x))


class TeacherEnsemble(nn.Module):
    """The teacher of a distilled run: one :class:`FrozenTeacher`, or several whose ensemble teaches.

    Its forward gives every member's logits on the same batch (each member re-normalizes it for itself);
    :func:`kd_loss` turns them into the ensemble's soft targets, the mean of the members' probabilities at
    temperature ``T`` (Hinton et al. 2015, Sec. 1). Like its members it stays in eval mode.
    """

    def __init__(self, members: Sequence[FrozenTeacher]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a teacher ensemble needs at least one teacher")
        self.members = nn.ModuleList(members)
        #: what checkpoints record of the teacher(s) (set by :func:`build_teacher`)
        self.record: dict[str, Any] = {}
        #: start-up lines on how their input is mapped
        self.notes: list[str] = []
        self.eval()

    @property
    def networks(self) -> list[nn.Module]:
        """The members' networks (for counting their parameters and MACs)."""
        return [member.model for member in self.members]

    def train(self, mode: bool = True) -> TeacherEnsemble:
        """Stays in eval mode whatever ``mode`` is, as its members do."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [member(x) for member in self.members]


def distill_settings(distill: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The validated ``distill`` config, or None for no distillation (``distill=none`` or no config).
    ``teacher`` is one checkpoint path or a list of several (a list of one is that path)."""
    cfg = dict(distill or {})
    kind = cfg.get("name", "none")
    if kind not in DISTILL_KINDS:
        raise ValueError(f"distill.name must be one of {DISTILL_KINDS}, got {kind!r}")
    named = [k for k in TEACHER_KEYS[:3] if cfg.get(k) is not None]
    if kind == "none":
        if named:
            raise ValueError(f"distill.{named[0]} is set but distillation is off (distill=none): add distill=kd")
        return None
    teacher = _checkpoint_list(cfg.get("teacher"))
    if teacher is not None and cfg.get("teacher_name") is not None:
        raise ValueError("give the teacher either as a checkpoint (distill.teacher=PATH) or as a model name with "
                         "weights (distill.teacher_name=NAME distill.teacher_weights=FILE), not both")
    if teacher is None and cfg.get("teacher_name") is None:
        raise ValueError("distill=kd needs a teacher: distill.teacher=<zoo checkpoint .ckpt>, or "
                         "distill.teacher_name=<zoo or timm model> distill.teacher_weights=<weights file>")
    if cfg.get("teacher_name") is not None and cfg.get("teacher_weights") is None:
        raise ValueError(f"distill.teacher_name={cfg['teacher_name']} needs trained weights: "
                         "distill.teacher_weights=<state_dict file> (or 'imagenet' for 1000-class data)")
    alpha, temperature = float(cfg.get("alpha", 0.5)), float(cfg.get("temperature", 4.0))  # configs/distill/none.yaml
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distill.alpha (the weight of the distillation term) must be in [0, 1], got {alpha}")
    if not temperature > 0.0:
        raise ValueError(f"distill.temperature must be > 0, got {temperature}")
    return {"name": kind, "teacher": teacher, "teacher_name": cfg.get("teacher_name"),
            "teacher_weights": cfg.get("teacher_weights"),
            "teacher_weights_from": cfg.get("teacher_weights_from") or "zoo", "alpha": alpha,
            "temperature": temperature}


def _checkpoint_list(teacher: Any) -> str | list[str] | None:
    """``distill.teacher`` as given: None, one checkpoint path, or a list of paths (several: an ensemble);
    a list of one is that path."""
    if teacher is None or isinstance(teacher, (str, os.PathLike)):
        return teacher
    if not isinstance(teacher, (list, tuple)):
        raise ValueError(f"distill.teacher must be a checkpoint path or a list of them, got {teacher!r}")
    if not teacher:
        raise ValueError("distill.teacher is an empty list: give one checkpoint (distill.teacher=PATH) or "
                         "several whose ensemble teaches ('distill.teacher=[A.ckpt,B.ckpt]')")
    bad = [t for t in teacher if not isinstance(t, (str, os.PathLike)) or not str(t)]
    if bad:
        raise ValueError(f"distill.teacher lists checkpoint paths, got {bad[0]!r} in {list(teacher)}")
    return teacher[0] if len(teacher) == 1 else list(teacher)


def _existing_path(key: str, path: str, expected: str) -> str:
    found = Path(path).expanduser().resolve()
    if not found.exists():
        raise FileNotFoundError(f"distill.{key}: {found} does not exist (expected {expected})")
    return str(found)


def _zoo_teacher(name: str, num_classes: int, weights: str, weights_from: str) -> nn.Module:
    """``zoo.create_model`` with ``weights`` loaded strictly: a classifier re-initialized for another
    class count (as fine-tuning does) would teach noise."""
    try:
        return create_model(name, num_classes=num_classes, weights=weights, weights_from=weights_from,
                            weights_strict=True)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"distill.teacher_weights {weights} do not fit {name} with {num_classes} classes as they "
                         f"are ({err}); a teacher needs a classifier trained on the student's classes") from err


def load_teacher(settings: Mapping[str, Any], num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher network of :func:`distill_settings`' ``settings`` naming one teacher (``teacher`` one path,
    not a list; eval mode, preprocessing in ``pretrained_cfg``) and what is known of its training: ``model``
    (its name), ``num_classes``, ``train_res`` and ``class_folders`` (from a checkpoint; else None and []),
    ``source`` (the teacher keys, paths resolved)."""
    source = {k: settings.get(k) for k in TEACHER_KEYS}
    if settings.get("teacher") is not None:
        path = _existing_path("teacher", settings["teacher"], "a zoo training checkpoint, e.g. "
                              "<run>/checkpoints/best.ckpt")
        source["teacher"] = path
        try:
            model, info = load_checkpoint(path)
        except Exception as err:  # not a zoo checkpoint, or not a torch file at all
            raise ValueError(f"distill.teacher: {path} is not a usable zoo training checkpoint: {err}") from err
        return model, {"model": info["model_config"]["name"], "num_classes": info["num_classes"],
                       "train_res": info["preprocessing"].get("train_res"),
                       "class_folders": info["class_folders"], "source": source}
    name, weights, weights_from = settings["teacher_name"], settings["teacher_weights"], source["teacher_weights_from"]
    if weights == "imagenet":
        if num_classes != 1000:
            raise ValueError(f"distill.teacher_weights=imagenet gives 1000 ImageNet classes, but the data has "
                             f"{num_classes}: give a weights file trained on these classes")
    else:
        weights = source["teacher_weights"] = _existing_path(
            "teacher_weights", weights, "a state_dict file, or for a zoo model a zoo.save_pretrained directory")
    if name in list_models():
        model = _zoo_teacher(name, num_classes, weights, weights_from)
    else:
        import timm

        if not timm.is_model(name):
            raise ValueError(f"distill.teacher_name={name!r} is neither a zoo model (zoo.list_models()) "
                             "nor a timm model (timm.list_models())")
        if weights_from not in ("zoo", "timm"):
            raise ValueError(f"{name} is a timm model: its weights are in timm's layout, "
                             f"not distill.teacher_weights_from={weights_from}")
        if weights != "imagenet" and not Path(weights).is_file():
            raise ValueError(f"distill.teacher_weights for the timm model {name} is a state_dict file, "
                             f"got the directory {weights}")
        overlay = {} if weights == "imagenet" else {"pretrained_cfg_overlay": {"file": weights,
                                                                                "num_classes": num_classes}}
        try:
            model = timm.create_model(name, num_classes=num_classes, pretrained=True, **overlay)
        except RuntimeError as err:
            raise ValueError(f"distill.teacher_weights {weights} do not fit timm {name} with {num_classes} "
                             f"classes: {err}") from err
    return model.eval(), {"model": name, "num_classes": num_classes, "train_res": None, "class_folders": [],
                          "source": source}


def _check_inputs(label: str, teacher: Preprocessing, teacher_train_res: int | None, fixed_size: bool,
                  student: Mapping[str, Any]) -> None:
    """Refuse what no exact map of the student's batch gives the teacher ``label``: channels, interpolation,
    resolution."""
    s_mean = tuple(student.get("mean") or teacher.mean)
    if len(s_mean) != len(teacher.mean):
        raise ValueError(f"the teacher {label} takes {len(teacher.mean)} input channels, the student {len(s_mean)}")
    s_interp = student.get("interpolation") or teacher.interpolation
    if s_interp != teacher.interpolation:
        raise ValueError(f"the preprocessing of the teacher {label} resizes with interpolation="
                         f"{teacher.interpolation}, the student's batches are resized with {s_interp}; a resize "
                         f"cannot be undone exactly: set data.interpolation={teacher.interpolation} or use a "
                         f"teacher trained with {s_interp}")
    s_res = student.get("train_res")
    t_res = teacher_train_res or (teacher.res if fixed_size else None)
    if s_res is not None and t_res is not None and int(s_res) != int(t_res):
        why = "was trained at" if teacher_train_res else "only takes"
        raise ValueError(f"the teacher {label} {why} {t_res} px, the student's batches are {s_res} px: set "
                         f"data.train_res={t_res} or use a teacher trained at {s_res} px")


def _frozen_teacher(model: nn.Module, info: Mapping[str, Any], num_classes: int,
                    student: Mapping[str, Any]) -> tuple[FrozenTeacher, list[str]]:
    """One loaded teacher (:func:`load_teacher`) checked against the student and frozen, with start-up
    lines on how its input is mapped."""
    label = info["source"]["teacher"] or info["model"]
    if info["num_classes"] != num_classes:
        raise ValueError(f"the teacher {label} has {info['num_classes']} classes, the student's data "
                         f"{num_classes}: every teacher needs a classifier trained on the student's classes")
    s_folders = list(student.get("class_folders") or [])
    if info["class_folders"] and s_folders and info["class_folders"] != s_folders:
        i = next(i for i, (a, b) in enumerate(zip(info["class_folders"], s_folders)) if a != b)
        raise ValueError(f"the classes of the teacher {label} differ from the student's: class {i} is "
                         f"{info['class_folders'][i]!r} for the teacher, {s_folders[i]!r} for the student")
    pre = Preprocessing.from_pretrained_cfg(model)
    fixed_size = bool((getattr(model, "pretrained_cfg", None) or {}).get("fixed_input_size"))
    _check_inputs(label, pre, info["train_res"], fixed_size, student)
    s_mean, s_std = tuple(student.get("mean") or pre.mean), tuple(student.get("std") or pre.std)
    teacher = FrozenTeacher(model, s_mean, s_std, pre.mean, pre.std)
    notes = [] if teacher.same_normalization else [
        f"teacher input re-normalized (exact affine map): student mean {_fmt(s_mean)} std {_fmt(s_std)} -> "
        f"teacher mean {_fmt(pre.mean)} std {_fmt(pre.std)}"]
    return teacher, notes


def build_teacher(settings: Mapping[str, Any], num_classes: int, student: Mapping[str, Any]) -> TeacherEnsemble:
    """The :class:`TeacherEnsemble` for :func:`distill_settings`' ``settings`` (one teacher, or one member
    per checkpoint of a ``teacher`` list) and the student's data facts ``student`` (``mean``, ``std``,
    ``train_res``, ``interpolation``, ``class_folders``). Every member is checked against the student and
    gets the batch re-normalized for itself.

    Sets ``teacher.record`` (what checkpoints store: the teacher keys, the model name, alpha, temperature;
    ``teacher`` and ``model`` are lists for several checkpoints) and ``teacher.notes`` (start-up lines on
    how the input is mapped).

    Raises:
        FileNotFoundError: a teacher or weights file is missing.
        ValueError: a teacher cannot be loaded, has other classes, or needs preprocessing the
            student's batches cannot be mapped to exactly.
    """
    paths = settings["teacher"] if isinstance(settings["teacher"], list) else [settings["teacher"]]
    members, infos, notes = [], [], []
    for path in paths:
        model, info = load_teacher({**settings, "teacher": path}, num_classes)
        member, member_notes = _frozen_teacher(model, info, num_classes, student)
        members.append(member)
        infos.append(info)
        notes += [f"{info['source']['teacher']}: {n}" if len(paths) > 1 else n for n in member_notes]
    teacher = TeacherEnsemble(members)
    record = {**copy.deepcopy(infos[0]["source"]), "model": infos[0]["model"]}
    if len(infos) > 1:
        record.update(teacher=[i["source"]["teacher"] for i in infos], model=[i["model"] for i in infos])
    teacher.record = {**record, "alpha": settings["alpha"], "temperature": settings["temperature"]}
    teacher.notes = notes
    return teacher


def same_teacher(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two ``teacher.record``s (or None: no teacher) name the same teacher."""
    if a is None or b is None:
        return a is None and b is None
    return all(a.get(k) == b.get(k) for k in TEACHER_KEYS)


def teacher_label(record: Mapping[str, Any] | None) -> str:
    """A ``teacher.record`` in words: ``none``, ``checkpoint PATH``, ``ensemble of checkpoints A, B`` or
    ``NAME with weights FILE (LAYOUT layout)``."""
    if record is None:
        return "none (no distillation)"
    if isinstance(record.get("teacher"), list):
        return "ensemble of checkpoints " + ", ".join(record["teacher"])
    if record.get("teacher"):
        return f"checkpoint {record['teacher']}"
    return (f"{record.get('teacher_name')} with weights {record.get('teacher_weights')} "
            f"({record.get('teacher_weights_from')} layout)")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"
