"""What the app shows, computed from one loaded model: predictions, cached attention analyses, pictures,
timings. No Gradio here (app.py lays out the page); no model math either (that is vithybrid's and
visualization's): this module asks the model once per image and renders from the cache after that.
"""

from __future__ import annotations

import platform
import threading
from collections import OrderedDict
from collections.abc import Callable
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
from vithybrid.timing import SEED_A100, TimingRow, max_logit_difference, time_batch

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
DEFAULT_MODEL = "google/vit-hybrid-base-bit-384"
FALLBACK_MODEL = "shapes"
TOP_K = 5
DISPLAY_SIZE = 384  # pictures of small models' crops are enlarged to this shorter side
SPEED_MODES = ("none", "int8", "compile")  # how the classification and timing model runs (see vithybrid.optimize)
CACHE_MB = 400  # memory for cached analyses (every layer's attention per image)


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


class Explorer:
    """A model shared by every user: runs go through one lock, analyses through a bounded LRU cache."""

    def __init__(self, name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, speed: str = "none",
                 cache_mb: float = CACHE_MB, fallback: bool = True):
        """Load `name` (a Hub id, a folder, or "shapes"). If it cannot load, run the shipped shapes model with
        a notice saying why; with fallback=False, raise the CheckpointError instead."""
        if speed not in SPEED_MODES:
            raise ValueError(f"speed must be one of {SPEED_MODES}, got {speed!r}")
        if speed == "int8" and device != "cpu":
            raise ValueError("int8 runs on the CPU only; use --dtype float16 or bfloat16 on a GPU")
        self.notice = None
        try:
            self.name, self.model, self.processor = name, *self._load(name, device, dtype)
        except CheckpointError as error:
            if name == FALLBACK_MODEL or not fallback:
                raise
            self.notice = (f"Could not load **{name}**, so the app runs the shipped **{FALLBACK_MODEL}** model "
                           f"instead (it recognizes circles, squares, triangles, stars and crosses). Reason: {error}")
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
        width, height = image.size
        resized = self.processor.resized_size(width, height)
        crop_left, crop_top, _, _ = self.processor.crop_box(*resized)
        geometry = viz.CropGeometry((height, width), (resized[1], resized[0]), self.crop_hw, (crop_left, crop_top),
                                    self.processor.resample)
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
                maps = embeddings.backbone(pixels, keep_stages=True)
                tokens, _ = embeddings.project(maps[-1])
            names = ["stem"] + [f"stage {i}" for i in range(1, len(maps))]
            analysis.backbone_picture = viz.backbone_figure(
                analysis.crop, [m[0].float().cpu() for m in maps], tokens[0].float().cpu(), self.grid, names)
        return analysis.backbone_picture

    # -- facts for the "how hybrid tokens work" panel ----------------------------------------------------
    def facts(self) -> dict[str, object]:
        config = self.model.config
        rows, cols = self.grid
        return {
            "model": self.name, "input": f"{self.crop_hw[0]}x{self.crop_hw[1]}",
            "backbone stages": len(self.model.vit.embeddings.patch_embeddings.backbone.bit.encoder.stages),
            "backbone stride": config.image_size // config.backbone_featmap_shape[-1],
            "feature map": "x".join(map(str, config.backbone_featmap_shape[1:])),
            "grid": f"{rows}x{cols}", "tokens": rows * cols + 1, "hidden size": config.hidden_size,
            "layers": config.num_hidden_layers, "heads": config.num_attention_heads,
            "parameters": f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.1f} M",
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
    """Bars of eager and SDPA milliseconds per batch size, with the speed-up written above each pair."""
    figure = Figure(figsize=(5.5, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(rows))
    axes.bar(x - 0.2, [r.eager_ms for r in rows], 0.4, label="eager", color="#d95f02")
    axes.bar(x + 0.2, [r.sdpa_ms for r in rows], 0.4, label="SDPA", color="#1b9e77")
    for i, row in enumerate(rows):
        axes.annotate(f"{row.speedup:.2f}x", (i, max(row.eager_ms, row.sdpa_ms)), ha="center", va="bottom")
    axes.set_xticks(x, [f"batch {r.batch}" for r in rows])
    axes.set_ylabel("ms per forward")
    axes.margins(y=0.15)
    axes.legend(frameon=False)
    return viz.figure_image(figure)


def seed_table() -> list[list[object]]:
    return [[b, eager, sdpa, f"{eager / sdpa:.2f}x"] for b, eager, sdpa in SEED_A100]

