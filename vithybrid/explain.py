"""Every map of a photo from one pass through the model: the one recipe behind the app's pictures and API,
`python -m vithybrid.analyze` and the faithfulness and sanity benchmarks.

One forward keeps what the maps need, as the start of an autograd graph: the token stage's feature map (the
backbone stage whose grid becomes the tokens) and, in every layer, the fused query/key/value projection and the
attention's output. The forward runs the attention the model is set to (SDPA by default, the fastest, which
returns no probabilities): the logits are ready when it ends, as soon as a plain forward's (`PhotoPass.logits`: a
page shows the labels then). One backward of the chosen class's logit then gives the gradients of the token
stage and of every attention output at once (`PhotoPass.maps`); the attention probabilities are recomputed
from the queries and keys (softmax(q k^T / sqrt(d)), as the eager kernel computes them), and their gradients
follow from the outputs' (context = A v, so dA = d(context) v^T):

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

from collections.abc import Iterator, Sequence
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

    The graph between the two holds every layer's activations (`graph_bytes`: about 0.2 GB per full-size image):
    call `maps` (or `photo_by_photo`), or drop the object, soon. `model` is a ViTHybridForImageClassification in
    eval mode (attention dropout would make the forward's probabilities differ from the ones rebuilt here), best
    with frozen weights."""

    def __init__(self, model: nn.Module, pixel_values: torch.Tensor):
        if model.training:
            raise ValueError("PhotoPass needs the model in eval mode (call model.eval()): in training mode dropout "
                             "would make the maps differ from the model's answer")
        self.grid, self.heads = model.config.grid_size, model.config.num_attention_heads
        recorded, qkv, contexts, cls_states = {}, [], [], []

        def start_graph_here(module, args, output):  # the token stage's output becomes the graph's leaf
            recorded["stage"] = output.detach().requires_grad_()
            return recorded["stage"]

        hooks = [token_stage(model.vit.embeddings.patch_embeddings.backbone).register_forward_hook(start_graph_here)]
        for layer in model.vit.encoder.layer:
            attention = layer.attention.attention
            hooks += [attention.qkv.register_forward_hook(lambda module, args, output: qkv.append(output)),
                      # the context, (B, N, hidden); (B, 1, hidden) where the last layer computes the CLS token alone
                      attention.register_forward_hook(lambda module, args, output: contexts.append(output[0])),
                      layer.register_forward_hook(lambda module, args, out: cls_states.append(out[0][:, 0].detach()))]
        weights = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *model.buffers()]}
        saved: dict[int, int] = {}  # the storages of the activations the graph saves: address -> bytes

        def saving(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saving, lambda tensor: tensor):
                logits = model(pixel_values, return_dict=True).logits
        finally:
            for hook in hooks:
                hook.remove()
        self.graph_bytes = sum(saved.values())  # the memory the backward frees
        self._graph = (logits, qkv, contexts, recorded["stage"])
        self.logits: torch.Tensor = logits.detach()
        with torch.no_grad():
            self.lens: torch.Tensor = model.read_out(torch.stack(cls_states, dim=1)).float()

    def maps(self, class_index: int | torch.Tensor | None = None) -> PhotoMaps:
        """Every map, for `class_index` (one for all photos or one per photo; default: each photo's top class).
        Runs the backward once and frees the graph."""
        return self._maps(*self._backward(class_index), slice(None))

    def photo_by_photo(self, class_index: int | torch.Tensor | None = None,
                       rows: Sequence[int] | None = None) -> Iterator[PhotoMaps]:
        """maps(), one photo at a time, each a batch of one, in order (of the photos at the batch's indices `rows`
        only, where given: the others' maps are not made): the backward runs once, for every photo, and each
        photo's float32 attentions and their gradients (about 0.4 GB per full-size image) are computed when its
        turn comes, not all at once."""
        backward = self._backward(class_index)
        for row in range(len(self.logits)) if rows is None else sorted(rows):
            yield self._maps(*backward, slice(row, row + 1))

    def _backward(self, class_index) -> tuple:
        """(the class of each photo, each layer's fused projection, the gradients of each layer's context, the token
        stage's Grad-CAM) from the one backward, which frees the graph."""
        if self._graph is None:
            raise RuntimeError("PhotoPass.maps() runs once: its graph is freed after the backward")
        logits, qkv, contexts, stage = self._graph
        self._graph = None
        if class_index is None:
            class_index = self.logits.argmax(-1)
        index = torch.as_tensor(class_index, device=logits.device).flatten().expand(logits.shape[0])
        with torch.enable_grad():
            score = logits.gather(1, index[:, None]).sum()
            *context_gradients, stage_gradients = torch.autograd.grad(score, [*contexts, stage])
        return index, qkv, context_gradients, grad_cam(stage.detach(), stage_gradients)

    def _maps(self, index, qkv, context_gradients, cam, rows: slice) -> PhotoMaps:
        """The PhotoMaps of the photos `rows`."""
        with torch.no_grad():
            attentions, gradients = zip(*(self._attention(projected[rows], gradient[rows])
                                          for projected, gradient in zip(qkv, context_gradients)))
        return PhotoMaps(self.logits[rows], index[rows], attentions,
                         every_map(attentions, gradients, cam[rows], self.grid), cam[rows], self.lens[rows])

    def _attention(self, qkv: torch.Tensor, context_gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's (B, heads, N, N) attention probabilities and their gradients, float32, from its (B, N, 3 x
        hidden) fused projection and the gradient of its context. The rows of queries whose context the layer did
        not compute (the last layer's, computing the CLS token alone) reach no logit: their gradients are 0."""
        q, k, v = qkv.detach().float().unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        probabilities = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2), dim=-1)
        computed = context_gradient.float().unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, rows, d)
        if computed.shape[2] == probabilities.shape[2]:
            return probabilities, computed @ v.transpose(-1, -2)
        gradients = torch.zeros_like(probabilities)
        gradients[:, :, :computed.shape[2]] = computed @ v.transpose(-1, -2)
        return probabilities, gradients


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
