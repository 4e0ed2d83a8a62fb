"""Relevance maps and pictures for ViT-Hybrid: pure functions from attention tensors (and images) to maps
over the backbone-token grid and to images a person reads at a glance.

- maps: `attention_rollout` + `cls_map` (Abnar & Zuidema 2020), `class_relevance` (Chefer, Gur & Wolf,
  ICCV 2021), `raw_attention`, `layer_stack`, `head_stack`;
- geometry: token <-> (row, col) <-> pixel box in the crop (`grid`), crop <-> original photo (`CropGeometry`,
  `processor_geometry`);
- pictures: `overlay`, `overlay_on_original`, `draw_token_grid`, `small_multiples`, `backbone_figure`,
  `figure_image` (any matplotlib Figure to a Pillow image, via Agg);
- the CNN half: `backbone_cam` (Grad-CAM and other one-pass CAMs on a backbone stage, via pytorch-grad-cam),
  `rank_correlation` with a transformer map and `agreement_level`;
- the ViT paper's Figure 7: `position_embedding_similarity`, `mean_attention_distance`, `filter_grid` and
  their drawings;
- words for a map (its text alternative): `describe_map` (where its strong cells are, on how many cells);
- hide and see: `hide_pixels` (paint over cells), `keep_mask` and `on_grid` (drop their tokens), `strongest_cells`,
  `random_cells`, `draw_cells`;
- which map to trust: `faithfulness_curves` (deletion and insertion, Petsiuk et al. 2018);
- `image_key`: a content key for a photo (the app's analysis cache uses it).

Depends on torch, numpy, matplotlib and Pillow only (`backbone_cam` also on pytorch-grad-cam, imported when
called: `pip install -e '.[explain]'` in a clone); never on `vithybrid` or Gradio. Tensors are
batched (B, ...) and grids are (rows, cols), never assumed square.
"""

from .attention import HEAD_FUSIONS, fuse_heads, head_stack, layer_stack, raw_attention
from .cam import (AGREEMENT_SENTENCES, CAM_METHODS, agreement_level, backbone_cam, grad_cam_available, pool_to_grid,
                  rank_correlation)
from .cache import image_key
from .crop import CropGeometry, shortest_edge_size
from .describe import REGIONS, RESTS, MapFacts, describe_map
from .geometry import processor_geometry
from .figures import backbone_figure, figure_image, small_multiples
from .faithfulness import APP_FRACTIONS, VERDICTS, FaithfulnessRun, faithfulness_curves, faithfulness_figure
from .figure7 import (attention_distance_figure, filter_grid, mean_attention_distance, position_embedding_similarity,
                      position_similarity_figure)
from .hiding import (FILLS, cell_mask, draw_cells, hide_pixels, keep_mask, on_grid, random_cells,
                     strongest_cells)
from .grid import cell_edges, cell_to_token, expand_to_pixels, to_grid, token_at, token_box, token_to_cell
from .relevance import class_relevance
from .render import DEFAULT_CMAP, colorize, draw_token_grid, normalize, overlay, overlay_on_original, with_colorbar
from .rollout import attention_rollout, cls_map, discard_weakest

__all__ = ["FILLS", "cell_mask", "draw_cells", "hide_pixels", "keep_mask", "on_grid", "random_cells",
           "strongest_cells", "AGREEMENT_SENTENCES", "APP_FRACTIONS", "CAM_METHODS", "HEAD_FUSIONS", "VERDICTS", "CropGeometry",
           "FaithfulnessRun", "agreement_level", "attention_distance_figure", "attention_rollout",
           "backbone_cam", "backbone_figure", "cell_edges", "cell_to_token", "class_relevance", "cls_map", "colorize",
           "discard_weakest", "draw_token_grid", "expand_to_pixels", "faithfulness_curves", "faithfulness_figure",
           "figure_image", "filter_grid", "fuse_heads", "grad_cam_available", "head_stack", "image_key", "layer_stack",
           "mean_attention_distance", "normalize", "overlay", "overlay_on_original", "pool_to_grid",
           "position_embedding_similarity", "position_similarity_figure", "processor_geometry", "rank_correlation",
           "raw_attention", "shortest_edge_size", "small_multiples", "to_grid", "token_at", "token_box", "token_to_cell",
           "with_colorbar", "DEFAULT_CMAP", "MapFacts", "REGIONS", "RESTS", "describe_map"]
