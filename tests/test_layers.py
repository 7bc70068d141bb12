"""The course's conv layers (ConvLayer, ResBlock, PixelShuffle_ICNR, SelfAttention, MergeLayer, simple_cnn)
and hooks as a user tool that always removes itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember.vision.all import (
    ConvLayer,
    MergeLayer,
    NormType,
    PixelShuffle_ICNR,
    ResBlock,
    SelfAttention,
    dummy_eval,
    hook_output,
    hook_outputs,
    model_sizes,
    num_features_model,
    simple_cnn,
)


def test_conv_layer_keeps_the_size_at_stride_1_and_drops_the_bias_before_a_norm():
    layer = ConvLayer(3, 8, ks=5)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert layer[0].padding == (2, 2) and layer[0].bias is None
    assert layer(torch.randn(2, 3, 11, 7)).shape == (2, 8, 11, 7)
    plain = ConvLayer(3, 8, stride=2, norm_type=None, act_cls=None)
    assert len(plain) == 1 and plain[0].bias is not None and plain[0].bias.abs().sum() == 0
    assert plain(torch.randn(1, 3, 9, 9)).shape == (1, 8, 5, 5)
    assert [type(m) for m in ConvLayer(3, 8, bn_1st=False)] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert isinstance(ConvLayer(3, 8, ndim=1)[0], nn.Conv1d)
    assert isinstance(ConvLayer(3, 8, ks=2, stride=2, transpose=True)[0], nn.ConvTranspose2d)
    assert isinstance(ConvLayer(3, 8, xtra=nn.Dropout())[-1], nn.Dropout)


def test_batch_zero_and_instance_zero_start_the_norm_scale_at_zero():
    assert ConvLayer(3, 8)[1].weight.eq(1).all()
    assert ConvLayer(3, 8, norm_type=NormType.BatchZero)[1].weight.eq(0).all()
    inst = ConvLayer(3, 8, norm_type=NormType.InstanceZero)[1]
    assert isinstance(inst, nn.InstanceNorm2d) and inst.affine and inst.weight.eq(0).all()
    assert ConvLayer(3, 8, norm_type=NormType.Instance)[1].weight.eq(1).all()


def test_weight_norm_reparametrises_the_conv_as_g_times_v_over_its_norm():
    conv = ConvLayer(3, 4, norm_type=NormType.Weight, act_cls=None)[0]
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(3.0)
    expected = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(conv.weight, expected)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, expected, conv.bias, padding=1))


def test_spectral_norm_scales_the_weight_to_largest_singular_value_one():
    layer = ConvLayer(8, 16, norm_type=NormType.Spectral, act_cls=None)
    conv = layer[0]
    for _ in range(30):  # power iteration converges over forward passes in training mode
        layer(torch.randn(1, 8, 4, 4))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(sigma.item() - 1) < 0.05


def test_a_new_resblock_is_its_identity_path_because_its_last_norm_starts_at_zero():
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(ResBlock(1, 16, 16)(x), F.relu(x))
    pooled = F.avg_pool2d(x, 2, ceil_mode=True)  # (2, 16, 5, 5)
    torch.testing.assert_close(ResBlock(1, 16, 16, stride=2)(x), F.relu(pooled))
    changed = ResBlock(1, 16, 32, stride=2)
    assert changed(x).shape == (2, 32, 5, 5) and isinstance(changed.idconv, ConvLayer)


def test_a_bottleneck_resblock_expands_its_channels():
    block = ResBlock(4, 16, 8)  # takes 16 * 4 channels, puts out 8 * 4
    assert [c[0].kernel_size for c in block.convs] == [(1, 1), (3, 3), (1, 1)]
    assert block(torch.randn(1, 64, 6, 6)).shape == (1, 32, 6, 6)


def _checkerboard_free(out: torch.Tensor) -> bool:
    """Each 2x2 block of the upsampled map holds one value."""
    return all(torch.allclose(out[..., i::2, j::2], out[..., ::2, ::2]) for i in (0, 1) for j in (0, 1))


@pytest.mark.parametrize("norm_type", [NormType.Weight, None, NormType.Batch])
def test_icnr_makes_the_pixel_shuffle_start_free_of_checkerboard(norm_type):
    torch.manual_seed(0)
    up = PixelShuffle_ICNR(8, 4, norm_type=norm_type)
    out = up(torch.randn(2, 8, 5, 3))
    assert out.shape == (2, 4, 10, 6) and _checkerboard_free(out)
    # the same layers initialised as usual do show it: the property comes from the ICNR init
    plain = nn.Sequential(nn.Conv2d(8, 16, 1), nn.PixelShuffle(2))
    assert not _checkerboard_free(plain(torch.randn(2, 8, 5, 3)))


def test_pixel_shuffle_with_blur_keeps_the_upsampled_size():
    up = PixelShuffle_ICNR(8, blur=True)
    assert up(torch.randn(1, 8, 5, 3)).shape == (1, 8, 10, 6)


def test_self_attention_starts_as_the_identity_and_then_attends_as_sagan():
    torch.manual_seed(0)
    sa = SelfAttention(16)
    x = torch.randn(2, 16, 3, 5)
    assert torch.equal(sa(x), x)
    with torch.no_grad():
        sa.gamma.fill_(0.5)
    flat = x.flatten(2)  # (bs, c, n)
    f = torch.einsum("oc,bcn->bon", sa.query.weight[..., 0], flat)
    g = torch.einsum("oc,bcn->bon", sa.key.weight[..., 0], flat)
    h = torch.einsum("oc,bcn->bon", sa.value.weight[..., 0], flat)
    beta = torch.softmax(torch.einsum("bci,bcj->bij", f, g), dim=1)  # beta[i, j]: weight of pixel i for j
    expected = 0.5 * torch.einsum("bci,bij->bcj", h, beta) + flat
    torch.testing.assert_close(sa(x), expected.view_as(x))


def test_merge_layer_adds_or_concatenates_what_it_is_given():
    x, orig = torch.ones(1, 2, 3, 3), torch.full((1, 2, 3, 3), 2.0)
    assert MergeLayer()(x, orig).eq(3).all()
    assert torch.equal(MergeLayer(dense=True)(x, orig), torch.cat([x, orig], 1))


def test_simple_cnn_downsamples_then_pools_and_flattens():
    model = simple_cnn([3, 16, 16, 10], bn=True)
    assert model(torch.randn(4, 3, 28, 28)).shape == (4, 10)
    assert isinstance(model[0][1], nn.BatchNorm2d) and not isinstance(model[2][1], nn.BatchNorm2d)
    assert simple_cnn([3, 8], kernel_szs=[5], strides=[1])[0][0].kernel_size == (5, 5)
    with pytest.raises(ValueError, match="one per conv"):
        simple_cnn([3, 8, 8], strides=[2])


# ---- hooks ---------------------------------------------------------------------------------------------
def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 1))


def test_a_hook_stores_the_output_and_is_gone_after_the_with_block():
    m = _net()
    x = torch.randn(1, 3, 8, 8)
    with hook_output(m[0]) as h:
        out = m(x)
    torch.testing.assert_close(h.stored, m[0](x))
    assert not h.stored.requires_grad and out.requires_grad
    assert len(m[0]._forward_hooks) == 0
    m(torch.randn(1, 3, 16, 16))
    assert h.stored.shape == (1, 4, 4, 4)  # not updated any more


def test_hooks_are_removed_even_when_the_block_raises():
    m = _net()
    with pytest.raises(RuntimeError, match="boom"), hook_outputs(m) as hs:
        m(torch.randn(1, 3, 8, 8))
        raise RuntimeError("boom")
    assert [s.shape[1] for s in hs.stored] == [4, 4, 6]
    assert all(len(c._forward_hooks) == 0 for c in m.modules())
    with pytest.raises(RuntimeError, match="boom"), hook_output(m[2]):
        raise RuntimeError("boom")
    assert len(m[2]._forward_hooks) == 0


def test_a_grad_hook_stores_the_gradient_of_the_output():
    m = _net()
    x = torch.randn(1, 3, 8, 8)
    with hook_output(m[2], grad=True) as h:
        m(x).pow(2).sum().backward()
    torch.testing.assert_close(h.stored, 2 * m(x).detach())  # d(sum y^2)/dy = 2y
    assert len(m[2]._backward_hooks) == 0


def test_model_sizes_and_num_features_measure_each_child():
    m = _net().train()
    assert model_sizes(m, (8, 6)) == [(1, 4, 4, 3), (1, 4, 4, 3), (1, 6, 4, 3)]
    assert num_features_model(m) == 6
    assert dummy_eval(m, (5, 5)).shape == (1, 6, 3, 3) and m.training
    assert all(len(c._forward_hooks) == 0 for c in m.modules())
