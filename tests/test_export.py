"""learn.export / load_learner: a self-contained model file without pickle, and files that are refused."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ember.vision.all import (
    BCEWithLogitsLossFlat,
    DataBlock,
    ExportError,
    ImageBlock,
    ImageDataLoaders,
    Learner,
    MultiCategoryBlock,
    Normalize,
    NotAnExportError,
    PointBlock,
    RandomSplitter,
    Resize,
    aug_transforms,
    get_image_files,
    load_learner,
    read_export_info,
    vision_learner,
)


def _write_images(path, n=24):
    for i in range(n):
        a = np.random.default_rng(i).integers(0, 255, (20, 26, 3), dtype=np.uint8)
        a[..., 0] = 250 if i % 2 else 5
        Image.fromarray(a).save(path / f"{'Cat' if i % 2 else 'dog'}_{i}.png")
    return get_image_files(path)


@pytest.fixture
def trained(tmp_path):
    files = _write_images(tmp_path)
    dls = ImageDataLoaders.from_name_func(
        tmp_path, files, lambda x: x[0].isupper(), item_tfms=Resize(16), batch_tfms=aug_transforms(),
        bs=8, num_workers=0, seed=0,
    )  # fmt: skip
    learn = vision_learner(dls, "resnet18", pretrained=False, quiet=True)
    learn.fit(1, 1e-3)
    return learn, files


def test_an_export_predicts_like_the_learner_in_a_new_process_without_the_label_function(trained, tmp_path):
    learn, files = trained
    path = learn.export(tmp_path / "model.pkl")
    _, _, probs = learn.predict(files[3])
    # a fresh interpreter: no lambda, no training data, and only ember.learner imported by hand
    code = (
        "import sys, json; from ember.learner import load_learner; "
        "l = load_learner(sys.argv[1]); lab, i, p = l.predict(sys.argv[2]); "
        "print(json.dumps([lab, int(i), p.tolist()]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(files[3])], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    label, idx, p = json.loads(out.strip().splitlines()[-1])
    assert idx == int(probs.argmax()) and label == learn.dls.vocab[idx]
    assert torch.allclose(torch.tensor(p), probs, atol=1e-5)


def test_the_file_is_safetensors_with_a_json_description_of_the_pipeline(trained, tmp_path):
    learn, _ = trained
    path = learn.export(tmp_path / "export.pkl")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle's b"\x80"
    info = read_export_info(path)
    assert info["arch"] == "resnet18" and info["vocab"] == [False, True]
    assert info["input_size"] == [16, 16] and info["task"] == "single-label classification"
    loaded = load_learner(path)
    kinds = [type(t).__name__ for t in loaded.dls.dblock.item_tfms + loaded.dls.dblock.batch_tfms]
    assert kinds == ["Resize"]  # the augmentations (training only) are not part of inference


def test_the_models_normalisation_travels_with_the_export(tmp_path):
    files = _write_images(tmp_path, 8)
    dls = ImageDataLoaders.from_name_func(tmp_path, files, lambda x: x[0].isupper(), item_tfms=Resize(16),
                                          bs=4, num_workers=0)  # fmt: skip
    learn = vision_learner(dls, "resnet18", pretrained=False, quiet=True)
    learn.dls.add_batch_tfms([Normalize.from_stats([0.5, 0.4, 0.3], [0.2, 0.2, 0.2])])
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    (norm,) = [t for t in loaded.dls.dblock.batch_tfms if isinstance(t, Normalize)]
    assert torch.allclose(norm.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]))


def test_predict_takes_paths_pil_images_arrays_tensors_and_converts_odd_modes(trained, tmp_path):
    learn, files = trained
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    img = Image.open(files[5])
    ref = loaded.predict(files[5])[2]
    arr = np.asarray(img)
    for item in (img, arr, torch.from_numpy(arr.copy()).permute(2, 0, 1), files[5].read_bytes(),
                 img.convert("RGBA")):  # fmt: skip
        assert torch.allclose(loaded.predict(item)[2], ref, atol=1e-5)
    gray = loaded.predict(img.convert("L").resize((33, 17)))  # grayscale and an odd size
    assert gray[2].shape == (2,) and abs(float(gray[2].sum()) - 1) < 1e-5


def test_batch_prediction_through_test_dl(trained, tmp_path):
    learn, files = trained
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    preds, targs = loaded.get_preds(dl=loaded.dls.test_dl(files[:5]))
    assert preds.shape == (5, 2) and targs is None
    assert torch.allclose(preds[2], loaded.predict(files[2])[2], atol=1e-5)


def test_multi_label_export_predicts_the_labels_over_the_losss_threshold(tmp_path):
    files = _write_images(tmp_path, 16)
    labels = {f.name: (["red", "cat"] if f.name[0].isupper() else ["dark"]) for f in files}
    dblock = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_y=lambda f: labels[f.name],
                       splitter=RandomSplitter(seed=0), item_tfms=Resize(16))  # fmt: skip
    dls = dblock.dataloaders(files, bs=4, num_workers=0)
    learn = vision_learner(dls, "resnet18", pretrained=False, quiet=True,
                           loss_func=BCEWithLogitsLossFlat(thresh=0.3))  # fmt: skip
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    assert loaded.loss_func.thresh == 0.3
    labs, mask, probs = loaded.predict(files[0])
    assert labs == [v for v, m in zip(loaded.dls.vocab, mask) if m]
    assert torch.equal(mask, probs > 0.3)


def test_point_regression_export_keeps_y_range(tmp_path):
    files = _write_images(tmp_path, 8)
    dblock = DataBlock(blocks=(ImageBlock, PointBlock), get_y=lambda f: [[3.0, 4.0]], item_tfms=Resize(16),
                       splitter=RandomSplitter(seed=0))  # fmt: skip
    learn = vision_learner(dblock.dataloaders(files, bs=4, num_workers=0), "resnet18", pretrained=False,
                           y_range=(-1, 1), quiet=True)  # fmt: skip
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    pts, _, raw = loaded.predict(files[0])
    assert pts.shape == (1, 2) and raw.abs().max() <= 1
    assert type(loaded.model[1][-1]).__name__ == "SigmoidRange"


def test_a_learner_that_cannot_be_described_is_refused_and_an_older_export_survives(trained, tmp_path):
    learn, _ = trained
    path = learn.export(tmp_path / "e.pkl")
    before = path.read_bytes()
    plain = Learner(learn.dls, learn.model, quiet=True)  # no recipe for the model
    with pytest.raises(ExportError, match="rebuild this model"):
        plain.export(path)
    learn.loss_func = lambda p, t: (p - t).abs().mean()
    with pytest.raises(ExportError, match="cannot be described"):
        learn.export(path)
    assert path.read_bytes() == before


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/ember-pickle-ran", "w"))


@pytest.mark.parametrize("kind", ["pickle", "zip", "random", "empty", "truncated", "checkpoint", "foreign"])
def test_files_that_are_not_ember_exports_are_refused_without_running_code(kind, trained, tmp_path):
    learn, _ = trained
    bad = tmp_path / "bad.pkl"
    if kind == "pickle":
        bad.write_bytes(pickle.dumps(_Boom()))
    elif kind == "zip":
        torch.save({"w": torch.zeros(2)}, bad)
    elif kind == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        data = learn.export(tmp_path / "good.pkl").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "checkpoint":
        learn.path = tmp_path
        bad = learn.save("ckpt")
    else:
        save_file({"w": torch.zeros(2)}, str(bad), metadata={"format": "something else"})
    with pytest.raises(NotAnExportError, match="not an ember export"):
        load_learner(bad)
    assert not (tmp_path / "ember-pickle-ran").exists()


def test_a_description_naming_an_unregistered_type_is_refused(trained, tmp_path):
    learn, _ = trained
    from ember.learner.export import describe

    cfg = describe(learn)
    cfg["loss_func"] = {"type": "system", "command": "touch /tmp/x"}
    tensors = {k: v.contiguous() for k, v in learn.model.state_dict().items()}
    save_file(tensors, str(tmp_path / "e.pkl"), metadata={"format": "ember.export", "version": "1",
                                                          "config": json.dumps(cfg)})  # fmt: skip
    with pytest.raises(NotAnExportError, match="not registered"):
        load_learner(tmp_path / "e.pkl")


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pkl"):
        load_learner(tmp_path / "nothing.pkl")
