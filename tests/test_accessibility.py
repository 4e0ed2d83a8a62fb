"""The page for every student (issue 27): axe-core (vendored, tests/vendor/axe-core) in a real browser on every tab,
with a photo analysed, in English and in Arabic, fails on any critical or serious violation; every picture says in
words what its map shows, in the session's language; the token explorer by keyboard, with a visible focus ring; the
colormap offered."""

import re
from pathlib import Path

import pytest

from conftest import ROOT, open_page

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
STAR = ROOT / "examples" / "shape_star.png"
FAILING = ("critical", "serious")
# Gradio's own markup that no API, theme or CSS of ours reaches (README, "Accessibility"):
# an empty gr.Image (a result not asked for yet: the lab's curves, the timing chart) is a <div aria-label="...">
# without a role, which ARIA does not allow to be named.
GRADIO_MARKUP = {"aria-prohibited-attr": ".empty.unpadded_box[aria-label]"}
# Results that stay empty until a button asks for them (so nothing to wait for on those tabs).
EMPTY_UNTIL_ASKED = ("lab-curves", "timing-chart", "hide-bars", *(f"hide-{way}{part}" for way in ("original", "pixels",
                     "tokens") for part in ("", "-labels")))
# Pictures with their words shown in a caption under them (elem_id `{id}-text`) besides their alternative text.
CAPTIONED = ("rollout", "class-map", "lab-cam", "lab-classmap", "raw", "heads", "layers", "backbone", "fig7-filters",
             "fig7-positions", "fig7-distances")

# A tab is settled when nothing in it is pending, every picture that will be drawn is, and every image has loaded.
SETTLED = """([panel, emptyUntilAsked]) => {
  const root = document.getElementById(panel);
  if (!root || !root.checkVisibility()) return false;
  const pending = [...root.querySelectorAll('[data-testid=status-tracker]')].some(
    e => !e.classList.contains('hide') && e.checkVisibility()) || root.querySelector('.pending');  // faded: waiting
  const undrawn = [...root.querySelectorAll('.empty')].some(e => e.checkVisibility() &&
    !emptyUntilAsked.some(id => e.closest('#' + id)));
  const loading = [...root.querySelectorAll('img')].some(i => i.checkVisibility() && !i.complete);
  return !pending && !undrawn && !loading;
}"""

# axe's violations, each node with the elem_id of the nearest element that has an id and whether it is Gradio markup
# we cannot reach.
AUDIT = """async ([gradioMarkup]) => {
  const { violations } = await axe.run(document, { resultTypes: ['violations'] });
  return violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => {
    const element = document.querySelector(n.target[0]);
    return { target: n.target.join(' '), owner: element?.closest('[id]')?.id ?? '', why: n.any[0]?.message ?? '',
             gradio: !!(gradioMarkup[v.id] && element?.matches(gradioMarkup[v.id])) };
  }) }));
}"""


def failures(violations, tab: str) -> list[str]:
    """The critical and serious violations that are ours, one line each: the tab, the rule, its impact, the targets."""
    lines = []
    for violation in violations:
        nodes = [node for node in violation["nodes"] if not node["gradio"]]
        if violation["impact"] in FAILING and nodes:
            lines.append(f"[{tab}] {violation['id']} ({violation['impact']}: {violation['help']}) on "
                         + ", ".join(f"{node['target']} (in #{node['owner']}: {node['why']})" for node in nodes))
    return lines


def visit(page, tab) -> None:
    """Open the tab and wait until it is settled. A tab with a new photo's pictures due is drawn by an event that
    its opening's answer starts (ui.page: not drawn while closed): settled is checked again a moment later, when that
    drawing shows as pending, and waited for."""
    page.locator(f"#{tab.ELEM_ID}-button").click()
    for _ in range(2):
        page.wait_for_function(SETTLED, arg=[tab.ELEM_ID, list(EMPTY_UNTIL_ASKED)], timeout=60_000)
        page.wait_for_timeout(500)


def audit_every_tab(page) -> list[str]:
    from app import TABS

    # A new photo redraws tab after tab, in page order, including tabs not on screen (whose markup is made only when
    # shown): once each tab is settled in turn, the whole redraw is over and nothing fades or changes under axe.
    for tab in TABS:
        visit(page, tab)
    page.add_script_tag(path=str(AXE))
    found = []
    for tab in TABS:
        visit(page, tab)
        found += failures(page.evaluate(AUDIT, [GRADIO_MARKUP]), tab.ELEM_ID)
    return found


def words_of_every_picture(page) -> dict[str, tuple[str, str]]:
    """{id: (alternative text, caption)} of every captioned picture, each read on its tab once settled."""
    from app import TABS

    words = {}
    for tab in TABS:
        visit(page, tab)
        for picture in CAPTIONED:
            if page.locator(f"#{tab.ELEM_ID} #{picture}").count():
                # the caption's words, not the progress Gradio may show over it while a tab's opening is answered
                words[picture] = (page.locator(f"#{picture} img").get_attribute("alt"),
                                  page.locator(f"#{picture}-text .prose").first.inner_text())
    assert set(words) == set(CAPTIONED), set(CAPTIONED) - set(words)
    return words


def same_words(alt: str, caption: str) -> bool:
    return bool(alt) and " ".join(alt.split()) == " ".join(caption.split())


# One page load per language; colours do not depend on the language, so English is audited light and Arabic dark.
@pytest.mark.parametrize("locale, color_scheme, examples_name", [("en-US", "light", "Star (shape)"),
                                                                 ("ar", "dark", "نجمة (شكل)")])
def test_no_critical_or_serious_axe_violation_on_any_tab(playwright, app_url, locale, color_scheme, examples_name):
    from playwright.sync_api import expect

    context, page = open_page(playwright, app_url, locale, color_scheme=color_scheme)
    try:
        expect(page.locator("html")).to_have_attribute("lang", locale[:2], timeout=30_000)
        expect(page.get_by_role("button", name=examples_name)).to_be_visible(timeout=30_000)  # named examples
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#labels")).to_contain_text("star", timeout=60_000)
        found = audit_every_tab(page)
        assert not found, "axe-core found critical or serious violations:\n" + "\n".join(found)
        assert not page.errors, page.errors
    finally:
        context.close()


def test_every_picture_says_what_its_map_shows_in_the_sessions_language(playwright, app_url, explorer):
    """The rollout's alternative text is the sentence of its map, naming the region where the analysis has its strong
    cells; the top-5 is a sentence under the chart; every captioned picture's caption says what its alternative text
    says; a switch to Arabic rewrites them all from the cached analysis."""
    from playwright.sync_api import expect

    import visualization as viz
    from ui.describe import PLACE_KEYS, describe, top_sentence
    from ui.header import labels_shown
    from ui.i18n import text
    from ui.page import open_photo

    context, page = open_page(playwright, app_url)
    try:
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#rollout img")).to_have_attribute("alt", re.compile("."), timeout=60_000)
        analysis = explorer.cached(open_photo(str(STAR)))
        rollout = analysis.rollout()  # the tab's default settings: mean fusion, nothing discarded
        facts = viz.describe_map(rollout)
        assert facts.places and facts.places[0] in PLACE_KEYS, facts  # a map with a region to name
        english = words_of_every_picture(page)
        assert english["rollout"][0] == describe("en", rollout)
        assert f"at the {text('en', PLACE_KEYS[facts.places[0]])} of the photo" in english["rollout"][0]
        assert all(same_words(alt, caption) for alt, caption in english.values()), english
        expect(page.locator("#labels-text")).to_have_text(top_sentence("en", labels_shown(explorer, analysis.top,
                                                                                           "en")))

        page.locator("#language").get_by_text("العربية", exact=True).click()
        expect(page.locator("#labels-text")).to_have_text(top_sentence("ar", labels_shown(explorer, analysis.top,
                                                                                           "ar")), timeout=30_000)
        expect(page.locator("#rollout img")).to_have_attribute("alt", describe("ar", rollout), timeout=30_000)
        assert text("ar", PLACE_KEYS[facts.places[0]]) in describe("ar", rollout)
        arabic = words_of_every_picture(page)
        for picture, (alt, caption) in arabic.items():
            assert same_words(alt, caption) and re.search("[\u0600-\u06ff]", alt), (picture, alt, caption)
            assert alt != english[picture][0], picture
        assert not page.errors, page.errors
    finally:
        context.close()


def test_the_token_explorer_by_keyboard_with_a_visible_focus(playwright, app_url):
    """Tab reaches the row and column boxes after the tab's own button; typing or stepping them picks the token a
    click picks, the boxes follow a click, a value off the grid is kept on it, and the focused box shows a ring."""
    from playwright.sync_api import expect

    context, page = open_page(playwright, app_url)
    try:
        page.locator("#inp input[type=file]").set_input_files(str(STAR))
        expect(page.locator("#labels")).to_contain_text("star", timeout=60_000)
        page.locator("#tab-tokens-button").click()
        caption, row = page.locator("#token-text"), page.locator("#token-row input")
        col = page.locator("#token-col input")
        expect(caption).to_contain_text("Token 1 of 64", timeout=30_000)
        for _ in range(30):  # the keyboard alone, from the tab's button
            page.keyboard.press("Tab")
            if row.evaluate("e => e === document.activeElement"):
                break
        else:
            pytest.fail("Tab never reached the token row box")
        # The ring as drawn once any transition has ended (waited for: a loaded machine draws late)
        page.wait_for_function("""e => getComputedStyle(e).outlineStyle === 'solid' &&
                                      getComputedStyle(e).outlineWidth === '3px'""", arg=row.element_handle())
        page.keyboard.press("ArrowUp")  # row 2
        expect(caption).to_contain_text("Token 9 of 64: row 2, column 1")
        page.keyboard.press("Tab")
        expect(col).to_be_focused()
        page.keyboard.press("Control+A")
        page.keyboard.type("99")  # off the 8x8 grid: the last column
        expect(caption).to_contain_text("Token 16 of 64: row 2, column 8")
        expect(col).to_have_value("8")
        # The caption and the map's alternative text say where the token looks, in words (the same event writes
        # both: wait until the picture's words are the caption's).
        expect(caption).to_contain_text("of the photo")
        page.wait_for_function("""() => { const alt = document.querySelector('#token-attention img')?.alt;
            return alt && document.querySelector('#token-text').innerText.includes(alt); }""")
        # A click on the first cell: the boxes follow.
        grid = page.locator("#token-grid img")
        x, y = grid.evaluate("""img => {
            const r = img.getBoundingClientRect();
            const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
            const w = img.naturalWidth * s, h = img.naturalHeight * s;
            return [(r.width - w) / 2 + 0.03 * w, (r.height - h) / 2 + 0.03 * h]; }""")
        grid.click(position={"x": x, "y": y})
        expect(caption).to_contain_text("Token 1 of 64: row 1, column 1", timeout=30_000)
        expect(row).to_have_value("1")
        expect(col).to_have_value("1")
        assert not page.errors, page.errors
    finally:
        context.close()


def test_the_colormaps_offered_start_with_a_perceptually_uniform_one():
    from ui.header import COLORMAPS

    assert COLORMAPS[0] == "viridis" and "jet" in COLORMAPS  # jet still offered, its help line says why not default
