"""ViTHybridConfig: transformers' defaults, the Hub's config.json, and clear errors for impossible configs."""

import json

import pytest

from helpers import TINY, tiny_config
from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridModel
from vithybrid.base.configuration import ConfigError
from vithybrid.training.train import PRESETS


def test_defaults_are_transformers_and_google_architecture():
    config = ViTHybridConfig(image_size=384, num_labels=1000)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == \
        (768, 12, 12, 3072)
    assert config.hidden_act == "gelu" and config.layer_norm_eps == 1e-12 and config.qkv_bias
    assert config.backbone_featmap_shape == [1, 1024, 24, 24] and config.grid_size == (24, 24)
    bit = config.backbone_config
    assert (bit.layer_type, bit.depths, bit.global_padding, bit.embedding_dynamic_padding) == \
        ("bottleneck", [3, 4, 9], "SAME", True)
    assert (bit.embedding_size, bit.hidden_sizes, bit.num_groups, bit.hidden_act, bit.output_stride) == \
        (64, [256, 512, 1024, 2048], 32, "relu", 32)
    assert bit.out_features == ["stage3"] and bit.out_indices == [3]
    assert config.num_labels == 1000 and config.id2label[999] == "LABEL_999" and config.label2id["LABEL_0"] == 0


def test_hub_config_json_round_trip_keeps_unknown_keys(tmp_path):
    data = {**json.loads(json.dumps(TINY)), "model_type": "vit-hybrid", "architectures": ["X"],
            "some_future_key": {"a": 1}, "id2label": {"0": "cat", "1": "dog"}}
    data.pop("num_labels")
    config = ViTHybridConfig.from_dict(data)
    assert config.some_future_key == {"a": 1} and config.num_labels == 2 and config.id2label[1] == "dog"
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["some_future_key"] == {"a": 1} and written["architectures"] == ["X"]
    assert written["id2label"] == {"0": "cat", "1": "dog"} and written["label2id"] == {"cat": 0, "dog": 1}
    assert written["backbone_config"]["model_type"] == "bit"
    assert ViTHybridConfig.from_pretrained(tmp_path) == config


def test_backbone_keys_absent_take_bit_defaults():
    config = ViTHybridConfig(image_size=384, backbone_config={"model_type": "bit", "layer_type": "bottleneck",
                                                               "depths": [3, 4, 9], "global_padding": "same",
                                                               "embedding_dynamic_padding": True,
                                                               "out_features": ["stage3"]})
    assert config.backbone_config.hidden_sizes == [256, 512, 1024, 2048]
    assert config.backbone_config.global_padding == "SAME"


def test_num_labels_setter_and_problem_type():
    config = tiny_config()
    config.num_labels = 3
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert tiny_config(problem_type="multi_label_classification").problem_type == "multi_label_classification"


@pytest.mark.parametrize("changes, field", [
    (dict(hidden_act="swishy"), "hidden_act"),
    (dict(backbone_featmap_shape=[1, 64, 4, 4]), "backbone_featmap_shape"),
    (dict(problem_type="ranking"), "problem_type"),
    (dict(backbone_config={**TINY["backbone_config"], "layer_type": "basic"}), "backbone_config.layer_type"),
    (dict(backbone_config={**TINY["backbone_config"], "hidden_act": "swishy"}), "backbone_config.hidden_act"),
    (dict(backbone_config={**TINY["backbone_config"], "global_padding": "reflect"}), "backbone_config.global_padding"),
    (dict(backbone_config={**TINY["backbone_config"], "out_features": ["stage9"]}), "backbone_config.out_features"),
    (dict(backbone_config={**TINY["backbone_config"], "model_type": "resnet"}), "backbone_config.model_type"),
])
def test_impossible_configs_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        tiny_config(**changes)


@pytest.mark.parametrize("changes, field", [
    (dict(hidden_size=37, num_attention_heads=12), "hidden_size"),  # transformers' ConfigTester builds this config
    (dict(hidden_size=0), "hidden_size"),  # ConfigTester sets each common size to 0, 1, 2 at construction
    (dict(num_attention_heads=0), "num_attention_heads"),
    (dict(num_hidden_layers=1_000_000), "num_hidden_layers"),
    (dict(hidden_size=1e9), "hidden_size"),
    (dict(intermediate_size="3072"), "intermediate_size"),
    (dict(backbone_config={**TINY["backbone_config"], "depths": [1, 1, 10**6]}), r"backbone_config\.depths"),
    (dict(backbone_config={**TINY["backbone_config"], "num_groups": 3}), "num_groups"),
])
def test_sizes_are_checked_when_the_model_is_built_as_transformers_does(changes, field):
    config = tiny_config(**changes)  # constructs, as transformers' does
    with pytest.raises(ConfigError, match=field) as error:
        ViTHybridForImageClassification(config)
    assert "\n" not in str(error.value)


def test_parameter_count_is_the_models():
    preactivation = tiny_config(backbone_config={**TINY["backbone_config"], "layer_type": "preactivation"})
    google = ViTHybridConfig(image_size=384, num_labels=1000)
    for config in (tiny_config(), google, ViTHybridConfig(**PRESETS["shapes"]), preactivation):
        assert config.parameter_count() == ViTHybridForImageClassification(config).num_parameters()
    config, pooler = tiny_config(), 32 * 32 + 32
    assert config.parameter_count() - 32 * 5 - 5 + pooler == ViTHybridModel(config).num_parameters()


def test_featmap_grid_mismatch_warns_with_the_right_shape_as_transformers_builds_it(caplog):
    # transformers builds such a config (its own defaults are one), so it warns; the model then runs
    # only with interpolate_pos_encoding=True
    with caplog.at_level("WARNING", logger="vithybrid"):
        config = tiny_config(backbone_featmap_shape=[1, 128, 6, 6])
    assert "makes [1, 128, 4, 4] at image_size 60" in caplog.text
    assert config.featmap_mismatch() is not None and tiny_config().featmap_mismatch() is None


def test_transformers_config_tester_steps(tmp_path):
    """What transformers' own ConfigTester (run by its ViTHybrid tests with hidden_size=37) does to a config."""
    config = ViTHybridConfig(hidden_size=37)  # 12 heads do not divide it: refused when a model is built, not here
    for index, name in enumerate(("hidden_size", "num_attention_heads", "num_hidden_layers")):
        setattr(config, name, index)
        assert getattr(config, name) == index
        assert getattr(ViTHybridConfig(**{name: index}), name) == index  # hidden_size=0 constructs too
    common = {"return_dict": False, "torch_dtype": "float16", "pruned_heads": {"a": 1}, "is_decoder": True,
              "id2label": {0: "label"}, "label2id": {"label": "0"}, "max_length": 50, "problem_type": "regression"}
    config = ViTHybridConfig(**common)
    assert config.pruned_heads == {"a": 1} and config.label2id == {"label": "0"} and config.max_length == 50
    ViTHybridConfig(hidden_size=37).save_pretrained(tmp_path / "sub")
    assert ViTHybridConfig.from_pretrained(tmp_path, subfolder="sub").hidden_size == 37
