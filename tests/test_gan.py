"""GANLearner on tiny synthetic data (a dozen 16 px images, noise of size 8, 8-feature networks): which
network each step trains, the turns, clipping, the gradient penalty against a hand computation, exact
resume from a checkpoint, denormalised samples, the divergence and shape errors; then WGAN-GP on the real
MNIST digits (slow)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ember.callbacks.core import Callback
from ember.data import DataBlock, IndexSplitter, TransformBlock
from ember.generative.gan import GANLearner
from ember.generative.gan_callbacks import (
    AdaptiveGANSwitcher,
    FixedGANSwitcher,
    GANDiscriminativeLR,
    GANDivergedError,
    GANSampleGrid,
)
from ember.generative.gan_losses import (
    AdaptiveLoss,
    accuracy_thresh_expand,
    gradient_penalty,
    wgan_critic_loss,
    wgan_gen_loss,
)
from ember.generative.gan_models import basic_critic, basic_generator, gan_critic, generate_noise
from ember.models.conv import NormType
from ember.vision.all import ImageBlock, Normalize, PILImage, PILImageBW, Resize, get_image_files


def _images(folder, n=12, rgb=False):
    """`n` 16 px images: a bright square at a different place on a dark ground."""
    folder.mkdir(exist_ok=True)
    for i in range(n):
        a = np.full((16, 16, 3) if rgb else (16, 16), 20, np.uint8)
        r, c = (i * 3) % 10, (i * 5) % 10
        a[r : r + 6, c : c + 6] = 230
        Image.fromarray(a).save(folder / f"{i:02d}.png")
    return folder


def _dls(path, bs=4, noise=8, rgb=False, mean=0.5, std=0.5, valid=()):
    c = 3 if rgb else 1
    dblock = DataBlock(
        blocks=(TransformBlock, ImageBlock(cls=PILImage if rgb else PILImageBW)),
        get_x=partial(generate_noise, size=noise), get_items=get_image_files, splitter=IndexSplitter(valid),
        item_tfms=Resize(16), batch_tfms=Normalize.from_stats([mean] * c, [std] * c),
    )  # fmt: skip
    return dblock.dataloaders(_images(path / "imgs", rgb=rgb), bs=bs, num_workers=0)


def _nets(seed=0, c=1, norm_type=None):
    torch.manual_seed(seed)
    return basic_generator(16, c, in_sz=8, n_features=8), basic_critic(
        16, c, n_features=8, norm_type=norm_type
    )


def _wgan(path, quiet=True, **kwargs):
    return GANLearner.wgan(_dls(path), *_nets(), show_img=False, quiet=quiet, **kwargs)


class _Record(Callback):
    """Per training step: which network trained, which parameters changed and which got gradients."""

    order = 10  # after the switcher's before_batch (0): the turn is set

    def before_fit(self):
        self.modes, self.changed, self.with_grad, self.crit_lrs = [], [], [], []

    def before_batch(self):
        if self.learn.training:
            self._before = {n: p.detach().clone() for n, p in self.learn.model.named_parameters()}

    def after_backward(self):  # before the step, after which an adaptive switcher may switch
        model = self.learn.model
        self.modes.append("G" if model.gen_mode else "C")
        self.with_grad.append({n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None})
        self.crit_lrs.append(self.learn.opts[1].param_groups[0]["lr"])

    def after_step(self):
        named = self.learn.model.named_parameters()
        self.changed.append({n.split(".")[0] for n, p in named if not torch.equal(p, self._before[n])})


# ---- which network a step trains -------------------------------------------------------------------
def test_a_critic_step_changes_only_the_critic_and_a_generator_step_only_the_generator(tmp_path):
    rec = _Record()
    learn = GANLearner(_dls(tmp_path), *_nets(norm_type=NormType.Batch), wgan_gen_loss, wgan_critic_loss,
                       show_img=False, quiet=True, lr=1e-2)  # fmt: skip
    learn.fit(2, cbs=rec)
    assert rec.modes == ["C", "G"] * 3
    for mode, changed, grads in zip(rec.modes, rec.changed, rec.with_grad):
        net = {"C": "critic", "G": "generator"}[mode]
        assert changed == {net} and grads == {net}
    assert all(p.requires_grad for p in learn.model.parameters())  # given back after the fit
    assert len(learn.opts) == 2
    gen_params = {id(p) for p in learn.model.generator.parameters()}
    assert {id(p) for g in learn.opts[0].param_groups for p in g["params"]} == gen_params


def test_a_layer_frozen_before_the_fit_stays_frozen_through_the_turns(tmp_path):
    learn = _wgan(tmp_path)
    first = learn.model.generator[1][0].weight
    first.requires_grad_(False)
    before = first.detach().clone()
    learn.fit(2)
    assert torch.equal(first, before) and not first.requires_grad


def test_the_fixed_switcher_takes_exactly_n_crit_critic_steps_per_generator_step(tmp_path):
    rec = _Record()
    learn = GANLearner.wgan(_dls(tmp_path, bs=2), *_nets(), show_img=False, quiet=True)  # n_crit=5 default
    learn.fit(3, cbs=rec)  # 6 batches an epoch
    assert "".join(rec.modes) == "CCCCCG" * 3
    learn = GANLearner(_dls(tmp_path, bs=2), *_nets(), wgan_gen_loss, wgan_critic_loss, gen_first=True,
                       switcher=FixedGANSwitcher(n_crit=2, n_gen=3), show_img=False, quiet=True)  # fmt: skip
    learn.fit(2, cbs=rec)
    assert "".join(rec.modes) == "GGGCCGGGCCGG"


def test_the_adaptive_switcher_changes_network_when_a_loss_is_under_its_threshold(tmp_path):
    rec = _Record()
    switcher = AdaptiveGANSwitcher(gen_thresh=-math.inf, critic_thresh=None)  # the generator never hands back
    learn = GANLearner(_dls(tmp_path, bs=2), *_nets(), wgan_gen_loss, wgan_critic_loss, switcher=switcher,
                       show_img=False, quiet=True)  # fmt: skip
    learn.fit(1, cbs=rec)
    assert "".join(rec.modes) == "CGGGGG"


def test_discriminative_lr_multiplies_the_critic_lr_on_critic_batches_only(tmp_path):
    rec = _Record()
    learn = GANLearner(_dls(tmp_path), *_nets(), wgan_gen_loss, wgan_critic_loss, show_img=False, quiet=True)
    learn.fit(1, 1e-3, cbs=[rec, GANDiscriminativeLR(mult_lr=5.0)])
    assert rec.modes == ["C", "G", "C"]
    assert rec.crit_lrs == pytest.approx([5e-3, 1e-3, 5e-3])
    assert learn.opts[1].param_groups[0]["lr"] == pytest.approx(1e-3)


# ---- WGAN: clipping, the gradient penalty ------------------------------------------------------------
def test_clipping_keeps_every_critic_weight_in_minus_c_c(tmp_path):
    learn = _wgan(tmp_path, clip=0.01, lr=0.1)
    learn.fit(2)
    w = torch.cat([p.detach().flatten() for p in learn.model.critic.parameters()])
    assert w.abs().max() <= 0.01 and (w.abs() == 0.01).float().mean() > 0.5  # most pushed to the bound
    assert any(p.abs().max() > 0.01 for p in learn.model.generator.parameters())  # the generator is free


def _tiny_critic():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 1))


def test_the_gradient_penalty_equals_a_hand_computation_image_by_image():
    critic, real, fake = _tiny_critic(), torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    eps = torch.tensor([0.2, 0.5, 0.9])
    expected = []
    for i in range(3):
        x = (eps[i] * real[i : i + 1] + (1 - eps[i]) * fake[i : i + 1]).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        expected.append((g.norm() - 1) ** 2)
    gp = gradient_penalty(critic, real, fake, eps=eps)
    torch.testing.assert_close(gp, torch.stack(expected).mean())
    gp.backward()  # the graph was kept: the critic's weights get the penalty's gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (critic[0].weight, critic[3].weight))


def test_the_gradient_penalty_is_zero_for_a_critic_whose_gradient_has_unit_norm():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    w = torch.randn(1, 16)
    with torch.no_grad():
        critic[1].weight.copy_(w / w.norm())
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic[1].weight.mul_(3.0)  # gradient norm 3: penalty (3 - 1)**2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_wgan_gp_adds_lambda_times_the_penalty_to_the_critic_loss_only(tmp_path):
    learn = GANLearner.wgan_gp(_dls(tmp_path), *_nets(), lambda_gp=10.0, show_img=False, quiet=True)
    noise, real = learn.dls.one_batch()
    learn.xb, learn.yb, learn.training = (noise,), (real,), True
    learn.switch(False, force=True)
    learn.pred = learn.forward()
    torch.manual_seed(5)
    learn.get_loss()
    critic, fake = learn.model.critic, learn.fake
    torch.manual_seed(5)  # the same mixing weights
    gp = gradient_penalty(critic, real, fake)
    expected = critic(fake).mean() - critic(real).mean() + 10.0 * gp
    torch.testing.assert_close(learn.loss, expected.detach())
    learn.switch(True)
    learn.pred = learn.forward()
    learn.get_loss()
    torch.testing.assert_close(learn.loss, -critic(generator_out := learn.fake).mean().detach())
    assert generator_out.requires_grad


def test_the_wgan_factories_use_the_papers_optimizers_and_turns(tmp_path):
    learn = _wgan(tmp_path)
    learn.create_opt()
    opt = learn.opts[1]
    assert isinstance(opt, torch.optim.RMSprop) and opt.param_groups[0]["momentum"] == 0.0
    assert opt.param_groups[0]["lr"] == 5e-5 and learn.clip == 0.01 and learn.switcher.n_crit == 5
    gp = GANLearner.wgan_gp(_dls(tmp_path), *_nets(), show_img=False, quiet=True)
    gp.fit_one_cycle(1)  # a momentum schedule must not give Adam back its beta1
    g = gp.opts[1].param_groups[0]
    assert g["betas"] == (0.0, 0.9) and g["weight_decay"] == 0.0 and gp.clip is None and gp.lambda_gp == 10.0
    with pytest.warns(UserWarning, match="batch norm"):
        GANLearner.wgan_gp(_dls(tmp_path), *_nets(norm_type=NormType.Batch), show_img=False, quiet=True)


# ---- the epoch table, checkpoints, samples ----------------------------------------------------------
def test_an_empty_validation_set_trains_and_the_table_shows_each_networks_mean_loss(tmp_path, capsys):
    class Losses(Callback):
        def before_fit(self):
            self.by_net = {"G": [], "C": []}

        def after_loss(self):
            if self.learn.training:
                self.by_net["G" if self.learn.model.gen_mode else "C"].append(self.learn.loss.item())

    seen = Losses()
    learn = GANLearner(_dls(tmp_path), *_nets(), wgan_gen_loss, wgan_critic_loss, show_img=False, cbs=seen)
    learn.fit(1)
    out = capsys.readouterr().out
    assert "gen_loss" in out and "crit_loss" in out and "nan" not in out.lower()
    row = learn.recorder.history[-1]
    assert row["valid_loss"] is None and len(learn.dls.valid) == 0
    assert row["gen_loss"] == pytest.approx(np.mean(seen.by_net["G"]))
    assert row["crit_loss"] == pytest.approx(np.mean(seen.by_net["C"]))
    assert learn.recorder.value("crit_loss") == row["crit_loss"]


def test_a_validation_set_is_scored_with_the_generators_loss(tmp_path):
    learn = GANLearner(_dls(tmp_path, valid=[0, 1, 2, 3]), *_nets(), wgan_gen_loss, wgan_critic_loss,
                       show_img=False, quiet=True)  # fmt: skip
    learn.fit(1)
    row = learn.recorder.history[-1]
    assert math.isfinite(row["valid_loss"]) and math.isfinite(row["gen_loss"])


def test_save_and_load_with_both_optimizers_resume_exactly(tmp_path):
    dls = _dls(tmp_path)
    a = GANLearner.wgan_gp(dls, *_nets(0), n_crit=1, show_img=False, quiet=True)
    a.fit(2)
    a.save("stage")
    b = GANLearner.wgan_gp(dls, *_nets(1), n_crit=1, show_img=False, quiet=True)
    b.load("stage")
    c = GANLearner.wgan_gp(dls, *_nets(2), n_crit=1, show_img=False, quiet=True)
    c.load("stage", with_opt=False)  # same weights, fresh Adam moments
    for learn in (a, b, c):
        torch.manual_seed(7)
        learn.fit(1)
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(), c.model.parameters()))


def test_the_sample_grid_is_denormalised_through_the_loaders_normalize(tmp_path):
    class Const(nn.Module):  # a generator whose images are known: ramps over the channels
        def __init__(self, img):
            super().__init__()
            self.img, self.p = img, nn.Parameter(torch.zeros(()))

        def forward(self, z):
            return self.img.expand(len(z), -1, -1, -1) + 0 * self.p

    img = torch.zeros(3, 16, 16)
    img[0], img[1, :, :8], img[2] = 1.0, -1.0, -1.5  # red at the data's max; blue far below its range
    mean, std = 0.2, 0.3
    dls = _dls(tmp_path, rgb=True, mean=mean, std=std)
    learn = GANLearner(dls, Const(img), basic_critic(16, 3, n_features=8), wgan_gen_loss, wgan_critic_loss,
                       show_img=False, quiet=True)  # fmt: skip
    learn.fit(1, cbs=GANSampleGrid(n=4, seed=0, path="samples"))
    expected = (img * std + mean).clamp(0, 1)  # (1 * 0.3 + 0.2) = 0.5 red; 0.2 - 0.3 < 0: no blue
    torch.testing.assert_close(learn.generate(2)[0], expected, atol=1 / 255, rtol=0)
    epoch, grid = learn.sample_grids[0]
    saved = np.asarray(Image.open(tmp_path / "samples" / "epoch_0.png"))
    assert epoch == 0 and saved.shape == (2 + 2 * 18, 2 + 2 * 18, 3)
    assert np.array_equal(saved, np.asarray(grid))
    first = saved[2:18, 2:18]  # the first image, after the 2 px border
    assert first[0, 0].tolist() == [128, 0, 0] and first[0, 12].tolist() == [128, 51, 0]  # 0.5 and 0.2 of 255


def test_generate_is_reproducible_by_seed_and_show_results_draws_it(tmp_path):
    learn = _wgan(tmp_path)
    a, b, c = learn.generate(5, seed=1), learn.generate(5, seed=1), learn.generate(5, seed=2)
    assert a.shape == (5, 1, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert learn.latent_dim == 8 and learn.img_size == (16, 16) and learn.n_channels == 1
    assert torch.equal(learn.sample_z(3, seed=4), learn.sample_z(3, seed=4))
    assert learn.show_results(max_n=4) is not None
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        learn.decode(torch.randn(2, 100))


# ---- errors ------------------------------------------------------------------------------------------
def test_a_nan_loss_stops_training_naming_the_network_that_diverged(tmp_path):
    def nan_gen_loss(fake_pred, output, target):
        return fake_pred.mean() * float("nan")

    learn = GANLearner(_dls(tmp_path), *_nets(), nan_gen_loss, wgan_critic_loss, show_img=False, quiet=True)
    with pytest.raises(GANDivergedError, match=r"generator's loss became nan.*the generator diverged.*lower"):
        learn.fit(1)
    assert all(p.requires_grad for p in learn.model.parameters())  # usable again
    g, c = _nets()
    with torch.no_grad():
        g[1][0].weight.fill_(float("inf"))  # its weights are broken: the critic's loss shows it first
    learn = GANLearner(_dls(tmp_path), g, c, wgan_gen_loss, wgan_critic_loss, show_img=False, quiet=True)
    with pytest.raises(
        GANDivergedError, match=r"critic's loss became nan.*the generator diverged \(its weights"
    ):
        learn.fit(1)


def test_networks_built_for_other_images_fail_before_training_naming_both_shapes(tmp_path):
    dls = _dls(tmp_path)  # (1, 16, 16) images, noise (8,)
    with pytest.raises(ValueError, match=r"generator makes images of shape \(1, 32, 32\).*are \(1, 16, 16\)"):
        GANLearner.wgan(
            dls, basic_generator(32, 1, in_sz=8, n_features=8), basic_critic(32, 1), show_img=False
        )
    with pytest.raises(ValueError, match=r"\(3, 16, 16\).*n_channels=1"):
        GANLearner.wgan(
            dls, basic_generator(16, 3, in_sz=8, n_features=8), basic_critic(16, 1), show_img=False
        )
    with pytest.raises(ValueError, match=r"critic was built for \(1, 32, 32\)"):
        GANLearner.wgan(
            dls, basic_generator(16, 1, in_sz=8, n_features=8), basic_critic(32, 1), show_img=False
        )


def test_noise_of_another_size_than_the_generator_takes_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"noise is \(8,\).*takes \(100,\).*generate_noise, size=100"):
        GANLearner.wgan(_dls(tmp_path), basic_generator(16, 1), basic_critic(16, 1), show_img=False)


# ---- the super-resolution GAN --------------------------------------------------------------------------
def test_from_learners_weights_the_adversarial_and_the_generator_loss(tmp_path):
    from ember.learner.learner import Learner

    grey = ImageBlock(cls=PILImageBW)
    dblock = DataBlock(blocks=(grey, grey), get_items=get_image_files, splitter=IndexSplitter([]),
                       item_tfms=Resize(32), batch_tfms=Normalize.from_stats([0.5], [0.5]))  # fmt: skip
    dls = dblock.dataloaders(_images(tmp_path / "imgs"), bs=4, num_workers=0)
    torch.manual_seed(0)
    gen_learn = Learner(dls, nn.Conv2d(1, 1, 3, padding=1), loss_func=nn.L1Loss(), quiet=True)
    critic = gan_critic(n_channels=1, nf=8, n_blocks=1)
    crit_learn = Learner(dls, critic, loss_func=AdaptiveLoss(nn.BCEWithLogitsLoss()), quiet=True)
    learn = GANLearner.from_learners(gen_learn, crit_learn, weights_gen=(1.0, 50.0), quiet=True)
    x, y = dls.one_batch()
    learn.xb, learn.yb, learn.training = (x,), (y,), True
    learn.switch(True, force=True)  # switch_eval: the resting critic in eval mode (no dropout)
    learn.pred = learn.forward()
    learn.get_loss()
    fake = gen_learn.model(x)
    logits = critic(fake)
    expected = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    torch.testing.assert_close(learn.loss, (expected + 50.0 * (fake - y).abs().mean()).detach())
    learn.fit(1)
    assert learn.decode(x).shape == (4, 1, 32, 32)
    with pytest.raises(TypeError, match="no latent space"):
        learn.sample_z(2)


def test_adaptive_loss_and_accuracy_expand_a_label_per_image_over_the_critics_grid():
    logits, labels = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2]]), torch.tensor([1, 0])
    grid = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    expected = nn.functional.binary_cross_entropy_with_logits(logits, grid)
    torch.testing.assert_close(AdaptiveLoss(nn.BCEWithLogitsLoss())(logits, labels), expected)
    assert accuracy_thresh_expand(logits, labels).item() == pytest.approx(
        4 / 6
    )  # right: 2.0, 0.5, -3.0, -0.2


# ---- real data -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_wgan_gp_on_mnist_digits_moves_its_samples_toward_the_data():
    from ember.data import untar_data
    from ember.data.external import URLs

    torch.manual_seed(0)
    noise = partial(generate_noise, size=32)
    dblock = DataBlock(blocks=(TransformBlock, ImageBlock(cls=PILImageBW)), get_x=noise,
                       get_items=get_image_files, splitter=IndexSplitter([]), item_tfms=Resize(32),
                       batch_tfms=Normalize.from_stats([0.5], [0.5]))  # fmt: skip
    dls = dblock.dataloaders(untar_data(URLs.MNIST5K) / "train", bs=32, num_workers=0)  # 4,000 digits
    g = basic_generator(32, 1, in_sz=32, n_features=8)
    c = basic_critic(32, 1, n_features=8, norm_type=None)
    learn = GANLearner.wgan_gp(dls, g, c, show_img=False, quiet=True)
    before = learn.generate(256, seed=0)
    learn.fit(15)  # 125 batches an epoch, one in 6 the generator's: 312 generator steps (~50 s on one core)
    after = learn.generate(256, seed=0)
    real = torch.cat([learn.to_unit(xb, yb) for xb, yb in [dls.one_batch() for _ in range(8)]])
    hist = learn.recorder.history
    assert all(math.isfinite(h["gen_loss"]) and math.isfinite(h["crit_loss"]) for h in hist)
    # Untrained, the samples are mid-grey noise (mean 0.49, std 0.04); the digits are mostly black (mean
    # 0.13, std 0.28). Measured after 312 steps: mean 0.26, std 0.15.
    assert abs(after.mean() - real.mean()) < 0.5 * abs(before.mean() - real.mean())
    assert abs(after.std() - real.std()) < 0.75 * abs(before.std() - real.std())


def test_latent_features_are_the_generators_first_conv_layer_output_for_ganspace(tmp_path):
    from ember.generative.latent import latent_directions

    learn = _wgan(tmp_path)
    z = learn.sample_z(5, seed=1)
    feats = learn.latent_features(z)
    gen = learn.model.generator.eval()
    with torch.no_grad():
        want = gen[1](gen[0](z)).flatten(1)  # Unflatten, then the first transposed ConvLayer
    torch.testing.assert_close(feats, want)
    dirs = latent_directions(learn, k=3, n=64)
    assert dirs.directions.shape == (3, learn.latent_dim)
