"""The draw-a-digit web app: a FastAPI app (``create_app(run)``) served by uvicorn.

Routes: ``GET /`` the page, ``/static/*`` its script and style (no CDN: works offline), ``POST /api/predict``
(multipart image upload in field ``file``, or JSON ``{"pixels": 28x28 grey levels 0-255}``), ``GET /healthz``,
``GET /api/model``. Every request body is limited to MAX_BODY bytes, checked on the declared Content-Length
and again on the bytes actually received. Client data never names a file: uploads are decoded from memory.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab.app.imageprep import ImageError, prepare, prepare_pixels
from mnistlab.app.predict import predict_digits
from mnistlab.models import count_parameters
from mnistlab.runs import Run

MAX_BODY = 2 * 1024 * 1024  # bytes per request body
MAX_UPLOAD_PIXELS = 4096 * 4096  # an upload may decode to at most this many pixels (64 MB as RGBA)
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"


class BodyLimit:
    """ASGI middleware: 413 when a body is declared or turns out larger than ``max_bytes``.

    The body (at most ``max_bytes``) is read here in full and replayed to the app, so the limit holds even for
    chunked uploads without a Content-Length, and the app never sees a partial body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes:,} bytes"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def create_app(run: Run, max_body: int = MAX_BODY) -> FastAPI:
    """The web app for one loaded run; tests call this with FastAPI's TestClient."""
    app = FastAPI(title="mnistlab", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("mnistlab.app") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    model_info = {
        "name": run.config.model.name,
        "dataset": run.config.data.dataset,
        "test_accuracy": run.summary.get("test_accuracy"),
        "parameters": count_parameters(run.model),
        "preprocessing": run.preprocessor.mode,
    }

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    def model() -> dict:
        return model_info

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
        probs = (await run_in_threadpool(predict_digits, run, digit[None]))[0]
        return JSONResponse(
            {
                "label": int(np.argmax(probs)),
                "probabilities": [float(p) for p in probs],
                "input_28x28": digit.astype(int).tolist(),
            }
        )

    app.add_middleware(BodyLimit, max_bytes=max_body)  # outermost: runs before anything reads the body
    return app


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
