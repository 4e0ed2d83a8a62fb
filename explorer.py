"""What the app shows, computed from one loaded model: predictions, cached attention analyses, pictures,
timings. No Gradio here (app.py lays out the page); no model math either (that is vithybrid's and
visualization's): this module asks the model once per image and renders from the cache after that.
"""

from __future__ import annotations

import functools
import platform
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

import visualization as viz
from vithybrid import CheckpointError, ViTHybridForImageClassification, ViTHybridImageProcessor
from vithybrid.optimize import compile_model, quantize_int8
from vithybrid.checkpoints.shipped import resolve_model
from vithybrid.model.backbone import BitBackbone, backbone_stages
from vithybrid.timing import SEED_A100, TimingRow, max_logit_difference, time_batch

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
DEFAULT_MODEL = "google/vit-hybrid-base-bit-384"
FALLBACK_MODEL = "shapes"
TOP_K = 5
DISPLAY_SIZE = 384  # pictures of small models' crops are enlarged to this shorter side
SPEED_MODES = ("none", "int8", "compile")  # how the classification and timing model runs (see vithybrid.optimize)
CACHE_MB = 400  # memory for cached analyses (every layer's attention per image)
# Deletion and insertion score viz.APP_FRACTIONS' 23 images: in batches of 4, six model runs, each a point where the
# curves are redrawn and a cancel takes effect (about 6 s each for the full-size model on a 2-core CPU).
FAITHFULNESS_BATCH = 4


class FairLock:
    """A lock granted in order of arrival (a ticket lock): a long series of timing runs, each taking the
    lock on its own, lets waiting classification requests in between instead of starving them."""

    def __init__(self):
        self._condition = threading.Condition()
        self._next_ticket = self._serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            self._condition.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc_info) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


@dataclass
class Analysis:
    """One image, analysed once: what the model saw, its top classes, and every layer's attention."""

    crop: Image.Image  # the processed crop, before normalization, enlarged to DISPLAY_SIZE for small models
    geometry: viz.CropGeometry
    grid: tuple[int, int]
    top: list[tuple[int, str, float]]  # (class index, label, probability), best first
    attentions: tuple[torch.Tensor, ...]  # per layer (1, heads, N, N), on the CPU
    class_maps: dict[int, torch.Tensor] = field(default_factory=dict)  # class -> (rows, cols) relevance
    backbone_picture: Image.Image | None = None
    cams: dict[tuple[int, str, str], torch.Tensor] = field(default_factory=dict)  # (class, method, stage) -> map
    distance_picture: Image.Image | None = None


class Explorer:
    """A model shared by every user: runs go through one lock, analyses through a bounded LRU cache."""

    def __init__(self, name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, speed: str = "none",
                 cache_mb: float = CACHE_MB, fallback: bool = True):
        """Load `name` (a Hub id, a folder, or "shapes"). If it cannot load, run the shipped shapes model with
        the reason in `failed`; with fallback=False, raise the CheckpointError instead."""
        if speed not in SPEED_MODES:
            raise ValueError(f"speed must be one of {SPEED_MODES}, got {speed!r}")
        if speed == "int8" and device != "cpu":
            raise ValueError("int8 runs on the CPU only; use --dtype float16 or bfloat16 on a GPU")
        self.failed: tuple[str, str] | None = None  # (the model asked for, why it could not load) after a fallback
        try:
            self.name, self.model, self.processor = name, *self._load(name, device, dtype)
        except CheckpointError as error:
            if name == FALLBACK_MODEL or not fallback:
                raise
            self.failed = (name, str(error))
            self.name, self.model, self.processor = FALLBACK_MODEL, *self._load(FALLBACK_MODEL, device, dtype)
        self.device, self.dtype, self.speed, self.cache_mb = torch.device(device), dtype, speed, cache_mb
        # The model that classifies and is timed; analyses need gradients, so they use self.model.
        self.fast_model = (quantize_int8(self.model) if speed == "int8" else
                           compile_model(self.model) if speed == "compile" else self.model)
        self.runtime_model = None  # app.py --runtime: classify through ONNX Runtime or OpenVINO (vithybrid.runtimes)
        self.lock = FairLock()  # one model run at a time: timing switches the attention path in place
        config = self.model.config
        self.grid = config.grid_size
        # One analysis keeps every layer's attention: layers x heads x tokens^2 floats (192 MB for the
        # 384-pixel base model), so the cache holds as many as fit in cache_mb, at least one, at most 8.
        tokens = self.grid[0] * self.grid[1] + 1
        analysis_mb = config.num_hidden_layers * config.num_attention_heads * tokens ** 2 * 4 / 2 ** 20
        self.cache: viz.MapCache[Analysis] = viz.MapCache(max(1, min(8, int(cache_mb // analysis_mb))))
        self._analysing: dict[object, threading.Lock] = {}  # image key -> lock held while it is analysed
        self._analysing_lock = threading.Lock()
        self.crop_hw = (self.processor.crop_size["height"], self.processor.crop_size["width"])
        self.backbone = self.model.vit.embeddings.patch_embeddings.backbone

    @staticmethod
    def _load(name: str, device: str, dtype: torch.dtype):
        folder = resolve_model(name)
        model = ViTHybridForImageClassification.from_pretrained(folder, torch_dtype=dtype).to(device)
        model.requires_grad_(False)  # inference only; gradients flow to the attention maps, not the weights
        return model, ViTHybridImageProcessor.from_pretrained(folder)

    # -- what the model says ---------------------------------------------------------------------------
    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.processor(image)["pixel_values"].to(self.device, self.dtype)

    @torch.inference_mode()
    def probabilities(self, image: Image.Image) -> torch.Tensor:
        """Class probabilities on the SDPA path (the fast one)."""
        with self.lock:
            return (self.runtime_model or self.fast_model)(self.pixels(image)).logits.float().softmax(-1)[0].cpu()

    def classify(self, image: Image.Image) -> dict[str, float]:
        """The top-5 {label: probability}."""
        probabilities = self.probabilities(image)
        scores, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
        return {self.model.config.id2label[int(i)]: float(s) for s, i in zip(scores, indices)}

    def analysis(self, image: Image.Image) -> Analysis:
        """Attentions and the top class's relevance map, computed once per image (eager path) and cached.
        Requests for an image that is being analysed wait for that analysis instead of running their own
        (a model switch re-renders several pictures of the same photo at once)."""
        key = (self.name, viz.image_key(image))
        with self._analysing_lock:
            in_progress = self._analysing.setdefault(key, threading.Lock())
        try:
            with in_progress:
                return self.cache.get(key, lambda: self._analyse(image))
        finally:
            with self._analysing_lock:
                if self._analysing.get(key) is in_progress and not in_progress.locked():
                    del self._analysing[key]

    def _analyse(self, image: Image.Image) -> Analysis:
        pixels = self.pixels(image)
        with self.lock:
            result = self.model.attention_with_gradients(pixels)
        probabilities = result.logits.float().softmax(-1)[0]
        scores, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
        top = [(int(i), self.model.config.id2label[int(i)], float(s)) for s, i in zip(scores, indices)]
        attentions = tuple(a.float().cpu() for a in result.attentions)
        best = viz.cls_map(viz.class_relevance(attentions, [g.float().cpu() for g in result.gradients], rows=[0]),
                           self.grid)
        geometry = viz.processor_geometry(self.processor, image.size)
        crop = geometry.crop(image)
        scale = max(1, -(-DISPLAY_SIZE // min(crop.size)))
        crop = crop.resize((crop.width * scale, crop.height * scale), Image.BICUBIC) if scale > 1 else crop
        return Analysis(crop, geometry, self.grid, top, attentions, {top[0][0]: best[0]})

    def class_map(self, image: Image.Image, class_index: int) -> torch.Tensor:
        """The class-specific relevance map (Chefer et al. 2021) of any class, computed once per class."""
        analysis = self.analysis(image)
        if class_index not in analysis.class_maps:
            with self.lock:
                result = self.model.attention_with_gradients(self.pixels(image), class_index)
            relevance = viz.class_relevance([a.float().cpu() for a in result.attentions],
                                            [g.float().cpu() for g in result.gradients], rows=[0])
            analysis.class_maps[class_index] = viz.cls_map(relevance, self.grid)[0]
        return analysis.class_maps[class_index]

    def backbone_picture(self, image: Image.Image) -> Image.Image:
        """Stem and stage activations, then the token norms: how the image becomes a grid of tokens."""
        analysis = self.analysis(image)
        if analysis.backbone_picture is None:
            embeddings = self.model.vit.embeddings.patch_embeddings
            pixels = self.pixels(image)
            with self.lock, torch.inference_mode():
                maps = self.backbone(pixels, keep_stages=True)
                tokens, _ = embeddings.project(maps[-1])
            # Numbered as the guided walk's steps, sizes as the model sees them (not the enlarged display crop).
            sizes = [(*self.crop_hw, 3)] + [(m.shape[2], m.shape[3], m.shape[1]) for m in maps]
            captions = [f"{step}\n{'x'.join(map(str, size))}" for step, size in enumerate(sizes, 1)]
            captions.append(f"{len(captions) + 1}\n{self.grid[0]}x{self.grid[1]}x{tokens.shape[-1]}")
            analysis.backbone_picture = viz.backbone_figure(
                analysis.crop, [m[0].float().cpu() for m in maps], tokens[0].float().cpu(), self.grid,
                captions=captions)
        return analysis.backbone_picture

    # -- the Explanation lab: both halves of the hybrid, and which map to trust ----------------------------
    @property
    def stage_names(self) -> list[str]:
        """The backbone's maps a CAM can be asked of, in order: "stem", "stage1", ..., the token stage last."""
        return self.model.config.backbone_config.stage_names[:len(backbone_stages(self.backbone))]

    def backbone_cam(self, image: Image.Image, class_index: int, method: str = "Grad-CAM",
                     stage: str | None = None) -> torch.Tensor:
        """(h, w) class activation map of `method` (one of viz.CAM_METHODS, through pytorch-grad-cam) on backbone
        stage `stage` (one of stage_names; default the token stage), on that stage's own grid, for `class_index`.
        Computed once per (class, method, stage) and photo."""
        analysis = self.analysis(image)
        stage = stage or self.stage_names[-1]
        key = (class_index, method, stage)
        if key not in analysis.cams:
            layer = dict(zip(self.stage_names, backbone_stages(self.backbone)))[stage]
            with self.lock:
                cam = viz.backbone_cam(self.model, layer, self.pixels(image), class_index, method)
            analysis.cams[key] = cam[0].float()
        return analysis.cams[key]

    def agreement(self, image: Image.Image, class_index: int, method: str = "Grad-CAM",
                  stage: str | None = None) -> float:
        """Spearman rank correlation, over the token grid, of the backbone CAM (averaged onto the grid) and the
        transformer's class map for the same class (NaN if either is flat)."""
        cam = viz.pool_to_grid(self.backbone_cam(image, class_index, method, stage)[None], self.grid)[0]
        return viz.rank_correlation(cam, self.class_map(image, class_index))

    def explanation_maps(self, image: Image.Image, class_index: int) -> dict[str, torch.Tensor]:
        """Every map the app shows, each (rows, cols) on the token grid: attention rollout (heads averaged), the
        class map and the token stage's Grad-CAM for `class_index` (where pytorch-grad-cam, an optional extra, is
        installed), and the last layer's CLS attention."""
        attentions = self.analysis(image).attentions
        maps = {"rollout": viz.cls_map(viz.attention_rollout(attentions, rows=[0]), self.grid)[0],
                "class map": self.class_map(image, class_index),
                "last-layer attention": viz.raw_attention(attentions, self.grid)[0]}
        if viz.grad_cam_available():
            maps["Grad-CAM"] = viz.pool_to_grid(self.backbone_cam(image, class_index)[None], self.grid)[0]
        return maps

    def faithfulness(self, image: Image.Image, class_index: int,
                     batch_size: int = FAITHFULNESS_BATCH) -> Iterator[viz.FaithfulnessRun]:
        """Deletion and insertion curves (viz.faithfulness_curves) of every map of explanation_maps and a random
        order, yielded after every batch. Each batch takes the model lock on its own, so other requests interleave;
        to cancel, stop iterating (or close the generator): no batch is scored after that."""
        maps = self.explanation_maps(image, class_index)

        def scored(batch: torch.Tensor) -> torch.Tensor:
            with self.lock:
                return self.model(batch).logits

        yield from viz.faithfulness_curves(scored, self.pixels(image), maps, class_index, batch_size=batch_size)

    # -- the ViT paper's Figure 7, for this model and photo (numbers only: the page captions them) ----------
    def attention_distances(self, image: Image.Image) -> torch.Tensor:
        """(layers, heads) mean attention distance of each head, in input pixels, for this photo."""
        return viz.mean_attention_distance(self.analysis(image).attentions, self.grid, self.crop_hw)[0]

    def distance_picture(self, image: Image.Image) -> Image.Image:
        analysis = self.analysis(image)
        if analysis.distance_picture is None:
            analysis.distance_picture = viz.attention_distance_figure(self.attention_distances(image), self.crop_hw,
                                                                      labels=("", "", ""))
        return analysis.distance_picture

    @functools.cached_property
    def position_picture(self) -> Image.Image:
        """How similar each grid cell's learned position embedding is to every other's."""
        embeddings = self.model.vit.embeddings.position_embeddings.detach().float().cpu()
        return viz.position_similarity_figure(viz.position_embedding_similarity(embeddings, self.grid),
                                              labels=("", "", ""))

    @functools.cached_property
    def filter_picture(self) -> Image.Image:
        """The stem's first convolution filters, the hybrid's counterpart of the paper's RGB embedding filters."""
        return viz.filter_grid(self.backbone.bit.embedder.convolution.weight)

    # -- facts for the guided walk ("How hybrid tokens work") --------------------------------------------
    def facts(self) -> dict[str, object]:
        """The numbers the guided walk tells, read from this model: every backbone map's (channels, height,
        width) at this model's input size (worked out on the meta device, nothing computed), the grid, etc."""
        config = self.model.config
        backbone = config.backbone_config
        with torch.device("meta"):
            maps = BitBackbone(backbone)(torch.empty(1, backbone.num_channels, *self.crop_hw), keep_stages=True)
        rows, cols = self.grid
        return {
            "model": self.name, "input": self.crop_hw, "maps": [tuple(m.shape[1:]) for m in maps],
            "stage depths": list(backbone.depths[:len(maps) - 1]), "grid": (rows, cols),
            "patch": config.patch_size, "stride": self.crop_hw[0] // rows, "grid tokens": rows * cols, "tokens": rows * cols + 1,
            "hidden size": config.hidden_size, "layers": config.num_hidden_layers,
            "heads": config.num_attention_heads, "labels": config.num_labels,
            "parameters": round(sum(p.numel() for p in self.model.parameters()) / 1e6, 1),  # millions
            "full size": is_full_size(config),
        }

    # -- timing -------------------------------------------------------------------------------------------
    def time_paths(self, image: Image.Image, batch: int, repeats: int) -> TimingRow:
        """Eager vs SDPA for `batch` copies of this image. Each run takes the lock on its own, so
        classification requests interleave with a long timing run instead of waiting for all of it."""
        return time_batch(self.fast_model, self.pixels(image), batch, repeats=repeats, lock=lambda: self.lock)

    def logit_difference(self, image: Image.Image) -> float:
        with self.lock:
            return max_logit_difference(self.fast_model, self.pixels(image))

    def environment(self) -> str:
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or "CPU"
        numbers = {"none": str(self.dtype).split('.')[-1], "int8": "int8 linear layers",
                   "compile": f"{str(self.dtype).split('.')[-1]}, torch.compile"}[self.speed]
        return f"{device} ({self.device.type}), {numbers}, torch {torch.__version__}, {torch.get_num_threads()} threads"


class ModelShelf:
    """The models the app has loaded, shared by every session: the startup model always, the others on first
    use, at most `max_loaded` in all (the least recently used other model is dropped first; a session still
    rendering with it keeps it until done). Loads run one at a time, so two sessions asking for the same model
    load it once and memory never holds more than max_loaded + 1 models; a model already on the shelf is
    handed out at once, even while another one loads. New models get the startup model's device, dtype,
    speed mode and cache budget."""

    def __init__(self, first: Explorer, max_loaded: int = 2, loader: Callable[[str], Explorer] | None = None):
        if max_loaded < 2:
            raise ValueError(f"max_loaded counts the startup model too, so it must be at least 2, got {max_loaded}")
        self.first, self.max_loaded = first, max_loaded
        self._load = loader or (lambda name: Explorer(name, str(first.device), first.dtype, first.speed,
                                                      first.cache_mb, fallback=False))
        self._loaded: OrderedDict[str, Explorer] = OrderedDict({first.name: first})  # least recently used first
        self._lock = threading.Lock()  # guards _loaded
        self._loading = threading.Lock()  # held while a model loads

    def get(self, name: str, on_load: Callable[[], None] | None = None) -> Explorer:
        """The loaded model `name`, loading it first if needed (then on_load() is called, to show progress).
        A model that cannot load raises CheckpointError and leaves the shelf as it was."""
        explorer = self._lookup(name)
        if explorer is None:
            if on_load is not None:
                on_load()
            with self._loading:
                explorer = self._lookup(name)  # loaded by another session while this one waited
                if explorer is None:
                    explorer = self._load(name)
                    self._store(name, explorer)
        return explorer

    @property
    def loaded(self) -> list[str]:
        """Names on the shelf, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _lookup(self, name: str) -> Explorer | None:
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
            return self._loaded.get(name)

    def _store(self, name: str, explorer: Explorer) -> None:
        with self._lock:
            self._loaded[name] = explorer
            while len(self._loaded) > self.max_loaded:
                del self._loaded[next(n for n in self._loaded if n != self.first.name)]


def timing_chart(rows: list[TimingRow]) -> Image.Image:
    """Bars of eager and SDPA milliseconds per batch size (ticks: the batch sizes), the speed-up above each pair."""
    figure = Figure(figsize=(5.5, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(rows))
    axes.bar(x - 0.2, [r.eager_ms for r in rows], 0.4, label="eager", color="#d95f02")
    axes.bar(x + 0.2, [r.sdpa_ms for r in rows], 0.4, label="SDPA", color="#1b9e77")
    for i, row in enumerate(rows):
        axes.annotate(f"{row.speedup:.2f}x", (i, max(row.eager_ms, row.sdpa_ms)), ha="center", va="bottom")
    axes.set_xticks(x, [str(r.batch) for r in rows])  # numbers only: the page says what they are, in its language
    axes.margins(y=0.15)
    axes.legend(frameon=False)
    return viz.figure_image(figure)


def is_full_size(config) -> bool:
    """Whether `config` is the architecture of the seed's A100 figures (google/vit-hybrid-base-bit-384)."""
    return (config.image_size, config.hidden_size, config.num_hidden_layers, list(config.backbone_featmap_shape[1:])) \
        == (384, 768, 12, [1024, 24, 24])


def seed_table() -> list[list[object]]:
    return [[b, eager, sdpa, f"{eager / sdpa:.2f}x"] for b, eager, sdpa in SEED_A100]

