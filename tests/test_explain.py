"""The explanation lab: the ViT paper's Figure 7 functions against loop-by-loop computations, backbone
Grad-CAM against pytorch-grad-cam's own result and every CAM method offered against its formula, rank
correlation against scipy, and deletion/insertion curves (monotone for a model that counts pixels; on the
shipped shapes model, rollout and the class map beat a random order)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import visualization as viz
from conftest import missing
from vithybrid import ViTHybridForImageClassification, ViTHybridImageProcessor, resolve_model
from vithybrid.explain import CLASS_MAP, GRAD_CAM, LAST_LAYER, ROLLOUT
from vithybrid.training.shapes import sample

FAITHFULNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "faithfulness.py"


def grad_cam():
    try:
        import pytorch_grad_cam
    except ImportError:
        missing("pytorch-grad-cam (pip install grad-cam) is not installed")
    return pytorch_grad_cam


@pytest.fixture(scope="module")
def shapes():
    folder = resolve_model("shapes")
    model = ViTHybridForImageClassification.from_pretrained(folder).requires_grad_(False)
    processor = ViTHybridImageProcessor.from_pretrained(folder)
    pixels = torch.cat([processor(sample(999, i, model.config.image_size).image)["pixel_values"] for i in range(2)])
    return model, pixels


def random_attentions(batch, layers, heads, tokens, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, tokens, generator=generator, dtype=torch.float64).mul(3).softmax(-1)
            for _ in range(layers)]


# --- Figure 7 ---------------------------------------------------------------------------------------

def test_position_embedding_similarity_matches_loops_on_a_non_square_grid():
    rows, cols, hidden = 3, 5, 7
    embeddings = torch.randn(1, 1 + rows * cols, hidden, dtype=torch.float64)
    similarity = viz.position_embedding_similarity(embeddings, (rows, cols))
    assert similarity.shape == (rows, cols, rows, cols)
    for r in range(rows):
        for c in range(cols):
            a = embeddings[0, 1 + r * cols + c]
            for r2 in range(rows):
                for c2 in range(cols):
                    b = embeddings[0, 1 + r2 * cols + c2]
                    expected = float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))
                    assert abs(similarity[r, c, r2, c2].item() - expected) < 1e-6
    with pytest.raises(ValueError, match="position embeddings"):
        viz.position_embedding_similarity(embeddings, (cols, cols))


def loop_mean_attention_distance(attentions, grid_hw, image_hw):
    (rows, cols), (height, width) = grid_hw, image_hw
    centre = [((r + 0.5) * height / rows, (c + 0.5) * width / cols) for r in range(rows) for c in range(cols)]
    batch, heads = attentions[0].shape[:2]
    out = torch.zeros(batch, len(attentions), heads, dtype=torch.float64)
    for b in range(batch):
        for layer, attention in enumerate(attentions):
            for h in range(heads):
                total = 0.0
                for q in range(rows * cols):
                    weights = [attention[b, h, 1 + q, 1 + k].item() for k in range(rows * cols)]
                    total += sum(w * math.dist(centre[q], centre[k]) for k, w in enumerate(weights)) / sum(weights)
                out[b, layer, h] = total / (rows * cols)
    return out


def test_mean_attention_distance_matches_loops_batched_on_a_non_square_grid():
    grid, image = (3, 4), (48, 80)  # cells of 16x20 pixels
    attentions = random_attentions(batch=2, layers=3, heads=2, tokens=13)
    distances = viz.mean_attention_distance(attentions, grid, image)
    assert distances.shape == (2, 3, 2)
    torch.testing.assert_close(distances, loop_mean_attention_distance(attentions, grid, image), atol=1e-6, rtol=0)


def test_mean_attention_distance_known_cases():
    # Uniform attention (CLS included, then left out): a 2x2 grid in 20x20 pixels has cell centres 10 apart,
    # so every query's mean distance is (0 + 10 + 10 + 10 sqrt 2) / 4.
    uniform = [torch.full((1, 3, 5, 5), 1 / 5)]
    expected = (20 + 10 * math.sqrt(2)) / 4
    torch.testing.assert_close(viz.mean_attention_distance(uniform, (2, 2), (20, 20)),
                               torch.full((1, 1, 3), expected), atol=1e-6, rtol=0)
    # 1x2 grid in a 10x20 image: centres 10 pixels apart, half the weight elsewhere -> 5.
    assert viz.mean_attention_distance([torch.full((1, 1, 3, 3), 1 / 3)], (1, 2), (10, 20)).item() == pytest.approx(5)
    # Attention to self only (and to CLS, which is left out) is at distance 0.
    self_only = 0.5 * torch.eye(7).expand(2, 4, 7, 7).clone()
    self_only[..., 0] += 0.5
    assert viz.mean_attention_distance([self_only, self_only], (2, 3), (40, 60)).abs().max().item() < 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mean_attention_distance_runs_where_the_attention_is():
    """The app computes a photo's distances from its pass's attentions, on the model's device."""
    attentions = random_attentions(batch=1, layers=2, heads=2, tokens=13)
    on_gpu = viz.mean_attention_distance([a.cuda() for a in attentions], (3, 4), (48, 80))
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), viz.mean_attention_distance(attentions, (3, 4), (48, 80)),
                               atol=1e-5, rtol=1e-5)


def test_figure7_pictures(shapes):
    model, pixels = shapes
    grid, size = model.config.grid_size, model.config.image_size
    similarity = viz.position_embedding_similarity(model.vit.embeddings.position_embeddings, grid)
    torch.testing.assert_close(similarity.reshape(grid[0] * grid[1], -1).diagonal(),
                               torch.ones(grid[0] * grid[1]), atol=1e-6, rtol=0)
    picture = viz.position_similarity_figure(similarity)
    assert picture.mode == "RGB" and min(picture.size) > 200
    attentions = model(pixels, output_attentions=True).attentions
    distances = viz.mean_attention_distance(attentions, grid, (size, size))
    assert distances.shape == (2, model.config.num_hidden_layers, model.config.num_attention_heads)
    assert viz.attention_distance_figure(distances[0], (size, size)).mode == "RGB"
    with pytest.raises(ValueError, match="layers, heads"):
        viz.attention_distance_figure(distances, (size, size))

    weight = model.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution.weight
    grid_image = viz.filter_grid(weight, scale=3, gap=1, columns=8)
    out, _, k, _ = weight.shape
    assert grid_image.size == (8 * (3 * k + 1) - 1, math.ceil(out / 8) * (3 * k + 1) - 1)
    first = weight[0].detach()
    expected = ((first - first.min()) / (first.max() - first.min()))[:, 0, 0] * 255  # filter 0, weight (0, 0)
    assert np.abs(np.asarray(grid_image)[1, 1].astype(float) - expected.numpy()).max() <= 0.5 + 1e-3


# --- the CNN half: Grad-CAM through pytorch-grad-cam --------------------------------------------------

def stages(model):
    bit = model.vit.embeddings.patch_embeddings.backbone.bit
    return [bit.embedder, *bit.encoder.stages]


def test_grad_cam_equals_pytorch_grad_cams_own_result(shapes):
    library = grad_cam()
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, pixels = shapes
    layer = stages(model)[-1]
    ours = viz.backbone_cam(model, layer, pixels, class_index=[2, 0])
    assert ours.shape == (2, *model.config.grid_size)  # the stage's grid, which is the token grid
    with library.GradCAM(viz.cam.LogitsOf(model), [layer]) as cam, torch.enable_grad():
        theirs = cam(pixels.clone().requires_grad_(), [ClassifierOutputTarget(2), ClassifierOutputTarget(0)])
    # Theirs is our grid map resized to the input with cv2 and rescaled to [0, 1]: do the same to ours.
    size = model.config.image_size
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(ours.numpy(), (size, size))), theirs, atol=1e-5)


def activations_and_gradients(model, layer, pixels, class_index):
    """The output a (B, C, h, w) of `layer` and the gradient g of each image's class score with respect to it (one
    class for all images, or one per image), in float64: the float32 values pytorch-grad-cam sees, exactly."""
    recorded = []
    hook = layer.register_forward_hook(lambda m, a, out: recorded.append(out.detach().requires_grad_()) or recorded[-1])
    try:
        with torch.enable_grad():
            logits = model(pixels).logits
            score = logits.gather(1, torch.as_tensor(class_index).expand(len(pixels))[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, recorded[0])
    finally:
        hook.remove()
    return recorded[0].detach().double(), gradient.double()


def grad_cam_plus_plus_weights(a, g):
    """Chattopadhyay et al. (WACV 2018), eq. 19: the class score's higher derivatives taken as powers of g. The 1e-6
    is pytorch-grad-cam's guard against 0/0; g**2 is of its order on the shapes model, so it counts."""
    alpha = g ** 2 / (2 * g ** 2 + a.sum((2, 3), keepdim=True) * g ** 3 + 1e-6)
    return (alpha * g.clamp_min(0)).sum((2, 3), keepdim=True)


# Each method's map before its ReLU is the sum over channels of these terms, written from the papers, from a layer's
# activations a and the gradients g of the class score (Eigen-CAM, which takes no gradient, has a test of its own).
CAM_TERMS = {
    "Grad-CAM": lambda a, g: g.mean((2, 3), keepdim=True) * a,  # Selvaraju et al. 2017
    "Grad-CAM++": lambda a, g: grad_cam_plus_plus_weights(a, g) * a,
    # Fu et al. 2020; 1e-7: pytorch-grad-cam's guard for a channel that is 0 everywhere
    "XGrad-CAM": lambda a, g: (g * a / (a.sum((2, 3), keepdim=True) + 1e-7)).sum((2, 3), keepdim=True) * a,
    "HiResCAM": lambda a, g: g * a,  # Draelos & Carin 2020
    "LayerCAM": lambda a, g: g.clamp_min(0) * a,  # Jiang et al. 2021
}


def scaled(cam):
    """(B, h, w) maps clipped at 0 and scaled as pytorch-grad-cam scales them, and the divisor: an all-zero map stays 0."""
    cam = cam.clamp_min(0)
    cam = cam - cam.amin((1, 2), keepdim=True)
    peak = 1e-7 + cam.amax((1, 2), keepdim=True)
    return cam / peak, peak


def float32_tolerance(magnitude, peak, terms):
    """How far a float32 evaluation of a map can be from its exact value, once scaled: each cell, the minimum and
    the peak are sums of at most `terms` rounded terms, so each is off by at most terms * 2**-24 times the same
    formula evaluated on absolute values, `magnitude` (Higham, Accuracy and Stability of Numerical Algorithms,
    ch. 3-4); subtracting the minimum and dividing by the peak add those of the minimum and the peak."""
    return terms * 2 ** -24 * (magnitude + 2 * magnitude.amax((1, 2), keepdim=True)) / peak


def test_each_gradient_cam_is_its_formula_on_the_stage_and_classes_asked_for(shapes):
    grad_cam()
    model, pixels = shapes
    assert set(CAM_TERMS) | {"Eigen-CAM"} == set(viz.CAM_METHODS)  # every method offered is tested
    for layer in stages(model):
        for class_index in (3, [4, 0]):
            a, g = activations_and_gradients(model, layer, pixels, class_index)
            for method, terms in CAM_TERMS.items():
                expected, peak = scaled(terms(a, g).sum(1))
                ours = viz.backbone_cam(model, layer, pixels, class_index, method)
                assert ours.shape == expected.shape and ours.dtype == torch.float32, method
                # sums over the cells (the weights) and then over the channels
                tolerance = float32_tolerance(terms(a.abs(), g.abs()).sum(1), peak, a.shape[1] + a[0, 0].numel())
                error = (ours.double() - expected).abs()
                assert (error <= tolerance).all(), (method, error.max().item(), tolerance.min().item())


def test_eigen_cam_is_the_first_principal_component_turned_to_its_larger_end(shapes):
    """Eigen-CAM (Muhammad & Yeasin 2020) projects each cell's activations, centred over the cells, on their first
    principal direction, by eigenvectors of their covariance here and by an SVD in pytorch-grad-cam. The direction's
    sign is arbitrary; the map takes the one whose largest magnitude is positive (Seg-Eigen-CAM's correction),
    unless the two ends are too close to tell apart in float32."""
    grad_cam()
    model, pixels = shapes
    for layer in stages(model):
        a, _ = activations_and_gradients(model, layer, pixels, 0)
        x = a.flatten(2).transpose(1, 2)  # (B, cells, channels)
        x = x - x.mean(1, keepdim=True)
        eigenvalues, eigenvectors = torch.linalg.eigh(x.transpose(1, 2) @ x)  # ascending
        projection = (x @ eigenvectors[..., -1:]).reshape(a.shape[:1] + a.shape[2:])
        ours = viz.backbone_cam(model, layer, pixels, method="Eigen-CAM").double()
        # A float32 SVD finds the direction to within ~ n 2**-24 sigma1 / (sigma1 - sigma2) (Wedin's theorem; n the
        # matrix's sizes added): each cell's projection moves by that times the norm of the cell's activations, plus
        # the projection's own rounding, n 2**-24 times that norm.
        sigma = eigenvalues.clamp_min(0).sqrt()
        gap = (sigma[:, -1] / (sigma[:, -1] - sigma[:, -2]))[:, None, None]
        norms = x.norm(dim=2).reshape(projection.shape)
        for image in range(len(pixels)):
            matches = []
            for sign in (1, -1):
                expected, peak = scaled(sign * projection[image:image + 1])
                tolerance = float32_tolerance((1 + gap[image]) * norms[image:image + 1], peak, sum(x.shape[1:]))
                matches.append(((ours[image] - expected[0]).abs() <= tolerance[0]).all().item())
            # each end is known to float32_tolerance's bound before scaling: 3 terms 2**-24 (1 + gap) |x| at most
            top, bottom = projection[image].max(), -projection[image].min()
            uncertainty = 3 * sum(x.shape[1:]) * 2 ** -24 * ((1 + gap[image]) * norms[image]).max()
            if abs(top - bottom) > 2 * uncertainty:
                assert matches[0 if top > bottom else 1], (layer, image)
            else:
                assert any(matches), (layer, image)


def test_every_cam_method_gives_a_map_on_the_grid(shapes):
    grad_cam()
    model, pixels = shapes
    for method in viz.CAM_METHODS:
        maps = viz.backbone_cam(model, stages(model)[-1], pixels[:1], method=method)
        assert maps.shape == (1, *model.config.grid_size) and 0 <= maps.min() and maps.max() <= 1, method
    with pytest.raises(ValueError, match="unknown CAM method"):
        viz.backbone_cam(model, stages(model)[-1], pixels, method="Score-CAM")
    # an earlier stage's map, pooled onto the token grid, keeps the mean of its cells
    early = viz.backbone_cam(model, stages(model)[1], pixels)
    pooled = viz.pool_to_grid(early, model.config.grid_size)
    assert pooled.shape == (2, *model.config.grid_size)
    torch.testing.assert_close(pooled.mean((1, 2)), early.mean((1, 2)), atol=1e-6, rtol=0)


def test_backbone_cam_leaves_each_module_in_the_mode_it_found(shapes):
    grad_cam()
    model, pixels = shapes
    expected = viz.backbone_cam(model, stages(model)[-1], pixels, [1, 3])  # from the fixture's eval mode
    try:
        # pytorch-grad-cam calls model.eval(); a caller mid-training, or one that keeps a part in another mode,
        # gets its modes back (and the map is the eval-mode map either way)
        model.train()
        model.vit.encoder.layer[0].eval()
        modes = {name: module.training for name, module in model.named_modules()}
        torch.testing.assert_close(viz.backbone_cam(model, stages(model)[-1], pixels, [1, 3]), expected,
                                   atol=0, rtol=0)
        assert {name: module.training for name, module in model.named_modules()} == modes
        with pytest.raises(ValueError, match="class indices"):  # and when it fails
            viz.backbone_cam(model, stages(model)[-1], pixels, [1, 2, 3])
        assert {name: module.training for name, module in model.named_modules()} == modes
    finally:
        model.eval()


def test_a_missing_grad_cam_names_the_extra(shapes, monkeypatch):
    model, pixels = shapes
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install -e '\.\[explain\]'.*grad-cam>=1\.5\.7"):
        viz.backbone_cam(model, stages(model)[-1], pixels)


def test_rank_correlation_is_spearmans():
    try:
        from scipy import stats as scipy_stats  # installed with grad-cam
    except ImportError:
        missing("scipy (installed with grad-cam) is not installed")
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        a = torch.randint(0, 4, (6, 7), generator=generator).float()  # many ties, as clipped CAMs have
        b = torch.randn(6, 7, generator=generator)
        expected = scipy_stats.spearmanr(a.flatten(), b.flatten())[0]
        assert viz.rank_correlation(a, b) == pytest.approx(expected, abs=1e-12)
    x = torch.randn(4, 5)
    assert viz.rank_correlation(x, x.exp()) == pytest.approx(1)
    assert viz.rank_correlation(x, -x) == pytest.approx(-1)
    assert math.isnan(viz.rank_correlation(x, torch.zeros(4, 5)))
    assert [viz.agreement_level(r) for r in (0.9, 0.5, 0.2, 0.0, -0.5, float("nan"))] == \
        ["strong", "moderate", "weak", "none", "opposite", "undefined"]
    assert set(viz.AGREEMENT_SENTENCES) == {"strong", "moderate", "weak", "none", "opposite", "undefined"}


# --- which map to trust: deletion and insertion -------------------------------------------------------

class PixelCounter(torch.nn.Module):
    """Two classes; the logit of class 0 grows with the number of pixel values far from 0 (|x| > 0.5)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, pixels):
        self.calls += 1
        count = (pixels.abs() > 0.5).flatten(1).sum(1).float()
        return torch.stack([count / pixels[0].numel(), torch.zeros_like(count)], dim=1)


def test_gaussian_blur_is_scipys_with_mirrored_borders():
    try:
        from scipy import ndimage  # installed with grad-cam
    except ImportError:
        missing("scipy (installed with grad-cam) is not installed")
    generator = torch.Generator().manual_seed(4)
    # square and not, odd and even sides, kernels shorter and (small sides) longer than the side they run along
    for height, width in ((16, 16), (15, 15), (8, 21), (21, 6), (5, 12), (1, 7)):
        for dtype in (torch.float64, torch.float32):
            pixels = torch.randn(2, 3, height, width, generator=generator, dtype=dtype)
            for sigma in (0.5, 1.0, 2.5, 4.0):
                ours = viz.faithfulness.gaussian_blur(pixels, sigma)
                expected = ndimage.gaussian_filter(pixels.double().numpy(), (0, 0, sigma, sigma), mode="mirror",
                                                   truncate=3.0)
                # two passes, each a sum of 2r + 1 weights (which add up to 1) times values: each off by at most
                # (2r + 1) eps max |x|
                taps = 2 * int(3 * sigma + 0.5) + 1
                tolerance = 2 * taps * torch.finfo(dtype).eps * pixels.abs().max().item()
                assert ours.dtype == dtype
                np.testing.assert_allclose(ours.double().numpy(), expected, rtol=0, atol=tolerance,
                                           err_msg=f"{height}x{width}, sigma {sigma}, {dtype}")


def test_curves_are_monotone_for_a_model_that_counts_pixels():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 30, 50).sign()  # +-1: hidden (mean, near 0) pixels stop counting
    grid = (3, 5)
    maps = {"a map": torch.randn(grid), "another": torch.randn(grid)}
    model = PixelCounter()
    fractions = np.linspace(0, 1, 16)  # one token per step
    progress = []
    for run in viz.faithfulness_curves(model, image, maps, 0, fractions, batch_size=10):
        progress.append(run.done)  # the same object, updated after every batch
    assert run.finished and progress == [*range(10, run.total, 10), run.total]
    assert run.total == 3 + 3 * 2 * 14 and model.calls == math.ceil(run.total / 10)  # shared ends scored once
    full = torch.sigmoid(torch.tensor(1.0)).item()  # every value counts in the original
    for name in ("a map", "another", "random"):
        deletion, insertion = run.deletion[name], run.insertion[name]
        assert deletion[0] == pytest.approx(full) and insertion[-1] == pytest.approx(full)
        assert np.all(np.diff(deletion) < 0), name  # every token hidden takes counted pixels away
        assert np.all(np.diff(insertion) >= 0) and insertion[-1] > insertion[0], name
        dele, ins = run.areas[name]
        assert dele == pytest.approx(np.trapezoid(deletion, fractions)) and ins == pytest.approx(
            np.trapezoid(insertion, fractions))
    assert viz.faithfulness_figure(run).mode == "RGB"


def test_token_ranks_break_ties_in_a_seeded_random_order_not_row_major():
    rows, cols = 24, 24
    generator = torch.Generator().manual_seed(6)
    relevance = torch.zeros(rows * cols)
    peaks = torch.randperm(rows * cols, generator=generator)[:40]
    relevance[peaks] = 1 + torch.rand(40, generator=generator)  # the rest tie at 0, as Grad-CAM's clipped cells do
    relevance = relevance.reshape(rows, cols)
    ranks = viz.faithfulness.token_ranks(relevance, seed=0)
    assert sorted(ranks.flatten()) == list(range(rows * cols))
    most_relevant_first = relevance.flatten().numpy()[ranks.flatten().argsort()]
    assert np.all(np.diff(most_relevant_first) <= 0)  # by value, ties after every larger value
    np.testing.assert_array_equal(ranks, viz.faithfulness.token_ranks(relevance, seed=0))  # deterministic
    assert not np.array_equal(ranks, viz.faithfulness.token_ranks(relevance, seed=1))
    # Row-major ties would rank the tied cells in the order of their row (rank correlation about 1) and index (1).
    # In a random order, neither correlation exceeds 4 of its standard deviations, 1 / sqrt(n - 1), under the null.
    tied = relevance.flatten().numpy() == 0
    row, col = np.divmod(np.arange(rows * cols), cols)
    bound = 4 / math.sqrt(tied.sum() - 1)
    for name, position in (("row", row), ("column", col), ("index", row * cols + col)):
        correlation = viz.rank_correlation(torch.from_numpy(ranks.flatten()[tied]), torch.from_numpy(position[tied]))
        assert abs(correlation) < bound, (name, correlation, bound)


def test_a_flat_map_scores_as_the_random_order():
    """Tied tokens take the random baseline's order: a map without any information has the random curves, and
    does not beat them."""
    model = PixelCounter()
    image = torch.randn(1, 3, 24, 36, generator=torch.Generator().manual_seed(7))
    *_, run = viz.faithfulness_curves(model, image, {"flat": torch.zeros(4, 6)}, 0, np.linspace(0, 1, 9),
                                      random_seed=3)
    for kind in viz.faithfulness.KINDS:
        curves = getattr(run, kind)
        np.testing.assert_array_equal(curves["flat"], curves["random"], err_msg=kind)
    assert run.verdict() == ("none", {})


def test_a_cancelled_run_stops_scoring():
    model = PixelCounter()
    curves = viz.faithfulness_curves(model, torch.randn(1, 3, 20, 20), {"m": torch.randn(4, 4)}, 0, batch_size=2)
    first = next(curves)
    curves.close()  # what the app does when the user cancels
    assert model.calls == 1 and first.done == 2 and not first.finished
    assert np.isnan(first.deletion["m"]).any()  # the rest was never measured
    with pytest.raises(ValueError, match="not measured"):
        first.most_faithful()


def finished_run(areas):
    """A finished FaithfulnessRun with these (deletion, insertion) areas under its curves."""
    curves = {name: np.full(2, 0.5) for name in areas}
    return viz.FaithfulnessRun(np.array([0.0, 1.0]), curves, dict(curves), done=3, total=3, areas=areas)


def test_verdict_names_the_map_that_rises_and_falls_fastest_when_it_beats_random():
    random = (0.5, 0.7)
    # "wide" deletes worse than "low" but inserts so much better that its insertion - deletion is the largest
    areas = {"low": (0.1, 0.6), "wide": (0.3, 0.95), "flat": (0.45, 0.5), "random": random}
    key, fields = finished_run(areas).verdict()
    assert (key, fields) == ("best", {"name": "wide", "deletion": areas["wide"][0], "insertion": areas["wide"][1],
                                      "random_deletion": random[0], "random_insertion": random[1]})
    assert "wide" in viz.VERDICTS[key].format(**fields)
    # the order the maps come in does not matter
    assert finished_run(dict(reversed(areas.items()))).verdict() == (key, fields)


def test_verdict_says_none_when_no_map_beats_random():
    random = (0.4, 0.8)
    for areas in ({"a": (0.5, 0.7), "b": (0.6, 0.9), "random": random},  # random rises and falls fastest of all
                  {"a": (0.5, 0.7), "tie": random, "random": random}):  # no better than random is not better
        key, fields = finished_run(areas).verdict()
        assert (key, fields) == ("none", {}), areas
        viz.VERDICTS[key].format(**fields)
    with pytest.raises(ValueError, match="random_seed"):  # nothing to compare with
        finished_run({"a": (0.1, 0.9)}).verdict()
    with pytest.raises(ValueError, match="no map to rank besides random"):  # nothing to judge
        finished_run({"random": random}).verdict()
    unfinished = finished_run({"a": (0.1, 0.9), "random": random})
    unfinished.done = 2
    with pytest.raises(ValueError, match="not measured"):
        unfinished.verdict()


def test_faithfulness_rejects_bad_input():
    model = PixelCounter()
    with pytest.raises(ValueError, match="one"):
        next(viz.faithfulness_curves(model, torch.randn(2, 3, 8, 8), {"m": torch.randn(2, 2)}, 0))
    with pytest.raises(ValueError, match="one \\(rows, cols\\) grid"):
        two_grids = {"m": torch.randn(2, 2), "n": torch.randn(4, 4)}
        next(viz.faithfulness_curves(model, torch.randn(1, 3, 8, 8), two_grids, 0))
    with pytest.raises(ValueError, match="fractions"):
        next(viz.faithfulness_curves(model, torch.randn(1, 3, 8, 8), {"m": torch.randn(2, 2)}, 0, fractions=(0, 0.5)))


def test_rollout_and_class_map_beat_random_on_fresh_shapes(tmp_path):
    grad_cam()  # the benchmark also draws Grad-CAM
    out = tmp_path / "areas.json"
    result = subprocess.run([sys.executable, str(FAITHFULNESS), "--images", "12", "--steps", "8", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (random_deletion, random_insertion) = data["areas"]["random"]
    for name in (ROLLOUT, CLASS_MAP):
        deletion, insertion = data["areas"][name]
        assert deletion < random_deletion - 0.1 and insertion > random_insertion + 0.1, (name, data["areas"])
        assert data["beats_random"][name] >= 0.75, (name, data["beats_random"])


def test_sanity_check_cascade_on_shapes(tmp_path):
    grad_cam()
    out = tmp_path / "sanity.json"
    script = FAITHFULNESS.with_name("sanity.py")
    result = subprocess.run([sys.executable, str(script), "--images", "4", "--json", str(out), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    steps, correlations = data["steps"], data["correlations"]
    assert steps[:3] == ["none (trained)", "classifier", "layer 4"] and steps[-1] == "stem"
    after_classifier, all_random = correlations[1], correlations[-1]
    # rollout and raw attention never read the classifier; the class-specific maps follow it
    assert after_classifier[ROLLOUT] > 0.999 and after_classifier[LAST_LAYER] > 0.999
    assert after_classifier[CLASS_MAP] < 0.95 and after_classifier[GRAD_CAM] < 0.95
    assert all(value < 0.5 for value in all_random.values()), all_random  # a random model's maps are other maps
    assert "| randomized down to | rollout |" in (tmp_path / "sanity.md").read_text()
    assert (tmp_path / "sanity.png").stat().st_size > 0 and (tmp_path / "sanity_maps.png").stat().st_size > 0
