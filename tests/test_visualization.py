"""The visualization package: maps against plain reference loops and finite differences, the token grid
and crop geometry against the image processor, pictures pixel by pixel, and the per-image cache."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from helpers import tiny_model
from visualization import (CropGeometry, attention_rollout, backbone_figure, cell_to_token, class_relevance,
                           cls_map, discard_weakest, draw_token_grid, expand_to_pixels, head_stack, image_key,
                           layer_stack, normalize, overlay, overlay_on_original, raw_attention, shortest_edge_size,
                           small_multiples, to_grid, token_at, token_box, token_to_cell)
from visualization.figures import COLORBAR_PX, PANEL_PX
from visualization.render import DEFAULT_CMAP, with_colorbar
from vithybrid import ViTHybridImageProcessor

FUSIONS = ("mean", "max", "min")


def random_attentions(batch, layers, heads, grid_hw, seed=0, dtype=torch.float32):
    """Peaked attention probabilities (softmax of scaled noise) for a grid plus CLS."""
    generator = torch.Generator().manual_seed(seed)
    n = grid_hw[0] * grid_hw[1] + 1
    return [torch.softmax(3 * torch.randn(batch, heads, n, n, generator=generator, dtype=torch.float64), -1).to(dtype)
            for _ in range(layers)]


# --- plain references, one image and one layer at a time, in float64 ---

def reference_discard(fused, ratio):
    n = fused.shape[0]
    eligible = [(i, j) for i in range(n) for j in range(1, n) if i != j]
    count = int(ratio * len(eligible))
    out = fused.clone()
    if count:
        threshold = sorted(fused[i, j].item() for i, j in eligible)[count - 1]
        for i, j in eligible:
            if fused[i, j] <= threshold:
                out[i, j] = 0.0
    return out


def reference_rollout(attentions, head_fusion, discard_ratio=0.0, start_layer=0):
    results = []
    for b in range(attentions[0].shape[0]):
        n = attentions[0].shape[-1]
        rollout = torch.eye(n, dtype=torch.float64)
        for attention in attentions[start_layer:]:
            heads = attention[b].double()
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}[head_fusion]
            flow = reference_discard(fused, discard_ratio) + torch.eye(n, dtype=torch.float64)
            rollout = (flow / flow.sum(1, keepdim=True)) @ rollout
        results.append(rollout)
    return torch.stack(results)


def reference_relevance(attentions, gradients):
    results = []
    for b in range(attentions[0].shape[0]):
        relevance = torch.eye(attentions[0].shape[-1], dtype=torch.float64)
        for attention, gradient in zip(attentions, gradients):
            mixed = (gradient[b].double() * attention[b].double()).clamp(min=0).mean(0)
            relevance = relevance + mixed @ relevance
        results.append(relevance)
    return torch.stack(results)


# --- rollout ---

@pytest.mark.parametrize("head_fusion", FUSIONS)
@pytest.mark.parametrize("batch, layers, grid_hw, discard_ratio, start_layer", [
    (3, 1, (2, 3), 0.0, 0), (2, 4, (3, 5), 0.0, 0), (2, 4, (3, 5), 0.3, 0), (2, 3, (4, 2), 0.0, 1)])
def test_rollout_equals_reference_loop(head_fusion, batch, layers, grid_hw, discard_ratio, start_layer):
    attentions = random_attentions(batch, layers, 4, grid_hw)
    expected = reference_rollout(attentions, head_fusion, discard_ratio, start_layer)
    ours = attention_rollout(attentions, head_fusion, discard_ratio, start_layer)
    n = grid_hw[0] * grid_hw[1] + 1
    assert ours.shape == expected.shape == (batch, n, n)
    torch.testing.assert_close(ours.double(), expected, atol=1e-6, rtol=0)
    rows = attention_rollout(attentions, head_fusion, discard_ratio, start_layer, rows=[0, 2])
    torch.testing.assert_close(rows.double(), expected[:, [0, 2]], atol=1e-6, rtol=0)
    torch.testing.assert_close(cls_map(rows, grid_hw).double(), expected[:, 0, 1:].reshape(batch, *grid_hw),
                               atol=1e-6, rtol=0)


def test_cls_map_is_row_major_on_a_non_square_grid():
    grid_hw, target = (3, 5), (1, 3)
    n = grid_hw[0] * grid_hw[1] + 1
    attention = torch.full((2, 1, n, n), 1e-3)
    attention[:, :, 0, cell_to_token(*target, grid_hw)] = 1.0  # CLS looks at one cell
    attention = attention / attention.sum(-1, keepdim=True)
    heat = cls_map(attention_rollout([attention]), grid_hw)
    assert heat.shape == (2, *grid_hw)
    assert all(divmod(int(m.argmax()), grid_hw[1]) == target for m in heat)


@pytest.mark.parametrize("head_fusion", FUSIONS)
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 1.0])
def test_identity_attentions_give_the_identity(head_fusion, discard_ratio):
    eye = torch.eye(7).expand(2, 3, 7, 7)
    result = attention_rollout([eye, eye, eye], head_fusion, discard_ratio)
    torch.testing.assert_close(result, torch.eye(7).expand(2, 7, 7))


@pytest.mark.parametrize("head_fusion", FUSIONS)
@pytest.mark.parametrize("discard_ratio", [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
def test_rows_stay_normalized_with_any_discard_ratio(head_fusion, discard_ratio):
    result = attention_rollout(random_attentions(2, 3, 4, (3, 4), seed=1), head_fusion, discard_ratio)
    assert (result >= 0).all()
    torch.testing.assert_close(result.sum(-1), torch.ones(2, 13), atol=1e-5, rtol=0)


@pytest.mark.parametrize("discard_ratio", [0.2, 0.9, 1.0])
def test_discard_never_touches_the_cls_column_or_the_diagonal(discard_ratio):
    fused = random_attentions(2, 1, 1, (3, 3), seed=2)[0][:, 0]
    n = fused.shape[-1]
    fused[:, :, 0] = 1e-9  # the weakest links of all: a discard that ignored the rule would take them first
    fused[:, range(n), range(n)] = 1e-9
    kept = discard_weakest(fused, discard_ratio)
    assert torch.equal(kept[:, :, 0], fused[:, :, 0])
    assert torch.equal(kept.diagonal(dim1=1, dim2=2), fused.diagonal(dim1=1, dim2=2))
    zeroed = (kept == 0).flatten(1).sum(-1)
    assert zeroed.tolist() == [int(discard_ratio * (n - 1) ** 2)] * 2
    with pytest.raises(ValueError, match="discard_ratio"):
        discard_weakest(fused, 1.5)


# --- raw attention ---

def test_raw_attention_and_stacks_read_the_right_rows():
    grid_hw, batch, layers, heads = (3, 5), 2, 3, 4
    attentions = random_attentions(batch, layers, heads, grid_hw, seed=3)
    query = cell_to_token(2, 1, grid_hw)
    for layer in range(layers):
        for head in range(heads):
            expected = attentions[layer][:, head, query, 1:].reshape(batch, *grid_hw)
            assert torch.equal(raw_attention(attentions, grid_hw, layer, query, head), expected)
        for fusion, reduce in [("mean", lambda x: x.mean(1)), ("max", lambda x: x.amax(1)),
                               ("min", lambda x: x.amin(1))]:
            expected = reduce(attentions[layer][:, :, 0, 1:]).reshape(batch, *grid_hw)
            torch.testing.assert_close(raw_attention(attentions, grid_hw, layer, head_fusion=fusion), expected)
    stack = layer_stack(attentions, grid_hw, query=query, head=1)
    assert stack.shape == (batch, layers, *grid_hw)
    assert torch.equal(stack[:, 2], raw_attention(attentions, grid_hw, 2, query, 1))
    heads_of_layer = head_stack(attentions, grid_hw, layer=1)
    assert heads_of_layer.shape == (batch, heads, *grid_hw)
    assert torch.equal(heads_of_layer[:, 3], raw_attention(attentions, grid_hw, 1, 0, 3))
    with pytest.raises(ValueError, match="head_fusion"):
        raw_attention(attentions, grid_hw, head_fusion="median")


# --- class-specific relevance ---

def class_map(model, x, class_index, grid_hw, **kwargs):
    result = model.attention_with_gradients(x, class_index, **kwargs)
    return cls_map(class_relevance(result.attentions, result.gradients), grid_hw)


def test_class_relevance_equals_reference_loop():
    grid_hw = (3, 4)
    attentions = random_attentions(2, 3, 4, grid_hw, seed=4)
    generator = torch.Generator().manual_seed(5)
    gradients = [torch.randn(a.shape, generator=generator) for a in attentions]
    expected = reference_relevance(attentions, gradients)
    ours = class_relevance(attentions, gradients)
    torch.testing.assert_close(ours.double(), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(class_relevance(attentions, gradients, rows=[0]).double(), expected[:, :1],
                               atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="one gradient per attention layer"):
        class_relevance(attentions, gradients[:-1])


def test_class_map_equals_finite_differences_on_a_one_layer_model():
    """With one layer, map[j] = mean over heads of (dlogit/dA[0, j] * A[0, j])^+, and dlogit/dA * A is the
    derivative of the logit when A[0, j] alone is scaled by s at s = 1: perturb exactly that, on a
    non-square grid, two images, a class of their own each."""
    model = tiny_model(num_hidden_layers=1).double()
    heads = model.config.num_attention_heads
    x = torch.randn(2, 3, 60, 92, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    classes = torch.tensor([1, 3])
    grid_hw = (4, 6)
    ours = class_map(model, x, classes, grid_hw, interpolate_pos_encoding=True)

    n, eps = grid_hw[0] * grid_hw[1] + 1, 1e-6
    scales = torch.ones(2, heads, n - 1, heads, n, n, dtype=torch.float64)  # (sign, head, key) -> a mask
    for h in range(heads):
        for j in range(1, n):
            scales[0, h, j - 1, h, 0, j] += eps
            scales[1, h, j - 1, h, 0, j] -= eps
    masks = scales.reshape(-1, heads, n, n)
    self_attention = model.vit.encoder.layer[0].attention.attention
    for b in range(2):
        handle = self_attention.register_forward_pre_hook(lambda module, args: (args[0], masks, args[2]))
        try:
            with torch.no_grad():
                logits = model(x[b:b + 1].expand(len(masks), -1, -1, -1), interpolate_pos_encoding=True).logits
        finally:
            handle.remove()
        plus, minus = logits[:, classes[b]].reshape(2, heads, n - 1)
        numeric = ((plus - minus) / (2 * eps)).clamp(min=0).mean(0).reshape(grid_hw)
        assert numeric.abs().max() > 0
        torch.testing.assert_close(ours[b], numeric, rtol=1e-5, atol=1e-9)


def test_class_maps_differ_between_classes_the_model_separates():
    model = tiny_model()
    x = torch.randn(1, 3, 60, 60, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(x).logits[0]
    top, bottom = int(logits.argmax()), int(logits.argmin())
    assert logits[top] - logits[bottom] > 0.1  # the model does separate them
    maps = [class_map(model, x, c, model.config.grid_size)[0] for c in (top, bottom)]
    assert (maps[0] - maps[1]).abs().max() > 0.05 * maps[0].abs().max()


# --- token grid and crop geometry ---

@pytest.mark.parametrize("crop_hw, grid_hw", [((384, 384), (24, 24)), ((100, 70), (7, 3)), ((61, 97), (4, 6)),
                                              ((20, 13), (3, 3))])
def test_token_boxes_tile_the_crop_exactly(crop_hw, grid_hw):
    owner = np.zeros(crop_hw, dtype=np.int64)
    for token in range(1, grid_hw[0] * grid_hw[1] + 1):
        assert cell_to_token(*token_to_cell(token, grid_hw), grid_hw) == token
        left, top, right, bottom = token_box(token, crop_hw, grid_hw)
        row, col = token_to_cell(token, grid_hw)
        exact = np.array([col, row, col + 1, row + 1]) * np.array(crop_hw[::-1] * 2) / np.array(grid_hw[::-1] * 2)
        assert np.abs(np.array([left, top, right, bottom]) - exact).max() <= 0.5  # the nearest pixel edges
        assert (owner[top:bottom, left:right] == 0).all()  # no overlap
        owner[top:bottom, left:right] = token
    assert (owner > 0).all()  # no gap
    ids = np.arange(1, grid_hw[0] * grid_hw[1] + 1).reshape(grid_hw)
    assert np.array_equal(expand_to_pixels(ids, crop_hw), owner)  # overlays fill exactly the token boxes
    ys, xs = np.meshgrid(np.arange(crop_hw[0]), np.arange(crop_hw[1]), indexing="ij")
    for y, x in zip(ys.flat[::7], xs.flat[::7]):  # a pixel's corner (a click) and its center
        assert token_at(x, y, crop_hw, grid_hw) == token_at(x + 0.5, y + 0.5, crop_hw, grid_hw) == owner[y, x]
    with pytest.raises(ValueError, match="0 is CLS"):
        token_to_cell(0, grid_hw)


def test_to_grid_drops_cls_and_reads_row_major():
    values = torch.arange(2 * 13).reshape(2, 13)
    assert torch.equal(to_grid(values, (3, 4))[1, 2], torch.tensor([22, 23, 24, 25]))
    with pytest.raises(ValueError, match="do not fit"):
        to_grid(values, (4, 4))


@pytest.mark.parametrize("image_hw", [(480, 640), (640, 480), (333, 500), (501, 333)])
def test_shortest_edge_size_matches_the_processor(image_hw):
    processor = ViTHybridImageProcessor(size={"shortest_edge": 384})
    assert shortest_edge_size(image_hw, 384) == processor.resized_size(image_hw[1], image_hw[0])[::-1]


@pytest.mark.parametrize("image_hw, crop_hw", [((90, 151), (64, 64)), ((151, 90), (64, 47)), ((61, 77), (80, 57))])
def test_crop_is_what_the_model_saw(image_hw, crop_hw):
    photo = Image.fromarray(np.random.default_rng(8).integers(0, 256, (*image_hw, 3), dtype=np.uint8))
    processor = ViTHybridImageProcessor(size={"shortest_edge": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                        crop_size={"height": crop_hw[0], "width": crop_hw[1]})
    seen = ((processor(photo)["pixel_values"][0] * 0.5 + 0.5) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(CropGeometry.shortest_edge(image_hw, 64, crop_hw).crop(photo)), seen)


# the last two crop more than the resized photo holds: padded, by an even and by an odd number of rows
@pytest.mark.parametrize("image_hw, crop_hw", [((90, 151), (64, 64)), ((151, 90), (64, 47)), ((61, 77), (80, 57)),
                                              ((61, 77), (67, 57))])
def test_crop_is_what_a_timm_style_processor_saw(image_hw, crop_hw):
    """Rounded crop offsets (torchvision's CenterCrop) and another resampling filter, as timm's checkpoints use."""
    photo = Image.fromarray(np.random.default_rng(9).integers(0, 256, (*image_hw, 3), dtype=np.uint8))
    processor = ViTHybridImageProcessor(size={"shortest_edge": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                        crop_size={"height": crop_hw[0], "width": crop_hw[1]},
                                        crop_offset_rounding="round", resample=Image.BILINEAR)
    seen = ((processor(photo)["pixel_values"][0] * 0.5 + 0.5) * 255).round().byte().permute(1, 2, 0).numpy()
    resized = shortest_edge_size(image_hw, 64)
    left, top, _, _ = processor.crop_box(resized[1], resized[0])
    geometry = CropGeometry(image_hw, resized, crop_hw, (left, top), Image.BILINEAR)
    assert np.array_equal(np.asarray(geometry.crop(photo)), seen)
    floored_offset = ((resized[1] - crop_hw[1]) // 2, (resized[0] - crop_hw[0]) // 2)
    floored = CropGeometry(image_hw, resized, crop_hw, floored_offset, Image.BILINEAR)
    assert floored.offset != geometry.offset  # these sizes are ones where the two roundings differ
    assert not np.array_equal(np.asarray(floored.crop(photo)), seen)


@pytest.mark.parametrize("image_hw, marker", [((480, 640), (400, 150, 470, 260)), ((640, 480), (60, 300, 150, 345))])
def test_crop_boxes_map_back_into_the_original_photo(image_hw, marker):
    """A white rectangle in a landscape or portrait photo is found in the crop, and its crop box and the
    box of the token at its center map back onto it."""
    photo = np.zeros((*image_hw, 3), dtype=np.uint8)
    left, top, right, bottom = marker
    photo[top:bottom, left:right] = 255
    geometry = CropGeometry.shortest_edge(image_hw, 384, (384, 384))
    seen = np.asarray(geometry.crop(Image.fromarray(photo)))[..., 0] > 127
    rows, cols = np.nonzero(seen)
    found = geometry.to_original((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    assert np.allclose(found, marker, atol=1.5 * max(geometry.scale))
    grid_hw = (24, 24)
    token = token_at((cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2, (384, 384), grid_hw)
    box = geometry.to_original(token_box(token, (384, 384), grid_hw))
    center = ((left + right) / 2, (top + bottom) / 2)
    assert box[0] <= center[0] <= box[2] and box[1] <= center[1] <= box[3]


def test_crop_geometry_of_a_non_uniform_resize():
    """A processor with size {"height", "width"} stretches the photo: x and y scale apart."""
    processor = ViTHybridImageProcessor(size={"height": 384, "width": 384}, crop_size={"height": 320, "width": 384})
    left, top, _, _ = processor.crop_box(384, 384)
    geometry = CropGeometry((480, 640), (384, 384), (320, 384), (left, top))
    assert geometry.offset == (0, 32) and geometry.scale == (640 / 384, 480 / 384)
    assert np.allclose(geometry.to_original((0, 0, 384, 320)), (0, 40, 640, 440))
    assert np.allclose(geometry.to_crop(320, 120), (192, 64))
    assert np.allclose(geometry.to_crop(*geometry.to_original((10, 20, 30, 40))[:2]), (10, 20))


# --- pictures ---

def blocky_colors(heatmap, size_hw, cmap):
    """The expected alpha=1 overlay, token box by token box."""
    colors = colormaps[cmap](normalize(heatmap), bytes=True)[..., :3]
    out = np.zeros((*size_hw, 3), dtype=np.uint8)
    for token in range(1, heatmap.shape[0] * heatmap.shape[1] + 1):
        left, top, right, bottom = token_box(token, size_hw, heatmap.shape)
        out[top:bottom, left:right] = colors[token_to_cell(token, heatmap.shape)]
    return out


@pytest.mark.parametrize("cmap", ["jet", "viridis"])
def test_overlay_keeps_size_and_honors_colormap_and_opacity(cmap):
    image = Image.fromarray(np.random.default_rng(9).integers(0, 256, (70, 50, 3), dtype=np.uint8))
    heatmap = torch.rand(4, 6, generator=torch.Generator().manual_seed(10))
    assert overlay(image, heatmap, cmap).size == image.size
    assert np.array_equal(np.asarray(overlay(image, heatmap, cmap, alpha=0.0)), np.asarray(image))
    expected = blocky_colors(heatmap, (70, 50), cmap)
    assert np.array_equal(np.asarray(overlay(image, heatmap, cmap, alpha=1.0)), expected)
    half = np.asarray(overlay(np.asarray(image), heatmap, cmap, alpha=0.5)).astype(int)
    assert np.abs(half - (np.asarray(image).astype(int) + expected) / 2).max() <= 1
    other = "viridis" if cmap == "jet" else "jet"
    assert not np.array_equal(np.asarray(overlay(image, heatmap, other, alpha=1.0)), expected)


def test_smooth_overlay_peaks_in_the_peak_token():
    heatmap = torch.zeros(4, 6)
    heatmap[2, 4] = 1.0
    smooth = np.asarray(overlay(Image.new("RGB", (90, 60)), heatmap, "gray", alpha=1.0, smooth=True))[..., 0]
    assert smooth.shape == (60, 90)
    y, x = np.unravel_index(smooth.argmax(), smooth.shape)
    assert token_at(x, y, (60, 90), (4, 6)) == cell_to_token(2, 4, (4, 6))


@pytest.mark.parametrize("image_hw", [(120, 200), (200, 120)])
def test_overlay_on_original_paints_the_crop_and_outlines_it(image_hw):
    photo = Image.fromarray(np.random.default_rng(11).integers(0, 256, (*image_hw, 3), dtype=np.uint8))
    geometry = CropGeometry.shortest_edge(image_hw, 96, (96, 80))
    heatmap = torch.rand(3, 4, generator=torch.Generator().manual_seed(12))
    result = np.asarray(overlay_on_original(photo, heatmap, geometry, "jet", alpha=1.0, outline=(255, 0, 255)))
    assert result.shape == (*image_hw, 3)
    left, top, right, bottom = (round(v) for v in geometry.to_original((0, 0, 80, 96)))
    outside = np.ones(image_hw, dtype=bool)
    outside[top:bottom, left:right] = False
    assert outside.any() and np.array_equal(result[outside], np.asarray(photo)[outside])
    assert tuple(result[(top + bottom) // 2, left]) == (255, 0, 255) == tuple(result[bottom - 1, (left + right) // 2])
    unchanged = np.asarray(overlay_on_original(photo, heatmap, geometry, alpha=0.0, width=1))
    assert np.array_equal(unchanged[top + 1:bottom - 1, left + 1:right - 1],
                          np.asarray(photo)[top + 1:bottom - 1, left + 1:right - 1])
    colors = colormaps["jet"](normalize(heatmap), bytes=True)[..., :3]
    for token in range(1, 13):
        box = geometry.to_original(token_box(token, (96, 80), (3, 4)))
        x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert tuple(result[y, x]) == tuple(colors[token_to_cell(token, (3, 4))])


def test_token_grid_draws_boundaries_and_the_highlight():
    image = Image.new("RGB", (90, 60), (10, 20, 30))
    plain = np.asarray(draw_token_grid(image, (4, 6), color=(255, 255, 255)))
    assert plain.shape == (60, 90, 3)
    assert (plain[:, 15] != (10, 20, 30)).all() and (plain[15, :] != (10, 20, 30)).all()  # edges at x=15, y=15
    assert (plain[5, 5] == (10, 20, 30)).all()  # inside a cell
    assert not (plain == (255, 0, 0)).all(-1).any()
    marked = np.asarray(draw_token_grid(image, (4, 6), highlight=cell_to_token(1, 2, (4, 6))))
    left, top, right, bottom = token_box(cell_to_token(1, 2, (4, 6)), (60, 90), (4, 6))
    assert (marked[top, left:right] == (255, 0, 0)).all() and (marked[top:bottom, right - 1] == (255, 0, 0)).all()
    assert (marked[top + 7, left + 7] != (255, 0, 0)).any() and (marked[top + 7, right] != (255, 0, 0)).any()


@pytest.mark.parametrize("grid_hw, count", [((24, 24), 12), ((4, 6), 5)])
def test_small_multiples_draw_every_cell_as_a_block_with_a_colorbar(grid_hw, count):
    maps = torch.zeros(count, *grid_hw)
    maps[count - 1, 1, 2] = 1.0  # one hot cell in the last panel and a warm one in the first: one shared scale
    maps[0, 0, 0] = 0.5
    figure = np.asarray(small_multiples(maps, [f"layer {i + 1}" for i in range(count)], cmap="viridis", title="t"))
    top, middle, bottom = (tuple(colormaps["viridis"](v, bytes=True)[:3]) for v in (1.0, 0.5, 0.0))
    cell = PANEL_PX // max(grid_hw)
    for color in (top, middle):  # each cell drawn pixel for pixel
        assert (figure[:, :-COLORBAR_PX] == color).all(-1).sum() == cell * cell
    assert len(np.unique(figure[:, -COLORBAR_PX:].reshape(-1, 3), axis=0)) > 100  # the colorbar's gradient
    assert (figure == bottom).all(-1).sum() >= (count * grid_hw[0] * grid_hw[1] - 2) * cell * cell
    with pytest.raises(ValueError, match="titles"):
        small_multiples(maps, ["one"])


def test_backbone_figure_shows_every_stage_of_a_real_backbone():
    model = tiny_model()
    x = torch.randn(1, 3, 60, 92, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        stages = model.vit.embeddings.patch_embeddings.backbone(x, keep_stages=True)
        tokens, grid_hw = model.vit.embeddings.patch_embeddings(x)
    assert len(stages) == 4 and grid_hw == (4, 6)
    crop = Image.fromarray(((x[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).byte().numpy())
    figure = backbone_figure(crop, [s[0] for s in stages], tokens[0], grid_hw)
    assert figure.mode == "RGB" and figure.width > 3 * figure.height  # one row of six panels
    with pytest.raises(ValueError, match="one name per"):
        backbone_figure(crop, [s[0] for s in stages], tokens[0], grid_hw, names=["stem"])


# --- cache ---

def test_image_key_follows_content():
    pixels = np.random.default_rng(14).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    changed = pixels.copy()
    changed[3, 4, 1] ^= 1
    assert image_key(Image.fromarray(pixels)) == image_key(Image.fromarray(pixels.copy())) == image_key(pixels)
    assert image_key(pixels) != image_key(changed)
    assert image_key(pixels) != image_key(pixels.reshape(9, 8, 3))


def test_the_package_needs_neither_vithybrid_nor_gradio_nor_pyplot():
    code = ("import sys, visualization; "
            "print(sorted(m for m in ('vithybrid', 'gradio', 'matplotlib.pyplot') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root).stdout.strip() == "[]"


def test_the_default_colormap_is_perceptually_uniform():
    """Every picture defaults to viridis (issue 27): jet invents edges and bands and fails colour-blind readers."""
    image = Image.new("RGB", (40, 30))
    heatmap = torch.rand(3, 4, generator=torch.Generator().manual_seed(1))
    assert DEFAULT_CMAP == "viridis"
    assert np.array_equal(np.asarray(overlay(image, heatmap, alpha=1.0)),
                          np.asarray(overlay(image, heatmap, "viridis", alpha=1.0)))
    assert np.array_equal(np.asarray(with_colorbar(image)), np.asarray(with_colorbar(image, "viridis")))
