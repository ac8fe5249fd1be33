"""Structurally re-parameterizable blocks: RepVGG (Ding et al. 2021) and MobileOne (Vasu et al. 2023).

One family because both rest on the same identity (Ding et al. 2021, Sec. 3.3): at
training time a block sums several *linear* branches (conv -> BN with different kernel
sizes, a BN on the identity) and applies one non-linearity after the sum; in eval mode
each branch is an affine map, so the branches add up to ONE conv with a bias.
``reparameterize()`` performs that fusion in place and switches the block to its
deployed form (a plain conv -> [SE] -> act); the multi-branch form is only for training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.ops import StochasticDepth

from zoo.layers.activations import ActLayer, create_act
from zoo.layers.conv import ConvNormAct, NormLayer
from zoo.layers.padding import Conv2dSame
from zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["RepVGGBlock", "MobileOneBlock"]


def _bn_affine(bn: nn.Module, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm: ``bn(x) = x * scale + shift`` per channel, in float64."""
    if not isinstance(bn, _BatchNorm) or bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{where}: re-parameterization folds BatchNorm running statistics, but the branch norm is "
            f"{type(bn).__name__}{' without running statistics' if isinstance(bn, _BatchNorm) else ''}"
        )
    mean, var = bn.running_mean.double(), bn.running_var.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _pad_to(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad a (out, in/g, h, w) kernel to ``size``, centred: a 1x1 conv is the centre tap of a kxk one."""
    dh, dw = size[0] - kernel.shape[2], size[1] - kernel.shape[3]
    return nn.functional.pad(kernel, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class _RepBlock(nn.Module):
    """What RepVGG and MobileOne blocks share: the identity-BN branch rule, SE, drop-path, the
    forward of both forms and ``reparameterize()``. A subclass builds its conv branches
    (``_make_branches``) and sums them (``_sum_convs``); ``_BRANCHES`` names the attributes
    that hold them, in the order the state_dict lists them.

    Dilation (timm's byobnet convention): the conv branches, which carry the stride, have
    ``first_dilation`` (default ``dilation``); a block whose ``first_dilation`` differs from
    ``dilation`` is the first of a dilated stage, whose stride became the dilation, and keeps
    the strided block's branches: no identity branch. The fusion stays exact: the 1x1 and
    identity branches are the centre tap of the dilated kxk kernel."""

    _BRANCHES: tuple[str, ...] = ()

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        kernel_size: int,
        *,
        groups: int,
        dilation: int,
        first_dilation: int | None,
        act_layer: ActLayer,
        se_ratio: float,
        se_gate: ActLayer,
        se_divisor: int,
        drop_path_rate: float,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        name = type(self).__name__
        if stride not in (1, 2):
            raise ValueError(f"{name} stride must be 1 or 2, got {stride}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{name} kernel_size must be a positive odd number (a centred 1x1 branch), got {kernel_size}")
        # the identity is a branch only where it is a valid conv: same shape in and out (Ding et al. 2021, Sec. 3.2)
        self.has_skip = stride == 1 and in_chs == out_chs and first_dilation == dilation
        self.identity = norm_layer(out_chs) if self.has_skip else None
        self._make_branches(in_chs, out_chs, stride, kernel_size, groups, first_dilation, norm_layer)
        self.se = (
            SqueezeExcite(out_chs, se_ratio, rd_divisor=se_divisor, gate_layer=se_gate) if se_ratio > 0
            else nn.Identity()
        )
        self.drop_path = StochasticDepth(drop_path_rate, "row") if self.has_skip and drop_path_rate > 0 else nn.Identity()
        self.act = create_act(act_layer)
        self.reparam_conv: nn.Conv2d | None = None  # the deployed form's one conv, set by reparameterize()
        self.init_branch_norms()

    def _make_branches(
        self, in_chs: int, out_chs: int, stride: int, kernel_size: int, groups: int, dilation: int,
        norm_layer: NormLayer,
    ) -> None:
        raise NotImplementedError

    def _sum_convs(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _conv_branches(self) -> list[nn.Module]:
        raise NotImplementedError

    @torch.no_grad()
    def init_branch_norms(self, start_as_identity: bool = False) -> None:
        """Start the branches' BatchNorms at beta = 0 and a gamma that keeps deep stacks trainable.

        By default each of the n summed branches starts at gamma = 1/sqrt(n): each branch is
        normalized to unit variance and the branches are independent at initialization, so their
        sum has variance n; this scaling starts the block's pre-activation at unit variance, as one
        conv-BN would (with gamma = 1 the signal grows about n-fold per block, which an eval-mode
        forward at initialization shows).

        With ``start_as_identity`` a block that has an identity branch starts as that branch alone
        (identity gamma 1, every conv branch's gamma 0): the counterpart, for a re-parameterizable
        block, of zeroing the last BN of a residual branch (Goyal et al. 2017, Sec. 5.1). A plain
        stack of BatchNorm layers amplifies the gradient with depth at initialization (Yang et al.
        2019); in MobileOne-S0 (42 conv layers) the stem's gradient-to-weight norm ratio on one
        batch is 2600x the classifier's with the default start and 38x with this one.
        """
        if self.reparam_conv is not None:
            return
        branches = [branch.bn for branch in self._conv_branches()]
        norms = branches + ([self.identity] if self.identity is not None else [])
        identity_start = start_as_identity and self.identity is not None
        for bn in norms:
            if getattr(bn, "weight", None) is not None:
                gamma = (0.0 if bn in branches else 1.0) if identity_start else len(norms) ** -0.5
                nn.init.constant_(bn.weight, gamma)
                nn.init.zeros_(bn.bias)

    @property
    def deployed(self) -> bool:
        """True once :meth:`reparameterize` has fused the branches."""
        return self.reparam_conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            out = self.reparam_conv(x)
        else:
            out = self._sum_convs(x)
            if self.identity is not None:
                out = self.drop_path(out) + self.identity(x)
        return self.act(self.se(out))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse every branch into one conv with a bias, in place, from the BatchNorm running
        statistics (eval-mode semantics); the branches are removed. A no-op when already fused."""
        if self.reparam_conv is not None:
            return
        name = type(self).__name__
        branches = self._conv_branches()
        ref = branches[0].conv
        if isinstance(ref, Conv2dSame):
            # with input-dependent (asymmetric) padding the 1x1 and identity branches do not sample the
            # centre tap of the kxk window, so the branches have no single-conv equivalent
            raise ValueError(f"{name} with TF 'same' padding on a strided conv cannot be re-parameterized; "
                             "build the model with pad='symmetric'")
        kernel = torch.zeros(ref.weight.shape, dtype=torch.float64, device=ref.weight.device)
        bias = torch.zeros(ref.out_channels, dtype=torch.float64, device=ref.weight.device)
        for branch in branches:
            scale, shift = _bn_affine(branch.bn, name)
            kernel += _pad_to(branch.conv.weight.double(), ref.kernel_size) * scale.view(-1, 1, 1, 1)
            bias += shift
        if self.identity is not None:
            # the identity as a conv: a 1 at the centre tap of each channel's own input (within its group)
            in_per_group = ref.in_channels // ref.groups
            eye = torch.zeros_like(kernel)
            chs = torch.arange(ref.out_channels, device=kernel.device)
            eye[chs, chs % in_per_group, ref.kernel_size[0] // 2, ref.kernel_size[1] // 2] = 1.0
            scale, shift = _bn_affine(self.identity, name)
            kernel += eye * scale.view(-1, 1, 1, 1)
            bias += shift
        conv = nn.Conv2d(
            ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride, ref.padding, ref.dilation, ref.groups,
            bias=True, device=ref.weight.device, dtype=ref.weight.dtype,
        )
        conv.weight.copy_(kernel.to(ref.weight.dtype))
        conv.bias.copy_(bias.to(ref.weight.dtype))
        for attr in ("identity", "drop_path", *self._BRANCHES):
            delattr(self, attr)
            setattr(self, attr, None)
        self.reparam_conv = conv
        self.has_skip = False  # the deployed block is a plain conv


class RepVGGBlock(_RepBlock):
    """RepVGG block (Ding et al. 2021, Sec. 3.2-3.3, Fig. 2): ``act(kxk conv-BN + 1x1 conv-BN
    [+ BN(x)])``, the identity BN only when stride is 1 and ``in_chs == out_chs``.

    ``reparameterize()`` turns it into one kxk conv with bias followed by the activation
    (Sec. 3.3: the 1x1 kernel is the centre of a kxk one, the identity a 1x1 conv whose
    kernel is the unit matrix). Optional SE after the sum (not in the paper, as in RepVGG-D2se)
    stays after the fused conv. ``act_layer``/``se_gate`` are names or classes.
    """

    _BRANCHES = ("conv_kxk", "conv_1x1")

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        groups: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        act_layer: ActLayer = "relu",
        se_ratio: float = 0.0,
        se_gate: ActLayer = "sigmoid",
        se_divisor: int = 8,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            in_chs, out_chs, stride, kernel_size, groups=groups, dilation=dilation, first_dilation=first_dilation,
            act_layer=act_layer, se_ratio=se_ratio, se_gate=se_gate, se_divisor=se_divisor,
            drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )

    def _make_branches(
        self, in_chs: int, out_chs: int, stride: int, kernel_size: int, groups: int, dilation: int,
        norm_layer: NormLayer,
    ) -> None:
        self.conv_kxk = ConvNormAct(
            in_chs, out_chs, kernel_size, stride, groups=groups, dilation=dilation, act_layer=None, norm_layer=norm_layer
        )
        # A strided block's 1x1 branch takes every stride-th pixel, then convolves with stride 1: the
        # result of a strided 1x1 conv, whose weight gradient crashes torch 2.14's CPU build in
        # channels_last memory when the input has few channels (the 3-channel stem).
        self.conv_1x1 = ConvNormAct(in_chs, out_chs, 1, 1, groups=groups, act_layer=None, norm_layer=norm_layer)
        self.stride_1x1 = stride

    def _sum_convs(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride_1x1
        return self.conv_kxk(x) + self.conv_1x1(x[:, :, ::s, ::s] if s > 1 else x)

    def _conv_branches(self) -> list[nn.Module]:
        return [self.conv_kxk, self.conv_1x1]


class MobileOneBlock(_RepBlock):
    """MobileOne block (Vasu et al. 2023, Sec. 3.1, Fig. 3): ``act([SE](sum of num_branches kxk
    conv-BN + 1x1 conv-BN "scale" branch [+ BN(x)]))``.

    The paper's unit is a depthwise block (``groups=in_chs``, kxk, the scale branch present)
    followed by a pointwise one (``kernel_size=1``: no separate scale branch); ``num_branches``
    is its over-parameterization factor k (4 in MobileOne-S0, 1 in S1-S4). The identity BN
    exists when stride is 1 and ``in_chs == out_chs``. SE (MobileOne-S4) acts on the sum,
    before the activation, and stays after the fused conv. ``reparameterize()`` fuses all
    branches into one kxk conv with bias. ``act_layer``/``se_gate`` are names or classes.
    """

    _BRANCHES = ("conv_kxk", "conv_scale")

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        *,
        groups: int = 1,
        num_branches: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        act_layer: ActLayer = "relu",
        se_ratio: float = 0.0,
        se_gate: ActLayer = "sigmoid",
        se_divisor: int = 8,
        drop_path_rate: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        if num_branches < 1:
            raise ValueError(f"MobileOneBlock num_branches (over-parameterization k) must be >= 1, got {num_branches}")
        self.num_branches = num_branches
        super().__init__(
            in_chs, out_chs, stride, kernel_size, groups=groups, dilation=dilation, first_dilation=first_dilation,
            act_layer=act_layer, se_ratio=se_ratio, se_gate=se_gate, se_divisor=se_divisor,
            drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )

    def _make_branches(
        self, in_chs: int, out_chs: int, stride: int, kernel_size: int, groups: int, dilation: int,
        norm_layer: NormLayer,
    ) -> None:
        self.conv_kxk = nn.ModuleList(
            ConvNormAct(
                in_chs, out_chs, kernel_size, stride, groups=groups, dilation=dilation, act_layer=None,
                norm_layer=norm_layer,
            )
            for _ in range(self.num_branches)
        )
        self.conv_scale = (
            ConvNormAct(in_chs, out_chs, 1, stride, groups=groups, act_layer=None, norm_layer=norm_layer)
            if kernel_size > 1 else None
        )

    def _sum_convs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_kxk[0](x)
        for i, branch in enumerate(self.conv_kxk):
            if i > 0:
                out = out + branch(x)
        if self.conv_scale is not None:
            out = out + self.conv_scale(x)
        return out

    def _conv_branches(self) -> list[nn.Module]:
        return [*self.conv_kxk, *([self.conv_scale] if self.conv_scale is not None else [])]
