"""Learning by experiment (issue 24): hiding cells two ways, the one-click comparison, the logit lens from the
photo's pass, and the "Hide and see" tab in a real browser in English and Arabic, its numbers the library's."""

import re

import pytest
import torch

import visualization as viz
from conftest import ROOT, open_page
from helpers import tiny_model
from vithybrid.explain import CLASS_MAP, PhotoPass
from vithybrid.training.shapes import sample

STAR = ROOT / "examples" / "shape_star.png"


def test_hidden_pixels_take_the_fill_and_nothing_else_changes():
    pixels = torch.randn(1, 3, 32, 48)
    grid = (4, 6)
    cells = [1, 8, 24]  # (0, 0), (1, 1), (3, 5)
    grey = torch.tensor([0.1, 0.2, 0.3])
    hidden = viz.hide_pixels(pixels, cells, grid, "grey", grey)
    mask = torch.from_numpy(viz.expand_to_pixels(viz.cell_mask(cells, grid), (32, 48)))
    assert mask.sum() == 3 * 8 * 8
    assert torch.equal(hidden[0][:, ~mask], pixels[0][:, ~mask])
    assert torch.equal(hidden[0][:, mask], grey[:, None].expand(3, int(mask.sum())))
    mean = viz.hide_pixels(pixels, cells, grid, "mean", grey)
    torch.testing.assert_close(mean[0][:, mask], pixels.mean(dim=(-2, -1))[0][:, None].expand(3, int(mask.sum())))
    blurred = viz.hide_pixels(pixels, cells, grid, "blur", grey)
    assert torch.equal(blurred[0][:, ~mask], pixels[0][:, ~mask]) and not torch.equal(blurred, pixels)
    with pytest.raises(ValueError, match="fill must be one of"):
        viz.hide_pixels(pixels, cells, grid, "paint", grey)


def test_dropped_tokens_and_their_maps_on_the_grid():
    grid = (3, 4)
    keep = viz.keep_mask([2, 7, 12], grid)
    assert keep.shape == (1, 12) and keep.sum() == 9 and not keep[0, 1] and not keep[0, 6] and not keep[0, 11]
    kept_values = torch.arange(1, 10, dtype=torch.float32)[None]
    on_grid = viz.on_grid(kept_values, keep, grid)[0]
    assert on_grid.flatten().tolist() == [1, 0, 2, 3, 4, 5, 0, 6, 7, 8, 9, 0]
    heatmap = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.8, 0.0, 0.7, 0.4], [0.5, 0.6, 0.05, 0.01]])
    assert viz.strongest_cells(heatmap, 3) == [2, 5, 7]
    assert viz.random_cells(grid, 5, seed=3) == viz.random_cells(grid, 5, seed=3)
    assert len(set(viz.random_cells(grid, 12, seed=1))) == 12


def test_the_logit_lens_comes_with_the_photos_pass():
    model = tiny_model(seed=2).requires_grad_(False)
    pixels = torch.randn(2, 3, model.config.image_size, model.config.image_size)
    photo = PhotoPass(model, pixels)
    with torch.inference_mode():
        expected = model.logit_lens(pixels)
    torch.testing.assert_close(photo.lens, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(photo.lens[:, -1], photo.logits, atol=1e-5, rtol=1e-5)
    assert photo.maps().lens.shape == (2, model.config.num_hidden_layers, model.config.num_labels)


@pytest.fixture(scope="module")
def star(explorer):
    from vithybrid.images import load_image

    image = load_image(STAR)
    return image, explorer.analysis(image)


def test_hiding_answers_as_the_model_does(explorer, star):
    """Each way's numbers are the model's own on the hidden input (the tokens' way: its token_mask)."""
    from explorer import experiments

    image, analysis = star
    cells = [1, 2, 9, 10]
    tokens = experiments.hide(explorer, image, cells, "tokens")
    with torch.inference_mode():
        expected = explorer.model(explorer.pixels(image), token_mask=viz.keep_mask(cells, explorer.grid)).logits
    torch.testing.assert_close(tokens.probabilities, expected[0].softmax(-1), atol=1e-5, rtol=1e-5)
    assert tokens.rollout.flatten()[[0, 1, 8, 9]].tolist() == [0, 0, 0, 0] and tokens.rollout.sum() > 0
    pixels = experiments.hide(explorer, image, cells, "pixels", "grey")
    assert pixels.cells == (1, 2, 9, 10) and pixels.seen.size == analysis.crop.size
    comparison = experiments.compare(explorer, image, CLASS_MAP, 6, "tokens")
    assert list(comparison.ranked.cells) == sorted(viz.strongest_cells(analysis.maps[CLASS_MAP], 6))
    again = experiments.compare(explorer, image, CLASS_MAP, 6, "tokens")
    assert again.random.cells == comparison.random.cells  # the same random cells for the same photo


def assert_in_order(text: str, parts: list[str]) -> None:
    """Each of `parts` appears in `text`, in this order."""
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0, f"{part!r} not in {text[position:]!r}"
        position = found + len(part)


def hide_tab_on_the_star(playwright, app_url, locale):
    """A page in `locale` with the star uploaded, on the Hide-and-see tab once it is drawn for the photo."""
    from playwright.sync_api import expect

    context, page = open_page(playwright, app_url, locale)
    expect(page.locator("html")).to_have_attribute("lang", locale[:2], timeout=30_000)
    page.locator("#inp input[type=file]").set_input_files(str(STAR))
    expect(page.locator("#labels")).to_contain_text("star", timeout=60_000)
    page.locator("#tab-hide-button").click()
    expect(page.locator("#hide-pick img")).to_be_visible(timeout=60_000)
    return context, page


@pytest.mark.parametrize("locale", ["en-US", "ar"])
def test_hide_and_see_in_a_real_browser(playwright, app_url, explorer, star, locale):
    """Pick cells by clicking and by row and column, hide them both ways, then run the one-click experiment: the
    sentence's numbers are the library's, in English and in Arabic."""
    from playwright.sync_api import expect

    from explorer import experiments
    from ui.describe import percent

    image, analysis = star
    context, page = hide_tab_on_the_star(playwright, app_url, locale)
    try:
        picker = page.locator("#hide-pick img")
        box = picker.bounding_box()
        rows, cols = explorer.grid
        before = picker.get_attribute("src")
        picker.click(position={"x": box["width"] * 0.5 / cols, "y": box["height"] * 0.5 / rows})  # cell 1
        expect(picker).not_to_have_attribute("src", before, timeout=30_000)
        page.locator("#hide-row input").fill("2")
        page.locator("#hide-col input").fill("3")
        before = picker.get_attribute("src")
        page.locator("#hide-toggle").click()  # cell (2, 3): token cols + 3
        expect(picker).not_to_have_attribute("src", before, timeout=30_000)
        page.locator("#hide-run").click()
        words = page.locator("#hide-text")
        expect(words).to_contain_text("%", timeout=60_000)
        cells = [1, cols + 3]
        label = analysis.top[0][0]
        language = locale[:2]
        assert_in_order(words.inner_text(), [percent(language, analysis.top[0][2])] + [
            percent(language, float(experiments.hide(explorer, image, cells, way).probabilities[label]))
            for way in ("pixels", "tokens")])
        if locale == "ar":  # the shapes model's classes in Arabic, the checkpoint's label after each
            assert "نجمة" in words.inner_text() and "نجمة (star)" in page.locator("#labels").inner_text()
        page.locator("#hide-experiment").click()
        expect(words).to_contain_text(re.compile("random|عشوائية"), timeout=60_000)
        comparison = experiments.compare(explorer, image, "rollout", 10, "tokens")
        assert_in_order(words.inner_text(), [percent(language, analysis.top[0][2])] + [
            percent(language, float(trial.probabilities[label])) for trial in (comparison.ranked, comparison.random)])
        assert not page.errors, page.errors
    finally:
        context.close()


def test_the_logit_lens_is_shown_with_the_rollout(playwright, app_url, explorer, star):
    from playwright.sync_api import expect

    image, analysis = star
    context, page = open_page(playwright, app_url)
    try:
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#lens-chart img")).to_be_visible(timeout=60_000)
        guesses = page.locator("#lens-guesses")
        expect(guesses).to_contain_text("star", timeout=30_000)
        assert guesses.locator("td").count() == explorer.model.config.num_hidden_layers + 1
        assert "layer" in page.locator("#lens-text").inner_text()
    finally:
        context.close()


@pytest.mark.parametrize("locale", ["en-US", "ar"])
def test_the_saved_page_opens_offline_with_its_pictures(playwright, app_url, explorer, star, locale, tmp_path):
    """After a hide-and-see run, "Save what you found" gives one HTML file; opened with the network off, every
    picture is there (inlined), in the session's language and direction, with the hide-and-see result."""
    import urllib.request

    from playwright.sync_api import expect

    context, page = hide_tab_on_the_star(playwright, app_url, locale)
    try:
        page.locator("#hide-experiment").click()
        expect(page.locator("#hide-text")).to_contain_text("%", timeout=60_000)
        page.locator("#save").click()
        link = page.locator("#saved a").first
        expect(link).to_be_attached(timeout=60_000)
        saved = tmp_path / "saved.html"
        with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as response:
            saved.write_bytes(response.read())
        context.set_offline(True)
        offline = context.new_page()
        offline.goto(saved.as_uri())
        language = locale[:2]
        expect(offline.locator("html")).to_have_attribute("lang", language)
        expect(offline.locator("html")).to_have_attribute("dir", "rtl" if language == "ar" else "ltr")
        pictures = offline.locator("img")
        assert pictures.count() >= 6  # photo, rollout, class map, Grad-CAM, logit lens, the hidden trials
        assert offline.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        body = offline.locator("body").inner_text()
        assert ("نجمة" in body) if language == "ar" else ("star" in body)
        assert "shapes" in body and ("random" in body or "عشوائية" in body)
        if language == "en":  # another star, with the tab closed: its saved page has no result of the first one's
            another = tmp_path / "another_star.png"
            another_star(explorer).save(another)
            context.set_offline(False)
            page.locator("#tab-rollout-button").click()
            page.locator("#inp input[type=file]").set_input_files(str(another))
            expect(page.locator("#rollout img")).to_be_visible(timeout=60_000)
            before = link.get_attribute("href")
            page.locator("#save").click()
            expect(page.locator("#saved a").first).not_to_have_attribute("href", before, timeout=60_000)
            with urllib.request.urlopen(page.locator("#saved a").first.get_attribute("href"), timeout=60) as response:
                again = response.read().decode("utf-8")
            assert "Hide and see" not in again and again.count("<img") == 5, again.count("<img")
    finally:
        context.close()


def another_star(explorer):
    """A star other than the example that the model also calls a star."""
    for index in range(200):
        drawn = sample(seed=31, index=index, size=256)
        if drawn.name == "star" and explorer.labels(drawn.image)[0][1] == "star":
            return drawn.image
    raise AssertionError("no other star found")
