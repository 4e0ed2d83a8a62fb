"""The page's two languages. Every user-visible string lives in locales/<language>.json (one file per
language, flat keys, so a teacher can correct a translation without reading code).

Static text (labels, help lines, tab names) goes to the browser as `I18N("key")` and Gradio's front end
translates it in the page's locale (the browser's language, or the one picked with the switch). Text made
in Python at run time (banners, errors, the guided walk's numbers) is formatted here, in the language of
the request: the switch's cookie if set, else the browser's Accept-Language.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

LOCALES = Path(__file__).resolve().parents[1] / "locales"
LANGUAGES = {"en": "English", "ar": "العربية"}  # code -> the language's own name (the switch's choices)
CODES = {name: code for code, name in LANGUAGES.items()}
DEFAULT = "en"
RIGHT_TO_LEFT = {"ar"}
COOKIE = "vithybrid_lang"  # set by the page's language switch


def load(language: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


TRANSLATIONS = {language: load(language) for language in LANGUAGES}
I18N = gr.I18n(**TRANSLATIONS)


def text(language: str, key: str, **values) -> str:
    """The string `key` in `language` (English where it has none), with `values` filled in."""
    table = TRANSLATIONS.get(language, TRANSLATIONS[DEFAULT])
    return table.get(key, TRANSLATIONS[DEFAULT][key]).format(**values)


def best_match(accept_language: str) -> str:
    """The first language of an Accept-Language header that the page speaks ("ar-EG,ar;q=0.9" -> "ar")."""
    weighted = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        if parameters.strip().startswith("q="):
            try:
                quality = float(parameters.strip()[2:])
            except ValueError:
                continue
        weighted.append((-quality, position, tag.split("-")[0].lower()))
    return next((tag for *_, tag in sorted(weighted) if tag in LANGUAGES), DEFAULT)


def language_of(request: gr.Request | None) -> str:
    """The language to answer `request` in: the switch's cookie, else the browser's, else English."""
    if request is None:
        return DEFAULT
    chosen = (request.cookies or {}).get(COOKIE) if hasattr(request, "cookies") else None
    if chosen in LANGUAGES:
        return chosen
    return best_match((request.headers or {}).get("accept-language", ""))


def session_language() -> str:
    """The language of the session whose event is running: Gradio keeps each event's request in a context variable
    (what its own caching and chat interface read), so that code far from the handler, such as a model reload that
    fails, can answer in the page's language without every handler passing it down. English outside an event."""
    from gradio.context import LocalContext

    return language_of(LocalContext.request.get(None))


# The switch: remember the choice in a cookie (for the text Python formats) and tell Gradio's front end to
# change its locale. Gradio offers the same under Settings > Language but keeps no handle for a page's own
# control, so this imports its front-end module (already loaded, hence the same instance) and calls
# changeLocale, which also sets <html lang>, which the right-to-left CSS follows.
SWITCH_JS = """async (choice, ...rest) => {
  const codes = %s;
  const code = codes[choice] || "en";
  document.cookie = "%s=" + code + "; path=/; max-age=31536000; samesite=lax";
  const core = performance.getEntriesByType("resource").map(e => e.name).find(n => /\\/assets\\/core-[^/]*\\.js$/.test(n));
  if (core) { (await import(core)).changeLocale(code); }
  return [choice, ...rest];
}""" % (json.dumps(CODES), COOKIE)

# On load, a language picked earlier with the switch wins over the browser's.
LOAD_JS = """async () => {
  const picked = document.cookie.split("; ").find(c => c.startsWith("%s="));
  if (!picked) return;
  const core = performance.getEntriesByType("resource").map(e => e.name).find(n => /\\/assets\\/core-[^/]*\\.js$/.test(n));
  if (core) { (await import(core)).changeLocale(picked.split("=")[1]); }
}""" % COOKIE

# Right to left wherever the page's language is (Gradio sets <html lang> to the locale it shows). Not for tables:
# Gradio's dataframe draws its header and body apart, and only the header would flip. A control's label and help
# line too: Gradio gives every block dir="ltr", which put a help line's full stop at its start.
RTL_CSS = " ".join(f'html[lang|="{code}"] .gradio-container, html[lang|="{code}"] .prose, '
                   f'html[lang|="{code}"] .info-text, html[lang|="{code}"] [data-testid=block-info] {{direction: rtl; '
                   f'text-align: right;}} '
                   f'html[lang|="{code}"] .gradio-container img, '
                   f'html[lang|="{code}"] input[type=range] {{direction: ltr;}}' for code in sorted(RIGHT_TO_LEFT))
