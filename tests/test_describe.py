"""Text alternatives computed from the numbers (issue 27): a map's facts (visualization.describe_map) on maps whose
answer is known, the sentences in both languages, the top-5 as a sentence, and a name for every example."""


import numpy as np
import pytest
import torch

import visualization as viz
from conftest import ROOT

from ui.describe import EXAMPLE_KEYS, describe, example_labels, focus_sentence, top_sentence  # noqa: E402


def hot(grid, *cells, background=0.0):
    values = np.full(grid, background)
    for row, col in cells:
        values[row, col] = 1.0
    return values


@pytest.mark.parametrize("cell, place", [((0, 0), "upper_left"), ((0, 23), "upper_right"), ((23, 0), "lower_left"),
                                         ((23, 23), "lower_right"), ((12, 12), "centre"), ((0, 12), "top"),
                                         ((23, 11), "bottom"), ((11, 0), "left"), ((12, 23), "right")])
def test_one_hot_cell_is_named_by_its_place_on_the_picture(cell, place):
    facts = viz.describe_map(hot((24, 24), cell))
    assert facts == viz.MapFacts((24, 24), False, (place,), False, 1, cell, "weak")
    assert facts.cells == 576


def test_a_flat_map_says_so():
    for flat in (np.zeros((24, 24)), np.full((8, 8), 0.3), 1 + 0.01 * np.random.default_rng(0).random((24, 24))):
        facts = viz.describe_map(flat)
        assert facts.flat and facts.places == () and facts.strong_cells == 0
    assert not viz.describe_map(1 + 0.2 * np.random.default_rng(0).random((24, 24))).flat  # noise of 20% shows


def test_two_regions_strongest_first_and_a_blob_is_one_region():
    values = hot((24, 24), (20, 20), (20, 21), (21, 20), (21, 21), (1, 2), (2, 3))  # lower right 4 cells, upper left 2
    assert viz.describe_map(values).places == ("lower_right", "upper_left")
    assert viz.describe_map(values).strong_cells == 6
    diagonal = hot((24, 24), (0, 0), (1, 1), (2, 2))  # touching corners: one area, named by its centre
    assert viz.describe_map(diagonal).places == ("upper_left",)


@pytest.mark.parametrize("grid, cell, place", [((4, 6), (0, 5), "upper_right"), ((6, 4), (5, 0), "lower_left"),
                                               ((1, 9), (0, 0), "left"), ((9, 1), (8, 0), "bottom"),
                                               ((3, 12), (1, 6), "centre"), ((2, 12), (1, 6), "bottom")])
def test_non_square_grids(grid, cell, place):
    facts = viz.describe_map(torch.tensor(hot(grid, cell)))  # a tensor too
    assert facts.places == (place,) and facts.peak == cell and facts.grid == grid


def test_strong_in_many_places_most_of_the_picture_and_a_moderate_rest():
    spread = hot((24, 24), (0, 0), (0, 23), (23, 0), (23, 23))
    spread[0, 0] = spread[0, 1] = 2.0  # the upper left holds the most
    facts = viz.describe_map(spread)
    assert facts.scattered and facts.places == ("upper_left",) and facts.strong_cells == 5 and facts.peak == (0, 0)
    most = np.ones((10, 10))
    most[:4, :4] = 0.0
    assert viz.describe_map(most).places == ("most",) and viz.describe_map(most).strong_cells == 84
    moderate = hot((8, 8), (4, 4), background=0.4)
    moderate[0, 0] = 0.0
    assert viz.describe_map(moderate).rest == "moderate"


def test_strong_means_the_upper_half_of_the_colour_legend():
    values = np.linspace(0, 1, 11).reshape(1, 11)  # normalized 0.0 .. 1.0: 0.5 and above are strong
    assert viz.describe_map(values).strong_cells == 6


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 2, 2)), np.zeros((0, 3)), np.array([[1.0, np.nan]])])
def test_what_is_not_one_finite_map_is_refused(bad):
    with pytest.raises(ValueError):
        viz.describe_map(bad)


def test_the_sentences_in_english_and_arabic():
    corner = hot((24, 24), (0, 0), (0, 1), (1, 0))
    assert describe("en", corner) == ("Strongest at the upper left of the photo, on 3 of 576 cells (strongest cell: "
                                      "row 1, column 1); weak elsewhere.")
    arabic = describe("ar", corner)
    assert "الجزء العلوي الأيسر من الصورة" in arabic and "3 من 576" in arabic and "ضعيفة" in arabic
    # Left and right are the photo's, in a right-to-left page too: the picture is not mirrored.
    right = describe("ar", hot((24, 24), (12, 23)))
    assert "الجانب الأيمن" in right and "الأيسر" not in right
    assert describe("en", hot((24, 24), (0, 0), (23, 23))).startswith(
        "Strongest at the upper left and the lower right of the photo, on 2 of 576 cells")
    assert describe("en", np.zeros((8, 8))) == "The map is flat: all 64 cells are about equally strong."
    assert "64" in describe("ar", np.zeros((8, 8)))
    assert describe("en", np.ones((4, 4)) - hot((4, 4), (0, 0))).startswith("Strong across most of the photo, on 15 of")
    assert "several places" in describe("en", hot((24, 24), (0, 0), (0, 23), (23, 12)))


def test_small_multiples_name_the_most_focused_map_and_the_most_spread_out():
    spread = np.ones((8, 8))
    spread[:2] = 0.0  # strong on 48 of 64 cells
    dim, bright = hot((8, 8), (0, 7)) * 0.5, hot((8, 8), (7, 0))  # one strong cell each: the brighter is named
    assert focus_sentence("en", [spread, dim, bright], "head") == (
        "Most focused of the 3: Head 3. Strongest at the lower left of the photo, on 1 of 64 cells (strongest cell: "
        "row 8, column 1); weak elsewhere. Most spread out: Head 1, with 48 strong cells of 64.")
    arabic = focus_sentence("ar", [spread, np.zeros((8, 8)), bright], "layer")
    assert arabic.startswith("الأشد تركيزًا من بين 3: الطبقة 3.") and "الأكثر انتشارًا: الطبقة 2" in arabic  # flat
    assert focus_sentence("en", [np.zeros((4, 4))] * 2, "layer").startswith("All 2 maps are flat")
    assert focus_sentence("en", [bright], "head") == describe("en", bright)


def test_the_top5_as_one_sentence_most_likely_first():
    top = {"tiger cat": 0.09, "tabby cat": 0.82, "lynx": 0.004, "Egyptian cat": 0.04}
    assert top_sentence("en", top) == "Most likely tabby cat, 82%; then tiger cat 9%, Egyptian cat 4%, lynx <1%."
    assert top_sentence("ar", top) == "الأرجح tabby cat، 82%؛ ثم tiger cat 9%، Egyptian cat 4%، lynx أقل من 1%."
    assert top_sentence("en", {"star": 1.0}) == "Most likely star, 100%."
    assert top_sentence("en", {}) == ""


def test_every_example_has_a_name_in_both_languages():
    from app import EXAMPLES_DIR
    from ui.header import example_files

    files = example_files(EXAMPLES_DIR, True)
    assert {p.name for p in files} == set(EXAMPLE_KEYS)  # a new example needs a name
    for language in ("en", "ar"):
        names = example_labels(language, files)
        assert len(set(names)) == len(files) and all(names)
    assert example_labels("en", [ROOT / "examples" / "shape_star.png"]) == ["Star (shape)"]
    assert example_labels("en", ["/somewhere/my_dog.jpg"]) == ["my dog"]  # added without a name: its file's


def test_the_timing_chart_and_the_lab_curves_say_their_numbers():
    from ui.lab import curves_words
    from ui.timing import chart_words

    assert chart_words([[1, 12.5, 10.0, "1.25x"], [2, 30.0, 15.0, "2.00x"]], "en") == (
        "Milliseconds per run, eager against SDPA: batch 1: 12.5 against 10.0 (1.25x faster); batch 2: 30.0 against "
        "15.0 (2.00x faster).")
    assert "الدفعة 2: 30.0 مقابل 15.0" in chart_words([[2, 30.0, 15.0, "2.00x"]], "ar")
    curves = {"rollout": np.zeros(3), "random": np.zeros(3)}
    measuring = viz.FaithfulnessRun(np.linspace(0, 1, 3), curves, curves, done=2, total=6)
    assert curves_words(measuring, "en") == "Deletion and insertion curves: 2 of 6 images scored so far."
    finished = viz.FaithfulnessRun(np.linspace(0, 1, 3), curves, curves, done=6, total=6,
                                   areas={"rollout": (0.1, 0.8), "random": (0.4, 0.5)})
    assert curves_words(finished, "en").startswith(
        "Deletion and insertion curves, numbered as in the table: 1. Attention rollout: deletion area 0.1, insertion area "
        "0.8; 2. Random order: deletion area 0.4, insertion area 0.5. Most faithful here: Attention rollout (deletion")
    assert "**" not in curves_words(finished, "en") and "مساحة الحذف 0.1" in curves_words(finished, "ar")
