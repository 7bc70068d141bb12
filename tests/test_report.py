"""learn.report(): the sections it writes for each kind of learner, the epoch history across fits, the
atomic write, and the page as a real browser renders it."""

from __future__ import annotations

import re
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from browser import broken_images, open_page, pixel_std
from conftest import blobs_dls, linear_dls, mlp
from PIL import Image
from torch.utils.data import TensorDataset

from ember.basics import BCEWithLogitsLossFlat, CrossEntropyLossFlat, DataLoaders, Learner, MSELossFlat
from ember.learner.interpret import ClassificationInterpretation
from ember.vision.all import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner

CLASSIFIER_SECTIONS = ("confusion", "top-losses", "uncertain")


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


@pytest.fixture(scope="module")
def image_learner(tmp_path_factory):
    """A resnet18 from scratch on 40 tiny bright or dark images, lr_find run, then fine_tune(1)."""
    path = tmp_path_factory.mktemp("images")
    for i in range(40):
        a = np.random.default_rng(i).integers(0, 60, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(a + (180 if i % 2 else 0)).save(path / f"{'Bright' if i % 2 else 'dark'}_{i}.png")
    dls = ImageDataLoaders.from_name_func(path, get_image_files(path), lambda x: x[0].isupper(),
                                          item_tfms=Resize(32), bs=8, num_workers=0, seed=0)  # fmt: skip
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, quiet=True)
    learn.lr_find(num_it=20, show_plot=False)
    learn.fine_tune(1)
    return learn


@pytest.fixture(scope="module")
def image_report(image_learner, tmp_path_factory):
    return image_learner.report(tmp_path_factory.mktemp("report") / "report.html")


# ---- the page in a browser --------------------------------------------------------------------------
def test_the_report_renders_every_image_in_chromium_without_errors(image_report, browser):
    loaded = open_page(browser, image_report.as_uri())
    assert loaded.errors == []
    n_images = loaded.page.evaluate("document.images.length")
    assert n_images == 6  # a batch, lr_find, curves, confusion matrix, top losses, most uncertain
    assert broken_images(loaded.page) == []
    assert pixel_std(loaded.page.screenshot(full_page=True)) > 10  # not a blank page
    assert [u for u in loaded.requests if not u.startswith("data:")] == [image_report.as_uri()]


def test_the_report_fits_a_narrow_screen_without_sideways_scrolling(image_report, browser):
    loaded = open_page(browser, image_report.as_uri(), width=360)
    assert loaded.page.evaluate("document.documentElement.scrollWidth") <= 360
    widths = loaded.page.evaluate("Array.from(document.images).map(i => i.getBoundingClientRect().width)")
    assert max(widths) <= 360


# ---- what the page says ------------------------------------------------------------------------------
def test_a_classifier_report_has_data_lr_find_training_and_interpretation(image_learner, image_report):
    page = image_report.read_text()
    assert section_ids(page) == ["summary", "data", "lr-find", "training", *CLASSIFIER_SECTIONS]
    assert "CategoryBlock" in page and "ImageBlock" in page and "False, True" in page  # blocks, vocab
    assert f"{image_learner.lr_find_result.suggestions.valley:.2e}" in page
    training = page.split('<section id="training">')[1].split("</section>")[0]
    assert training.count("<tr>") == 1 + 2  # header + fine_tune's frozen and unfrozen epochs
    assert not re.search(r'(src|href)="(http|//)', page)  # nothing to fetch: the file stands alone


def test_a_report_without_lr_find_or_classes_leaves_those_sections_out(tmp_path):
    learn = Learner(linear_dls(n=128), torch.nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.fit(2, lr=0.1)
    page = learn.report(tmp_path / "regression.html").read_text()
    assert section_ids(page) == ["summary", "data", "training"]
    assert "<td>training items</td><td>102</td>" in page and "<td>validation items</td><td>26</td>" in page


def test_a_multi_label_report_has_no_confusion_matrix(tmp_path):
    x, y = torch.randn(64, 4), (torch.rand(64, 3) > 0.5).float()
    dls = DataLoaders.from_dsets(
        TensorDataset(x[:48], y[:48]), TensorDataset(x[48:], y[48:]), bs=16, device="cpu"
    )
    learn = Learner(dls, torch.nn.Linear(4, 3), BCEWithLogitsLossFlat(), quiet=True)
    learn.fit(1)
    assert section_ids(learn.report(tmp_path / "r.html").read_text()) == ["summary", "data", "training"]


def test_a_classifier_on_plain_dataloaders_lists_its_worst_items_in_tables(tmp_path):
    learn = Learner(blobs_dls(n=200), mlp(), CrossEntropyLossFlat(), quiet=True)
    learn.fit(1)
    page = learn.report(tmp_path / "blobs.html").read_text()
    assert section_ids(page) == ["summary", "data", "training", *CLASSIFIER_SECTIONS]
    top = page.split('<section id="top-losses">')[1].split("</section>")[0]
    assert "<img" not in top and top.count("<tr>") == 1 + 9  # no block to draw inputs with: a table


def test_an_untrained_learner_gets_a_report_that_says_so(tmp_path):
    learn = Learner(linear_dls(n=64), torch.nn.Linear(1, 1), MSELossFlat(), quiet=True)
    page = learn.report(tmp_path / "r.html").read_text()
    assert "No epoch trained yet" in page and "training" not in section_ids(page)


def test_report_is_written_under_the_learners_path_by_default(tmp_path):
    learn = Learner(linear_dls(n=64), torch.nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    assert learn.report() == tmp_path / "report.html" and (tmp_path / "report.html").exists()


# ---- atomic writes and closed figures ----------------------------------------------------------------
def test_a_failing_plot_leaves_the_previous_report_untouched_and_no_figure_open(tmp_path, monkeypatch):
    learn = Learner(blobs_dls(n=200), mlp(), CrossEntropyLossFlat(), quiet=True)
    learn.fit(1)
    path = tmp_path / "report.html"
    path.write_text("the previous report")
    figures_before = plt.get_fignums()

    def broken(*args, **kwargs):
        plt.subplots()  # a figure opened before the failure, as a real plot would
        raise RuntimeError("the plot broke")

    monkeypatch.setattr(ClassificationInterpretation, "plot_confusion_matrix", broken)
    with pytest.raises(RuntimeError, match="the plot broke"):
        learn.report(path)
    assert path.read_text() == "the previous report"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert plt.get_fignums() == figures_before


def test_a_successful_report_closes_every_figure_it_drew(image_learner, tmp_path):
    before = plt.get_fignums()
    image_learner.report(tmp_path / "r.html")
    assert plt.get_fignums() == before


def test_the_report_and_the_core_import_no_application():
    apps = ("ember.vision", "ember.collab")
    imports = "import sys, ember.basics, ember.learner.report"
    code = f"{imports}; print([m for m in sys.modules if m.startswith({apps})])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- what the report reads: the epoch history and the last lr_find -----------------------------------
def test_the_history_spans_every_fit_and_leaves_lr_find_out(image_learner):
    history = image_learner.recorder.history
    assert [(h["fit"], h["epoch"], h["frozen"]) for h in history] == [(1, 0, True), (2, 0, False)]
    assert set(history[0]) == {
        "fit",
        "epoch",
        "train_loss",
        "valid_loss",
        "error_rate",
        "time",
        "lr",
        "frozen",
    }
    assert history[-1]["valid_loss"] == image_learner.recorder.values[-1][1]  # the last fit's table agrees


def test_the_history_survives_a_second_fit_while_the_per_fit_values_reset():
    learn = Learner(blobs_dls(n=200), mlp(), CrossEntropyLossFlat(), quiet=True)
    learn.fit(2)
    learn.lr_find(num_it=10, show_plot=False)
    learn.fit(1)
    assert len(learn.recorder.values) == 1
    assert [h["fit"] for h in learn.recorder.history] == [1, 1, 2]
    assert [h["epoch"] for h in learn.recorder.history] == [0, 1, 0]


def test_the_last_lr_find_outlives_the_fits_after_it():
    learn = Learner(blobs_dls(n=400), mlp(), CrossEntropyLossFlat(), quiet=True)
    assert learn.lr_find_result is None
    suggestions = learn.lr_find(num_it=20, show_plot=False)
    lrs = list(learn.recorder.lrs)
    learn.fit(1)
    res = learn.lr_find_result
    assert res.lrs == lrs and len(res.losses) == len(lrs) and res.suggestions == suggestions
    assert learn.recorder.lrs != lrs  # the Recorder itself has moved on to the fit


def test_plot_metrics_draws_losses_and_each_metric_across_fits(image_learner):
    fig = image_learner.recorder.plot_metrics()
    loss_ax, metric_ax = fig.axes
    assert [len(line.get_xdata()) for line in loss_ax.lines[:2]] == [2, 2]
    assert metric_ax.get_ylabel() == "error_rate"
    plt.close(fig)
