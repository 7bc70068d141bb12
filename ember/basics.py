"""Everything the core offers, for course-style code: `from ember.basics import *`."""

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
from ember.metrics import *
from ember.metrics import __all__ as _metrics_all
from ember.models import *
from ember.models import __all__ as _models_all

__all__ = [
    *_core_all,
    *_data_all,
    *_learner_all,
    *_callbacks_all,
    *_metrics_all,
    *_losses_all,
    *_models_all,
]
