"""Generative models' entry in the core's extension point (`ember.learner.app`): how a GAN or a VAE is
exported, loaded and served.

The export holds the network that makes images (a GAN's generator, without its critic; a whole VAE, whose
encoder the sliders page uses for uploads) as a model recipe, the latent size, the images' size and
channels, the statistics that turn the network's output back into pixels (a GAN's Normalize mean and std),
and `N_DIRECTIONS` latent directions (`latent_directions`), so that the sliders page needs no data.

`load_learner` gives back a `GenerativeLearner`: the latent interface of `ember.generative`, and a
`predict` that takes a latent vector or a seed. Served (`ember serve`), `POST /predict` takes
`{"seed": 3}` or `{"z": [...]}` and answers the image.

>>> learn = load_learner("gan.pkl")  # doctest: +SKIP
>>> img, pixels, z = learn.predict(42)  # the image of seed 42  # doctest: +SKIP
>>> img, pixels, z = learn.predict([0.1] * learn.latent_dim)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ember.core.serial import ConfigError, to_config
from ember.data.loaders import DataLoaders
from ember.learner.app import AppSpec, InputRejected, RequestIO, register_app
from ember.learner.contracts import CanDecodePreds
from ember.learner.export import ExportError, model_recipe
from ember.learner.learner import Learner
from ember.vision.augment import Normalize
from ember.vision.blocks import ImageBlock
from ember.vision.core import open_image

from .latent import LatentDirections, latent_directions

__all__ = ["GENERATIVE", "LATENT_IO", "MAX_SEED", "N_DIRECTIONS", "GenerativeLearner", "png_of"]

N_DIRECTIONS = 8  # latent directions an export holds: the sliders page shows up to this many
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes
_MODES = {1: ("L", "grey"), 3: ("RGB", "RGB")}  # channels -> (PIL mode, what an error calls it)


def _no_training(*args: Any) -> Tensor:
    raise RuntimeError("a loaded generative model is for inference: train the GANLearner or VAELearner")


class GenerativeLearner(Learner):
    """An exported GAN generator or VAE, loaded for inference (what `load_learner` gives back): the latent
    interface of `ember.generative`, `predict` on a latent vector or a seed, `encode` for a VAE, and the
    export's latent `directions`.

    >>> learn = load_learner("vae.pkl"); learn.kind, learn.latent_dim  # doctest: +SKIP
    ('vae', 16)
    """

    def __init__(
        self, model: nn.Module, description: dict[str, Any], device: torch.device, path: Path
    ) -> None:
        super().__init__(DataLoaders([], device=device), model, loss_func=_no_training, path=path, quiet=True)
        gen = description["generative"]
        self.description = description  # exported again as it is (`GENERATIVE.describe`)
        self.kind: str = gen["kind"]  # "gan" or "vae"
        self.latent_dim: int = gen["latent_dim"]
        self.img_size: tuple[int, int] = tuple(gen["img_size"])  # type: ignore[assignment]
        self.n_channels: int = gen["n_channels"]
        # pixels = network output * std + mean, per channel: (1, c, 1, 1)
        self.out_mean = torch.tensor(gen["mean"]).reshape(1, -1, 1, 1)
        self.out_std = torch.tensor(gen["std"]).reshape(1, -1, 1, 1)
        self.directions = LatentDirections(**{k: torch.tensor(v) for k, v in gen["directions"].items()})

    # ---- the latent interface ----------------------------------------------------------------------
    def sample_z(self, n: int, seed: int | None = None) -> Tensor:
        """`(n, latent_dim)` standard-normal vectors on the CPU; the same seed gives the same z."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=gen)

    def decode(self, z: Tensor | Sequence[float]) -> Tensor:
        """Images `(n, c, h, w)` in [0, 1] on the CPU from latent vectors `(n, latent_dim)` (or one).

        >>> learn.decode(learn.sample_z(4, seed=0)).shape  # doctest: +SKIP
        torch.Size([4, 1, 32, 32])
        """
        z = self._checked_z(torch.as_tensor(z, dtype=torch.float32), "decode")
        decoder = self.model.decoder if self.kind == "vae" else self.model
        self.model.eval()
        with torch.inference_mode():
            out = decoder(z.to(self.dls.device)).float().cpu()  # (n, c, h, w)
        return (out * self.out_std + self.out_mean).clamp(0, 1)

    def encode(self, items: Any, resize: bool = False) -> Tensor:
        """A VAE's posterior means `(n, latent_dim)` of images: a file, a PIL image, the bytes of an image
        file, a list of those, or a tensor `(n, c, h, w)` / `(c, h, w)` of floats in [0, 1]. The images
        must have the model's channels; one of another size is an error unless `resize=True`, which
        squashes it to the model's size (bilinear).

        >>> learn.encode("three.png").shape  # doctest: +SKIP
        torch.Size([1, 16])
        """
        if self.kind != "vae":
            raise TypeError(
                "encode: this export holds a GAN's generator, which has no encoder; only a VAE export "
                "(vae_learner) can encode an image into its latent space"
            )
        x = self._images(items, resize)  # (n, c, h, w)
        self.model.eval()
        with torch.inference_mode():
            return self.model.encode(x.to(self.dls.device))[0].float().cpu()

    def predict(self, item: Tensor | Sequence[float] | int) -> tuple[Image.Image, Tensor, Tensor]:
        """The image of a latent vector (`latent_dim` floats: a list or a tensor) or of an int seed:
        `(PIL image, floats (c, h, w) in [0, 1], z (latent_dim,))`.

        >>> img, pixels, z = learn.predict(7)  # doctest: +SKIP
        """
        if isinstance(item, int) and not isinstance(item, bool):
            z = self.sample_z(1, seed=item)[0]
        else:
            z = self._checked_z(torch.as_tensor(item, dtype=torch.float32).reshape(-1), "predict")[0]
        pixels = self.decode(z)[0]
        return ImageBlock().decode(pixels), pixels, z

    # ---- checks and conversions ----------------------------------------------------------------------
    def _checked_z(self, z: Tensor, what: str) -> Tensor:
        """`z` as `(n, latent_dim)`, or an error naming the latent size this model needs."""
        z = z[None] if z.dim() == 1 else z
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"{what}: z has shape {tuple(z.shape)}, but this {self.kind.upper()}'s latent size is "
                f"{self.latent_dim}: give {self.latent_dim} values per vector (learn.sample_z(n) makes "
                "some), or an int seed to predict"
            )
        return z

    def _images(self, items: Any, resize: bool) -> Tensor:
        if isinstance(items, Tensor):
            x = items[None] if items.dim() == 3 else items
            x = x.float() if x.is_floating_point() else x.float() / 255
            self._check_channels(x.shape[1], "the tensor")
            if tuple(x.shape[2:]) != self.img_size:
                x = self._resized(x, resize, "the tensor")
            return x
        items = items if isinstance(items, list | tuple) else [items]
        return torch.cat([self._image(item, resize) for item in items])

    def _image(self, item: Any, resize: bool) -> Tensor:
        """One image file / PIL image / bytes as `(1, c, h, w)` floats in [0, 1]."""
        name = item if isinstance(item, str | Path) else "the image"
        img = open_image(item, mode=None, name=str(name))
        self._check_channels(len(img.getbands()), f"{name} ({img.mode})")
        h, w = self.img_size
        if (img.height, img.width) != (h, w):
            self._resized(torch.zeros(1, 1, img.height, img.width), resize, str(name))  # the error, if any
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return x.reshape(1, h, w, -1).permute(0, 3, 1, 2).float() / 255

    def _check_channels(self, c: int, name: str) -> None:
        if c != self.n_channels:
            mode, called = _MODES.get(self.n_channels, ("?", f"{self.n_channels}-channel"))
            raise ValueError(
                f"encode: {name} has {_count(c, 'channel')}, but this VAE takes {called} images "
                f"({_count(self.n_channels, 'channel')}): convert it first, e.g. img.convert({mode!r})"
            )

    def _resized(self, x: Tensor, resize: bool, name: str) -> Tensor:
        (h, w), (got_h, got_w) = self.img_size, x.shape[2:]
        if not resize:
            raise ValueError(
                f"encode: {name} is {got_w}x{got_h} px, but this VAE takes {w}x{h}; encode does not resize "
                f"unless asked: pass resize=True to squash it to {w}x{h}, or resize it yourself"
            )
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def png_of(pixels: Tensor) -> bytes:
    """PNG bytes of one image `(c, h, w)` in [0, 1] (grey for 1 channel, RGB for 3).

    >>> png_of(torch.zeros(1, 4, 4))[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    ImageBlock().decode(pixels).save(buf, format="PNG", compress_level=1)  # fast: the sliders wait for it
    return buf.getvalue()


# ---- export and loading ------------------------------------------------------------------------------
def _task(learn: Learner) -> str | None:
    kind = _kind(learn)
    return None if kind is None else f"generative.{kind}"


def _kind(learn: Learner) -> str | None:
    from .gan import GANLearner
    from .vae_learner import VAELearner

    if isinstance(learn, GenerativeLearner):
        return learn.kind
    if isinstance(learn, VAELearner):
        return "vae"
    if isinstance(learn, GANLearner) and learn.noise_input:  # not an image-to-image GAN (from_learners)
        return "gan"
    return None


def _describe(learn: Learner) -> dict[str, Any]:
    if isinstance(learn, GenerativeLearner):
        return learn.description
    kind = _kind(learn)
    if kind == "vae":
        recipe, mean, std = model_recipe(learn), [0.0] * learn.n_channels, [1.0] * learn.n_channels
    else:
        recipe, mean, std = _gan_parts(learn)
    with torch.random.fork_rng():  # the same export twice, the same directions; the caller's RNG left be
        torch.manual_seed(0)  # a VAE's directions come from the shuffled training set
        dirs = latent_directions(learn, k=N_DIRECTIONS)
    c, (h, w) = learn.n_channels, learn.img_size
    name = {"vae": "VAE", "gan": "GAN generator"}[kind]
    return {
        "model": recipe,
        "generative": {"kind": kind, "latent_dim": learn.latent_dim, "img_size": [h, w], "n_channels": c,
                       "mean": mean, "std": std, "directions": dirs.to_dict()},
        "info": {"arch": f"{recipe.get('arch', recipe['type'])} {name}", "task": f"generative ({name})",
                 "vocab": None, "n_out": None, "input_size": [h, w] if kind == "vae" else None,
                 "latent_dim": learn.latent_dim, "n_channels": c},
    }  # fmt: skip


def _gan_parts(learn: Learner) -> tuple[dict[str, Any], list[float], list[float]]:
    """The generator's recipe, and the stats that turn its output into pixels as `GANLearner.to_unit` does:
    the loaders' Normalize undone, or [-1, 1] to [0, 1] for loaders that cannot decode."""
    try:
        recipe = to_config(learn.model.generator)
    except ConfigError as e:
        raise ExportError(
            f"learn.export cannot describe this GAN's generator ({type(learn.model.generator).__name__}), "
            "so a loaded export could not rebuild it: build the generator with basic_generator, register "
            "your own generator class with ember.core.serial.register_config_type (and give it "
            "to_config()), or save the weights with learn.save()"
        ) from e
    c = learn.n_channels
    if not isinstance(learn.dls, CanDecodePreds):
        return recipe, [0.5] * c, [0.5] * c
    tfms = getattr(getattr(learn.dls, "dblock", None), "batch_tfms", [])
    norms = [t for t in tfms if isinstance(t, Normalize)]
    if not norms:
        return recipe, [0.0] * c, [1.0] * c
    mean, std = (s.flatten().expand(c).tolist() for s in (norms[-1].mean, norms[-1].std))
    return recipe, mean, std


def _export_model(learn: Learner) -> nn.Module:
    """What the export file's tensors are: a GAN's generator alone, else the whole model."""
    from .gan import GANLearner

    return learn.model.generator if isinstance(learn, GANLearner) else learn.model


def _build(cfg: dict[str, Any], folder: Path, device: torch.device) -> GenerativeLearner:
    # the modules that register the generators and VAEs with ember.core.serial
    import ember.generative.gan_models
    import ember.generative.vae  # noqa: F401
    from ember.core.serial import from_config

    return GenerativeLearner(from_config(cfg["model"]), cfg, device, folder)


# ---- serving: {"seed": n} or {"z": [...]} in, the image out --------------------------------------------
def _read(data: Any, max_pixels: int, name: str) -> dict[str, Any]:
    if isinstance(data, dict) and len(data.keys() & {"z", "seed"}) == 1:
        if "z" in data and isinstance(data["z"], list) and all(_is_number(v) for v in data["z"]):
            return {"z": data["z"]}
        seed = data.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
            return {"seed": seed}
    raise InputRejected(
        f'{name} must be a JSON object with either "seed" (an integer from 0 to 2**64 - 1) or "z" (a list of '
        f'finite numbers, the latent vector), e.g. {{"seed": 3}}; got {str(data)[:80]}'
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _prepare(learn: GenerativeLearner, x: dict[str, Any]) -> dict[str, Any]:
    """The request with its latent vector `z` `(latent_dim,)`, checked before it waits for the model."""
    if "seed" in x:
        return {**x, "z": learn.sample_z(1, seed=x["seed"])[0]}
    if len(x["z"]) != learn.latent_dim:
        raise InputRejected(
            f'"z" has {len(x["z"])} values, but this model\'s latent size is {learn.latent_dim}'
        )
    return {**x, "z": torch.tensor(x["z"], dtype=torch.float32)}


def _generate(learn: GenerativeLearner, xs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pixels = learn.decode(torch.stack([x["z"] for x in xs]))  # (n, c, h, w), one forward
    return [{"image": p, **({"seed": x["seed"]} if "seed" in x else {}), "z": x["z"].tolist()}
            for p, x in zip(pixels, xs)]  # fmt: skip


def _sliders_page(app: Any, learn: Learner) -> None:
    from ember.generative.sliders import mount_sliders  # the page's module imports this one

    mount_sliders(app, learn)


LATENT_IO = RequestIO(
    kind="json",
    read=_read,
    prepare=_prepare,
    predict=_generate,
    fields=("seed",),
    example="""curl -H 'Content-Type: application/json' -d '{"seed": 3}' URL/predict""",
    draw=png_of,
    about='Send `{"seed": n}` for the image of a random latent vector, or `{"z": [...]}` (latent_dim '
    "numbers). The page at / is the sliders page.",
    mount=_sliders_page,
)

GENERATIVE = AppSpec(
    name="generative",
    task=_task,
    describe=_describe,
    build=_build,
    request_io=LATENT_IO,
    export_model=_export_model,
)
register_app(GENERATIVE)
