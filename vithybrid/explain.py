"""Every map of a photo from one pass through the model: the one recipe behind the app's pictures and API,
`python -m vithybrid.analyze` and the faithfulness and sanity benchmarks.

One forward keeps what the maps need: every layer's attention probabilities (eager path) and the token stage's
feature map (the backbone stage whose grid becomes the tokens), both as the start of an autograd graph. The
logits are ready when the forward ends (`PhotoPass.logits`: a page shows the labels then); one backward of the
chosen class's logit then gives the gradients of both at once (`PhotoPass.maps`):

- rollout: attention rollout (Abnar & Zuidema 2020), heads averaged, nothing discarded;
- class_map: class-specific relevance (Chefer, Gur & Wolf, ICCV 2021) from the attentions and their gradients;
- last_layer_cls_attention: the last layer's CLS attention, heads averaged;
- backbone_grad_cam: Grad-CAM (Selvaraju et al. 2017) on the token stage, as pytorch-grad-cam computes it;

and, from the forward alone, the logit lens: the CLS token after every layer read as the last one is
(`model.read_out`, as `model.logit_lens` reads it), which shows when the answer forms.

Grad-CAM is computed here, not through pytorch-grad-cam (`visualization.backbone_cam`, which the app keeps for
the other CAM methods and stages): the library runs its own forward and backward through the whole model, a
second pass per photo; from this pass's gradients it is a weighted sum (tested equal to the library's).
The graph starts at the token stage, so the backward never enters the earlier backbone stages and frozen
weights get no gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import visualization as viz

from .model.backbone import token_stage

ROLLOUT, CLASS_MAP, LAST_LAYER, GRAD_CAM = "rollout", "class_map", "last_layer_cls_attention", "backbone_grad_cam"
MAP_NAMES = (ROLLOUT, CLASS_MAP, LAST_LAYER, GRAD_CAM)  # the names of every map, as the app's API gives them


@dataclass
class PhotoMaps:
    """What one pass gives for a batch of photos: each map (B, rows, cols) on the token grid, by MAP_NAMES."""

    logits: torch.Tensor  # (B, classes)
    class_index: torch.Tensor  # (B,): the class the class map and Grad-CAM explain
    attentions: tuple[torch.Tensor, ...]  # per layer (B, heads, N, N), detached
    maps: dict[str, torch.Tensor]
    stage_cam: torch.Tensor  # (B, h, w): Grad-CAM on the token stage's own grid (the token grid when patches are 1x1)
    lens: torch.Tensor  # (B, layers, classes): the logit lens, its last layer the logits


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """(B, h, w) Grad-CAM from a layer's (B, C, h, w) activations and their gradients: the channels weighted by their
    mean gradient, summed, negatives clipped, and each map scaled to [0, 1] as pytorch-grad-cam scales it."""
    weights = gradients.float().mean(dim=(2, 3), keepdim=True)
    cam = (weights * activations.float()).sum(dim=1).clamp_min(0)
    # pytorch-grad-cam scales twice: the layer's map, then the mean over its (here: one) target layers. Its 1e-7
    # guard against a flat map makes the second one visible on maps whose largest value is small.
    return scale_to_unit(scale_to_unit(cam))


def scale_to_unit(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map minus its minimum, divided by 1e-7 + its new maximum (pytorch-grad-cam's scale_cam_image)."""
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / (1e-7 + maps.amax(dim=(1, 2), keepdim=True))


class PhotoPass:
    """The forward half of one pass over a batch of photos (`logits` right away), then `maps()`: one backward.

    The graph between the two holds every layer's activations (about 0.5 GB per full-size image): call `maps`,
    or drop the object, soon. `model` is a ViTHybridForImageClassification, best with frozen weights."""

    def __init__(self, model: nn.Module, pixel_values: torch.Tensor):
        self.grid = model.config.grid_size
        recorded = {}

        def start_graph_here(module, args, output):  # the token stage's output becomes the graph's leaf
            recorded["stage"] = output.detach().requires_grad_()
            return recorded["stage"]

        cls_states = []  # after each layer (the last layer may compute the CLS token alone)
        hooks = [token_stage(model.vit.embeddings.patch_embeddings.backbone).register_forward_hook(start_graph_here)]
        hooks += [layer.register_forward_hook(lambda module, args, output: cls_states.append(output[0][:, 0].detach()))
                  for layer in model.vit.encoder.layer]
        try:
            with torch.enable_grad():
                output = model(pixel_values, output_attentions=True, return_dict=True)
        finally:
            for hook in hooks:
                hook.remove()
        self._graph = (output.logits, output.attentions, recorded["stage"])
        self.logits: torch.Tensor = output.logits.detach()
        with torch.no_grad():
            self.lens: torch.Tensor = model.read_out(torch.stack(cls_states, dim=1)).float()

    def maps(self, class_index: int | torch.Tensor | None = None) -> PhotoMaps:
        """Every map, for `class_index` (one for all photos or one per photo; default: each photo's top class).
        Runs the backward once and frees the graph."""
        if self._graph is None:
            raise RuntimeError("PhotoPass.maps() runs once: its graph is freed after the backward")
        logits, attentions, stage = self._graph
        self._graph = None
        if class_index is None:
            class_index = self.logits.argmax(-1)
        index = torch.as_tensor(class_index, device=logits.device).flatten().expand(logits.shape[0])
        with torch.enable_grad():
            score = logits.gather(1, index[:, None]).sum()
            *gradients, stage_gradients = torch.autograd.grad(score, [*attentions, stage])
        attentions = tuple(a.detach().float() for a in attentions)
        cam = grad_cam(stage.detach(), stage_gradients)
        return PhotoMaps(self.logits, index, attentions, every_map(attentions, [g.float() for g in gradients], cam,
                                                                   self.grid), cam, self.lens)


def every_map(attentions, gradients, cam: torch.Tensor, grid_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The maps of MAP_NAMES, each (B, rows, cols), from every layer's attention and its gradients and the token
    stage's Grad-CAM (averaged onto the token grid where the projection's patches are larger than one cell)."""
    return {ROLLOUT: viz.cls_map(viz.attention_rollout(attentions, rows=[0]), grid_hw),
            CLASS_MAP: viz.cls_map(viz.class_relevance(attentions, gradients, rows=[0]), grid_hw),
            LAST_LAYER: viz.raw_attention(attentions, grid_hw),
            GRAD_CAM: viz.pool_to_grid(cam, grid_hw)}


def photo_maps(model: nn.Module, pixel_values: torch.Tensor,
               class_index: int | torch.Tensor | None = None) -> PhotoMaps:
    """Every map of a batch of photos from one forward and one backward (see PhotoPass)."""
    return PhotoPass(model, pixel_values).maps(class_index)
