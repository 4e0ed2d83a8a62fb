"""ViT-Hybrid: BiT feature grid -> tokens -> ViT encoder -> heads.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021, https://arxiv.org/abs/2010.11929),
Sec. 3.1 "Hybrid Architecture": the patch embedding is applied to the feature map of a CNN, so each
cell of that map (a 1x1 "patch") becomes a token. For google/vit-hybrid-base-bit-384, three BiT stages
turn a 384x384 image into a 24x24x1024 grid, a 1x1 convolution projects it to 576 tokens of width 768,
a CLS token is prepended, and 12 pre-norm transformer layers read the 577 tokens.

Module and parameter names match transformers' deprecated ViTHybrid classes, so checkpoints load key
for key; the differences are in behaviour (see ../shared/DESIGN.md): real attention maps under SDPA,
position-embedding interpolation to the real feature grid, cached weight standardization.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base.modeling import PreTrainedModel
from ..base.outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from .activations import activation
from .backbone import BitBackbone
from .config import ViTHybridConfig

ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
QKV_NAMES = ("query", "key", "value")  # the Hub layout's three projections


@dataclass
class AttentionGradients:
    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...]  # per layer (B, heads, N, N)
    gradients: tuple[torch.Tensor, ...]  # d logit[class] / d attentions, same shapes and order


class ViTHybridPatchEmbeddings(nn.Module):
    """Backbone feature map -> (B, grid_h * grid_w, hidden) tokens, through a patch_size conv projection."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.image_size = config.image_size
        self.backbone = BitBackbone(config.backbone_config)
        p = config.patch_size
        self.projection = nn.Conv2d(config.backbone_featmap_shape[1], config.hidden_size, kernel_size=p, stride=p)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.project(self.backbone(pixel_values)[-1])

    def project(self, features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The backbone's last feature map -> (tokens, token grid size)."""
        grid = self.projection(features)
        return grid.flatten(2).transpose(1, 2), tuple(grid.shape[-2:])


class ViTHybridEmbeddings(nn.Module):
    """[CLS] + tokens, plus learned position embeddings (resampled when the grid differs from training's)."""

    def __init__(self, config: ViTHybridConfig, use_mask_token: bool = False):
        super().__init__()
        self.grid_size = config.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        # masked image modelling: bool_masked_pos replaces those tokens by this learned one
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTHybridPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1] + 1,
                                                            config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None,
                interpolate_pos_encoding: bool = False, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1 + kept tokens, hidden); see `ViTHybridModel.forward` for token_mask."""
        height, width = pixel_values.shape[-2:]
        size = self.patch_embeddings.image_size
        if not interpolate_pos_encoding and (height, width) != (size, size):
            raise ValueError(f"Input image size ({height}x{width}) doesn't match the model's {size}x{size}: resize "
                             f"it with the image processor, or pass interpolate_pos_encoding=True.")
        tokens, grid = self.patch_embeddings(pixel_values)
        if not interpolate_pos_encoding and grid != self.grid_size:  # a config whose featmap shape is wrong
            raise ValueError(f"The backbone makes a {grid[0]}x{grid[1]} token grid at {size}x{size} but the position "
                             f"embeddings are for {self.grid_size[0]}x{self.grid_size[1]} (backbone_featmap_shape): "
                             f"pass interpolate_pos_encoding=True, or fix image_size or backbone_featmap_shape.")
        if bool_masked_pos is not None:
            mask = bool_masked_pos.unsqueeze(-1).type_as(tokens)
            tokens = tokens * (1 - mask) + self.mask_token * mask
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positions_for(grid)
        if token_mask is not None:
            tokens = keep_tokens(tokens, token_mask, grid)
        return self.dropout(tokens)

    def positions_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a token grid of this size: bicubic resampling of the trained grid."""
        if grid == self.grid_size:
            return self.position_embeddings
        cls_pos, grid_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = grid_pos.shape[-1]
        grid_pos = grid_pos.reshape(1, *self.grid_size, dim).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos.float(), size=grid, mode="bicubic", align_corners=False)
        grid_pos = grid_pos.to(cls_pos.dtype).permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat([cls_pos, grid_pos], dim=1)


def keep_tokens(tokens: torch.Tensor, token_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """CLS and the grid tokens where token_mask (B, rows * cols) is True, in grid order: (B, 1 + kept, hidden).
    Every image must keep as many tokens (so that the batch stays one tensor, with no attention mask)."""
    batch, cells = tokens.shape[0], grid[0] * grid[1]
    if not isinstance(token_mask, torch.Tensor) or token_mask.dtype != torch.bool or \
            token_mask.shape != (batch, cells):
        got = (f"{str(token_mask.dtype).removeprefix('torch.')} {tuple(token_mask.shape)}"
               if isinstance(token_mask, torch.Tensor) else type(token_mask).__name__)
        raise ValueError(f"token_mask must be a bool tensor of shape (batch, rows * cols) = ({batch}, {cells}) for "
                         f"this {grid[0]}x{grid[1]} token grid, got {got}")
    kept = token_mask.sum(1)
    if (kept != kept[0]).any():
        raise ValueError(f"token_mask keeps {kept.tolist()} tokens per image: every image in a batch must keep "
                         f"the same number (run images with different counts in separate calls)")
    grid_tokens = tokens[:, 1:][token_mask.to(tokens.device)].view(batch, -1, tokens.shape[-1])
    return torch.cat([tokens[:, :1], grid_tokens], dim=1)


# ---------------------------------------------------------------------------------------------- attention kernels
# softmax(q k^T / sqrt(head_dim)) v (Vaswani et al. 2017, Eq. 1), three ways with one signature:
#   kernel(module, q, k, v, head_mask, output_attentions, scores) -> (context, probabilities or None)
# q: (B, heads, queries, head_dim); k, v: (B, heads, keys, head_dim); context: (B, heads, queries, head_dim);
# probabilities: (B, heads, queries, keys), returned when output_attentions is set (the eager kernels compute
# them anyway). `module` is the calling ViTHybridSelfAttention (its dropout and head_dim); `scores` a buffer
# the layers of one forward share (see cpu_inference_attention). `attention_kernel` picks one per call.

def sdpa_attention(module: ViTHybridSelfAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   head_mask: torch.Tensor | None, output_attentions: bool,
                   scores: torch.Tensor | None) -> tuple[torch.Tensor, None]:
    """torch's fused scaled_dot_product_attention: the fastest, but it returns no probabilities and takes no
    head mask."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=module.dropout.p if module.training else 0.0), None


def eager_attention(module: ViTHybridSelfAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    head_mask: torch.Tensor | None, output_attentions: bool,
                    scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The explicit softmax, with dropout and head mask, as autograd and training need it (and on GPUs)."""
    # Scaling q (N x head_dim) is cheaper than scaling the N x N scores; exact when head_dim is a power
    # of 4. Contiguous k and v make both products plain batched GEMMs (20% faster than strided views).
    k, v = k.contiguous(), v.contiguous()
    probs = module.dropout(torch.softmax((q * module.head_dim ** -0.5) @ k.transpose(-1, -2), dim=-1))
    if head_mask is not None:
        probs = probs * head_mask
    return probs @ v, probs


def cpu_inference_attention(module: ViTHybridSelfAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            head_mask: torch.Tensor | None, output_attentions: bool,
                            scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The eager arithmetic without autograd, for the CPU: one image at a time, with as little memory traffic
    as it allows. An image's scores go to `scores`, a buffer the encoder hands every layer, so it is still in
    cache (a product writing a 577x577 result to memory not recently touched takes twice as long), and are
    normalized from there into the returned probabilities, or in place when those are not wanted; k and v
    stay strided views (no copies). With it the whole model on the eager path runs within 1-3% of SDPA at
    384x384 on a CPU (benchmarks/speed.py). GPUs keep `eager_attention`: this is tuned to a CPU's caches and
    unmeasured there."""
    batch, heads, queries, keys = *q.shape[:3], k.shape[2]
    needed = heads * queries * keys
    if scores is None:
        scores = q.new_empty(needed)
    elif scores.numel() < needed:
        scores.resize_(needed)  # in place: the layers after this one reuse it
    scores = scores[:needed].view(heads, queries, keys)
    probs = q.new_empty(batch, heads, queries, keys) if output_attentions else None
    context = q.new_empty(batch, heads, queries, module.head_dim)
    for i in range(batch):
        # alpha scales q k^T inside the product: the same rounding as scaling q when the scale is a power of 2
        torch.baddbmm(scores, q[i], k[i].transpose(-1, -2), beta=0, alpha=module.head_dim ** -0.5, out=scores)
        image_probs = torch.softmax(scores, dim=-1, out=scores if probs is None else probs[i])
        if head_mask is not None:
            image_probs.mul_(head_mask.expand(batch, -1, -1, -1)[i])
        torch.bmm(image_probs, v[i], out=context[i])
    return context, probs


ATTENTION_KERNELS = {"sdpa": sdpa_attention, "eager": eager_attention, "cpu_inference": cpu_inference_attention}


def attention_kernel(implementation: str, q: torch.Tensor, head_mask: torch.Tensor | None, output_attentions: bool,
                     training: bool) -> str:
    """The kernel one call runs: SDPA where the model is set to it and nothing needs the probabilities (the
    maps, a head mask), so that maps are always real; otherwise the explicit softmax, in its CPU inference form
    unless autograd, dropout or a GPU needs the plain one."""
    if implementation == "sdpa" and not output_attentions and head_mask is None:
        return "sdpa"
    if training or q.requires_grad or q.device.type != "cpu":
        return "eager"
    return "cpu_inference"


class ViTHybridSelfAttention(nn.Module):
    """Multi-head self-attention up to its output projection: queries, keys and values from one fused
    projection, then one of the kernels above. `implementation` ("eager" or "sdpa", switched by
    `set_attn_implementation`) is a preference: when the probabilities are asked for, or a head mask must scale
    them, an eager kernel runs whatever the setting, so maps are always real.

    Query, key and value are one fused projection (one matrix multiply instead of three); state dicts
    keep the Hub layout's separate `query`, `key` and `value` weights on saving and loading.
    """

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.implementation = config._attn_implementation or "sdpa"
        # False keeps `qkv` fused in state dicts too (transformers 5 converts the Hub's three keys itself)
        self.split_qkv_in_state_dict = True
        self.register_state_dict_post_hook(self._split_qkv)
        self.register_load_state_dict_pre_hook(self._fuse_qkv)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None, output_attentions: bool = False,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, hidden) -> (context (B, N, hidden), probabilities (B, heads, N, N) or None). cls_only: the
        CLS token's context alone, (B, 1, hidden); the probabilities, when asked for, still cover every query.
        scores: the buffer of `cpu_inference_attention`."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if cls_only and not output_attentions:
            q = q[:, :, :1]  # the other queries' rows would be computed for nothing
        kernel = ATTENTION_KERNELS[attention_kernel(self.implementation, q, head_mask, output_attentions,
                                                    self.training)]
        context, probs = kernel(self, q, k, v, head_mask, output_attentions, scores)
        if cls_only:
            context = context[:, :, :1]
        return context.transpose(1, 2).flatten(2), probs

    @staticmethod
    def _split_qkv(module: nn.Module, state: dict, prefix: str, metadata: dict) -> None:
        if not module.split_qkv_in_state_dict:
            return
        for kind in ("weight", "bias"):
            fused = state.pop(f"{prefix}qkv.{kind}", None)
            if fused is not None:
                state.update({f"{prefix}{name}.{kind}": part for name, part in zip(QKV_NAMES, fused.chunk(3))})

    @staticmethod
    def _fuse_qkv(module: nn.Module, state: dict, prefix: str, metadata: dict, strict: bool,
                  missing_keys: list[str], *args) -> None:
        for kind in ("weight", "bias"):
            names = [f"{prefix}{name}.{kind}" for name in QKV_NAMES]
            if all(name in state for name in names):
                state[f"{prefix}qkv.{kind}"] = torch.cat([state.pop(name) for name in names])
            elif any(name in state for name in names):  # name the Hub keys that are absent, not only qkv
                missing_keys.extend(name for name in names if name not in state)


class Dense(nn.Module):
    """dense -> activation or dropout: the attention output projection and the two layers of the MLP."""

    def __init__(self, d_in: int, d_out: int, activation_name: str | None = None, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.activation = activation(activation_name) if activation_name else nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))


class ViTHybridAttention(nn.Module):
    """MSA: self-attention, then the output projection (the names are the checkpoint's)."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.attention = ViTHybridSelfAttention(config)
        self.output = Dense(config.hidden_size, config.hidden_size, dropout=config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None, output_attentions: bool = False,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attention(x, head_mask, output_attentions, cls_only, scores)
        return self.output(context), probs


class ViTHybridLayer(nn.Module):
    """Pre-norm transformer block (ViT paper, Eq. 2-3): z' = MSA(LN(z)) + z, then z'' = MLP(LN(z')) + z'."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTHybridAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = Dense(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.output = Dense(config.intermediate_size, config.hidden_size, dropout=config.hidden_dropout_prob)

    def forward(self, z: torch.Tensor, head_mask: torch.Tensor | None = None, output_attentions: bool = False,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, hidden) -> ((B, N, hidden), probabilities or None); cls_only: the CLS token's output alone,
        (B, 1, hidden) (every token is still a key and a value). scores: see `cpu_inference_attention`."""
        attended, probs = self.attention(self.layernorm_before(z), head_mask, output_attentions, cls_only, scores)
        z = (z[:, :1] if cls_only else z) + attended  # Eq. 2
        z = z + self.output(self.intermediate(self.layernorm_after(z)))  # Eq. 3
        return z, probs


class ViTHybridEncoder(nn.Module):
    """The L transformer layers. Inside `computing_cls_only()` the last layer computes the CLS token alone."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.layer = nn.ModuleList(ViTHybridLayer(config) for _ in range(config.num_hidden_layers))
        # transformers' convention: PreTrainedModel.gradient_checkpointing_enable sets both attributes
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func = None
        self.cls_only = False  # set by computing_cls_only()

    @contextlib.contextmanager
    def computing_cls_only(self):
        """Within this block the encoder's output is the CLS token alone, (B, 1, hidden), for a caller that
        reads nothing else (a classifier, a pooler): the last layer skips the other tokens' output projection
        and MLP, and their queries unless attentions are asked for (6% of ViT-Hybrid-Base's work). Not when
        hidden states are asked for, nor in training (so that dropout draws what the reference draws). The
        setting holds for the block, not per thread: a direct call of this encoder's model from another thread
        meanwhile would get the CLS token alone too."""
        before, self.cls_only = self.cls_only, True
        try:
            yield self
        finally:
            self.cls_only = before

    def forward(self, z: torch.Tensor, head_mask: torch.Tensor | None, output_attentions: bool,
                output_hidden_states: bool) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """(B, N, hidden) -> (output, hidden states (input and each layer's output), attentions)."""
        hidden_states, attentions = [], []
        last = len(self.layer) - 1
        cls_only = self.cls_only and not (output_hidden_states or self.training)
        scores = z.new_empty(0)  # the CPU inference kernel's scores buffer, shared by all layers (grown by the first)
        for i, layer in enumerate(self.layer):
            hidden_states.append(z)
            layer_mask = None if head_mask is None else head_mask[i]
            if self.gradient_checkpointing and self.training:  # keep only the layer's input, recompute the rest
                z, probs = self._gradient_checkpointing_func(layer.__call__, z, layer_mask, output_attentions)
            else:
                z, probs = layer(z, layer_mask, output_attentions, cls_only and i == last, scores)
            attentions.append(probs)
        hidden_states.append(z)
        return (z, tuple(hidden_states) if output_hidden_states else None,
                tuple(attentions) if output_attentions else None)


class ViTHybridPooler(nn.Module):
    """tanh(dense(CLS)): the base model's pooled output."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(sequence[:, 0]))


class ViTHybridPreTrainedModel(PreTrainedModel):
    """Weight initialization, attention switching and the parts shared by both models."""

    config_class = ViTHybridConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTHybridEmbeddings", "ViTHybridLayer"]
    _keys_to_ignore_on_load_missing = [r"embeddings\.mask_token$"]  # use_mask_token=True adds it to any checkpoint

    def __init__(self, config: ViTHybridConfig):
        super().__init__(config)
        config.validate()
        if config.pruned_heads:
            raise NotImplementedError("config.pruned_heads: pruned attention heads are not supported")

    def _init_weights(self, module: nn.Module) -> None:
        """Random initialization as transformers does it: truncated normal for weights, zero biases."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ViTHybridEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                nn.init.zeros_(module.mask_token)


    def output_flags(self, output_attentions: bool | None, output_hidden_states: bool | None,
                     return_dict: bool | None) -> tuple[bool, bool, bool]:
        """The call's flags, or the config's where the call leaves them None (as transformers resolves them)."""
        config = self.config
        return (config.output_attentions if output_attentions is None else output_attentions,
                config.output_hidden_states if output_hidden_states is None else output_hidden_states,
                config.use_return_dict if return_dict is None else return_dict)

    @property
    def attn_implementation(self) -> str:
        return next(m.implementation for m in self.modules() if isinstance(m, ViTHybridSelfAttention))

    def set_attn_implementation(self, implementation: str) -> None:
        """Switch every attention layer between "eager" and "sdpa" in place (no weights are copied)."""
        if implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {implementation!r}")
        for module in self.modules():
            if isinstance(module, ViTHybridSelfAttention):
                module.implementation = implementation

    def head_mask_5d(self, head_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(heads,) or (layers, heads) of 0/1 -> (layers, 1, heads, 1, 1), to scale attention probabilities."""
        if head_mask is None:
            return None
        if head_mask.dim() == 1:
            head_mask = head_mask.expand(self.config.num_hidden_layers, -1)
        return head_mask[:, None, :, None, None].to(self.dtype)


class ViTHybridModel(ViTHybridPreTrainedModel):
    """The bare encoder: final-LayerNorm'd tokens and, with the pooler, tanh(dense(CLS))."""

    def __init__(self, config: ViTHybridConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = ViTHybridEmbeddings(config, use_mask_token)
        self.encoder = ViTHybridEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTHybridPooler(config) if add_pooling_layer else None
        self.init_weights()

    def get_input_embeddings(self) -> ViTHybridPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def forward(self, pixel_values: torch.Tensor | None = None, bool_masked_pos: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, interpolate_pos_encoding: bool | None = None,
                return_dict: bool | None = None,
                token_mask: torch.Tensor | None = None) -> BaseModelOutputWithPooling | tuple:
        """Flags left None take the config's (output_attentions, output_hidden_states, use_return_dict).

        token_mask: a (B, rows * cols) bool tensor over the token grid in row-major order, True = keep: the
        other grid tokens are removed from the sequence once the position embeddings are added (each kept
        token keeps its own; CLS is always kept), so the transformer never sees them while the CNN still saw
        their pixels. Every image in the batch must keep the same number of tokens (else a ValueError); the
        outputs then cover 1 + kept tokens (attentions (B, heads, 1 + kept, 1 + kept))."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict)
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        pixel_values = pixel_values.to(self.dtype)
        tokens = self.embeddings(pixel_values, bool_masked_pos, bool(interpolate_pos_encoding), token_mask)
        tokens, hidden_states, attentions = self.encoder(
            tokens, self.head_mask_5d(head_mask), output_attentions, output_hidden_states)
        sequence = self.layernorm(tokens)
        pooled = self.pooler(sequence) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(sequence, pooled, hidden_states, attentions)
        return output if return_dict else output.to_tuple()


class ViTHybridForImageClassification(ViTHybridPreTrainedModel):
    """ViT-Hybrid with a linear classifier on the final CLS token (no pooler, as in transformers)."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = ViTHybridModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels else nn.Identity()
        self.init_weights(self.classifier)  # self.vit initialized itself

    def forward(self, pixel_values: torch.Tensor | None = None, head_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, interpolate_pos_encoding: bool | None = None,
                return_dict: bool | None = None,
                token_mask: torch.Tensor | None = None) -> ImageClassifierOutput | tuple:
        """Flags left None take the config's; with return_dict=False (or config.torchscript) the output is
        the tuple of its set fields: (loss,) logits, (hidden_states,) (attentions,). token_mask: see
        `ViTHybridModel.forward` (the same logits as without one when it keeps every token)."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict)
        with self.vit.encoder.computing_cls_only():  # only the CLS token reaches the classifier
            outputs = self.vit(pixel_values, head_mask=head_mask, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=True, token_mask=token_mask,
                               interpolate_pos_encoding=interpolate_pos_encoding)
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = None if labels is None else self.loss(logits, labels.to(logits.device))
        output = ImageClassifierOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return output if return_dict else output.to_tuple()


    def logit_lens(self, pixel_values: torch.Tensor, token_mask: torch.Tensor | None = None,
                   interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """(B, layers, num_labels): the CLS token after each encoder layer, read through the final layer norm
        and the classifier (the "logit lens"), from one forward; the last layer's are `forward(...).logits`.
        token_mask: as in `forward`."""
        hidden_states = self.vit(pixel_values, output_hidden_states=True, token_mask=token_mask, return_dict=True,
                                 interpolate_pos_encoding=interpolate_pos_encoding).hidden_states
        return self.read_out(torch.stack([state[:, 0] for state in hidden_states[1:]], dim=1))  # [0]: the input

    def read_out(self, cls_states: torch.Tensor) -> torch.Tensor:
        """Logits from CLS states taken anywhere in the encoder (..., hidden): the final layer norm, then the
        classifier, as the last layer's CLS is read (the logit lens's reading of the earlier ones)."""
        return self.classifier(self.vit.layernorm(cls_states))

    def attention_with_gradients(self, pixel_values: torch.Tensor, class_index: int | torch.Tensor | None = None,
                                 interpolate_pos_encoding: bool = False,
                                 token_mask: torch.Tensor | None = None) -> AttentionGradients:
        """One forward and backward that keeps the attention probabilities (the eager path) and their
        gradients with respect to the logit of `class_index` (per image; default: the predicted class),
        both in layer order. The input for class-specific relevance maps (Chefer et al., ICCV 2021).
        token_mask: as in `forward` (the maps then cover CLS and the kept tokens)."""
        # The graph starts at the tokens, so that attention gets gradients even when every weight is
        # frozen, and the backward pass never enters the backbone.
        hook = self.vit.embeddings.register_forward_hook(lambda module, args, tokens: tokens.detach().requires_grad_())
        try:
            with torch.enable_grad():
                out = self(pixel_values, output_attentions=True, interpolate_pos_encoding=interpolate_pos_encoding,
                           token_mask=token_mask, return_dict=True)
                if class_index is None:
                    class_index = out.logits.argmax(-1)
                index = torch.as_tensor(class_index, device=out.logits.device).expand(out.logits.shape[0])
                score = out.logits.gather(1, index[:, None]).sum()
                gradients = torch.autograd.grad(score, out.attentions)
        finally:
            hook.remove()
        return AttentionGradients(out.logits.detach(), tuple(a.detach() for a in out.attentions), gradients)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Regression (MSE) for one label, cross-entropy for integer labels, else multi-label BCE."""
        problem = self.config.problem_type
        if problem is None:  # the first batch with labels decides, and the config keeps it (as in transformers)
            if self.config.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
            self.config.problem_type = problem

        if problem == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze()) if self.config.num_labels == 1 else \
                F.mse_loss(logits, labels)
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)

