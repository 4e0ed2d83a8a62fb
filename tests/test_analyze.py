"""python -m vithybrid.analyze: one Parquet row per file, the app's maps, both backends, --resume, the report
in a real browser, and bad input answered with one line and exit status 2."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import IMAGES, missing
from helpers import malformed_exif_jpeg
from vithybrid.analyze.__main__ import main
from vithybrid.analyze.report import report_path
from vithybrid.checkpoints.shipped import resolve_model
from vithybrid.images import load_image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ["shape_circle.png", "shape_star.png", "shape_triangle.png", "chelsea.png", "rocket.jpg"]
COPIES = 4  # images for the Ctrl-C test
# None: a truncated PNG. exif.jpg (issue 26): its EXIF made the decoder raise struct.error, which stopped the whole
# run, locally and on Ray, and lost every row.
UNREADABLE = {"notes.jpg": b"this is text, not a JPEG", "empty.png": b"", "cut.png": None,
              "exif.jpg": malformed_exif_jpeg()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Shapes and photos (one in a subfolder, so the search must recurse), and three files that cannot be read."""
    folder = tmp_path_factory.mktemp("source")
    (folder / "more").mkdir()
    for i, name in enumerate(PHOTOS):
        shutil.copy(IMAGES / name, folder / ("more" if i == 3 else "") / name)
    for name, content in UNREADABLE.items():
        (folder / name).write_bytes(content if content is not None else (IMAGES / "chelsea.png").read_bytes()[:3000])
    (folder / "README.txt").write_text("not an image, and not an image's name: skipped")
    return folder


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vithybrid.analyze", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def rows_of(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values("path").reset_index(drop=True)


@pytest.fixture(scope="module")
def local_out(source, tmp_path_factory) -> Path:
    """The local backend's rows for the folder, from the real command (decoding in one worker process)."""
    out = tmp_path_factory.mktemp("local") / "rows"
    result = analyze(str(source), "--out", str(out), "--model", "shapes", "--batch-size", "3", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "img/s" in result.stderr  # the progress bar
    return out


def test_one_row_per_file_with_errors_for_unreadable_ones(source, local_out):
    rows = rows_of(local_out)
    files = sorted(str(p) for p in source.rglob("*") if p.suffix in (".png", ".jpg"))
    assert rows.path.tolist() == files
    failed = rows[rows.error.notna()]
    assert sorted(Path(p).name for p in failed.path) == sorted(UNREADABLE)
    assert all(Path(p).name in e for p, e in zip(failed.path, failed.error))  # messages name the file
    assert failed.labels.isna().all() and failed.class_map.isna().all()
    explained = rows[rows.error.isna()]
    for row in explained.itertuples():
        assert len(row.labels) == 5 and list(row.scores) == sorted(row.scores, reverse=True)
        p = np.asarray(row.scores)
        assert 0 <= row.entropy <= np.log(5) + 1e-6 and p.sum() == pytest.approx(1, abs=1e-5)  # 5 labels: all of them
        assert row.entropy == pytest.approx(-(p * np.log(p)).sum(), rel=1e-4)
        width, height = load_image(row.path).size
        assert (row.width, row.height) == (width, height)  # no photo here is above the loader's size limit
    shapes = explained[explained.path.str.contains("shape_")]
    assert [labels[0] for labels in shapes.labels] == ["circle", "star", "triangle"]  # what the shipped model knows


def test_maps_are_the_apps_maps(local_out):
    """Rows equal what the app's Explorer computes for the same image and model (one image at a time)."""
    import visualization as viz
    from explorer import Explorer

    explorer = Explorer("shapes")
    for row in rows_of(local_out).query("error.isna()").itertuples():
        photo = load_image(row.path)
        analysis = explorer.analysis(photo)
        assert viz.processor_geometry(explorer.processor, photo.size) == analysis.geometry
        rollout = viz.cls_map(viz.attention_rollout(analysis.attentions, rows=[0]), analysis.grid)[0].numpy()
        class_map = explorer.class_map(photo, analysis.top[0][0]).numpy()
        shape = (int(row.grid_rows), int(row.grid_cols))
        # Batched and single-image runs differ by float32 rounding only (other kernels and blockings): ~1e-6 relative.
        np.testing.assert_allclose(np.reshape(row.rollout_map, shape), rollout, rtol=1e-4, atol=1e-5 * rollout.max())
        np.testing.assert_allclose(np.reshape(row.class_map, shape), class_map, rtol=1e-4, atol=1e-5 * class_map.max())
        assert list(row.labels) == [label for _, label, _ in analysis.top]
        np.testing.assert_allclose(row.scores, [score for _, _, score in analysis.top], atol=1e-5)


def test_peaks_in_photo_pixels_and_the_pointing_game(tmp_path):
    """Shapes are 192x192 and the model sees 64x64 in an 8x8 grid: each cell is 24 photo pixels square. The
    rocket (640x427) is resized to 95x64 and cropped at x = 15, so crop column c spans photo x (8c + 15) * 640 / 95."""
    table = tmp_path / "boxes.csv"
    circle, rocket = IMAGES / "shape_circle.png", IMAGES / "rocket.jpg"
    pd.DataFrame({"path": [str(circle), str(circle), str(rocket)], "label": ["circle", "square", "circle"],
                  "bbox": ["0 0 96 192", "[0, 0, 192, 192]", "0,0,640,427"]}).to_csv(table, index=False)
    out = tmp_path / "rows"
    assert main([str(table), "--out", str(out), "--model", "shapes", "--workers", "0", "--no-report"]) == 0
    rows = pd.read_parquet(out)
    assert rows.correct.tolist() == [True, False, rows.labels[2][0] == "circle"]
    for name in ("rollout", "class"):
        heatmap = np.reshape(rows[f"{name}_map"][0], (8, 8))
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert (rows[f"{name}_peak_x"][0], rows[f"{name}_peak_y"][0]) == (24 * col + 12, 24 * row + 12)
        share = heatmap / heatmap.sum()
        assert rows[f"{name}_box_mass"][0] == pytest.approx(share[:, :4].sum(), rel=1e-5)  # the left half
        assert rows[f"{name}_hit"][0] == (col < 4)
        assert rows[f"{name}_box_mass"][1] == pytest.approx(1, rel=1e-5) and rows[f"{name}_hit"][1]
        assert 0 < rows[f"{name}_entropy"][0] < 1
        heatmap = np.reshape(rows[f"{name}_map"][2], (8, 8))
        row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert rows[f"{name}_peak_x"][2] == pytest.approx((8 * col + 4 + 15) * 640 / 95, rel=1e-5)
        assert rows[f"{name}_peak_y"][2] == pytest.approx((8 * row + 4) * 427 / 64, rel=1e-5)
        assert rows[f"{name}_box_mass"][2] == pytest.approx(1, rel=1e-5)  # the whole photo holds the whole crop


def test_empty_label_and_bbox_cells_are_nulls(tmp_path):
    """pandas 3 keeps a table's missing strings as NaN (its str dtype): they must reach the rows as nulls."""
    table = tmp_path / "val.csv"
    star, circle = IMAGES / "shape_star.png", IMAGES / "shape_circle.png"
    table.write_text(f"path,label,bbox\n{star},,\n{circle},circle,0 0 96 192\n")
    out = tmp_path / "rows"
    assert main([str(table), "--out", str(out), "--model", "shapes", "--workers", "0", "--no-report"]) == 0
    rows = rows_of(out)
    assert rows.label[0] == "circle" and rows.correct[0]
    for column in ("label", "bbox", "correct", "rollout_box_mass", "rollout_hit"):
        assert rows[column].isna().tolist() == [False, True], column


def test_panoramas_map_back_through_their_crop(tmp_path):
    """load_image keeps the middle 800x100 of a 1000x100 panorama (at most 8:1), and the shapes model sees the
    middle 64x64 of that resized to 512x64: file pixels 450..550, each cell 12.5 file pixels square. Boxes are
    clipped to what the model saw; one wholly outside it (here: left of it, or in the part load_image dropped)
    has no box mass and no hit. The same, transposed, for a 100x1000 panorama."""
    from PIL import Image

    wide = Image.new("RGB", (1000, 100), "white")
    wide.paste(Image.open(IMAGES / "shape_star.png").convert("RGB").resize((100, 100)), (450, 0))
    wide.save(tmp_path / "wide.png")
    wide.transpose(Image.Transpose.TRANSPOSE).save(tmp_path / "tall.png")
    boxes = {"wide.png": ["450 0 500 100", "400 0 500 100", "100 0 440 100", "0 0 90 100"],
             "tall.png": ["0 450 100 500", "0 400 100 500", "0 100 100 440", "0 0 100 90"]}
    table = tmp_path / "boxes.csv"
    pd.DataFrame([{"path": name, "bbox": box} for name, row in boxes.items() for box in row]).to_csv(table, index=False)
    out = tmp_path / "rows"
    assert main([str(table), "--out", str(out), "--model", "shapes", "--workers", "0", "--no-report"]) == 0
    rows = pd.read_parquet(out)
    for name in ("rollout", "class"):
        for i, tall in enumerate(rows.path.str.endswith("tall.png")):
            heatmap = np.reshape(rows[f"{name}_map"][i], (8, 8))
            row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
            along, across = (row, col) if tall else (col, row)  # cells along the panorama's long side, and across
            peak = (rows[f"{name}_peak_x"][i], rows[f"{name}_peak_y"][i])
            assert peak[::-1 if tall else 1] == (450 + 12.5 * along + 6.25, 12.5 * across + 6.25)
            box_mass, hit = rows[f"{name}_box_mass"][i], rows[f"{name}_hit"][i]
            if i % 4 < 2:  # the first half of what the model saw, the second box reaching beyond it (clipped)
                share = heatmap / heatmap.sum()
                assert box_mass == pytest.approx((share[:4] if tall else share[:, :4]).sum(), rel=1e-5)
                assert hit == (along < 4)
            else:  # wholly outside what the model saw
                assert pd.isna(box_mass) and hit is None, (box_mass, hit)


def ray_backend():
    try:
        from vithybrid.analyze import ray_backend
    except ImportError:
        missing("Ray Data is not installed (pip install 'ray[data]')")
    return ray_backend


# Ray runs in a process of its own: a Ray driver in the test process leaves threads and signal handlers
# behind after shutdown, and later tests that load ONNX Runtime or OpenVINO crashed in that process.
RAY_RUNS = """
import json, sys
from vithybrid.analyze import ray_backend
from vithybrid.analyze.__main__ import main
ray_backend.start_ray(num_cpus=2)  # one local Ray with 2 CPUs for all the runs, stopped afterwards
try:
    print(json.dumps([main(argv) for argv in json.loads(sys.argv[1])]))
finally:
    ray_backend.ray.shutdown()
"""


def with_ray(*argvs: list[str]) -> list[int]:
    """Exit statuses of `main(argv)` for each argv, run in one fresh process on a local Ray."""
    ray_backend()  # Ray installed, or missing()
    run = subprocess.run([sys.executable, "-c", RAY_RUNS, json.dumps(argvs)], capture_output=True, text=True,
                         cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def assert_same_rows(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """The same rows up to float rounding (other batches, other processes)."""
    assert ours.path.tolist() == theirs.path.tolist()
    assert ours.error.fillna("").tolist() == theirs.error.fillna("").tolist()
    for a, b in zip(ours.itertuples(), theirs.itertuples()):
        if a.error is None or pd.isna(a.error):
            assert list(a.labels) == list(b.labels)
            for column in ("scores", "rollout_map", "class_map"):
                x, y = np.asarray(getattr(a, column)), np.asarray(getattr(b, column))
                np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())
            assert (a.rollout_peak_x, a.class_peak_y) == pytest.approx((b.rollout_peak_x, b.class_peak_y))


def test_ray_writes_the_same_rows(source, local_out, tmp_path):
    out = tmp_path / "rows"
    assert with_ray([str(source), "--out", str(out), "--model", "shapes", "--batch-size", "2", "--ray", "--actors",
                     "2", "--no-report"]) == [0]
    assert_same_rows(rows_of(out), rows_of(local_out))


def test_resume_adds_only_the_missing_rows(source, local_out, tmp_path):
    """Explain the shapes, then resume on the whole folder, once with each backend."""
    for backend in ([], ["--ray"]):
        out = tmp_path / f"rows{len(backend)}"
        assert main([str(source / "shape_*.png"), "--out", str(out), "--model", "shapes", "--no-report"]) == 0
        first = {p: p.read_bytes() for p in out.iterdir()}
        refused = [str(source), "--out", str(out), "--model", "shapes", "--no-report", *backend]  # no --resume
        resumed = [str(source), "--out", str(out), "--model", "shapes", "--resume", *backend]
        assert (with_ray(refused, resumed) if backend else [main(refused), main(resumed)]) == [2, 0]
        assert all(p.read_bytes() == content for p, content in first.items())  # the first rows untouched
        rows = rows_of(out)
        assert rows.path.is_unique
        assert_same_rows(rows, rows_of(local_out))
        assert main([str(source), "--out", str(out), "--model", "shapes", "--resume", "--no-report"]) == 0
        assert len(pd.read_parquet(out)) == len(rows)  # nothing left to add


def test_ray_explains_a_tables_rows_as_read_by_the_driver(source, tmp_path):
    """A CSV (relative paths, a label and a box left empty) on Ray gives the local backend's rows, source columns
    included, and a resumed Ray run adds exactly the rows the first run lacked."""
    folder = tmp_path / "images"
    shutil.copytree(source, folder)
    names = ["shape_circle.png", "shape_star.png", "more/chelsea.png", "rocket.jpg", "notes.jpg"]
    labels = ["circle", "star", None, "circle", "cat"]
    boxes = ["0 0 96 192", None, "[10, 20, 300, 200]", None, "0 0 1 1"]
    table = pd.DataFrame({"path": [f"images/{n}" for n in names], "label": labels, "bbox": boxes})
    table.to_csv(tmp_path / "val.csv", index=False)
    table[:2].to_csv(tmp_path / "first.csv", index=False)
    local, on_ray, resumed = tmp_path / "local", tmp_path / "ray", tmp_path / "resumed"
    common = ["--model", "shapes", "--batch-size", "2", "--no-report"]
    assert main([str(tmp_path / "val.csv"), "--out", str(local), *common, "--workers", "0"]) == 0
    assert main([str(tmp_path / "first.csv"), "--out", str(resumed), *common, "--workers", "0"]) == 0
    first = {p: p.read_bytes() for p in resumed.iterdir()}
    assert with_ray([str(tmp_path / "val.csv"), "--out", str(on_ray), *common, "--ray"],
                    [str(tmp_path / "val.csv"), "--out", str(resumed), *common, "--ray", "--resume"]) == [0, 0]
    expected = rows_of(local)
    assert expected.label.isna().sum() == 1 and expected.bbox.isna().sum() == 2
    for out in (on_ray, resumed):
        rows = rows_of(out)
        assert_same_rows(rows, expected)
        columns = ["label", "correct", "rollout_box_mass", "rollout_hit"]
        pd.testing.assert_frame_equal(rows[columns], expected[columns], rtol=1e-4)
        assert [None if b is None else list(b) for b in rows.bbox] == [None if b is None else list(b)
                                                                        for b in expected.bbox]
    assert all(p.read_bytes() == content for p, content in first.items())  # the first rows untouched
    added = pd.concat([pd.read_parquet(p) for p in resumed.iterdir() if p not in first])
    assert sorted(added.path) == sorted(expected.path[~expected.path.str.contains("shape_")])


# The real command, except that the model waits for Ctrl-C before its second batch: the interrupt lands mid-run
# with exactly one image explained, whatever the machine's speed (a run left to race could end first).
INTERRUPTIBLE = """
import signal, sys, time
# As a terminal starts it: Ctrl-C delivered and raised. A test run started in the background (`pytest &`, nohup)
# passes SIGINT on ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
from vithybrid.analyze.__main__ import main
from vithybrid.analyze.maps import Explainer

explain = Explainer.__call__

def explain_one_then_wait(self, batch):
    if getattr(self, "explained_one", False):
        print("waiting for Ctrl-C", file=sys.stderr, flush=True)
        # Short sleeps, not signal.pause(): the kernel may hand SIGINT to another of the process's threads (the
        # DataLoader's, tqdm's), and then only a main thread that returns to Python raises the KeyboardInterrupt.
        while True:
            time.sleep(0.05)
    self.explained_one = True
    return explain(self, batch)

Explainer.__call__ = explain_one_then_wait
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_leaves_valid_parts_that_resume_completes(tmp_path):
    """Interrupted one image into the run, it exits with 130 and leaves that image's row in a whole part."""
    source = tmp_path / "many"
    source.mkdir()
    for i in range(COPIES):
        shutil.copy(IMAGES / "shape_star.png", source / f"{i:02d}.png")
    out = tmp_path / "rows"
    command = [sys.executable, "-c", INTERRUPTIBLE, str(source), "--out", str(out), "--model", "shapes",
               "--batch-size", "1", "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "waiting for Ctrl-C" not in seen:  # text mode: the progress bar's carriage returns end lines too
        line = process.stderr.readline()
        assert line, f"the run ended before it could be interrupted: {seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, seen + rest
    assert "--resume" in rest.strip().splitlines()[-1]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    kept = pd.read_parquet(out)
    assert len(kept) == 1 and kept.error.isna().all()
    assert main([str(source), "--out", str(out), "--model", "shapes", "--resume", "--no-report"]) == 0
    rows = pd.read_parquet(out)
    assert len(rows) == COPIES and rows.path.is_unique


def test_an_interrupted_ray_write_leaves_whole_parts_only(tmp_path, local_out):
    keep_whole_parts = ray_backend().keep_whole_parts

    staging, out = tmp_path / ".ray-staging", tmp_path / "rows"
    staging.mkdir()
    out.mkdir()
    whole = next(local_out.glob("*.parquet"))
    shutil.copy(whole, staging / "a.parquet")
    (staging / "b.parquet").write_bytes(whole.read_bytes()[:-100])  # cut short: no footer
    keep_whole_parts(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet"] and not staging.exists()
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(local_out))


def test_report_opens_in_a_browser_with_its_images(browser, source, tmp_path):
    table = tmp_path / "labelled.csv"
    paths = sorted(p for p in source.rglob("*") if p.suffix in (".png", ".jpg"))
    pd.DataFrame({"path": [str(p) for p in paths],
                  "label": ["star" if "star" in p.name else "circle" for p in paths]}).to_csv(table, index=False)
    out = tmp_path / "rows"
    assert main([str(table), "--out", str(out), "--model", "shapes", "--workers", "0"]) == 0
    page, errors = browser.new_page(), []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(report_path(out).as_uri())
        text = page.inner_text("body")
        for heading in ("Per-class accuracy", "Average top-class relevance per class", "Least confident predictions",
                        "Most diffuse maps", "Unreadable files"):
            assert heading in text
        assert "notes.jpg" in text
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        # per class average maps (circle, star), and 8 least confident + 8 most diffuse of the 5 readable photos
        assert len(widths) == 2 + 5 + 5 and min(widths) > 0
    finally:
        page.close()
    assert not errors


def test_labels_only_and_a_resume_that_asks_for_other_maps(source, tmp_path, capsys):
    out = tmp_path / "rows"
    assert main([str(source / "shape_*.png"), "--out", str(out), "--model", "shapes", "--maps", "none",
                 "--workers", "0", "--no-report"]) == 0
    rows = rows_of(out)
    assert not [c for c in rows.columns if "map" in c or "peak" in c]
    assert [labels[0] for labels in rows.labels] == ["circle", "star", "triangle"]
    assert main([str(source), "--out", str(out), "--model", "shapes", "--resume"]) == 2  # both maps asked for
    assert "other --maps" in capsys.readouterr().err


def test_resume_refuses_rows_made_with_other_settings(tmp_path, capsys):
    """OUT records the --model, --runtime, --int8, --maps and --top-k its rows were made with: a --resume with
    others is refused in one line naming what differs (and so is an OUT without that record, from an older
    version), while the same settings resume, the model folder named by another path."""
    model, out = tmp_path / "model", tmp_path / "rows"
    shutil.copytree(resolve_model("shapes"), model)
    common = ["--out", str(out), "--maps", "rollout", "--workers", "0", "--no-report"]
    assert main([str(IMAGES / "shape_star.png"), *common, "--model", str(model), "--top-k", "2"]) == 0
    first = {p: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    shapes = str(IMAGES / "shape_*.png")
    for other, difference in [(["--model", "shapes", "--top-k", "2"], f"other --model ({model}; this run: shapes)"),
                              (["--model", str(model), "--top-k", "3"], "other --top-k (2; this run: 3)"),
                              (["--model", str(model), "--top-k", "2", "--maps", "rollout,class"],
                               "other --maps (rollout; this run: rollout,class)")]:
        assert main([shapes, *common, *other, "--resume"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and difference in lines[0], lines
    assert {p: p.read_bytes() for p in out.iterdir()} == first  # nothing added, nothing changed
    same = [shapes, *common, "--model", os.path.relpath(model), "--top-k", "2", "--resume"]
    assert main(same) == 0
    rows = rows_of(out)
    assert rows.path.tolist() == sorted(glob.glob(shapes)) and rows.labels.map(len).eq(2).all()
    capsys.readouterr()
    (out / "_analyze.json").unlink()  # as an older version left OUT
    assert main(same) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "does not record" in lines[0] and "without --resume" in lines[0], lines


@pytest.mark.parametrize("case", ["empty folder", "no images", "no path column", "unwritable out", "existing out",
                                  "bad device", "report is a folder"])
def test_bad_input_is_one_line_and_status_2(case, tmp_path, capsys):
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    if case == "no images":
        (source / "notes.txt").write_text("hello")
    elif case == "no path column":
        source = tmp_path / "table.csv"
        source.write_text("file,label\na.png,cat\n")
    elif case in ("unwritable out", "existing out", "bad device", "report is a folder"):
        shutil.copy(IMAGES / "shape_star.png", source)
        if case == "report is a folder":  # issue 26: found only after the whole run, as a traceback
            (tmp_path / "out.html").mkdir()
        elif case == "unwritable out":
            (tmp_path / "a_file").write_text("")
            out = tmp_path / "a_file" / "out"  # inside a file: no one can write there, not even root
        else:
            out.mkdir()
            (out / "part-0.parquet").write_text("earlier results")
    before = sorted(tmp_path.rglob("*"))
    device = ["--device", "gpu"] if case == "bad device" else []  # not a torch device name
    assert main([str(source), "--out", str(out), "--model", "shapes", *device]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even OUT's folder or a report


def test_an_unwritable_report_folder_is_found_before_the_first_image(tmp_path, monkeypatch, capsys):
    """OUT can be written, the folder the report goes to cannot (read-only; root ignores permissions, so the
    check that tries is made to fail): one line before any work, nothing left behind."""
    import vithybrid.analyze.__main__ as command

    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    shutil.copy(IMAGES / "shape_star.png", source)
    writable = command.check_writable

    def read_only_parent(folder):
        if Path(folder) == tmp_path:
            raise PermissionError(13, "Permission denied")
        writable(folder)

    monkeypatch.setattr(command, "check_writable", read_only_parent)
    runs = []
    monkeypatch.setattr(command, "run_local", lambda *args: runs.append(args))
    before = sorted(tmp_path.rglob("*"))
    assert main([str(source), "--out", str(out), "--model", "shapes"]) == 2
    expected = f"error: cannot write the report to {tmp_path}: Permission denied; choose another --out, or pass --no-report"
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    assert sorted(tmp_path.rglob("*")) == before and runs == []
    assert main([str(source), "--out", str(out), "--model", "shapes", "--no-report"]) == 0 and len(runs) == 1


def test_outputs_are_never_written_through_a_link_planted_at_their_temporary_names(tmp_path):
    """Issue 26: the report was written through `.OUT.html.tmp`, so a link planted there by another user of the
    folder made the run overwrite the link's target and left OUT.html a link to it; and OUT's write test touched
    `OUT/.write-test`, creating whatever file a link there named."""
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    shutil.copy(IMAGES / "shape_star.png", source)
    victim, created = tmp_path / "victim.txt", tmp_path / "created.txt"
    victim.write_text("precious")
    (tmp_path / ".out.html.tmp").symlink_to(victim)
    out.mkdir()
    (out / ".write-test").symlink_to(created)
    assert main([str(source), "--out", str(out), "--model", "shapes", "--workers", "0"]) == 0
    assert victim.read_text() == "precious" and not created.exists()
    report = report_path(out)
    assert report.is_file() and not report.is_symlink() and "<h1>ViT-Hybrid analysis" in report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.html.tmp", "out", "out.html", "source", "victim.txt"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_links_out_of_the_source_folder_are_left_out_unless_asked_for(tmp_path, capsys):
    """Issue 26: a link in the source folder to an image elsewhere was explained and shown in the report. Links
    that stay inside are read; every path is the one found, not where its link leads."""
    source, elsewhere = tmp_path / "source", tmp_path / "elsewhere"
    source.mkdir()
    elsewhere.mkdir()
    shutil.copy(IMAGES / "shape_star.png", source / "star.png")
    shutil.copy(IMAGES / "shape_circle.png", elsewhere / "private.png")
    (source / "inside.png").symlink_to(source / "star.png")
    (source / "outside.png").symlink_to(elsewhere / "private.png")
    (source / "folder").symlink_to(elsewhere, target_is_directory=True)  # never searched
    for follow, names in [([], ["inside.png", "star.png"]), (["--follow-symlinks"], ["inside.png", "outside.png",
                                                                                     "star.png"])]:
        out = tmp_path / f"out{len(follow)}"
        assert main([str(source), "--out", str(out), "--model", "shapes", "--workers", "0", *follow]) == 0
        rows = rows_of(out)
        assert rows.path.tolist() == [str(source / name) for name in names] and rows.error.isna().all()
        notes = [line for line in capsys.readouterr().err.splitlines() if "--follow-symlinks" in line]
        note = (f"note: left out 1 link(s) to files outside {source} (such as {source / 'outside.png'}); pass "
                f"--follow-symlinks to read them")
        assert notes == ([] if follow else [note])
        assert "private.png" not in report_path(out).read_text()
    out = tmp_path / "glob"
    assert main([str(source / "*.png"), "--out", str(out), "--model", "shapes", "--workers", "0", "--no-report"]) == 0
    assert rows_of(out).path.tolist() == [str(source / "inside.png"), str(source / "star.png")]
    usage = subprocess.run([sys.executable, "-m", "vithybrid.analyze", "--help"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
    assert "--follow-symlinks" in usage


def test_paths_are_kept_as_given_and_special_files_named(tmp_path, monkeypatch):
    """Issue 26: a table's paths were resolved (a link to /proc/self/environ became /proc/<pid>/environ in the rows
    and the report), and a FIFO, a device or a folder was 'There is no file X'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "env.png").symlink_to("/proc/self/environ")
    os.mkfifo(tmp_path / "data" / "pipe.png")
    (tmp_path / "data" / "folder.png").mkdir()
    shutil.copy(IMAGES / "shape_star.png", tmp_path / "star.png")
    pd.DataFrame({"path": ["data/env.png", "data/pipe.png", "data/folder.png", "/dev/null", "data/../star.png"]}
                 ).to_csv(tmp_path / "files.csv", index=False)
    assert main(["files.csv", "--out", "out", "--model", "shapes", "--workers", "0"]) == 0
    rows = pd.read_parquet(tmp_path / "out")
    errors = dict(zip(rows.path, rows.error))
    assert sorted(errors) == sorted([*(str(tmp_path / p) for p in ["data/env.png", "data/pipe.png", "data/folder.png",
                                                                    "data/../star.png"]), "/dev/null"])
    assert errors[str(tmp_path / "data/pipe.png")].startswith("pipe.png is a named pipe (FIFO), not an image file")
    assert errors["/dev/null"].startswith("null is a character device")
    assert errors[str(tmp_path / "data/folder.png")].startswith("folder.png is a folder")
    assert errors[str(tmp_path / "data/env.png")].startswith("env.png is empty")  # /proc files say size 0
    assert pd.isna(errors[str(tmp_path / "data/../star.png")])
    assert "/proc/" not in (tmp_path / "out.html").read_text() + "".join(rows.path)


def test_without_the_analyze_extra_the_command_says_what_to_install(tmp_path):
    """pandas and pyarrow are an optional extra: without them, one line naming it and status 2."""
    from helpers import env_hiding

    env = env_hiding(tmp_path, "pyarrow", "pandas")
    run = subprocess.run([sys.executable, "-m", "vithybrid.analyze", str(IMAGES), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "pip install" in run.stderr and "[analyze]" in run.stderr
    assert not (tmp_path / "out").exists()
