"""What every part of the page shares: the models, the photo, the common controls, and the hooks through which a
tab asks to be redrawn after a new photo or model or a control's change, reset after a model switch, or written
in the session's language. A tab is a module with TITLE (its translation key), ELEM_ID and build(page); tabs
depend on the page only, never on each other, so they can be built in any order.

Only the open tab is drawn: after a new photo or model, the open tab's pictures (and those outside any tab) are drawn, a
closed tab's when it is opened (`Page.new_photo`); a change of a control several tabs use (the colour map, the
opacity, the head fusion) is one event that redraws the open tab, a closed tab it changed is redrawn when it is opened
(`Page.wire_redraws`), and so for every control. So a new photo costs the pictures a student looks at, and a slider move
one round trip and one picture, not one per tab: a class's server has every student's photos and moves to serve beside
the model's work. A new photo's check, labels and open tab's cue are one event (`Page.new_photo`), not one per hook."""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from explorer import LIBRARY, Explorer, ModelShelf
from vithybrid import CheckpointError
from vithybrid.images import ImageError, load_image

from .i18n import I18N, session_language, text

log = logging.getLogger("vithybrid.app")
Hook = tuple[Callable, list, list]  # (function, input components, output components)
# words(language, chosen model, the photo's analysis, *values): one sentence per picture, or None to leave one as is
Words = Callable[..., Sequence[str | None]]
PRIVATE = dict(api_visibility="private")  # events of the page, not of the public API


@functools.lru_cache(maxsize=64)
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


def session() -> str:
    """The session (browser tab or API client) whose event is running, read from the request Gradio keeps for
    the event: model work waits for it until it leaves (explorer.work)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) or LIBRARY


@dataclass(frozen=True)
class Picture:
    """A picture and its text alternative (WCAG 1.1.1): the words are the image's alternative text and, with a
    caption, also shown under it, for every reader."""

    image: gr.Image
    caption: gr.Markdown | None = None

    @property
    def outputs(self) -> list:
        return [self.image] + ([self.caption] if self.caption is not None else [])

    def show(self, picture, words: str | None) -> list:
        """The outputs' values: `picture` (None clears it, and its caption) described by `words`."""
        if picture is None:
            return [None] + ([""] if self.caption is not None else [])
        return [gr.update(value=picture, alt_text=words)] + ([words] if self.caption is not None else [])

    def describe(self, words: str | None) -> list:
        """The outputs' values for new words about the same picture (None: leave both as they are)."""
        if words is None:
            return [gr.update()] * len(self.outputs)
        return [gr.update(alt_text=words)] + ([words] if self.caption is not None else [])


def as_gradio_calls(fn: Callable) -> Callable:
    """fn, to be called with its inputs' values only from inside another event's function: its `request` parameter
    (a gr.Request, which Gradio fills by the parameter's type) filled from the running event."""
    if "request" not in inspect.signature(fn).parameters:
        return fn

    def call(*values):
        from gradio.context import LocalContext

        return fn(*values, request=LocalContext.request.get(None))

    return call


class TabMarks:
    """Per session (browser tab): which of the page's tabs is open, and which closed ones show pictures that are out
    of date, and why: a new photo or model (every photo hook of the tab is due) or a shared control's change (its
    hooks of those controls). Kept in the server under a lock, not in gr.State: a tab's opening, the photo's
    drawing and a control's change run at the same time, and each would overwrite the others' State."""

    PHOTO, CONTROLS = "photo", "controls"  # PHOTO includes CONTROLS
    # A session's marks are kept while its page is used, not dropped when the page's connection drops (a phone in
    # the background, a laptop asleep: Gradio calls unload, yet the page goes on with the same session): they go
    # after this long unused, as Gradio's own session state does.
    KEEP_S = 3600
    TWIN_S = 1.0  # a browser's gr.Image sends `change` twice at once when a photo replaces another: the second is
    # dropped while the first's event runs and this long after it ends (a later upload of the same file is answered)

    def __init__(self):
        self.tabs: list[str] = []  # the page's, the first one open in a session that has not picked one
        self._lock = threading.Lock()
        self._open: dict[str, str] = {}
        self._stale: dict[str, dict[str, str]] = {}
        self._drawing: dict[str, str] = {}  # session -> the tab its new photo's pictures are drawn in
        self._photo: dict[str, tuple[Hashable, float | None]] = {}  # session -> its latest photo, when its event ended
        self._event: dict[str, int] = {}  # session -> the number of its latest new photo or model's event
        self._numbers = itertools.count(1)
        self._used: dict[str, float] = {}  # session -> when its marks were last used (time.monotonic)

    def new_photo(self, session: str, photo: Hashable = None) -> int | None:
        """A new photo or model: every tab but the open one is out of date; the open one is drawn now. Returns the
        event's number (see `latest`); None, and nothing marked, for the `photo` (not None) that is the session's
        latest, its event running or ended less than TWIN_S ago (`photo_done`): the twin of that event."""
        with self._lock:
            self._use(session)
            latest, ended = self._photo.get(session, (None, None))
            if photo is not None and latest == photo and (ended is None or time.monotonic() - ended < self.TWIN_S):
                return None
            self._photo[session] = (photo, None)
            shown = self._open.get(session, self.tabs[0])
            self._stale[session] = {tab: self.PHOTO for tab in self.tabs if tab != shown}
            self._drawing[session] = shown
            self._event[session] = number = next(self._numbers)
            return number

    def latest(self, session: str, number: int) -> bool:
        """Whether the new photo or model's event `number` (from new_photo) is the session's latest. A photo's event
        and a model switch's run at once, each with the photo and model of the moment it started: the later one's
        are the page's, so an earlier one that ends after it started writes nothing."""
        with self._lock:
            return self._event.get(session) == number

    def photo_done(self, session: str, photo: Hashable) -> None:
        """The event of `photo` (given to new_photo) ended, answered or failed."""
        with self._lock:
            if self._photo.get(session, (None,))[0] == photo:
                self._photo[session] = (photo, time.monotonic())

    def photo_tab(self, session: str) -> str | None:
        """The tab to draw once a new photo's labels are in: the tab open when the photo came, if open still; None
        if it was left since (it is out of date, drawn when opened again; a tab opened since the photo came was
        drawn by its opening)."""
        with self._lock:
            self._use(session)
            tab = self._drawing.get(session)
            if tab is None or self._open.get(session, self.tabs[0]) == tab:
                return tab
            del self._drawing[session]
            self._stale.setdefault(session, {})[tab] = self.PHOTO
            return None

    def changed(self, session: str, tab: str) -> bool:
        """Whether `tab`, one a control's change concerns, is open (draw it now); if not, it is marked out
        of date."""
        with self._lock:
            self._use(session)
            if self._open.get(session, self.tabs[0]) == tab:
                return True
            self._stale.setdefault(session, {}).setdefault(tab, self.CONTROLS)
            return False

    def opened(self, session: str, tab: str) -> str | None:
        """`tab` is open now: why its pictures are out of date (they are up to date from here on), or None."""
        with self._lock:
            self._use(session)
            self._open[session] = tab
            return self._stale.get(session, {}).pop(tab, None)

    @property
    def sessions(self) -> set[str]:
        """The sessions whose marks are kept."""
        with self._lock:
            return set(self._used)

    def _use(self, session: str) -> None:
        now = time.monotonic()
        self._used[session] = now
        for old in [other for other, used in self._used.items() if now - used > self.KEEP_S]:
            del self._used[old]
            for marks in (self._open, self._stale, self._drawing, self._photo, self._event):
                marks.pop(old, None)


@dataclass
class Page:
    explorer: Explorer  # the startup model (the API's)
    shelf: ModelShelf
    chosen: gr.State  # the session's model name
    image: gr.Image  # app.PhotoInput: the upload's path, unopened
    cmap: gr.Dropdown
    alpha: gr.Slider
    fusion: gr.Radio
    renders: list[tuple[gr.Tab | None, Hook]] = field(default_factory=list)  # (its tab, hook), in page order
    clears: list[Hook] = field(default_factory=list)  # on_photo(closed_too=True)
    redraws: list[tuple[gr.Tab | None, Hook, list]] = field(default_factory=list)  # (its tab, hook, its controls)
    resets: list[Hook] = field(default_factory=list)
    texts: list[Hook] = field(default_factory=list)
    tab: gr.Tab | None = None  # the tab being built (for a tab that draws only once opened)
    findings: dict[str, gr.State] = field(default_factory=dict)  # what tabs found, for the saved page (ui.save)
    dues: dict[str, gr.State] = field(default_factory=dict)  # tab -> its photo hooks' trigger (`_dues`)
    marks: TabMarks = field(default_factory=TabMarks)

    # -- the hooks ----------------------------------------------------------------------------------------
    def on_photo(self, fn: Callable, inputs: Sequence, outputs: Sequence, closed_too: bool = False) -> None:
        """Redraw `outputs` with fn(*inputs) after every new photo or model (in order, after the labels; in a closed
        tab, when it is opened, unless `closed_too`: for a hook that clears another photo's results, which other
        parts of the page read, e.g. the saved page)."""
        if closed_too:
            self.clears.append((fn, list(inputs), list(outputs)))
            return
        self.renders.append((self.tab, (fn, list(inputs), list(outputs))))

    def new_photo(self, check: Hook, labels: Hook, once: bool = False) -> tuple[Callable, list, list]:
        """A new photo or model's event, as (fn, inputs, outputs): its check, then its labels (each a hook, fn(*inputs)
        -> outputs), then the drawing of the tab that was open when the photo came, if open still (its photo hooks'
        chain, `wire_redraws`; a closed tab's chain runs when it is opened, not in every photo's chain as steps that
        draw nothing). First it marks the tabs' pictures out of date and runs the hooks that clear another photo's
        results (`on_photo(closed_too=True)`): before the labels, so before any tab can show the photo, and a result
        asked for of it stays. One event, not one each: each is a round trip before the labels (over a network, a
        round trip each way). The check's outputs (the photo's note, the clearing hooks') are sent at once, before the
        labels are computed (the event is a generator), so they show even if the labels fail. Give the event
        trigger_mode="always_last": a photo that comes while one's labels are computed is answered after them, not
        dropped. With `once`, the event does nothing for the labels' inputs (the model and the photo) of the
        session's event running or just ended (TabMarks.TWIN_S): the twin `change` a browser's gr.Image sends with
        the same photo when a photo replaces another. An event a later one of the session started during (a model
        switched while a photo's labels are computed, or the other way round) writes no labels and draws nothing: the
        later one has the page's photo and model (TabMarks.latest)."""
        check_inputs, check_outputs, check_run = self.combined([check, *self.clears])
        labels_fn, label_inputs, label_outputs = labels
        called, dues = as_gradio_calls(labels_fn), self._dues()

        def checked_and_labelled(*values):
            me, photo = session(), (tuple(values[len(check_inputs):]) if once else None)
            number = self.marks.new_photo(me, photo)
            if number is None:
                yield [gr.skip()] * (len(check_outputs) + len(label_outputs) + len(dues))
                return
            try:
                yield [*check_run(*values[:len(check_inputs)]), *[gr.skip()] * (len(label_outputs) + len(dues))]
                result = called(*values[len(check_inputs):])
                if not self.marks.latest(me, number):  # a later photo or model came meanwhile: its event answers
                    return
                shown = self.marks.photo_tab(me)
                yield [*[gr.skip()] * len(check_outputs), *(result if len(label_outputs) > 1 else [result]),
                       *(time.monotonic_ns() if tab == shown else gr.skip() for tab in dues)]
            finally:
                self.marks.photo_done(me, photo)

        return checked_and_labelled, [*check_inputs, *label_inputs], [*check_outputs, *label_outputs, *dues.values()]

    def _dues(self) -> dict[str, gr.State]:
        """Per tab with photo hooks, the State whose change draws it (call outside the tabs, once all are built: a
        State inside a closed tab fires its change on the first output it is given, even a gr.skip())."""
        for tab, _ in self.renders:
            if tab is not None and tab.elem_id not in self.dues:
                self.dues[tab.elem_id] = gr.State(None)
        return self.dues

    def draw_after(self, event):
        """Chain the photo hooks outside any tab after `event` (a new photo or model's labels). Returns the last
        event."""
        for tab, (fn, inputs, outputs) in self.renders:
            if tab is None:
                event = event.then(fn, inputs, outputs, **PRIVATE)
        return event

    def redraw(self, fn: Callable, inputs: Sequence, outputs: Sequence, controls: Sequence = ()) -> None:
        """Draw `outputs` with fn(*inputs) after every new photo or model, and whenever one of `controls` changes
        (a change re-renders from the photo's cached analysis; in a closed tab, when it is opened)."""
        self.on_photo(fn, inputs, outputs)
        self.redraws.append((self.tab, (fn, list(inputs), list(outputs)), list(controls)))

    def wire_redraws(self, tabs: Sequence[gr.Tab]) -> None:
        """The control changes' and tab openings' events (call once every tab has registered its hooks; `tabs`: the
        page's, the first one open). A control's change: one event, drawing its hooks in the open tab (and those outside
        any tab) and marking the closed tabs it changed out of date (one rule for every control: a tab's own control
        changed by a program with the tab closed draws nothing either). Opening a tab draws what is out of date in it:
        its photo hooks in order, each an event showing its progress (after a new photo or model), or its hooks of the
        changed controls."""
        self.marks.tabs = [tab.elem_id for tab in tabs]
        by_control: dict[int, tuple[gr.Component, list]] = {}
        for tab, hook, controls in self.redraws:
            for control in controls:
                by_control.setdefault(control._id, (control, []))[1].append((tab, hook))
        for control, listeners in by_control.values():
            owners = [None if tab is None else tab.elem_id for tab, _ in listeners]
            inputs, outputs, run = self.combined([hook for _, hook in listeners])

            def changed(*values, owners=owners, run=run):
                marks, me = self.marks, session()
                return run(*values, drawn=[i for i, owner in enumerate(owners)
                                           if owner is None or marks.changed(me, owner)])

            control.change(changed, inputs, outputs, **PRIVATE)
        for tab in tabs:
            hooks = [hook for owner, hook, controls in self.redraws if owner is tab and controls]
            inputs, outputs, run = self.combined(hooks)
            photo_hooks = [hook for owner, hook in self.renders if owner is tab]
            dues = [self._dues()[tab.elem_id]] if photo_hooks else []

            def opened(*values, name=tab.elem_id, run=run, count=len(outputs), due=len(dues)):
                why = self.marks.opened(session(), name)
                if why == TabMarks.PHOTO:
                    return [*[time.monotonic_ns()] * due, *[gr.skip()] * count]
                return [*[gr.skip()] * due, *(run(*values) if why == TabMarks.CONTROLS else [gr.skip()] * count)]

            # no progress shown: most openings change nothing, and a faded picture would flash on each
            # always_last: a click on a tab whose opening is still answered is sent once that one ends, not dropped
            # (the server would think the previous tab open)
            tab.select(opened, inputs, [*dues, *outputs], show_progress="hidden", trigger_mode="always_last",
                       **PRIVATE)
            if photo_hooks:  # the tab's drawing, after a new photo's labels or its opening
                fn, hook_inputs, hook_outputs = photo_hooks[0]
                drawing = dues[0].change(fn, hook_inputs, hook_outputs, **PRIVATE)
                for fn, hook_inputs, hook_outputs in photo_hooks[1:]:
                    drawing = drawing.then(fn, hook_inputs, hook_outputs, **PRIVATE)

    def on_model(self, fn: Callable, inputs: Sequence, outputs: Sequence) -> None:
        """Reset `outputs` with fn(model_name, *inputs) after a model switch, before the redraw."""
        self.resets.append((fn, list(inputs), list(outputs)))

    def on_text(self, fn: Callable, inputs: Sequence, outputs: Sequence) -> None:
        """Write `outputs` with fn(language, explorer, *inputs): on load, after a language or model switch."""
        self.texts.append((fn, list(inputs), list(outputs)))

    @staticmethod
    def combined(hooks: list[Hook], leading: int = 0) -> tuple[list, list, Callable]:
        """One event for many hooks: (their inputs, their outputs, fn(*leading_values, *their_input_values,
        drawn=None)), each hook called with the `leading` values first; with `drawn` (indices into hooks) only
        those run, the others' outputs left as they are."""
        inputs = [component for _, hook_inputs, _ in hooks for component in hook_inputs]
        outputs = [component for _, _, hook_outputs in hooks for component in hook_outputs]

        called = [as_gradio_calls(fn) for fn, _, _ in hooks]

        def run(*values, drawn: Sequence[int] | None = None):
            head, rest, results = values[:leading], values[leading:], []
            for i, (_, hook_inputs, hook_outputs) in enumerate(hooks):
                mine, rest = rest[:len(hook_inputs)], rest[len(hook_inputs):]
                if drawn is not None and i not in drawn:
                    results += [gr.skip()] * len(hook_outputs)
                    continue
                result = called[i](*head, *mine)
                results += list(result) if len(hook_outputs) > 1 else [result]
            return results

        return inputs, outputs, run

    # -- pictures with words ---------------------------------------------------------------------------------
    @staticmethod
    def picture(label, elem_id: str, caption: bool = True, **options) -> Picture:
        """A result picture (gr.Image `options`) and, with `caption`, a caption under it (elem_id `{elem_id}-text`)
        for its words; in a gr.Row, build it inside a gr.Column so that the caption stays under its picture."""
        image = gr.Image(label=label, elem_id=elem_id, interactive=False, **options)
        return Picture(image, gr.Markdown(elem_id=f"{elem_id}-text", elem_classes="caption") if caption else None)

    def describe(self, pictures: Sequence[Picture], words: Words, inputs: Sequence = ()) -> None:
        """Write `pictures`' words again in a newly picked language, words(language, chosen, analysis, *inputs)
        from the photo's cached analysis: nothing runs the model (a photo not analysed yet keeps its words until
        its pictures are drawn, with their words)."""
        outputs = [component for picture in pictures for component in picture.outputs]

        def rewrite(language, chosen, path, *values):
            image = self.photo(path)
            analysis = None if image is None else chosen.cached(image)
            sentences = [None] * len(pictures) if analysis is None else words(language, chosen, analysis, *values)
            written = [value for picture, sentence in zip(pictures, sentences) for value in picture.describe(sentence)]
            return written if len(written) > 1 else written[0]

        self.on_text(rewrite, [self.image, *inputs], outputs)

    # -- what every handler needs -------------------------------------------------------------------------
    def model_of(self, name: str, on_load: Callable[[], None] | None = None, language: str | None = None) -> Explorer:
        """The session's chosen model (loaded again if the shelf dropped it meanwhile); a model that cannot load is
        an error in `language` (default: the running event's session's)."""
        try:
            return self.shelf.get(name, on_load)
        except CheckpointError as error:
            raise user_error(text(language or session_language(), "error.model", reason=error)) from None

    def prefetch(self, paths: list[str]) -> None:
        """An upload arrived (ui.uploads.UploadHook): start its photo's pass with the startup model if the model is
        idle (Explorer.prefetch), so that the upload's event finds the forward under way. Only while the startup
        model is the only one loaded: an upload does not say whose it is, and a session that picked another model
        would wait behind a pass it does not use. Not a photo, or several files: nothing is done (the event says
        what is wrong with a bad file)."""
        # the model's idleness is asked here too, before the photo is decoded: a busy model's uploads cost nothing
        if len(paths) != 1 or self.shelf.loaded != [self.explorer.name] or not self.explorer.queue.idle:
            return
        try:
            image = open_photo(paths[0])
        except ImageError:
            return
        self.explorer.prefetch(image)

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
        return chosen, image, chosen.analysis(image, session())

    def class_picker(self, dropdown: gr.Dropdown) -> None:
        """Fill `dropdown` with each new photo's top-5 as "label (p%)", the top class picked, and write them again
        in a newly picked language (the pick kept)."""

        def choices(name, path):
            found = self.analysis(name, path)
            if found is None:
                return gr.update(choices=[], value=None)
            chosen, _, analysis = found
            return gr.update(choices=top_choices(chosen, analysis, session_language()), value=analysis.top[0][0])

        def rewrite(language, chosen, path):
            image = self.photo(path)
            analysis = None if image is None else chosen.cached(image)
            return gr.update() if analysis is None else gr.update(choices=top_choices(chosen, analysis, language))

        self.on_photo(choices, [self.chosen, self.image], [dropdown])
        self.on_text(rewrite, [self.image], [dropdown])


def top_choices(chosen: Explorer, analysis, language: str) -> list[tuple[str, int]]:
    return [(f"{class_name(chosen, index, language)} ({p:.1%})", index) for index, _, p in analysis.top]


def class_name(chosen: Explorer, index: int, language: str) -> str:
    """A class as the page shows it: in Arabic (and other languages with names), that name and the checkpoint's
    after it; else the checkpoint's."""
    english = chosen.model.config.id2label[index]
    names = chosen.label_names(language) if language != "en" else None
    return f"{names[index]} ({english})" if names else english


# Controls may still show the previous model's layer, head or token while a switch lands: clamp them.
def layer_index(analysis, layer) -> int:
    return min(int(layer), len(analysis.attentions)) - 1


def head_index(analysis, head) -> int | None:
    return None if head == "all" or int(head) > analysis.attentions[0].shape[1] else int(head) - 1


def head_choices(heads: int) -> list[str]:
    return ["all"] + [str(h) for h in range(1, heads + 1)]


def layer_and_head(page: Page, elem_prefix: str = "") -> tuple[gr.Slider, gr.Dropdown]:
    """A layer slider and a head picker for the session's model (reset to the last layer and all heads when the
    model changes), elem_ids `{elem_prefix}layer` and `{elem_prefix}head`."""
    config = page.explorer.model.config
    with gr.Row():
        layer = gr.Slider(1, config.num_hidden_layers, value=config.num_hidden_layers, step=1,
                          label=I18N("layer.label"), info=I18N("layer.info"), elem_id=f"{elem_prefix}layer")
        head = gr.Dropdown(head_choices(config.num_attention_heads), value="all", label=I18N("head.label"),
                           info=I18N("head.info"), elem_id=f"{elem_prefix}head")

    def reset(name):
        config = page.model_of(name).model.config
        return (gr.update(maximum=config.num_hidden_layers, value=config.num_hidden_layers),
                gr.update(choices=head_choices(config.num_attention_heads), value="all"))

    page.on_model(reset, [], [layer, head])
    return layer, head
