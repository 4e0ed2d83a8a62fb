"""The published check of google/vit-hybrid-base-bit-384 (transformers' own integration test)."""

import io
import urllib.request

import pytest
import torch
from PIL import Image

from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor

COCO_CATS = "http://images.cocodataset.org/val2017/000000039769.jpg"
EXPECTED_LOGITS = torch.tensor([-1.9090, -0.4993, -0.2389])


@pytest.mark.network
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_google_checkpoint_matches_published_logits(attn):
    name = "google/vit-hybrid-base-bit-384"
    model = ViTHybridForImageClassification.from_pretrained(name, attn_implementation=attn)
    processor = ViTHybridImageProcessor.from_pretrained(name)
    with urllib.request.urlopen(COCO_CATS, timeout=60) as response:
        image = Image.open(io.BytesIO(response.read()))
    with torch.no_grad():
        logits = model(processor(image)["pixel_values"]).logits
    assert logits.shape == (1, 1000)
    torch.testing.assert_close(logits[0, :3], EXPECTED_LOGITS, atol=1e-4, rtol=0)
    assert model.config.id2label[int(logits.argmax(-1))] == "tabby, tabby cat"
