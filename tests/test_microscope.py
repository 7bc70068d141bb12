"""The microscope page: its dataset images are the top activations over the validation set, it stands
alone (inline images, no requests), and in Chromium it loads cleanly and switches layers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from browser import broken_images, open_page, pixel_std
from PIL import Image
from torch import nn

from ember.basics import Learner
from ember.vision.all import ImageDataLoaders, Normalize
from ember.vision.inside import default_layers, microscope_page, top_images
from ember.vision.inside.features import layer_outputs


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    """16 px RGB noise, bright or dark, 7 of each in valid/ (two batches of 8 with a partial one), and
    a random two-conv CNN."""
    path = tmp_path_factory.mktemp("images")
    for split in ("train", "valid"):
        for label, base in (("bright", 170), ("dark", 0)):
            (path / split / label).mkdir(parents=True)
            for i in range(7):
                a = np.random.default_rng(i + 10 * len(split) + base).integers(0, 80, (16, 16, 3)) + base
                Image.fromarray(a.astype(np.uint8)).save(path / split / label / f"{i}.png")
    norm = Normalize.from_stats([0.5, 0.4, 0.3], [0.2, 0.3, 0.25])
    dls = ImageDataLoaders.from_folder(path, bs=8, num_workers=0, device="cpu", batch_tfms=norm)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))  # fmt: skip
    return Learner(dls, model, quiet=True)


@pytest.fixture(scope="module")
def page(learn, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "microscope.html"
    return microscope_page(learn, out, n_channels=3, n_images=4, steps=4)


def test_the_top_images_are_the_highest_mean_activations_over_the_validation_set(learn):
    xbs = [b[0] for b in learn.dls.valid]
    acts = torch.cat([layer_outputs(learn, (xb,), ["2"])[0] for xb in xbs])  # (14, 5, 8, 8)
    expected = acts.mean((2, 3)).T.topk(4, dim=1)  # (channels, 4)
    top = top_images(learn, ["2"], n_channels=5, k=4, dl=learn.dls.valid)[0]
    assert top.n_channels == 5 and top.values.shape == (5, 4)
    assert torch.allclose(top.values, expected.values, atol=1e-5)
    inputs = torch.cat(xbs)
    norm = learn.dls.valid.batch_tfms[0].tfms[-1]
    pixels = ((inputs * norm.std + norm.mean) * 255).round()  # (14, 3, 16, 16) back to 0..255
    assert torch.allclose(top.images[2, 0].float(), pixels[expected.indices[2, 0]], atol=1)
    labels = ["bright"] * 7 + ["dark"] * 7  # the validation items in order
    assert top.labels[2] == [labels[i] for i in expected.indices[2].tolist()]


def test_the_default_layers_are_the_convs_spread_from_first_to_last():
    model = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(11)])
    assert default_layers(model, max_layers=6) == ["0", "2", "4", "6", "8", "10"]
    assert default_layers(model, max_layers=20) == [str(i) for i in range(11)]


def test_the_page_stands_alone_with_a_picture_per_channel_and_its_top_images(page):
    text = page.read_text()
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 2 * 3 * (1 + 4)  # 2 conv layers, 3 channels, the drawn image and 4 dataset images
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"https?://", text.replace("http://www.w3.org", ""))
    assert "bright, mean activation" in text or "dark, mean activation" in text
    assert [p.name for p in page.parent.iterdir()] == ["microscope.html"]  # written atomically: no leftovers


def test_a_learner_without_data_gets_a_page_of_drawn_images_alone(learn, tmp_path):
    path = microscope_page(learn, tmp_path / "m.html", layers=[1], n_channels=2, n_images=4, steps=2, dl=[])
    text = path.read_text()
    assert text.count("<img") == 2 and "No dataset images" in text and "channels 0 to 1 of 5" in text


def test_the_page_loads_cleanly_and_a_layer_button_shows_that_layers_channels(page, browser, tmp_path):
    loaded = open_page(browser, page.as_uri())
    p = loaded.page
    assert loaded.errors == [] and broken_images(p) == []
    assert [u for u in loaded.requests if not u.startswith("data:")] == [page.as_uri()]
    shown = "Array.from(document.querySelectorAll('section.layer:not([hidden])')).map(s => s.dataset.name)"
    assert p.evaluate(shown) == ["0"]
    p.click("nav button[data-layer='layer-1']")
    assert p.evaluate(shown) == ["2"]
    assert p.locator("#layer-1 figure.channel").count() == 3 and p.locator("#layer-1 img.ex").count() == 12
    assert p.get_attribute("nav button[data-layer='layer-1']", "aria-pressed") == "true"
    png = p.screenshot(full_page=True)
    (tmp_path / "microscope.png").write_bytes(png)  # to look at
    assert pixel_std(png) > 10
    again = open_page(browser, page.as_uri() + "#layer-1")  # the address keeps the layer
    assert again.page.evaluate(shown) == ["2"] and again.errors == []


def test_a_classification_interpretation_writes_the_page_over_its_own_split(learn, tmp_path):
    from ember.learner.interpret import ClassificationInterpretation

    interp = ClassificationInterpretation.from_learner(learn)
    path = interp.microscope(tmp_path / "m.html", layers=[1], n_channels=2, n_images=3, steps=2)
    text = path.read_text()
    assert text.count("<img") == 2 * (1 + 3)  # the drawn image and the split's 3 top items, per channel


def test_a_learner_of_an_application_without_a_page_is_told_where_pages_exist(tmp_path):
    from ember.basics import DataLoaders
    from ember.learner.interpret import ClassificationInterpretation

    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    dls = DataLoaders.from_dsets(torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y))
    learn = Learner(dls, nn.Linear(4, 2), loss_func=nn.CrossEntropyLoss(), quiet=True)
    interp = ClassificationInterpretation.from_learner(learn)
    with pytest.raises(TypeError, match="have no microscope page"):
        interp.microscope(tmp_path / "m.html")
