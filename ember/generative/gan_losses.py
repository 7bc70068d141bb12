"""GAN losses: the Wasserstein pair and its gradient penalty, the adversarial losses of the super-resolution
GAN, `AdaptiveLoss` for a critic's grid of logits, and the optimizer WGAN uses.

Conventions (the same as the course's): a generator loss is called `gen_loss_func(fake_pred, output,
target)`, with the critic's scores of the generated images, the images and the batch's real images; a
critic loss `crit_loss_func(real_pred, fake_pred)`. The critic scores real images high.

>>> wgan_critic_loss(torch.tensor([2.0]), torch.tensor([-1.0])).item()  # D(fake) - D(real)
-3.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "AdaptiveLoss",
    "GANLoss",
    "accuracy_thresh_expand",
    "adversarial_losses",
    "gradient_penalty",
    "wgan_critic_loss",
    "wgan_gen_loss",
]

GenLoss = Callable[[Tensor, Tensor, Tensor], Tensor]  # (fake_pred, output, target) -> loss
CritLoss = Callable[[Tensor, Tensor], Tensor]  # (real_pred, fake_pred) -> loss


def wgan_critic_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """The Wasserstein critic's loss, `mean D(fake) - mean D(real)`: its negative estimates the Wasserstein
    distance between the data and the generator's images (Arjovsky et al. 2017)."""
    return fake_pred.mean() - real_pred.mean()


def wgan_gen_loss(fake_pred: Tensor, output: Tensor, target: Tensor) -> Tensor:
    """The Wasserstein generator's loss, `-mean D(fake)`: the generator raises the critic's scores."""
    return -fake_pred.mean()


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, eps: Tensor | None = None) -> Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017): `mean((|grad_x D(x)|_2 - 1)**2)` at `x = eps * real +
    (1 - eps) * fake`, with `eps ~ U(0, 1)` per image (or the `(bs,)` values given). The graph is kept
    (`create_graph`), so the critic's weights get the penalty's gradient.

    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    >>> _ = nn.init.constant_(critic[1].weight, 0.5)  # |w| = 1: a 1-Lipschitz critic
    >>> gradient_penalty(critic, torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)).item()
    0.0
    """
    bs = real.shape[0]
    eps = torch.rand(bs, device=real.device) if eps is None else eps.to(real.device)
    eps = eps.view(bs, *[1] * (real.ndim - 1))  # (bs, 1, 1, 1): one mix per image
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    # Summing the scores gives each image's own gradient: no image's score depends on another's.
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class GANLoss(nn.Module):
    """The generator's and the critic's losses, held as one `loss_func` (`GANLearner` calls the one of
    the network it trains); modules among them move to the device with it."""

    def __init__(self, gen_loss_func: GenLoss, crit_loss_func: CritLoss) -> None:
        super().__init__()
        self.gen_loss_func, self.crit_loss_func = gen_loss_func, crit_loss_func

    def generator(self, fake_pred: Tensor, output: Tensor, target: Tensor) -> Tensor:
        return self.gen_loss_func(fake_pred, output, target)

    def critic(self, real_pred: Tensor, fake_pred: Tensor) -> Tensor:
        return self.crit_loss_func(real_pred, fake_pred)


def _expand(target: Tensor, output: Tensor) -> Tensor:
    """A target per image `(bs,)` repeated over each logit of the critic's grid `(bs, ...)`."""
    return target.reshape(len(target), *[1] * (output.ndim - 1)).expand_as(output).float()


class AdaptiveLoss(nn.Module):
    """`crit(output, target)` with the per-image target expanded to the critic's grid of logits: the
    super-resolution critic scores every patch of an image against the image's one label.

    >>> loss = AdaptiveLoss(nn.BCEWithLogitsLoss())
    >>> round(loss(torch.zeros(2, 25), torch.tensor([1, 0])).item(), 4)  # log(2): every logit at 0
    0.6931
    """

    def __init__(self, crit: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.crit = crit

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return self.crit(output, _expand(target, output))


def accuracy_thresh_expand(
    y_pred: Tensor, y_true: Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> Tensor:
    """The fraction of a critic's logits on the right side of `thresh` (after a sigmoid), each image's label
    expanded over its grid: the critic's accuracy, patch by patch.

    >>> accuracy_thresh_expand(torch.tensor([[3.0, -1.0], [-2.0, -5.0]]), torch.tensor([1, 0])).item()
    0.75
    """
    pred = y_pred.sigmoid() if sigmoid else y_pred
    return ((pred > thresh).float() == _expand(y_true, y_pred)).float().mean()


def adversarial_losses(
    loss_gen: Callable[[Tensor, Tensor], Tensor],
    loss_crit: Callable[[Tensor, Tensor], Tensor],
    weights_gen: Sequence[float] | None = None,
) -> tuple[GenLoss, CritLoss]:
    """The super-resolution GAN's losses from a generator loss `loss_gen(output, target)` (pixel or
    feature loss) and a critic loss `loss_crit(logits, labels)` whose label 1 means real:
    generator `w0 * loss_crit(fake_pred, 1) + w1 * loss_gen(output, target)`, `weights_gen = (w0, w1)`
    (default `(1, 1)`; the lesson uses `(1, 50)`); critic `(loss_crit(real_pred, 1) + loss_crit(fake_pred, 0))
    / 2`.

    >>> gen_loss, crit_loss = adversarial_losses(nn.L1Loss(), AdaptiveLoss(nn.BCEWithLogitsLoss()), (1., 50.))
    """
    w_adv, w_gen = (1.0, 1.0) if weights_gen is None else weights_gen

    def gen_loss(fake_pred: Tensor, output: Tensor, target: Tensor) -> Tensor:
        ones = fake_pred.new_ones(fake_pred.shape[0])  # the generator wants its images called real
        return w_adv * loss_crit(fake_pred, ones) + w_gen * loss_gen(output, target)

    def crit_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
        real = loss_crit(real_pred, real_pred.new_ones(real_pred.shape[0]))
        return (real + loss_crit(fake_pred, fake_pred.new_zeros(fake_pred.shape[0]))) / 2

    return gen_loss, crit_loss
