"""Relevance maps and pictures for ViT-Hybrid: pure functions from attention tensors (and images) to maps
over the backbone-token grid and to images a person reads at a glance.

- maps: `attention_rollout` + `cls_map` (Abnar & Zuidema 2020), `class_relevance` (Chefer, Gur & Wolf,
  ICCV 2021), `raw_attention`, `layer_stack`, `head_stack`;
- geometry: token <-> (row, col) <-> pixel box in the crop (`grid`), crop <-> original photo (`CropGeometry`);
- pictures: `overlay`, `overlay_on_original`, `draw_token_grid`, `small_multiples`, `backbone_figure`,
  `figure_image` (any matplotlib Figure to a Pillow image, via Agg);
- `MapCache`: model outputs per image, so that re-rendering never re-runs the model.

Depends on torch, numpy, matplotlib and Pillow only; never on `vithybrid` or Gradio. Tensors are
batched (B, ...) and grids are (rows, cols), never assumed square.
"""

from .attention import HEAD_FUSIONS, fuse_heads, head_stack, layer_stack, raw_attention
from .cache import MapCache, image_key
from .crop import CropGeometry, shortest_edge_size
from .figures import backbone_figure, figure_image, small_multiples
from .grid import cell_edges, cell_to_token, expand_to_pixels, to_grid, token_at, token_box, token_to_cell
from .relevance import class_relevance
from .render import colorize, draw_token_grid, normalize, overlay, overlay_on_original
from .rollout import attention_rollout, cls_map, discard_weakest
from .render import with_colorbar

__all__ = ["HEAD_FUSIONS", "CropGeometry", "MapCache", "attention_rollout", "backbone_figure", "cell_edges",
           "cell_to_token", "class_relevance", "cls_map", "colorize", "discard_weakest", "draw_token_grid",
           "expand_to_pixels", "figure_image", "fuse_heads", "head_stack", "image_key", "layer_stack", "normalize",
           "overlay", "overlay_on_original", "raw_attention", "shortest_edge_size", "small_multiples", "to_grid",
           "token_at", "token_box", "token_to_cell"]
__all__ += ["with_colorbar"]
