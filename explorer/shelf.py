"""The models the app has loaded, shared by every session (the Model dropdown)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .runs import Explorer


class ModelShelf:
    """The models the app has loaded, shared by every session: the startup model always, the others on first
    use, at most `max_loaded` in all (the least recently used other model is dropped first; a session still
    rendering with it keeps it until done). Loads run one at a time, so two sessions asking for the same model
    load it once and memory never holds more than max_loaded + 1 models; a model already on the shelf is
    handed out at once, even while another one loads. New models get the startup model's device, dtype,
    speed mode, cache budget and budget of held graphs."""

    def __init__(self, first: Explorer, max_loaded: int = 2, loader: Callable[[str], Explorer] | None = None):
        if max_loaded < 2:
            raise ValueError(f"max_loaded counts the startup model too, so it must be at least 2, got {max_loaded}")
        self.first, self.max_loaded = first, max_loaded
        self._load = loader or (lambda name: Explorer(name, str(first.device), first.dtype, first.speed,
                                                      first.cache_mb, fallback=False, queue=first.queue,
                                                      passes_mb=first.passes_mb))
        self._loaded: OrderedDict[str, Explorer] = OrderedDict({first.name: first})  # least recently used first
        self._lock = threading.Lock()  # guards _loaded
        self._loading = threading.Lock()  # held while a model loads

    def get(self, name: str, on_load: Callable[[], None] | None = None) -> Explorer:
        """The loaded model `name`, loading it first if needed (then on_load() is called, to show progress).
        A model that cannot load raises CheckpointError and leaves the shelf as it was."""
        explorer = self._lookup(name)
        if explorer is None:
            if on_load is not None:
                on_load()
            with self._loading:
                explorer = self._lookup(name)  # loaded by another session while this one waited
                if explorer is None:
                    explorer = self._load(name)
                    self._store(name, explorer)
        return explorer

    @property
    def loaded(self) -> list[str]:
        """Names on the shelf, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _lookup(self, name: str) -> Explorer | None:
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
            return self._loaded.get(name)

    def _store(self, name: str, explorer: Explorer) -> None:
        with self._lock:
            self._loaded[name] = explorer
            while len(self._loaded) > self.max_loaded:
                del self._loaded[next(n for n in self._loaded if n != self.first.name)]
