"""Everything for course-style generative code; `ember.vision.all` passes it on, as the course imports it."""

from ember.generative.datasets import *
from ember.generative.datasets import __all__ as _datasets_all
from ember.generative.fid import *
from ember.generative.fid import __all__ as _fid_all
from ember.generative.gan import *
from ember.generative.gan import __all__ as _gan_all
from ember.generative.gan_callbacks import *
from ember.generative.gan_callbacks import __all__ as _gan_callbacks_all
from ember.generative.gan_losses import *
from ember.generative.gan_losses import __all__ as _gan_losses_all
from ember.generative.gan_models import *
from ember.generative.gan_models import __all__ as _gan_models_all
from ember.generative.latent import *
from ember.generative.latent import __all__ as _latent_all
from ember.generative.latent_plots import *
from ember.generative.latent_plots import __all__ as _latent_plots_all
from ember.generative.vae import *
from ember.generative.vae import __all__ as _vae_all
from ember.generative.vae_learner import *
from ember.generative.vae_learner import __all__ as _vae_learner_all
from ember.generative.vae_loss import *
from ember.generative.vae_loss import __all__ as _vae_loss_all

__all__ = [
    *_gan_models_all,
    *_gan_losses_all,
    *_gan_callbacks_all,
    *_gan_all,
    *_vae_all,
    *_vae_loss_all,
    *_vae_learner_all,
    *_latent_all,
    *_latent_plots_all,
    *_fid_all,
    *_datasets_all,
]
