"""The web app's API through FastAPI's TestClient: predict (upload and JSON), model, healthz, limits."""

from __future__ import annotations

import io
import re
from importlib import resources

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mnistlab.app.server import MAX_BODY, create_app
from mnistlab.data import load_dataset


@pytest.fixture(scope="module")
def client(app_run):
    with TestClient(create_app(app_run)) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    arrays = load_dataset("mnist", progress=False)
    return arrays.test_images[:10], arrays.test_labels[:10]


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def check_prediction(body: dict) -> None:
    probs = np.array(body["probabilities"])
    assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
    assert body["label"] == int(probs.argmax())
    seen = np.array(body["input_28x28"])
    assert seen.shape == (28, 28) and seen.min() >= 0 and seen.max() <= 255


def test_healthz_and_model(client, app_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/model").json()
    assert info["name"] == "mlp" and info["parameters"] == 784 * 64 + 64 + 64 * 10 + 10
    assert info["test_accuracy"] == app_run.summary["test_accuracy"]


def test_predict_upload_matches_run_predict(client, app_run, digits):
    images, _ = digits
    user_style = 255 - np.kron(images[0], np.ones((3, 3), dtype=np.uint8))  # 84x84, dark ink on white
    response = client.post("/api/predict", files={"file": ("../../etc/passwd", png(user_style), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    check_prediction(body)
    expected = app_run.predict(np.array(body["input_28x28"], dtype=np.uint8)[None])[0]
    assert np.allclose(body["probabilities"], expected, atol=1e-6)


def test_predict_json_pixels(client, app_run, digits):
    images, _ = digits
    as_is = client.post("/api/predict", json={"pixels": images[1].tolist(), "normalize": False}).json()
    check_prediction(as_is)
    assert (np.array(as_is["input_28x28"]) == images[1]).all()
    expected = app_run.predict(images[1:2])[0]
    assert np.allclose(as_is["probabilities"], expected, atol=1e-6)
    check_prediction(client.post("/api/predict", json={"pixels": images[2].tolist()}).json())


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"json": {"pixels": [[0] * 28] * 28}}, 422, "no ink found"),
        ({"json": {"pixels": [[1, 2, 3]]}}, 422, "28x28"),
        ({"json": {"picture": 1}}, 422, "pixels"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"[" * 1_000_000, "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"json": {"pixels": [[[[0]]]] * 28}}, 422, "28x28"),
        ({"files": {"file": ("x.png", b"not an image at all", "image/png")}}, 422, "not an image"),
        ({"files": {"other": ("x.png", b"abc", "image/png")}}, 422, "no file"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
    ],
)
def test_bad_requests_get_clear_errors(client, kwargs, status, words):
    response = client.post("/api/predict", **kwargs)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_upload_pixel_limit_is_lower_than_pillows(client):
    # 5000x5000 of one grey level: a ~25 KB PNG that would decode to 25 M pixels.
    huge = png(np.full((5000, 5000), 255, dtype=np.uint8))
    assert len(huge) < MAX_BODY
    response = client.post("/api/predict", files={"file": ("huge.png", huge, "image/png")})
    assert response.status_code == 422 and "too large" in response.json()["detail"]


def test_body_limit_declared_and_streamed(client):
    big = b"\0" * (MAX_BODY + 1)
    declared = client.post("/api/predict", files={"file": ("big.png", big, "image/png")})
    assert declared.status_code == 413

    def chunks():  # no Content-Length: httpx sends it chunked, so only the counted bytes can catch it
        for _ in range(3):
            yield b"\0" * (MAX_BODY // 2)

    streamed = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/api/predict", json={"pixels": [[0] * 28] * 28}).status_code == 422  # still serving


def test_page_and_assets_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    static = resources.files("mnistlab.app") / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), (
            f"{name} loads a remote asset"
        )
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/%2e%2e/server.py").status_code == 404
