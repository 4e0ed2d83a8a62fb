"""A loaded model and the runs the page asks of it: labels, a photo's analysis (one pass: vithybrid.explain),
other classes' maps and CAMs, deletion/insertion, timing. Every run goes through the work queue (explorer.work)
in its priority, and every analysis through the cache (explorer.cache): a picture of a cached photo never runs
the model.

A photo's first request sets two pieces of work going, both waited for by every session that asks about the
photo: its labels (Priority.LABELS) and its maps (Priority.MAPS). The labels of every photo waiting at that moment
come from one batched forward, which is the first half of their pass (vithybrid.explain.PhotoPass: the logits of a
forward that records what the maps need, as fast as a plain one); their maps are its one backward, run once no
labels wait. So a student alone, and each student of a class, pays one pass for labels and maps, and every
waiting student's labels come first. The graphs held between passes' two halves (about 0.2 GB per photo of the
full-size model) stay within a budget (`passes_mb`); past it, a photo's labels come from a plain forward and its
pass runs later, whole; so do they where the labels come from another model than the maps' (int8, compiled, an
exported runtime, Ray). A photo's first request may be its upload (`prefetch`): the pass then starts before the
upload's event asks, and runs whole whoever asks.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

import visualization as viz
from vithybrid import CheckpointError, load_pretrained
from vithybrid.checkpoints.labels import translated_labels
from vithybrid.checkpoints.shipped import resolve_model
from vithybrid.explain import CLASS_MAP, GRAD_CAM, LAST_LAYER, ROLLOUT, PhotoMaps, PhotoPass, photo_maps
from vithybrid.model.backbone import backbone_stages
from vithybrid.optimize import compile_model, quantize_int8, reserve_memory
from vithybrid.timing import TimingRow, max_logit_difference, time_batch

from . import pictures
from .analysis import Analysis, of_photo, recording_backbone, stored, whole_pass
from .cache import MB, AnalysisCache, default_budget_mb
from .facts import ModelFacts, model_facts
from .work import LIBRARY, Priority, Work, WorkDropped, WorkQueue

FALLBACK_MODEL = "shapes"
TOP_K = 5
DISPLAY_SIZE = 384  # pictures of small models' crops are enlarged to this shorter side
SPEED_MODES = ("none", "int8", "compile")  # how the labels' batched forward runs (see vithybrid.optimize)
# Deletion and insertion score viz.APP_FRACTIONS' 23 images in batches of 4: six model runs, each a point where the
# curves are redrawn and a cancel takes effect.
FAITHFULNESS_BATCH = 4
SHARED_QUEUE = WorkQueue()  # one model run at a time on this machine, whichever model it is
# The graphs of passes whose backward waits: $VITHYBRID_PASSES_MB, else this share of the memory (2 GB on a
# 16 GB Space: ten photos of the full-size model).
PASSES_VARIABLE, PASSES_SHARE = "VITHYBRID_PASSES_MB", 0.125
CLASS_SIZE = 32  # warm_up reserves memory for this many photos' held graphs, at most the budget


@dataclass(eq=False)
class PhotoJob:
    """A photo being analysed: its labels and its maps, waited for by the same sessions."""

    key: Hashable
    image: Image.Image
    pixels: torch.Tensor
    sessions: set = field(default_factory=set)
    labels: Work | None = None
    maps: Work | None = None
    photo_pass: PhotoPass | None = None  # the forward half, when the labels came from it (its graph held)
    row: int = 0  # this photo's in that pass's batch
    backbone: list[torch.Tensor] | None = None  # recorded during that forward


def load_model(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(model, processor) of `name` (a Hub id, a folder, or "shapes"), frozen: as the Explorer and a model served
    for it (explorer.ray_serve) load it."""
    model, processor = load_pretrained(name, device=device, dtype=dtype)
    model.requires_grad_(False)  # inference only; gradients flow to the attention maps, not the weights
    return model, processor


class Explorer:
    """A model shared by every user: its runs go through the work queue, its analyses through the cache."""

    def __init__(self, name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, speed: str = "none",
                 cache_mb: float | None = None, fallback: bool = True, queue: WorkQueue = SHARED_QUEUE,
                 passes_mb: float | None = None):
        """Load `name` (a Hub id, a folder, or "shapes"). If it cannot load, run the shipped shapes model with
        the reason in `failed`; with fallback=False, raise the CheckpointError instead. `cache_mb`: the analysis
        cache's budget (default: explorer.cache.default_budget_mb()); `passes_mb`: the budget of the graphs held
        between passes' forward and backward (default: $VITHYBRID_PASSES_MB, else an eighth of the memory; one
        pass may always be held)."""
        if speed not in SPEED_MODES:
            raise ValueError(f"speed must be one of {SPEED_MODES}, got {speed!r}")
        if speed == "int8" and device != "cpu":
            raise ValueError("int8 runs on the CPU only; use --dtype float16 or bfloat16 on a GPU")
        self.failed: tuple[str, str] | None = None  # (the model asked for, why it could not load) after a fallback
        try:
            self.name, self.model, self.processor = name, *load_model(name, device, dtype)
        except CheckpointError as error:
            if name == FALLBACK_MODEL or not fallback:
                raise
            self.failed = (name, str(error))
            self.name, self.model, self.processor = FALLBACK_MODEL, *load_model(FALLBACK_MODEL, device, dtype)
        self.folder = resolve_model(self.name)  # where its files are (class names in other languages, say)
        self.device, self.dtype, self.speed = torch.device(device), dtype, speed
        self.cache_mb = default_budget_mb() if cache_mb is None else cache_mb
        self.passes_mb = default_budget_mb(PASSES_VARIABLE, PASSES_SHARE) if passes_mb is None else passes_mb
        if self.passes_mb < 0:
            raise ValueError(f"the budget of held graphs cannot be negative, got {self.passes_mb} MB")
        # The model whose batched forward answers several waiting photos' labels at once, and is timed.
        self.fast_model = (quantize_int8(self.model) if speed == "int8" else
                           compile_model(self.model) if speed == "compile" else self.model)
        self.runtime_model = None  # app.py --runtime: labels through ONNX Runtime or OpenVINO (vithybrid.runtimes)
        self.remote = None  # app.py --ray: a served model that gives labels and whole passes instead (see _whole_pass)
        self.queue = queue
        self.cache: AnalysisCache[Analysis, PhotoJob] = AnalysisCache(self.cache_mb, lambda a: a.nbytes)
        self.grid = self.model.config.grid_size
        self.crop_hw = (self.processor.crop_size["height"], self.processor.crop_size["width"])
        self.backbone = self.model.vit.embeddings.patch_embeddings.backbone
        self._open: dict[PhotoPass, list[PhotoJob]] = {}  # passes whose graph is held (backward waiting): photos
        self.photo_graph_bytes: int | None = None  # one photo's share of a held graph, measured on the latest pass
        self._label_names: dict[str, list[str] | None] = {}

    def label_names(self, language: str) -> list[str] | None:
        """The class names in `language`, where the checkpoint or ImageNet-1k has them (vithybrid.checkpoints.labels);
        the model's own labels are unchanged."""
        if language not in self._label_names:
            self._label_names[language] = translated_labels(self.model.config.id2label, language, self.folder)
        return self._label_names[language]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.processor(image)["pixel_values"].to(self.device, self.dtype)

    def warm_up(self) -> None:
        """Run each way this process runs the model once, on a grey picture (nothing is cached), on the work
        queue's thread, which serves: a server's first student then waits for a pass, not for the kernels',
        the thread's and the allocator's first-time set-up (the first pass of a fresh process takes about 1.5
        times as long; a thread's first, up to twice), and the budget of held graphs knows a photo's. Where graphs
        are held and the process keeps freed memory (vithybrid.optimize.keep_freed_memory, as app.py does), the
        memory of a class's held graphs is touched once here too (reserve_memory: up to `passes_mb`), so that a
        class's first labels do not fault it in. Call it before serving. Where a served model does the work,
        nothing runs here."""
        if self.remote is not None:
            return
        pixels = self.pixels(Image.new("RGB", self.crop_hw[::-1], (128, 128, 128)))

        def each_way():
            self._labels_forward(pixels)
            photo_pass = PhotoPass(self.model, pixels)
            self.photo_graph_bytes = photo_pass.graph_bytes
            photo_pass.maps()

        self.queue.run(Priority.LABELS, each_way)
        if self.holds_passes:
            reserve_memory(min(self.passes_mb, CLASS_SIZE * self.photo_graph_bytes / MB))

    # -- a photo's labels and analysis ---------------------------------------------------------------------
    def labels(self, image: Image.Image, session: Hashable = LIBRARY) -> list[tuple[int, str, float]]:
        """The top-5 (class index, label, probability), best first: as soon as a forward has them."""
        return self._wait(image, session, lambda analysis: analysis.top, lambda job: job.labels)

    def classify(self, image: Image.Image, session: Hashable = LIBRARY) -> dict[str, float]:
        """The top-5 {label: probability}."""
        return {label: probability for _, label, probability in self.labels(image, session)}

    def analysis(self, image: Image.Image, session: Hashable = LIBRARY) -> Analysis:
        """The photo's analysis: from the cache, else when its pass is done (run once, whoever asks)."""
        return self._wait(image, session, lambda analysis: analysis, lambda job: job.maps)

    def prefetch(self, image: Image.Image) -> bool:
        """Start the photo's pass now, before anyone asks for it, where the model is in this process and has nothing
        else to do: the app calls it when a photo's upload arrives (ui.uploads.UploadHook), so the forward is under
        way (or done) when the upload's event asks for the labels 0.05-0.1 s later, and the event waits for it
        instead of starting one. The upload itself waits for the photo's labels and maps (a session that never
        leaves), so the pass runs whole and its analysis is cached even if nobody asks: a photo is uploaded to be
        asked about, and the same photo uploaded again costs nothing. Returns False where nothing was done (a busy or
        served model, a cached photo)."""
        if self.remote is not None or not self.queue.idle:
            return False
        return not isinstance(self._photo(image, ("upload", object())), Analysis)  # a session of its own

    def cached(self, image: Image.Image) -> Analysis | None:
        """The photo's analysis if it is in the cache (nothing runs)."""
        return self.cache.get(self._key(image))

    def _key(self, image: Image.Image) -> Hashable:
        return self.name, viz.image_key(image)

    def _wait(self, image: Image.Image, session: Hashable, from_cache, work_of):
        """from_cache(analysis) of the cached photo, else the result of work_of(its job), waited for by session (or
        from_cache of its maps' result, where that work was dropped: its maps give it too)."""
        while True:
            found = self._photo(image, session)
            if isinstance(found, Analysis):
                return from_cache(found)
            for work in dict.fromkeys((work_of(found), found.maps)):
                try:
                    result = work.future(session).result()
                except WorkDropped:  # dropped a moment ago, when nobody waited
                    continue
                return from_cache(result) if work is found.maps else result
            # both dropped: the cache forgot the job, and the next round starts it again

    def _photo(self, image: Image.Image, session: Hashable) -> Analysis | PhotoJob:
        """The cached analysis, or the photo's job (started here if nobody started it), now waited for by session."""
        key, started = self._key(image), []

        def start() -> PhotoJob:
            job = PhotoJob(key, image, self.pixels(image))
            local = self.remote is None  # a served model's work may run alongside other work
            job.labels = Work(Priority.LABELS, self._run_labels, batch_key=(id(self), "labels"), sessions=job.sessions,
                              payload=job, local=local)
            job.maps = Work(Priority.MAPS, self._run_maps, sessions=job.sessions, on_drop=lambda: self._drop(job),
                            payload=job, local=local)
            started.append(job)
            return job

        found = self.cache.get_or_start(key, start)
        for job in started:  # outside the cache's lock
            job.sessions.add(session)  # before the queue sees it: work nobody waits for is dropped
            self.queue.submit(job.labels)
            self.queue.submit(job.maps)
        return found

    @property
    def holds_passes(self) -> bool:
        """Whether the labels come from the first half of the photo's pass (its graph then held for the maps): not
        where they come from another model than the maps' (int8, compiled, an exported runtime, Ray)."""
        return self.fast_model is self.model and self.runtime_model is None and self.remote is None

    @property
    def held_graph_bytes(self) -> int:
        """The memory of the graphs held between passes' forward and backward now (within `passes_mb`)."""
        return sum(photo_pass.graph_bytes for photo_pass in list(self._open))

    def _room_for(self, photos: int) -> int:
        """How many of `photos` may have their pass's graph held: none where the labels come from another model
        than the maps', else as many as fit the budget beside the graphs held already, by the size a photo's took
        last time (one photo always fits when none is held: a student alone; until a pass has been measured, as
        warm_up measures one, only that one)."""
        if not self.holds_passes:
            return 0
        held = self.held_graph_bytes
        fit = 0 if self.photo_graph_bytes is None else int((self.passes_mb * MB - held) // self.photo_graph_bytes)
        return min(photos, max(fit, 0 if held else 1))

    def _run_labels(self, works: list[Work]) -> list[list[tuple[int, str, float]]]:
        """Labels of the waiting photos: one batched forward that is the first half of their pass (their maps'
        work then runs as one, the pass's backward), for as many as the budget of held graphs allows; the others'
        from one plain batched forward."""
        jobs = [work.payload for work in works]
        held = jobs[:self._room_for(len(jobs))]
        tops = []
        if held:
            with recording_backbone(self.model) as recorded:
                photo_pass = PhotoPass(self.model, torch.cat([job.pixels for job in held]))
            self._open[photo_pass], self.photo_graph_bytes = held, photo_pass.graph_bytes // len(held)
            for row, job in enumerate(held):
                job.photo_pass, job.row, job.backbone = photo_pass, row, of_photo(recorded, row)
                job.maps.batch_key = (id(self), "maps", id(photo_pass))  # (read when the queue takes the work)
            tops += [self._top(logits) for logits in photo_pass.logits]
        if len(held) < len(jobs):
            plain = torch.cat([job.pixels for job in jobs[len(held):]])
            tops += [self._top(row) for row in self._labels_forward(plain)]
        return tops

    def _labels_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, classes) logits from the fastest way this model runs."""
        if self.remote is not None:
            return self.remote.labels(pixels)
        with torch.inference_mode():
            return (self.runtime_model or self.fast_model)(pixels).logits

    def _whole_pass(self, pixels: torch.Tensor) -> tuple[PhotoMaps, list[torch.Tensor]]:
        """A photo's whole pass: its maps and what the guided walk draws of its backbone (recording_backbone)."""
        if self.remote is not None:
            return self.remote.whole_pass(pixels)
        return whole_pass(self.model, pixels)

    def _run_maps(self, works: list[Work]) -> list[Analysis]:
        """The photos' pass completed (one backward for all of them) or one photo's run whole; the analyses go into
        the cache."""
        jobs = [work.payload for work in works]
        photo_pass = jobs[0].photo_pass
        try:
            if photo_pass is None:
                found, jobs[0].backbone = self._whole_pass(jobs[0].pixels)
                analyses = [self._analysis(jobs[0], found)]
            else:
                rows = sorted(job.row for job in jobs)  # the pass's photos nobody waits for any more are skipped
                by_row = dict(zip(rows, photo_pass.photo_by_photo(rows=rows)))
                analyses = [self._analysis(job, by_row[job.row]) for job in jobs]
        except BaseException:
            for job in jobs:
                self.cache.abandon(job.key, job)
            raise
        finally:
            for job in self._open.pop(photo_pass, jobs):  # the pass's other photos too: its graph is spent
                job.photo_pass = None
        for job, analysis in zip(jobs, analyses):
            self.cache.finish(job.key, analysis)
        return analyses

    def _drop(self, job: PhotoJob) -> None:
        """Nobody waits for the photo's maps any more: forget it, and free its pass's graph if no other photo of
        the pass still needs it."""
        photo_pass, job.photo_pass = job.photo_pass, None
        photos = self._open.get(photo_pass, [])
        if job in photos:
            photos.remove(job)
            if not photos:
                self._open.pop(photo_pass, None)
        self.cache.abandon(job.key, job)

    def _top(self, logits: torch.Tensor) -> list[tuple[int, str, float]]:
        probabilities = logits.float().softmax(-1)
        scores, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
        return [(int(i), self.model.config.id2label[int(i)], float(s)) for s, i in zip(scores, indices)]

    def _analysis(self, job: PhotoJob, found) -> Analysis:
        geometry = viz.processor_geometry(self.processor, job.image.size)
        crop = geometry.crop(job.image)
        scale = max(1, -(-DISPLAY_SIZE // min(crop.size)))
        crop = crop.resize((crop.width * scale, crop.height * scale), Image.BICUBIC) if scale > 1 else crop
        top = self._top(found.logits[0])
        maps = {name: found.maps[name][0].cpu() for name in (ROLLOUT, CLASS_MAP, LAST_LAYER, GRAD_CAM)}
        # The distances from the pass's attentions (float32 in this process): on the CPU a third of the time they take
        # from the stored float16 ones, whose conversion is most of it (the API's /maps returns them with every
        # photo's maps; 12 ms per photo of the full-size model on this project's 2-core CPU)
        distances = viz.mean_attention_distance(found.attentions, self.grid, self.crop_hw)[0].cpu()
        analysis = Analysis(crop, geometry, self.grid, top, found.logits[0].float().softmax(-1).cpu(),
                            stored(a.cpu() for a in found.attentions), maps, job.backbone,
                            found.lens[0].float().softmax(-1).cpu(), distances)
        analysis.cams[(top[0][0], "Grad-CAM", self.stage_names[-1])] = found.stage_cam[0].cpu()
        return analysis

    # -- other classes, the Explanation lab -------------------------------------------------------------------
    @property
    def stage_names(self) -> list[str]:
        """The backbone's maps a CAM can be asked of, in order: "stem", "stage1", ..., the token stage last."""
        return self.model.config.backbone_config.stage_names[:len(backbone_stages(self.backbone))]

    def class_map(self, image: Image.Image, class_index: int, session: Hashable = LIBRARY) -> torch.Tensor:
        """The class-specific relevance map (Chefer et al. 2021) of any class; another class than the top one costs
        a pass, which also gives that class's Grad-CAM."""
        analysis = self.analysis(image, session)
        if analysis.class_map(class_index) is None:
            found = self.queue.run(Priority.MORE, lambda: photo_maps(self.model, self.pixels(image), class_index),
                                   session)
            analysis.class_maps[class_index] = found.maps[CLASS_MAP][0].cpu()
            analysis.cams[(class_index, "Grad-CAM", self.stage_names[-1])] = found.stage_cam[0].cpu()
        return analysis.class_map(class_index)

    def backbone_cam(self, image: Image.Image, class_index: int, method: str = "Grad-CAM", stage: str | None = None,
                     session: Hashable = LIBRARY) -> torch.Tensor:
        """(h, w) class activation map of `method` (one of viz.CAM_METHODS) on backbone stage `stage` (one of
        stage_names; default the token stage), on that stage's grid, for `class_index`. Grad-CAM on the token stage
        comes from the photo's pass; other methods and stages from pytorch-grad-cam (the `explain` extra)."""
        analysis = self.analysis(image, session)
        stage = stage or self.stage_names[-1]
        key = (class_index, method, stage)
        if key not in analysis.cams and (method, stage) == ("Grad-CAM", self.stage_names[-1]):
            self.class_map(image, class_index, session)  # its pass gives this Grad-CAM too
        if key not in analysis.cams:
            layer = dict(zip(self.stage_names, backbone_stages(self.backbone)))[stage]
            cam = self.queue.run(Priority.MORE, lambda: viz.backbone_cam(self.model, layer, self.pixels(image),
                                                                         class_index, method), session)
            analysis.cams[key] = cam[0].float()
        return analysis.cams[key]

    def agreement(self, image: Image.Image, class_index: int, method: str = "Grad-CAM", stage: str | None = None,
                  session: Hashable = LIBRARY) -> float:
        """Spearman rank correlation, over the token grid, of the backbone CAM (averaged onto the grid) and the
        transformer's class map for the same class (NaN if either is flat)."""
        cam = viz.pool_to_grid(self.backbone_cam(image, class_index, method, stage, session)[None], self.grid)[0]
        return viz.rank_correlation(cam, self.class_map(image, class_index, session))

    def explanation_maps(self, image: Image.Image, class_index: int,
                         session: Hashable = LIBRARY) -> dict[str, torch.Tensor]:
        """vithybrid.explain's maps for `class_index`, each (rows, cols) on the token grid."""
        analysis = self.analysis(image, session)
        class_map = self.class_map(image, class_index, session)
        cam = analysis.cams[(class_index, "Grad-CAM", self.stage_names[-1])]
        return {ROLLOUT: analysis.maps[ROLLOUT], CLASS_MAP: class_map, LAST_LAYER: analysis.maps[LAST_LAYER],
                GRAD_CAM: viz.pool_to_grid(cam[None], self.grid)[0]}

    def faithfulness(self, image: Image.Image, class_index: int, batch_size: int = FAITHFULNESS_BATCH,
                     session: Hashable = LIBRARY) -> Iterator[viz.FaithfulnessRun]:
        """Deletion and insertion curves (viz.faithfulness_curves) of every map of explanation_maps and a random
        order, yielded after every batch. Each batch waits for its turn on the queue (Priority.LONG), so everything
        else comes first; to cancel, stop iterating (or close the generator): no batch is scored after that."""
        maps = self.explanation_maps(image, class_index, session)

        def scored(batch: torch.Tensor) -> torch.Tensor:
            with self.queue.turn(Priority.LONG, session), torch.inference_mode():
                return self.model(batch).logits

        yield from viz.faithfulness_curves(scored, self.pixels(image), maps, class_index, batch_size=batch_size)

    # -- the guided walk and the ViT paper's Figure 7 --------------------------------------------------------------
    @functools.cached_property
    def facts(self) -> ModelFacts:
        return model_facts(self.name, self.model, self.crop_hw)

    def backbone_picture(self, image: Image.Image, session: Hashable = LIBRARY) -> Image.Image:
        """Stem and stage activations, then the token norms: how the image becomes a grid of tokens."""
        return pictures.backbone_picture(self.analysis(image, session), self.crop_hw, self.facts.maps,
                                         self.model.config.hidden_size)

    def distance_picture(self, image: Image.Image, session: Hashable = LIBRARY) -> Image.Image:
        return pictures.distance_picture(self.analysis(image, session), self.crop_hw)

    @functools.cached_property
    def position_picture(self) -> Image.Image:
        return pictures.position_picture(self.model)

    @functools.cached_property
    def filter_picture(self) -> Image.Image:
        return pictures.filter_picture(self.model)

    # -- timing -------------------------------------------------------------------------------------------------
    def time_paths(self, image: Image.Image, batch: int, repeats: int, session: Hashable = LIBRARY) -> TimingRow:
        """Eager vs SDPA for `batch` copies of this image. Each run waits for its own turn (Priority.LONG), so a
        class's labels and maps go between the runs of a long timing instead of waiting for all of it."""
        return time_batch(self.fast_model, self.pixels(image), batch, repeats=repeats,
                          lock=lambda: self.queue.turn(Priority.LONG, session))

    def logit_difference(self, image: Image.Image, session: Hashable = LIBRARY) -> float:
        return self.queue.run(Priority.LONG, lambda: max_logit_difference(self.fast_model, self.pixels(image)),
                              session)

    def environment(self) -> str:
        on_gpu = self.device.type == "cuda"
        device = torch.cuda.get_device_name(self.device) if on_gpu else platform.processor() or "CPU"
        numbers = {"none": str(self.dtype).split('.')[-1], "int8": "int8 linear layers",
                   "compile": f"{str(self.dtype).split('.')[-1]}, torch.compile"}[self.speed]
        return f"{device} ({self.device.type}), {numbers}, torch {torch.__version__}, {torch.get_num_threads()} threads"
