"""A whole class at once: every map from one pass (equal to the separate recipes and to pytorch-grad-cam), the work
queue's order (labels first, batched, from their passes' forward while the held graphs fit their budget; a closed
tab's work dropped), and the cache that holds a class (its budget, float16 attention within the stated bound).
Orders are recorded, never timed."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import missing
from helpers import plain_top5, tiny_model
from PIL import Image

import visualization as viz
from vithybrid.explain import CLASS_MAP, GRAD_CAM, LAST_LAYER, ROLLOUT, PhotoPass, grad_cam, photo_maps
from vithybrid.model.backbone import token_stage


def grad_cam_library():
    """pytorch_grad_cam: a failure under CI=true (CI installs it), a skip elsewhere."""
    try:
        import pytorch_grad_cam
    except ImportError:
        missing("pytorch-grad-cam (pip install grad-cam) is not installed")
    return pytorch_grad_cam


def shapes(count: int, seed: int = 7) -> list[Image.Image]:
    from vithybrid.training.shapes import sample

    return [sample(seed=seed, index=i, size=96).image.convert("RGB") for i in range(count)]


def wait_until(condition, what: str, limit_s: float = 120) -> None:
    """Wait for a state another thread reaches (the limit only turns a hang into a failure)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.005)


# ----------------------------------------------------------------------------------- one pass, every map

@pytest.mark.parametrize("dtype, tolerance, implementation", [(torch.float64, 1e-6, "sdpa"),
                                                              (torch.float32, 1e-4, "sdpa"),
                                                              (torch.float32, 1e-4, "eager")])
def test_one_pass_gives_every_map_as_the_separate_recipes_do(dtype, tolerance, implementation):
    """Rollout, the class map of every top-5 class and last-layer attention equal the recipe the app used before
    (attention_with_gradients + visualization), and so does every layer's attention (recomputed from the queries
    and keys, every row of the last layer too); Grad-CAM equals pytorch-grad-cam's on the token stage. Whichever
    attention the model is set to run."""
    grad_cam_library()
    model = tiny_model(seed=3).to(dtype).requires_grad_(False)
    model.set_attn_implementation(implementation)
    pixels = torch.randn(2, 3, model.config.image_size, model.config.image_size, dtype=dtype)
    grid = model.config.grid_size
    stage = token_stage(model.vit.embeddings.patch_embeddings.backbone)
    for class_index in model(pixels).logits[0].topk(5).indices.tolist():
        found = photo_maps(model, pixels, class_index)
        old = model.attention_with_gradients(pixels, class_index)
        expected = {ROLLOUT: viz.cls_map(viz.attention_rollout(old.attentions, rows=[0]), grid),
                    CLASS_MAP: viz.cls_map(viz.class_relevance(old.attentions, old.gradients, rows=[0]), grid),
                    LAST_LAYER: viz.raw_attention(old.attentions, grid),
                    GRAD_CAM: viz.backbone_cam(model, stage, pixels, class_index).to(dtype)}
        for name, value in expected.items():
            torch.testing.assert_close(found.maps[name].to(dtype), value, atol=tolerance, rtol=tolerance, msg=name)
        torch.testing.assert_close(found.logits, old.logits)
        for layer, (attention, expected_attention) in enumerate(zip(found.attentions, old.attentions)):
            torch.testing.assert_close(attention.to(dtype), expected_attention, atol=tolerance, rtol=tolerance,
                                       msg=f"layer {layer}")
        assert found.class_index.tolist() == [class_index] * 2


def test_grad_cam_is_pytorch_grad_cams_arithmetic():
    """From the same activations and gradients, our Grad-CAM equals pytorch-grad-cam's own GradCAM weighting and
    scaling (float64 numpy there)."""
    gradcam = grad_cam_library()
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(3, 16, 5, 7, generator=generator, dtype=torch.float64)
    gradients = torch.randn(3, 16, 5, 7, generator=generator, dtype=torch.float64) * 1e-3  # small: scaling shows
    from pytorch_grad_cam.utils.image import scale_cam_image

    library = gradcam.GradCAM.__new__(gradcam.GradCAM)  # only its arithmetic: no model needed
    library.activations_and_grads = SimpleNamespace(release=lambda: None)  # what its __del__ releases
    cam = library.get_cam_image(None, None, None, activations.numpy(), gradients.numpy(), False)
    expected = scale_cam_image(scale_cam_image(np.maximum(cam, 0)))  # the layer's map, then the layers' mean
    np.testing.assert_allclose(grad_cam(activations, gradients).numpy(), expected, atol=1e-6)


def test_the_labels_are_there_before_the_backward():
    """PhotoPass: the logits after the forward equal a plain forward's; maps() runs one backward, once."""
    model = tiny_model(seed=5).requires_grad_(False)
    pixels = torch.randn(1, 3, model.config.image_size, model.config.image_size)
    photo = PhotoPass(model, pixels)
    with torch.inference_mode():
        torch.testing.assert_close(photo.logits, model(pixels).logits, atol=1e-5, rtol=1e-5)
    maps = photo.maps()
    assert set(maps.maps) == {ROLLOUT, CLASS_MAP, LAST_LAYER, GRAD_CAM}
    with pytest.raises(RuntimeError, match="runs once"):
        photo.maps()


def test_photo_by_photo_gives_each_photos_maps_of_the_batch():
    """photo_by_photo() (the Explorer's way through a batch's pass) gives, photo by photo, what maps() gives."""
    model = tiny_model(seed=5).requires_grad_(False)
    pixels = torch.randn(3, 3, model.config.image_size, model.config.image_size)
    whole = PhotoPass(model, pixels).maps()
    for row, photo in enumerate(PhotoPass(model, pixels).photo_by_photo()):
        torch.testing.assert_close(photo.logits, whole.logits[row:row + 1])
        torch.testing.assert_close(photo.lens, whole.lens[row:row + 1])
        torch.testing.assert_close(photo.stage_cam, whole.stage_cam[row:row + 1])
        for name in whole.maps:
            torch.testing.assert_close(photo.maps[name], whole.maps[name][row:row + 1], msg=name)
        for ours, batch in zip(photo.attentions, whole.attentions):
            torch.testing.assert_close(ours, batch[row:row + 1])
    assert row == 2
    # Some of the photos only (the others' left): theirs, in the batch's order
    some = list(PhotoPass(model, pixels).photo_by_photo(rows=[2, 0]))
    assert len(some) == 2
    for photo, row in zip(some, (0, 2)):
        torch.testing.assert_close(photo.maps[CLASS_MAP], whole.maps[CLASS_MAP][row:row + 1])
        torch.testing.assert_close(photo.logits, whole.logits[row:row + 1])


def test_a_pass_counts_the_activations_its_graph_holds_not_the_weights():
    """graph_bytes (what the Explorer's budget of held passes counts) grows with the batch, by about the same
    amount per image: the weights the graph also refers to are not counted."""
    model = tiny_model(seed=5).requires_grad_(False)
    sizes = [PhotoPass(model, torch.randn(batch, 3, model.config.image_size, model.config.image_size)).graph_bytes
             for batch in (1, 2, 4)]
    assert 0 < sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] - sizes[1] == pytest.approx(2 * (sizes[1] - sizes[0]), rel=0.1)
    assert sizes[0] == pytest.approx(sizes[1] - sizes[0], rel=0.1)  # nothing counted that is not per image


def test_a_pass_refuses_a_model_in_training_mode():
    """Dropout would make the maps explain another forward than the one whose logits the pass returns."""
    model = tiny_model(seed=5).train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        PhotoPass(model, torch.randn(1, 3, model.config.image_size, model.config.image_size))


# ------------------------------------------------------------------------------------------- the queue

@pytest.fixture
def explorer():
    """The shapes model on a queue of its own (tests here hold it and read the order of its runs)."""
    from explorer import Explorer, WorkQueue

    return Explorer("shapes", queue=WorkQueue(max_batch=8))


def forwards(explorer) -> list[int]:
    """A growing list of the batch sizes of the model's forwards (a hook on its embeddings)."""
    sizes = []
    explorer.model.vit.embeddings.register_forward_hook(lambda module, args, output: sizes.append(len(output)))
    return sizes


def test_a_student_alone_pays_one_pass_for_labels_and_maps(explorer):
    sizes = forwards(explorer)
    photo = shapes(1)[0]
    top = explorer.labels(photo)
    analysis = explorer.analysis(photo)
    assert analysis.top == top and sizes == [1]  # one forward for both
    assert list(explorer.queue.ran) == [(0, 1), (1, 1)]  # labels (the forward), then maps (the backward)
    rendered = [analysis.rollout("max", 0.5), explorer.analysis(photo).maps[ROLLOUT], explorer.labels(photo)]
    assert sizes == [1] and len(explorer.queue.ran) == 2 and rendered[2] == top  # the cache: no more runs


def test_an_uploaded_photo_is_labelled_before_its_event_asks_and_still_once(explorer):
    """Explorer.prefetch (an upload arrived, the model idle) starts the photo's pass; a session that asks while its
    labels run waits for that forward: one forward for the labels and the maps, as without the prefetch."""
    from explorer import Priority

    sizes, entered, release = forwards(explorer), threading.Event(), threading.Event()

    def held(*_):  # the forward waits here until the student has asked
        entered.set()
        release.wait(60)

    hold = explorer.model.vit.embeddings.register_forward_pre_hook(held)
    photo, answers = shapes(1)[0], {}
    assert explorer.queue.idle and explorer.prefetch(photo)
    assert entered.wait(60) and not explorer.queue.idle  # its labels' forward is under way, nobody has asked yet
    student = threading.Thread(target=lambda: answers.update(top=explorer.labels(photo, session="student"),
                                                              analysis=explorer.analysis(photo, session="student")))
    student.start()
    job = explorer._photo(photo, "student")  # the photo's job under way (its sessions: whoever waits for it)
    wait_until(lambda: "student" in job.sessions, "the student waiting for the photo")
    release.set()
    student.join(120)
    hold.remove()
    assert sizes == [1] and answers["analysis"].top == answers["top"]
    assert [index for index, _, _ in answers["top"]] == [index for index, _, _ in plain_top5(explorer, photo)]
    assert list(explorer.queue.ran)[:2] == [(Priority.LABELS, 1), (Priority.MAPS, 1)] and explorer.queue.idle


def test_an_uploaded_photo_asked_about_after_its_pass_costs_nothing_more(explorer):
    """The upload waits for its photo's whole pass: a session that asks only once it is done (a fast model, a slow
    network) finds the analysis cached. Nothing stays held; a busy model, a cached photo or a model served
    elsewhere is not prefetched."""
    from explorer import Priority

    sizes, photo, other = forwards(explorer), *shapes(2)
    assert explorer.prefetch(photo)
    wait_until(lambda: explorer.queue.idle and explorer.cache.pending == 0, "the upload's pass done")
    assert list(explorer.queue.ran) == [(Priority.LABELS, 1), (Priority.MAPS, 1)] and explorer.held_graph_bytes == 0
    assert explorer.labels(photo, session="late") == explorer.analysis(photo, session="late").top and sizes == [1]
    assert not explorer.prefetch(photo) and len(explorer.queue.ran) == 2  # cached: nothing to start
    with explorer.queue.turn(Priority.LONG):
        assert not explorer.queue.idle and not explorer.prefetch(other) and explorer.queue.waiting == 0
    explorer.remote = object()  # Ray Serve replicas: the queue's workers may run a photo's maps beside its labels
    assert not explorer.prefetch(other) and explorer.queue.waiting == 0 and sizes == [1]


def test_warming_up_runs_both_ways_once_on_the_serving_thread_and_keeps_nothing(explorer):
    from explorer import Priority

    sizes, passes = forwards(explorer), []
    explorer.model.vit.encoder.register_forward_hook(
        lambda *_: passes.append((torch.is_grad_enabled(), threading.current_thread().name)))
    explorer.warm_up()
    assert sizes == [1, 1] and [grad for grad, _ in passes] == [False, True]  # the labels' forward, then a pass
    assert list(explorer.queue.ran) == [(Priority.LABELS, 1)]  # one turn of the queue...
    assert len(explorer.cache) == 0 and explorer.held_graph_bytes == 0  # ...that keeps nothing
    explorer.labels(shapes(1)[0])
    assert {thread for _, thread in passes} == {passes[-1][1]}  # on the thread that then serves a student
    assert passes[-1][1] != threading.current_thread().name


def test_warming_up_reserves_the_memory_of_a_class_of_held_graphs_where_graphs_are_held(explorer, monkeypatch):
    from explorer import runs

    asked = []
    monkeypatch.setattr(runs, "reserve_memory", asked.append)
    explorer.warm_up()
    class_mb = runs.CLASS_SIZE * explorer.photo_graph_bytes / 2 ** 20
    assert asked == [pytest.approx(min(explorer.passes_mb, class_mb))]
    explorer.passes_mb = class_mb / 2
    explorer.warm_up()
    assert asked[-1] == pytest.approx(class_mb / 2)  # never more than the budget
    explorer.runtime_model = explorer.model  # labels from another model: no graph is ever held, nothing reserved
    explorer.warm_up()
    assert len(asked) == 2


def six_students_while_busy(explorer):
    """Six students upload while the model is busy (a timing run, say). Returns (the queue's runs after the busy
    turn as (priority, batch size), the batch sizes of the model's forwards, whether each came first as labels
    or maps, in order); each student got the labels and maps of its own photo."""
    from explorer import Priority

    photos = shapes(6)
    expected = [plain_top5(explorer, photo) for photo in photos]
    sizes = forwards(explorer)
    labels, maps, answered = {}, {}, []

    def student(i):
        labels[i] = explorer.labels(photos[i], session=f"student{i}")
        answered.append("labels")
        maps[i] = explorer.analysis(photos[i], session=f"student{i}")
        answered.append("maps")

    before = len(explorer.queue.ran)  # a warm-up's run, say
    with explorer.queue.turn(Priority.LONG):
        threads = [threading.Thread(target=student, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: explorer.queue.waiting == 12, "every photo's labels and maps waiting")
    for thread in threads:
        thread.join(120)
    for i in range(6):
        assert [index for index, _, _ in labels[i]] == [index for index, _, _ in expected[i]]
        assert maps[i].top[0][0] == expected[i][0][0]
    return list(explorer.queue.ran)[before + 1:], sizes, answered


def test_under_load_every_waiting_students_labels_come_before_anyones_maps(explorer):
    """The labels of every waiting photo come from one batched forward, the first half of their pass, and all
    their maps from its one backward: no photo is forwarded twice, and no graph is held after."""
    from explorer import Priority

    explorer.warm_up()  # a pass measured: the budget knows a photo's graph
    ran, sizes, answered = six_students_while_busy(explorer)
    assert ran == [(Priority.LABELS, 6), (Priority.MAPS, 6)]
    assert sizes == [6] and answered[:6] == ["labels"] * 6 and explorer.held_graph_bytes == 0


def test_past_the_budget_of_held_passes_labels_come_from_a_plain_forward():
    """With room for two held graphs, two photos' labels open their pass; the others' come from a plain forward
    (no graph held) in the same labels' run, and their passes run whole after every label: one more forward
    each."""
    from explorer import Explorer, Priority, WorkQueue

    explorer = Explorer("shapes", queue=WorkQueue(max_batch=8))
    explorer.warm_up()
    explorer.passes_mb = 2.5 * explorer.photo_graph_bytes / 2 ** 20
    grads = []
    explorer.model.vit.encoder.register_forward_hook(lambda *_: grads.append(torch.is_grad_enabled()))
    ran, sizes, answered = six_students_while_busy(explorer)
    assert ran == [(Priority.LABELS, 6), (Priority.MAPS, 2)] + [(Priority.MAPS, 1)] * 4
    grads = grads[6:]  # after the expected answers' own forwards
    assert sizes == [2, 4, 1, 1, 1, 1] and grads == [True, False] + [True] * 4 and answered[:6] == ["labels"] * 6


def test_where_batches_pay_the_waiting_labels_come_from_one_forward(explorer):
    """Where the labels come from another model than the maps' (an exported runtime here; int8, compiled or Ray
    alike), the labels of every waiting photo come from one batched forward, then each photo's pass runs whole."""
    from explorer import Priority

    explorer.runtime_model = explorer.model  # a runtime that answers as the model does
    ran, sizes, answered = six_students_while_busy(explorer)
    assert ran == [(Priority.LABELS, 6)] + [(Priority.MAPS, 1)] * 6
    assert sizes == [6] + [1] * 6 and answered[:6] == ["labels"] * 6


def test_a_closed_tab_frees_its_place(explorer):
    """Work only a session that left was waiting for is dropped unrun; its waiter is told."""
    from explorer import Priority, SessionLeft

    photo, other = shapes(2)
    outcome = {}

    def waiting(name, image):
        try:
            outcome[name] = explorer.analysis(image, session=name)
        except SessionLeft as left:
            outcome[name] = left

    with explorer.queue.turn(Priority.LONG):
        threads = [threading.Thread(target=waiting, args=(name, image)) for name, image in
                   (("gone", photo), ("staying", other))]
        for thread in threads:
            thread.start()
        wait_until(lambda: explorer.queue.waiting == 4, "both photos waiting")
        explorer.queue.forget_session("gone")
    for thread in threads:
        thread.join(120)
    assert isinstance(outcome["gone"], SessionLeft) and outcome["staying"].top
    assert len(explorer.queue.ran) == 3  # the turn, the staying photo's labels and maps; nothing for "gone"
    assert explorer.cached(photo) is None and explorer.cached(other) is not None
    assert explorer.analysis(photo).top  # asked again later: analysed then


def test_a_photo_asked_for_by_many_at_once_is_analysed_once(explorer):
    from explorer import Priority

    photo = shapes(1)[0]
    sizes = forwards(explorer)
    results = []
    with explorer.queue.turn(Priority.LONG):
        threads = [threading.Thread(target=lambda i=i: results.append(explorer.analysis(photo, session=f"s{i % 3}")))
                   for i in range(8)]
        for thread in threads:
            thread.start()
        wait_until(lambda: explorer.queue.waiting == 2, "the photo's labels and maps waiting")
    for thread in threads:
        thread.join(120)
    assert len(results) == 8 and all(r is results[0] for r in results) and sizes == [1]


# ------------------------------------------------------------------------------------------- the cache

def test_the_cache_keeps_what_fits_its_budget_newest_first():
    from explorer import AnalysisCache

    cache = AnalysisCache(budget_mb=3, size_of=lambda value: value * 2 ** 20)
    for key, size in [("a", 1), ("b", 1), ("c", 1)]:
        cache.finish(key, size)
    assert cache.get("a") == 1  # now the most recently used
    cache.finish("d", 1)
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.bytes == 3 * 2 ** 20
    cache.finish("huge", 5)  # larger than the budget alone: kept, everything else goes
    assert len(cache) == 1 and cache.get("huge") == 5
    started = []
    pending = cache.get_or_start("e", lambda: started.append(1) or "job")
    assert pending == "job" and cache.get_or_start("e", lambda: started.append(1) or "other") == "job"
    assert started == [1]  # started once, found pending after
    cache.abandon("e", "job")
    assert cache.get_or_start("e", lambda: "again") == "again"


def test_the_explorer_cache_holds_n_analyses_within_its_budget(explorer):
    from explorer import Explorer, WorkQueue

    one = explorer.analysis(shapes(1, seed=11)[0]).nbytes
    small = Explorer("shapes", cache_mb=3.5 * one / 2 ** 20, queue=WorkQueue())
    photos = shapes(6, seed=12)
    for photo in photos:
        small.analysis(photo)
    assert len(small.cache) == 3 and small.cache.bytes <= small.cache.budget_bytes
    assert all(small.cached(photo) is not None for photo in photos[-3:])


def test_the_default_budget_follows_the_machine_and_can_be_set(monkeypatch):
    from explorer.cache import MEMORY_SHARE, default_budget_mb, machine_memory_mb

    monkeypatch.delenv("VITHYBRID_CACHE_MB", raising=False)
    assert default_budget_mb() == pytest.approx(MEMORY_SHARE * machine_memory_mb())
    assert 16 * 1024 * MEMORY_SHARE / 96 >= 32  # a 16 GB Space holds 32 students' full-size analyses (96 MB)
    monkeypatch.setenv("VITHYBRID_CACHE_MB", "1234")
    assert default_budget_mb() == 1234
    monkeypatch.setenv("VITHYBRID_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="VITHYBRID_CACHE_MB"):
        default_budget_mb()


def test_float16_attention_draws_the_same_pictures_within_the_stated_bound(explorer):
    """Maps computed from the stored float16 attention, normalized as they are drawn, stay within 2/255 of the
    float32 ones (a colormap step is 1/255), for every fusion and discard ratio; the full-size model's attention
    (96 MB per photo in float16) is half of float32's."""
    photo = shapes(1, seed=21)[0]
    analysis = explorer.analysis(photo)
    exact = explorer.model.attention_with_gradients(explorer.pixels(photo)).attentions
    for fusion in viz.HEAD_FUSIONS:
        for discard in (0.0, 0.5, 0.9):
            stored = viz.normalize(viz.cls_map(viz.attention_rollout(analysis.attentions, fusion, discard, rows=[0]),
                                               analysis.grid)[0])
            float32 = viz.normalize(viz.cls_map(viz.attention_rollout(exact, fusion, discard, rows=[0]),
                                                analysis.grid)[0])
            assert np.abs(stored - float32).max() <= 2 / 255, (fusion, discard)
    for layer in range(len(exact)):
        stored = viz.normalize(viz.raw_attention(analysis.attentions, analysis.grid, layer, 5)[0])
        assert np.abs(stored - viz.normalize(viz.raw_attention(exact, analysis.grid, layer, 5)[0])).max() <= 2 / 255
    assert analysis.attentions.nbytes == sum(a.numel() for a in exact) * 2
