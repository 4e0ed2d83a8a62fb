"""The model's work queue: one thread runs all model work, the most urgent first, so that under a class's load
every waiting student's labels come before anyone's maps, maps before other classes' maps and CAMs, and those
before deletion/insertion runs and timing. Pictures that need no model run never come here.

Work waits for sessions (browser tabs, API clients, an upload: explorer.runs.Explorer.prefetch). A session that
leaves (`forget_session`: the page's tab was closed) stops waiting, and work that nobody waits for any more is
dropped unrun. Work of the same kind waiting at the same moment runs as one batch where it says so (the labels of
several photos: one batched forward). Work on a model in this process ("local" work) runs one at a time even when
the queue has several workers; only work sent elsewhere (a model served on Ray Serve replicas) runs alongside it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import CancelledError, Future
from enum import IntEnum

LIBRARY = "library"  # the session of calls made without one (scripts, tests, benchmarks): it never leaves


class Priority(IntEnum):
    LABELS = 0  # a forward whose logits somebody is waiting for
    MAPS = 1  # what completes a photo's maps: its backward, or its whole pass
    MORE = 2  # another class's map, another CAM method or stage
    LONG = 3  # deletion/insertion batches, timing runs


class SessionLeft(CancelledError):
    """The session stopped waiting (its page was closed) before the work was done."""


class WorkDropped(CancelledError):
    """The work was dropped unrun, nobody waiting for it (a late waiter may start it again)."""


class Work:
    """Model work and the sessions waiting for it. `run(works)` gets this work and any batched with it (same
    `batch_key`) and returns one result per work. `sessions` may be shared by several works (a photo's labels
    and maps): the work lives while any of them waits. `on_drop()` runs when it is dropped unrun, then its late
    waiters get WorkDropped. `payload`: what `run` works on. `local`: it runs a model in this process, so never
    alongside other local work (forward hooks and the model's settings are shared by every thread)."""

    def __init__(self, priority: Priority, run: Callable[[list[Work]], list], batch_key: Hashable | None = None,
                 sessions: set | None = None, on_drop: Callable[[], None] | None = None, payload: object = None,
                 local: bool = True):
        self.priority, self.run, self.batch_key, self.on_drop = priority, run, batch_key, on_drop
        self.payload, self.local = payload, local
        self.sessions = set() if sessions is None else sessions
        self._futures: list[tuple[Future, Hashable]] = []
        self._outcome: tuple[object, BaseException | None] | None = None  # (result, error) once resolved
        self._lock = threading.Lock()

    def future(self, session: Hashable = LIBRARY) -> Future:
        """A future of this work's result for `session` (which keeps the work alive until it is done)."""
        future = Future()
        with self._lock:
            if self._outcome is None:
                self.sessions.add(session)
                self._futures.append((future, session))
                return future
        result, error = self._outcome
        future.set_exception(error) if error is not None else future.set_result(result)
        return future

    @property
    def alive(self) -> bool:
        return bool(self.sessions)

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        """Hand the result (or the error) to everyone waiting."""
        with self._lock:
            futures, self._futures = self._futures, []
            self._outcome = (result, error)
        for future, _ in futures:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(result)

    def forget(self, session: Hashable) -> None:
        with self._lock:
            self.sessions.discard(session)
            leaving = [future for future, waiter in self._futures if waiter == session]
            self._futures = [(future, waiter) for future, waiter in self._futures if waiter != session]
        for future in leaving:
            if not future.done():
                future.set_exception(SessionLeft(f"session {session} left"))


class WorkQueue:
    """Runs Work on its own threads, `workers` at a time (one for a model in this process; a model served elsewhere,
    such as Ray Serve replicas, can take several): the lowest Priority first, then in order of arrival, except that
    local work waits while other local work runs (the next work that may run goes first). A popped work with a
    batch_key takes along every other waiting work with the same key, up to `max_batch`."""

    def __init__(self, max_batch: int = 8, workers: int = 1):
        self.max_batch, self.workers = max_batch, workers
        self._waiting: list[tuple[int, int, Work]] = []  # (priority, arrival, work)
        self._arrivals = itertools.count()
        self._condition = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._local_running = False  # a worker runs local work (guarded by _condition)
        self._running = 0  # batches being run now, local or not (guarded by _condition)
        self.ran: deque[tuple[Priority, int]] = deque(maxlen=10_000)  # (priority, batch size) of recent runs, in order

    def submit(self, work: Work) -> Work:
        with self._condition:
            self._waiting.append((work.priority, next(self._arrivals), work))
            if not self._threads:
                self._threads = [threading.Thread(target=self._serve, name=f"model-work-{i}", daemon=True)
                                 for i in range(self.workers)]
                for thread in self._threads:
                    thread.start()
                # At exit the run under way ends before the interpreter does: torch torn down under a running
                # backward aborts the process. Work still waiting is dropped.
                atexit.register(self.stop)
            self._condition.notify()
        return work

    def run(self, priority: Priority, fn: Callable[[], object], session: Hashable = LIBRARY):
        """fn() on the queue's thread in its turn; its result (or its exception) here."""
        work = Work(priority, lambda works: [fn()])
        future = work.future(session)
        self.submit(work)
        return future.result()

    @contextlib.contextmanager
    def turn(self, priority: Priority, session: Hashable = LIBRARY) -> Iterator[None]:
        """Hold the model from the calling thread: the queue's thread waits while the block runs (for work that
        must be done in the caller's thread, e.g. a generator that yields between model runs)."""
        released = threading.Event()

        def hold(works: list[Work]) -> list:
            works[0].resolve()  # the caller goes on...
            released.wait()  # ...and the queue waits for it
            return [None]

        work = Work(priority, hold)
        granted = work.future(session)
        self.submit(work)
        try:
            granted.result()
            yield
        finally:
            released.set()

    def forget_session(self, session: Hashable) -> None:
        """A session left: nothing waits for it any more, and work only it waited for is dropped."""
        with self._condition:
            works = [work for _, _, work in self._waiting]
        for work in works:
            work.forget(session)

    @property
    def waiting(self) -> int:
        with self._condition:
            return len(self._waiting)

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        with self._condition:
            return not self._waiting and not self._running

    def _runnable(self) -> tuple[int, int, Work] | None:
        """The most urgent waiting work that may run now (dead work counts: it is dropped at once)."""
        self._waiting.sort(key=lambda entry: entry[:2])
        return next((entry for entry in self._waiting
                     if not (entry[2].local and self._local_running and entry[2].alive)), None)

    def _next(self, dropped: list[Work]) -> list[Work]:
        """The most urgent live work that may run and its batch (the queue's lock held); dead work on the way goes to
        `dropped`."""
        while True:
            if dropped and self._runnable() is None:
                return []  # first drop those: on_drop frees what they held
            self._condition.wait_for(lambda: self._stopping or self._runnable() is not None)
            if self._stopping:
                return []
            chosen = self._runnable()
            self._waiting.remove(chosen)
            first = chosen[2]
            if not first.alive:
                dropped.append(first)
                continue
            self._local_running |= first.local
            self._running += 1
            batch = [first]
            if first.batch_key is not None:
                for entry in list(self._waiting):
                    if len(batch) == self.max_batch:
                        break
                    if entry[2].batch_key == first.batch_key and entry[2].alive:
                        self._waiting.remove(entry)
                        batch.append(entry[2])
            return batch

    def stop(self, timeout_s: float = 120) -> None:
        """Let the runs under way finish, run nothing more, and wait for the queue's threads."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)

    def _serve(self) -> None:
        while not self._stopping:
            dropped: list[Work] = []
            with self._condition:
                batch = self._next(dropped)
            for work in dropped:  # outside the queue's lock: on_drop may take other locks
                if work.on_drop is not None:
                    work.on_drop()
                work.resolve(error=WorkDropped())
            if not batch:
                continue
            self.ran.append((batch[0].priority, len(batch)))
            try:
                results, error = batch[0].run(batch), None
            except Exception as failure:  # noqa: BLE001 - handed to the waiters, who raise it
                results, error = [None] * len(batch), failure
            with self._condition:
                self._running -= 1
                if batch[0].local:
                    self._local_running = False
                    self._condition.notify_all()  # local work may run again
            for work, result in zip(batch, results):
                work.resolve(result, error)
