"""ViT-Hybrid inside transformers 5: its Auto classes, pipelines, Trainer and from_pretrained keywords.

transformers 5 removed ViTHybrid. These are real transformers classes (a `PreTrainedConfig`, two
`PreTrainedModel`s, a `BaseImageProcessor`) with transformers' names and model_type "vit-hybrid", so the
Hub's google/vit-hybrid-base-bit-384 and folders in its layout load through transformers' own
`from_pretrained`. They hold our modules (vithybrid.model): the model math exists once, in our package,
and the state-dict keys stay the Hub's (vit.embeddings..., classifier.*).

    import vithybrid
    vithybrid.register_with_transformers()
    from transformers import AutoModelForImageClassification, pipeline
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                          BaseImageProcessor, PreTrainedConfig, PreTrainedModel)
from transformers.configuration_utils import SubConfigSpec
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import Concatenate, WeightConverter
from transformers.image_processing_base import BatchFeature
from transformers.models.auto import image_processing_auto
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from ..model import config as standalone_config
from ..model import modeling as standalone
from ..model import processing as standalone_processing

MODEL_TYPE = standalone_config.ViTHybridConfig.model_type  # "vit-hybrid"


class ViTHybridConfig(PreTrainedConfig):
    """transformers' ViTHybridConfig: the fields of ours, the backbone as transformers' own BitConfig."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"backbone_config": SubConfigSpec(
        config_class=AutoConfig, model_type="bit", init_kwargs=standalone_config.ViTHybridConfig.DEFAULT_BACKBONE)}

    # transformers' defaults, as in our own config (a test checks that the two agree)
    backbone_config: dict | PreTrainedConfig | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 1
    num_channels: int = 3
    backbone_featmap_shape: list[int] | tuple[int, ...] = (1, 1024, 24, 24)
    qkv_bias: bool = True

    def __post_init__(self, **kwargs):
        if isinstance(self.backbone_config, dict):
            self.backbone_config.setdefault("model_type", "bit")
        self.backbone_config, kwargs = self.sub_configs_defaults["backbone_config"].create_subconfig(
            "backbone_config", self.backbone_config, **kwargs)
        super().__post_init__(**kwargs)

    def to_standalone(self) -> standalone_config.ViTHybridConfig:
        """Our own config of the same architecture, to build our modules from."""
        return standalone_config.ViTHybridConfig.from_dict(self.to_dict())


# Our attention fuses query, key and value into one `qkv` projection, and its state dict splits it back into
# the Hub's three. transformers 5 loads by the names of `model.state_dict()` and sets parameters module by
# module, so here the state dict keeps `qkv`, and transformers' own weight conversion concatenates the
# checkpoint's three on loading and splits them again on saving (as it does for its fused models).
QKV_CONVERSION = [
    WeightConverter(source_patterns=[f"attention.attention.{name}.{kind}" for name in standalone.QKV_NAMES],
                    target_patterns=f"attention.attention.qkv.{kind}", operations=[Concatenate(dim=0)])
    for kind in ("weight", "bias")]


class ViTHybridPreTrainedModel(PreTrainedModel):
    """What transformers needs to know of the models, and the bridge to ours (`self.core`).

    `core` is our model, kept out of the module tree (its parameters are ours through the shared
    submodules), so that forward runs our code while state dicts and transformers see the Hub's names.
    """

    config_class = ViTHybridConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True  # our two paths; flash and flex attention are not ours
    _no_split_modules = ["ViTHybridEmbeddings", "ViTHybridLayer"]

    def _hold(self, core: nn.Module, **wrapped: nn.Module) -> None:
        """Take `core`'s submodules as our own (so the Hub's names; `wrapped` replaces some by the
        transformers models around them), and keep `core` to run them."""
        self.__dict__["core"] = core  # not a registered child: its parameters would be listed twice
        for name, module in core.named_children():
            setattr(self, name, wrapped.get(name, module))
        for module in core.modules():
            if isinstance(module, standalone.ViTHybridSelfAttention):
                module.split_qkv_in_state_dict = False  # QKV_CONVERSION splits on saving
        self._route_attention()

    def _flags(self, output_attentions: bool | None, output_hidden_states: bool | None) -> dict[str, bool]:
        """The output flags of a call, the config's where the call gives none (as transformers does)."""
        config = self.config
        return dict(output_attentions=config.output_attentions if output_attentions is None else output_attentions,
                    output_hidden_states=config.output_hidden_states if output_hidden_states is None
                    else output_hidden_states)

    def _route_attention(self) -> None:
        implementation = self.config._attn_implementation or "sdpa"
        self.core.set_attn_implementation("sdpa" if "sdpa" in implementation else "eager")

    def set_attn_implementation(self, attn_implementation, *args, **kwargs):
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        self._route_attention()

    def train(self, mode: bool = True):
        super().train(mode)
        self.core.training = mode  # our forward reads it (the children follow through super)
        return self

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers calls this for each module whose tensors it did not load (children first), and its
        # guard keeps loaded tensors as they are. Our initialization (one definition, init_weights) covers a
        # module and all below it: apply it where tensors live, leaves and the embeddings' tokens.
        if next(module.parameters(recurse=False), None) is not None:
            self.core.init_weights(module)

    def _outputs(self, return_dict: bool | None, output_type: type, fields: dict[str, Any]):
        output = output_type(**fields)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()


class ViTHybridModel(ViTHybridPreTrainedModel):
    def __init__(self, config: ViTHybridConfig, add_pooling_layer: bool = True, core: nn.Module | None = None):
        super().__init__(config)
        self._hold(core if core is not None else standalone.ViTHybridModel(config.to_standalone(), add_pooling_layer))
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(self, pixel_values: torch.Tensor | None = None, head_mask: torch.Tensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                interpolate_pos_encoding: bool | None = None, return_dict: bool | None = None, **kwargs):
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        out = self.core(pixel_values, head_mask=head_mask, **self._flags(output_attentions, output_hidden_states),
                        interpolate_pos_encoding=bool(interpolate_pos_encoding), return_dict=True)
        return self._outputs(return_dict, BaseModelOutputWithPooling, dict(
            last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output,
            hidden_states=out.hidden_states, attentions=out.attentions))


class ViTHybridForImageClassification(ViTHybridPreTrainedModel):
    def __init__(self, config: ViTHybridConfig):
        super().__init__(config)
        core = standalone.ViTHybridForImageClassification(config.to_standalone())
        self._hold(core, vit=ViTHybridModel(config, core=core.vit))
        self.post_init()

    def forward(self, pixel_values: torch.Tensor | None = None, head_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, interpolate_pos_encoding: bool | None = None,
                return_dict: bool | None = None, **kwargs):
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        self.core.config.problem_type = self.config.problem_type  # our loss reads it; users may set it late
        out = self.core(pixel_values, head_mask=head_mask, labels=labels,
                        **self._flags(output_attentions, output_hidden_states),
                        interpolate_pos_encoding=bool(interpolate_pos_encoding), return_dict=True)
        return self._outputs(return_dict, ImageClassifierOutput, dict(
            loss=out.loss, logits=out.logits, hidden_states=out.hidden_states, attentions=out.attentions))


class ViTHybridImageProcessor(BaseImageProcessor):
    """transformers' image processor API around ours: the same options, preprocessor_config.json and pixels."""

    model_input_names = ["pixel_values"]

    def __init__(self, **options: Any):
        standalone_options = standalone_processing.ViTHybridImageProcessor(**options).to_dict()  # validated
        standalone_options.pop("image_processor_type")
        super().__init__(**standalone_options)

    def preprocess(self, images, return_tensors: str | None = None, **overrides: Any) -> BatchFeature:
        """One image or a list -> {"pixel_values"}; any option of the processor may be overridden per call."""
        options = self.to_dict()
        unknown = sorted(set(overrides) - set(options))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option {', '.join(unknown)}; "
                            f"it has {', '.join(sorted(options))}")
        options.update(overrides)
        pixels = standalone_processing.ViTHybridImageProcessor(**options)(images, return_tensors=None)["pixel_values"]
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)


def register_with_transformers() -> None:
    """Register ViTHybrid with transformers' Auto classes for model_type "vit-hybrid" (idempotent)."""
    if get_checkpoint_conversion_mapping(MODEL_TYPE) is None:
        register_checkpoint_conversion_mapping(MODEL_TYPE, QKV_CONVERSION)
    AutoConfig.register(MODEL_TYPE, ViTHybridConfig, exist_ok=True)
    AutoModel.register(ViTHybridConfig, ViTHybridModel, exist_ok=True)
    AutoModelForImageClassification.register(ViTHybridConfig, ViTHybridForImageClassification, exist_ok=True)
    AutoImageProcessor.register(ViTHybridConfig, image_processor_classes={"pil": ViTHybridImageProcessor},
                                exist_ok=True)
    # Ours is a Pillow processor (transformers' ViTHybrid resized with Pillow too): say so, rather than have
    # AutoImageProcessor look for a torchvision one first and warn that it fell back.
    pil_first = getattr(image_processing_auto, "DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS", None)
    if pil_first is not None and ViTHybridImageProcessor.__name__ not in pil_first:
        pil_first.append(ViTHybridImageProcessor.__name__)
