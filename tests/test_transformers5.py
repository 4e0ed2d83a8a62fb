"""ViT-Hybrid inside transformers 5 (vithybrid.register_with_transformers): its Auto classes, from_pretrained
keywords, pipelines and Trainer, against transformers 4.46.3's checkpoints and outputs (oracle/cases.py)."""

import io
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import SAMPLE_PHOTOS, missing
from helpers import TINY, env_hiding, tiny_checkpoint, tiny_model
from oracle.cases import CASES
from test_reference import load_case
from vithybrid import (ViTHybridForImageClassification, ViTHybridImageProcessor, register_with_transformers,
                       resolve_model)
from vithybrid.pipeline import pipeline as our_pipeline

ROOT = Path(__file__).resolve().parents[1]
LOGITS_ATOL = 1e-4  # float32 against transformers 4.46.3, as in test_reference.py
ATTENTIONS_ATOL = 1e-5
# Half precision: bfloat16 keeps 8 significant bits, float16 11, so each weight, activation and sum is
# rounded to a relative 2^-9 or 2^-12, and the errors add up through the backbone and the layers. Logits
# within 2^-4 (bfloat16) or 2^-7 (float16) of the float32 logits' scale allow for that (the tiny cases stay
# well inside it); a wrong or missing weight, or one left in another dtype, moves logits by about their scale.
HALF_RELATIVE = {torch.bfloat16: 2 ** -4, torch.float16: 2 ** -7}


@pytest.fixture(scope="module")
def transformers():
    try:
        import transformers
    except ImportError:
        missing("transformers 5 is not installed (pip install -e '.[transformers]')")
    if int(transformers.__version__.split(".")[0]) < 5:
        missing(f"these tests need transformers 5, found {transformers.__version__}")
    register_with_transformers()
    return transformers


def close(actual, expected, atol):
    """test_reference's comparison, across dtypes (half-precision outputs against float32 references)."""
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", CASES)
def test_auto_classes_give_transformers_4_logits_and_real_maps(transformers, oracle_dir, name, attn):
    inputs, expected = load_case(oracle_dir, name)
    model = transformers.AutoModelForImageClassification.from_pretrained(oracle_dir / name, attn_implementation=attn)
    assert isinstance(model, transformers.PreTrainedModel) and type(model).__name__ == "ViTHybridForImageClassification"
    assert model.config._attn_implementation == attn and model.core.attn_implementation == attn
    assert not model.training  # from_pretrained returns it in eval mode, and our forward knows it
    with torch.no_grad():
        out = model(inputs["pixel_values"], labels=inputs["labels"], output_attentions=True, output_hidden_states=True)
    assert isinstance(out, transformers.modeling_outputs.ImageClassifierOutput)
    close(out.logits, expected[f"{attn}.logits"], LOGITS_ATOL)
    close(out.loss, expected[f"{attn}.loss"], LOGITS_ATOL)
    assert len(out.attentions) == CASES[name]["config"]["num_hidden_layers"]
    for i, attention in enumerate(out.attentions):  # real maps under SDPA too (4.46.3 returned None there)
        close(attention, expected[f"eager.attentions.{i}"], ATTENTIONS_ATOL)
    for i, hidden in enumerate(out.hidden_states):
        close(hidden, expected[f"eager.hidden_states.{i}"], LOGITS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_attention_switches_in_place_and_config_flags_are_honoured(transformers, oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    model = transformers.AutoModelForImageClassification.from_pretrained(
        oracle_dir / name, output_attentions=True, device_map="cpu")
    with torch.no_grad():
        for attn in ("eager", "sdpa"):
            model.set_attn_implementation(attn)
            assert model.core.attn_implementation == attn
            out = model(inputs["pixel_values"])
            close(out.logits, expected[f"{attn}.logits"], LOGITS_ATOL)
            close(out.attentions[0], expected["eager.attentions.0"], ATTENTIONS_ATOL)  # from the config's flag
        logits, *_ = model(inputs["pixel_values"], return_dict=False)
    close(logits, expected["sdpa.logits"], LOGITS_ATOL)
    # return_dict=False on the config reaches our model too (its own config), yet the wrapper reads fields
    tuples = transformers.AutoModelForImageClassification.from_pretrained(oracle_dir / name, return_dict=False)
    with torch.no_grad():
        out = tuples(inputs["pixel_values"])
        traced = torch.jit.trace(tuples, inputs["pixel_values"])
    assert isinstance(out, tuple)
    close(out[0], expected["sdpa.logits"], LOGITS_ATOL)
    close(traced(inputs["pixel_values"])[0], expected["sdpa.logits"], LOGITS_ATOL)


@pytest.mark.parametrize("name", CASES)
def test_half_precision_through_dtype_and_torch_dtype(transformers, oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    reference = expected["eager.logits"]
    auto = transformers.AutoModelForImageClassification
    calls = {torch.bfloat16: dict(dtype=torch.bfloat16),  # transformers 5's keyword
             torch.float16: dict(attn_implementation="sdpa", torch_dtype=torch.float16)}  # the seed page's call
    for dtype, kwargs in calls.items():
        with warnings.catch_warnings():  # transformers 5 says torch_dtype is deprecated: it still works
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(oracle_dir / name, **kwargs)
        assert model.dtype == dtype
        with torch.no_grad():
            close(model(inputs["pixel_values"]).logits, reference, HALF_RELATIVE[dtype] * float(reference.abs().max()))
    # A float32 model that has run (its standardized weights are cached) and is then cast gives the cast
    # model's numbers, not the cached float32 weights' ones.
    model = auto.from_pretrained(oracle_dir / name)
    with torch.no_grad():
        close(model(inputs["pixel_values"]).logits, reference, LOGITS_ATOL)
        cast = model.to(torch.bfloat16)(inputs["pixel_values"]).logits
        loaded = auto.from_pretrained(oracle_dir / name, dtype=torch.bfloat16)(inputs["pixel_values"]).logits
    assert cast.dtype == torch.bfloat16
    close(cast, loaded, HALF_RELATIVE[torch.bfloat16] / 4 * float(reference.abs().max()))


@pytest.mark.parametrize("name", CASES)
def test_auto_model_is_the_base_model(transformers, oracle_dir, name):
    inputs, expected = load_case(oracle_dir, name)
    model = transformers.AutoModel.from_pretrained(oracle_dir / name / "base")
    assert type(model).__name__ == "ViTHybridModel"
    with torch.no_grad():
        out = model(inputs["pixel_values"])
    close(out.last_hidden_state, expected["base.last_hidden_state"], LOGITS_ATOL)
    close(out.pooler_output, expected["base.pooler_output"], LOGITS_ATOL)


def test_a_new_head_keeps_the_body(transformers, oracle_dir):
    """num_labels + ignore_mismatched_sizes: the fine-tuning idiom. The body is the checkpoint's, the head new."""
    name = "bottleneck_same"
    inputs, expected = load_case(oracle_dir, name)
    model = transformers.AutoModelForImageClassification.from_pretrained(
        oracle_dir / name, num_labels=3, ignore_mismatched_sizes=True)
    assert model.config.num_labels == 3 and model.classifier.weight.shape == (3, CASES[name]["config"]["hidden_size"])
    with torch.no_grad():
        out = model(inputs["pixel_values"], output_hidden_states=True)
    close(out.hidden_states[-1], expected[f"eager.hidden_states.{len(out.hidden_states) - 1}"], LOGITS_ATOL)
    weight = model.classifier.weight
    assert torch.isfinite(weight).all() and 0.5 < float(weight.detach().std()) / model.config.initializer_range < 1.5
    assert torch.count_nonzero(model.classifier.bias) == 0  # initialized as transformers does: zero biases


@pytest.mark.parametrize("name", CASES)
def test_saved_by_transformers_5_loads_in_ours_and_in_transformers_4(transformers, oracle_dir, reference_logits,
                                                                        tmp_path, name):
    inputs, _ = load_case(oracle_dir, name)
    model = transformers.AutoModelForImageClassification.from_pretrained(oracle_dir / name)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        ours5 = model(inputs["pixel_values"]).logits
        standalone = ViTHybridForImageClassification.from_pretrained(tmp_path).eval()(inputs["pixel_values"]).logits
    close(standalone, ours5, LOGITS_ATOL)
    theirs = reference_logits(tmp_path, oracle_dir / f"{name}.inputs.safetensors")
    for attn in ("eager", "sdpa"):
        close(theirs[attn], ours5, LOGITS_ATOL)


def test_checkpoint_layouts_transformers_4_could_not_build_load_too(transformers, tmp_path):
    """A stem-only backbone (timm's vit_tiny_r_s16_p8, as the converter writes it) and timm's LayerNorm eps."""
    folder = tiny_checkpoint(tmp_path, image_size=32, layer_norm_eps=1e-6, backbone_featmap_shape=[1, 16, 8, 8],
                             backbone_config=dict(model_type="bit", layer_type="bottleneck", depths=[],
                                                  hidden_sizes=[], embedding_size=16, num_groups=4,
                                                  global_padding="same", embedding_dynamic_padding=True,
                                                  out_features=["stem"]))
    pixels = torch.randn(2, 3, 32, 32)
    model = transformers.AutoModelForImageClassification.from_pretrained(folder)
    ours = ViTHybridForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        close(model(pixels).logits, ours(pixels).logits, LOGITS_ATOL)


def test_image_processor_gives_transformers_4_pixels(transformers, oracle_dir, tmp_path):
    expected = load_file(oracle_dir / "processors.expected.safetensors")
    for name in ("google", "default"):
        processor = transformers.AutoImageProcessor.from_pretrained(oracle_dir / "processors" / name)
        assert isinstance(processor, transformers.BaseImageProcessor)
        for photo in SAMPLE_PHOTOS:
            pixels = processor(Image.open(photo), return_tensors="pt").pixel_values
            close(pixels, expected[f"{name}/{photo.stem}"], 1e-6)
    processor.save_pretrained(tmp_path)  # round trip, and our own processor reads what it wrote
    again = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    ours = ViTHybridImageProcessor.from_pretrained(tmp_path)
    image = Image.open(SAMPLE_PHOTOS[0])
    close(again(image, return_tensors="pt").pixel_values, ours(image)["pixel_values"], 0)
    overridden = again(image, size={"shortest_edge": 40}, crop_size={"height": 32, "width": 48}, return_tensors="pt")
    assert overridden.pixel_values.shape == (1, 3, 32, 48)
    with pytest.raises(TypeError, match="has no option do_resise"):  # a typo is an error, not silently ignored
        again(image, do_resise=False)


@pytest.fixture(scope="module")
def named_checkpoint(tmp_path_factory):
    """A tiny random classifier with ten named classes, so that a top-5 means something."""
    labels = {i: f"class {i}" for i in range(10)}
    return tiny_checkpoint(tmp_path_factory.mktemp("named"), seed=3, num_labels=10, id2label=labels)


def test_image_classification_pipeline_gives_our_top5(transformers, named_checkpoint):
    theirs = transformers.pipeline("image-classification", model=str(named_checkpoint))
    ours = our_pipeline(named_checkpoint, top_k=5)
    for photo in SAMPLE_PHOTOS:
        got, want = theirs(str(photo), top_k=5), ours(str(photo))
        assert [r["label"] for r in got] == [r["label"] for r in want]
        assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-5)


def test_image_feature_extraction_pipeline(transformers, named_checkpoint, tmp_path):
    # A base model saved with its pooler (the classifier checkpoint has none: AutoModel would draw a new one).
    transformers.AutoModel.from_pretrained(named_checkpoint).save_pretrained(tmp_path)
    transformers.AutoImageProcessor.from_pretrained(named_checkpoint).save_pretrained(tmp_path)
    extract = transformers.pipeline("image-feature-extraction", model=str(tmp_path))
    model = transformers.AutoModel.from_pretrained(tmp_path)
    pixels = transformers.AutoImageProcessor.from_pretrained(tmp_path)(
        Image.open(SAMPLE_PHOTOS[0]), return_tensors="pt").pixel_values
    with torch.no_grad():
        out = model(pixels)
    close(extract(str(SAMPLE_PHOTOS[0]), return_tensors=True), out.last_hidden_state, 1e-5)
    close(extract(str(SAMPLE_PHOTOS[0]), return_tensors=True, pool=True), out.pooler_output, 1e-5)


def shapes_batch(count: int, size: int = 64):
    from vithybrid.training import shapes

    samples = [shapes.sample(7, i, size) for i in range(count)]
    processor = ViTHybridImageProcessor.from_pretrained(resolve_model("shapes"))
    return processor([s.image for s in samples])["pixel_values"], torch.tensor([s.label for s in samples])


def test_trainer_fine_tunes_the_shapes_model(transformers, tmp_path):
    """A new two-class head (round or not) on the shipped shapes model: a few Trainer steps lower the loss."""
    pixels, labels = shapes_batch(32)
    labels = (labels == 0).long()  # circle or not
    data = [{"pixel_values": p, "labels": y} for p, y in zip(pixels, labels)]
    torch.manual_seed(0)  # the new head is drawn before Trainer seeds anything
    model = transformers.AutoModelForImageClassification.from_pretrained(
        resolve_model("shapes"), num_labels=2, ignore_mismatched_sizes=True)

    def loss_on_all() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(pixels, labels=labels).loss)

    before = loss_on_all()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8,
                                          learning_rate=3e-3, logging_steps=1, report_to="none", save_strategy="no",
                                          seed=0, dataloader_pin_memory=False)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    after = loss_on_all()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 12
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_gradient_checkpointing_gives_the_same_gradients(transformers, attn):
    """transformers' gradient_checkpointing_enable drives our encoder's checkpointing (needs issue #13's
    `gradient_checkpointing` attribute on our encoder)."""
    pixels, labels = shapes_batch(4)
    model = transformers.AutoModelForImageClassification.from_pretrained(resolve_model("shapes"),
                                                                         attn_implementation=attn)
    model.train()

    def loss_and_gradients():
        model.zero_grad()
        loss = model(pixels, labels=labels).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, gradients = loss_and_gradients()
    with warnings.catch_warnings():  # transformers 5.2x renames it activation_checkpointing_enable
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed_loss, checkpointed = loss_and_gradients()
    close(checkpointed_loss, loss, 1e-5)
    for a, b in zip(checkpointed, gradients):
        close(a, b, 1e-5)


def test_registration_is_idempotent_and_import_has_no_side_effects(transformers):
    code = textwrap.dedent(f"""
        import sys
        import vithybrid
        assert "transformers" not in sys.modules, "import vithybrid imported transformers"
        vithybrid.register_with_transformers()
        vithybrid.register_with_transformers()
        from transformers import AutoConfig, AutoModelForImageClassification
        config = AutoConfig.for_model("vit-hybrid", **{TINY!r})
        assert type(config).__name__ == "ViTHybridConfig", type(config)
        model = AutoModelForImageClassification.from_config(config)
        print(type(model).__name__, sum(p.numel() for p in model.parameters()))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    name, parameters = result.stdout.split()
    assert name == "ViTHybridForImageClassification"
    assert int(parameters) == sum(p.numel() for p in tiny_model().parameters())


def test_config_defaults_are_ours(transformers):
    from vithybrid import ViTHybridConfig as Ours

    theirs = transformers.AutoConfig.for_model("vit-hybrid", image_size=384).to_standalone().to_dict()
    ours = Ours(image_size=384).to_dict()
    assert {k: theirs[k] for k in ours if k not in ("backbone_config", "extra")} == \
        {k: v for k, v in ours.items() if k not in ("backbone_config", "extra")}
    assert {k: theirs["backbone_config"][k] for k in ours["backbone_config"]} == ours["backbone_config"]


def test_without_transformers_the_package_and_the_app_work(tmp_path):
    code = textwrap.dedent("""
        import sys
        from PIL import Image
        import vithybrid
        from vithybrid.pipeline import pipeline
        import explorer
        top = pipeline("shapes")("examples/shape_star.png")
        assert top[0]["label"] == "star", top
        app_top = explorer.Explorer("shapes", fallback=False).classify(Image.open("examples/shape_star.png"))
        assert max(app_top, key=app_top.get) == "star", app_top
        try:
            vithybrid.register_with_transformers()
        except ImportError as error:
            print(error)
        assert "transformers" not in sys.modules
    """)
    env = env_hiding(tmp_path, "transformers")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip().splitlines()[-1]
    assert "pip install -e '.[transformers]'" in message and "\n" not in message
    # The tests that need no transformers pass without it.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                            "tests/test_config.py", "tests/test_pipeline.py", "-k", "not cli"],
                           capture_output=True, text=True, cwd=ROOT, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:]


def test_finetune_example_runs_offline_and_its_output_loads_everywhere(transformers, tmp_path):
    """examples/finetune_trainer.py on a small shapes imagefolder it writes; the app and ours load the result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "examples/finetune_trainer.py", "--write-shapes", str(tmp_path / "data"),
         "--output-dir", str(tmp_path / "out"), "--epochs", "2", "--train-per-class", "6", "--val-per-class", "3"],
        capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert eval_results["eval_accuracy"] >= 0.8  # the shapes model knows these classes already
    state = json.loads((out / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_accuracy" in entry]
    assert state["best_metric"] == max(entry["eval_accuracy"] for entry in evaluations)
    # The model saved and evaluated last is the best checkpoint, restored: its loss is that checkpoint's.
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    best_loss = next(entry["eval_loss"] for entry in evaluations if entry["step"] == best_step)
    assert eval_results["eval_loss"] == pytest.approx(best_loss, rel=1e-4)
    import explorer

    shape = Image.open(ROOT / "examples" / "shape_star.png")
    app_top = explorer.Explorer(str(out), fallback=False).classify(shape)
    ours = our_pipeline(out)(shape)
    assert max(app_top, key=app_top.get) == ours[0]["label"] == "star"


@pytest.mark.network
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_the_seed_page_on_the_hub_checkpoint(transformers, attn):
    """The seed's documentation page, unchanged but for the registration: google's published logits."""
    from test_network import COCO_CATS, EXPECTED_LOGITS

    with urllib.request.urlopen(COCO_CATS, timeout=60) as response:
        image = Image.open(io.BytesIO(response.read()))
    name = "google/vit-hybrid-base-bit-384"
    processor = transformers.AutoImageProcessor.from_pretrained(name)
    model = transformers.AutoModelForImageClassification.from_pretrained(name, attn_implementation=attn)
    with torch.no_grad():
        logits = model(**processor(image, return_tensors="pt")).logits
    close(logits[0, :3], EXPECTED_LOGITS, 1e-4)
    assert model.config.id2label[int(logits.argmax(-1))] == "tabby, tabby cat"
    classify = transformers.pipeline("image-classification", model=name)
    assert classify(image)[0]["label"] == "tabby, tabby cat"
