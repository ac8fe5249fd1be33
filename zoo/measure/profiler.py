"""Per-layer profiler: shapes, parameters, MACs, FLOPs, memory traffic, receptive field.

Call :func:`profile` / :func:`complexity` on any ``nn.Module`` (``zoo.profile`` is
:func:`profile`); the command line is ``python -m zoo.tools.profile --model NAME``.

How it counts (one forward pass, batch 1, eval mode, ``torch.no_grad``, uncompiled):

* Forward pre/post hooks keep a stack of the module names being executed, and a
  ``TorchDispatchMode`` (the mechanism ``torch.utils.flop_counter.FlopCounterMode`` is
  built on) sees every ATen op, including those written inside a block's ``forward``
  (residual adds, concatenations, SE's pooling and gating multiply, channel splits,
  the copy a channel shuffle makes). Each op is charged to the innermost module running:
  a *leaf* module (conv, BN, activation, shuffle, pooling, ...) gets one row per call,
  and an op executed directly in a non-leaf module's ``forward`` gets its own row named
  ``<module>.<op>`` (e.g. ``stages.1.0.add``). Pure views (reshape without copy,
  transpose, split, slice) cost nothing and get no row.
* **MACs** (column ``macs``): conv + linear multiply-adds only, the convention of the
  MobileNet/ShuffleNet/GhostNet/ResNet papers, computed by
  :func:`zoo.measure.complexity.module_macs`, so the total equals :func:`zoo.measure.complexity.count_macs`.
* **FLOPs** (column ``flops``): 2 x MACs for conv/linear, + 1 per output element for a
  bias, + element-wise ops at the per-element costs of :data:`ELEMENTWISE_FLOPS`
  (BatchNorm in eval = scale + shift = 2; ReLU/ReLU6 1; hard-sigmoid 3; hard-swish 4;
  sigmoid 4; SE gating multiply and residual add 1; pooling/mean 1 per input element).
  Concatenation and copies cost 0 FLOPs but show up in ``bytes``.
* **Bytes**: memory access cost as the ShuffleNetV2 paper (Ma et al. 2018, Sec. 2)
  defines it: every tensor an op reads (weights and input activations) plus every
  tensor it writes, at the dtype's size (4 bytes for fp32). An in-place op reads and
  writes its tensor. Views are free; a channel shuffle's ``contiguous`` copy is not.
* **Receptive field** (``rf``) and **cumulative stride** (``stride``) of each row's
  output, in input pixels (the input region one output pixel sees; Luo et al. 2016,
  "Understanding the effective receptive field"). Tracked tensor by tensor: a conv or pooling window with kernel k, stride s and
  dilation d grows the field by ``(k - 1) * d * jump`` and multiplies ``jump`` (the
  cumulative stride) by s; any other op passes it through. An op with several inputs
  (residual add, concat, multiply) takes the input with the **largest** field: for a
  multi-branch block the field is that of its widest-seeing branch. Tensors that went
  through a global pooling (SE's squeeze, the head) are marked ``global`` and are
  ignored when combined with spatial tensors, so SE's channel gating does not count as
  spatial context; the head's rows report ``global``.

Anything not understood is reported in ``Complexity.warnings`` instead of being
silently skipped: an ATen op without a cost rule, or a leaf module with parameters that
is not a conv, linear or normalization layer (its multiply-adds are not in ``macs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torchvision.ops import DeformConv2d
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from zoo.measure.complexity import FvcoreCount, count_params, fvcore_count, input_shape, module_macs
from zoo.models.fuse import reparameterize, unwrap_model

__all__ = [
    "LayerRow",
    "Complexity",
    "ELEMENTWISE_FLOPS",
    "profile",
    "complexity",
    "format_table",
    "format_summary",
]

_RF_ATTR = "_zoo_rf"

#: FLOPs per output element of element-wise ATen ops (eval-mode forward).
ELEMENTWISE_FLOPS: dict[str, int] = {
    # normalization in eval: y = x * scale + shift (scale/shift precomputed per channel)
    "native_batch_norm": 2, "batch_norm": 2, "_native_batch_norm_legit_no_training": 2,
    "_native_batch_norm_legit": 2, "native_layer_norm": 5, "layer_norm": 5,
    "native_group_norm": 5, "group_norm": 5,
    # activations
    "relu": 1, "relu_": 1, "relu6": 1, "hardtanh": 1, "hardtanh_": 1, "clamp": 1, "clamp_": 1,
    "clamp_min": 1, "clamp_min_": 1, "clamp_max": 1, "clamp_max_": 1, "threshold": 1, "threshold_": 1,
    "leaky_relu": 2, "leaky_relu_": 2, "prelu": 2, "_prelu_kernel": 2,
    "hardsigmoid": 3, "hardsigmoid_": 3,  # relu6(x + 3) / 6: add, clamp, divide
    "hardswish": 4, "hardswish_": 4,  # x * relu6(x + 3) / 6: add, clamp, divide, multiply
    "sigmoid": 4, "sigmoid_": 4,  # 1 / (1 + exp(-x)): negate, exp, add, divide
    "silu": 5, "silu_": 5, "tanh": 5, "tanh_": 5, "elu": 4, "elu_": 4, "selu": 5, "selu_": 5,
    "gelu": 8, "gelu_": 8, "mish": 8, "mish_": 8, "exp": 1, "exp_": 1, "neg": 1, "abs": 1,
    # binary element-wise (residual add, SE gating multiply, scaling)
    "add": 1, "add_": 1, "sub": 1, "sub_": 1, "rsub": 1, "mul": 1, "mul_": 1, "div": 1, "div_": 1,
    "maximum": 1, "minimum": 1, "where": 1, "softmax": 5, "_softmax": 5, "log_softmax": 5, "_log_softmax": 5,
}
#: Ops costing FLOPs per *input* element (reductions).
_REDUCTIONS = {"mean", "sum", "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d", "amax"}
_CONV = {"convolution", "_convolution", "conv2d", "conv1d", "conv3d", "conv_transpose2d", "mkldnn_convolution"}
_MATMUL = {"addmm", "mm", "bmm", "matmul", "linear"}
_WINDOW_POOL = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d"}
#: Data movement: no FLOPs, but the bytes read and written count.
_COPIES = {"cat", "stack", "clone", "copy_", "contiguous", "_to_copy", "constant_pad_nd", "pad", "index_select",
           "flip", "roll", "repeat", "channel_shuffle", "native_channel_shuffle", "pixel_shuffle"}
#: Views and allocations: neither FLOPs nor bytes.
_FREE = {"view", "_unsafe_view", "_reshape_alias", "reshape", "transpose", "t", "permute", "split", "split_with_sizes",
         "chunk", "unbind", "slice", "select", "unsqueeze", "squeeze", "expand", "flatten", "unflatten", "alias",
         "as_strided", "detach", "lift_fresh", "empty", "empty_like", "empty_strided", "zeros", "zeros_like",
         "ones", "ones_like", "full", "scalar_tensor", "dropout", "dropout_", "feature_dropout", "_to_dtype",
         "size", "sym_size", "stride", "is_same_size", "_local_scalar_dense", "narrow", "movedim", "numpy_T",
         "expand_as", "view_as", "reshape_as", "type_as", "to"}
#: Leaf modules with parameters whose multiply-adds are understood.
_KNOWN_PARAM_LEAVES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, DeformConv2d,
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU,
)
_PLAIN_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class LayerRow:
    """One row of the profile: a leaf-module call, or an op run directly in a block's forward.

    Attributes:
        name: module path (``stages.0.1.conv_dw.conv``) or ``<module>.<op>`` for an op
            written in a ``forward`` (``stages.0.1.add``); ``#k`` marks a repeated call.
        block: class name of the block the layer belongs to (the outermost ancestor that is
            not a plain ``Sequential``/``ModuleList``/``ModuleDict``, e.g. ``InvertedResidual``).
        kind: class name of the leaf module (``Conv2d``, ``Hardswish``) or ``aten.<op>``.
        out_shape: shape of the output (batch 1).
        params: parameters of the leaf module (0 for ops).
        macs: conv + linear multiply-adds (papers' convention).
        flops: all floating-point ops (2 x MACs + bias + element-wise, see module docs).
        bytes: memory access cost in bytes (weights + inputs read + outputs written).
        rf: receptive field (height, width) in input pixels; None after a global pooling.
        stride: cumulative stride (height, width) of the output w.r.t. the input.
    """

    name: str
    block: str
    kind: str
    out_shape: tuple[int, ...]
    params: int = 0
    macs: int = 0
    flops: int = 0
    bytes: int = 0
    rf: tuple[int, int] | None = (1, 1)
    stride: tuple[int, int] | None = (1, 1)

    @property
    def rf_str(self) -> str:
        """``"11"``, ``"3x7"`` or ``"global"``."""
        return _pair_str(self.rf)

    @property
    def stride_str(self) -> str:
        """``"8"``, ``"2x1"`` or ``"global"``."""
        return _pair_str(self.stride)


@dataclass
class Complexity:
    """Labelled whole-model totals at a stated resolution and class count (batch 1)."""

    model: str
    res: tuple[int, int]
    in_chans: int
    num_classes: int
    params: int
    macs: int  # conv + linear multiply-adds, papers' convention (= zoo.measure.complexity.count_macs)
    flops: int  # all FLOPs, BatchNorm not folded
    bytes: int  # memory access cost, BatchNorm not folded
    # the deployed form, zoo.deploy.reparameterize: re-parameterizable blocks fused, BatchNorm folded
    params_deployed: int
    macs_deployed: int
    flops_deployed: int
    bytes_deployed: int
    fvcore_flops: int | None  # fvcore's total (one "flop" per MAC + BN + pooling)
    fvcore_conv_linear: int | None  # fvcore's conv + linear part, comparable to ``macs``
    fvcore_skipped: dict[str, int] = field(default_factory=dict)  # ops fvcore does not count
    rf: tuple[int, int] | None = None  # receptive field of the last spatial feature map
    total_stride: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)


def _pair_str(value: tuple[int, int] | None) -> str:
    if value is None:
        return "global"
    a, b = value
    return f"{_num(a)}" if a == b else f"{_num(a)}x{_num(b)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    value = list(value)
    return (int(value[0]), int(value[-1])) if len(value) <= 2 else (int(value[-2]), int(value[-1]))


# --- receptive-field bookkeeping --------------------------------------------------------
# Each activation tensor carries (rf_h, rf_w, jump_h, jump_w) or None once global.

_GLOBAL = None


def _rf_of(t: torch.Tensor) -> Any:
    return getattr(t, _RF_ATTR, "missing")


def _base_rf(inputs: Sequence[torch.Tensor]) -> Any:
    """The receptive field an op's output inherits: the largest spatial one among its inputs."""
    infos = [_rf_of(t) for t in inputs]
    infos = [i for i in infos if not isinstance(i, str)]
    if not infos:
        return "missing"
    spatial = [i for i in infos if i is not _GLOBAL]
    if not spatial:
        return _GLOBAL
    return max(spatial, key=lambda i: (i[0] * i[1], i[2] * i[3]))


def _grow(info: Any, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1),
          transposed: bool = False) -> Any:
    if info is _GLOBAL or isinstance(info, str):
        return info
    rf_h, rf_w, j_h, j_w = info
    if transposed:
        j_h, j_w = j_h / stride[0], j_w / stride[1]
        return (rf_h + (kernel[0] - 1) * dilation[0] * j_h, rf_w + (kernel[1] - 1) * dilation[1] * j_w, j_h, j_w)
    return (rf_h + (kernel[0] - 1) * dilation[0] * j_h, rf_w + (kernel[1] - 1) * dilation[1] * j_w,
            j_h * stride[0], j_w * stride[1])


def _is_spatial_reduction(op: str, args: Sequence[Any], out: torch.Tensor, inp: torch.Tensor) -> bool:
    if op in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return out.dim() >= 2 and tuple(out.shape[-2:]) == (1, 1)
    if op in ("mean", "sum", "amax") and inp.dim() == 4:
        dims = args[1] if len(args) > 1 else None
        if dims is None:
            return True
        dims = [dims] if isinstance(dims, int) else list(dims)
        return {d % 4 for d in dims} >= {2, 3}
    return False


def _out_rf(op: str, args: Sequence[Any], kwargs: dict[str, Any], inputs: list[torch.Tensor],
            out: torch.Tensor | None) -> Any:
    """Receptive field info of an op's output from its inputs (see module docs)."""
    if op in _CONV:
        x, weight = args[0], args[1]
        info = _rf_of(x) if isinstance(x, torch.Tensor) else "missing"
        kernel = tuple(weight.shape[2:4]) if weight.dim() == 4 else (1, 1)
        if op in ("convolution", "_convolution"):
            stride, dilation, transposed = _pair(args[3], 1), _pair(args[5], 1), bool(args[6])
        elif op == "mkldnn_convolution":
            stride, dilation, transposed = _pair(args[4], 1), _pair(args[5], 1), False
        else:  # conv2d(input, weight, bias, stride, padding, dilation, groups)
            stride = _pair(args[3] if len(args) > 3 else kwargs.get("stride"), 1)
            dilation = _pair(args[5] if len(args) > 5 else kwargs.get("dilation"), 1)
            transposed = op == "conv_transpose2d"
        return _grow(info, (int(kernel[0]), int(kernel[1])), stride, dilation, transposed)
    if op in _WINDOW_POOL:
        info = _rf_of(args[0])
        kernel = _pair(args[1], 1)
        stride = _pair(args[2] if len(args) > 2 else kwargs.get("stride"), 0)
        stride = kernel if stride == (0, 0) else stride
        dilation = _pair(args[4], 1) if op != "avg_pool2d" and len(args) > 4 else (1, 1)
        return _grow(info, kernel, stride, dilation)
    if out is not None and inputs and _is_spatial_reduction(op, args, out, inputs[0]):
        return _GLOBAL
    if op in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d") and out is not None:
        x = inputs[0]
        kernel = (math.ceil(x.shape[-2] / out.shape[-2]), math.ceil(x.shape[-1] / out.shape[-1]))
        stride = (max(1, x.shape[-2] // out.shape[-2]), max(1, x.shape[-1] // out.shape[-1]))
        return _grow(_rf_of(x), kernel, stride)
    return _base_rf(inputs)


# --- cost of one ATen op ----------------------------------------------------------------

def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _op_cost(op: str, args: Sequence[Any], kwargs: dict[str, Any], inputs: list[torch.Tensor],
             outputs: list[torch.Tensor]) -> tuple[int, int, bool]:
    """(flops, bytes, known) of one ATen op call."""
    if op in _FREE:
        return 0, 0, True
    nbytes = sum(_nbytes(t) for t in inputs) + sum(_nbytes(t) for t in outputs)
    out = outputs[0] if outputs else None
    out_elems = out.numel() if out is not None else 0
    if op in _CONV:
        weight = args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        transposed = op in ("convolution", "_convolution") and bool(args[6]) or op == "conv_transpose2d"
        kernel = math.prod(weight.shape[2:])
        if transposed:  # weight is (in, out / groups, k, k)
            macs = args[0].numel() * weight.shape[1] * kernel
        else:  # weight is (out, in / groups, k, k)
            macs = out_elems * weight.shape[1] * kernel
        return 2 * macs + (out_elems if isinstance(bias, torch.Tensor) else 0), nbytes, True
    if op == "deform_conv2d":  # (input, weight, offset, mask, bias, ...): a conv's multiply-adds at sampled points
        weight, bias = args[1], args[4]
        macs = out_elems * weight.shape[1] * math.prod(weight.shape[2:])
        return 2 * macs + (out_elems if isinstance(bias, torch.Tensor) and bias.numel() else 0), nbytes, True
    if op in _MATMUL:
        if op == "addmm":
            macs = args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
            return 2 * macs + out_elems, nbytes, True
        if op == "linear":
            weight = args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            macs = out_elems * weight.shape[1]
            return 2 * macs + (out_elems if isinstance(bias, torch.Tensor) else 0), nbytes, True
        inner = args[0].shape[-1]
        return 2 * out_elems * inner, nbytes, True
    if op in _WINDOW_POOL:
        kernel = _pair(args[1], 1)
        return out_elems * kernel[0] * kernel[1], nbytes, True
    if op in _REDUCTIONS:
        return (inputs[0].numel() if inputs else 0), nbytes, True
    if op in ELEMENTWISE_FLOPS:
        return ELEMENTWISE_FLOPS[op] * out_elems, nbytes, True
    if op in _COPIES:
        return 0, nbytes, True
    return 0, nbytes, False


def _tensors(obj: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(obj)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


class _Recorder(TorchDispatchMode):
    """Charges every ATen op to the innermost running module and propagates receptive fields."""

    def __init__(self, profiler: "_Profiler") -> None:
        super().__init__()
        self.profiler = profiler

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = func.overloadpacket.__name__
        inputs = _tensors((args, kwargs))
        outputs = _tensors(out)
        info = _out_rf(op, args, kwargs, inputs, outputs[0] if outputs else None)
        if not isinstance(info, str):
            for t in outputs:
                setattr(t, _RF_ATTR, info)
        self.profiler.record(op, args, kwargs, inputs, outputs)
        return out


class _Profiler:
    """Module-stack bookkeeping shared by the hooks and the dispatch recorder."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {m: n for n, m in model.named_modules()}
        self.blocks = self._block_types(model)
        self.stack: list[nn.Module] = []
        self.rows: list[LayerRow] = []
        self.open_rows: list[LayerRow | None] = []
        self.seen: dict[str, int] = {}
        self.unknown_ops: dict[str, int] = {}

    @staticmethod
    def _block_types(model: nn.Module) -> dict[str, str]:
        """Module path -> class name of the block it belongs to."""
        blocks: dict[str, str] = {}
        for name, module in model.named_modules():
            if not name:
                continue
            parts = name.split(".")
            block = type(module).__name__
            for i in range(1, len(parts) + 1):
                ancestor = model.get_submodule(".".join(parts[:i]))
                if type(ancestor) not in _PLAIN_CONTAINERS:
                    block = type(ancestor).__name__
                    break
            blocks[name] = block
        return blocks

    def _unique(self, name: str) -> str:
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        return name if count == 1 else f"{name}#{count}"

    def pre_hook(self, module: nn.Module, inputs: Any) -> None:
        self.stack.append(module)
        is_leaf = next(module.children(), None) is None
        if is_leaf and module is not self.model:
            name = self.names[module]
            row = LayerRow(
                name=self._unique(name), block=self.blocks.get(name, type(module).__name__),
                kind=type(module).__name__, out_shape=(),
                params=sum(p.numel() for p in module.parameters()),
            )
            self.open_rows.append(row)
        else:
            self.open_rows.append(None)

    def post_hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        row = self.open_rows.pop()
        self.stack.pop()
        if row is None:
            return
        outs = _tensors(output)
        if outs:
            row.out_shape = tuple(outs[0].shape)
            self._set_rf(row, outs[0])
        ins = _tensors(inputs)
        if isinstance(output, torch.Tensor):
            row.macs = module_macs(module, tuple(ins), output)
        if isinstance(module, nn.Identity) and row.params == 0:
            return
        self.rows.append(row)

    @staticmethod
    def _set_rf(row: LayerRow, t: torch.Tensor) -> None:
        info = _rf_of(t)
        if info is _GLOBAL:
            row.rf, row.stride = None, None
        elif not isinstance(info, str):
            row.rf, row.stride = (info[0], info[1]), (info[2], info[3])

    def record(self, op: str, args: Sequence[Any], kwargs: dict[str, Any], inputs: list[torch.Tensor],
               outputs: list[torch.Tensor]) -> None:
        flops, nbytes, known = _op_cost(op, args, kwargs, inputs, outputs)
        if not known:
            self.unknown_ops[op] = self.unknown_ops.get(op, 0) + 1
        row = self.open_rows[-1] if self.open_rows else None
        if row is not None:
            row.flops += flops
            row.bytes += nbytes
            return
        if op in _FREE and known:
            return
        owner = self.names.get(self.stack[-1], "") if self.stack else ""
        name = f"{owner}.{op}" if owner else op
        new = LayerRow(
            name=self._unique(name), block=self.blocks.get(owner, type(self.model).__name__),
            kind=f"aten.{op}", out_shape=tuple(outputs[0].shape) if outputs else (), flops=flops, bytes=nbytes,
        )
        if outputs:
            self._set_rf(new, outputs[0])
        self.rows.append(new)


@torch.no_grad()
def _run(model: nn.Module, res: int | tuple[int, int], in_chans: int | None) -> tuple[list[LayerRow], _Profiler, Any]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"profile expects an nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)
    c, h, w = input_shape(model, res, in_chans)
    prof = _Profiler(model)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(prof.pre_hook))
        handles.append(module.register_forward_hook(prof.post_hook))
    was_training = model.training
    model.eval()
    x = torch.zeros(1, c, h, w)
    setattr(x, _RF_ATTR, (1, 1, 1, 1))
    try:
        with _Recorder(prof):
            out = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return prof.rows, prof, out


def profile(model: nn.Module, res: int | tuple[int, int] = 224, in_chans: int | None = None) -> list[LayerRow]:
    """Per-layer profile of ``model`` for one image of side ``res`` (see the module docs).

    Args:
        model: any ``nn.Module`` taking an image batch; a ``torch.compile`` result is unwrapped.
        res: input side, or ``(height, width)``.
        in_chans: input channels (default: ``model.in_chans`` or the first conv's).

    Returns:
        One :class:`LayerRow` per leaf-module call and per op run directly in a forward,
        in execution order. ``sum(r.macs for r in rows) == zoo.measure.complexity.count_macs(model, res)``.
    """
    rows, _, _ = _run(model, res, in_chans)
    return rows


def complexity(model: nn.Module, res: int | tuple[int, int] = 224, in_chans: int | None = None,
               with_fvcore: bool = True, name: str | None = None) -> Complexity:
    """Whole-model totals under explicit labels, of the model as given and of its deployed form.

    ``macs`` is the papers' convention (conv + linear multiply-adds, equal to
    :func:`zoo.measure.complexity.count_macs`), ``flops`` counts everything (2 x MACs + bias +
    element-wise ops); the ``*_deployed`` totals are those of the deployed form,
    :func:`zoo.models.fuse.reparameterize` (RepVGG/MobileOne branches fused into one conv,
    BatchNorm folded), the network that export and int8 quantization ship;
    fvcore's totals are given side by side with the ops it skips.
    """
    model = unwrap_model(model)
    rows, prof, out = _run(model, res, in_chans)
    c, h, w = input_shape(model, res, in_chans)
    deployed = reparameterize(model)
    deployed_rows, _, _ = _run(deployed, res, c)
    fv = fvcore_count(model, (h, w), c) if with_fvcore else FvcoreCount()
    notes: list[str] = []
    if fv.error:
        notes.append(fv.error)
    for op, count in sorted(prof.unknown_ops.items()):
        notes.append(f"ATen op {op!r} ({count} call(s)) has no FLOP rule: counted as 0 FLOPs, bytes counted")
    for mod_name, module in model.named_modules():
        if next(module.children(), None) is None and any(True for _ in module.parameters(recurse=False)):
            if not isinstance(module, _KNOWN_PARAM_LEAVES):
                notes.append(
                    f"{mod_name}: {type(module).__name__} has parameters but is not a conv/linear/norm layer; "
                    "its multiply-adds are not in 'macs' (only its element-wise ATen ops are in 'flops')"
                )
    row_params = sum(r.params for r in rows)
    params = count_params(model)
    if row_params != params:
        notes.append(f"{params - row_params} parameters belong to no executed leaf module (unused or non-leaf)")
    spatial = [r for r in rows if r.rf is not None and len(r.out_shape) == 4]
    last = spatial[-1] if spatial else None
    out_t = _tensors(out)
    return Complexity(
        model=name or type(model).__name__, res=(h, w), in_chans=c,
        num_classes=int(out_t[0].shape[-1]) if out_t else 0, params=params,
        macs=sum(r.macs for r in rows), flops=sum(r.flops for r in rows), bytes=sum(r.bytes for r in rows),
        params_deployed=count_params(deployed), macs_deployed=sum(r.macs for r in deployed_rows),
        flops_deployed=sum(r.flops for r in deployed_rows), bytes_deployed=sum(r.bytes for r in deployed_rows),
        fvcore_flops=fv.total, fvcore_conv_linear=fv.conv_linear,
        fvcore_skipped=fv.skipped, rf=last.rf if last else None, total_stride=last.stride if last else None,
        warnings=notes,
    )


def _human(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.2f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def format_table(rows: Iterable[LayerRow]) -> str:
    """Markdown-style table of the rows (one line per row)."""
    header = ["name", "block", "kind", "out_shape", "params", "MACs", "FLOPs", "bytes", "rf", "stride"]
    lines = [header]
    for r in rows:
        shape = "x".join(str(s) for s in r.out_shape[1:]) if r.out_shape else "-"
        lines.append([r.name, r.block, r.kind, shape, _human(r.params), _human(r.macs), _human(r.flops),
                      _human(r.bytes, "B"), r.rf_str, r.stride_str])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(lines[0], widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines[1:]]
    return "\n".join(out)


def format_summary(c: Complexity) -> str:
    """The labelled totals, one per line."""
    res = f"{c.res[0]}x{c.res[1]}"
    skipped = ", ".join(f"{k} x{v}" for k, v in sorted(c.fvcore_skipped.items())) or "none"
    lines = [
        f"model {c.model} @ {res} px, {c.in_chans} input channels, {c.num_classes} classes, batch 1, eval mode",
        f"  params                                      : {c.params:,} ({_human(c.params)})",
        f"  MACs (conv + linear, papers' convention)     : {c.macs:,} ({_human(c.macs)})",
        f"  fvcore conv + linear (1 flop = 1 MAC)       : {_fmt_opt(c.fvcore_conv_linear)}",
        f"  fvcore total (adds BN, pooling)             : {_fmt_opt(c.fvcore_flops)}; fvcore skips: {skipped}",
        f"  FLOPs (2 x MACs + bias + element-wise), BN  : {c.flops:,} ({_human(c.flops)})",
        f"  memory access (fp32 bytes), BN              : {_human(c.bytes, 'B')}",
        "  deployed (zoo.deploy.reparameterize: blocks fused, BatchNorm folded):",
        f"    params                                    : {c.params_deployed:,} ({_human(c.params_deployed)})",
        f"    MACs                                      : {c.macs_deployed:,} ({_human(c.macs_deployed)})",
        f"    FLOPs                                     : {c.flops_deployed:,} ({_human(c.flops_deployed)})",
        f"    memory access (fp32 bytes)                : {_human(c.bytes_deployed, 'B')}",
        f"  receptive field of last feature map         : {_pair_str(c.rf)} px, cumulative stride "
        f"{_pair_str(c.total_stride)}",
    ]
    lines += [f"  warning: {w}" for w in c.warnings]
    return "\n".join(lines)


def _fmt_opt(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,} ({_human(value)})"
