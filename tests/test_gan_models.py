"""The GAN networks: DCGAN's generator and critic at every power-of-two size, the super-resolution critic's
grid of logits, the noise, and the module that holds both networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ember.generative.gan_models import GANModule, basic_critic, basic_generator, gan_critic, generate_noise
from ember.models.conv import NormType, SelfAttention


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("n_channels", [1, 3])
def test_the_generator_makes_images_of_the_asked_size_in_tanh_range(size, n_channels):
    g = basic_generator(size, n_channels, in_sz=8, n_features=8, n_extra_layers=1)
    x = g(torch.randn(3, 8) * 10)
    assert x.shape == (3, n_channels, size, size)
    assert x.abs().max() <= 1 and x.abs().max() > 0.5  # tanh: in [-1, 1], and reaching out to it


def test_the_generator_doubles_the_image_and_halves_the_channels_from_4px():
    g = basic_generator(32, 1, in_sz=8, n_features=8)
    sizes, x = [], torch.randn(2, 8)
    for layer in g:
        x = layer(x)
        if x.ndim == 4:
            sizes.append(tuple(x.shape[1:]))
    # DCGAN: n_features * out_size / 8 channels at 4 px, halved at each doubling, then n_channels
    assert sizes == [(8, 1, 1), (32, 4, 4), (16, 8, 8), (8, 16, 16), (1, 32, 32), (1, 32, 32)]


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_the_critic_gives_one_logit_per_image(size):
    c = basic_critic(size, 3, n_features=8, n_extra_layers=1)
    assert c(torch.randn(5, 3, size, size)).shape == (5,)


def test_the_critic_doubles_the_channels_as_it_halves_the_image_and_has_no_norm_on_its_first_conv():
    c = basic_critic(32, 1, n_features=8)
    convs = [m for m in c.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(1, 8), (8, 16), (16, 32), (32, 1)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in c[0].modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in c.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in basic_critic(32, 1, norm_type=None).modules())
    leaky = [m for m in c.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)


@pytest.mark.parametrize("make", [lambda: basic_generator(28, 1), lambda: basic_critic(28, 1)])
def test_a_size_that_is_not_a_power_of_two_is_refused_saying_how_to_resize(make):
    with pytest.raises(ValueError, match=r"power of two.*Resize\(32\)"):
        make()


def test_gan_critic_ends_in_a_grid_of_logits_with_spectral_norm_dropout_and_self_attention():
    c = gan_critic(n_channels=1, nf=8, n_blocks=1, p=0.15)
    assert c(torch.randn(2, 1, 32, 32)).shape == (2, 25)  # 32 -> 16 -> 8 -> a 5x5 grid
    assert gan_critic(n_channels=3, nf=8, n_blocks=2)(torch.randn(2, 3, 64, 64)).shape == (2, 25)
    convs = [m for m in c.modules() if isinstance(m, nn.Conv2d)]
    assert all(hasattr(m, "parametrizations") for m in convs)  # spectral norm on every conv
    assert sum(isinstance(m, SelfAttention) for m in c.modules()) == 1
    assert sorted(m.p for m in c.modules() if isinstance(m, nn.Dropout2d)) == [0.075, 0.15]


def test_generate_noise_is_standard_normal_of_the_asked_size_whatever_the_item():
    torch.manual_seed(0)
    z = torch.stack([generate_noise("any.png", size=50) for _ in range(200)])
    assert z.shape == (200, 50)
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03
    assert generate_noise(None).shape == (100,)


def test_the_gan_module_runs_the_generator_in_gen_mode_and_holds_both_networks():
    g, c = basic_generator(16, 1, in_sz=8, n_features=8), basic_critic(16, 1, n_features=8)
    m = GANModule(g, c).eval()
    z, img = torch.randn(2, 8), torch.randn(2, 1, 16, 16)
    assert torch.equal(m(img), c(img))
    m.gen_mode = True
    assert torch.equal(m(z), g(z))
    keys = m.state_dict().keys()
    assert any(k.startswith("generator.") for k in keys) and any(k.startswith("critic.") for k in keys)


def test_an_instance_norm_critic_has_no_batch_norm():
    c = basic_critic(16, 1, n_features=8, norm_type=NormType.Instance)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in c.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in c.modules())


def test_the_dcgan_networks_describe_themselves_for_an_export_and_rebuild_the_same():
    from ember.core.serial import ConfigError, from_config, to_config

    for net in (basic_generator(16, 3, in_sz=8, n_features=8, n_extra_layers=1),
                basic_critic(16, 3, n_features=8, norm_type=NormType.Instance)):  # fmt: skip
        cfg = to_config(net)
        rebuilt = from_config(cfg)
        assert type(rebuilt) is type(net) and rebuilt.load_state_dict(net.state_dict()).missing_keys == []
    assert to_config(basic_critic(16, 1, norm_type=None))["norm_type"] is None
    with pytest.raises(ConfigError, match="ConvLayer options"):
        to_config(basic_generator(16, 1, norm_type=None))
