"""Everything the core offers, for course-style code: `from ember.basics import *`.

Like the course's notebooks, it also brings the everyday names: `torch`, `nn`, `F`, `Tensor`, `np`,
`pd`, `Path` and `partial`.
"""

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.callbacks import *
from ember.callbacks import __all__ as _callbacks_all
from ember.core import *
from ember.core import __all__ as _core_all
from ember.data import *
from ember.data import __all__ as _data_all
from ember.learner import *
from ember.learner import __all__ as _learner_all
from ember.losses import *
from ember.losses import __all__ as _losses_all
from ember.losses_imbalance import *
from ember.losses_imbalance import __all__ as _losses_imbalance_all
from ember.metrics import *
from ember.metrics import __all__ as _metrics_all
from ember.models import *
from ember.models import __all__ as _models_all

__all__ = [
    "F",
    "Path",
    "Tensor",
    "nn",
    "np",
    "partial",
    "pd",
    "torch",
    *_core_all,
    *_data_all,
    *_learner_all,
    *_callbacks_all,
    *_metrics_all,
    *_losses_all,
    *_losses_imbalance_all,
    *_models_all,
]
