"""The sliders page in headless Chromium, on MNIST-sized untrained models (a 32 px DCGAN generator with 100
latent dimensions, a 28 px conv VAE with 16): a slider moved by the keyboard, the mouse or a finger changes
the image, "reset" gives the first image back byte for byte, a seed gives that seed's image, an uploaded
digit's reconstruction is shown, and the update latency (slider event to new image shown) is measured."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from browser import open_page, pixel_std
from PIL import Image
from test_generative_app import tiny_gan, tiny_vae, write_digits

from ember.generative.app import png_of
from ember.generative.sliders import create_sliders_app
from ember.learner.export import load_learner
from ember.serve import create_app

pytestmark = pytest.mark.slow  # two MNIST-sized exports and a browser: about 20 s

LATENCY_MS = 50  # the bound, slider event to new image, for MNIST-sized models on this CPU
SHOTS = Path("/tmp/ember_sliders_shots")  # screenshots, kept for a person to look at


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mnist_size")
    gan = tiny_gan(write_digits(root / "g", size=32), latent_dim=100, size=32, n_features=64)
    vae = tiny_vae(write_digits(root / "v", size=28), latent_dim=16, size=28, n_features=32)
    return gan.export(root / "gan.pkl"), vae.export(root / "vae.pkl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app) -> Iterator[str]:
    """uvicorn serving `app` in a thread of this process (a new process would spend most of the test
    importing torch)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sliders server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def gan_url(exports) -> Iterator[str]:
    yield from _serve(create_sliders_app(exports[0]))


@pytest.fixture(scope="module")
def vae_url(exports) -> Iterator[str]:
    yield from _serve(create_sliders_app(exports[1]))


# ---- what the page shows ----------------------------------------------------------------------------------
def _settled(page) -> int:
    """Wait until the image shows the sliders' latest positions; the number of images shown so far."""
    page.wait_for_function(
        "() => document.body.dataset.state === 'ready' && document.body.dataset.busy === 'false'"
    )
    return int(page.evaluate("() => document.body.dataset.shown"))


def _after(page, action) -> bytes:
    """Do `action`, wait for a new image to be shown and settle, and return its PNG bytes."""
    shown = _settled(page)
    action()
    page.wait_for_function("n => Number(document.body.dataset.shown) > n", arg=shown)
    _settled(page)
    return _image(page)


def _image(page) -> bytes:
    data = page.evaluate(
        """async () => Array.from(new Uint8Array(await (await fetch(document.getElementById("image").src))
                                                .arrayBuffer()))"""
    )
    return bytes(data)


def _latencies(page, n: int = 40) -> list[float]:
    """`n` keyboard steps of the third slider, each waited for: ms from the input event to the new image."""
    page.focus("#s2")
    for i in range(n):
        _after(page, lambda i=i: page.keyboard.press("ArrowRight" if i % 4 < 2 else "ArrowLeft"))
    return page.evaluate(f"() => window.sliderTimings.slice(-{n})")


def _report(name: str, ms: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(ms), float(np.percentile(ms, 95))
    print(f"\n{name}: slider event to new image, {len(ms)} steps: median {median:.1f} ms, p95 {p95:.1f} ms")
    return median, p95


def test_the_gan_page_moves_resets_seeds_and_updates_within_the_latency_bound(gan_url, exports, browser):
    loaded = open_page(browser, gan_url)
    page = loaded.page
    _settled(page)
    first = _image(page)
    learn = load_learner(exports[0])
    assert first == png_of(learn.predict(0)[1])  # the seed box starts at 0
    assert page.locator("#sliders input[type=range]").count() == 8 and page.locator("#upload-box").is_hidden()

    start = [page.input_value(f"#s{i}") for i in range(8)]  # the seed's positions
    page.focus("#s0")
    by_keys = _after(page, lambda: [page.keyboard.press("ArrowRight") for _ in range(10)])
    assert by_keys != first and page.input_value("#s0") != start[0]
    box = page.locator("#s1").bounding_box()
    by_mouse = _after(
        page, lambda: page.mouse.click(box["x"] + 0.95 * box["width"], box["y"] + box["height"] / 2)
    )
    assert by_mouse != by_keys and float(page.input_value("#s1")) > 2
    assert _after(page, lambda: page.click("#reset")) == first  # byte for byte
    assert [page.input_value(f"#s{i}") for i in range(8)] == start

    def seed(n: int) -> None:
        page.fill("#seed", str(n))
        page.dispatch_event("#seed", "change")

    assert _after(page, lambda: seed(5)) == png_of(learn.predict(5)[1])
    assert _after(page, lambda: page.click("#random")) != png_of(learn.predict(5)[1])

    median, p95 = _report("GAN 32 px, latent 100", _latencies(page))
    SHOTS.mkdir(exist_ok=True)
    shot = page.screenshot(path=str(SHOTS / "gan_desktop.png"))
    assert pixel_std(shot) > 5 and not loaded.errors, loaded.errors
    assert all(u.startswith(gan_url) or u.startswith(("blob:", "data:")) for u in loaded.requests)
    assert median <= LATENCY_MS, f"median {median:.1f} ms, p95 {p95:.1f} ms"


def test_on_a_phone_the_image_stays_in_view_and_a_finger_moves_a_slider(gan_url, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(gan_url)
    _settled(page)
    first = _image(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    box = page.locator("#s3").bounding_box()
    assert box["height"] >= 40  # a finger's target
    moved = _after(page, lambda: page.tap("#s3", position={"x": 0.9 * box["width"], "y": box["height"] / 2}))
    assert moved != first and float(page.input_value("#s3")) > 1.5
    page.screenshot(path=str(SHOTS / "gan_phone.png"), full_page=True)
    page.mouse.wheel(0, 400)  # scrolled to the last sliders, the image is still on screen (sticky)
    page.locator("#s7").scroll_into_view_if_needed()
    top = page.locator("#image").bounding_box()["y"]
    assert -1 <= top < 844 / 2, top
    page.screenshot(path=str(SHOTS / "gan_phone_scrolled.png"))
    assert not errors, errors
    context.close()


def test_the_vae_page_shows_an_uploaded_digits_reconstruction_and_starts_the_sliders_from_it(
    vae_url, exports, browser, tmp_path
):
    loaded = open_page(browser, vae_url)
    page = loaded.page
    _settled(page)
    assert page.locator("#upload-box").is_visible()
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    Image.fromarray(digit, "L").save(tmp_path / "one.png")
    shown = _after(page, lambda: page.set_input_files("#upload", str(tmp_path / "one.png")))
    learn = load_learner(exports[1])
    z = learn.encode(tmp_path / "one.png")
    assert shown == png_of(learn.decode(z)[0])  # the reconstruction
    assert page.evaluate("() => document.getElementById('original').naturalWidth") == 28
    assert "one.png" in page.text_content("#status")
    page.focus("#s0")
    moved = _after(page, lambda: [page.keyboard.press("ArrowLeft") for _ in range(20)])
    assert moved != shown
    assert _after(page, lambda: page.click("#reset")) == shown  # reset goes back to the upload's code

    median, p95 = _report("VAE 28 px, latent 16", _latencies(page))
    page.screenshot(path=str(SHOTS / "vae_desktop.png"))
    assert not loaded.errors, loaded.errors
    assert median <= LATENCY_MS, f"median {median:.1f} ms, p95 {p95:.1f} ms"


def test_an_image_the_vae_cannot_read_is_explained_on_the_page(vae_url, browser, tmp_path):
    page = open_page(browser, vae_url).page
    _settled(page)
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    page.set_input_files("#upload", str(tmp_path / "notes.png"))
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert "Could not encode notes.png" in page.text_content("#status")


# ---- the command, and `ember serve` of the same export ----------------------------------------------------
def test_ember_sliders_serves_the_page_and_says_where(exports):
    port = _free_port()
    code = "from ember.cli import main; main()"
    cmd = [sys.executable, "-c", code, "sliders", str(exports[0]), "--port", str(port), "--k", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert lines[0].startswith(f"sliders for BasicGenerator GAN generator (gan.pkl) on {url} (local only")
        assert len(httpx.get(f"{url}/directions").json()["labels"]) == 4
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_ember_serve_page_of_a_gan_is_the_sliders_page_and_shows_the_image_of_a_seed(exports, browser):
    learn = load_learner(exports[0])
    for url in _serve(create_app(exports[0])):
        loaded = open_page(browser, url)
        page = loaded.page
        _settled(page)
        assert page.locator("#sliders input[type=range]").count() == 8

        page.fill("#seed", "4")
        shown = _after(page, lambda page=page: page.dispatch_event("#seed", "change"))
        assert shown == png_of(learn.predict(4)[1])
        assert not loaded.errors, loaded.errors
