"""A trained learner as one self-contained file for inference, with no pickle in it.

The file is a safetensors file: the model's tensors, plus one JSON description in its metadata of
how to rebuild everything around them (the architecture's arguments, the blocks with their
vocabulary, the validation-time transforms such as Resize and Normalize, the loss that decodes
predictions). Loading reads JSON and tensors only. Types are looked up by name in the registry of
`ember.core.serial`, never imported from the file, so a file cannot make ember run code.

What the description holds is the application's to say (`AppSpec.describe` and `AppSpec.build` in
`ember.learner.app`); the file stores the application's name, and `load_learner` imports an application
only through the fixed table of `ember.apps`. A learner no application claims is described by its
DataBlock (`describe_datablock`).

>>> learn.export()                       # ./export.pkl (the course's name; the content is safetensors)
>>> learn = load_learner("export.pkl")   # in another process, without the training data
>>> label, idx, probs = learn.predict("cat.jpg")  # doctest: +SKIP

The file also lists the validation items (their files, relative to the data's folder), so that
`ember interpret` can judge the model on images it did not train on.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ember.callbacks.channels_last import ChannelsLast
from ember.core.serial import ConfigError, from_config, to_config
from ember.core.utils import atomic_write, default_device
from ember.data.block import DataBlock, TfmdDataLoaders
from ember.data.datasets import Datasets
from ember.data.transforms import VALID, Transform
from ember.learner.app import AppSpec, app_of
from ember.learner.checkpoint import model_tensors

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "ExportError",
    "NotAnExportError",
    "build_datablock",
    "describe_datablock",
    "export_learner",
    "load_learner",
    "model_recipe",
    "read_export_info",
    "read_valid_items",
]

FORMAT, VERSION = "ember.export", 1
MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not one of ours
# The folders this process exported each file name to, so that a `load_learner("pets.pkl")` run from
# another folder can say where the file went.
_EXPORTED: dict[str, list[Path]] = {}


class ExportError(ValueError):
    """A learner that cannot be written as an export file, with what to change."""


class NotAnExportError(ValueError):
    """A file that is not (or no longer) an ember export: refused before anything in it is used."""


# ---- writing -------------------------------------------------------------------------------------
def export_learner(learn: Learner, path: Path) -> Path:
    """Write `learn`'s model and inference pipeline to `path` atomically (see the module's docstring)."""
    cfg = describe(learn)
    found = app_of(learn)
    export_model = found[0].export_model if found is not None else None
    tensors = model_tensors(learn.model if export_model is None else export_model(learn))
    data = save(tensors, metadata={"format": FORMAT, "version": str(VERSION), "config": json.dumps(cfg)})
    with atomic_write(path) as f:
        f.write(data)
    folders = _EXPORTED.setdefault(path.name, [])
    if path.absolute().parent not in folders:
        folders.append(path.absolute().parent)
    return path


def describe(learn: Learner) -> dict[str, Any]:
    """The JSON description an export file holds; an `ExportError` naming what cannot be described.

    The application that claims the learner (`ember.learner.app`) describes it; a learner no application
    claims is described by its DataBlock alone (`describe_datablock`)."""
    found = app_of(learn)
    if found is None:
        cfg, app, task = describe_datablock(learn), None, None
    else:
        spec, task = found
        cfg, app = spec.describe(learn), spec.name
    cfg = {**cfg, "app": app, "task": task}
    cfg["info"] = {**cfg.get("info", {}), "app": app, **_training_info(learn)}
    _check_json(cfg)
    return cfg


def describe_datablock(learn: Learner) -> dict[str, Any]:
    """The model's recipe, the blocks with their vocabulary, the validation transforms and the loss of a
    learner on DataBlock loaders, with `info` (arch, vocab, n_out, input_size) for `read_export_info`."""
    dls = learn.dls
    if not isinstance(dls, TfmdDataLoaders):
        raise ExportError(
            "learn.export needs DataLoaders made by a DataBlock or a factory (ImageDataLoaders...), which "
            "know how to prepare a new item; with other DataLoaders, save the weights with learn.save()"
        )
    try:
        cfg = {
            "model": model_recipe(learn),
            "blocks": [to_config(b) for b in dls.datasets.blocks],
            "n_inp": dls.datasets.n_inp,
            "item_tfms": _tfms_config(dls.dblock.item_tfms),
            "batch_tfms": _tfms_config(dls.dblock.batch_tfms),
            "loss_func": to_config(learn.loss_func),
            "channels_last": any(isinstance(cb, ChannelsLast) for cb in learn.cbs),
            "valid_items": _valid_items(dls),
        }
    except ConfigError as e:
        raise ExportError(f"learn.export: {e}") from e
    target = cfg["blocks"][-1]
    cfg["info"] = {
        "arch": cfg["model"].get("arch"),
        "task": "other",
        "vocab": target.get("vocab", target.get("codes")),
        "n_out": cfg["model"].get("n_out"),
        "input_size": _input_size(cfg),
    }
    return cfg


def model_recipe(learn: Learner) -> dict[str, Any]:
    """`learn.model_config`, or an `ExportError` saying how to give a model one."""
    if learn.model_config is None:
        raise ExportError(
            "learn.export does not know how to rebuild this model: learners made by vision_learner "
            "(without custom_head or a callable cut) or collab_learner record it. For a model of your own, "
            "save its weights with learn.save(), or register a builder with "
            "ember.core.serial.register_config_type and set learn.model_config = {'type': builder_name, "
            "**its_kwargs}"
        )
    return dict(learn.model_config)


def _tfms_config(tfms: list[Transform]) -> list[dict[str, Any]]:
    # Training-only transforms (augmentations) play no part in inference, so they are left out.
    return [to_config(t) for t in tfms if t.split_idx in (None, VALID)]


def _valid_items(dls: TfmdDataLoaders) -> list[str] | None:
    """The validation items' files relative to the data's folder, or None when there are none or they
    are not files under it. (About 30 bytes an item: a few hundred kB of description for 10,000 items.)"""
    dsets, root = dls.datasets, Path(dls.path).absolute()
    get_x, files = dsets.getters[0], []
    for i in dsets.splits[1]:
        x = get_x(dsets.items[i])
        if not isinstance(x, str | os.PathLike) or not Path(x).absolute().is_relative_to(root):
            return None
        files.append(Path(x).absolute().relative_to(root).as_posix())
    return files or None


def _training_info(learn: Learner) -> dict[str, Any]:
    """What a person (or a server) wants to know about the training, without loading the model."""
    import ember

    metrics, epochs = _training_record(learn)
    return {
        "metrics": metrics,
        "epochs_trained": epochs,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ember_version": ember.__version__,
        "torch_version": torch.__version__,
    }


def _training_record(learn: Learner) -> tuple[dict[str, float], int]:
    """The loss and metrics of the last pass over the validation set, and the epochs of every fit."""
    return dict(learn.recorder.final_metrics), learn.epochs_trained


def _input_size(cfg: dict[str, Any]) -> list[int] | None:
    """(h, w) the model sees: the last resizing transform's size, when there is one."""
    sizes = [t["size"] for t in [*cfg["item_tfms"], *cfg["batch_tfms"]] if t.get("size") is not None]
    return sizes[-1] if sizes else None


def _check_json(cfg: dict[str, Any]) -> None:
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ExportError(f"learn.export: the description holds a value JSON cannot store: {e}") from e


# ---- reading -------------------------------------------------------------------------------------
def _not_export(path: Path, why: str) -> NotAnExportError:
    return NotAnExportError(f"{path} is not an ember export: {why}. Make one with learn.export().")


def _sniff(path: Path) -> int:
    """Check the safetensors framing before any parser sees the file; returns the header length.

    A safetensors file starts with its header's length (8 bytes, little-endian), then the header's `{`.
    That framing is checked first: a length of 128 (mod 256) starts with a pickle's 0x80, and one of
    0x4B50 (mod 65536) with a zip's "PK". The magic bytes only word the refusal of other files.
    """
    if not path.is_file():
        raise FileNotFoundError(_missing(path))
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    n = int.from_bytes(head[:8], "little")
    if len(head) == 9 and head[8:9] == b"{" and 0 < n <= min(MAX_HEADER, size - 8):
        return n
    if head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a pickle" if head[:1] == b"\x80" else "a zip archive (torch.save's format)"
        raise _not_export(
            path, f"it looks like {kind}, e.g. a fastai export or torch.save file; ember never unpickles "
            "a file, since unpickling can run any code"
        )  # fmt: skip
    if len(head) < 9:
        raise _not_export(path, f"it is only {size} bytes long")
    raise _not_export(path, "it is not a safetensors file (the first bytes are not a safetensors header)")


def _missing(path: Path) -> str:
    """Where `load_learner` looked for `path`, and where this process exported a file of that name."""
    folders = [str(d) for d in _EXPORTED.get(path.name, []) if d / path.name != path.absolute()]
    hint = f"; this process exported {path.name} to {', '.join(folders)}" if folders else ""
    return (
        f"no model file at {path.absolute()}{hint}. learn.export writes to learn.path (the working folder "
        "when the Learner was made, unless you gave path=): pass the full path of the exported file"
    )


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and (when `tensors`) the weights of the export at `path`."""
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:  # one pass: the header, then each tensor
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError) as e:
        raise _not_export(path, f"it is damaged or truncated ({e})") from e
    if meta.get("format") != FORMAT:
        hint = " (it is a checkpoint from learn.save: load it with learn.load)" if "ember.checkpoint" in str(
            meta.get("format")) else ""  # fmt: skip
        raise _not_export(path, f"it is a safetensors file without ember's export marker{hint}")
    if meta.get("version") != str(VERSION):
        raise NotAnExportError(
            f"{path} is an ember export of format version {meta.get('version')}; this ember reads version "
            f"{VERSION}: install the ember that wrote it, or export the model again"
        )
    try:
        cfg = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise _not_export(path, f"its description is missing or damaged ({e})") from e
    return cfg, weights


def read_export_info(fname: str | Path) -> dict[str, Any]:
    """What an export file says about its model (arch, task, vocab, input size, metrics, versions),
    without building the model.

    >>> read_export_info("export.pkl")["vocab"]  # doctest: +SKIP
    ['False', 'True']
    """
    return _read(Path(fname), tensors=False)[0]["info"]


def read_valid_items(fname: str | Path) -> list[str] | None:
    """The files of the validation items the model was trained with, relative to its data's folder;
    None when the export does not record them (its items were not files under that folder).

    >>> read_valid_items("export.pkl")[:2]  # doctest: +SKIP
    ['cats/cat_17.jpg', 'dogs/dog_3.jpg']
    """
    return _read(Path(fname), tensors=False)[0].get("valid_items")


def load_learner(fname: str | Path, cpu: bool = True) -> Learner:
    """A Learner rebuilt from a file written by `learn.export()`, ready to `predict` new items; on the
    CPU unless `cpu=False` (then the first GPU when there is one).

    A file that is not an ember export (a pickle, another safetensors file, a damaged file) is refused
    with `NotAnExportError` before anything in it is used.

    >>> learn = load_learner("models/export.pkl")  # doctest: +SKIP
    >>> learn.predict("cat.jpg")  # doctest: +SKIP
    ('True', tensor(1), tensor([0.0210, 0.9790]))
    """
    path = Path(fname)
    cfg, tensors = _read(path)
    spec = _app(path, cfg)
    device = torch.device("cpu") if cpu else default_device()
    try:
        learn = (spec.build if spec is not None else build_datablock)(cfg, path.parent, device)
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise NotAnExportError(f"{path}: its description cannot be rebuilt ({e!r})") from e
    _load_weights(path, learn.model, tensors)
    learn.model.eval()
    learn.export_info = cfg.get("info", {})
    return learn


def _app(path: Path, cfg: dict[str, Any]) -> AppSpec | None:
    """The application an export names, imported only through the table of `ember.apps`."""
    from ember.apps import UnknownApp, load_app  # ember.apps imports this package: not at the top

    legacy = cfg.get("apps") or [None]  # files written before "app": the list of apps imported
    name = cfg["app"] if "app" in cfg else legacy[0] if len(legacy) == 1 else legacy
    if name is None:
        return None
    try:
        return load_app(name)
    except UnknownApp as e:
        raise NotAnExportError(f"{path} needs an application this ember does not have: {e}") from e


def build_datablock(cfg: dict[str, Any], folder: Path, device: torch.device) -> Learner:
    """A Learner for inference from `describe_datablock`'s description (weights not loaded yet)."""
    from ember.learner.learner import Learner

    dls = _inference_dls(cfg, device, folder)
    model, loss_func = from_config(cfg["model"]), from_config(cfg["loss_func"])
    learn = Learner(dls, model, loss_func=loss_func, path=folder, quiet=True)
    learn.model_config = cfg["model"]
    if cfg.get("channels_last"):
        learn.to_channelslast()
    return learn


def _inference_dls(cfg: dict[str, Any], device: torch.device, path: Path) -> TfmdDataLoaders:
    """DataLoaders with no items: the blocks and transforms that `test_dl` and `predict` need."""
    blocks = [from_config(b) for b in cfg["blocks"]]
    item_tfms = [from_config(t) for t in cfg["item_tfms"]]
    batch_tfms = [from_config(t) for t in cfg["batch_tfms"]]
    dblock = DataBlock(blocks=blocks, item_tfms=item_tfms, batch_tfms=batch_tfms, n_inp=cfg["n_inp"])
    dsets = Datasets([], blocks, [None] * len(blocks), ([], []), cfg["n_inp"], setup=False)
    return TfmdDataLoaders.from_datasets(dsets, dblock, num_workers=0, device=device, cache=False, path=path)


def _load_weights(path: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise NotAnExportError(
            f"{path}: its weights do not fit the model its description names; the file was changed or "
            f"damaged after export ({str(e).splitlines()[0]})"
        ) from e
