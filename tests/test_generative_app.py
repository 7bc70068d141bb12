"""Export, `load_learner` and `ember serve` of generative models (`ember.generative.app`): a GAN exports its
generator alone, a VAE the whole model; both come back as a `GenerativeLearner` that decodes as the learner
did, predicts from a seed or a latent vector, and (a VAE) encodes an image, refusing one it cannot take."""

from __future__ import annotations

import base64
import io
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors import safe_open

from ember.data.block import DataBlock
from ember.data.blocks import TransformBlock
from ember.data.splitters import IndexSplitter, RandomSplitter
from ember.generative.app import N_DIRECTIONS, GenerativeLearner, png_of
from ember.generative.gan import GANLearner
from ember.generative.gan_models import basic_critic, basic_generator, generate_noise
from ember.generative.latent import latent_directions
from ember.generative.vae_learner import vae_learner
from ember.learner.export import load_learner, read_export_info
from ember.serve import create_app
from ember.vision.augment import Normalize, Resize
from ember.vision.blocks import ImageBlock
from ember.vision.core import PILImageBW, get_image_files

PX = 1 / 255  # GANLearner.decode goes through the loaders' decoding, which rounds to 8 bits


# ---- tiny data and models, shared with test_sliders.py and test_sliders_browser.py -----------------------
def write_digits(root: Path, n: int = 24, size: int = 16) -> Path:
    """`n` grey `size` px images, each a bright bar at its own place on a noisy dark ground, in two
    folders."""
    for i in range(n):
        a = np.random.default_rng(i).integers(0, 60, (size, size), dtype=np.uint8)
        a[:, (i * 3) % (size - 3) : (i * 3) % (size - 3) + 3] = 230
        folder = root / str(i % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, "L").save(folder / f"{i}.png")
    return root


def tiny_vae(root: Path, latent_dim: int = 4, size: int = 16, n_features: int = 4):
    dblock = DataBlock(blocks=(ImageBlock(cls=PILImageBW), ImageBlock(cls=PILImageBW)), get_y=lambda x: x,
                       get_items=get_image_files, splitter=RandomSplitter(0.25, seed=0))  # fmt: skip
    dls = dblock.dataloaders(root, bs=4, num_workers=0)
    torch.manual_seed(0)
    return vae_learner(dls, "conv", latent_dim=latent_dim, n_features=n_features, quiet=True)


def tiny_gan(root: Path, latent_dim: int = 8, size: int = 16, n_features: int = 8) -> GANLearner:
    dblock = DataBlock(
        blocks=(TransformBlock, ImageBlock(cls=PILImageBW)), get_x=partial(generate_noise, size=latent_dim),
        get_items=get_image_files, splitter=IndexSplitter([]), item_tfms=Resize(size),
        batch_tfms=Normalize.from_stats([0.5], [0.5]),
    )  # fmt: skip
    dls = dblock.dataloaders(root, bs=4, num_workers=0)
    torch.manual_seed(0)
    generator = basic_generator(size, 1, in_sz=latent_dim, n_features=n_features)
    critic = basic_critic(size, 1, n_features=n_features, norm_type=None)
    return GANLearner.wgan_gp(dls, generator, critic, show_img=False, quiet=True)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def vae(digits):
    """A VAE with more latent dimensions than directions (PCA directions), fitted one epoch, exported."""
    learn = tiny_vae(digits, latent_dim=10)
    learn.fit(1, 1e-3)
    return learn, learn.export(digits / "vae.pkl")


@pytest.fixture(scope="module")
def gan(digits):
    learn = tiny_gan(digits)
    return learn, learn.export(digits / "gan.pkl")


# ---- export and load_learner ---------------------------------------------------------------------------
def test_a_gan_export_holds_the_generator_alone_and_decodes_as_the_gan_learner(gan):
    learn, path = gan
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(learn.model.generator.state_dict())  # no critic weights
    loaded = load_learner(path)
    assert isinstance(loaded, GenerativeLearner) and loaded.kind == "gan"
    assert (loaded.latent_dim, loaded.img_size, loaded.n_channels) == (8, (16, 16), 1)
    z = learn.sample_z(5, seed=3)
    assert torch.equal(loaded.sample_z(5, seed=3), z)
    # denormalised with the loaders' Normalize(0.5, 0.5): tanh's [-1, 1] back to [0, 1]
    with torch.no_grad():
        raw = learn.model.generator.eval()(z)
    assert torch.allclose(loaded.decode(z), (raw * 0.5 + 0.5).clamp(0, 1), atol=1e-6)
    assert (loaded.decode(z) - learn.decode(z)).abs().max() <= PX


def test_a_vae_export_is_the_whole_vae_and_decodes_and_encodes_as_the_vae_learner(vae, digits):
    learn, path = vae
    assert read_export_info(path)["app"] == "generative"  # claimed before vision's image-to-image
    loaded = load_learner(path)
    assert loaded.kind == "vae" and loaded.latent_dim == 10
    z = learn.sample_z(4, seed=1)
    assert torch.allclose(loaded.decode(z), learn.decode(z), atol=1e-6)
    files = sorted(get_image_files(digits))[:3]
    assert torch.allclose(loaded.encode(files), learn.encode(files), atol=1e-5)
    assert torch.allclose(loaded.encode(files[0].read_bytes()), learn.encode(files[:1]), atol=1e-5)


def test_the_export_holds_the_learners_latent_directions(vae, gan):
    for learn, path in (vae, gan):
        with torch.random.fork_rng():  # the export reads the shuffled training set with the seed 0
            torch.manual_seed(0)
            want = latent_directions(learn, k=N_DIRECTIONS)
        got = load_learner(path).directions
        for name in ("directions", "sigmas", "mean", "explained"):
            assert torch.allclose(getattr(got, name), getattr(want, name), atol=1e-6), name
    assert torch.equal(load_learner(gan[1]).directions.directions, torch.eye(8))  # latent_dim <= 8: raw axes
    pca = load_learner(vae[1]).directions.directions  # 8 PCA directions of 10 dims: orthonormal rows
    assert pca.shape == (8, 10) and torch.allclose(pca @ pca.T, torch.eye(8), atol=1e-5)


def test_predict_takes_a_seed_or_a_latent_vector_and_gives_the_image_its_pixels_and_z(gan):
    loaded = load_learner(gan[1])
    img, pixels, z = loaded.predict(7)
    assert torch.equal(z, loaded.sample_z(1, seed=7)[0])
    assert torch.equal(pixels, loaded.decode(z[None])[0]) and pixels.shape == (1, 16, 16)
    assert img.mode == "L" and img.size == (16, 16)
    assert np.array_equal(np.asarray(img), (pixels[0] * 255).round().byte().numpy())
    img2, pixels2, z2 = loaded.predict(z.tolist())  # a plain list of floats
    assert torch.equal(z2, z) and torch.equal(pixels2, pixels)


def test_a_latent_vector_of_the_wrong_size_is_refused_naming_the_size_expected(gan):
    loaded = load_learner(gan[1])
    for call in (lambda: loaded.predict([0.0] * 5), lambda: loaded.decode(torch.zeros(2, 9))):
        with pytest.raises(ValueError, match=r"latent size is 8: give 8 values"):
            call()


def test_encode_refuses_other_channels_or_sizes_and_says_what_it_takes(vae):
    loaded = load_learner(vae[1])
    with pytest.raises(
        ValueError, match=r"3 channels, but this VAE takes grey images \(1 channel\).*convert\('L'\)"
    ):
        loaded.encode(Image.new("RGB", (16, 16)))
    with pytest.raises(
        ValueError, match=r"20x12 px, but this VAE takes 16x16; .*does not resize.*resize=True"
    ):
        loaded.encode(Image.new("L", (20, 12)))
    with pytest.raises(ValueError, match=r"the tensor is 8x8 px"):
        loaded.encode(torch.rand(2, 1, 8, 8))
    big = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)), "L")
    small = big.resize((16, 16), Image.Resampling.BILINEAR)
    assert torch.allclose(loaded.encode(big, resize=True), loaded.encode(small), atol=1e-6)


def test_a_gan_export_cannot_encode(gan):
    with pytest.raises(TypeError, match="only a VAE export"):
        load_learner(gan[1]).encode(Image.new("L", (16, 16)))


def test_a_loaded_model_exports_again_to_the_same_model(gan, tmp_path):
    loaded = load_learner(gan[1])
    again = load_learner(loaded.export(tmp_path / "again.pkl"))
    z = loaded.sample_z(3, seed=0)
    assert torch.equal(again.decode(z), loaded.decode(z))
    assert torch.equal(again.directions.directions, loaded.directions.directions)


def test_a_generator_without_a_recipe_cannot_be_exported_and_the_error_says_what_to_do(digits, tmp_path):
    learn = tiny_gan(digits)
    learn.model.generator = torch.nn.Sequential(*learn.model.generator)  # the same layers, no recipe
    with pytest.raises(ValueError, match=r"Sequential.*basic_generator.*learn.save"):
        learn.export(tmp_path / "x.pkl")


# ---- ember serve ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(gan):
    with TestClient(create_app(gan[1])) as client:
        yield client


def test_serve_answers_a_seed_or_a_z_with_the_image_as_a_png(gan, served):
    loaded = load_learner(gan[1])
    answer = served.post("/predict", json={"seed": 3}).json()
    png = base64.b64decode(answer["image"].removeprefix("data:image/png;base64,"))
    assert png == png_of(loaded.predict(3)[1])
    assert answer["seed"] == 3 and answer["z"] == pytest.approx(loaded.sample_z(1, seed=3)[0].tolist())
    raw = served.post("/predict?format=png", json={"z": answer["z"]})
    assert raw.headers["content-type"] == "image/png" and raw.content == png


def test_serve_shows_the_sliders_page_with_its_api_beside_the_common_json_api(gan, served):
    page = served.get("/")
    assert page.status_code == 200 and '<script src="static/sliders.js">' in page.text
    n = len(served.get("/directions").json()["labels"])
    png = served.post("/decode", json={"coords": [0.0] * n})
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert served.get("/static/sliders.js").status_code == 200
    assert served.post("/predict", json={"seed": 1}).status_code == 200  # the common API stays


def test_serve_refuses_a_z_of_the_wrong_size_a_bad_seed_and_a_body_without_seed_or_z(served):
    r = served.post("/predict", json={"z": [0.0] * 3})
    assert r.status_code == 400 and "latent size is 8" in r.json()["error"]
    for body in ({"noise": 1}, {"seed": -1}, {"seed": 2**64}, {"seed": 1, "z": [0.0] * 8}):
        r = served.post("/predict", json=body)
        assert r.status_code == 400 and '"seed" (an integer from 0 to 2**64 - 1)' in r.json()["error"]
    r = served.post("/predict", content=b'{"z": [0, 0, 0, 0, 0, 0, 0, Infinity]}',
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "finite numbers" in r.json()["error"]
