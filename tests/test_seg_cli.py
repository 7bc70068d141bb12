"""`ember train --task segment` and `ember predict` on segmentation and image-to-image exports, and the mask
files they write (`save_mask`, `overlay_mask`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ember.cli import app
from ember.learner.export import load_learner
from ember.vision.core import PILMask
from ember.vision.files import segment_file
from ember.vision.mask_io import mask_colours, overlay_mask, save_mask

runner = CliRunner()
CODES = ["background", "square"]
TINY = ["--no-pretrained", "--arch", "resnet18", "--size", "32", "--bs", "4", "--seed", "0"]


def _write_pair(root: Path, name: str, size: tuple[int, int], seed: int) -> None:
    """An image (w, h) of dark noise with a bright square, and its mask: the square is class 1."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
    mask[top : top + h // 3, left : left + w // 3] = 1
    img[mask == 1] = 220
    Image.fromarray(img).save(root / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / "labels" / f"{name}.png")


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    """8 images 32x32 with a square each, in images/, their masks in labels/, and codes.txt."""
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(8):
        _write_pair(root, f"sq_{i}", (32, 32), i)
    (root / "codes.txt").write_text("\n".join(CODES) + "\n")
    return root


@pytest.fixture(scope="module")
def seg_model(seg_data, tmp_path_factory) -> Path:
    """The export `ember train --task segment` writes after one epoch from random weights."""
    out = tmp_path_factory.mktemp("seg_out")
    args = ["train", str(seg_data), "--task", "segment", *TINY, "--epochs", "1", "--lr", "1e-3"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "foreground acc" in result.stdout and "dice multi" in result.stdout
    return out / "export.pkl"


# ---- save_mask and overlay_mask ----------------------------------------------------------------------
def test_save_mask_writes_class_indices_that_read_back_as_a_label_and_a_palette_of_the_class_colours(
    tmp_path,
):
    mask = torch.tensor([[0, 1, 2], [2, 1, 0]])
    path = save_mask(mask, tmp_path / "m.png", ["a", "b", "c"])
    png = Image.open(path)
    assert png.mode == "P" and np.asarray(png).tolist() == mask.tolist()
    assert np.asarray(PILMask.create(path)).tolist() == mask.tolist()  # as MaskBlock reads a label
    palette = np.array(png.getpalette()[:9]).reshape(3, 3)
    assert (palette == mask_colours(3)).all()
    assert palette[0].tolist() == [31, 119, 180] and palette[2].tolist() == [255, 127, 14]  # tab20's 0 and 2


def test_save_mask_refuses_a_value_that_is_no_code(tmp_path):
    with pytest.raises(ValueError, match="the value 2 but there are 2 codes"):
        save_mask(np.array([[0, 2]]), tmp_path / "m.png", CODES)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_overlay_blends_each_class_colour_at_alpha_and_leaves_the_background_clear():
    img = Image.new("RGB", (2, 1), (100, 50, 0))
    out = overlay_mask(img, np.array([[0, 1]]), CODES, alpha=0.25)
    c = mask_colours(2)[1]
    assert out.getpixel((0, 0)) == (100, 50, 0)
    assert out.getpixel((1, 0)) == tuple(int(round(0.75 * a + 0.25 * b)) for a, b in zip((100, 50, 0), c))
    tinted = overlay_mask(img, np.array([[0, 1]]), CODES, alpha=0.25, bkg_idx=None)
    assert tinted.getpixel((0, 0)) != (100, 50, 0)


def test_segment_file_stretches_the_models_mask_to_the_images_own_size_with_nearest_neighbour(tmp_path):
    Image.new("RGB", (40, 24), (10, 10, 10)).save(tmp_path / "wide.png")
    pred = torch.zeros(8, 8, dtype=torch.long)
    pred[:, :4] = 1  # the left half
    learn = SimpleNamespace(predict=lambda f: (pred, pred, None), dls=SimpleNamespace(vocab=CODES))
    done = segment_file(learn, tmp_path / "wide.png", tmp_path / "m.png", tmp_path / "o.png")
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    assert mask.shape == (24, 40) and (mask[:, :20] == 1).all() and (mask[:, 20:] == 0).all()
    assert done.shares == {"background": 0.5, "square": 0.5}
    assert Image.open(tmp_path / "o.png").size == (40, 24)


# ---- ember predict on a segmentation model -----------------------------------------------------------
def test_predict_writes_a_mask_and_an_overlay_of_each_inputs_own_size(seg_model, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    _write_pair(tmp_path, "wide", (48, 40), 1)  # not the model's 32x32
    img = tmp_path / "images" / "wide.png"
    result = runner.invoke(app, ["predict", str(seg_model), str(img)])
    assert result.exit_code == 0, result.output
    mask_file, overlay_file = tmp_path / "images" / "wide.mask.png", tmp_path / "images" / "wide.overlay.png"
    mask = Image.open(mask_file)
    assert mask.mode == "P" and mask.size == (48, 40)
    assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1}
    assert Image.open(overlay_file).size == (48, 40) and Image.open(overlay_file).mode == "RGB"
    header, _, row = result.stdout.strip().splitlines()
    assert header.split() == ["file", "mask", "overlay", *CODES]
    assert row.split()[:3] == [str(img), str(mask_file), str(overlay_file)]
    shares = [float(v) for v in row.split()[3:]]
    assert shares == pytest.approx([float((np.asarray(mask) == c).mean()) for c in (0, 1)], abs=1e-4)


def test_predict_json_names_the_files_and_the_share_of_each_class(seg_model, seg_data, tmp_path):
    img = seg_data / "images" / "sq_0.png"
    result = runner.invoke(app, ["predict", str(seg_model), str(img), "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["mask"] == str(tmp_path / "sq_0.mask.png") and row["overlay"] == str(
        tmp_path / "sq_0.overlay.png"
    )
    assert list(row["shares"]) == CODES and sum(row["shares"].values()) == pytest.approx(1.0, abs=1e-5)
    assert not (seg_data / "images" / "sq_0.mask.png").exists()  # --out: nothing next to the input


def test_predict_reports_a_file_that_is_not_an_image_and_still_segments_the_others(
    seg_model, seg_data, tmp_path
):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    good = seg_data / "images" / "sq_1.png"
    result = runner.invoke(app, ["predict", str(seg_model), str(bad), str(good), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.count("error: ") == 1 and "notes.png" in result.stderr
    assert (tmp_path / "sq_1.mask.png").is_file() and not (tmp_path / "notes.mask.png").exists()
    assert str(good) in result.stdout and str(bad) not in result.stdout


def test_predict_never_overwrites_an_input_file(seg_model, seg_data, tmp_path):
    img, other = tmp_path / "a.png", tmp_path / "a.mask.png"
    img.write_bytes((seg_data / "images" / "sq_2.png").read_bytes())
    other.write_bytes((seg_data / "images" / "sq_3.png").read_bytes())
    before = other.read_bytes()
    result = runner.invoke(app, ["predict", str(seg_model), str(img), str(other)])
    assert result.exit_code == 1
    assert "is one of the input files" in result.stderr and str(img) in result.stderr
    assert other.read_bytes() == before
    assert (tmp_path / "a.mask.mask.png").is_file()  # the other input was still segmented


def test_predict_refuses_top_on_a_segmentation_model(seg_model, seg_data):
    result = runner.invoke(
        app, ["predict", str(seg_model), str(seg_data / "images" / "sq_0.png"), "--top", "2"]
    )
    assert result.exit_code == 2 and "--top is for classifiers" in result.stderr


# ---- ember train --task segment ----------------------------------------------------------------------
def test_train_segment_writes_an_export_of_the_codes_that_predict_uses(seg_model, seg_data):
    learn = load_learner(seg_model)
    assert learn.export_info["task"] == "segmentation" and learn.export_info["vocab"] == CODES
    assert learn.export_info["input_size"] == [32, 32]
    assert (seg_model.parent / "report.html").is_file()


def _seg_folder(tmp_path: Path, n: int = 4) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(n):
        _write_pair(tmp_path, f"x_{i}", (32, 32), i)
    (tmp_path / "codes.txt").write_text("background\nsquare\n")
    return tmp_path


def _train_error(path: Path) -> str:
    result = runner.invoke(app, ["train", str(path), "--task", "segment", *TINY, "--out", str(path / "out")])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def test_train_segment_without_a_labels_folder_says_what_the_folder_needs(tmp_path):
    root = _seg_folder(tmp_path)
    for f in (root / "labels").iterdir():
        f.unlink()
    (root / "labels").rmdir()
    line = _train_error(root)
    assert "no labels/ folder" in line and "codes.txt" in line


def test_train_segment_names_an_image_without_a_mask(tmp_path):
    root = _seg_folder(tmp_path)
    (root / "labels" / "x_2.png").unlink()
    line = _train_error(root)
    assert "no mask for 1 of 4 images" in line and "images/x_2.png" in line


def test_train_segment_finds_camvid_style_masks_and_refuses_a_missing_codes_file(tmp_path):
    from ember.vision.train import label_files

    root = _seg_folder(tmp_path)
    (root / "labels" / "x_0.png").rename(root / "labels" / "x_0_P.png")
    assert label_files(root)[root / "images" / "x_0.png"] == root / "labels" / "x_0_P.png"
    (root / "codes.txt").unlink()
    line = _train_error(root)
    assert "codes.txt: no such file" in line and "one a line" in line


# ---- ember predict on an image-to-image model --------------------------------------------------------
def test_predict_writes_the_image_an_image_to_image_model_predicts(seg_data, tmp_path):
    from ember.data.block import DataBlock
    from ember.data.splitters import RandomSplitter
    from ember.vision.augment import Resize
    from ember.vision.blocks import ImageBlock
    from ember.vision.unet_learner import unet_learner

    def images(p: Path) -> list[Path]:
        return sorted((p / "images").glob("sq_*.png"))

    split = RandomSplitter(0.25, seed=0)
    dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=images, splitter=split,
                       item_tfms=Resize(32, method="squish"))  # fmt: skip
    learn = unet_learner(dblock.dataloaders(seg_data, bs=4, num_workers=0), "resnet18", pretrained=False,
                         quiet=True, config=dict(y_range=(0, 1)))  # fmt: skip
    model = learn.export(tmp_path / "i2i.pkl")
    img = seg_data / "images" / "sq_4.png"
    result = runner.invoke(app, ["predict", str(model), str(img), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    pred = Image.open(tmp_path / "sq_4.pred.png")
    assert row["prediction"] == str(tmp_path / "sq_4.pred.png") and row["size"] == [32, 32]
    assert pred.mode == "RGB" and pred.size == (32, 32)
    _, t, _ = load_learner(model).predict(img)  # the file holds the model's prediction, 8 bits a channel
    assert np.abs(np.asarray(pred).transpose(2, 0, 1) / 255 - t.numpy()).max() <= 1 / 255 + 1e-6
