"""Bounds on what visitors can upload: the size of one file and of a whole request, and how long uploads stay.

Gradio's `max_file_size` bounds each file of a request, not the request: one request may carry up to 1000 files
(its multipart parser's limit), so 5 x 19 MB was accepted under a 20 MB limit. RequestSizeLimit, an ASGI
middleware, answers 413 to any request whose body is larger than the bound, from its Content-Length before
reading it, or as a body without one (chunked) goes past it. Uploads are files in Gradio's cache; DELETE_CACHE has
Gradio delete those older than an hour, every hour (and all of them when the server stops). UploadHook, another
ASGI middleware, tells the page of each upload as soon as its file is saved: the page starts the photo's pass then,
before the upload's event asks (ui.page.Page.prefetch).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from starlette.middleware import Middleware

MAX_FILE_MB = 20  # one photo
MAX_REQUEST_BYTES = (MAX_FILE_MB + 1) * 2**20  # one photo at the limit, and room for the form's other fields
DELETE_CACHE = (3600, 3600)  # gr.Blocks(delete_cache=(every s, files older than s))
ANSWER_BYTES = 64 * 2**10  # the most of an upload's answer (its files' paths, as JSON) UploadHook reads

log = logging.getLogger(__name__)


class RequestTooLarge(Exception):
    pass


class RequestSizeLimit:
    """ASGI middleware: HTTP requests whose body is over `limit` bytes get 413 and are not read further."""

    def __init__(self, app, limit: int = MAX_REQUEST_BYTES):
        self.app, self.limit = app, limit

    async def refuse(self, send) -> None:
        body = json.dumps({"detail": f"Request too large: at most {self.limit // 2**20} MB in all."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self.refuse(send)
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge
            return message

        async def noting_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, noting_send)
        except RequestTooLarge:
            if not started:
                await self.refuse(send)


class UploadHook:
    """ASGI middleware: hands the paths of the files each upload saved (the answer of Gradio's `/upload` route, a
    JSON list) to `on_upload(paths)`, on a thread of its own, once the route is done: Gradio moves the files into
    place in a background task, which ends before the route does. One at a time: uploads that come while
    `on_upload` runs are not handed on (a burst of uploads costs no more than one), and whatever it raises is logged,
    never the upload's."""

    def __init__(self, app, on_upload: Callable[[list[str]], None]):
        self.app, self.on_upload = app, on_upload
        self._busy = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        status, answer = None, bytearray()

        async def keeping_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) <= ANSWER_BYTES:
                answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keeping_send)
        if status != 200 or len(answer) > ANSWER_BYTES:
            return
        try:
            paths = json.loads(answer)
        except ValueError:
            return
        if (isinstance(paths, list) and all(isinstance(path, str) for path in paths)
                and self._busy.acquire(blocking=False)):
            try:
                threading.Thread(target=self._hand_on, args=(paths,), name="upload-hook", daemon=True).start()
            except RuntimeError:  # no thread to be had: this upload is not handed on, later ones are
                self._busy.release()

    def _hand_on(self, paths: list[str]) -> None:
        try:
            self.on_upload(paths)
        except Exception:  # noqa: BLE001 - the upload itself went well; the page answers its event as always
            log.exception("after an upload")
        finally:
            self._busy.release()


def app_kwargs(on_upload: Callable[[list[str]], None] | None = None) -> dict:
    """demo.launch(app_kwargs=...): the FastAPI app with RequestSizeLimit, and UploadHook calling `on_upload` where
    given. A new dict for every launch: Gradio writes its own entries (its lifespan handler) into the one it is
    given."""
    middleware = [Middleware(RequestSizeLimit, limit=MAX_REQUEST_BYTES)]
    if on_upload is not None:
        middleware.append(Middleware(UploadHook, on_upload=on_upload))
    return {"middleware": middleware}
