"""The Learner's files: checkpoints (`save` / `load`), the export for `load_learner`, the HTML report.

`Learner` is a `Files`: each method writes under `learn.path` (the working folder unless told otherwise)
and returns the path it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Self

import torch

from ember.learner.checkpoint import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ember.learner.contracts import LoadersLike

__all__ = ["Files"]


class Files:
    """Saving and loading a Learner's state, exporting it for inference, reporting on its training.

    >>> learn.save("stage-1"); learn.load("stage-1")  # doctest: +SKIP
    """

    path: Path
    model_dir: Path
    model: torch.nn.Module
    opts: list[torch.optim.Optimizer]
    dls: LoadersLike
    epoch: int
    quiet: bool

    def save(self, file: str, with_opt: bool = True) -> Path:
        """Write the model (and every optimizer's) state to `path/model_dir/file.safetensors`, atomically."""
        path = self.path / self.model_dir / f"{file}.safetensors"
        save_checkpoint(path, self.model, self.opts if with_opt else [], epoch=self.epoch)
        return path

    def export(self, fname: str | Path = "export.pkl") -> Path:
        """Write the model and what inference needs (vocabulary, resize, normalisation, decoding) to
        `path/fname` for `load_learner`: safetensors and JSON, no pickle (the course's file name is
        kept; the content is not a pickle). Prints and returns the file's absolute path.

        >>> learn.export("models/pets.pkl")  # doctest: +SKIP
        wrote /home/me/work/models/pets.pkl
        """
        from ember.learner.export import export_learner

        return self._wrote(export_learner(self, self.path / fname))

    def report(self, fname: str | Path = "report.html") -> Path:
        """Write one self-contained HTML page to `path/fname`: the data, the last lr_find, the loss and
        metric curves of every fit, and for a classifier its confusion matrix and worst predictions.
        Prints and returns the file's absolute path.

        >>> learn.report("pets.html")  # doctest: +SKIP
        """
        from ember.learner.report import write_report

        return self._wrote(write_report(self, self.path / fname))

    def _wrote(self, path: Path) -> Path:
        path = path.absolute()
        if not self.quiet:
            print(f"wrote {path}")
        return path

    def load(self, file: str, with_opt: bool = True, strict: bool = True) -> Self:
        """Load a state written by `save`; sets `self.epoch` to the epoch it was saved at."""
        path = self.path / self.model_dir / f"{file}.safetensors"
        if with_opt and not self.opts:
            self.create_opt()
        meta = load_checkpoint(path, self.model, self.opts if with_opt else [], self.dls.device, strict)
        self.epoch = meta["epoch"]
        return self
