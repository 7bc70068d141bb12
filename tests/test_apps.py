"""The applications' extension point: export, load_learner, the server and the report find an
application only through `ember.apps.APPS`, and the core never names one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ember.apps import APPS, UnknownApp, load_app
from ember.learner.app import AppSpec, register_app

ROOT = Path(__file__).parents[1] / "ember"


def _export_naming(app: object, path: Path) -> Path:
    cfg = {"app": app, "task": "x", "model": {"type": "Linear"}, "info": {}}
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "ember.export", "version": "1",
                                                          "config": json.dumps(cfg)})  # fmt: skip
    return path


@pytest.mark.parametrize("app", ["os", "this", "ember.vision.app", "json.tool", "antigravity", ["vision"], 3])
def test_an_export_naming_an_app_not_in_the_table_is_refused_and_imports_nothing(app, tmp_path):
    path = _export_naming(app, tmp_path / "e.pkl")
    code = (
        "import sys, ember.learner.learner\nfrom ember.learner.export import NotAnExportError, load_learner\n"
        "before = set(sys.modules)\n"
        f"try:\n    load_learner({str(path)!r})\nexcept NotAnExportError as e:\n    print('refused:', e)\n"
        "print(sorted(set(sys.modules) - before - {'ember.apps'}))"
    )  # the table's own module is the only one loading may import
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused:" in out and "not one of ember's applications" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_load_app_imports_only_the_tables_module():
    assert load_app("collab").name == "collab" and set(APPS) >= {"vision", "collab"}
    with pytest.raises(UnknownApp, match="ember.apps.APPS"):
        load_app("ember.collab.app")


def test_an_application_name_belongs_to_one_module():
    spec = load_app("collab")
    with pytest.raises(ValueError, match="taken"):
        register_app(
            AppSpec(name="collab", task=lambda learn: None, describe=spec.describe, build=spec.build)
        )


def test_the_core_and_the_server_name_no_application():
    files = [*(ROOT / "learner").glob("*.py"), *(ROOT / "serve").rglob("*.*")]
    named = {f.relative_to(ROOT).as_posix(): sorted(set(re.findall(r"\b(vision|collab)\b", f.read_text())))
             for f in files if f.suffix in (".py", ".html", ".js", ".css")}  # fmt: skip
    assert {f: n for f, n in named.items() if n} == {}


def test_every_application_in_the_table_registers_its_spec_with_request_io():
    for name in APPS:
        spec = load_app(name)
        assert spec.name == name and spec.request_io is not None


def test_vision_names_its_tasks_from_the_target_block(tmp_path):
    from PIL import Image

    from ember.learner.export import describe
    from ember.vision.all import (  # noqa: F401
        CategoryBlock,
        CrossEntropyLossFlat,
        DataBlock,
        ImageBlock,
        Learner,
        MultiCategoryBlock,
        PointBlock,
        Resize,
    )

    files = []
    for i in range(6):
        f = tmp_path / f"{'A' if i % 2 else 'b'}{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(f)
        files.append(f)
    targets = {
        CategoryBlock: ("vision.classify", lambda f: f.name[0]),
        MultiCategoryBlock: ("vision.multilabel", lambda f: [f.name[0]]),
        PointBlock: ("vision.points", lambda f: [[1.0, 2.0]]),
    }
    for block, (task, get_y) in targets.items():
        dls = DataBlock(blocks=(ImageBlock, block), get_y=get_y, item_tfms=Resize(8)).dataloaders(
            files, bs=2, num_workers=0, device="cpu"
        )
        learn = Learner(dls, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2)), quiet=True)
        learn.model_config = {"type": "nothing"}
        cfg = describe(learn)
        assert (cfg["app"], cfg["task"]) == ("vision", task)
