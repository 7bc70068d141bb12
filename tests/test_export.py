"""learn.export / load_learner: a self-contained model file without pickle, and files that are refused."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from ember.cli import app
from ember.core import serial
from ember.core.serial import register_config_type, registered_type
from ember.vision.all import (
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
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
    accuracy,
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
    """Unpickling this creates the file `marker`: the test sees whether any loader unpickled the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_foreign(kind: str, bad: Path, marker: Path, learn: Learner) -> Path:
    """A file of `kind` at `bad` that is not an ember export; the payloads create `marker` if unpickled."""
    if kind.startswith("pickle-protocol-"):  # protocols 2..5 start with 0x80, 4 and 5 add FRAME opcodes
        bad.write_bytes(pickle.dumps(_Boom(marker), protocol=int(kind[-1])))
    elif kind == "pickle-global-os-system":  # protocol 0: GLOBAL 'os system', no 0x80 at the start
        bad.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    elif kind == "torch-save-with-reduce":  # a zip whose data.pkl runs the payload under torch.load
        torch.save({"w": torch.zeros(2), "boom": _Boom(marker)}, bad)
        assert zipfile.is_zipfile(bad)
    elif kind == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        data = learn.export(bad.parent / "good.pkl").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "checkpoint":
        learn.path = bad.parent
        bad = learn.save("ckpt")
    else:
        save_file({"w": torch.zeros(2)}, str(bad), metadata={"format": "something else"})
    return bad


FOREIGN = [
    *(f"pickle-protocol-{p}" for p in range(2, 6)),
    "pickle-global-os-system",
    "torch-save-with-reduce",
    "random",
    "empty",
    "truncated",
    "checkpoint",
    "foreign",
]


def test_the_pickle_payloads_do_run_when_unpickled(tmp_path):
    """The refusal test below is only meaningful if its payloads act when a loader unpickles them."""
    for kind in [k for k in FOREIGN if k.startswith(("pickle", "torch"))]:
        marker = tmp_path / f"ran-{kind}"
        bad = _write_foreign(kind, tmp_path / f"{kind}.pkl", marker, None)
        if kind.startswith("torch"):
            torch.load(bad, weights_only=False)
        else:
            pickle.loads(bad.read_bytes())
        assert marker.exists(), kind


@pytest.mark.parametrize("kind", FOREIGN)
def test_files_that_are_not_ember_exports_are_refused_without_running_code(kind, trained, tmp_path):
    learn, _ = trained
    marker = tmp_path / "pickle-ran"
    bad = _write_foreign(kind, tmp_path / "bad.pkl", marker, learn)
    with pytest.raises(NotAnExportError, match="not an ember export") as e:
        load_learner(bad)
    with pytest.raises(NotAnExportError, match="not an ember export"):
        read_export_info(bad)
    assert not marker.exists()
    said = {"pickle-protocol": "a pickle", "torch-save": "a zip archive", "empty": "0 bytes long"}
    assert all(text in str(e.value) for start, text in said.items() if kind.startswith(start))


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


# ---- any export loads, whatever its header length ----------------------------------------------------
class _TinyNet(nn.Sequential):
    """A linear classifier of 8x8 images; `tag` only lengthens the export's description."""

    def __init__(self, n_out: int, tag: str = "") -> None:
        super().__init__(nn.Flatten(), nn.Linear(3 * 8 * 8, n_out))


register_config_type(_TinyNet)


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("tiny"), 10)


def _tiny_learner(files, labels=("a", "b"), tag=""):
    dls = ImageDataLoaders.from_name_func(files[0].parent, files, lambda name: labels[name[0].isupper()],
                                          item_tfms=Resize(8), bs=2, num_workers=0, seed=0)  # fmt: skip
    learn = Learner(dls, _TinyNet(2), CrossEntropyLossFlat(), quiet=True)
    learn.model_config = {"type": "_TinyNet", "n_out": 2, "tag": tag}
    return learn


def _header_length(path):
    return int.from_bytes(path.read_bytes()[:8], "little")


def test_exports_of_every_header_length_load_including_those_starting_like_a_pickle(tiny_images, tmp_path):
    # A safetensors file starts with its header's length: a length of 128 (mod 256) makes the first
    # byte 0x80, a pickle's first byte. Lengthening the description one byte at a time covers them all.
    learn, residues = _tiny_learner(tiny_images), set()
    for k in range(256):
        learn.model_config["tag"] = "x" * k
        path = learn.export(tmp_path / "e.pkl")
        residues.add(_header_length(path) % 256)
        assert load_learner(path).model_config["tag"] == "x" * k
    assert set(range(0, 256, 8)) <= residues  # safetensors pads its header to a multiple of 8 bytes
    assert 128 in residues


def test_an_export_whose_header_length_starts_with_pk_loads(tiny_images, tmp_path):
    learn = _tiny_learner(tiny_images)
    base = _header_length(learn.export(tmp_path / "e.pkl"))
    for k in range(0x4B50 - base - 8, 0x4B50 - base + 8):  # 0x4B50 little-endian is b"PK"
        learn.model_config["tag"] = "x" * k
        path = learn.export(tmp_path / "e.pkl")
        if _header_length(path) == 0x4B50:
            break
    assert path.read_bytes()[:2] == b"PK"
    assert load_learner(path).model_config["tag"] == "x" * k


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    labels=st.lists(st.text(min_size=1, max_size=30), min_size=2, max_size=2, unique=True),
    tag=st.text(max_size=300),
)
def test_exports_with_any_vocabulary_and_names_load(labels, tag, tiny_images, tmp_path):
    learn = _tiny_learner(tiny_images, labels, tag)
    loaded = load_learner(learn.export(tmp_path / "e.pkl"))
    assert loaded.dls.vocab == learn.dls.vocab and loaded.model_config["tag"] == tag
    assert torch.equal(loaded.model[1].weight, learn.model[1].weight)


def test_the_export_records_the_epochs_of_every_fit_and_the_last_validation_metrics(tiny_images, tmp_path):
    dls = _tiny_learner(tiny_images).dls
    learn = Learner(dls, _TinyNet(2), CrossEntropyLossFlat(), metrics=accuracy, quiet=True)
    learn.model_config = {"type": "_TinyNet", "n_out": 2}
    learn.fit(2, 1e-3)
    learn.fit(1, 1e-3)
    loss, acc = learn.validate()
    learn.validate(ds_idx=0)  # a pass over the training set: not the model's validation metrics
    info = read_export_info(learn.export(tmp_path / "e.pkl"))
    assert info["epochs_trained"] == 3
    assert info["metrics"] == pytest.approx({"valid_loss": loss, "accuracy": acc})


# ---- the registry of config types ---------------------------------------------------------------------
def test_a_users_class_cannot_take_the_name_of_a_registered_one(monkeypatch):
    monkeypatch.setitem(serial._TYPES, "Resize", registered_type("Resize"))  # restored after the test

    class Resize:  # a user's own transform, named like ember's
        def to_config(self):
            return {}

    with pytest.raises(ValueError, match=r"ember\.vision\.augment\.items\.Resize.*test_export.*another name"):
        register_config_type(Resize)
    assert registered_type("Resize").__module__ == "ember.vision.augment.items"
    register_config_type(_TinyNet, _TinyNet)  # the very same class again is fine
    assert registered_type("_TinyNet") is _TinyNet


# ---- where exports go -------------------------------------------------------------------------------
def test_a_learner_writes_in_the_working_folder_not_the_datas(tiny_images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    learn = _tiny_learner(tiny_images)
    assert learn.path == tmp_path
    plain = Learner(learn.dls, _TinyNet(2), CrossEntropyLossFlat(), path="runs")  # an explicit path wins
    assert plain.path == Path("runs")
    learn.quiet = False
    path = learn.export("pets.pkl")
    assert path == tmp_path / "pets.pkl" and capsys.readouterr().out == f"wrote {tmp_path / 'pets.pkl'}\n"
    assert load_learner("pets.pkl").model_config == learn.model_config
    assert not (tiny_images[0].parent / "pets.pkl").exists()


def test_a_quiet_learner_exports_without_printing(tiny_images, tmp_path, capsys):
    learn = _tiny_learner(tiny_images)
    assert learn.export(tmp_path / "e.pkl") == tmp_path / "e.pkl"
    assert capsys.readouterr().out == ""


def test_a_missing_export_names_where_it_looked_and_where_this_process_exported(
    tiny_images, tmp_path, monkeypatch
):
    learn = _tiny_learner(tiny_images)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    learn.export(tmp_path / "a" / "pets.pkl")
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(FileNotFoundError) as e:
        load_learner("pets.pkl")
    msg = str(e.value)
    assert str(tmp_path / "b" / "pets.pkl") in msg and str(tmp_path / "a") in msg and "full path" in msg


# ---- the validation items travel with the export ------------------------------------------------------
def _class_folders(root, n=10):
    for name, channel in (("red", 0), ("blue", 2)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            a = np.random.default_rng(i + channel).integers(0, 60, (12, 12, 3), dtype=np.uint8)
            a[..., channel] = 220
            Image.fromarray(a).save(root / name / f"{name}_{i}.png")


def _interpret(export, folder, *opts):
    result = CliRunner().invoke(app, ["interpret", str(export), str(folder), "--k", "50", *opts])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("Top losses") + 3  # the title, the table's header and its rule
    return lines, {line.split()[0] for line in lines[start : lines.index("Most uncertain") - 1]}


def test_interpret_uses_the_exports_validation_items_unless_told_all(tmp_path):
    _class_folders(tmp_path / "images")
    from ember.vision.train import image_dls

    dls = image_dls(tmp_path / "images", size=8, bs=4, seed=0, augment=False, num_workers=0)
    learn = Learner(dls, _TinyNet(2), CrossEntropyLossFlat(), quiet=True)
    learn.model_config = {"type": "_TinyNet", "n_out": 2, "tag": ""}
    export = learn.export(tmp_path / "export.pkl")
    valid = {str(f) for f in dls.valid_ds.items}
    lines, used = _interpret(export, tmp_path / "images")
    assert lines[0] == f"validation items from the export: {len(valid)} of 20 images"
    assert used == valid
    lines, used = _interpret(export, tmp_path / "images", "--all")
    assert lines[0] == "every image (--all): 20 images" and len(used) == 20
