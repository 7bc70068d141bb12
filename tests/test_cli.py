"""The `ember` command line: train -> predict -> interpret on a small image folder, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ember
from ember.cli import app
from ember.core.table import text_table
from ember.core.utils import atomic_write
from ember.data.errors import DataError
from ember.learner.export import load_learner
from ember.vision.train import image_dls

runner = CliRunner()
TINY = ["--no-pretrained", "--arch", "resnet18", "--size", "16", "--bs", "8", "--seed", "0"]


def _write_class(folder: Path, channel: int, n: int = 12) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(channel)
    files = []
    for i in range(n):
        a = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
        a[..., channel] = 220
        files.append(folder / f"{folder.name}_{i}.png")
        Image.fromarray(a).save(files[-1])
    return files


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two classes of 12 tiny PNGs in class folders: red/ and blue/."""
    root = tmp_path_factory.mktemp("images")
    _write_class(root / "red", 0)
    _write_class(root / "blue", 2)
    return root


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory) -> Path:
    """The folder `ember train` wrote (export.pkl, report.html), after one epoch from random weights."""
    out = tmp_path_factory.mktemp("out")
    result = runner.invoke(
        app, ["train", str(images), *TINY, "--epochs", "1", "--lr", "1e-3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def _one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# ---- train, predict, interpret ---------------------------------------------------------------------
def test_train_writes_an_export_that_loads_and_an_html_report(trained, images):
    learn = load_learner(trained / "export.pkl")
    assert sorted(learn.dls.vocab) == ["blue", "red"]
    assert learn.export_info["arch"] == "resnet18" and learn.export_info["input_size"] == [16, 16]
    page = (trained / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "resnet18" in page


def test_predict_prints_one_row_per_file_with_the_models_label(trained, images):
    files = [images / "red" / "red_0.png", images / "blue" / "blue_3.png"]
    result = runner.invoke(app, ["predict", str(trained / "export.pkl"), *map(str, files)])
    assert result.exit_code == 0, result.output
    learn = load_learner(trained / "export.pkl")
    for f in files:
        (row,) = [line for line in result.stdout.splitlines() if line.startswith(str(f))]
        label, _, probs = learn.predict(f)
        assert row.split()[1] == label and f"{float(probs.max()):.4f}" in row


def test_predict_json_lists_the_top_k_classes_with_the_models_probabilities(trained, images):
    f = images / "blue" / "blue_1.png"
    result = runner.invoke(app, ["predict", str(trained / "export.pkl"), str(f), "--json", "--top", "2"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    _, _, probs = load_learner(trained / "export.pkl").predict(f)
    assert entry["file"] == str(f) and [t["label"] for t in entry["top"]][0] == entry["label"]
    assert sorted(t["label"] for t in entry["top"]) == ["blue", "red"]
    assert entry["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert sum(t["probability"] for t in entry["top"]) == pytest.approx(1.0, abs=1e-4)


def test_predict_names_a_missing_or_unreadable_file_and_still_predicts_the_others(trained, images, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    good, missing, bad = images / "red" / "red_1.png", tmp_path / "gone.png", tmp_path / "notes.png"
    args = ["predict", str(trained / "export.pkl"), str(missing), str(good), str(bad), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and str(missing) in errors[0] and str(bad) in errors[1]
    entries = json.loads(result.stdout)
    assert [e["file"] for e in entries] == [str(missing), str(good), str(bad)]
    assert "error" in entries[0] and entries[1]["label"] in ("blue", "red") and "error" in entries[2]


def test_predict_prints_no_empty_table_when_every_file_fails(trained, tmp_path):
    missing = tmp_path / "gone.png"
    result = runner.invoke(app, ["predict", str(trained / "export.pkl"), str(missing)])
    assert result.exit_code == 1
    assert _one_line_error(result) == f"error: {missing}: no such file"
    assert result.stdout == ""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_files_train_writes_get_the_mode_the_umask_gives_not_0600(trained):
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("export.pkl", "report.html"):
        assert _mode(trained / name) == 0o666 & ~mask, name


def test_atomic_write_gives_the_file_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.bin") as f:
            f.write(b"data")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.bin") == 0o640 and (tmp_path / "a.bin").read_bytes() == b"data"


def test_interpret_prints_a_confusion_matrix_counting_every_image_and_draws_the_plots(
    trained, images, tmp_path
):
    result = runner.invoke(
        app, ["interpret", str(trained / "export.pkl"), str(images), "--out", str(tmp_path), "--all"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()[1:]  # after the line saying which images it used
    assert lines[0].startswith(f"{images}: 24 images in 2 classes")
    start = lines.index("Confusion matrix (rows: actual class)")
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[start + 3 : start + 5]}
    assert sum(rows["blue"]) == 12 and sum(rows["red"]) == 12
    correct = rows["blue"][0] + rows["red"][1]  # vocab order: blue, red
    assert f"accuracy {correct / 24:.4f}" in lines[0]
    for section in ("Most confused", "Top losses", "Most uncertain"):
        assert section in lines
    for name in ("confusion_matrix.png", "top_losses.png", "most_uncertain.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_interpret_refuses_a_folder_naming_a_class_the_model_does_not_know(trained, images, tmp_path):
    _write_class(tmp_path / "green", 1, n=2)
    result = runner.invoke(app, ["interpret", str(trained / "export.pkl"), str(tmp_path)])
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert "green" in line and "blue" in line and "red" in line


def test_lr_find_writes_its_plot_and_prints_the_suggestions(images, tmp_path):
    result = runner.invoke(app, ["lr-find", str(images), *TINY, "--num-it", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    names = ("valley", "slide", "steep", "minimum")
    pairs = [line.split() for line in result.stdout.splitlines()]
    rates = {p[0]: float(p[1]) for p in pairs if len(p) == 2 and p[0] in names}
    assert set(rates) == set(names)
    assert 1e-7 <= rates["valley"] <= 10  # inside the finder's range (minimum is a tenth of a rate tried)
    assert all(1e-8 <= r <= 10 for r in rates.values())


def _finder_progress(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("lr_find: ")]


def test_lr_find_shows_how_far_it_has_got_on_stderr(images, tmp_path):
    result = runner.invoke(app, ["lr-find", str(images), *TINY, "--num-it", "12", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    progress = _finder_progress(result)
    assert progress[0] == "lr_find: up to 12 batches at growing learning rates"
    assert re.fullmatch(r"lr_find: 3/12 batches, lr \S+, loss \d+\.\d{4}, \d+ s", progress[1])
    assert re.fullmatch(r"lr_find: \d+/12 batches, .*", progress[-1]) and len(progress) >= 3
    assert not any(line.startswith("lr_find: ") for line in result.stdout.splitlines())


@pytest.mark.slow  # the finder's 100 batches: about a minute on two CPU cores
def test_train_with_lr_auto_shows_the_finders_progress_on_stderr(images, tmp_path):
    result = runner.invoke(app, ["train", str(images), *TINY, "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    progress = _finder_progress(result)
    assert progress[0] == "lr_find: up to 100 batches at growing learning rates"
    assert re.fullmatch(r"lr_find: 25/100 batches, lr \S+, loss \d+\.\d{4}, \d+ s", progress[1])
    assert "lr_find: valley" in result.stdout  # the result, on stdout with the epoch table


# ---- errors: one line, a useful exit code ----------------------------------------------------------
def test_a_missing_data_path_is_a_one_line_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = runner.invoke(app, ["train", str(missing), *TINY])
    assert result.exit_code == 1
    assert str(missing) in _one_line_error(result)


def test_an_unknown_arch_is_a_one_line_error_listing_the_names(images):
    result = runner.invoke(app, ["train", str(images), "--arch", "resnt18"])
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert "'resnt18'" in line and "resnet18" in line and "efficientnet_lite0" in line


def test_missing_pretrained_weights_say_which_options_get_round_them(images, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    result = runner.invoke(app, ["train", str(images), "--arch", "resnet34"])
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert "resnet34-" in line and "--no-pretrained" in line and "--weights FILE" in line


def test_a_bad_option_value_exits_2_with_one_line_naming_the_option(images):
    result = runner.invoke(app, ["train", str(images), "--lr", "fast"])
    assert result.exit_code == 2
    assert "--lr" in _one_line_error(result)
    result = runner.invoke(app, ["predict", "--no-such-option"])
    assert result.exit_code == 2
    assert "--no-such-option" in _one_line_error(result)


def test_a_model_that_is_not_an_export_is_a_one_line_error(images):
    image = images / "red" / "red_0.png"
    result = runner.invoke(app, ["predict", str(image), str(image)])
    assert result.exit_code == 1
    assert f"{image} is not an ember export" in _one_line_error(result)


def test_a_warning_prints_on_one_line_and_the_warning_display_is_restored_after(monkeypatch):
    import ember.info

    def environment() -> list[tuple[str, str]]:
        warnings.warn("the data folder\n    is odd", UserWarning, stacklevel=1)
        return [("ember", ember.__version__)]

    monkeypatch.setattr(ember.info, "environment", environment)
    before = warnings.showwarning
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "warning: the data folder is odd\n"
    assert warnings.showwarning is before


def test_debug_lets_the_exception_through_with_its_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "train", str(tmp_path / "missing"), *TINY])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


# ---- the CSV form of the data ----------------------------------------------------------------------
def test_a_csv_gives_files_relative_to_its_folder_and_labels_from_the_named_columns(tmp_path):
    files = _write_class(tmp_path / "imgs", 0, n=6)
    rows = [f"imgs/{f.name},{'odd' if i % 2 else 'even'},x" for i, f in enumerate(files)]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(["path,parity,other", *rows]))
    dls = image_dls(csv, fn_col="0", label_col="parity", valid_pct=0.5, size=16, bs=2, num_workers=0)
    assert dls.vocab == ["even", "odd"] and len(dls.train_ds) + len(dls.valid_ds) == 6
    with pytest.raises(DataError, match=r"no column 'label'.*'parity'"):
        image_dls(csv, label_col="label", size=16, num_workers=0)


# ---- info, serve, help -----------------------------------------------------------------------------
def test_info_prints_the_versions_and_the_device():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert rows["ember"] == ember.__version__ and rows["torch"] == torch.__version__
    assert "device" in result.stdout and "data folder" in result.stdout


def test_serve_hands_the_options_to_the_server(monkeypatch, tmp_path):
    serve_app = pytest.importorskip("ember.serve.app")
    calls = []
    monkeypatch.setattr(serve_app, "run_server", lambda *args: calls.append(args))
    model = tmp_path / "export.pkl"
    args = [
        "serve",
        str(model),
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--workers",
        "2",
        "--max-upload-mb",
        "3",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [(model, "0.0.0.0", 9001, 2, 3.0, 64, 30.0)]


def test_the_ember_console_script_lists_every_command():
    ember_script = Path(sys.executable).parent / "ember"
    out = subprocess.run([str(ember_script), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "lr-find", "predict", "interpret", "serve", "info", "demo"):
        assert f"\n  {command} " in out


def test_text_table_right_aligns_numbers_and_pads_text():
    table = text_table(["task", "n"], [["faces", 3], ["digits", 10.5]])
    assert table.splitlines() == ["task       n", "------  ----", "faces      3", "digits  10.5"]


# ---- the demo ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_quick_runs_the_three_tasks_and_writes_the_face_model(tmp_path):
    out, data = tmp_path / "demo", tmp_path / "data"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--data", str(data)])
    assert result.exit_code == 0, result.output
    for task in ("transfer learning", "from scratch", "collaborative filtering"):
        assert any(line.startswith(task) for line in result.stdout.splitlines())
    assert load_learner(out / "export.pkl").dls.vocab == [False, True]  # not a face, a face
    assert (out / "report.html").stat().st_size > 1000
