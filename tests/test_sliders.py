"""The sliders page's server (`ember.generative.sliders`) and the `ember sliders` command: the directions
it offers, slider positions to latent vectors and back, the decoded PNG, a VAE's uploads, and the errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from test_generative_app import png_pixels, tiny_gan, tiny_vae, write_digits
from typer.testing import CliRunner

from ember.cli import app as cli
from ember.generative.app import png_of
from ember.generative.sliders import NotGenerativeError, SliderModel, create_sliders_app
from ember.learner.export import load_learner


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(GAN export with 8 raw axes, VAE export with 8 PCA directions of 10 dimensions)."""
    root = write_digits(tmp_path_factory.mktemp("sliders"))
    gan, vae = tiny_gan(root), tiny_vae(root, latent_dim=10)
    return gan.export(root / "gan.pkl"), vae.export(root / "vae.pkl")


@pytest.fixture(scope="module")
def vae_client(exports):
    with TestClient(create_sliders_app(exports[1])) as client:
        yield client


@pytest.fixture(scope="module")
def gan_client(exports):
    with TestClient(create_sliders_app(exports[0], k=3)) as client:
        yield client


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_directions_give_one_slider_per_direction_with_its_sigma_and_label(vae_client, gan_client, exports):
    d = vae_client.get("/directions").json()
    dirs = load_learner(exports[1]).directions
    assert torch.allclose(torch.tensor(d["directions"]), dirs.directions, atol=1e-7)
    assert torch.allclose(torch.tensor(d["sigmas"]), dirs.sigmas) and len(d["mean"]) == 10
    assert (
        d["labels"][0] == f"PC1 · {100 * float(dirs.explained[0]):.0f}%"
        and d["can_encode"]
        and d["range"] == 3
    )
    g = gan_client.get("/directions").json()  # latent_dim 8 <= 8: the raw axes; k=3 keeps three
    assert g["labels"] == ["z[0]", "z[1]", "z[2]"] and g["directions"] == torch.eye(8)[:3].tolist()
    assert not g["can_encode"]


def test_slider_positions_decode_to_mean_plus_sigma_steps_along_the_directions(vae_client, exports):
    learn = load_learner(exports[1])
    dirs = learn.directions
    coords = torch.tensor([1.5, -2.0, 0.0, 0.5, 0.0, 3.0, -1.0, 0.25])
    z = dirs.mean.clone()
    for c, s, d in zip(coords, dirs.sigmas, dirs.directions):  # by hand, one direction at a time
        z += c * s * d
    by_coords = vae_client.post("/decode", json={"coords": coords.tolist()})
    assert by_coords.headers["content-type"] == "image/png"
    by_z = vae_client.post("/decode", json={"z": z.tolist()}).content
    assert np.abs(png_pixels(by_coords.content).astype(int) - png_pixels(by_z).astype(int)).max() <= 1
    assert by_z == png_of(learn.decode(z)[0])


def test_a_seeds_vector_is_learns_and_its_positions_are_its_projections_in_sigmas(vae_client, exports):
    learn = load_learner(exports[1])
    answer = vae_client.get("/sample?seed=5").json()
    z = learn.sample_z(1, seed=5)[0]
    assert answer["z"] == z.tolist()
    dirs = learn.directions
    want = [float((z - dirs.mean) @ d / s) for d, s in zip(dirs.directions, dirs.sigmas)]
    assert answer["coords"] == pytest.approx(want, abs=1e-5)


def test_moving_from_a_start_by_position_steps_reaches_the_vector_of_those_positions():
    """What the page does, z = z0 + sum (c - c0) sigma d, lands where `z_of(c)` does when z0 lies in the
    sliders' span (the part of z0 outside it is kept as it is)."""
    d = torch.linalg.qr(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)))[
        0
    ].T  # (3, 6) orthonormal
    m = SliderModel(None, d, torch.tensor([0.5, 2.0, 1.0]), torch.randn(6), ["a", "b", "c"], "x")  # type: ignore[arg-type]
    z0 = m.z_of(torch.tensor([0.3, -1.0, 2.0]))
    c0, c = m.coords_of(z0), torch.tensor([1.0, 1.0, -2.0])
    assert torch.allclose(c0, torch.tensor([0.3, -1.0, 2.0]), atol=1e-5)
    assert torch.allclose(z0 + ((c - c0) * m.sigmas) @ m.directions, m.z_of(c), atol=1e-5)


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"z": [0.0] * 3}, 400, "latent size is 10: send 10 numbers"),
        ({"coords": [0.0] * 9}, 400, "the number of sliders is 8"),
        ({"z": ["a"] * 10}, 400, 'send {"z": [...]}'),
        ({"seed": 1}, 400, '{"coords": [...]}'),
    ],
)
def test_a_bad_decode_request_is_refused_saying_what_to_send(vae_client, body, status, words):
    r = vae_client.post("/decode", json=body)
    assert r.status_code == status and words in r.json()["error"]


def test_a_non_finite_value_or_a_body_that_is_not_json_is_refused(vae_client):
    r = vae_client.post("/decode", content=b'{"z": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]}',
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "finite" in r.json()["error"]
    r = vae_client.post("/decode", content=b"z=1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_an_uploaded_image_gets_the_vaes_code_and_its_positions(vae_client, exports):
    learn = load_learner(exports[1])
    img = Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1)), "L")
    answer = vae_client.post("/encode", files={"file": ("digit.png", _png(img), "image/png")}).json()
    z = learn.encode(img)[0]
    assert answer["z"] == pytest.approx(z.tolist(), abs=1e-6) and answer["fitted"] == ""
    assert answer["coords"] == pytest.approx(SliderModel.load(exports[1]).coords_of(z).tolist(), abs=1e-5)


def test_fit_converts_and_squashes_an_upload_and_says_so_and_without_it_the_error_names_the_size(vae_client):
    rgb = Image.new("RGB", (40, 30), (200, 10, 10))
    r = vae_client.post("/encode?fit=true", files={"file": ("photo.png", _png(rgb), "image/png")})
    assert r.json()["fitted"] == "converted from RGB to L, squashed from 40x30 to 16x16"
    grey = Image.new("L", (40, 30), 90)
    r = vae_client.post("/encode", files={"file": ("photo.png", _png(grey), "image/png")})
    assert (
        r.status_code == 400 and "file 'photo.png' is 40x30 px, but this VAE takes 16x16" in r.json()["error"]
    )
    r = vae_client.post("/encode", content=b"not an image", headers={"Content-Type": "image/png"})
    assert r.status_code == 400


def test_a_gan_cannot_encode_an_upload(gan_client):
    r = gan_client.post("/encode", files={"file": ("d.png", _png(Image.new("L", (16, 16))), "image/png")})
    assert r.status_code == 400 and "only a VAE" in r.json()["error"]


def test_the_page_and_its_assets_come_from_the_app_alone(vae_client):
    r = vae_client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert '<script src="static/sliders.js">' in r.text and "http" not in r.text.split("<footer>")[0]
    assert 'width="16" height="16"' in r.text and "POST /encode" in r.text
    js = vae_client.get("/static/sliders.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert vae_client.get("/static/other.js").status_code == 404


def test_asking_for_more_sliders_than_the_export_has_directions_gives_them_all(exports):
    assert len(SliderModel.load(exports[1], k=20).labels) == 8
    assert len(SliderModel.load(exports[1], k=2).labels) == 2
    with pytest.raises(ValueError, match="at least one slider"):
        SliderModel.load(exports[1], k=0)


def test_a_direction_the_data_does_not_vary_along_gets_no_slider(tmp_path):
    """Eight training images give a VAE's PCA seven directions of non-zero spread: the eighth would divide
    the positions by a zero sigma."""
    root = write_digits(tmp_path / "few", n=10)  # 8 training images, 2 valid
    vae = tiny_vae(root, latent_dim=10)
    m = SliderModel.load(vae.export(tmp_path / "few.pkl"))
    assert len(m.labels) == 7 and m.labels[-1].startswith("PC7") and bool((m.sigmas > 1e-4).all())
    assert torch.isfinite(m.coords_of(torch.randn(10))).all()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A vision classifier's export: what `ember sliders` must refuse."""
    from ember.vision.all import ImageDataLoaders, Resize, vision_learner

    root = write_digits(tmp_path_factory.mktemp("classifier"))
    files = sorted(root.rglob("*.png"))
    dls = ImageDataLoaders.from_path_func(root, files, lambda p: p.parent.name, item_tfms=Resize(16), bs=8,
                                          num_workers=0, seed=0)  # fmt: skip
    return vision_learner(dls, "resnet18", pretrained=False, quiet=True).export(root / "classifier.pkl")


def test_an_export_that_is_not_generative_is_refused_saying_what_it_holds_and_what_is_needed(classifier):
    with pytest.raises(
        NotGenerativeError, match=r"holds a vision model \(resnet18, .*classification\).*GAN or a VAE"
    ):
        create_sliders_app(classifier)
    r = CliRunner().invoke(cli, ["sliders", str(classifier)])
    assert r.exit_code == 1 and "error:" in r.output and "ember serve" in r.output
