"""The CNN half explained: class activation maps on a backbone stage, through pytorch-grad-cam
(Gildenblat et al., `pip install grad-cam`), and how well they agree with a transformer map.

Grad-CAM (Selvaraju et al., ICCV 2017) weights a convolutional layer's channels by the mean gradient of
the class score and keeps the positive part of their weighted sum. On a hybrid ViT the natural layer is
the last BiT stage: its output grid is the token grid. pytorch-grad-cam resizes every map to the input
with cv2; here it is asked for the layer's own size, so the maps stay on the stage's grid (cv2 copies a
map resized to its own size) and can be compared cell for cell with the transformer's maps.

The methods offered are the ones that cost one forward (and one backward) pass; Score-CAM and
Ablation-CAM need a pass per channel (1024 on the last stage) and are left out.
"""

from __future__ import annotations

import importlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CAM_METHODS = {  # name shown -> pytorch-grad-cam class
    "Grad-CAM": "GradCAM",
    "Grad-CAM++": "GradCAMPlusPlus",
    "XGrad-CAM": "XGradCAM",
    "HiResCAM": "HiResCAM",
    "LayerCAM": "LayerCAM",
    "Eigen-CAM": "EigenCAM",
}
AGREEMENT_LEVELS = ((0.7, "strong"), (0.4, "moderate"), (0.1, "weak"), (-0.1, "none"))
AGREEMENT_SENTENCES = {  # English; the app translates them by level
    "strong": "The CNN half and the transformer half point at the same places (strong agreement).",
    "moderate": "The CNN half and the transformer half mostly point at the same places (moderate agreement).",
    "weak": "The two halves overlap only a little (weak agreement): the transformer looked elsewhere than the CNN.",
    "none": "The two maps are unrelated: the transformer reorganized what the CNN half found.",
    "opposite": "The two maps disagree: where the CNN half is strongest, the transformer half is weakest.",
    "undefined": "No agreement can be measured: one of the maps is flat.",
}


def grad_cam_available() -> bool:
    """Whether pytorch-grad-cam imports here (it is an optional extra; callers can leave its maps out)."""
    try:
        grad_cam_module()
    except ImportError:
        return False
    return True


def grad_cam_module():
    """pytorch_grad_cam, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("pytorch_grad_cam")
    except ImportError as error:
        raise ImportError("Backbone class activation maps need pytorch-grad-cam: in a clone of vithybrid, "
                          "pip install -e '.[explain]' (or pip install 'grad-cam>=1.5.7')") from error


class LogitsOf(nn.Module):
    """pytorch-grad-cam needs a model that returns the logits tensor; ours returns an output object."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        output = self.model(pixel_values)
        return getattr(output, "logits", output)


def backbone_cam(model: nn.Module, layer: nn.Module, pixel_values: torch.Tensor,
                 class_index: int | Sequence[int] | torch.Tensor | None = None,
                 method: str = "Grad-CAM") -> torch.Tensor:
    """(B, h, w) class activation maps of `method` (one of CAM_METHODS) on the output grid of `layer` (a
    module inside `model`, e.g. a BiT stage), for `class_index` per image (default: the predicted class).
    As pytorch-grad-cam returns them: non-negative, each scaled to [0, 1]. `model(pixel_values)` returns
    logits or an object with `.logits`; its weights may be frozen. The map is taken in eval mode, and every
    module is left in the mode it had."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    library = grad_cam_module()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # pytorch-grad-cam puts the model in eval mode (so dropout does not change the map); each module gets
    # back the mode it had, so that a CAM taken in the middle of training does not end the training.
    modes = {module: module.training for module in model.modules()}
    # The layer's output becomes a leaf that needs gradients: the CAM works even when every weight is
    # frozen, and the backward pass stops there instead of running through the earlier stages.
    # Registered before pytorch-grad-cam's own hooks, which then see (and hook) this output.
    leaf = layer.register_forward_hook(lambda module, args, output: output.detach().requires_grad_())
    cam = None
    try:
        cam = getattr(library, CAM_METHODS[method])(LogitsOf(model), [layer])
        if method == "Eigen-CAM":
            # The principal direction's sign is whatever the SVD returns, so EigenCAM may draw the opposite of the
            # salient cells (then clipped away). The library's sign correction (Seg-Eigen-CAM, Chung & Ying 2025,
            # Eq. 13) turns the map so that its larger end is positive.
            from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

            cam.get_cam_image = lambda input_tensor, layer, targets, activations, grads, eigen_smooth: \
                get_2d_projection_with_sign_correction(activations)
        recorded = cam.activations_and_grads  # its activations are the layer's output once the forward ran
        cam.get_target_width_height = lambda _: tuple(recorded.activations[0].shape[:-3:-1])  # (width, height)
        if class_index is None:
            targets = None
        else:
            indices = torch.as_tensor(class_index).flatten()  # one class for all images, or one per image
            if len(indices) not in (1, len(pixel_values)):
                raise ValueError(f"{len(indices)} class indices for {len(pixel_values)} images")
            targets = [ClassifierOutputTarget(int(i)) for i in indices.expand(len(pixel_values))]
        with torch.enable_grad():
            maps = cam(pixel_values, targets)
    finally:  # not `with cam`: its __exit__ swallows IndexErrors
        if cam is not None:
            cam.activations_and_grads.release()
        leaf.remove()
        for module, training in modes.items():
            module.training = training
    return torch.from_numpy(maps)


def pool_to_grid(maps: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) maps averaged over area onto a coarser (rows, cols) grid (an earlier stage's CAM onto the
    token grid); unchanged when already on it."""
    if tuple(maps.shape[-2:]) == tuple(grid_hw):
        return maps
    return F.adaptive_avg_pool2d(maps[:, None].float(), grid_hw)[:, 0]


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0 .. n-1 of a 1-D tensor, tied values sharing the mean of their ranks (scipy's "average")."""
    order = values.argsort()
    _, group, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0)
    mean_rank = (2 * ends - counts - 1).double() / 2  # the mean of ranks ends - counts .. ends - 1
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = mean_rank[group]
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation between two maps of the same shape, over their cells (NaN if either is
    flat). Ties get average ranks, which matters: Grad-CAM's clipped zeros tie. A dozen lines of torch
    instead of scipy, to keep visualization's dependencies to torch, numpy, matplotlib and Pillow."""
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = average_ranks(a.detach().flatten().cpu()), average_ranks(b.detach().flatten().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.norm() * rb.norm()).item()
    return (ra @ rb).item() / denominator if denominator > 0 else float("nan")


def agreement_level(correlation: float) -> str:
    """A key of AGREEMENT_SENTENCES for a rank correlation."""
    if correlation != correlation:  # NaN
        return "undefined"
    return next((level for bound, level in AGREEMENT_LEVELS if correlation >= bound), "opposite")
