"""The BiT ResNet backbone of ViT-Hybrid.

Big Transfer (Kolesnikov et al., ECCV 2020, https://arxiv.org/abs/1912.11370): ResNets with Group
Normalization and Weight Standardization (Qiao et al. 2019, https://arxiv.org/abs/1903.10520), and
TensorFlow's "SAME" padding. ViT-Hybrid (Dosovitskiy et al., ICLR 2021, Sec. 3.1) keeps the stem
and the first stages and hands the last feature map to the transformer as its token grid.

Module and parameter names match transformers' BitBackbone, so checkpoints load key for key.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .bit_config import BitConfig


def same_padding(x: torch.Tensor, kernel: int, stride: int, dilation: int = 1, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'SAME': pad so that the output has ceil(size / stride) cells, the extra pixel at the end."""
    pads = []
    for size in reversed(x.shape[-2:]):
        total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def static_padding(padding: str | None, kernel: int, stride: int, dilation: int) -> tuple[int, bool]:
    """(fixed padding, whether SAME padding must be computed per input), as transformers decides it."""
    symmetric = ((stride - 1) + dilation * (kernel - 1)) // 2
    if padding == "SAME":
        if stride == 1 and (dilation * (kernel - 1)) % 2 == 0:
            return symmetric, False
        return 0, True
    return (0, False) if padding == "VALID" else (symmetric, False)


def activate(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x), where x is a fresh result that no module returned (so no hook can have kept it); a ReLU works in
    place when autograd does not record it (inference) and no torch.jit.trace is recording a graph (whose check
    re-traces without gradients), which saves a fresh tensor and a pass over memory per backbone norm. The MLP's
    GELU in place measured no faster, so it stays out of place."""
    in_place = type(module) is nn.ReLU and not (x.requires_grad or torch.jit.is_tracing())
    return x.relu_() if in_place else module(x)


class StdConv2d(nn.Conv2d):
    """Weight-standardized convolution: each filter gets zero mean and unit variance before use.

    In eval mode the standardized weight is computed once and kept until the weight changes (the
    reference recomputes it on every forward); in training mode it is recomputed so gradients flow.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, padding: str | None = "SAME", eps: float = 1e-8):
        pad, self.dynamic = static_padding(padding, kernel_size, stride, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride, pad, dilation, bias=False)
        self.eps = eps
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        # Under torch.compile the cache's pointer checks would break the graph; the compiled graph
        # standardizes inline instead (a fused kernel, cheap next to the convolutions).
        if self.training or (torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling():
            return self._standardize(w)
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._standardize(w))
        return self._cache[1]

    def _standardize(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.reshape(1, self.out_channels, -1)
        return F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=self.eps).reshape_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            x = same_padding(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return F.conv2d(x, self.standardized_weight(), None, self.stride, self.padding, self.dilation)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (Wu & He 2018), optionally followed by the activation."""

    def __init__(self, config: BitConfig, channels: int, apply_activation: bool = True):
        super().__init__(config.num_groups, channels, eps=1e-5)
        self.activation = activation(config.hidden_act) if apply_activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.activation, F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class MaxPool2dSame(nn.Module):
    """3x3/2 max-pool of the stem; with dynamic padding it pads like TF 'SAME' (with zeros, as the reference)."""

    def __init__(self, dynamic_padding: bool):
        super().__init__()
        self.dynamic_padding = dynamic_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_padding:
            x = same_padding(x, 3, 2)
        return F.max_pool2d(x, 3, 2)


class BitEmbeddings(nn.Module):
    """The stem: 7x7/2 convolution, (GroupNorm + activation unless pre-activation), 3x3/2 max-pool: stride 4."""

    def __init__(self, config: BitConfig):
        super().__init__()
        self.convolution = StdConv2d(config.num_channels, config.embedding_size, 7, stride=2,
                                     padding=config.global_padding)
        self.pad = nn.Identity() if config.global_padding == "SAME" else nn.ConstantPad2d(1, 0.0)
        preact = config.layer_type == "preactivation"
        self.norm = nn.Identity() if preact else GroupNormAct(config, config.embedding_size)
        self.pooler = MaxPool2dSame(config.embedding_dynamic_padding)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pooler(self.norm(self.pad(self.convolution(pixel_values))))


def make_div(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1 - self.rate
        mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
        return x / keep * mask


class BitDownsampleConv(nn.Module):
    """Projection shortcut of a stage's first block: 1x1 convolution (+ GroupNorm in the v1 block)."""

    def __init__(self, config: BitConfig, in_channels: int, out_channels: int, stride: int, preact: bool):
        super().__init__()
        self.conv = StdConv2d(in_channels, out_channels, 1, stride=stride, padding=config.global_padding)
        self.norm = nn.Identity() if preact else GroupNormAct(config, out_channels, apply_activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def stage_widths(config: BitConfig) -> list[tuple[int, int]]:
    """(output, bottleneck) channels of each stage's blocks."""
    outs = [make_div(size * config.width_factor) for size in config.hidden_sizes[:len(config.depths)]]
    return [(out, make_div(out * 0.25)) for out in outs]


def parameter_count(config: BitConfig) -> int:
    """The backbone's parameters, counted from the config as the modules below are built (no building: a
    config is bounded by its size before anything is allocated)."""
    preact = config.layer_type == "preactivation"
    count = config.num_channels * config.embedding_size * 49 + (0 if preact else 2 * config.embedding_size)
    channels = config.embedding_size
    for depth, (out, mid) in zip(config.depths, stage_widths(config)):
        for block in range(depth):
            inputs = channels if block == 0 else out
            count += inputs * mid + 9 * mid * mid + mid * out + 4 * mid  # conv1-3, two norms of mid channels
            count += 2 * inputs if preact else 2 * out  # the third norm: on the input (pre-act) or the output
            if block == 0:  # the projection shortcut
                count += inputs * out + (0 if preact else 2 * out)
        channels = out
    return count + (2 * channels if preact else 0)  # the final norm of a pre-activation backbone


class BitBottleneckLayer(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3): conv-norm-act x3, add the shortcut, then activate."""

    def __init__(self, config: BitConfig, in_channels: int, out_channels: int, stride: int, dilation: int,
                 first_dilation: int, drop_path_rate: float, is_first_layer: bool):
        super().__init__()
        mid = make_div(out_channels * 0.25)
        pad = config.global_padding
        self.downsample = (BitDownsampleConv(config, in_channels, out_channels, stride, preact=False)
                           if is_first_layer else None)
        self.conv1 = StdConv2d(in_channels, mid, 1, padding=pad)
        self.norm1 = GroupNormAct(config, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride=stride, dilation=first_dilation, padding=pad)
        self.norm2 = GroupNormAct(config, mid)
        self.conv3 = StdConv2d(mid, out_channels, 1, padding=pad)
        self.norm3 = GroupNormAct(config, out_channels, apply_activation=False)
        self.drop_path = DropPath(drop_path_rate)
        self.activation = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return activate(self.activation, self.drop_path(x) + shortcut)


class BitPreActivationBottleneckLayer(nn.Module):
    """ResNet v2 pre-activation bottleneck (He et al. 2016): norm-act before each conv, stride on the 3x3.

    Like the reference, its 3x3 convolution takes no dilation.
    """

    def __init__(self, config: BitConfig, in_channels: int, out_channels: int, stride: int, dilation: int,
                 first_dilation: int, drop_path_rate: float, is_first_layer: bool):
        super().__init__()
        mid = make_div(out_channels * 0.25)
        pad = config.global_padding
        self.downsample = (BitDownsampleConv(config, in_channels, out_channels, stride, preact=True)
                           if is_first_layer else None)
        self.norm1 = GroupNormAct(config, in_channels)
        self.conv1 = StdConv2d(in_channels, mid, 1, padding=pad)
        self.norm2 = GroupNormAct(config, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride=stride, padding=pad)
        self.norm3 = GroupNormAct(config, mid)
        self.conv3 = StdConv2d(mid, out_channels, 1, padding=pad)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.norm1(x)
        shortcut = x if self.downsample is None else self.downsample(preact)
        x = self.conv1(preact)
        x = self.conv2(self.norm2(x))
        x = self.conv3(self.norm3(x))
        return self.drop_path(x) + shortcut


class BitStage(nn.Module):
    """`depth` blocks; the first one changes width and resolution through its projection shortcut."""

    def __init__(self, config: BitConfig, in_channels: int, out_channels: int, stride: int, dilation: int,
                 drop_path_rates: list[float]):
        super().__init__()
        block = BitBottleneckLayer if config.layer_type == "bottleneck" else BitPreActivationBottleneckLayer
        first_dilation = 1 if dilation in (1, 2) else 2
        self.layers = nn.Sequential()
        for i, rate in enumerate(drop_path_rates):
            self.layers.add_module(str(i), block(
                config, in_channels if i == 0 else out_channels, out_channels, stride=stride if i == 0 else 1,
                dilation=dilation, first_dilation=first_dilation if i == 0 else dilation,
                drop_path_rate=rate, is_first_layer=i == 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class BitEncoder(nn.Module):
    """The stages. Past `output_stride`, stages dilate instead of striding (atrous, Chen et al. 2017)."""

    def __init__(self, config: BitConfig):
        super().__init__()
        rates = np.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        self.stages = nn.ModuleList()
        channels, current_stride, dilation = config.embedding_size, 4, 1
        for i, (depth, (out_channels, _)) in enumerate(zip(config.depths, stage_widths(config))):
            stride = 1 if i == 0 else 2
            if current_stride >= config.output_stride:
                dilation, stride = dilation * stride, 1
            start = sum(config.depths[:i])
            self.stages.append(BitStage(config, channels, out_channels, stride, dilation, rates[start:start + depth]))
            channels, current_stride = out_channels, current_stride * stride


class BitModel(nn.Module):
    """Stem and stages; `norm` is the final pre-activation norm, kept for the checkpoint's sake only
    (the backbone's feature maps are taken before it, as in transformers)."""

    def __init__(self, config: BitConfig):
        super().__init__()
        self.embedder = BitEmbeddings(config)
        self.encoder = BitEncoder(config)
        preact = config.layer_type == "preactivation"
        self.norm = GroupNormAct(config, self.encoder.stages[-1].layers[0].conv3.out_channels) if preact else None


class BitBackbone(nn.Module):
    """Returns the feature map of the last of `out_features`; later stages are never run."""

    def __init__(self, config: BitConfig):
        super().__init__()
        self.bit = BitModel(config)
        self.output_index = max(config.out_indices) % len(config.stage_names)

    def forward(self, pixel_values: torch.Tensor, keep_stages: bool = False) -> list[torch.Tensor]:
        """The feature maps from the stem up to the output stage (all of them if `keep_stages`, else the last).

        They are channels-last (NHWC in memory): oneDNN's convolutions and GroupNorm run faster on that
        layout (about 15% for this backbone on a CPU), and the tokens come out of it without a copy.
        """
        x = self.bit.embedder(pixel_values.contiguous(memory_format=torch.channels_last))
        maps = [x]
        for stage in self.bit.encoder.stages[: self.output_index]:
            x = stage(x)
            maps = maps + [x] if keep_stages else [x]
        return maps


def feature_map_shape(config: BitConfig, height: int, width: int) -> torch.Size:
    """Shape of the backbone's output for one image of this size, worked out without computing anything."""
    return _feature_map_shape(config.to_json_string(use_diff=False), height, width)


@functools.lru_cache(maxsize=256)
def _feature_map_shape(config_json: str, height: int, width: int) -> torch.Size:
    # Kept: tracing the backbone on the meta device takes tens of milliseconds, and every config is measured
    # when it is made and again when a model is built from it.
    config = BitConfig(**json.loads(config_json))
    with torch.device("meta"):
        backbone = BitBackbone(config)
        try:
            return backbone(torch.empty(1, config.num_channels, height, width))[-1].shape
        except RuntimeError as error:
            raise ValueError(f"backbone_config cannot process a {height}x{width} image: {error}") from error


def backbone_stages(backbone: BitBackbone) -> list[nn.Module]:
    """The modules whose outputs `backbone(..., keep_stages=True)` returns, in order: the stem, then each stage
    it runs (named as `config.stage_names`: stem, stage1, ...). Hooks on these see the maps the backbone makes."""
    return [backbone.bit.embedder, *backbone.bit.encoder.stages[:backbone.output_index]]


def token_stage(backbone: BitBackbone) -> nn.Module:
    """The module whose output grid the tokens are made from: the last stage the backbone runs (the layer a
    class activation map on the token grid needs)."""
    return backbone_stages(backbone)[-1]
