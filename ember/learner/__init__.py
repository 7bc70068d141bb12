"""ember.learner: the Learner, its checkpoints and its export files."""

from ember.learner.export import ExportError, NotAnExportError, load_learner, read_export_info
from ember.learner.learner import Learner
from ember.learner.resume import CheckpointCallback

__all__ = [
    "CheckpointCallback",
    "ExportError",
    "Learner",
    "NotAnExportError",
    "load_learner",
    "read_export_info",
]
