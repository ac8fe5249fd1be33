"""Unit tests of the training tricks: mixup/cutmix targets, schedules, WD groups, EMA, smoothing, lr scaling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.training import ClassificationModule, build_optimizer, build_scheduler, lr_lambda, param_groups, scale_lr

TINY_MODEL = {"name": "mobilenetv3_small_075"}
#: A network from a two-row table: small enough for torch.compile to finish quickly on a CPU.
MICRO_ARCH = {"name": "micro", "arch": {
    "stem": [{"block": "conv", "out_chs": 8, "stride": 2}],
    "stages": [[{"block": "ir", "exp_ratio": 2, "out_chs": 16, "stride": 2, "se_ratio": 0.25}]],
}}


def smooth_onehot(y: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    return F.one_hot(y, n).float() * (1 - eps) + eps / n


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixup_cutmix_targets_sum_to_one_and_match_lambda(mode: str) -> None:
    torch.manual_seed(0)
    n, eps = 10, 0.1
    mix = {"mixup_alpha": 0.2 if mode == "mixup" else 0.0, "cutmix_alpha": 1.0 if mode == "cutmix" else 0.0}
    m = ClassificationModule(TINY_MODEL, n, loss={"label_smoothing": eps}, mixup=mix)
    assert m.soft_targets and "soft-target CE" in m.describe_loss()
    x = torch.rand(8, 3, 32, 32)
    y = torch.arange(8) % n
    xm, target = m.mixup_fn(x.clone(), y)
    assert torch.allclose(target.sum(1), torch.ones(8), atol=1e-6)
    flipped = x.flip(0)
    if mode == "mixup":  # x_mixed = lam * x + (1 - lam) * x_flipped, per pixel
        lam = float(((xm - flipped) / (x - flipped))[0].flatten().median())
    else:  # lam = fraction of pixels kept from the sample itself
        lam = float((xm[0] == x[0]).all(0).float().mean())
    expected = lam * smooth_onehot(y, n, eps) + (1 - lam) * smooth_onehot(y.flip(0), n, eps)
    assert torch.allclose(target, expected, atol=1e-4)
    # smoothing is folded in once: the train loss itself does not smooth again
    assert isinstance(m.train_criterion, nn.Module) and not hasattr(m.train_criterion, "label_smoothing")


def test_warmup_then_cosine_values() -> None:
    f = lr_lambda(total_steps=100, steps_per_epoch=10, name="cosine", warmup_epochs=1, warmup_factor=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-9)
    # through a real optimizer + LambdaLR, stepped per iteration
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    sched = build_scheduler(opt, 100, 10, name="cosine", warmup_epochs=1, warmup_factor=0.1)
    lrs = []
    for _ in range(56):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.04) and lrs[10] == pytest.approx(0.4) and lrs[55] == pytest.approx(0.2)
    step = lr_lambda(100, 10, name="step", decay_epochs=3, decay_rate=0.1)
    assert step(29) == pytest.approx(1.0) and step(30) == pytest.approx(0.1) and step(60) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_lambda(10, 1, name="poly")


def test_no_weight_decay_on_norm_bias_and_optional_depthwise() -> None:
    import zoo

    net = zoo.create_model("mobilenetv2_050", num_classes=10)
    groups = {g["name"]: g for g in param_groups(net, 4e-5)}
    one_d = {id(p) for p in net.parameters() if p.ndim <= 1}
    assert {id(p) for p in groups["no_decay"]["params"]} == one_d and groups["no_decay"]["weight_decay"] == 0
    assert all(p.ndim > 1 for p in groups["decay"]["params"]) and groups["decay"]["weight_decay"] == 4e-5
    assert "depthwise" not in groups
    dw = {id(m.weight) for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1}
    groups = {g["name"]: g for g in param_groups(net, 4e-5, wd_depthwise=0.0)}
    assert {id(p) for p in groups["depthwise"]["params"]} == dw and groups["depthwise"]["weight_decay"] == 0.0
    assert not dw & {id(p) for p in groups["decay"]["params"]}
    opt = build_optimizer(net, "sgd", lr=0.1, weight_decay=4e-5, wd_depthwise=0.0)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.0, 4e-5]
    assert opt.param_groups[0]["nesterov"] is True
    groups = {g["name"]: g for g in param_groups(net, 4e-5, wd_norm_bias=True)}
    assert "no_decay" not in groups
    rms = build_optimizer(net, "rmsproptf", lr=0.01, weight_decay=1e-5, alpha=0.9, eps=1e-3)
    assert type(rms).__name__ == "RMSpropTF" and rms.defaults["eps"] == 1e-3 and rms.defaults["alpha"] == 0.9


def test_ema_differs_from_and_lags_live_weights() -> None:
    torch.manual_seed(0)
    m = ClassificationModule(MICRO_ARCH, 10, ema={"enabled": True, "decay": 0.9})
    init = [p.detach().clone() for p in m.net.parameters()]
    opt = torch.optim.SGD(m.net.parameters(), lr=0.5)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    for step in range(5):
        loss = F.cross_entropy(m.net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.ema.update(m.net, step=step)
    live = list(m.net.parameters())
    ema = list(m.ema.module.parameters())
    d_live = sum(float((a.detach() - b).norm()) for a, b in zip(live, init))
    d_ema = sum(float((a - b).norm()) for a, b in zip(ema, init))
    assert any(not torch.equal(a, b) for a, b in zip(live, ema))
    assert 0 < d_ema < d_live


def test_label_smoothing_changes_loss_as_expected() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10), torch.arange(6)
    plain = ClassificationModule(TINY_MODEL, 10, loss={"label_smoothing": 0.0}).train_criterion(logits, y)
    smooth = ClassificationModule(TINY_MODEL, 10, loss={"label_smoothing": 0.2}).train_criterion(logits, y)
    logp = logits.log_softmax(-1)
    expected = 0.8 * plain + 0.2 * (-logp.mean(-1)).mean()
    assert smooth == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationModule(TINY_MODEL, 10, loss={"label_smoothing": 1.5})


def test_label_smoothing_loss_equals_the_closed_form() -> None:
    """CE with smoothing eps over K classes: -(1 - eps) log p_y - (eps / K) sum_k log p_k, on known logits.

    Logits (2, 0, ..., 0) and target 0 over 10 classes: log p_k = z_k - log(e^2 + 9), so the loss is
    log(e^2 + 9) - 0.9 * 2 - 0.01 * 2 = 0.97661 with eps 0.1, against log(e^2 + 9) - 2 = 0.79661 without smoothing.
    """
    logits = torch.zeros(1, 10)
    logits[0, 0] = 2.0
    target = torch.tensor([0])
    closed_form = {0.1: math.log(math.e ** 2 + 9) - 1.82, 0.0: math.log(math.e ** 2 + 9) - 2.0}
    for eps, expected in closed_form.items():
        loss = ClassificationModule(TINY_MODEL, 10, loss={"label_smoothing": eps}).train_criterion(logits, target)
        assert float(loss) == pytest.approx(expected, abs=1e-5), eps
    assert closed_form[0.1] == pytest.approx(0.97661, abs=1e-5)


def test_lr_scaling() -> None:
    assert scale_lr(0.1, 512, 256, "linear") == pytest.approx(0.2)
    assert scale_lr(0.1, 512, 256, "sqrt") == pytest.approx(0.1 * math.sqrt(2))
    assert scale_lr(0.1, 512, 256, "none") == pytest.approx(0.1)
    assert scale_lr(0.4, 32, 256) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="lr_scaling must be one of"):
        scale_lr(0.1, 64, 256, "cubic")


def _skip_without_inductor_toolchain() -> None:
    """Skip when torch.compile's CPU backend cannot build kernels here: no inductor, no C++ compiler or
    no Python headers. Any other failure of the compiled model is a test failure."""
    import sysconfig

    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler
    except ImportError as err:  # pragma: no cover - a torch build without inductor
        pytest.skip(f"torch inductor unavailable: {err}")
    try:
        get_cpp_compiler()
    except InvalidCxxCompiler as err:  # pragma: no cover - no C++ compiler on this machine
        pytest.skip(f"no C++ compiler for torch inductor: {err}")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():  # pragma: no cover
        pytest.skip(f"no Python headers ({headers}) for torch inductor's kernels")


def test_overfits_one_fixed_batch() -> None:
    """Twenty embedded Imagenette-mini images (two per class) at 32 px, the configured loss (label smoothing
    0.1) and SGD: 40 steps on that one batch at least halve the loss. Catches a network, loss or optimizer
    that does not learn (a detached branch, a loss that ignores the targets, an optimizer without the
    parameters) in a couple of seconds."""
    from zoo.data import ImageDataModule

    dm = ImageDataModule(aug="none", train_res=32, num_workers=0)  # aug none: the same batch every step
    dm.setup("fit")
    targets = list(dm.train_dataset.targets)
    idx = [targets.index(c) + k for c in range(10) for k in range(2)]
    x = dm.normalize_batch(torch.stack([dm.train_dataset[i][0] for i in idx]))
    y = torch.tensor([targets[i] for i in idx])
    assert sorted(set(y.tolist())) == list(range(10))
    torch.manual_seed(0)
    m = ClassificationModule(MICRO_ARCH, 10, loss={"label_smoothing": 0.1}).train()
    opt = build_optimizer(m.net, "sgd", lr=0.1, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = m.train_criterion(m.net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(10), abs=0.2)  # an untrained net is near chance
    assert losses[-1] <= 0.5 * losses[0], [round(v, 2) for v in losses[::5]]


def test_compile_matches_eager_and_keeps_plain_keys() -> None:
    _skip_without_inductor_toolchain()
    torch.manual_seed(0)
    m = ClassificationModule(MICRO_ARCH, 10, compile=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = m.net(x)
        m.setup("fit")
        compiled = m.net(x)
    assert torch.allclose(eager, compiled, atol=1e-4)
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith("net.") and "_orig_mod" not in k for k in keys)
