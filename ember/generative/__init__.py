"""Generative models: GANs, VAEs, their latent spaces, and sliders to steer them.

The course's WGAN and super-resolution GAN (`GANLearner`), variational autoencoders (`VAELearner`), the
latent tools (PCA directions, traversals, interpolation), a Frechet distance to score samples, and the
sliders page (`ember sliders export.pkl`). Everything is importable from `ember.vision.all`, as the course
imports it, and trains on the ordinary `Learner` with its callbacks.

Both learners offer the same latent interface, which the latent tools, export and the sliders page use:

- `learn.latent_dim`: the size of a latent vector z.
- `learn.sample_z(n, seed=None)`: `(n, latent_dim)` standard-normal vectors; the same seed, the same z.
- `learn.decode(z)`: `(n, latent_dim)` -> images `(n, c, h, w)`, floats in [0, 1] (denormalised), on
  the CPU, computed in eval mode without gradients.
- `learn.img_size` (`(h, w)`) and `learn.n_channels`.
- A VAE also encodes: `learn.encode(items)` -> `(n, latent_dim)` means, for files, PIL images or a
  tensor `(n, c, h, w)` in [0, 1].
"""

# registers generative models with export, load_learner and the server
import ember.generative.app  # noqa: E402, F401
