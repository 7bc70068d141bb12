"""`GANLearner`: a generator and a critic trained in turns on the ordinary Learner loop.

It overrides the step methods only. On a critic batch, `forward` scores the real images and the
generator's images (made without gradients), `get_loss` is `crit_loss_func(real_pred, fake_pred)` (plus
the gradient penalty of `wgan_gp`), and `step` steps the critic's optimizer (then clips its weights with
`clip`). On a generator batch, `forward` scores `generator(noise)`, `get_loss` is `gen_loss_func(fake_pred,
fake, real)` and `step` steps the generator's optimizer. The resting network has `requires_grad=False`,
so it gets no gradients. `learn.opts` is `[generator's optimizer, critic's optimizer]`; `learn.model` is a
`GANModule` holding both networks, so `save` / `load` and checkpoints hold both, with both optimizers.
Callbacks decide the turns (`FixedGANSwitcher`, `AdaptiveGANSwitcher`); `GANTrainer` keeps `gen_loss` and
`crit_loss` in the epoch table (`train_loss` there smooths both networks' losses together).

>>> dblock = DataBlock(blocks=(TransformBlock, ImageBlock(cls=PILImageBW)), get_x=generate_noise,
...     get_items=get_image_files, splitter=IndexSplitter([]), item_tfms=Resize(32),
...     batch_tfms=Normalize.from_stats([0.5], [0.5]))  # doctest: +SKIP
>>> dls = dblock.dataloaders(untar_data(URLs.MNIST5K), bs=64)  # doctest: +SKIP
>>> critic = basic_critic(32, 1, norm_type=None)  # doctest: +SKIP
>>> learn = GANLearner.wgan_gp(dls, basic_generator(32, 1), critic)  # doctest: +SKIP
>>> learn.fit(10); learn.show_results()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ember.callbacks.core import Callback
from ember.core.optimizer import Adam, OptFunc, RMSProp, lrs_for, param_groups, set_hyper
from ember.core.utils import eval_mode, listify
from ember.generative.gan_callbacks import (
    FixedGANSwitcher,
    GANSampleGrid,
    GANTrainer,
    image_grid,
    in_notebook,
)
from ember.generative.gan_checks import check_gan_shapes
from ember.generative.gan_losses import (
    CritLoss,
    GANLoss,
    GenLoss,
    adversarial_losses,
    gradient_penalty,
    wgan_critic_loss,
    wgan_gen_loss,
)
from ember.generative.gan_models import GANModule
from ember.learner.contracts import CanDecodePreds, LoadersLike
from ember.learner.learner import Learner
from ember.learner.optimizers import LR

__all__ = ["GANLearner"]


class GANLearner(Learner):
    """Train `generator` against `critic` on batches `(noise, real images)`: the course's GANLearner.

    `switcher` decides whose turn it is (default `FixedGANSwitcher()`: one critic batch, one generator
    batch); the critic trains first unless `gen_first`. `switch_eval` puts the resting network in eval mode.
    `clip` clamps the critic's weights to [-clip, clip] after each of its steps; `lambda_gp` adds that times
    the gradient penalty to its loss. `noise_input` (the course's GANs): the input is noise, drawn afresh
    for every training batch in the data's noise shape; False when it is an image (`from_learners`).
    `show_img` adds a `GANSampleGrid` (shown in a notebook). Other keyword arguments go to `Learner`.

    >>> learn = GANLearner(dls, generator, critic, wgan_gen_loss, wgan_critic_loss)  # doctest: +SKIP
    """

    def __init__(
        self,
        dls: LoadersLike,
        generator: nn.Module,
        critic: nn.Module,
        gen_loss_func: GenLoss,
        crit_loss_func: CritLoss,
        switcher: Callback | None = None,
        gen_first: bool = False,
        switch_eval: bool = True,
        clip: float | None = None,
        show_img: bool = True,
        lambda_gp: float = 0.0,
        noise_input: bool = True,
        opt_func: OptFunc = Adam,
        lr: LR = 1e-3,
        cbs: Callback | Sequence[Callback] | None = None,
        **kwargs: Any,
    ) -> None:
        self.gen_first, self.switch_eval, self.clip = gen_first, switch_eval, clip
        self.lambda_gp, self.noise_input = lambda_gp, noise_input
        self.trainable: dict[nn.Parameter, bool] = {}  # requires_grad before the first switch
        self.sample_grids: list[tuple[int, Any]] = []  # (epoch, PIL image), from GANSampleGrid
        self.switcher = switcher if switcher is not None else FixedGANSwitcher()
        grid = [GANSampleGrid(show=in_notebook())] if show_img and noise_input else []
        own: list[Callback] = [GANTrainer(), self.switcher, *grid]
        model, loss = GANModule(generator, critic), GANLoss(gen_loss_func, crit_loss_func)
        super().__init__(dls, model, loss, opt_func, lr, cbs=[*own, *listify(cbs)], **kwargs)
        self._noise_shape, self._img_shape = check_gan_shapes(self.dls, self.model, noise_input)

    # ---- the course's three ways to build one -----------------------------------------------------
    @classmethod
    def wgan(cls, dls: LoadersLike, generator: nn.Module, critic: nn.Module, switcher: Callback | None = None,
             clip: float = 0.01, switch_eval: bool = False, **kwargs: Any) -> GANLearner:  # fmt: skip
        """The clipped Wasserstein GAN (Arjovsky et al. 2017), as the course trains it: Wasserstein losses,
        critic weights clipped to [-0.01, 0.01], five critic batches per generator batch, RMSProp without
        momentum at lr 5e-5 (the paper's) and no weight decay. `learn.fit(n)` trains at that lr.

        >>> learn = GANLearner.wgan(dls, basic_generator(64, 3), basic_critic(64, 3))  # doctest: +SKIP
        """
        kwargs = {"opt_func": RMSProp, "lr": 5e-5, "moms": (0.0, 0.0, 0.0)} | kwargs  # no momentum, ever
        switcher = switcher if switcher is not None else FixedGANSwitcher(n_crit=5, n_gen=1)
        return cls(dls, generator, critic, wgan_gen_loss, wgan_critic_loss, switcher=switcher, clip=clip,
                   switch_eval=switch_eval, **kwargs)  # fmt: skip

    @classmethod
    def wgan_gp(cls, dls: LoadersLike, generator: nn.Module, critic: nn.Module, lambda_gp: float = 10.0,
                n_crit: int = 5, switcher: Callback | None = None, switch_eval: bool = False,
                **kwargs: Any) -> GANLearner:  # fmt: skip
        """WGAN with gradient penalty (Gulrajani et al. 2017): Wasserstein losses plus `lambda_gp` times the
        penalty on the critic's gradient norm at random mixes of real and generated images, no clipping,
        `n_crit` critic batches per generator batch, Adam(lr=1e-4, betas=(0, 0.9)) as the paper. Build the
        critic without batch norm (`basic_critic(..., norm_type=None)` or `NormType.Instance`).

        >>> critic = basic_critic(32, 1, norm_type=None)  # doctest: +SKIP
        >>> learn = GANLearner.wgan_gp(dls, basic_generator(32, 1), critic)  # doctest: +SKIP
        """
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules()):
            warnings.warn(
                "GANLearner.wgan_gp: the critic has batch norm, which mixes the images of a batch, but the "
                "gradient penalty is on each image's gradient; build it with norm_type=None or "
                "NormType.Instance (basic_critic(..., norm_type=None))",
                stacklevel=2,
            )
        adam = partial(Adam, mom=0.0, sqr_mom=0.9, eps=1e-8, wd=0.0)
        kwargs = {"opt_func": adam, "lr": 1e-4, "moms": (0.0, 0.0, 0.0)} | kwargs
        switcher = switcher if switcher is not None else FixedGANSwitcher(n_crit=n_crit, n_gen=1)
        return cls(dls, generator, critic, wgan_gen_loss, wgan_critic_loss, switcher=switcher,
                   switch_eval=switch_eval, lambda_gp=lambda_gp, **kwargs)  # fmt: skip

    @classmethod
    def from_learners(cls, gen_learn: Learner, crit_learn: Learner, switcher: Callback | None = None,
                      weights_gen: Sequence[float] | None = None, **kwargs: Any) -> GANLearner:  # fmt: skip
        """The lesson-7 super-resolution GAN from a pretrained generator learner (a U-Net on batches
        `(low-res input, target image)`) and a pretrained critic learner (label 1 = real; its loss, e.g.
        `AdaptiveLoss(nn.BCEWithLogitsLoss())`): generator loss `weights_gen[0] * adversarial +
        weights_gen[1] * gen_learn.loss_func(fake, target)` (see `adversarial_losses`); the critic compares
        the targets with `generator(input)`. Trains on `gen_learn.dls`.

        >>> learn = GANLearner.from_learners(learn_gen, learn_crit, weights_gen=(1.0, 50.0),
        ...     switcher=AdaptiveGANSwitcher(critic_thresh=0.65))  # doctest: +SKIP
        """
        gen_loss, crit_loss = adversarial_losses(gen_learn.loss_func, crit_learn.loss_func, weights_gen)
        kwargs = {"path": gen_learn.path, "model_dir": gen_learn.model_dir} | kwargs
        return cls(gen_learn.dls, gen_learn.model, crit_learn.model, gen_loss, crit_loss, switcher=switcher,
                   noise_input=False, **kwargs)  # fmt: skip

    # ---- turns ------------------------------------------------------------------------------------
    def switch(self, gen_mode: bool | None = None, force: bool = False) -> None:
        """Make the generator (`gen_mode`) or the critic the network that trains (None: the other one).
        The resting network's parameters get `requires_grad=False` (and eval mode with `switch_eval`); the
        flags they had before are given back when the fit ends."""
        model = self.model
        gen_mode = not model.gen_mode if gen_mode is None else gen_mode
        if gen_mode == model.gen_mode and not force:
            return
        model.gen_mode = gen_mode
        if not self.trainable:  # the flags before any switch, which GANTrainer gives back when the fit ends
            self.trainable = {p: p.requires_grad for p in model.parameters()}
        active, resting = (model.generator, model.critic) if gen_mode else (model.critic, model.generator)
        for p in active.parameters():
            p.requires_grad_(self.trainable.get(p, True))  # a layer the user froze stays frozen
        for p in resting.parameters():
            p.requires_grad_(False)
        if self.switch_eval:
            active.train(self.training)
            resting.eval()

    # ---- the step methods ---------------------------------------------------------------------------
    def forward(self) -> Tensor:
        gen, critic = self.model.generator, self.model.critic
        if self.model.gen_mode or not self.training:  # validation scores the generator
            self.fake = gen(*self.xb)  # (bs, c, h, w)
            return critic(self.fake)  # fake_pred: (bs,) or (bs, n_logits)
        with torch.no_grad():
            self.fake = gen(*self.xb)
        self.fake_pred = critic(self.fake)
        return critic(self.yb[0])  # real_pred

    def get_loss(self) -> None:
        if self.model.gen_mode or not self.training:
            loss = self.loss_func.generator(self.pred, self.fake, *self.yb)
        else:
            loss = self.loss_func.critic(self.pred, self.fake_pred)
            if self.lambda_gp:
                loss = loss + self.lambda_gp * gradient_penalty(self.model.critic, self.yb[0], self.fake)
        self.loss_grad, self.loss = loss, loss.detach()

    def step(self) -> None:
        if self.model.gen_mode:
            self.step_opts([self.opts[0]])
            return
        self.step_opts([self.opts[1]])
        if self.clip is not None:
            with torch.no_grad():
                for p in self.model.critic.parameters():
                    p.clamp_(-self.clip, self.clip)

    def zero_grad(self) -> None:
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)

    def create_opt(self) -> None:
        """Two optimizers from `opt_func`: the generator's (`opts[0]`), then the critic's (`opts[1]`)."""
        self.opts = [self._opt_for(self.model.generator), self._opt_for(self.model.critic)]
        self.set_lr(self.lr)
        for opt in self.opts if self.wd is not None else []:
            set_hyper(opt, "wd", [self.wd])

    def _opt_for(self, net: nn.Module) -> torch.optim.Optimizer:
        opt = self.opt_func(
            param_groups([list(net.parameters())], net, self.wd_bn_bias), lr=lrs_for(self.lr, 1)[0]
        )
        for g in opt.param_groups:
            if g["no_wd"]:  # norm layers and biases
                g["weight_decay"] = 0.0
        return opt

    # ---- the shared latent interface (ember.generative) ------------------------------------------
    @property
    def latent_dim(self) -> int:
        """The size of the generator's noise vector."""
        self._need_noise("latent_dim")
        return self._noise_shape[-1]

    @property
    def img_size(self) -> tuple[int, int]:
        """The generated images' `(h, w)`."""
        return self._img_shape[-2], self._img_shape[-1]

    @property
    def n_channels(self) -> int:
        return self._img_shape[0]

    def sample_z(self, n: int, seed: int | None = None) -> Tensor:
        """`(n, latent_dim)` standard-normal noise; the same seed gives the same noise."""
        self._need_noise("sample_z")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, *self._noise_shape, generator=g)

    def decode(self, z: Tensor, bs: int = 256) -> Tensor:
        """Generated images `(n, c, h, w)` in [0, 1] (denormalised), on the CPU, in eval mode. `z` is noise
        `(n, latent_dim)`; for an image-to-image GAN (`from_learners`), input images `(n, c, h, w)` as the
        loaders give them (normalised): there is no latent space, and `decode` is the generator's output.

        >>> imgs = learn.decode(learn.sample_z(4, seed=0))  # doctest: +SKIP
        """
        if self.noise_input and tuple(z.shape[1:]) != self._noise_shape:
            raise ValueError(f"GANLearner.decode: got noise of shape {tuple(z.shape)}, but the generator "
                             f"takes (n, {self.latent_dim}); make it with learn.sample_z(n)")  # fmt: skip
        outs = []
        with torch.no_grad(), eval_mode(self.model.generator):
            for chunk in z.split(bs):
                out = self.model.generator(chunk.to(self.dls.device))
                outs.append(self.to_unit(chunk, out))
        return torch.cat(outs)

    def latent_features(self, z: Tensor) -> Tensor:
        """The generator's first learned layer's output for noise `z` `(n, latent_dim)`, flattened to
        `(n, f)` on the CPU: the early features in which `latent_directions` finds the principal directions
        (GANSpace). A generator that is not an `nn.Sequential` gives its images instead."""
        gen = self.model.generator
        if not isinstance(gen, nn.Sequential):
            return self.decode(z).flatten(1)
        with torch.no_grad(), eval_mode(gen):
            x = z.to(self.dls.device)
            for layer in gen:  # up to and including the first layer with weights (reshapes come before it)
                x = layer(x)
                if any(True for _ in layer.parameters()):
                    break
        return x.flatten(1).float().cpu()

    def generate(self, n: int, seed: int | None = None) -> Tensor:
        """`n` generated images `(n, c, h, w)` in [0, 1]; the same seed gives the same images.

        >>> learn.generate(16, seed=0).shape  # doctest: +SKIP
        torch.Size([16, 1, 32, 32])
        """
        return self.decode(self.sample_z(n, seed))

    def to_unit(self, inputs: Tensor, images: Tensor) -> Tensor:
        """Generator outputs as floats in [0, 1] on the CPU: through the loaders' decoding (their Normalize
        undone); loaders that cannot decode are taken to hold images in [-1, 1], a tanh generator's range."""
        if isinstance(self.dls, CanDecodePreds):
            pix = self.dls.decode_preds(inputs.cpu(), images.detach().float().cpu())
        else:
            pix = (images.detach().float().cpu() + 1) / 2
        return pix.float() / 255 if pix.dtype == torch.uint8 else pix.float().clamp(0, 1)

    def show_results(
        self, ds_idx: int = 1, dl: Any = None, max_n: int = 16, seed: int = 0, **kwargs: Any
    ) -> Any:
        """Images generated from fixed noise (`seed`), denormalised, in a grid; for an image-to-image GAN,
        a batch's inputs, targets and generated images (split `ds_idx`, or the training set if it is empty).

        >>> learn.show_results(max_n=16)  # doctest: +SKIP
        """
        if not self.noise_input:
            loader = dl if dl is not None else (self.dls[ds_idx] if len(self.dls[ds_idx]) else self.dls.train)
            batch = loader.one_batch()
            with torch.no_grad(), eval_mode(self.model.generator):
                fake = self.model.generator(batch[0])
            return self.dls.show_results(batch, fake, max_n, **kwargs)
        from ember.vision.core import show_image  # lazily: matplotlib

        return show_image(image_grid(self.generate(max_n, seed=seed)), vmin=0, vmax=255, **kwargs).figure

    def _need_noise(self, what: str) -> None:
        if not self.noise_input:
            raise TypeError(
                f"GANLearner.{what}: this generator takes images, not noise (an image-to-image GAN, "
                "from_learners): it has no latent space; decode(x) runs it on input images"
            )
