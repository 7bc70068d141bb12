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

import httpx
import numpy as np
import pytest
import torch
from browser import open_page, pixel_std
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from ember.serve import ServeError, create_app, run_server
from ember.serve.app import _ENV, _app_from_env
from ember.serve.batcher import MicroBatcher
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
    check_servable(None, {"task": "single-label classification", "vocab": ["a", "b"]})  # type: ignore[arg-type]
    with pytest.raises(ServeError, match="holds a regression model"):
        check_servable(None, {"task": "regression", "vocab": None})  # type: ignore[arg-type]


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


def test_worker_processes_build_the_app_from_the_arguments_run_server_left(export, monkeypatch):
    monkeypatch.setenv(_ENV, f'{{"model_path": "{export}", "max_upload_mb": 3}}')
    with TestClient(_app_from_env()) as client:
        assert client.get("/model").json()["serving"]["max_upload_mb"] == 3


# ---- micro-batching --------------------------------------------------------------------------------
def _run(coro):
    return asyncio.run(coro)


def test_requests_arriving_during_a_forward_share_the_next_one_and_each_gets_its_own_answer():
    def slow_double(xs):
        time.sleep(0.05)
        return [2 * x for x in xs]

    async def main():
        batcher = MicroBatcher(slow_double, max_batch=4, max_wait_ms=0)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.01)  # the first forward is running: these wait for the next
        rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 10)))
        await batcher.stop()
        return [await first, *rest], batcher.batch_sizes

    results, sizes = _run(main())
    assert results == [2 * i for i in range(10)]
    assert sizes == [1, 4, 4, 1]


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


def test_the_forward_runs_off_the_event_loop():
    async def main():
        batcher = MicroBatcher(lambda xs: (time.sleep(0.3), xs)[1], max_batch=1)
        await batcher.start()
        task = asyncio.create_task(batcher.submit(1))
        start = time.perf_counter()
        await asyncio.sleep(0.02)  # would take 0.3 s if the forward held the loop
        waited = time.perf_counter() - start
        await task
        await batcher.stop()
        return waited

    assert _run(main()) < 0.2


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
