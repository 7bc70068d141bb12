"""Everything for course-style vision code: `from ember.vision.all import *`."""

from ember.basics import *
from ember.basics import __all__ as _basics_all
from ember.callbacks.loss_metrics import *
from ember.callbacks.loss_metrics import __all__ as _loss_metrics_all
from ember.generative.all import *
from ember.generative.all import __all__ as _generative_all
from ember.interpret.all import *
from ember.interpret.all import __all__ as _explain_all
from ember.models.vgg import vgg16_features
from ember.vision.augment import *
from ember.vision.augment import __all__ as _augment_all
from ember.vision.blocks import *
from ember.vision.blocks import __all__ as _blocks_all
from ember.vision.core import *
from ember.vision.core import __all__ as _core_all
from ember.vision.data import *
from ember.vision.data import __all__ as _data_all
from ember.vision.feature_loss import *
from ember.vision.feature_loss import __all__ as _feature_loss_all
from ember.vision.inside import *
from ember.vision.inside import __all__ as _inside_all
from ember.vision.interpret import *
from ember.vision.interpret import __all__ as _interpret_all
from ember.vision.learner import *
from ember.vision.learner import __all__ as _learner_all
from ember.vision.mask_io import *
from ember.vision.mask_io import __all__ as _mask_io_all
from ember.vision.seg_interpret import *
from ember.vision.seg_interpret import __all__ as _seg_interpret_all
from ember.vision.style import *
from ember.vision.style import __all__ as _style_all
from ember.vision.style_learner import *
from ember.vision.style_learner import __all__ as _style_learner_all
from ember.vision.superres import *
from ember.vision.superres import __all__ as _superres_all
from ember.vision.unet import *
from ember.vision.unet import __all__ as _unet_all
from ember.vision.unet_learner import *
from ember.vision.unet_learner import __all__ as _unet_learner_all

__all__ = [
    *_basics_all,
    *_core_all,
    *_augment_all,
    *_blocks_all,
    *_data_all,
    *_learner_all,
    *_unet_all,
    *_unet_learner_all,
    *_interpret_all,
    *_seg_interpret_all,
    *_mask_io_all,
    *_superres_all,
    *_style_all,
    *_style_learner_all,
    *_feature_loss_all,
    *_loss_metrics_all,
    *_explain_all,
    *_inside_all,
    *_generative_all,
    "vgg16_features",
]
