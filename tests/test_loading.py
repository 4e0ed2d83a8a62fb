"""from_pretrained / save_pretrained: folders, the Hub cache, dtypes, and one clear message per failure."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY, assert_same_arithmetic, tiny_checkpoint, tiny_model
from vithybrid import CheckpointError, ViTHybridConfig, ViTHybridForImageClassification, ViTHybridModel

PIXELS = torch.randn(2, 3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(0))


def logits(model, pixels=PIXELS):
    with torch.no_grad():
        return model(pixels).logits


def test_round_trip_keeps_the_numbers_and_eval_mode(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = ViTHybridForImageClassification.from_pretrained(tmp_path)
    assert not loaded.training and loaded.attn_implementation == "sdpa"
    assert_same_arithmetic(logits(loaded), logits(model))
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["ViTHybridForImageClassification"]


def test_pytorch_model_bin_is_read_when_there_is_no_safetensors(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    assert_same_arithmetic(logits(ViTHybridForImageClassification.from_pretrained(tmp_path)), logits(model))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_and_inputs(tmp_path, dtype):
    tiny_model().save_pretrained(tmp_path)
    reference = logits(ViTHybridForImageClassification.from_pretrained(tmp_path))
    for attn in ("eager", "sdpa"):
        model = ViTHybridForImageClassification.from_pretrained(tmp_path, torch_dtype=dtype, attn_implementation=attn)
        assert model.dtype == dtype and all(p.dtype == dtype for p in model.parameters())
        out = logits(model)  # float32 pixels are cast to the weights' dtype
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), reference, atol=0.15, rtol=0.05)
    model.save_pretrained(tmp_path / "half")
    assert json.loads((tmp_path / "half" / "config.json").read_text())["torch_dtype"] == str(dtype)[6:]
    assert ViTHybridForImageClassification.from_pretrained(tmp_path / "half", torch_dtype="auto").dtype == dtype
    assert ViTHybridForImageClassification.from_pretrained(tmp_path / "half").dtype == torch.float32


def test_base_and_classification_checkpoints_load_into_each_other(tmp_path):
    classifier = tiny_model()
    classifier.save_pretrained(tmp_path / "cls")
    base = ViTHybridModel.from_pretrained(tmp_path / "cls")  # classifier dropped, pooler new
    with torch.no_grad():
        assert_same_arithmetic(base(PIXELS).last_hidden_state, classifier.vit(PIXELS).last_hidden_state)
        assert base(PIXELS).pooler_output.shape == (2, TINY["hidden_size"])
    base.save_pretrained(tmp_path / "base")
    again = ViTHybridForImageClassification.from_pretrained(tmp_path / "base")  # pooler dropped, classifier new
    with torch.no_grad():
        assert_same_arithmetic(again.vit(PIXELS).last_hidden_state, classifier.vit(PIXELS).last_hidden_state)
    assert again.classifier.weight.abs().sum() > 0  # initialized, not left empty


def make_hub_cache(cache_dir, repo_id, source):
    """The layout huggingface_hub's cache uses: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_ids_load_from_the_cache_offline(tmp_path):
    tiny_checkpoint(tmp_path / "src")
    make_hub_cache(tmp_path / "cache", "someone/tiny-hybrid", tmp_path / "src")
    model = ViTHybridForImageClassification.from_pretrained("someone/tiny-hybrid", cache_dir=tmp_path / "cache",
                                                            local_files_only=True)
    assert_same_arithmetic(logits(model), logits(ViTHybridForImageClassification.from_pretrained(tmp_path / "src")))


def test_offline_and_not_cached(tmp_path):
    with pytest.raises(CheckpointError, match="not in the local cache. Connect to the internet once"):
        ViTHybridForImageClassification.from_pretrained("google/vit-hybrid-base-bit-384", cache_dir=tmp_path,
                                                        local_files_only=True)


def test_hf_hub_offline_environment_is_honoured(tmp_path):
    code = ("from vithybrid import ViTHybridForImageClassification as M\n"
            "try:\n M.from_pretrained('google/vit-hybrid-base-bit-384')\n"
            "except Exception as e:\n print(type(e).__name__, e)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "CheckpointError" in result.stdout and "not in the local cache" in result.stdout


def test_unreachable_hub_fails_fast_or_uses_the_cache(tmp_path):
    """No HF_HUB_OFFLINE, but nothing answers at the Hub's address: no retries, the cache or a clear message.
    Retries are counted as connection attempts, not seconds (huggingface_hub's would add 5, with growing pauses)."""
    tiny_checkpoint(tmp_path / "src")
    make_hub_cache(tmp_path / "hub", "someone/tiny-hybrid", tmp_path / "src")
    code = ("import socket\nfrom vithybrid import ViTHybridForImageClassification as M\n"
            "attempts, connect = [], socket.socket.connect\n"
            "socket.socket.connect = lambda s, address: attempts.append(address) or connect(s, address)\n"
            "M.from_pretrained('someone/tiny-hybrid')\nprint('cached ok')\nattempts.clear()\n"
            "try:\n M.from_pretrained('google/vit-hybrid-base-bit-384')\n"
            "except Exception as e:\n print(type(e).__name__, len(attempts), e)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "cached ok", result.stdout + result.stderr
    name, attempts = lines[1].split()[:2]
    assert name == "CheckpointError" and "not in the local cache" in lines[1]
    assert attempts == "1", lines[1]  # the reachability probe's, then the cache at once


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="has no config.json"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


def test_folder_without_weights(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="has config.json but no model.safetensors or pytorch_model.bin"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


def test_missing_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a Hub model id"):
        ViTHybridForImageClassification.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


@pytest.mark.parametrize("name", ["../../etc/passwd", "owner/name/extra", "has spaces/model", ".hidden/model", "owner//name"])
def test_model_ids_are_checked_before_use(name):
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a Hub model id"):
        ViTHybridForImageClassification.from_pretrained(name)


def test_config_of_another_model_type(tmp_path):
    tiny_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "vit"}))
    with pytest.raises(CheckpointError, match=r"describes a 'vit' model, not a ViT-Hybrid \('vit-hybrid'\) one"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


def test_invalid_config_json(tmp_path):
    tiny_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 30, "num_attention_heads": 4}))
    with pytest.raises(CheckpointError, match="not a valid ViTHybridConfig: hidden_size"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_truncated_weights(tmp_path, weights):
    tiny_checkpoint(tmp_path)
    if weights == "pytorch_model.bin":
        torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / weights)
        (tmp_path / "model.safetensors").unlink()
    data = (tmp_path / weights).read_bytes()
    (tmp_path / weights).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_that_would_run_code_runs_nothing(tmp_path, monkeypatch):
    tiny_checkpoint(tmp_path)
    state = dict(load_file(tmp_path / "model.safetensors"), payload=Exploit())
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_shape_mismatch_names_the_weight(tmp_path):
    tiny_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(7)}
    config.pop("label2id")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"classifier.weight: checkpoint \(5, 32\), model \(7, 32\)"):
        ViTHybridForImageClassification.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    tiny_checkpoint(tmp_path)
    from safetensors.torch import save_file

    state = load_file(tmp_path / "model.safetensors")
    state.pop("vit.encoder.layer.1.output.dense.bias")
    state["vit.encoder.layer.2.output.dense.bias"] = torch.zeros(32)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        ViTHybridForImageClassification.from_pretrained(tmp_path)
    assert "missing 1 weights: vit.encoder.layer.1.output.dense.bias" in str(error.value)
    assert "unexpected 1 weights: vit.encoder.layer.2.output.dense.bias" in str(error.value)


def test_config_from_pretrained_reads_only_config(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    assert ViTHybridConfig.from_pretrained(tmp_path).num_labels == 5


def test_hub_probe_defers_to_a_proxy(monkeypatch):
    from huggingface_hub import constants

    from vithybrid.checkpoints.hub import hub_reachable

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not hub_reachable(timeout=1)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub_reachable(timeout=1)  # only the proxy knows: let the download try


def test_shipped_model_name_works_in_every_from_pretrained(tmp_path, monkeypatch):
    """"shapes" names the shipped model for the model, its config and its processor, from any folder."""
    from vithybrid import ViTHybridImageProcessor, resolve_model

    monkeypatch.chdir(tmp_path)  # no ./shapes here: the name must not be read as a path or a Hub id
    model = ViTHybridForImageClassification.from_pretrained("shapes")
    config = ViTHybridConfig.from_pretrained("shapes")
    processor = ViTHybridImageProcessor.from_pretrained("shapes")
    folder = resolve_model("shapes")
    assert config == ViTHybridConfig.from_pretrained(folder) == model.config
    assert processor.to_dict() == ViTHybridImageProcessor.from_pretrained(folder).to_dict()
    expected = load_file(folder / "model.safetensors")
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())


def test_saved_weights_are_readable_like_any_other_file(tmp_path):
    """A checkpoint folder is often shared or served: the weights get the umask's mode, not 0600."""
    previous = os.umask(0o022)  # a common umask, whatever this machine's is
    try:
        tiny_model().save_pretrained(tmp_path)
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o644


def test_transformers_model_attributes_that_its_common_tests_read():
    """transformers' ModelTesterMixin reads these of every model (test_model_common_attributes, test_tied_weights_keys,
    test_keep_in_fp32_modules, test_gradient_checkpointing_backward_compatibility)."""
    for model_class in (ViTHybridModel, ViTHybridForImageClassification):
        assert model_class._tied_weights_keys is None and model_class._keep_in_fp32_modules is None
        config = tiny_model().config
        config.gradient_checkpointing = True  # an old config's key: turns checkpointing on, and is dropped
        model = model_class(config)
        assert model.get_output_embeddings() is None and isinstance(model.get_input_embeddings(), torch.nn.Module)
        assert model.is_gradient_checkpointing and not hasattr(model.config, "gradient_checkpointing")
