"""The app for a classroom: English and Arabic (translation files, right to left, the switch), the guided walk
from the loaded model's numbers, colour legends, and issue 16's numbered items, in a real browser."""

import ast
import json
import os
import re
import string
import subprocess
import sys

import pytest
from gradio_client import Client, handle_file

from conftest import ROOT, free_port, open_page

LOCALES = ROOT / "locales"
UI_SOURCES = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py"))]
STAR = ROOT / "examples" / "shape_star.png"


def translations() -> dict[str, dict[str, str]]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(LOCALES.glob("*.json"))}


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_string_exists_in_both_languages_with_the_same_placeholders():
    tables = translations()
    assert set(tables) == {"en", "ar"}
    assert set(tables["en"]) == set(tables["ar"]), set(tables["en"]) ^ set(tables["ar"])
    for key, english in tables["en"].items():
        arabic = tables["ar"][key]
        assert english.strip() and arabic.strip(), key
        assert placeholders(english) == placeholders(arabic), key
        if key != "language.label":  # Arabic text really is Arabic, not a copied English string
            assert re.search("[\u0600-\u06ff]", arabic), key


# Texts about the page's own layout (components side by side in a row), which mirrors right to left: the first of
# two is on the left in English and on the right in Arabic. Every other text that names a side is about a picture
# (a plot, a grid of maps), which does not mirror (RTL_CSS keeps images left to right). A new text that names a side
# must be put here or left out deliberately: the test below then checks that Arabic names the side the reader sees.
PAGE_LAYOUT_KEYS = {"tokens.help", "lab.help"}
SIDES = {"en": [(r"\bleft\b", "L"), (r"\bright\b", "R")],
         "ar": [("يسار|اليسرى|أيسر", "L"), ("يمين|اليمنى|أيمن", "R")]}


def sides(text: str, language: str) -> list[str]:
    """The sides a text names, in order ("L", "R")."""
    found = sorted((match.start(), side) for pattern, side in SIDES[language] for match in re.finditer(pattern, text,
                                                                                                     re.IGNORECASE))
    return [side for _, side in found]


def test_left_and_right_follow_the_pages_direction():
    """Issue 26: the Arabic lab help put the CNN half on the left ("يسارًا"); right to left, it is on the right."""
    tables = translations()
    mirrored = {"L": "R", "R": "L"}
    named = {key for key, english in tables["en"].items() if sides(english, "en")}
    assert PAGE_LAYOUT_KEYS <= named
    for key in named | {key for key, arabic in tables["ar"].items() if sides(arabic, "ar")}:
        english, arabic = sides(tables["en"][key], "en"), sides(tables["ar"][key], "ar")
        expected = [mirrored[side] for side in english] if key in PAGE_LAYOUT_KEYS else english
        assert arabic and arabic == expected[:len(arabic)], (key, tables["ar"][key])  # it may name fewer


def constants(node: ast.AST) -> list[str]:
    """The key(s) an argument names: "key", or "a" if ... else "b"."""
    if isinstance(node, ast.IfExp):
        return constants(node.body) + constants(node.orelse)
    return [node.value] if isinstance(node, ast.Constant) else []


def keys_used() -> set[str]:
    """Every translation key the UI code names: I18N("key") and text(language, "key", ...)."""
    used = set()
    for path in UI_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                args = node.args
                if node.func.id == "I18N" and args:
                    used.update(constants(args[0]))
                if node.func.id == "text" and len(args) > 1:
                    used.update(constants(args[1]))
    return used


def test_every_key_the_page_uses_is_translated_and_none_is_left_unused():
    from app import TABS
    from ui import describe, experiments, lab
    from ui.timing import HEADER_KEYS

    made_at_run_time = {*lab.MAP_KEYS.values(), *lab.AGREEMENT_KEYS.values(), *lab.VERDICT_KEYS.values(),
                        *lab.HEADER_KEYS, *describe.PLACE_KEYS.values(), *describe.REST_KEYS.values(),
                        *describe.EXAMPLE_KEYS.values(), *experiments.FILL_KEYS.values(),
                        *experiments.HOW_KEYS.values(), *experiments.PICTURE_KEYS.values()}
    used = keys_used() | set(HEADER_KEYS) | made_at_run_time | {tab.TITLE for tab in TABS}
    english = set(translations()["en"])
    assert used <= english, used - english
    assert english <= used, english - used  # a string nobody shows is a string nobody reviews


USER_VISIBLE = {"label", "info", "placeholder", "title", "desc"}


def test_no_user_visible_literal_bypasses_the_translation_files():
    """Labels, help lines, Markdown and errors in the UI code come from I18N(...) or text(...), never a literal."""
    offenders = []
    for path in UI_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            literal = [k.arg for k in node.keywords if k.arg in USER_VISIBLE and isinstance(k.value, (ast.Constant,
                                                                                                        ast.JoinedStr))]
            if name in ("Markdown", "Button", "Error", "Warning", "Info", "Tab") and node.args and \
                    isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                literal.append("first argument")
            if name == "Blocks":  # the browser tab's title: the product's name, the same in both languages
                literal = [k for k in literal if k != "title"]
            offenders += [f"{path.name}:{node.lineno} {name}({k})" for k in literal]
    assert not offenders, offenders


@pytest.mark.parametrize("header, language", [("ar-EG,ar;q=0.9,en;q=0.8", "ar"), ("en-US,en;q=0.9", "en"),
                                              ("fr-FR,fr;q=0.9", "en"), ("fr;q=0.9,ar;q=0.5", "ar"),
                                              ("", "en"), ("en;q=0.1,ar;q=0.9", "ar"), ("ar;q=abc,en", "en")])
def test_the_language_follows_the_browsers_accept_language(header, language):
    from ui.i18n import best_match

    assert best_match(header) == language


def test_the_walk_tells_the_loaded_models_own_numbers(explorer, tiny_folder):
    from explorer import Explorer
    from ui.walk import walk

    facts = explorer.facts  # shapes: 64x64 input, stem 16x16x32, stages 16x16x64 and 8x8x128, 8x8 grid
    assert facts.input_hw == (64, 64) and facts.maps == [(32, 16, 16), (64, 16, 16), (128, 8, 8)]
    english, arabic = walk(facts, "en"), walk(facts, "ar")
    for needed in ("**64x64** pixels", "**16x16** map with **32** channels", "**8x8** map with **128** channels",
                   "**65** tokens in all", "**4** transformer layers", "4x4 = 16 tokens",
                   "https://arxiv.org/abs/2010.11929"):
        assert needed in english, needed
    assert "384" not in english  # item 4: the shapes model's input is 64x64, whatever the display's size
    assert "**64x64**" in arabic and "**65**" in arabic and "https://arxiv.org/abs/2010.11929" in arabic
    tiny = Explorer(str(tiny_folder)).facts
    assert tiny.grid == (4, 4) and tiny.tokens == 17 and "**17** tokens in all" in walk(tiny, "en")


def test_the_walk_through_the_full_size_model():
    """The seed's checkpoint (random weights, built on the meta device: only shapes and counts are read)."""
    import dataclasses

    import torch

    from explorer.facts import model_facts
    from ui.walk import walk
    from vithybrid import ViTHybridConfig, ViTHybridForImageClassification

    config = ViTHybridConfig(image_size=384, num_labels=1000)
    with torch.device("meta"):
        model = ViTHybridForImageClassification(config)
    facts = model_facts("google/vit-hybrid-base-bit-384", model, (384, 384))
    assert facts.maps == [(64, 96, 96), (256, 96, 96), (512, 48, 48), (1024, 24, 24)]  # stem, stages 1-3
    assert facts.stage_depths == [3, 4, 9] and facts.full_size and 98 < facts.parameters_m < 100
    english = walk(facts, "en")
    for needed in ("**5. BiT stage 3** (residual blocks: 9): a **24x24** map with **1024** channels",
                   "the same 1024x768 matrix", "**577** tokens in all", "**12** transformer layers",
                   "**1000** class scores", "16x16-pixel patches (24x24 = 576 tokens)"):
        assert needed in english, needed
    patch_two = dataclasses.replace(facts, patch=2, grid=(12, 12))
    assert "**6. The 2x2 projection.**" in walk(patch_two, "en") and "الإسقاط 2x2" in walk(patch_two, "ar")


def test_the_backbone_picture_labels_the_models_input_not_the_enlarged_display(explorer, monkeypatch):
    """Item 4: the first panel said 384x384x3 (the picture enlarged for display); the model reads 64x64x3."""
    import explorer.pictures as module
    from vithybrid.training.shapes import sample

    seen = {}
    real = module.viz.backbone_figure

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(module.viz, "backbone_figure", spy)
    explorer.backbone_picture(sample(seed=5, index=2, size=200).image)
    assert seen["captions"][0].endswith("64x64x3") and seen["captions"][-1].endswith("8x8x128")


def test_colour_legends_sit_under_the_heatmaps():
    import numpy as np
    from PIL import Image

    import visualization as viz

    picture = Image.new("RGB", (200, 100), (10, 20, 30))
    legend = viz.with_colorbar(picture, "viridis")
    assert legend.width == 200 and legend.height > 100 and legend.crop((0, 0, 200, 100)) == picture
    row = np.asarray(legend)[104:106].reshape(-1, 3)
    colours = {tuple(c) for c in row}
    low, high = (tuple(viz.colorize(np.array([[v, 0.0, 1.0]]), (1, 3), "viridis").getpixel((0, 0))) for v in (0, 1))
    assert low in colours and high in colours  # the colormap's two ends are on the bar


def test_the_a100_table_is_only_beside_the_full_size_model(app_url):
    """Item 5: the seed's A100 figures are for the full-size model; beside shapes they are hidden and the page
    says why."""
    import urllib.request

    from explorer import is_full_size
    from vithybrid import ViTHybridConfig

    assert is_full_size(ViTHybridConfig(image_size=384, num_labels=1000))
    assert not is_full_size(ViTHybridConfig(image_size=384, num_labels=1000, num_hidden_layers=6))
    with urllib.request.urlopen(app_url + "config", timeout=30) as response:
        components = json.load(response)["components"]
    seed = next(c["props"] for c in components if c.get("props", {}).get("elem_id") == "seed")
    assert seed["visible"] is False


def test_the_command_line_suggests_the_shipped_model_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "vithybrid", str(STAR)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 2 and "--model shapes" in run.stderr and "Traceback" not in run.stderr


def test_the_api_answers_the_same_in_both_languages(app_url, shape_files):
    path = str(shape_files[0][0])
    answers = [Client(app_url, verbose=False, headers={"Accept-Language": language}).predict(
        handle_file(path), api_name="/classify") for language in ("en", "ar")]
    assert answers[0]["label"] == answers[1]["label"] == shape_files[0][1]
    assert [c["label"] for c in answers[0]["confidences"]] == [c["label"] for c in answers[1]["confidences"]]


def direction(locator) -> str:
    return locator.evaluate("e => getComputedStyle(e).direction")


def test_arabic_in_a_real_browser_right_to_left_and_the_switch(playwright, app_url):
    from playwright.sync_api import expect

    context, page = open_page(playwright, app_url, locale="ar")
    try:
        expect(page.locator("html")).to_have_attribute("lang", "ar", timeout=30_000)
        expect(page.locator("#intro")).to_contain_text("مستكشف ViT-Hybrid", timeout=30_000)
        expect(page.get_by_role("tab", name="تراكم الانتباه")).to_be_visible()
        expect(page.locator("#model")).to_contain_text("النموذج")
        assert direction(page.locator("#intro .prose").first) == "rtl"
        # a control's help line too, inside the block Gradio marks dir="ltr" (its full stop at its end, on the left)
        assert direction(page.locator("#cmap .info-text")) == "rtl"
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#labels")).to_contain_text("star", timeout=30_000)  # class names as the checkpoint's
        expect(page.locator("#rollout img")).to_have_attribute("src", re.compile("."), timeout=30_000)
        page.wait_for_function("() => document.querySelector('#rollout img').naturalWidth > 0", timeout=30_000)
        width, height = page.locator("#rollout img").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert height > width  # the square crop with its colour legend under it
        page.get_by_role("tab", name="كيف تعمل الرموز الهجينة").click()
        expect(page.locator("#how")).to_contain_text("رمز التصنيف CLS")
        expect(page.locator("#how")).to_contain_text("64x64")
        assert direction(page.locator("#how .prose").first) == "rtl"
        expect(page.locator("#backbone img")).to_have_attribute("src", re.compile("."), timeout=30_000)

        page.locator("#language").get_by_text("English", exact=True).click()  # the page's own switch
        expect(page.locator("html")).to_have_attribute("lang", "en", timeout=30_000)
        expect(page.locator("#intro")).to_contain_text("Drop a photo", timeout=30_000)
        expect(page.get_by_role("tab", name="Rollout")).to_be_visible()
        expect(page.locator("#how")).to_contain_text("The CLS token")
        assert direction(page.locator("#intro .prose").first) == "ltr"
        assert direction(page.locator("#cmap .info-text")) == "ltr"
        page.reload()  # the choice is remembered
        expect(page.locator("#intro")).to_contain_text("Drop a photo", timeout=30_000)
        expect(page.get_by_role("tab", name="Rollout")).to_be_visible(timeout=30_000)
        assert not page.errors, page.errors
    finally:
        context.close()


def test_english_phone_layout_small_and_bad_files(playwright, app_url, tmp_path):
    """Items 8, 9, 10 on a 390x844 phone: the Top-5 comes right after the photo (before the examples), every tab
    is on screen, a 1x1 picture gets a warning that goes with the picture, and a bad file's message stays where the
    picture was."""
    from PIL import Image
    from playwright.sync_api import expect

    from app import TABS

    context, page = open_page(playwright, app_url, locale="en-US", viewport=(390, 844))
    try:
        expect(page.locator("#intro")).to_contain_text("Drop a photo", timeout=30_000)
        assert direction(page.locator("#intro .prose").first) == "ltr"
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#labels")).to_contain_text("star", timeout=30_000)
        labels, examples = page.locator("#labels").bounding_box(), page.locator(".gallery").first.bounding_box()
        photo = page.locator("#inp").bounding_box()
        assert photo["y"] < labels["y"] < examples["y"]  # the answer right after the photo
        assert labels["y"] + 120 < 844  # ... and its top label on the first screen, without scrolling
        shot = os.environ.get("VITHYBRID_PHONE_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(len(TABS))
        for tab in tabs.all():
            expect(tab).to_be_visible()
        expect(page.locator("#examples-note")).to_contain_text("knows only shapes")

        tiny = tmp_path / "dot.png"
        Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
        page.locator("#inp input[type=file]").set_input_files(str(tiny))
        expect(page.locator("#photo-note")).to_contain_text("only 1x1 pixels", timeout=30_000)
        page.locator("#inp").get_by_role("button", name="Remove Image").click()  # the photo removed: its note too
        expect(page.locator("#photo-note")).to_be_hidden(timeout=30_000)

        bad = tmp_path / "notes.png"
        bad.write_bytes(b"just some notes, not a picture")
        page.locator("#inp input[type=file]").set_input_files(str(bad))
        note = page.locator("#photo-note")
        expect(note).to_contain_text("is not an image that can be read", timeout=30_000)
        page.wait_for_timeout(3000)
        expect(note).to_be_visible()
        expect(page.locator("#inp img")).to_have_count(0)  # no broken picture left
        expect(page.locator("#labels")).not_to_contain_text("Error")
        assert not page.errors, page.errors
    finally:
        context.close()


def test_the_explanation_lab_and_figure_7_in_arabic(playwright, app_url):
    """The lab's agreement sentence and faithfulness verdict (made at run time, and written again after a
    language switch) and the walk's Figure 7 captions in Arabic."""
    from playwright.sync_api import expect

    context, page = open_page(playwright, app_url, locale="ar")
    try:
        expect(page.locator("html")).to_have_attribute("lang", "ar", timeout=30_000)
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#labels")).to_contain_text("star", timeout=30_000)
        page.get_by_role("tab", name="مختبر التفسير").click()
        expect(page.locator("#lab-cam img")).to_be_visible(timeout=60_000)
        agreement = page.locator("#lab-agreement")
        expect(agreement).to_contain_text("الاتفاق:", timeout=30_000)
        expect(agreement).to_contain_text(re.compile("النصف الالتفافي|النصفان|الخريطتين|الخريطتان"))
        expect(page.locator("#tab-lab")).to_contain_text("أيّ خريطة نثق بها؟")
        expect(page.locator("#lab-areas")).to_contain_text("الخريطة")  # the empty table's headers
        page.locator("#lab-run").click()
        status = page.locator("#lab-status")
        expect(status).to_contain_text(re.compile("الأكثر أمانة هنا|لم تتفوّق أي خريطة"), timeout=60_000)
        # A finished verdict and its table follow a language switch (they are made at run time)
        page.locator("#language").get_by_text("English", exact=True).click()
        expect(status).to_contain_text(re.compile("Most faithful here|No map beat a random order"), timeout=30_000)
        expect(page.locator("#lab-areas")).to_contain_text("Attention rollout")
        page.locator("#language").get_by_text("العربية", exact=True).click()
        expect(status).to_contain_text(re.compile("الأكثر أمانة هنا|لم تتفوّق أي خريطة"), timeout=30_000)
        page.get_by_role("tab", name="كيف تعمل الرموز الهجينة").click()
        expect(page.locator("#tab-how")).to_contain_text("الشكل 7 من ورقة ViT")
        expect(page.locator("#tab-how")).to_contain_text("أقل وضوحًا في النماذج الهجينة")
        expect(page.locator("#fig7-distances img")).to_be_visible(timeout=30_000)
        assert not page.errors, page.errors
    finally:
        context.close()


def test_code_far_from_the_handler_answers_in_the_sessions_language(explorer, tmp_path):
    """A model the shelf cannot load again fails deep inside a tab's drawing, where no handler passed a language
    down: the error takes the language of the session whose event runs, from the request Gradio keeps for it."""
    import gradio as gr
    from gradio.context import LocalContext

    from explorer import ModelShelf
    from ui.i18n import COOKIE, session_language, text
    from ui.page import Page
    from vithybrid import CheckpointError

    with gr.Blocks() as demo:  # a handler reads the session's language without taking the request
        gr.Button().click(session_language, None, gr.Textbox(), api_name="language")
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        for header, language in (("ar-EG,ar;q=0.9", "ar"), ("en-US", "en"), ("fr", "en")):
            client = Client(f"http://127.0.0.1:{port}/", headers={"Accept-Language": header}, verbose=False)
            assert client.predict(api_name="/language") == language, header
    finally:
        demo.close()
    assert session_language() == "en"  # outside any event

    page = Page(explorer, ModelShelf(explorer, 2), *[None] * 5)
    gone = str(tmp_path / "deleted-checkpoint")
    with pytest.raises(CheckpointError) as reason:
        page.shelf.get(gone)

    class ArabicRequest:  # what language_of reads of a gr.Request: the switch's cookie
        cookies, headers = {COOKIE: "ar"}, {}

    token = LocalContext.request.set(ArabicRequest())
    try:
        with pytest.raises(gr.Error) as error:
            page.model_of(gone)
    finally:
        LocalContext.request.reset(token)
    assert error.value.message == text("ar", "error.model", reason=reason.value)
