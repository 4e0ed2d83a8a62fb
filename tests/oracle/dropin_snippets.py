"""User code written for transformers' ViTHybrid, run unchanged against transformers 4.46.3 (reference.py
`dropin`) and against vithybrid (tests/test_dropin.py), so that the two results can be compared.

Each snippet takes `L`, a module namespace that is either `transformers` or `vithybrid`, and a context
(the checkpoint folder both sides load, a case from cases.py, an empty folder to write in) and returns
what a user would look at. `describe` turns that into JSON (types, keys, shapes, order, plain values,
file names) plus the tensors, which the test compares with a tolerance. Imported by both environments,
so it needs only torch, numpy and Pillow, and never imports vithybrid or transformers itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

try:  # imported as oracle.dropin_snippets by our tests, or beside cases.py by reference.py
    from .cases import gradient_image
except ImportError:
    from cases import gradient_image

# transformers' PretrainedConfig keys about text generation, which vithybrid leaves out on purpose
# (these models do not generate), and keys that name transformers itself.
GENERATION_KEYS = {
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens"}
COMMON_ATTRIBUTES = (
    "return_dict", "use_return_dict", "output_hidden_states", "output_attentions", "torchscript", "torch_dtype",
    "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_word_embeddings", "chunk_size_feed_forward",
    "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder",
    "architectures", "finetuning_task", "id2label", "label2id", "num_labels", "tokenizer_class", "prefix",
    "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "problem_type", "name_or_path")
SNIPPETS: dict[str, Callable] = {}
PROCESSOR_SNIPPETS: dict[str, Callable] = {}  # need no model case: run once


def snippet(function: Callable) -> Callable:
    SNIPPETS[function.__name__] = function
    return function


def processor_snippet(function: Callable) -> Callable:
    PROCESSOR_SNIPPETS[function.__name__] = function
    return function


def config_dict(config) -> dict[str, Any]:
    """to_dict() without generation keys, private keys and transformers' version stamp."""
    def public(d):
        return {k: public(v) if isinstance(v, dict) and "model_type" in v else v for k, v in d.items()
                if not k.startswith("_") and k not in GENERATION_KEYS and k != "transformers_version"}
    return public(config.to_dict())


def inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and labels of the case's kind (single-label, regression, multi-label)."""
    generator = torch.Generator().manual_seed(1234)
    config = case["config"]
    pixels = torch.randn(case["batch"], 3, config["image_size"], config["image_size"], generator=generator)
    if case["labels"] == "single":
        labels = torch.randint(0, config["num_labels"], (case["batch"],), generator=generator)
    elif case["labels"] == "regression":
        labels = torch.randn(case["batch"], generator=generator)
    else:
        labels = (torch.rand(case["batch"], config["num_labels"], generator=generator) > 0.5).float()
    return pixels, labels


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def fixed_pooler(model):
    """A base model loaded from a classification checkpoint gets a random pooler: fix it, to compare values."""
    with torch.no_grad():
        model.pooler.dense.weight.copy_(torch.linspace(-0.1, 0.1, model.pooler.dense.weight.numel()).view_as(
            model.pooler.dense.weight))
        model.pooler.dense.bias.fill_(0.01)
    return model


def raises(function: Callable) -> dict[str, bool]:
    """Whether the call raised (the exception type may differ: ours names the problem)."""
    try:
        function()
    except Exception:  # noqa: BLE001 - any exception counts
        return {"raises": True}
    return {"raises": False}


# ---- model outputs -------------------------------------------------------------------------------

@snippet
def output_access(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    pixels, labels = inputs(case)
    with torch.no_grad():
        out = model(pixels, labels=labels, output_hidden_states=True, output_attentions=True)
        plain = model(pixels)
    return {"out": out, "index0": out[0], "index1": out[1], "key": out["logits"], "attribute": out.logits,
            "slice": out[1:3], "to_tuple": out.to_tuple(), "keys": list(out.keys()), "iterate": list(out),
            "items": [k for k, _ in out.items()], "plain": plain, "plain_keys": list(plain.keys()),
            "plain_to_tuple": plain.to_tuple(), "loss_attribute_when_unset": plain.loss,
            "hidden_states_attribute_when_unset": plain.hidden_states, "is_dict": isinstance(out, dict)}


@snippet
def return_dict_false(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    base = fixed_pooler(L.ViTHybridModel.from_pretrained(checkpoint))
    headless = L.ViTHybridModel.from_pretrained(checkpoint, add_pooling_layer=False)
    pixels, labels = inputs(case)
    with torch.no_grad():
        return {"logits_only": model(pixels, return_dict=False),
                "with_loss": model(pixels, labels=labels, return_dict=False),
                "with_states": model(pixels, output_hidden_states=True, output_attentions=True, return_dict=False),
                "base": base(pixels, return_dict=False),
                "base_states": base(pixels, output_hidden_states=True, return_dict=False),
                "headless": headless(pixels, return_dict=False),
                "base_output": base(pixels)}


@snippet
def config_flags_reach_forward(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    pixels, _ = inputs(case)
    results = {}
    with torch.no_grad():
        model.config.output_hidden_states = True
        results["hidden_states"] = model(pixels)
        model.config.output_attentions = True
        results["both"] = model(pixels)
        results["call_overrides_config"] = model(pixels, output_hidden_states=False, output_attentions=False)
        model.config.return_dict = False
        results["return_dict_off"] = model(pixels)
        results["use_return_dict"] = model.config.use_return_dict
    return results


@snippet
def torchscript(L, checkpoint: Path, case: dict, work: Path) -> dict:
    pixels, _ = inputs(case)
    scripted = L.ViTHybridForImageClassification.from_pretrained(checkpoint, torchscript=True)
    traced = torch.jit.trace(scripted, pixels)
    plain = L.ViTHybridForImageClassification.from_pretrained(checkpoint)
    traced_dict = torch.jit.trace(plain, pixels, strict=False)
    with torch.no_grad():
        return {"config": scripted.config.torchscript, "use_return_dict": scripted.config.use_return_dict,
                "eager_call": scripted(pixels), "traced": traced(pixels), "traced_dict": traced_dict(pixels)}


@snippet
def head_mask_and_problem_type(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    pixels, labels = inputs(case)
    config = case["config"]
    head_mask = torch.ones(config["num_hidden_layers"], config["num_attention_heads"])
    head_mask[0, 0] = 0
    with torch.no_grad():
        out = model(pixels, head_mask=head_mask, labels=labels, output_attentions=True)
    return {"out": out, "problem_type_after_forward": model.config.problem_type}


@snippet
def masked_image_modelling_input(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridModel.from_pretrained(checkpoint, use_mask_token=True)
    pixels, _ = inputs(case)
    grid = case["config"]["backbone_featmap_shape"][-1] // case["config"]["patch_size"]
    mask = torch.zeros(pixels.shape[0], grid * grid, dtype=torch.bool)
    mask[:, ::3] = True
    with torch.no_grad():
        model.embeddings.mask_token.fill_(0.5)
        return {"masked": model(pixels, bool_masked_pos=mask).last_hidden_state,
                "keys": sorted(k for k in model.state_dict() if "mask_token" in k)}


# ---- config ----------------------------------------------------------------------------------------

@snippet
def config_constructors(L, checkpoint: Path, case: dict, work: Path) -> dict:
    default = L.ViTHybridConfig()
    five = L.ViTHybridConfig(num_labels=5)
    case_config = L.ViTHybridConfig(**case["config"])
    custom = L.ViTHybridConfig(**{**case["config"], "problem_type": "regression", "num_labels": 3},
                               output_hidden_states=True, torchscript=True, finetuning_task="cats",
                               architectures=["ViTHybridForImageClassification"],
                               id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2},
                               some_new_key=7)
    return {"default": config_dict(default), "five": [five.num_labels, five.id2label, five.label2id],
            "case": config_dict(case_config), "custom": config_dict(custom), "new_key": custom.some_new_key,
            "attributes": {name: getattr(custom, name) for name in COMMON_ATTRIBUTES if name != "name_or_path"},
            "model_type": L.ViTHybridConfig.model_type, "equal": L.ViTHybridConfig(**case["config"]) == case_config,
            "default_image_size": default.image_size, "default_featmap": default.backbone_featmap_shape}


@snippet
def config_methods(L, checkpoint: Path, case: dict, work: Path) -> dict:
    config = L.ViTHybridConfig.from_pretrained(checkpoint)
    saved = config.save_pretrained(work / "saved")
    config.to_json_file(work / "config_copy.json")
    from_json = L.ViTHybridConfig.from_json_file(work / "config_copy.json")
    json_string = json.loads(config.to_json_string())
    shutil.copytree(checkpoint, work / "repo" / "sub")
    overridden, unused = L.ViTHybridConfig.from_pretrained(checkpoint, num_labels=3, output_attentions=True,
                                                           foo="bar", return_unused_kwargs=True)
    channels = case["config"]["backbone_featmap_shape"][1]  # a grid the backbone does not make: builds, cannot run
    mismatched = L.ViTHybridConfig(**{**case["config"], "backbone_featmap_shape": [1, channels, 7, 7]})
    from_dict, unused_dict = L.ViTHybridConfig.from_dict(config.to_dict(), hidden_dropout_prob=0.3, baz=1,
                                                          return_unused_kwargs=True)
    return {"loaded": config_dict(config), "save_returns": saved, "files": files(work),
            "reloaded": config_dict(L.ViTHybridConfig.from_pretrained(work / "saved")),
            "from_json_file": config_dict(from_json),
            # the keys config.json holds; the nested backbone_config by meaning (which of its default-valued
            # keys get written differs, and either library reads them back the same)
            "json_keys": sorted(k for k in json_string if k != "transformers_version"),
            "json_string": config_dict(L.ViTHybridConfig(**json_string)),
            "subfolder": config_dict(L.ViTHybridConfig.from_pretrained(work / "repo", subfolder="sub")),
            "overridden": [overridden.num_labels, overridden.id2label, overridden.output_attentions], "unused": unused,
            "from_dict": [from_dict.hidden_dropout_prob, unused_dict], "name_or_path": config.name_or_path,
            "featmap_mismatch_forward": raises(lambda: L.ViTHybridForImageClassification(mismatched)(inputs(case)[0]))}


# ---- loading and saving -----------------------------------------------------------------------------

@snippet
def from_pretrained_keywords(L, checkpoint: Path, case: dict, work: Path) -> dict:
    pixels, _ = inputs(case)
    reference = L.ViTHybridForImageClassification.from_pretrained(pretrained_model_name_or_path=checkpoint)
    config = L.ViTHybridConfig.from_pretrained(checkpoint)
    with_config = L.ViTHybridForImageClassification.from_pretrained(checkpoint, config=config)
    with_state = L.ViTHybridForImageClassification.from_pretrained(None, config=config,
                                                                   state_dict=reference.state_dict())
    model, info = L.ViTHybridForImageClassification.from_pretrained(checkpoint, output_loading_info=True)
    base, base_info = L.ViTHybridModel.from_pretrained(checkpoint, output_loading_info=True)
    base.save_pretrained(work / "base")
    from_base, from_base_info = L.ViTHybridForImageClassification.from_pretrained(work / "base",
                                                                                  output_loading_info=True)
    shutil.copytree(checkpoint, work / "repo" / "sub")
    sub = L.ViTHybridForImageClassification.from_pretrained(work / "repo", subfolder="sub")
    flags = L.ViTHybridForImageClassification.from_pretrained(checkpoint, output_attentions=True,
                                                              output_hidden_states=True, attn_implementation="eager")
    half = L.ViTHybridForImageClassification.from_pretrained(checkpoint, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        return {"reference": reference(pixels).logits, "config": with_config(pixels).logits,
                "state_dict": with_state(pixels).logits, "info": info, "base_info": base_info,
                "from_base_info": from_base_info, "subfolder": sub(pixels).logits, "flags": flags(pixels),
                "flags_config": [flags.config.output_attentions, flags.config.output_hidden_states],
                "half_dtype": half.dtype, "half_logits": list(half(pixels).logits.shape),
                "config_dtypes": [reference.config.torch_dtype, half.config.torch_dtype],
                "training": reference.training,
                "base_pooler": fixed_pooler(base)(pixels).pooler_output}


@snippet
def new_head_with_ignore_mismatched_sizes(L, checkpoint: Path, case: dict, work: Path) -> dict:
    pixels, _ = inputs(case)
    labels = case["config"]["num_labels"] + 2
    model, info = L.ViTHybridForImageClassification.from_pretrained(
        checkpoint, num_labels=labels, ignore_mismatched_sizes=True, output_loading_info=True)
    original = L.ViTHybridForImageClassification.from_pretrained(checkpoint)
    with torch.no_grad():
        body = model.vit(pixels).last_hidden_state
        body_original = original.vit(pixels).last_hidden_state
    return {"info": info, "num_labels": model.config.num_labels, "id2label": model.config.id2label,
            "logits_shape": list(model(pixels).logits.shape), "body_kept": body, "body_original": body_original,
            "mismatch_without_flag": raises(lambda: L.ViTHybridForImageClassification.from_pretrained(
                checkpoint, num_labels=labels))}


@snippet
def save_pretrained_files(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint)
    pixels, _ = inputs(case)
    returned = model.save_pretrained(work / "safe")
    returned_bin = model.save_pretrained(work / "bin", safe_serialization=False)
    config = json.loads((work / "safe" / "config.json").read_text())
    with torch.no_grad():
        return {"returns": [returned, returned_bin], "files": files(work),
                "architectures": config["architectures"], "torch_dtype": config["torch_dtype"],
                "model_type": config["model_type"], "num_labels": len(config.get("id2label", {0: 0, 1: 1})),
                "bin_logits": L.ViTHybridForImageClassification.from_pretrained(work / "bin")(pixels).logits,
                "safe_logits": L.ViTHybridForImageClassification.from_pretrained(work / "safe")(pixels).logits}


# ---- model methods and attributes ----------------------------------------------------------------

@snippet
def model_attributes(L, checkpoint: Path, case: dict, work: Path) -> dict:
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint)
    results = {"num_parameters": model.num_parameters(),
               "exclude_embeddings": model.num_parameters(exclude_embeddings=True),
               "input_embeddings": type(model.get_input_embeddings()).__name__,
               "base_input_embeddings": type(model.vit.get_input_embeddings()).__name__,
               "supports_gradient_checkpointing": model.supports_gradient_checkpointing,
               "main_input_name": model.main_input_name, "config_class": model.config_class.__name__,
               "base_model_prefix": model.base_model_prefix, "base_model": type(model.base_model).__name__,
               "can_generate": model.can_generate(), "dtype": model.dtype, "device": str(model.device),
               "checkpointing_before": model.is_gradient_checkpointing, "num_labels": model.num_labels,
               "name_or_path": model.name_or_path == str(checkpoint)}
    model.gradient_checkpointing_enable()
    results["checkpointing_on"] = [model.is_gradient_checkpointing, model.vit.encoder.gradient_checkpointing]
    model.gradient_checkpointing_disable()
    results["checkpointing_off"] = [model.is_gradient_checkpointing, model.vit.encoder.gradient_checkpointing]
    for p in model.vit.parameters():
        p.requires_grad_(False)
    results["only_trainable"] = model.num_parameters(only_trainable=True)
    return results


@snippet
def gradient_checkpointing_training(L, checkpoint: Path, case: dict, work: Path) -> dict:
    """A training step (dropout and drop-path active) with checkpointing on: loss and gradients."""
    model = L.ViTHybridForImageClassification.from_pretrained(checkpoint, attn_implementation="eager")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    pixels, labels = inputs(case)
    torch.manual_seed(7)
    loss = model(pixels, labels=labels).loss
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()
             if name in ("classifier.weight", "vit.embeddings.position_embeddings", "vit.layernorm.weight",
                         "vit.encoder.layer.0.output.dense.weight")}
    return {"loss": loss.detach(), "grads": grads}


# ---- image processor --------------------------------------------------------------------------------

def processor(L, folder: Path):
    return L.ViTHybridImageProcessor.from_pretrained(folder)


def processor_dict(p) -> dict[str, Any]:
    """to_dict() without private keys (transformers' _processor_class)."""
    return {k: v for k, v in p.to_dict().items() if not k.startswith("_")}


@processor_snippet
def processor_outputs(L, folder: Path, work: Path) -> dict:
    p = processor(L, folder)
    image = gradient_image(97, 61)
    pt = p(image, return_tensors="pt")
    listed = p(image, return_tensors=None)
    return {"pt": pt, "pixel_values_attribute": pt.pixel_values, "keys": list(pt.keys()), "data": list(pt.data),
            "np": p(image, return_tensors="np"), "none": listed,
            "none_types": [type(v).__name__ for v in listed["pixel_values"]],
            "preprocess": p.preprocess(image, return_tensors="pt"),
            "to_dtype": pt.to(torch.float16).pixel_values, "to_device": pt.to("cpu").pixel_values,
            "convert": p(image, return_tensors=None).convert_to_tensors("pt"),
            "batch": p([image, gradient_image(61, 97)], return_tensors="pt"),
            "model_input_names": p.model_input_names,
            "integer_index": raises(lambda: pt[0])}


OVERRIDES = {
    "do_resize_false": dict(do_resize=False),
    "size_shortest": dict(size={"shortest_edge": 40}),
    "size_height_width": dict(size={"height": 30, "width": 50}),
    "crop_size": dict(crop_size={"height": 20, "width": 24}),
    "resample_nearest": dict(resample=0),
    "resample_bilinear": dict(resample=2),
    "no_center_crop": dict(do_center_crop=False),
    "no_rescale": dict(do_rescale=False),
    "rescale_factor": dict(rescale_factor=1 / 127.5),
    "no_normalize": dict(do_normalize=False),
    "no_rescale_no_normalize": dict(do_rescale=False, do_normalize=False),
    "mean_std": dict(image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.6, 0.7]),
    "scalar_mean_std": dict(image_mean=0.4, image_std=0.2),
    "no_convert_rgb_on_rgb": dict(do_convert_rgb=False),
    "channels_last": dict(data_format="channels_last"),
}


@processor_snippet
def processor_call_options(L, folder: Path, work: Path) -> dict:
    p = processor(L, folder)
    image = gradient_image(97, 61)
    results = {}
    for name, options in OVERRIDES.items():
        results[name] = p(image, return_tensors="np", **options)
        results[f"preprocess_{name}"] = p.preprocess(image, return_tensors="pt", **options)
    array = np.array(gradient_image(61, 97))
    results["array_hwc"] = p(array, return_tensors="pt")
    results["array_chw"] = p(array.transpose(2, 0, 1), return_tensors="pt", input_data_format="channels_first")
    results["tensor_chw"] = p(torch.from_numpy(array).permute(2, 0, 1), return_tensors="pt")
    results["batch_4d"] = p(np.stack([array, array[::-1].copy()]), return_tensors="pt")
    results["gray_convert"] = p(gradient_image(40, 50).convert("L"), return_tensors="pt")
    results["rgba_convert"] = p(gradient_image(40, 50).convert("RGBA"), return_tensors="pt")
    results["settings_unchanged"] = [p.size, p.crop_size, p.do_resize, p.image_mean]
    return results


@processor_snippet
def processor_methods(L, folder: Path, work: Path) -> dict:
    p = processor(L, folder)
    as_dict = processor_dict(p)
    returned = p.save_pretrained(work / "saved")
    p.to_json_file(work / "processor.json")
    shutil.copytree(folder, work / "repo" / "sub")
    overridden, unused = L.ViTHybridImageProcessor.from_pretrained(folder, do_resize=False, size={"shortest_edge": 9},
                                                                   foo=1, return_unused_kwargs=True)
    return {"to_dict": as_dict, "json": json.loads(p.to_json_string()),
            "save_returns": [os.path.relpath(path, work) for path in returned], "files": files(work),
            "from_dict": processor_dict(L.ViTHybridImageProcessor.from_dict(as_dict, crop_size={"height": 7,
                                                                                                "width": 9})),
            "from_json_file": processor_dict(L.ViTHybridImageProcessor.from_json_file(work / "processor.json")),
            "reloaded": processor_dict(L.ViTHybridImageProcessor.from_pretrained(work / "saved")),
            "subfolder": processor_dict(L.ViTHybridImageProcessor.from_pretrained(work / "repo", subfolder="sub")),
            "overridden": [overridden.do_resize, overridden.size], "unused": unused,
            "defaults": processor_dict(L.ViTHybridImageProcessor())}


@processor_snippet
def processor_transforms(L, folder: Path, work: Path) -> dict:
    p = processor(L, folder)
    hwc = np.asarray(gradient_image(97, 61))
    chw = hwc.transpose(2, 0, 1).copy()
    floats = hwc.astype(np.float32) / 255
    return {
        "resize_shortest": p.resize(hwc, size={"shortest_edge": 30}),
        "resize_exact_bilinear": p.resize(hwc, size={"height": 20, "width": 25}, resample=2),
        "resize_chw": p.resize(chw, size={"shortest_edge": 30}),
        "resize_chw_to_last": p.resize(chw, size={"shortest_edge": 30}, data_format="channels_last"),
        "resize_float": p.resize(floats, size={"height": 20, "width": 25}),
        "center_crop": p.center_crop(hwc, size={"height": 20, "width": 21}),
        "center_crop_chw": p.center_crop(chw, size={"height": 20, "width": 21}),
        "center_crop_pads": p.center_crop(hwc, size={"height": 70, "width": 101}),
        "rescale": p.rescale(hwc, 1 / 255),
        "rescale_chw_to_last": p.rescale(chw, 0.5, data_format="channels_last", input_data_format="channels_first"),
        "normalize_uint8": p.normalize(hwc, mean=[10.0, 20.0, 30.0], std=[2.0, 3.0, 4.0]),
        "normalize_float": p.normalize(floats, mean=0.5, std=0.25),
        "normalize_chw": p.normalize(chw.astype(np.float32), mean=[0.1, 0.2, 0.3], std=[1.0, 2.0, 3.0]),
    }


# ---- running and describing ------------------------------------------------------------------------

def describe(value: Any, tensors: dict[str, torch.Tensor], path: str, work: Path) -> Any:
    """JSON for a snippet's result: types, keys, shapes and plain values; tensors go to `tensors`."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().clone()
        return {"tensor": path, "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).astype(np.float64 if value.dtype.kind == "f"
                                                                             else np.int64))
        return {"ndarray": path, "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value)}
    if isinstance(value, torch.Size):
        return {"size": list(value)}
    if isinstance(value, dict) or type(value).__name__ == "BatchFeature":
        items = {str(k): describe(v, tensors, f"{path}.{k}", work) for k, v in value.items()}
        return {"type": type(value).__name__, "keys": list(items), "items": items}
    if isinstance(value, (list, tuple)):
        return {"type": type(value).__name__,
                "items": [describe(v, tensors, f"{path}.{i}", work) for i, v in enumerate(value)]}
    if isinstance(value, (str, Path)):
        return str(value).replace(str(work), "<work>")
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return {"object": type(value).__name__}


def run(name: str, L, work: Path, checkpoint: Path | None = None, case: dict | None = None) -> tuple[Any, dict]:
    """One snippet, seeded, in a fresh folder: (its description, its tensors)."""
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if name in SNIPPETS:
        result = SNIPPETS[name](L, checkpoint, case, work)
    else:
        result = PROCESSOR_SNIPPETS[name](L, checkpoint, work)
    tensors = {}
    return describe(result, tensors, name, work), tensors
