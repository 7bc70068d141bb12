"""The built-in segmentation data sets (written from nilearn's and stardist's files) and the errors and
drawing of masks: values outside the codes, a mask of another size than its image, the legend."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import ember.vision  # noqa: F401  registers brain_mri and nuclei
from ember.data.builtin import builtin_data, register_builtin
from ember.data.errors import DataError
from ember.data.external import URLs, untar_data
from ember.vision.all import (
    FuncSplitter,
    MaskBlock,
    SegmentationDataLoaders,
    get_image_files,
)
from ember.vision.datasets import BRAIN_CODES, NUCLEI_CODES, brain_classes


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    return builtin_data("brain_mri", data=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    return untar_data(URLs.NUCLEI, data=tmp_path_factory.mktemp("data"))


def _pairs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (np.asarray(Image.open(f)), np.asarray(Image.open(path / "labels" / f.name)))
        for f in sorted((path / "images").glob("*.png"))
    ]


def test_brain_mri_is_hundreds_of_upright_slices_in_three_planes_with_four_classes(brain):
    assert (brain / "codes.txt").read_text().split() == list(BRAIN_CODES)
    images = sorted(p.name for p in (brain / "images").iterdir())
    assert images == sorted(p.name for p in (brain / "labels").iterdir())
    assert 200 <= len(images) <= 400
    assert {n.split("_")[0] for n in images} == {"axial", "coronal", "sagittal"}
    seen = set()
    for img, mask in _pairs(brain)[::10]:
        assert img.shape == mask.shape == (240, 240) and img.dtype == mask.dtype == np.uint8
        assert (
            set(np.unique(mask)) <= {0, 1, 2, 3} and (mask >= 2).sum() >= 0.05 * 197 * 189
        )  # no near-empty slice
        assert (img[mask == 0] == 0).all() and (img[mask > 0] > 0).all()  # the template is skull-stripped
        seen |= set(np.unique(mask).tolist())
    assert seen == {0, 1, 2, 3}


def test_brain_classes_follow_the_larger_probability_over_one_half():
    t1, gm, wm = (
        np.array([0, 90, 90, 90, 90]),
        np.array([0, 100, 200, 60, 128]),
        np.array([0, 100, 50, 200, 128]),
    )
    assert brain_classes(t1, gm, wm).tolist() == [0, 1, 2, 3, 2]  # a tie over one half is grey matter


def test_nuclei_are_seeded_crops_split_into_disjoint_train_and_valid_regions(nuclei, tmp_path):
    assert (nuclei / "codes.txt").read_text().split() == list(NUCLEI_CODES)
    names = sorted(p.name for p in (nuclei / "images").iterdir())
    assert (
        sum(n.startswith("train_") for n in names) == 200 and sum(n.startswith("valid_") for n in names) == 40
    )
    for img, mask in _pairs(nuclei)[::8]:
        assert img.shape == mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 1}
    masks = np.stack([m for _, m in _pairs(nuclei)])
    assert 0.1 < masks.mean() < 0.6  # nuclei cover a real share of the crops
    # the split the docstring gives: FuncSplitter on the name
    train, valid = FuncSplitter(lambda o: Path(o).name.startswith("valid"))(
        get_image_files(nuclei / "images")
    )
    assert len(train) == 200 and len(valid) == 40
    again = builtin_data("nuclei", data=tmp_path)  # seeded: another folder gets the same crops
    assert all(
        (np.asarray(Image.open(again / "labels" / n)) == m).all() for n, m in [("valid_007.png", masks[207])]
    )


def test_a_second_call_returns_the_folder_without_writing_again(nuclei):
    stamp = (nuclei / "images" / "train_000.png").stat().st_mtime_ns
    t = time.perf_counter()
    assert builtin_data("nuclei", data=nuclei.parent) == nuclei
    assert time.perf_counter() - t < 0.1
    assert (nuclei / "images" / "train_000.png").stat().st_mtime_ns == stamp


def test_a_missing_package_names_the_exact_install_line(tmp_path):
    register_builtin(
        "needs_nothing_real", lambda out: None, needs={"no_such_pkg_xyz": "pip install xyz==1.0"}
    )
    with pytest.raises(ImportError, match=r"no_such_pkg_xyz.*`pip install xyz==1\.0`"):
        builtin_data("needs_nothing_real", data=tmp_path)
    assert not (tmp_path / "needs_nothing_real").exists()


def _seg_files(tmp_path, mask_value=1, mask_size=(16, 12)):
    (tmp_path / "labels").mkdir()
    for i in range(4):
        Image.fromarray(np.full((12, 16), 100, np.uint8)).save(tmp_path / f"{i}.png")
        mask = np.zeros(mask_size[::-1], np.uint8)
        mask[:4] = mask_value if i == 2 else 1
        Image.fromarray(mask).save(tmp_path / "labels" / f"{i}.png")
    return sorted(tmp_path.glob("*.png"))


def _dls(tmp_path, fnames, codes):
    return SegmentationDataLoaders.from_label_func(
        tmp_path, fnames, lambda o: o.parent / "labels" / o.name, codes=codes, bs=2, num_workers=0, seed=0
    )


def test_a_mask_value_outside_the_codes_names_the_file_the_values_and_the_number_of_codes(tmp_path):
    fnames = _seg_files(tmp_path, mask_value=7)
    with pytest.raises(DataError) as e:
        dls = _dls(tmp_path, fnames, codes=["a", "b", "c", "d"])
        for split in (dls.train_ds, dls.valid_ds):
            for i in range(len(split)):
                split[i]
    msg = str(e.value)
    assert "2.png" in msg and "[7]" in msg and "4 codes" in msg and "0..3" in msg


def test_a_mask_within_the_codes_reads_as_it_is():
    mask = MaskBlock(["a", "b"]).type_tfms[0](np.array([[0, 1], [1, 0]], np.uint8))
    assert np.asarray(mask).tolist() == [[0, 1], [1, 0]]


def test_a_mask_of_another_size_than_its_image_names_both_files_and_sizes(tmp_path):
    fnames = _seg_files(tmp_path, mask_size=(16, 10))
    with pytest.raises(DataError) as e:
        _dls(tmp_path, fnames, codes=["a", "b"])
    msg = str(e.value)
    assert "16x12" in msg and "16x10" in msg and str(tmp_path / "labels") in msg


def test_a_shown_mask_is_overlaid_with_a_legend_of_the_codes_it_holds():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((8, 8)), cmap="gray")
    MaskBlock(BRAIN_CODES).show(np.array([[0, 2], [2, 0]], np.uint8).repeat(4, 0).repeat(4, 1), ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["background", "grey_matter"]
    assert len(ax.get_images()) == 2  # the image, then the mask over it
    plt.close(fig)
