"""show_results for each target block, test-time augmentation, and the multi-label threshold sweep."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ember.vision.all import (
    DataBlock,
    ImageBlock,
    ImageDataLoaders,
    MultiCategoryBlock,
    PointBlock,
    RandomSplitter,
    RegressionBlock,
    Resize,
    accuracy_multi,
    aug_transforms,
    get_image_files,
    set_seed,
    sweep_thresholds,
    vision_learner,
)


@pytest.fixture
def files(tmp_path):
    for i in range(16):
        a = np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
        a[..., 0] = 250 if i % 2 else 5
        Image.fromarray(a).save(tmp_path / f"{'Cat' if i % 2 else 'dog'}_{i}.png")
    return get_image_files(tmp_path)


def _learner(files, blocks, get_y, batch_tfms=None, resize="crop", **kwargs):
    dblock = DataBlock(blocks=blocks, get_y=get_y, splitter=RandomSplitter(0.5, seed=0),
                       item_tfms=Resize(16, method=resize), batch_tfms=batch_tfms)  # fmt: skip
    dls = dblock.dataloaders(files, bs=4, num_workers=0)
    return vision_learner(dls, "resnet18", pretrained=False, quiet=True, **kwargs)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


class Constant(torch.nn.Module):
    """A model whose output is `out` for every image, so the predictions are known without training."""

    def __init__(self, out: list[float]):
        super().__init__()
        self.out = torch.tensor(out)

    def forward(self, x):
        return self.out.expand(len(x), -1)  # (bs, n_out)


def _force_head(learn, out: list[float]) -> None:
    learn.model = Constant(out)


def test_show_results_titles_each_image_with_its_target_and_prediction(files):
    learn = _learner(files, (ImageBlock, RegressionBlock), lambda f: float(f.name[0].isupper()))
    _force_head(learn, [0.25])
    targets = learn.dls.valid.one_batch()[1]  # show_results draws the first validation batch
    fig = learn.show_results(max_n=4)
    assert _titles(fig) == [f"{float(t):.3g}\n0.25" for t in targets[:4]]
    assert all(len(ax.get_images()) == 1 for ax in fig.axes if ax.get_title())
    plt.close(fig)


def test_show_results_colours_a_title_green_when_the_prediction_is_right_and_red_otherwise(files):
    dls = ImageDataLoaders.from_name_func(files[0].parent, files, lambda x: x[0].isupper(),
                                          item_tfms=Resize(16), bs=4, num_workers=0, seed=0)  # fmt: skip
    learn = vision_learner(dls, "resnet18", pretrained=False, quiet=True)
    _force_head(learn, [0.0, 5.0])  # always predicts vocab[1], True
    targets = [dls.vocab[int(t)] for t in dls.valid.one_batch()[1]]
    expected = [(f"{t}\nTrue", "green" if t is True else "red") for t in targets]
    assert {c for _, c in expected} == {"green", "red"}  # the batch holds both labels
    fig = learn.show_results(max_n=9)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [(ax.get_title(), ax.title.get_color()) for ax in titled] == expected
    plt.close(fig)


def test_show_results_multi_label_lists_the_labels(files):
    learn = _learner(
        files, (ImageBlock, MultiCategoryBlock), lambda f: ["a", "b"] if f.name[0].isupper() else ["c"]
    )
    _force_head(learn, [5.0, -5.0, 5.0])  # sigmoid > 0.5 for a and c
    vocab, targets = learn.dls.vocab, learn.dls.valid.one_batch()[1]
    expected = [";".join(v for v, on in zip(vocab, row, strict=True) if on) + "\na;c" for row in targets[:2]]
    fig = learn.show_results(max_n=2)
    assert _titles(fig) == expected and len(expected) == 2
    plt.close(fig)


def test_show_results_draws_target_and_predicted_points_side_by_side(files):
    learn = _learner(files, (ImageBlock, PointBlock), lambda f: [[4.0, 5.0], [10.0, 12.0]], y_range=(-1, 1))
    fig = learn.show_results(max_n=3)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["target", "prediction"] * 3
    assert all(len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == 2 for ax in titled)
    plt.close(fig)


def test_tta_mixes_augmented_and_plain_predictions_by_beta(files):
    learn = _learner(files, (ImageBlock, RegressionBlock), lambda f: float(f.name[0].isupper()),
                     batch_tfms=aug_transforms(max_rotate=40, p_affine=1.0))  # fmt: skip
    plain, targs = learn.get_preds()
    set_seed(0)
    aug_only, t2 = learn.tta(n=3, beta=None)
    set_seed(0)
    mixed, _ = learn.tta(n=3, beta=0.25)
    assert torch.equal(t2, targs)
    assert not torch.allclose(aug_only, plain)  # the augmentations did change the inputs
    assert torch.allclose(mixed, 0.75 * aug_only + 0.25 * plain, atol=1e-5)
    assert torch.allclose(learn.tta(n=2, beta=1.0)[0], plain, atol=1e-6)


def test_tta_without_augmentations_equals_plain_predictions(files):
    # squish: the training-time Resize would otherwise crop at random
    learn = _learner(
        files, (ImageBlock, RegressionBlock), lambda f: float(f.name[0].isupper()), resize="squish"
    )
    plain, _ = learn.get_preds()
    assert torch.allclose(learn.tta(n=2, beta=0.0)[0], plain, atol=1e-5)


def test_sweep_thresholds_finds_the_threshold_that_separates_the_labels():
    probs = torch.tensor([[0.9, 0.37], [0.2, 0.4], [0.6, 0.1], [0.28, 0.2]])
    targs = torch.tensor([[1, 1], [0, 1], [1, 0], [0, 0]])
    sweep = sweep_thresholds(probs, targs, start=0.05, end=0.95, n=19)
    assert sweep.best_value == 1.0 and 0.28 <= sweep.best < 0.37
    i = int((sweep.threshs - 0.5).abs().argmin())
    assert sweep.values[i] == accuracy_multi(probs, targs, thresh=0.5, sigmoid=False)
    plt.close(sweep.plot().figure)
    with pytest.raises(ValueError, match="probabilities"):
        sweep_thresholds(probs * 4 - 2, targs)
