"""The latent tools on stand-in learners with the shared latent interface (so they hold for a GAN too):
PCA directions that recover a known dominant direction, GANSpace's regression for a model that cannot
encode, the raw axes of a small latent space, and the figures, checked tile by tile."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from ember.generative.latent import LatentDirections, latent_directions
from ember.generative.latent_plots import plot_latent_space, show_traversal
from ember.generative.vae_learner import vae_learner
from ember.vision.all import DataBlock, GrandparentSplitter, ImageBlock, PILImageBW, set_seed

matplotlib.use("Agg")

H = W = 6


class StandIn:
    """The latent interface and nothing else: `decode` draws z as images through a fixed linear map."""

    def __init__(self, latent_dim: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.img_size, self.n_channels = latent_dim, (H, W), 1
        self.pixels = torch.randn(latent_dim, H * W, generator=g)  # z -> pixels

    def sample_z(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=gen)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.as_tensor(z) @ self.pixels).reshape(-1, 1, H, W)


class Encoding(StandIn):
    """A stand-in VAE whose encoder puts any items on a line along `v`, with a little noise around it."""

    def __init__(self, latent_dim: int, v: torch.Tensor) -> None:
        super().__init__(latent_dim)
        self.v = v / v.norm()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        n = len(items)
        t = 2.0 * torch.randn(n, 1, generator=g)  # spread 2 along v
        return 0.5 + t * self.v + 0.1 * torch.randn(n, self.latent_dim, generator=g)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()))


def test_pca_of_the_encoded_data_recovers_its_dominant_direction_and_spread():
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    learn = Encoding(6, v)
    dirs = latent_directions(learn, k=2, items=torch.zeros(3000, 1, H, W))
    assert dirs.directions.shape == (2, 6) and dirs.sigmas.shape == dirs.explained.shape == (2,)
    assert abs(_cos(dirs.directions[0], v)) > 0.999
    torch.testing.assert_close(dirs.directions.norm(dim=1), torch.ones(2))
    z = learn.encode(torch.zeros(3000))
    proj = (z - z.mean(0)) @ dirs.directions[0]
    assert float(dirs.sigmas[0]) == pytest.approx(float(proj.std()), rel=1e-4)  # the data's std along it
    total = float(((z - z.mean(0)) ** 2).sum(1).mean())
    assert float(dirs.explained[0]) == pytest.approx(float(proj.pow(2).mean()) / total, rel=1e-3)
    torch.testing.assert_close(dirs.mean, z.mean(0))


def test_a_latent_space_of_k_dims_or_fewer_gives_its_raw_axes():
    dirs = latent_directions(StandIn(4), k=8)
    torch.testing.assert_close(dirs.directions, torch.eye(4))
    torch.testing.assert_close(dirs.sigmas, torch.ones(4))
    torch.testing.assert_close(dirs.mean, torch.zeros(4))


def test_without_encode_ganspace_carries_the_features_main_direction_back_to_z():
    # a generator whose first layer's features vary mostly with z along u (10x more than along anything else)
    u = torch.tensor([0.0, 1.0, 1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(3)
    big, small = torch.randn(1, 40, generator=g), 0.1 * torch.randn(5, 40, generator=g)
    learn = StandIn(5)
    learn.latent_features = lambda z: 10 * (z @ u[:, None] / u.norm()) @ big + z @ small
    dirs = latent_directions(learn, k=2, n=1000)
    assert abs(_cos(dirs.directions[0], u)) > 0.99
    assert float(dirs.sigmas[0]) == pytest.approx(1.0, abs=0.1)  # z's own scale: N(0, I) along any direction
    torch.testing.assert_close(dirs.mean, torch.zeros(5))
    again = latent_directions(learn, k=2, n=1000)  # the sampled z has a fixed seed
    torch.testing.assert_close(again.directions, dirs.directions)


def test_without_encode_or_features_the_generated_images_are_the_features():
    learn = StandIn(5)
    learn.pixels = torch.zeros(5, H * W)
    learn.pixels[3] = 4.0  # only z[3] changes the images
    dirs = latent_directions(learn, k=1, n=500)
    assert abs(float(dirs.directions[0, 3])) > 0.99


def test_to_z_moves_sigma_units_along_the_directions():
    dirs = LatentDirections(torch.tensor([[0.6, 0.8], [-0.8, 0.6]]), torch.tensor([2.0, 0.5]),
                            torch.tensor([1.0, 1.0]), torch.tensor([0.8, 0.2]))  # fmt: skip
    torch.testing.assert_close(
        dirs.to_z(torch.tensor([1.0, 2.0])), torch.tensor([[1.0 + 1.2 - 0.8, 1.0 + 1.6 + 0.6]])
    )
    assert dirs.to_dict()["sigmas"] == [2.0, 0.5]


# ---- figures ----------------------------------------------------------------------------------------------
def _picture(fig) -> np.ndarray:
    return np.asarray(fig.axes[0].get_images()[0].get_array())


def test_a_2d_latent_space_is_drawn_as_a_grid_of_decodes_with_z1_growing_upwards():
    learn = StandIn(2)
    fig = plot_latent_space(learn, n=5, span=2.0)
    pic = _picture(fig)
    assert pic.shape == (5 * H, 5 * W)
    np.testing.assert_allclose(
        pic[:H, :W], learn.decode(torch.tensor([[-2.0, 2.0]]))[0, 0].numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        pic[-H:, -W:], learn.decode(torch.tensor([[2.0, -2.0]]))[0, 0].numpy(), atol=1e-6
    )


def test_a_larger_space_that_cannot_be_encoded_is_refused_with_what_to_use_instead():
    with pytest.raises(TypeError, match="show_traversal"):
        plot_latent_space(StandIn(5))


def test_the_traversal_grid_has_a_row_per_direction_and_a_column_per_sigma_step(tmp_path):
    learn = StandIn(3)
    dirs = LatentDirections(torch.eye(3)[:2], torch.tensor([1.0, 0.5]), torch.tensor([0.1, 0.2, 0.3]),
                            torch.tensor([0.6, 0.4]))  # fmt: skip
    fig = show_traversal(learn, dirs, n_steps=5, span=2.0)
    pic = _picture(fig)
    assert pic.shape == (2 * H, 5 * W)
    row1_last = learn.decode(torch.tensor([[0.1, 0.2 + 2.0 * 0.5, 0.3]]))[
        0, 0
    ].numpy()  # +2 sigma along dir 1
    np.testing.assert_allclose(pic[H:, -W:], row1_last, atol=1e-6)
    np.testing.assert_allclose(pic[:H, 2 * W : 3 * W], learn.decode(dirs.mean)[0, 0].numpy(), atol=1e-6)
    fig.savefig(tmp_path / "traversal.png")
    assert (tmp_path / "traversal.png").stat().st_size > 5000


def test_the_encoded_validation_set_is_scattered_by_pca_and_coloured_by_its_folders(tmp_path):
    for i in range(16):
        a = np.zeros((8, 8), np.uint8)
        a[: 4 + i % 4, :: 1 + i % 2] = 200 if i % 2 else 90
        folder = tmp_path / ("valid" if i % 8 in (3, 6) else "train") / ("odd" if i % 2 else "even")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"{i}.png")
    dblock = DataBlock(
        blocks=(ImageBlock(PILImageBW), ImageBlock(PILImageBW)), get_y=lambda x: x,
        get_items=lambda p: sorted(p.rglob("*.png")), splitter=GrandparentSplitter(),
    )  # fmt: skip
    set_seed(0)
    learn = vae_learner(
        dblock.dataloaders(tmp_path, bs=4, num_workers=0), "mlp", latent_dim=3, hidden=8, quiet=True
    )
    fig = plot_latent_space(learn)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["even", "odd"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4  # every validation image once
    assert ax.get_xlabel().startswith("PC1")
    dirs = latent_directions(learn, k=2)  # from the training images, through the real encoder
    assert dirs.directions.shape == (2, 3)


def test_many_features_take_the_randomised_pca_and_find_the_same_direction(monkeypatch):
    import ember.generative.latent as latent_mod

    learn = StandIn(5)
    learn.pixels = 0.05 * torch.randn(5, H * W, generator=torch.Generator().manual_seed(0))
    learn.pixels[2] = 3.0  # z[2] dominates the images
    exact = latent_directions(learn, k=2, n=400)
    monkeypatch.setattr(latent_mod, "EXACT_SVD_MAX", 10)  # 36 pixels now count as many
    fast = latent_directions(learn, k=2, n=400)
    assert (
        abs(_cos(fast.directions[0], exact.directions[0])) > 0.999
        and abs(float(fast.directions[0, 2])) > 0.99
    )
    torch.testing.assert_close(fast.explained[0], exact.explained[0], rtol=1e-3, atol=0)
