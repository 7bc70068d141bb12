"""ember.serve: the JSON API, every refused input (and serving on after it), start-up, micro-batching,
and the page in a real browser against the real server."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from browser import open_page, pixel_std
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

import ember
from ember.serve import ServeError, create_app, run_server
from ember.serve.batcher import MicroBatcher, QueueFull, TimedOut
from ember.serve.model import check_servable
from ember.vision.all import (
    ImageDataLoaders,
    NotAnExportError,
    Resize,
    get_image_files,
    load_learner,
    read_export_info,
    vision_learner,
)
from ember.vision.core import PILImage, open_image
from ember.vision.serve_io import read_image


# ---- a tiny exported model, made once --------------------------------------------------------------
def _png(seed: int, red: bool, size: tuple[int, int] = (26, 20)) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    a[..., 0] = 250 if red else 5
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve")
    for i in range(24):
        (path / f"{'Cat' if i % 2 else 'dog'}_{i}.png").write_bytes(_png(i, red=bool(i % 2)))
    dls = ImageDataLoaders.from_name_func(
        path,
        get_image_files(path),
        lambda x: x[0].isupper(),
        item_tfms=Resize(16),
        bs=8,
        num_workers=0,
        seed=0,
    )
    learn = vision_learner(dls, "resnet18", pretrained=False, quiet=True)
    learn.fit(1, 1e-3)
    return learn.export(path / "export.pkl")


@pytest.fixture(scope="module")
def app(export):
    return create_app(export)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def cat_png(export):
    path = export.parent / "Cat_1.png"
    return path, path.read_bytes()


def _good_request_works(client, png: bytes) -> None:
    r = client.post("/predict", files={"file": ("cat.png", png, "image/png")})
    assert r.status_code == 200 and r.json()["label"] in ("True", "False")


# ---- the endpoints ---------------------------------------------------------------------------------
def test_a_multipart_upload_gets_the_label_and_probabilities_that_learn_predict_gives(
    client, export, cat_png
):
    path, png = cat_png
    r = client.post("/predict", files={"file": ("cat.png", png, "image/png")})
    assert r.status_code == 200
    body = r.json()
    label, idx, probs = load_learner(export).predict(path)
    assert body["label"] == str(label) and body["index"] == int(idx)
    assert body["model"] == "resnet18" and body["ms"] > 0
    got = torch.tensor([body["probabilities"][v] for v in ("False", "True")])
    assert torch.allclose(got, probs, atol=1e-5)
    assert list(body["probabilities"].values()) == sorted(body["probabilities"].values(), reverse=True)


def test_raw_image_bytes_with_an_image_content_type_get_the_same_answer(client, cat_png):
    _, png = cat_png
    raw = client.post("/predict", content=png, headers={"Content-Type": "image/png"}).json()
    form = client.post("/predict", files={"file": ("cat.png", png, "image/png")}).json()
    assert raw["label"] == form["label"] and raw["probabilities"] == form["probabilities"]


def test_top_keeps_only_the_most_likely_classes(client, cat_png):
    body = client.post("/predict?top=1", files={"file": ("c.png", cat_png[1], "image/png")}).json()
    assert list(body["probabilities"]) == [body["label"]]


def test_a_batch_answers_each_file_in_order_from_one_forward(client, app, export):
    pngs = [(export.parent / f"{'Cat' if i % 2 else 'dog'}_{i}.png").read_bytes() for i in (1, 2, 3)]
    singles = [client.post("/predict", content=p, headers={"Content-Type": "image/png"}).json() for p in pngs]
    r = client.post(
        "/predict/batch", files=[("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)]
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["label"] for x in results] == [s["label"] for s in singles]
    for x, s in zip(results, singles):
        assert x["probabilities"] == pytest.approx(s["probabilities"], abs=1e-5)
    assert app.state.served.batcher.batch_sizes[-1] == 3


def test_a_camera_sized_image_is_shrunk_before_its_forward_and_answered_as_learn_predict_does(
    client, app, export, tmp_path
):
    y, x = np.mgrid[0:1200, 0:1600]
    a = np.stack([np.full_like(x, 230), x * 255 // 1600, y * 255 // 1200], axis=-1).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(a).save(path)
    model = app.state.served.model
    small = model.prepare(Image.open(path))
    assert 32 <= min(small.size) < 64 and small.width / small.height == pytest.approx(4 / 3, rel=0.05)
    body = client.post("/predict", content=path.read_bytes(), headers={"Content-Type": "image/png"}).json()
    _, _, probs = model.learn.predict(path)  # from the full-size image
    got = torch.tensor([body["probabilities"][v] for v in ("False", "True")])
    assert torch.allclose(got, probs, atol=0.02)


def test_health_and_model_describe_the_served_export(client, export):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    expected = read_export_info(export)
    assert {k: info[k] for k in expected} == expected
    assert info["file"] == "export.pkl" and info["serving"]["max_upload_mb"] == 10


def test_the_openapi_schema_lists_every_endpoint_and_both_ways_to_send_an_image(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(schema["paths"])
    content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(content)


def test_the_page_names_the_model_its_classes_and_input_size_and_loads_nothing_from_elsewhere(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "resnet18" in html and "16×16 px" in html and "False, True" in html
    assert 'aria-live="polite"' in html and 'type="file"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "default-src 'none'" in r.headers["content-security-policy"]


# ---- one way to open an image, for training, learn.predict and the server ------------------------
def _phone_photo(orientation: int) -> bytes:
    """A 40x20 JPEG, left half red, right half blue, whose EXIF says how to turn it to show it."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("orientation, red_at", [(6, (10, 5)), (8, (10, 34)), (1, (5, 10))])
def test_a_phone_photo_is_turned_upright_by_its_exif_orientation_everywhere(tmp_path, orientation, red_at):
    data = _phone_photo(orientation)
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    size = (40, 20) if orientation == 1 else (20, 40)  # 6 and 8: a quarter turn, clockwise or not
    opened = {
        "path": open_image(path),
        "bytes": open_image(data),
        "file": open_image(io.BytesIO(data)),
        "pil": open_image(Image.open(path)),
        "training": PILImage.create(path),
        "server": read_image(data, max_pixels=10_000),
    }
    for how, img in opened.items():
        assert img.size == size and img.mode == "RGB", how
        r, g, b = img.getpixel(red_at)
        assert r > 200 and b < 60, (how, img.getpixel(red_at))


def _as_file(kind: str) -> tuple[str, bytes]:
    """An image of an awkward mode, encoded: (file suffix, bytes)."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    rgb[..., 0] = 240  # reddish: the model's "True"
    buf = io.BytesIO()
    if kind == "I;16":
        a = (np.arange(20 * 26).reshape(20, 26) * 120 + 1120).astype(np.uint16)  # 1,120 to 63,400
        Image.fromarray(a).save(buf, "PNG")
    elif kind == "P+transparency":
        img = Image.fromarray(rgb).quantize(16)
        a = np.asarray(img).copy()
        a[:, :8] = 0  # the left third shows palette entry 0, made transparent
        img = Image.fromarray(a, "P")
        img.putpalette(Image.fromarray(rgb).quantize(16).getpalette())
        img.save(buf, "PNG", transparency=0)
    elif kind == "LA":
        alpha = np.full((20, 26), 255, np.uint8)
        alpha[:, :8] = 0
        Image.fromarray(np.stack([rgb[..., 1], alpha], -1), "LA").save(buf, "PNG")
    elif kind == "RGBA":
        Image.fromarray(np.dstack([rgb, np.full((20, 26), 128, np.uint8)]), "RGBA").save(buf, "PNG")
    elif kind == "CMYK":
        Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
        return ".jpg", buf.getvalue()
    return ".png", buf.getvalue()


@pytest.mark.parametrize("kind", ["I;16", "P+transparency", "LA", "RGBA", "CMYK"])
def test_the_server_and_learn_predict_see_the_same_pixels_and_give_the_same_answer(
    client, export, tmp_path, kind
):
    suffix, data = _as_file(kind)
    path = tmp_path / f"image{suffix}"
    path.write_bytes(data)
    served = np.asarray(read_image(data, max_pixels=10_000))
    trained = np.asarray(PILImage.create(path))
    assert served.shape == (20, 26, 3) and np.array_equal(served, trained)
    if kind == "I;16":  # scaled from 16 bits to 8, not clipped: 63,400 -> 247, not 255
        assert served.max() == round(63_400 * 255 / 65_535) and served.min() == round(1120 * 255 / 65_535)
    if kind in ("P+transparency", "LA"):  # transparent pixels are shown on white
        assert (served[:, :8] == 255).all() and not (served[:, 8:] == 255).all()
    body = client.post("/predict", files={"file": (path.name, data, "image/png")}).json()
    _, _, probs = load_learner(export).predict(path)
    got = torch.tensor([body["probabilities"][v] for v in ("False", "True")])
    assert torch.allclose(got, probs, atol=1e-5)


# ---- refused input: 4xx JSON, and the next request is still served ---------------------------------
def _png_claiming(w: int, h: int) -> bytes:
    """A valid PNG header saying w x h, with a few hundred bytes of data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(
        b"IEND", b"")  # fmt: skip


def _jpeg(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)).save(
        buf, "JPEG"
    )
    return buf.getvalue()


def _fifty_megapixels() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (8000, 6250)).save(buf, format="PNG")  # 1 bit per pixel: small in memory and on disk
    return buf.getvalue()


BAD_UPLOADS = {
    "not_an_image": (b"hello, this is text", 400, "not an image"),
    "empty_file": (b"", 400, "is empty"),
    "truncated_png": (_png(0, True, (64, 64))[:3000], 400, "damaged or truncated PNG image"),
    "truncated_jpeg": (_jpeg((256, 192))[:-3000], 400, "damaged or truncated JPEG image"),
    "decompression_bomb": (_png_claiming(100_000, 100_000), 413, "decompression bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_a_bad_upload_gets_a_4xx_json_error_and_the_server_serves_on(client, cat_png, case):
    data, status, words = BAD_UPLOADS[case]
    r = client.post("/predict", files={"file": ("upload.png", data, "image/png")})
    assert r.status_code == status and words in r.json()["error"] and "'upload.png'" in r.json()["error"]
    _good_request_works(client, cat_png[1])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, at 40-80 MP
def test_a_fifty_megapixel_image_is_refused_before_its_pixels_are_decoded(client, cat_png, monkeypatch):
    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    r = client.post("/predict", content=_fifty_megapixels(), headers={"Content-Type": "image/png"})
    monkeypatch.undo()
    assert r.status_code == 413 and "8000x6250 = 50.0 megapixels" in r.json()["error"]
    _good_request_works(client, cat_png[1])


def test_an_empty_raw_body_is_refused(client, cat_png):
    r = client.post("/predict", content=b"", headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400 and "the request body is empty" in r.json()["error"]
    _good_request_works(client, cat_png[1])


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", None])
def test_a_body_that_is_not_an_image_upload_gets_415(client, cat_png, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post("/predict", content=cat_png[1], headers=headers)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    _good_request_works(client, cat_png[1])


def test_a_batch_sent_as_a_raw_body_gets_415(client, cat_png):
    r = client.post("/predict/batch", content=cat_png[1], headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and "files" in r.json()["error"]


def test_a_form_without_the_file_field_names_the_field_expected(client, cat_png):
    r = client.post("/predict", files={"image": ("c.png", cat_png[1], "image/png")})
    assert r.status_code == 400 and "`file`" in r.json()["error"] and "image" in r.json()["error"]
    r = client.post("/predict/batch", files={"file": ("c.png", cat_png[1], "image/png")})
    assert r.status_code == 400 and "`files`" in r.json()["error"]


def test_one_bad_file_in_a_batch_is_named_and_nothing_is_classified(client, app, cat_png):
    n_forwards = len(app.state.served.batcher.batch_sizes)
    files = [("files", ("good.png", cat_png[1], "image/png")), ("files", ("bad.txt", b"text", "text/plain"))]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 400 and "files[1] ('bad.txt')" in r.json()["error"]
    assert len(app.state.served.batcher.batch_sizes) == n_forwards


def test_unknown_routes_and_methods_get_json_errors(client, cat_png):
    r = client.get("/nope")
    assert r.status_code == 404 and "GET /nope" in r.json()["error"]
    r = client.get("/predict")
    assert r.status_code == 405 and "does not take GET" in r.json()["error"]
    r = client.post("/predict?top=0", files={"file": ("c.png", cat_png[1], "image/png")})
    assert r.status_code == 422 and "top" in r.json()["error"]
    _good_request_works(client, cat_png[1])


def test_a_failing_model_gets_a_500_json_error_and_the_server_serves_on(app, cat_png, monkeypatch):
    def broken(images):
        raise RuntimeError("out of memory, say")

    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.state.served.batcher, "fn", broken)
        r = client.post("/predict", files={"file": ("c.png", cat_png[1], "image/png")})
        assert r.status_code == 500 and "RuntimeError: out of memory, say" in r.json()["error"]
        monkeypatch.undo()
        _good_request_works(client, cat_png[1])


@pytest.fixture(scope="module")
def small_limit_app(export):
    return create_app(export, max_upload_mb=0.01)  # 10,485 bytes


def test_a_body_over_the_limit_is_refused_from_its_content_length_or_while_it_streams(small_limit_app):
    png = _png(1, True, (200, 200))  # about 90 kB of noise

    def chunks():
        for i in range(0, len(png), 4096):
            yield png[i : i + 4096]

    with TestClient(small_limit_app) as client:
        r = client.post("/predict", content=png, headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "limit of 0.01 MB" in r.json()["error"]
        # a generator body goes chunked, without Content-Length: counted as it arrives (TestClient reads
        # it all before calling the app; the real-server test below sends one over a socket)
        r = client.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "--max-upload-mb" in r.json()["error"]
        r = client.post("/predict", files={"file": ("big.png", png, "image/png")})
        assert r.status_code == 413
        _good_request_works(client, _png(2, True))


# ---- start-up --------------------------------------------------------------------------------------
def test_a_pickle_is_refused_at_start_without_being_unpickled(tmp_path, monkeypatch):
    path = tmp_path / "export.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr("ember.serve.app.uvicorn.run", lambda *a, **k: pytest.fail("the server started"))
    with pytest.raises(NotAnExportError, match="looks like a pickle") as e:
        run_server(path)
    assert "\n" not in str(e.value)
    with pytest.raises(NotAnExportError):
        create_app(path)


def test_a_missing_model_file_is_refused_with_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*missing.pkl"):
        run_server(tmp_path / "missing.pkl")


def test_only_single_label_classifiers_are_served():
    info = {"app": "vision", "task": "single-label classification", "vocab": ["a", "b"]}
    check_servable(None, info)  # type: ignore[arg-type]
    with pytest.raises(ServeError, match="holds a regression model"):
        check_servable(None, {**info, "task": "regression", "vocab": None})  # type: ignore[arg-type]


def test_run_server_binds_to_localhost_by_default_and_says_so(export, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("ember.serve.app.uvicorn.run", lambda app, **kw: calls.append(kw))
    threads = torch.get_num_threads()
    try:
        run_server(export, port=8123)
        assert torch.get_num_threads() == os.cpu_count()  # one worker: every core for torch
    finally:
        torch.set_num_threads(threads)  # the suite's setting, for the tests after this one
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8123
    out = capsys.readouterr().out
    assert "serving resnet18 (export.pkl) on http://127.0.0.1:8123 (local only; use --host 0.0.0.0" in out


def test_worker_processes_get_create_apps_arguments_from_run_server_not_the_environment(export, monkeypatch):
    started = []

    class FakeMultiprocess:  # uvicorn's supervisor, which would spawn the workers
        def __init__(self, config, sockets):
            started.append(config)
            for sock in sockets:
                sock.close()

        def run(self):
            pass

    monkeypatch.setattr("ember.serve.app.Multiprocess", FakeMultiprocess)
    environ = dict(os.environ)
    run_server(export, port=_free_port(), workers=2, max_upload_mb=3, max_queue=5, timeout_s=7)
    assert dict(os.environ) == environ
    config = started[0]
    assert config.workers == 2 and config.factory
    factory = pickle.loads(pickle.dumps(config.app))  # what a spawned worker process gets
    with TestClient(factory()) as client:
        serving = client.get("/model").json()["serving"]
    assert serving["max_upload_mb"] == 3 and serving["max_queue"] == 5 and serving["timeout_s"] == 7


def test_create_app_leaves_pillows_process_wide_pixel_limit_alone_and_limits_each_request(export, cat_png):
    before = Image.MAX_IMAGE_PIXELS
    app = create_app(export, max_pixels=600)
    assert before == Image.MAX_IMAGE_PIXELS
    with TestClient(app) as client:
        _good_request_works(client, cat_png[1])  # 26x20 = 520 pixels
        r = client.post("/predict", content=_png(0, True, (30, 30)), headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "30x30" in r.json()["error"]


def test_no_setting_travels_through_environment_variables():
    root = Path(ember.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "EMBER_SERVE_ARGS" not in text, path
        if "serve" in path.parts:
            assert "os.environ" not in text and "getenv" not in text, path


# ---- micro-batching, driven step by step: no assertion depends on how fast anything runs ----------
def _run(coro):
    return asyncio.run(coro)


class Gate:
    """A batch function that holds each forward until the test lets it go: `started` is set while a
    forward waits at the gate, `release()` lets it (and every later one) through."""

    def __init__(self, fn=lambda xs: [2 * x for x in xs]):
        self.fn, self.started, self.opened = fn, threading.Event(), threading.Event()
        self.released_by_the_loop = False

    def __call__(self, xs):
        self.started.set()
        self.released_by_the_loop = self.opened.wait(10)  # 10 s: only so that a broken test cannot hang
        return self.fn(xs)

    def release(self):
        self.opened.set()


async def _until(condition) -> None:
    """Let the event loop run until `condition()` holds (each step runs every task that is ready)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


async def _forward_running(batcher: MicroBatcher, gate: Gate, item=0) -> asyncio.Task:
    """Submit `item` and wait until its forward is held at the gate: what is submitted next queues."""
    task = asyncio.create_task(batcher.submit(item))
    await asyncio.to_thread(gate.started.wait, 10)
    return task


def test_requests_arriving_during_a_forward_share_the_next_one_and_each_gets_its_own_answer():
    gate = Gate()

    async def main():
        batcher = MicroBatcher(gate, max_batch=4, max_wait_ms=0)
        await batcher.start()
        first = await _forward_running(batcher, gate)
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 10)]
        await _until(lambda: batcher.queued == 9)
        gate.release()
        results = [await first, *[await t for t in rest]]
        await batcher.stop()
        return results, batcher.batch_sizes

    results, sizes = _run(main())
    assert results == [2 * i for i in range(10)]
    assert sizes == [1, 4, 4, 1]


def test_items_submitted_together_make_one_forward_in_their_order():
    async def main():
        batcher = MicroBatcher(lambda xs: [2 * x for x in xs], max_batch=16, max_wait_ms=0)
        await batcher.start()
        results = await batcher.submit_many([3, 1, 2])
        await batcher.stop()
        return results, batcher.batch_sizes

    assert _run(main()) == ([6, 2, 4], [3])


def test_max_batch_one_gives_every_request_a_forward_of_its_own():
    async def main():
        batcher = MicroBatcher(lambda xs: xs, max_batch=1)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.stop()
        return batcher.batch_sizes

    assert _run(main()) == [1] * 5


def test_a_failed_forward_fails_its_requests_and_the_batcher_serves_on():
    def fn(xs):
        if -1 in xs:
            raise ValueError("bad item")
        return xs

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=0)
        await batcher.start()
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit(-1)
        ok = await batcher.submit(7)
        await batcher.stop()
        return ok

    assert _run(main()) == 7


def test_one_bad_item_in_a_micro_batch_fails_only_its_own_request():
    def fn(xs):
        if -1 in xs:
            raise ValueError("bad item")
        return [10 * x for x in xs]

    gate = Gate(fn)

    async def main():
        batcher = MicroBatcher(gate, max_batch=8, max_wait_ms=0)
        await batcher.start()
        first = await _forward_running(batcher, gate, 0)
        others = [asyncio.create_task(batcher.submit(x)) for x in (1, -1, 2, 3)]  # four requests
        await _until(lambda: batcher.queued == 4)
        gate.release()
        answers = await asyncio.gather(first, *others, return_exceptions=True)
        await batcher.stop()
        return answers, batcher.batch_sizes

    answers, sizes = _run(main())
    assert answers[:2] == [0, 10] and answers[3:] == [20, 30]
    assert isinstance(answers[2], ValueError) and "bad item" in str(answers[2])
    assert sizes[:2] == [1, 4]  # the shared forward failed; each of its four items then ran alone


def test_a_full_queue_refuses_at_once_and_takes_work_again_once_it_drains():
    gate = Gate()

    async def main():
        batcher = MicroBatcher(gate, max_batch=8, max_wait_ms=0, max_queue=3)
        await batcher.start()
        first = await _forward_running(batcher, gate)
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        await _until(lambda: batcher.queued == 3)
        with pytest.raises(QueueFull, match="3 images are waiting"):
            await batcher.submit(4)
        with pytest.raises(QueueFull):
            await batcher.submit_many([4, 5])  # all or nothing: a batch request never half-enters
        assert batcher.queued == 3
        gate.release()
        results = [await first, *[await t for t in queued], await batcher.submit(4)]
        await batcher.stop()
        return results

    assert _run(main()) == [0, 2, 4, 6, 8]


def test_a_request_that_times_out_in_the_queue_is_dropped_without_a_forward():
    gate = Gate()

    async def main():
        batcher = MicroBatcher(gate, max_batch=8, max_wait_ms=0)
        await batcher.start()
        first = await _forward_running(batcher, gate)
        with pytest.raises(TimedOut, match="0.05 s"):
            await batcher.submit(1, timeout_s=0.05)  # the gate is shut: it cannot be answered in time
        gate.release()
        await first
        await batcher.stop()
        return batcher.batch_sizes

    assert _run(main()) == [1]


def test_the_forward_runs_off_the_event_loop():
    gate = Gate()

    async def main():
        batcher = MicroBatcher(gate, max_batch=1)
        await batcher.start()
        task = await _forward_running(batcher, gate)
        gate.release()  # only the event loop can open the gate: a forward holding the loop would time out
        await task
        await batcher.stop()

    _run(main())
    assert gate.released_by_the_loop


# ---- back-pressure in the app: 503 with Retry-After, not an ever-growing queue ---------------------
def _post_in_thread(client, png: bytes, answers: list) -> threading.Thread:
    def post():
        answers.append(client.post("/predict", content=png, headers={"Content-Type": "image/png"}))

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_a_full_queue_answers_503_with_retry_after_and_the_queued_requests_are_still_answered(
    export, cat_png
):
    app = create_app(export, max_batch=1, max_queue=1)
    batcher = app.state.served.batcher
    gate = Gate(batcher.fn)
    batcher.fn = gate
    answers: list = []
    with TestClient(app) as client:
        threads = [_post_in_thread(client, cat_png[1], answers)]
        assert gate.started.wait(10)  # the first request's forward is held
        threads.append(_post_in_thread(client, cat_png[1], answers))
        deadline = time.monotonic() + 10
        while batcher.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        r = client.post("/predict", content=cat_png[1], headers={"Content-Type": "image/png"})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "queue is full" in r.json()["error"]
        gate.release()
        for t in threads:
            t.join(10)
        assert [a.status_code for a in answers] == [200, 200]
        _good_request_works(client, cat_png[1])


def test_a_request_not_answered_within_timeout_s_gets_503_and_the_server_serves_on(export, cat_png):
    app = create_app(export, timeout_s=0.2)
    batcher = app.state.served.batcher
    gate = Gate(batcher.fn)
    batcher.fn = gate
    with TestClient(app) as client:
        r = client.post("/predict", content=cat_png[1], headers={"Content-Type": "image/png"})
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert "not answered within 0.2 s" in r.json()["error"]
        gate.release()
        _good_request_works(client, cat_png[1])


def test_queue_settings_that_cannot_work_are_refused_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match="max_queue must be positive"):
        MicroBatcher(lambda xs: xs, max_queue=0)
    with pytest.raises(ValueError, match="max_files=8 is more than max_queue=4"):
        create_app(tmp_path / "not-read.pkl", max_queue=4, max_files=8)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        create_app(tmp_path / "not-read.pkl", timeout_s=0)


def test_ember_serve_hands_its_queue_and_timeout_options_to_the_server(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from ember.cli import app as cli

    calls = []
    monkeypatch.setattr("ember.serve.app.run_server", lambda *args, **kwargs: calls.append((args, kwargs)))
    model = tmp_path / "export.pkl"
    result = CliRunner().invoke(cli, ["serve", str(model), "--max-queue", "8", "--timeout", "2.5"])
    assert result.exit_code == 0, result.output
    args, kwargs = calls[0]
    assert args == (model, "127.0.0.1", 8000, 1, 10.0, 8, 2.5) and not kwargs


# ---- the real server, and the page in Chromium ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(export):
    """`run_server` in a subprocess on a free port; yields (base url, its first line of output)."""
    port = _free_port()
    code = "import sys; from pathlib import Path; from ember.serve import run_server; "
    code += "run_server(Path(sys.argv[1]), port=int(sys.argv[2]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(export), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, lines)
        yield url, lines[0]
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_until_up(url: str, proc: subprocess.Popen, lines: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the server exited:\n" + "".join(lines))
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"the server did not answer within {timeout} s:\n" + "".join(lines))


def test_the_real_server_says_where_it_listens_and_refuses_an_oversized_stream(server, cat_png):
    url, first_line = server
    assert (
        first_line.startswith("serving resnet18 (export.pkl) on http://127.0.0.1:")
        and "local only" in first_line
    )

    def eleven_mb():
        for _ in range(11):
            yield bytes(2**20)

    r = httpx.post(f"{url}/predict", content=eleven_mb(), headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 413 and "limit of 10 MB" in r.json()["error"]
    r = httpx.post(f"{url}/predict", files={"file": ("c.png", cat_png[1], "image/png")}, timeout=30)
    assert r.status_code == 200


def test_the_page_classifies_an_image_picked_with_the_keyboard(server, cat_png, tmp_path, browser):
    url, _ = server
    path, png = cat_png
    expected = httpx.post(f"{url}/predict", files={"file": ("c.png", png, "image/png")}, timeout=30).json()
    loaded = open_page(browser, f"{url}/")
    page = loaded.page
    # Listen before the key press, and let a round trip pass: Playwright's expect_file_chooser can miss a
    # chooser opened right after it starts intercepting (playwright#19051, puppeteer#6040).
    choosers: list = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.keyboard.press("Tab")  # the drop zone is the first thing to focus
    assert page.evaluate("document.activeElement.id") == "drop"
    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert choosers, "Enter on the drop zone did not open the file picker"
    choosers[0].set_files(str(path))
    page.locator("#bars li").first.wait_for(timeout=15_000)
    assert page.locator("#label").inner_text() == expected["label"]
    assert page.locator("#bars li").count() == 2
    assert page.locator("#preview").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator("#result").get_attribute("aria-live") == "polite"
    shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert pixel_std(shot) > 5
    assert not loaded.errors
    assert all(r.startswith((url, "data:", "blob:")) for r in loaded.requests), loaded.requests
    page.close()


def test_the_page_fits_a_phone_screen_and_shows_an_error_for_a_non_image(server, tmp_path, browser):
    url, _ = server
    loaded = open_page(browser, f"{url}/", width=360, height=740)
    page = loaded.page
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    page.locator("#status.error").wait_for(timeout=15_000)
    assert "not an image" in page.locator("#status").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.close()
