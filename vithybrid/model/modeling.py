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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .backbone import BitBackbone
from .config import ViTHybridConfig
from .memory import retain_freed_memory_once
from ..base.modeling import PreTrainedModel
from ..base.outputs import BaseModelOutputWithPooling, ImageClassifierOutput

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
                interpolate_pos_encoding: bool = False) -> torch.Tensor:
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
        tokens = torch.cat([cls, tokens], dim=1)
        return self.dropout(tokens + self.positions_for(grid))

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


class ViTHybridSelfAttention(nn.Module):
    """Multi-head self-attention with two paths: "eager" (explicit softmax, can return the probabilities)
    and "sdpa" (torch's fused scaled_dot_product_attention). When the probabilities are asked for, or a
    head mask must scale them, the eager path runs whatever the setting, so maps are always real. The eager
    path has two implementations of the same arithmetic: one autograd can follow (training, gradients of
    the maps, GPUs) and one with less memory traffic for inference on the CPU.

    Query, key and value are one fused projection (one matrix multiply instead of three); state dicts
    keep the Hub layout's separate `query`, `key` and `value` weights on saving and loading.
    """

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.implementation = config._attn_implementation or "sdpa"  # switched by set_attn_implementation
        # False keeps `qkv` fused in state dicts too (transformers 5 converts the Hub's three keys itself)
        self.split_qkv_in_state_dict = True
        self.register_state_dict_post_hook(self._split_qkv)
        self.register_load_state_dict_pre_hook(self._fuse_qkv)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None, output_attentions: bool = False,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """cls_only: compute the CLS token's output alone, (B, 1, hidden); the probabilities, when asked
        for, still cover every query (all rows of the map). scores: a buffer for one image's attention
        scores that the eager path may reuse (see `cpu_inference_attention`)."""
        # (B, N, 3 * hidden) -> three (B, heads, N, head_dim) views
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if cls_only and not output_attentions:
            q = q[:, :, :1]
        if self.implementation == "sdpa" and not output_attentions and head_mask is None:
            context = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout.p if self.training else 0.0)
            probs = None
        elif self.training or q.requires_grad or q.device.type != "cpu":
            context, probs = self.differentiable_attention(q, k, v, head_mask, cls_only)
        else:
            context, probs = self.cpu_inference_attention(q, k, v, head_mask, output_attentions, cls_only, scores)
        return context.transpose(1, 2).flatten(2), probs

    def differentiable_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 head_mask: torch.Tensor | None, cls_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(q k^T / sqrt(head_dim)) v with dropout and head mask, as autograd and training need it."""
        # Scaling q (N x head_dim) is cheaper than scaling the N x N scores; exact when head_dim is a power
        # of 4. Contiguous k and v make both products plain batched GEMMs (20% faster than strided views).
        k, v = k.contiguous(), v.contiguous()
        probs = self.dropout(torch.softmax((q * self.head_dim ** -0.5) @ k.transpose(-1, -2), dim=-1))
        if head_mask is not None:
            probs = probs * head_mask
        context = (probs[:, :, :1] if cls_only else probs) @ v
        return context, probs

    def cpu_inference_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                head_mask: torch.Tensor | None, output_attentions: bool, cls_only: bool,
                                scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same product without autograd, for the CPU: one image at a time, with as little memory
        traffic as it allows. An image's scores go to `scores`, a buffer the encoder hands every layer, so
        it is still in cache (a product writing a 577x577 result to memory not recently touched takes
        twice as long), and are normalized from there into the returned probabilities, or in place when
        those are not wanted; k and v stay strided views (no copies). With it the whole model on the eager
        path runs within 1-3% of SDPA at 384x384 on a CPU (benchmarks/speed.py). GPUs keep
        `differentiable_attention`: this is tuned to a CPU's caches and unmeasured there."""
        batch, heads, queries, _ = q.shape
        keys = k.shape[2]
        needed = heads * queries * keys
        if scores is None:
            scores = q.new_empty(needed)
        elif scores.numel() < needed:
            scores.resize_(needed)  # in place: the layers after this one reuse it
        scores = scores[:needed].view(heads, queries, keys)
        probs = q.new_empty(batch, heads, queries, keys) if output_attentions else None
        context = q.new_empty(batch, heads, 1 if cls_only else queries, self.head_dim)
        for i in range(batch):
            # alpha scales q k^T inside the product: the same rounding as scaling q when the scale is a power of 2
            torch.baddbmm(scores, q[i], k[i].transpose(-1, -2), beta=0, alpha=self.head_dim ** -0.5, out=scores)
            image_probs = torch.softmax(scores, dim=-1, out=scores if probs is None else probs[i])
            if head_mask is not None:
                image_probs.mul_(head_mask.expand(batch, -1, -1, -1)[i])
            torch.bmm(image_probs[:, :1] if cls_only else image_probs, v[i], out=context[i])
        return context, probs

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
    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.attention = ViTHybridSelfAttention(config)
        self.output = Dense(config.hidden_size, config.hidden_size, dropout=config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None, output_attentions: bool,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attention(x, head_mask, output_attentions, cls_only, scores)
        return self.output(context), probs


class ViTHybridLayer(nn.Module):
    """Pre-norm transformer block: x + MSA(LN(x)), then x + MLP(LN(x)) (ViT paper, Eq. 2-3)."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTHybridAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = Dense(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.output = Dense(config.intermediate_size, config.hidden_size, dropout=config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None, output_attentions: bool = False,
                cls_only: bool = False, scores: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """cls_only: compute the CLS token's output alone, (B, 1, hidden)."""
        attended, probs = self.attention(self.layernorm_before(x), head_mask, output_attentions, cls_only, scores)
        x = (x[:, :1] if cls_only else x) + attended
        x = x + self.output(self.intermediate(self.layernorm_after(x)))
        return x, probs


class ViTHybridEncoder(nn.Module):
    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.layer = nn.ModuleList(ViTHybridLayer(config) for _ in range(config.num_hidden_layers))
        # transformers' convention: PreTrainedModel.gradient_checkpointing_enable sets both attributes
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func = None

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None, output_attentions: bool,
                output_hidden_states: bool, cls_only: bool = False) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """cls_only: the last layer computes the CLS token alone (the output is (B, 1, hidden))."""
        hidden_states, attentions = [], []
        last = len(self.layer) - 1
        scores = x.new_empty(0)  # the eager path's scores buffer, shared by all layers (grown by the first)
        for i, layer in enumerate(self.layer):
            hidden_states.append(x)
            layer_mask = None if head_mask is None else head_mask[i]
            if self.gradient_checkpointing and self.training:  # keep only the layer's input, recompute the rest
                x, probs = self._gradient_checkpointing_func(layer.__call__, x, layer_mask, output_attentions)
            else:
                x, probs = layer(x, layer_mask, output_attentions, cls_only and i == last, scores)
            attentions.append(probs)
        hidden_states.append(x)
        return (x, tuple(hidden_states) if output_hidden_states else None,
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
                return_dict: bool | None = None, cls_only: bool = False) -> BaseModelOutputWithPooling | tuple:
        """Flags left None take the config's (output_attentions, output_hidden_states, use_return_dict).
        cls_only: last_hidden_state holds the CLS token alone, (B, 1, hidden), which is all a classifier
        or the pooler reads; the last layer then skips the other tokens' output projection and MLP (and,
        unless attentions are asked for, their queries)."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict)
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        if pixel_values.device.type == "cpu":
            retain_freed_memory_once()  # no page faults for every activation (see .memory)
        pixel_values = pixel_values.to(self.dtype)
        tokens = self.embeddings(pixel_values, bool_masked_pos, bool(interpolate_pos_encoding))
        tokens, hidden_states, attentions = self.encoder(
            tokens, self.head_mask_5d(head_mask), output_attentions, output_hidden_states, cls_only)
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
                return_dict: bool | None = None) -> ImageClassifierOutput | tuple:
        """Flags left None take the config's; with return_dict=False (or config.torchscript) the output is
        the tuple of its set fields: (loss,) logits, (hidden_states,) (attentions,)."""
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict)
        # Only the CLS token reaches the classifier: unless every token's states are asked for, the last
        # layer's output projection and MLP compute it alone (6% less work for the base model; its attention
        # maps stay whole). Not in training, so that dropout draws the same random numbers as the reference.
        cls_only = not (output_hidden_states or self.training)
        outputs = self.vit(pixel_values, head_mask=head_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, interpolate_pos_encoding=interpolate_pos_encoding,
                           return_dict=True, cls_only=cls_only)
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = None if labels is None else self.loss(logits, labels.to(logits.device))
        output = ImageClassifierOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return output if return_dict else output.to_tuple()


    def attention_with_gradients(self, pixel_values: torch.Tensor, class_index: int | torch.Tensor | None = None,
                                 interpolate_pos_encoding: bool = False) -> AttentionGradients:
        """One forward and backward that keeps the attention probabilities (the eager path) and their
        gradients with respect to the logit of `class_index` (per image; default: the predicted class),
        both in layer order. The input for class-specific relevance maps (Chefer et al., ICCV 2021)."""
        # The graph starts at the tokens, so that attention gets gradients even when every weight is
        # frozen, and the backward pass never enters the backbone.
        hook = self.vit.embeddings.register_forward_hook(lambda module, args, tokens: tokens.detach().requires_grad_())
        try:
            with torch.enable_grad():
                out = self(pixel_values, output_attentions=True, interpolate_pos_encoding=interpolate_pos_encoding,
                           return_dict=True)
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

