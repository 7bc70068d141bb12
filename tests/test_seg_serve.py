"""`ember serve` and `learn.report()` for segmentation and image-to-image models: the picture answers (JSON
with a data URI, or the PNG itself), where the overlay is drawn, the page in Chromium, and the report's
IoU / Dice and PSNR / SSIM sections."""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time

import numpy as np
import pytest
import torch
import uvicorn
from browser import open_page, pixel_std
from fastapi.testclient import TestClient
from PIL import Image

from ember.serve import ServeError, create_app
from ember.serve.model import check_servable
from ember.vision.all import (
    DataBlock,
    ImageBlock,
    RandomSplitter,
    Resize,
    SegmentationDataLoaders,
    load_learner,
    psnr,
    resnet18,
    set_seed,
    ssim,
    unet_learner,
)
from ember.vision.mask_io import mask_colours
from ember.vision.report_sections import iou_rows
from ember.vision.seg_interpret import SegmentationInterpretation
from ember.vision.serve_io import Overlay, Upload, _landing, draw_overlay

CODES = ["bg", "square"]


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _square_image(rng: np.random.Generator, h: int = 32, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A noisy dark image with a bright 12x12 square, and its mask (1 on the square)."""
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    top, left = rng.integers(0, h - 12), rng.integers(0, w - 12)
    mask[top : top + 12, left : left + 12] = 1
    img[mask == 1] = 220
    return img, mask


# ---- a tiny segmentation export, made once -----------------------------------------------------------
@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    """(learner, export path, a 48x40 upload's path): a U-Net from scratch, 1 epoch on 8 images 32x32."""
    path = tmp_path_factory.mktemp("seg")
    (path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img, mask = _square_image(rng)
        Image.fromarray(img).save(path / f"{i}.png")
        Image.fromarray(mask).save(path / "masks" / f"{i}.png")
    dls = SegmentationDataLoaders.from_label_func(
        path, sorted(path.glob("*.png")), lambda p: p.parent / "masks" / p.name, codes=CODES,
        item_tfms=Resize(32), bs=4, num_workers=0, seed=0,
    )  # fmt: skip
    set_seed(0)
    learn = unet_learner(dls, resnet18, pretrained=False, quiet=True)
    learn.fit(1, 1e-3)
    upload = path.parent / f"{path.name}-upload.png"  # not in the data set's folder
    Image.fromarray(_square_image(rng, 40, 48)[0]).save(upload)
    return learn, learn.export(path / "seg.pkl"), upload


@pytest.fixture(scope="module")
def seg_app(seg):
    return create_app(seg[1])


@pytest.fixture
def client(seg_app):
    with TestClient(seg_app) as c:
        yield c


def _decoded_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img


def _data_uri_png(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :])


# ---- the API -------------------------------------------------------------------------------------------
def test_a_segmentation_answer_has_the_class_shares_of_learn_predict_and_a_png_of_the_uploads_size(
    seg, client
):
    _, export, upload = seg
    r = client.post("/predict", files={"file": ("up.png", upload.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["classes"]) == CODES and sum(body["classes"].values()) == pytest.approx(1, abs=1e-5)
    mask, _, _ = load_learner(export).predict(upload)
    expected = (mask.flatten().bincount(minlength=2).double() / mask.numel()).tolist()
    assert list(body["classes"].values()) == pytest.approx(expected, abs=1e-6)
    assert body["colors"] == {c: "#{:02x}{:02x}{:02x}".format(*rgb) for c, rgb in zip(CODES, mask_colours(2))}
    assert _decoded_png(_data_uri_png(body["image"])).size == (48, 40)  # the upload's, not the model's 32x32
    assert body["model"] == "resnet18" and body["ms"] > 0


def test_format_png_answers_the_same_picture_as_the_png_itself(seg, client):
    png = seg[2].read_bytes()
    as_json = client.post("/predict", content=png, headers={"Content-Type": "image/png"}).json()
    r = client.post("/predict?format=png", files={"file": ("up.png", png, "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == _data_uri_png(as_json["image"]) and _decoded_png(r.content).size == (48, 40)
    r = client.post("/predict?format=gif", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and "format" in r.json()["error"]


def test_a_batch_gets_one_picture_per_image_in_the_order_sent(seg, client):
    small = _png(np.zeros((20, 30, 3), np.uint8))
    files = [
        ("files", ("up.png", seg[2].read_bytes(), "image/png")),
        ("files", ("s.png", small, "image/png")),
    ]
    results = client.post("/predict/batch", files=files).json()["results"]
    assert [_decoded_png(_data_uri_png(a["image"])).size for a in results] == [(48, 40), (30, 20)]


def test_a_non_image_upload_gets_a_clear_400_and_the_server_serves_on(seg, client):
    for url in ("/predict", "/predict?format=png"):
        r = client.post(url, files={"file": ("notes.txt", b"not an image", "text/plain")})
        assert r.status_code == 400 and "'notes.txt' is not an image" in r.json()["error"]
    r = client.post("/predict", files={"file": ("up.png", seg[2].read_bytes(), "image/png")})
    assert r.status_code == 200


def test_the_page_and_the_api_description_document_the_picture_answers(client):
    page = client.get("/").text
    assert 'id="picture"' in page and "?format=png" in page and "curl -F file=@photo.jpg" in page
    assert "2 classes (bg, square)" in page and "segmentation" in page
    api = client.get("/openapi.json").json()
    assert "format=png" in api["info"]["description"] and "`classes`" in api["info"]["description"]
    content = api["paths"]["/predict"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "image/png"}


def test_segmentation_exports_are_servable_and_need_their_codes():
    info = {"app": "vision", "task": "segmentation", "vocab": CODES}
    assert check_servable(None, info).draw is not None  # type: ignore[arg-type]
    with pytest.raises(ServeError, match="without codes"):
        check_servable(None, {**info, "vocab": None})  # type: ignore[arg-type]


# ---- where the overlay is drawn --------------------------------------------------------------------------
def test_a_centre_crop_lands_the_uploads_corners_outside_the_models_frame(seg):
    learn = seg[0]
    # Resize(32) crops the centre 32x32 of a 48x32 upload: upload x 8..40 is frame x 0..32
    assert _landing(learn, (48, 32)) == ((-8.0, 0.0, 40.0, 32.0), (32, 32))
    assert _landing(learn, (32, 48)) == ((0.0, -8.0, 32.0, 40.0), (32, 32))


def test_the_overlay_tints_only_what_the_model_saw_at_the_uploads_size():
    grey = np.full((32, 48, 3), 100, np.uint8)
    up = Upload(Image.fromarray(grey), _png(grey), "grey.png", box=(-8.0, 0.0, 40.0, 32.0), frame=(32, 32))
    mask = torch.ones(32, 32, dtype=torch.long)  # every pixel the model saw is a square
    out = np.asarray(_decoded_png(draw_overlay(Overlay(up, mask, CODES))).convert("RGB"))
    assert out.shape == (32, 48, 3)
    tinted = np.rint(0.5 * 100 + 0.5 * mask_colours(2)[1].astype(np.float32))
    assert (out[:, [0, 7, 40, 47]] == 100).all()  # the cropped-off borders are the upload as it was
    assert (out[:, 8:40] == tinted).all()


# ---- the page in Chromium, against a real server ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(seg):
    """uvicorn serving the export in a thread of this process (a new process would spend most of a test's
    time importing torch); test_serve.py runs `run_server` itself in a subprocess."""
    config = uvicorn.Config(create_app(seg[1]), host="127.0.0.1", port=_free_port(), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(10)


def test_the_page_shows_the_overlay_at_the_uploads_size_with_a_legend_of_shares(
    seg, server, tmp_path, browser
):
    loaded = open_page(browser, f"{server}/")
    page = loaded.page
    page.set_input_files("#file", str(seg[2]))
    page.locator("#picture").wait_for(state="visible", timeout=15_000)
    size = page.locator("#picture").evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
    assert size == [True, 48, 40]
    names = page.locator("#legend .name").all_inner_texts()
    shares = [float(t.rstrip("%")) for t in page.locator("#legend .pct").all_inner_texts()]
    assert names == CODES and sum(shares) == pytest.approx(100, abs=0.2)
    assert page.locator("#legend .swatch").first.evaluate("s => getComputedStyle(s).backgroundColor") == (
        "rgb(31, 119, 180)"  # bg's colour in the overlay
    )
    assert page.locator("#download").get_attribute("href").startswith("data:image/png;base64,")
    shot = page.screenshot(path=str(tmp_path / "seg-page.png"), full_page=True)
    assert pixel_std(shot) > 5
    assert not loaded.errors
    assert all(r.startswith((server, "data:", "blob:")) for r in loaded.requests), loaded.requests
    page.close()


def test_the_page_says_why_a_non_image_is_refused(server, tmp_path, browser):
    page = open_page(browser, f"{server}/", width=360, height=740).page
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    page.locator("#status.error").wait_for(timeout=15_000)
    assert "not an image" in page.locator("#status").inner_text()
    assert page.locator("#picture").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.close()


# ---- the report: segmentation ------------------------------------------------------------------------------
def test_the_iou_table_gives_dice_and_means_for_a_hand_computed_case():
    # from test_seg_interpret: IoU bg 2/5, road 2/4, car 1/2, void none (never a target nor a prediction);
    # Dice = 2 |T & P| / (|T| + |P|): bg 4/7, road 4/6, car 2/3
    targs = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [0, 0]]])
    labels = torch.tensor([[[0, 1], [1, 1]], [[2, 0], [0, 1]]])
    preds = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    rows = iou_rows(SegmentationInterpretation(preds, targs, ["bg", "road", "car", "void"]))
    assert rows == [
        ["bg", "0.4000", f"{4 / 7:.4f}", "4", "3"],
        ["road", "0.5000", f"{4 / 6:.4f}", "2", "4"],
        ["car", "0.5000", f"{2 / 3:.4f}", "2", "1"],
        ["void", "-", "-", "0", "0"],
        ["mean", f"{1.4 / 3:.4f}", f"{(4 / 7 + 4 / 6 + 2 / 3) / 3:.4f}", "", ""],
    ]


def test_a_segmentation_report_has_the_iou_table_and_the_masks(seg, tmp_path):
    learn = seg[0]
    page = learn.report(tmp_path / "seg.html").read_text()
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids[-2:] == ["iou", "masks"] and "confusion" not in ids  # not the classifier's sections
    rows = iou_rows(SegmentationInterpretation.from_learner(learn))
    for row in rows[:2]:
        assert "".join(f"<td>{c}</td>" for c in row) in page
    assert 'alt="validation images with their masks"' in page


# ---- image to image ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def i2i(tmp_path_factory):
    """(learner, export path, validation files): a U-Net from scratch that learns to brighten, 1 epoch."""
    path = tmp_path_factory.mktemp("i2i")
    (path / "targets").mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        img = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(path / f"{i}.png")
        Image.fromarray(img * 2).save(path / "targets" / f"{i}.png")
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock),
        get_items=lambda p: sorted(p.glob("*.png")),
        get_y=lambda p: p.parent / "targets" / p.name,
        splitter=RandomSplitter(0.25, seed=0),
    )
    dls = dblock.dataloaders(path, bs=4, num_workers=0)
    set_seed(0)
    learn = unet_learner(dls, resnet18, pretrained=False, quiet=True, config=dict(y_range=(0, 1)))
    learn.fit(1, 1e-3)
    valid = [dls.datasets.items[i] for i in dls.datasets.splits[1]]
    return learn, learn.export(path / "i2i.pkl"), valid


def _floats(files) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float() / 255 for f in files]
    )


def _predicted(learn, files) -> torch.Tensor:
    """`learn.predict`'s images (n, c, h, w) in [0, 1]: it answers (PIL image, floats (c, h, w), raw)."""
    out = [learn.predict(f) for f in files]
    assert all(isinstance(o[0], Image.Image) for o in out)
    return torch.stack([o[1] for o in out])


def _score_row(page: str, name: str) -> list[float]:
    cells = re.search(rf"<tr><td>{re.escape(name)}</td><td>([^<]+)</td><td>([^<]+)</td></tr>", page)
    assert cells, f"no row {name!r} in the report"
    return [float(c) for c in cells.groups()]


def test_an_image_to_image_report_scores_the_model_against_the_bicubic_baseline(i2i, tmp_path):
    learn, _, valid = i2i
    page = learn.report(tmp_path / "i2i.html").read_text()
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids[-2:] == ["image-scores", "triplets"]
    x, t = _floats(valid), _floats(f.parent / "targets" / f.name for f in valid)
    # the input is already the target's size: the baseline is the input itself
    assert _score_row(page, "input resized (bicubic)") == pytest.approx([psnr(x, t), ssim(x, t)], abs=1e-2)
    p = _predicted(learn, valid)
    assert _score_row(page, "model") == pytest.approx([psnr(p, t), ssim(p, t)], abs=1e-2)


def test_an_image_to_image_export_answers_its_predicted_image(i2i):
    learn, export, valid = i2i
    png = valid[0].read_bytes()
    with TestClient(create_app(export)) as client:
        body = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()
        r = client.post("/predict?format=png", content=png, headers={"Content-Type": "image/png"})
    assert (body["width"], body["height"]) == (32, 32) and "classes" not in body
    assert r.headers["content-type"] == "image/png" and r.content == _data_uri_png(body["image"])
    served = torch.from_numpy(np.array(_decoded_png(r.content))).permute(2, 0, 1).float() / 255
    expected = _predicted(load_learner(export), valid[:1])[0]
    assert (served - expected).abs().max() <= 1 / 255 + 1e-6  # the same image, up to 8-bit rounding
