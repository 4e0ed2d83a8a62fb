"""Bounds on what visitors can upload: the size of one file and of a whole request, and how long uploads stay.

Gradio's `max_file_size` bounds each file of a request, not the request: one request may carry up to 1000 files
(its multipart parser's limit), so 5 x 19 MB was accepted under a 20 MB limit. RequestSizeLimit, an ASGI
middleware, answers 413 to any request whose body is larger than the bound, from its Content-Length before
reading it, or as a body without one (chunked) goes past it. Uploads are files in Gradio's cache; DELETE_CACHE has
Gradio delete those older than an hour, every hour (and all of them when the server stops).
"""

from __future__ import annotations

import json

from starlette.middleware import Middleware

MAX_FILE_MB = 20  # one photo
MAX_REQUEST_BYTES = (MAX_FILE_MB + 1) * 2**20  # one photo at the limit, and room for the form's other fields
DELETE_CACHE = (3600, 3600)  # gr.Blocks(delete_cache=(every s, files older than s))


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


def app_kwargs() -> dict:
    """demo.launch(app_kwargs=...): the FastAPI app with RequestSizeLimit. A new dict for every launch: Gradio
    writes its own entries (its lifespan handler) into the one it is given."""
    return {"middleware": [Middleware(RequestSizeLimit, limit=MAX_REQUEST_BYTES)]}
