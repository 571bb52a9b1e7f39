"""The draw-a-digit web app: a FastAPI app (``create_app(run)``) served by uvicorn.

Routes: ``GET /`` the page, ``/static/*`` its script and style (no CDN: works offline), ``POST /api/predict``
(multipart image upload in field ``file``, or JSON ``{"pixels": 28x28 grey levels 0-255}``), ``GET /healthz``,
``GET /api/model``. Every request body is limited to MAX_BODY bytes, checked on the declared Content-Length
and again on the bytes actually received. Client data never names a file: uploads are decoded from memory.

Hardening against slow or greedy clients (:class:`ServeLimits`): a body must arrive within ``request_timeout``
seconds of its headers, else 408 and the connection is closed (the buffered part is dropped with it); at most
``max_in_flight`` requests are in progress at once, past that 503 with Retry-After (so bodies buffered at once
stay under max_in_flight x max_body, 512 MiB by default); torch runs on one dedicated inference thread with
``torch_threads`` intra-op threads, never in the event loop's thread pool; the heap's free memory goes back to
the OS after a burst (``heap.reclaim_forever``). The headers' own deadline needs the HTTP protocol, not the
app: see ``mnistlab.app.serving``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import TypeVar

import anyio
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab.app.heap import reclaim_forever
from mnistlab.app.imageprep import ImageError, prepare, prepare_pixels
from mnistlab.app.predict import predict_digits_with_members
from mnistlab.app.serve_config import ServeLimits
from mnistlab.models import count_parameters
from mnistlab.runs import Run

MAX_BODY = ServeLimits.max_body  # bytes per request body
MAX_UPLOAD_PIXELS = 4096 * 4096  # an upload may decode to at most this many pixels (64 MB as RGBA)
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"
INFERENCE_THREAD = "mnistlab-inference"  # name of the one thread that runs torch
T = TypeVar("T")


class InferenceThread:
    """One dedicated thread that runs all of torch, with torch's intra-op thread count set for serving.

    Why: in the event loop's default pool (40 threads on anyio), concurrent requests each start torch's
    OpenMP team, and on 2 cores those teams and the event loop preempt each other (p50 120 ms for one
    client). One thread serialises the model calls, which take well under a millisecond each.
    """

    def __init__(self, torch_threads: int) -> None:
        # torch.set_num_threads in the initializer: OpenMP's thread count is per calling thread, so it must
        # run on the inference thread itself.
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=INFERENCE_THREAD,
            initializer=torch.set_num_threads,
            initargs=(torch_threads,),
        )

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class BodyLimit:
    """ASGI middleware: 413 when a body is declared or turns out larger than ``max_bytes``; 408 when it has not
    all arrived ``timeout`` seconds after the headers.

    The body (at most ``max_bytes``) is read here in full and replayed to the app, so the limits hold even for
    chunked uploads without a Content-Length, and the app never sees a partial body. Both errors close the
    connection, so a stalled client's buffered bytes are freed with it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY, timeout: float = ServeLimits.request_timeout):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        try:
            with anyio.fail_after(self.timeout):
                body = await self._read_body(receive)
        except TimeoutError:
            detail = f"request body not received within {self.timeout:g} s"
            await _close_with(408, detail, {})(scope, receive, send)
            return
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected; raises _TooLarge past ``max_bytes``."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _close_with(413, f"request body larger than {self.max_bytes:,} bytes", {})(scope, receive, send)


class _TooLarge(Exception):
    pass


class InFlightLimit:
    """ASGI middleware: at most ``max_in_flight`` requests in progress; past it 503 with Retry-After.

    Outermost, so a request counts from its headers (a stalled upload holds a slot until its 408), and a
    refused one is answered before any of its body is read. uvicorn's own ``limit_concurrency`` counts open
    connections, idle keep-alive ones included, and sends no Retry-After, hence this.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after: int = ServeLimits.retry_after) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.in_flight = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            detail = (
                f"server busy: {self.max_in_flight} requests in progress; retry after {self.retry_after} s"
            )
            await _close_with(503, detail, {"Retry-After": str(self.retry_after)})(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _close_with(status: int, detail: str, headers: dict[str, str]) -> JSONResponse:
    """An error response that also closes the connection, so the server never reads the rest of the body."""
    return JSONResponse({"detail": detail}, status_code=status, headers={**headers, "Connection": "close"})


def create_app(run: Run, limits: ServeLimits | None = None) -> FastAPI:
    """The web app for one loaded run; tests call this with FastAPI's TestClient."""
    limits = limits or ServeLimits()
    inference = InferenceThread(limits.torch_threads)
    app = FastAPI(
        title="mnistlab", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan(inference)
    )
    static = resources.files("mnistlab.app") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.middleware("http")(_security_headers)
    _add_pages(app, run, static)
    _add_predict(app, run, inference)
    # add_middleware wraps: the last added runs first. BodyLimit runs before anything reads the body.
    app.add_middleware(BodyLimit, max_bytes=limits.max_body, timeout=limits.request_timeout)
    app.add_middleware(InFlightLimit, max_in_flight=limits.max_in_flight, retry_after=limits.retry_after)
    return app


def _lifespan(inference: InferenceThread):
    """Start the memory reclaimer with the server; stop it and the inference thread when it ends."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reclaimer = asyncio.get_running_loop().create_task(reclaim_forever())  # frees a burst's memory
        try:
            yield
        finally:
            reclaimer.cancel()
            inference.close()

    return lifespan


async def _security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _add_pages(app: FastAPI, run: Run, static) -> None:
    """The draw-a-digit page, the health check and the model's description."""
    model_info = {
        "name": run.config.model.name,
        "dataset": run.config.data.dataset,
        "test_accuracy": run.summary.get("test_accuracy"),
        "parameters": count_parameters(run.model),
        "preprocessing": run.preprocessor.mode,
        "members": run.config.members,  # > 1: a committee, whose predictions carry each member's vote
        "combine": run.config.combine if run.config.members > 1 else None,
    }

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    def model() -> dict:
        return model_info


def _add_predict(app: FastAPI, run: Run, inference: InferenceThread) -> None:
    """POST /api/predict: a multipart image upload or JSON pixels -> label, probabilities, what the model saw."""

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        try:
            if content_type.startswith("application/json"):
                digit = await _digit_from_json(request)
            elif content_type.startswith("multipart/form-data"):
                digit = await _digit_from_upload(request)
            else:
                return _error(415, "send multipart/form-data with a 'file' field, or JSON {\"pixels\": ...}")
        except ImageError as exc:
            return _error(422, str(exc))
        probs, members = await inference.run(predict_digits_with_members, run, digit[None])
        body = {
            "label": int(np.argmax(probs[0])),
            "probabilities": [float(p) for p in probs[0]],
            "input_28x28": digit.astype(int).tolist(),
        }
        if members is not None:  # a committee: each member's vote and how sure it is
            body["members"] = [
                {"label": int(np.argmax(p)), "probability": float(np.max(p))} for p in members[:, 0]
            ]
        return JSONResponse(body)


async def _digit_from_json(request: Request) -> np.ndarray:
    try:
        payload = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nesting
        raise ImageError("request: body is not valid JSON") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise ImageError('request: expected a JSON object {"pixels": 28x28 array, "normalize": true}')
    normalize = payload.get("normalize", True)
    if not isinstance(normalize, bool):
        raise ImageError("request: 'normalize' must be true or false")
    return await run_in_threadpool(prepare_pixels, payload["pixels"], normalize)


async def _digit_from_upload(request: Request) -> np.ndarray:
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception:  # malformed multipart: the parser raises several types
        raise ImageError("request: malformed multipart form") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ImageError("request: no file in form field 'file'")
    data = await upload.read()
    await form.close()
    # The client's filename is never used: the bytes are decoded in memory under a fixed label.
    return await run_in_threadpool(prepare, data, "upload", False, MAX_UPLOAD_PIXELS)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)
