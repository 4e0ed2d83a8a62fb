"""What every part of the page shares: the models, the photo, the common controls, and the hooks through
which a tab asks to be redrawn after a new photo or model, reset after a model switch, or written in the
session's language. A tab is a module with TITLE (its translation key), ELEM_ID and build(page)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from explorer import Explorer, ModelShelf
from vithybrid import CheckpointError
from vithybrid.images import ImageError, load_image

from .i18n import session_language, text

log = logging.getLogger("vithybrid.app")
Hook = tuple[Callable, list, list]  # (function, input components, output components)


@functools.lru_cache(maxsize=16)
def open_photo(path: str) -> Image.Image:
    """The decoded photo of an upload (uploads are content-addressed files: the path names the content)."""
    return load_image(path)


def user_error(message: str) -> gr.Error:
    """A mistake of the user's (no photo, a bad file): one line in the server log, no traceback, and a toast
    that stays until closed."""
    log.warning("user error: %s", message)
    return gr.Error(message, duration=None, print_exception=False)


def file_message(error: ImageError, language: str) -> str:
    """A bad file's message: the library's own in English; in other languages, ours with it as the detail."""
    return str(error) if language == "en" else text(language, "error.bad_file", reason=error)


PRIVATE = dict(api_visibility="private")  # events of the page, not of the public API


@dataclass
class Page:
    explorer: Explorer  # the startup model (the API's)
    shelf: ModelShelf
    chosen: gr.State  # the session's model name
    image: gr.Image  # app.PhotoInput: the upload's path, unopened
    cmap: gr.Dropdown
    alpha: gr.Slider
    fusion: gr.Radio
    renders: list[Hook] = field(default_factory=list)
    resets: list[Hook] = field(default_factory=list)
    texts: list[Hook] = field(default_factory=list)
    shared: dict[str, gr.components.Component] = field(default_factory=dict)  # controls one tab lends others
    tab: gr.Tab | None = None  # the tab being built (for a tab that draws only once opened)

    # -- the hooks ----------------------------------------------------------------------------------------
    def on_photo(self, fn: Callable, inputs: Sequence, outputs: Sequence) -> None:
        """Redraw `outputs` with fn(*inputs) after every new photo or model (in order, after the labels)."""
        self.renders.append((fn, list(inputs), list(outputs)))

    def on_model(self, fn: Callable, inputs: Sequence, outputs: Sequence) -> None:
        """Reset `outputs` with fn(model_name, *inputs) after a model switch, before the redraw."""
        self.resets.append((fn, list(inputs), list(outputs)))

    def on_text(self, fn: Callable, inputs: Sequence, outputs: Sequence) -> None:
        """Write `outputs` with fn(language, explorer, *inputs): on load, after a language or model switch."""
        self.texts.append((fn, list(inputs), list(outputs)))

    @staticmethod
    def combined(hooks: list[Hook], leading: int = 0) -> tuple[list, list, Callable]:
        """One event for many hooks: (their inputs, their outputs, fn(*leading_values, *their_input_values)),
        each hook called with the `leading` values first."""
        inputs = [component for _, hook_inputs, _ in hooks for component in hook_inputs]
        outputs = [component for _, _, hook_outputs in hooks for component in hook_outputs]

        def run(*values):
            head, rest, results = values[:leading], values[leading:], []
            for fn, hook_inputs, hook_outputs in hooks:
                result = fn(*head, *rest[:len(hook_inputs)])
                rest = rest[len(hook_inputs):]
                results += list(result) if len(hook_outputs) > 1 else [result]
            return results

        return inputs, outputs, run

    # -- what every handler needs -------------------------------------------------------------------------
    def model_of(self, name: str, on_load: Callable[[], None] | None = None, language: str | None = None) -> Explorer:
        """The session's chosen model (loaded again if the shelf dropped it meanwhile); a model that cannot load is
        an error in `language` (default: the running event's session's)."""
        try:
            return self.shelf.get(name, on_load)
        except CheckpointError as error:
            raise user_error(text(language or session_language(), "error.model", reason=error)) from None

    @staticmethod
    def need(path: str | None, language: str | None = None) -> Image.Image:
        """The photo, or an error that says what is wrong (in `language`, default: the session's)."""
        language = language or session_language()
        if path is None:
            raise user_error(text(language, "error.no_photo"))
        try:
            return open_photo(path)
        except ImageError as error:
            raise user_error(file_message(error, language)) from None

    @staticmethod
    def photo(path: str | None) -> Image.Image | None:
        """For pictures that simply stay empty without a usable photo (the photo's note says why)."""
        try:
            return None if path is None else open_photo(path)
        except ImageError:
            return None

    def analysis(self, name: str, path: str | None):
        """(the chosen model, the photo, the model's analysis of it), or None without a usable photo."""
        image = self.photo(path)
        if image is None:
            return None
        chosen = self.model_of(name)
        return chosen, image, chosen.analysis(image)

    def class_choices(self, name: str, path: str | None):
        """The class dropdown for a photo: its top-5 as "label (p%)", the top class picked."""
        found = self.analysis(name, path)
        if found is None:
            return gr.update(choices=[], value=None)
        top = found[2].top
        return gr.update(choices=[(f"{label} ({p:.1%})", index) for index, label, p in top], value=top[0][0])


# Controls may still show the previous model's layer, head or token while a switch lands: clamp them.
def layer_index(analysis, layer) -> int:
    return min(int(layer), len(analysis.attentions)) - 1


def head_index(analysis, head) -> int | None:
    return None if head == "all" or int(head) > analysis.attentions[0].shape[1] else int(head) - 1


def head_choices(heads: int) -> list[str]:
    return ["all"] + [str(h) for h in range(1, heads + 1)]
