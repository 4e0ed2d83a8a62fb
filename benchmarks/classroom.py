"""A class at once, on loopback only: N students upload their own photos within the same moment, API clients
(`/classify`, then `/maps`) and a few real browser pages (upload, wait for the labels and the rollout, then move
the opacity slider), against the app served in this process with the full-size architecture (random weights).

    python benchmarks/classroom.py [--students 1 8 24] [--browsers 2] [--model FOLDER] [--json FILE] [--nice 19]
                                   [--ray [ADDRESS] [--replicas N]]

The API clients run in a process of their own (students' programs are not the server's), the browsers in
Chromium's; both at the lowest CPU priority (nice 19): in a classroom they run on the students' machines, so here
they take only what the server leaves, while still sharing this machine's cores with it. Then a student's own steps
(sending its request, reading the answer, drawing the page) wait while the server computes, as they would not on
its own machine: `--nice 0` runs them at the server's priority instead, which for a student alone is the nearer
picture (for a class, the students would then take the server's CPU). A student alone is measured as an API client,
then as a browser page, each ALONE_ROUNDS times one after another (another photo each time, on the same server).
The server starts as `python app.py` starts it (malloc setting, warm-up pass).

Prints, per class size: labels p50/p95 and labels + maps p50/p95 (seconds from the upload, and as multiples of
one SDPA forward measured in the same run, on the served model, idle, the mean of one just before the round and one
just after: a student alone's rounds each against its own, since this machine's speed moves within minutes),
re-render p50/p95 after everyone has uploaded (slider moves in the browsers), how many re-renders ran the model,
images forwarded per student, and the process's peak resident memory. Every answer is checked against the
student's own photo. Run it from another checkout (PYTHONPATH=that checkout) to measure that version the same way.

With --ray, the app sends its labels and passes to Ray Serve replicas as `python app.py --ray` does (deployed
afresh for each class, before its clock starts); the images forwarded and the peak memory are then this process's
only (the replicas' forwards and memory are not counted).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "OMP_WAIT_POLICY" not in os.environ:  # as app.py serves
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from vithybrid import ViTHybridConfig, ViTHybridForImageClassification, ViTHybridImageProcessor  # noqa: E402
from vithybrid.training.shapes import sample  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, as the tests find it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                # every page is a student's own foreground window, not a background tab Chromium slows down
                "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
                "--disable-renderer-backgrounding"]
SLIDER_MOVES = 4  # per browser page, after every student has uploaded
DEADLINE_S = 1800  # one class size's whole run: a bound, not a target
ALONE_ROUNDS = 9  # a student alone is one sample of a noisy machine: measured this many times


@dataclass
class ClassResult:
    students: int
    forward_s: list[float]  # per round, one SDPA forward at batch 1, idle (the mean of one before it and one after)
    browsers: int = 0  # of the students, how many were browser pages (the others: API clients)
    labels_s: list[float] = field(default_factory=list)  # upload -> labels, per student
    maps_s: list[float] = field(default_factory=list)  # upload -> labels and maps, per student
    rerender_s: list[float] = field(default_factory=list)  # slider move -> new picture
    rerender_model_runs: int = 0  # model forwards while re-rendering
    images_forwarded: int = 0  # during the class, all students
    peak_rss_mb: float = 0.0
    wrong: list[str] = field(default_factory=list)
    rounds: int = 1  # a student alone: how many times, one after another
    labels_x: list[float] = field(default_factory=list)  # labels_s in multiples of its round's forward
    maps_x: list[float] = field(default_factory=list)  # maps_s likewise

    def add(self, other: ClassResult) -> ClassResult:
        """This result and a later round's, as one (the images forwarded per student stay per student)."""
        return ClassResult(self.students, self.forward_s + other.forward_s, self.browsers,
                           self.labels_s + other.labels_s, self.maps_s + other.maps_s,
                           self.rerender_s + other.rerender_s, self.rerender_model_runs + other.rerender_model_runs,
                           self.images_forwarded + other.images_forwarded, max(self.peak_rss_mb, other.peak_rss_mb),
                           self.wrong + other.wrong, self.rounds + other.rounds, self.labels_x + other.labels_x,
                           self.maps_x + other.maps_x)

    def against(self, forward_s: float) -> ClassResult:
        """This round's result (itself, changed) with its times as multiples of `forward_s` too."""
        self.forward_s = [forward_s]
        self.labels_x = [seconds / forward_s for seconds in self.labels_s]
        self.maps_x = [seconds / forward_s for seconds in self.maps_s]
        return self


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def full_size_checkpoint(folder: Path) -> Path:
    """google/vit-hybrid-base-bit-384's architecture with random weights, and its processor, in the Hub layout."""
    torch.manual_seed(0)
    ViTHybridForImageClassification(ViTHybridConfig(image_size=384, num_labels=1000)).save_pretrained(folder)
    ViTHybridImageProcessor(size={"shortest_edge": 384}, crop_size=384, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def photos(count: int, folder: Path) -> list[Path]:
    """One distinct photo per student."""
    files = []
    for index in range(count):
        path = folder / f"student{index:02d}.png"
        sample(seed=777, index=index, size=448).image.save(path)
        files.append(path)
    return files


def serve(explorer):
    """The app as `python app.py` serves it, on a free loopback port; returns (demo, url)."""
    import app

    if hasattr(explorer, "warm_up"):  # an earlier version had none
        explorer.warm_up()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(explorer)
    options = dict(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    if hasattr(app, "serve"):
        app.serve(demo, **options)
    else:  # an earlier version: its queue and launch settings, for measuring it the same way
        demo.queue(default_concurrency_limit=1, max_size=app.QUEUE_SIZE)
        demo.launch(**options, **app.LAUNCH_OPTIONS)
    return demo, f"http://127.0.0.1:{port}/"


def one_forward_s(model, pixels: torch.Tensor, repeats: int = 3) -> float:
    with torch.inference_mode():
        model(pixels)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(pixels)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def expected_labels(explorer, files: list[Path]) -> list[dict[str, float]]:
    """Each photo's top-5 from a plain forward, outside the app (its cache stays empty)."""
    from vithybrid.images import load_image

    answers = []
    with torch.inference_mode():
        for path in files:
            probabilities = explorer.model(explorer.pixels(load_image(path))).logits.float().softmax(-1)[0]
            answers.append({explorer.model.config.id2label[i]: p for i, p in enumerate(probabilities.tolist())})
    return answers


def check(answer: dict[str, float], expected: dict[str, float], who: str, result: ClassResult) -> None:
    """The answered top-5 are the photo's own: each probability as a plain forward gives it (paths and batch sizes
    round differently, hence the tolerance)."""
    wrong = [label for label, p in answer.items() if abs(expected.get(label, -1) - p) > 1e-3]
    if wrong:
        result.wrong.append(f"{who}: {wrong[:2]}")


def api_student(url: str, path: Path, expected: dict, ready: threading.Barrier, start, result: ClassResult,
                who: str) -> None:
    client = Client(url, verbose=False)
    ready.wait()
    start.wait()
    began = time.perf_counter()
    labels = client.predict(handle_file(str(path)), api_name="/classify")
    result.labels_s.append(time.perf_counter() - began)
    maps = client.predict(handle_file(str(path)), api_name="/maps")
    result.maps_s.append(time.perf_counter() - began)
    check({c["label"]: c["confidence"] for c in labels["confidences"]}, expected, who, result)
    check(maps["labels"], expected, who + " /maps", result)


def api_students(url: str, students: list[tuple[str, Path, dict]], ready, start, answers, nice: int) -> None:
    """In a process of its own: one thread per (name, photo, expected top-5) student, each with its client
    connected before `ready` is set; all go at `start`; (labels_s, maps_s, wrong) is put on `answers`."""
    os.nice(nice)  # a student's program, not the server's work (see the module's docstring)
    result = ClassResult(len(students), [])
    connected = threading.Barrier(len(students) + 1)
    threads = [threading.Thread(target=api_student, args=(url, path, expected, connected, start, result, who))
               for who, path, expected in students]
    for thread in threads:
        thread.start()
    connected.wait()
    ready.set()
    for thread in threads:
        thread.join()
    answers.put((result.labels_s, result.maps_s, result.wrong))


def browser_students(pages, files: list[Path], expected: list[dict], result: ClassResult) -> None:
    """The pages upload together; each one's labels and rollout are timed when they appear (polled, so that no page
    waits behind another's)."""
    began = {}
    for i, page in enumerate(pages):
        page.locator("#inp input[type=file]").set_input_files(str(files[i]))
        began[i] = time.perf_counter()
    tops = [max(answer, key=answer.get) for answer in expected]
    waiting_labels, waiting_maps = set(began), set(began)
    deadline = time.monotonic() + DEADLINE_S
    while (waiting_labels or waiting_maps) and time.monotonic() < deadline:
        for i in sorted(waiting_labels):
            if pages[i].locator("#labels").get_by_text(tops[i], exact=True).count():
                result.labels_s.append(time.perf_counter() - began[i])
                waiting_labels.discard(i)
        for i in sorted(waiting_maps):
            if pages[i].locator("#rollout img").count() and pages[i].locator("#rollout img").is_visible():
                result.maps_s.append(time.perf_counter() - began[i])
                waiting_maps.discard(i)
        time.sleep(0.05)
    result.wrong += [f"browser{i}: no labels" for i in waiting_labels] + [f"browser{i}: no maps" for i in waiting_maps]


def move_slider(page, value: float, result: ClassResult) -> None:
    page.bring_to_front()  # the student looks at its own page (a background tab draws no frames)
    picture = page.locator("#rollout img")
    before = picture.get_attribute("src")
    began = time.perf_counter()
    page.locator("#alpha input[type=range]").fill(str(value))
    page.wait_for_function("([sel, src]) => document.querySelector(sel)?.getAttribute('src') !== src",
                           arg=["#rollout img", before], timeout=DEADLINE_S * 1000, polling=20)
    result.rerender_s.append(time.perf_counter() - began)


def niced_chromium(nice: int, folder: Path) -> str:
    """A launcher, written in `folder`, that runs Chromium at `nice` (the students' browsers are not the server's work).
    Playwright starts it in a session of its own, which Linux schedules as a group of its own (autogroup) beside the
    server's, whatever the processes' nice values: the group is set to `nice` too."""
    launcher = folder / "chromium"
    launcher.write_text(f'#!/bin/sh\necho {nice} > /proc/self/autogroup 2>/dev/null\n'
                        f'exec nice -n {nice} {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def run_class(explorer, url: str, files: list[Path], expected: list[dict], browsers: int, playwright,
              nice: int = 19) -> ClassResult:
    result = ClassResult(len(files), [], browsers=min(browsers, len(files)))
    images = []
    hook = explorer.model.vit.embeddings.register_forward_hook(lambda module, args, out: images.append(len(out)))
    in_browser = result.browsers
    spawn = multiprocessing.get_context("spawn")
    ready, start, answers = spawn.Event(), spawn.Event(), spawn.Queue()
    students = [(f"student{i}", files[i], expected[i]) for i in range(in_browser, len(files))]
    clients = spawn.Process(target=api_students, args=(url, students, ready, start, answers, nice),
                            daemon=True)
    with contextlib.ExitStack() as cleanup:  # each step undone, the last first, whatever fails
        cleanup.callback(hook.remove)
        if students:
            clients.start()
            cleanup.callback(lambda: clients.is_alive() and clients.kill())
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))  # the launcher and the browser's profile
        context = playwright.chromium.launch_persistent_context(
            scratch / "profile", executable_path=niced_chromium(nice, scratch), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        cleanup.callback(context.close)
        pages = []
        for _ in range(in_browser):  # pages open before the API students start, so all upload together
            pages.append(context.new_page())
            pages[-1].goto(url)
            pages[-1].locator("#inp input[type=file]").wait_for(state="attached", timeout=120_000)
        if students and not ready.wait(120):
            raise SystemExit("classroom.py: the API clients did not connect within 2 minutes")
        start.set()
        browser_students(pages, files, expected, result)
        if students:
            labels_s, maps_s, wrong = answers.get(timeout=DEADLINE_S)
            result.labels_s += labels_s
            result.maps_s += maps_s
            result.wrong += wrong
            clients.join(60)
        result.images_forwarded = sum(images)
        before = sum(images)
        for move in range(SLIDER_MOVES):
            for page in pages:
                move_slider(page, round(0.3 + 0.1 * move, 2), result)
        result.rerender_model_runs = sum(images) - before
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def report(result: ClassResult) -> str:
    labels, labels_x = ([percentile(values, q) for q in (0.5, 0.95)] for values in (result.labels_s, result.labels_x))
    maps, maps_x = ([percentile(values, q) for q in (0.5, 0.95)] for values in (result.maps_s, result.maps_x))
    rerender = [percentile(result.rerender_s, q) for q in (0.5, 0.95)]
    who = (str(result.students) if result.students > 1
           else f"1, browser ({result.rounds} times)" if result.browsers else f"1, API client ({result.rounds} times)")
    return (f"| {who} | {labels[0]:.1f} s / {labels[1]:.1f} s ({labels_x[0]:.2f}x / {labels_x[1]:.2f}x) "
            f"| {maps[0]:.1f} s / {maps[1]:.1f} s ({maps_x[0]:.2f}x / {maps_x[1]:.2f}x) "
            f"| {rerender[0]:.2f} s / {rerender[1]:.2f} s | {result.rerender_model_runs} "
            f"| {result.images_forwarded / (result.students * result.rounds):.1f} | {result.peak_rss_mb:.0f} MB "
            f"| {len(result.wrong)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--browsers", type=int, default=2, help="of the students, how many are real browser pages")
    parser.add_argument("--model", help="a checkpoint folder (default: the full-size architecture, random weights)")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="serve the model on Ray Serve replicas, as app.py --ray (alone: a local Ray)")
    parser.add_argument("--replicas", type=int, default=1, help="with --ray: model replicas")
    parser.add_argument("--nice", type=int, default=19, choices=range(20), metavar="0-19",
                        help="the students' CPU priority (default 19: they take what the server leaves)")
    args = parser.parse_args(argv)
    keep_freed_memory = getattr(importlib.import_module("vithybrid.optimize"), "keep_freed_memory", None)
    if keep_freed_memory is not None:  # as app.py serves (an earlier version's library set it by itself)
        keep_freed_memory()

    from playwright.sync_api import sync_playwright

    from explorer import Explorer

    results = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        model = args.model or str(full_size_checkpoint(Path(folder) / "model"))
        files = photos(max(*args.students, ALONE_ROUNDS), Path(folder))
        print("| students | labels p50 / p95 | labels + maps p50 / p95 | re-render p50 / p95 | re-renders that ran "
              "the model | images forwarded per student | peak RSS | wrong answers |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        # A student alone twice: as an API client, then as a browser page
        classes = [(n, browsers) for n in args.students for browsers in ([0, 1] if n == 1 else [args.browsers])]
        for students, browsers in classes:
            explorer = Explorer(model, fallback=False)  # a fresh app per class: nothing cached
            # a student alone, several times, one after another (another photo each time: nothing cached)
            rounds = [files[i:i + 1] for i in range(ALONE_ROUNDS)] if students == 1 else [files[:students]]
            if args.ray:
                import app

                app.serve_on_ray(explorer, args.ray, args.replicas)
                if explorer.remote is None:
                    raise SystemExit("classroom.py: --ray: the model is not served on Ray (the line above says why)")
            expected = expected_labels(explorer, [path for students in rounds for path in students])
            pixels = explorer.pixels(sample(seed=1, index=0, size=384).image)
            demo, url = serve(explorer)
            try:
                result = None
                for students in rounds:
                    # the machine's speed moves within minutes: each round against forwards measured around it
                    before = one_forward_s(explorer.fast_model, pixels)
                    answered = run_class(explorer, url, students, expected[:len(students)], browsers, playwright,
                                         args.nice)
                    answered.against((before + one_forward_s(explorer.fast_model, pixels)) / 2)
                    expected = expected[len(students):]
                    result = answered if result is None else result.add(answered)
            finally:
                demo.close()
            results.append(result)
            print(report(result), flush=True)
            for line in result.wrong[:5]:
                print("  wrong:", line)
    print("one SDPA forward (batch 1, idle, median of 3, before and after each round): " + ", ".join(
        f"{min(r.forward_s):.2f}-{max(r.forward_s):.2f} s around the {r.rounds} rounds of {r.students}" if r.rounds > 1
        else f"{r.forward_s[0]:.2f} s around the class of {r.students}" for r in results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
