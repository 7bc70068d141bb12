"""The Learner: a model, its data, a loss and optimizers, trained by a loop with callbacks.

The loop reads top to bottom: `fit` -> `_do_epoch` -> `_do_train` / `_do_validate` -> `_do_one_batch`.
Each stage is wrapped by `_with_events`, which emits `before_X`, then `after_cancel_X` if a callback
cancelled it, then `after_X`. Customise in stages: keyword arguments, then callbacks, then override one
of the step methods (`forward`, `get_loss`, `backward`, `step`, `zero_grad`) in a subclass, then write
your own loop from the same pieces. (`predict(item)` is the course's one-item inference, so the model's
step is called `forward`.)

Data: `dls` is anything `LoadersLike` (`ember.learner.contracts`); the extras some methods need are
protocols of their own there. A loader whose `has_targets` is False yields inputs only: the loss is
`loss_func(pred, *xb)` (the inputs stand in as targets). A batch without targets from any other
loader (a test set) gets no loss.

Optimizers: `learn.opts`, a list of plain `torch.optim` optimizers (`ember.learner.optimizers`).

>>> class Alternate(Learner):  # doctest: +SKIP
...     def step(self):  # part A on even batches, part B on odd ones
...         self.step_opts([self.opts[self.iter % 2]])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ember.callbacks.core import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelException,
    CancelFitException,
    CancelTrainException,
    CancelValidException,
)
from ember.callbacks.lr_finder import LRFindResult, SuggestedLRs, valley
from ember.callbacks.progress import ProgressCallback
from ember.callbacks.recorder import Recorder
from ember.callbacks.training import TerminateOnNaN
from ember.core.optimizer import (
    Adam,
    OptFunc,
    default_splitter,
    set_hyper,
)
from ember.core.utils import listify
from ember.learner import preds, schedules
from ember.learner.contracts import (
    CanDecodePreds,
    CanMakeTestLoader,
    HasBlocks,
    HasLossFunc,
    LoaderLike,
    LoadersLike,
    check_loaders,
    require,
)
from ember.learner.files import Files
from ember.learner.host import CallbackHost
from ember.learner.optimizers import LR, Optimizers
from ember.learner.preds import item_of
from ember.learner.resume import ResumeCallback, checkpoint_file
from ember.learner.switches import Switches
from ember.metrics import Metric, check_metrics, to_metric

__all__ = ["Learner"]


class Learner(CallbackHost, Optimizers, Switches, Files):
    """Train `model` on `dls` with `loss_func`, the course's way.

    What it writes (`export`, `report`, `save`) goes under `path`: by default the working folder when
    the Learner is made, never the data's folder.

    >>> learn = Learner(dls, model, loss_func=MSELossFlat(), metrics=rmse)  # doctest: +SKIP
    >>> learn.fit_one_cycle(3, 1e-2)  # doctest: +SKIP
    """

    def __init__(
        self,
        dls: LoadersLike,
        model: nn.Module,
        loss_func: Callable | None = None,
        opt_func: OptFunc = Adam,
        lr: LR = 1e-3,
        splitter: Callable[[nn.Module], list[list[nn.Parameter]]] = default_splitter,
        cbs: Callback | Sequence[Callback] | None = None,
        metrics: Metric | Callable | Sequence[Metric | Callable] | None = None,
        path: str | Path | None = None,
        model_dir: str | Path = "models",
        wd: float | None = None,
        wd_bn_bias: bool = False,
        train_bn: bool = True,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        quiet: bool = False,
    ) -> None:
        check_loaders(dls)
        if loss_func is None and isinstance(dls, HasLossFunc):
            loss_func = dls.loss_func
        if loss_func is None:
            raise ValueError("Learner: no loss function. Pass loss_func=..., e.g. CrossEntropyLossFlat()")
        self.dls, self.model, self.loss_func = dls, model, loss_func
        self.opt_func, self.lr, self.splitter, self.wd = opt_func, lr, splitter, wd
        self.wd_bn_bias, self.train_bn, self.moms = wd_bn_bias, train_bn, moms
        self.metrics = [to_metric(m) for m in listify(metrics)]
        # Files (export, report, checkpoints) go to the working folder by default, never into the data's
        # folder: a data set may be read-only or shared, and is no place for a 20 MB export.
        self.path = Path(path) if path is not None else Path.cwd()
        self.quiet = quiet  # no progress output, and no "wrote ..." lines from export and report
        self.model_dir = Path(model_dir)
        # How to rebuild the model without the training script: set by vision_learner, read by export.
        self.model_config: dict[str, Any] | None = None
        self.export_info: dict[str, Any] = {}  # what load_learner read about the model (arch, vocab, ...)
        self.lr_find_result: LRFindResult | None = None  # the last lr_find run, kept for report()
        self.opts: list[torch.optim.Optimizer] = []  # built at the first fit, or set by you (see the module)
        self.grad_scaler: torch.amp.GradScaler | None = None  # set by MixedPrecision for float16
        self.epoch, self.n_epoch, self.train_iter, self.training = 0, 1, 0, False
        self.epochs_trained = 0  # over every fit of this learner (fine_tune's two); lr_find's are undone
        self._in_call = False  # inside fit / validate / get_preds (which may call one another)
        self.cbs: list[Callback] = []
        self.recorder = Recorder()
        self.progress = ProgressCallback(show_table=not quiet, show_bar=not quiet)
        self.add_cbs([self.recorder, self.progress, TerminateOnNaN(), *listify(cbs)])
        self.model.to(self.dls.device)

    # ---- one call: fit, validate or get_preds -----------------------------------------------------
    @contextlib.contextmanager
    def _one_call(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[Learner]:
        """One `fit`, `validate` or `get_preds` with `cbs` added. However it ends (an error, Ctrl-C), the
        outermost call emits `cleanup` and the added callbacks go, so the learner is usable again."""
        outermost, self._in_call = not self._in_call, True
        try:
            with self.added_cbs(cbs):
                try:
                    yield self
                finally:
                    if outermost:
                        self.training = False
                        self.model.eval()
                        self("cleanup")
        finally:
            if outermost:
                self._in_call = False

    # ---- the loop --------------------------------------------------------------------------------
    def _with_events(self, f: Callable[[], None], name: str, cancel: type[CancelException]) -> None:
        try:
            self(f"before_{name}")
            f()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    def fit(
        self,
        n_epoch: int,
        lr: LR | None = None,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        start_epoch: int = 0,
        resume: str | Path | None = None,
    ) -> None:
        """Train for `n_epoch` epochs at a constant `lr`; `start_epoch` resumes a run part-way.
        `resume` names a checkpoint a `CheckpointCallback` wrote during this same fit (same arguments):
        training goes on from it exactly, as if never interrupted (see `ember.learner.resume`)."""
        check_metrics(self.metrics, self.dls)  # a metric that cannot score these targets fails before a batch
        if resume is not None:  # read now, so a missing file fails before anything changes
            cbs = [*listify(cbs), ResumeCallback(checkpoint_file(self, resume))]
        if reset_opt or not self.opts:
            self.create_opt()
        self.set_lr(self.lr if lr is None else lr)
        wd = self.wd if wd is None else wd
        for opt in self.opts if wd is not None else []:
            set_hyper(opt, "wd", [wd])
        # Resuming at start_epoch means the run being resumed trained the epochs before it.
        self.epochs_trained = max(self.epochs_trained, start_epoch)
        with self._one_call(cbs):
            self.n_epoch, self.start_epoch = n_epoch, start_epoch
            self.n_iter = len(self.dls.train)
            self.train_iter = start_epoch * self.n_iter
            self.model.to(self.dls.device)
            self._with_events(self._do_fit, "fit", CancelFitException)

    def _do_fit(self) -> None:
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self._do_train()
        self.epochs_trained += 1
        if len(self.dls) > 1:  # DataLoaders(train) alone trains without validating
            self._do_validate()

    def _do_train(self) -> None:
        self.dl, self.training = self.dls.train, True
        self.model.train()
        self._with_events(self._all_batches, "train", CancelTrainException)

    def _do_validate(self, dl: LoaderLike | None = None) -> None:
        self.dl, self.training = (self.dls.valid if dl is None else dl), False
        self.model.eval()
        with torch.no_grad():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _all_batches(self) -> None:
        # LoaderLike's optional members, with their defaults (see ember.learner.contracts).
        n_inp, has_targets = getattr(self.dl, "n_inp", 1), getattr(self.dl, "has_targets", True)
        # A pass resumed mid-epoch (ember.learner.resume) starts at the batch where it stopped.
        for i, batch in enumerate(self.dl, getattr(self.dl, "first_batch", 0)):
            self.iter, self.batch = i, batch
            self.xb = tuple(batch[:n_inp])
            # Without targets (an autoencoder, a VAE) the inputs are what the loss and metrics compare to.
            self.yb = tuple(batch[n_inp:]) if has_targets else self.xb
            self.pred = self.loss = self.loss_grad = None  # None until computed: a cancel may come first
            self._with_events(self._do_one_batch, "batch", CancelBatchException)
            if self.training:
                self.train_iter += 1

    def _do_one_batch(self) -> None:
        self.pred = self.forward()
        self("after_pred")
        if self.yb:  # a test set's batches, without targets, have no loss
            self.get_loss()
        self("after_loss")
        if not self.training or not self.yb:
            return
        self("before_backward")
        self.backward()
        self("after_backward")
        self.step()
        self("after_step")
        self.zero_grad()

    # ---- the step methods: override these in a subclass to change one step -----------------------
    def forward(self) -> Any:
        return self.model(*self.xb)

    def get_loss(self) -> None:
        # loss_grad is what backward() differentiates; loss is its detached copy for reporting.
        self.loss_grad = self.loss_func(self.pred, *self.yb)
        self.loss = self.loss_grad.detach()

    def backward(self) -> None:
        loss = self.loss_grad if self.grad_scaler is None else self.grad_scaler.scale(self.loss_grad)
        loss.backward()

    def step(self) -> None:
        """Step every optimizer; override to step some of them (`self.step_opts([self.opts[1]])`)."""
        self.step_opts(self.opts)

    def step_opts(self, opts: Sequence[torch.optim.Optimizer]) -> None:
        """Step `opts` through the float16 gradient scaler when there is one (it skips the step when the
        gradients overflowed)."""
        for opt in opts:
            if self.grad_scaler is None:
                opt.step()
            else:
                self.grad_scaler.step(opt)
        if self.grad_scaler is not None:
            self.grad_scaler.update()

    def zero_grad(self) -> None:
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)

    # ---- schedules (ember.learner.schedules) and predictions (ember.learner.preds) -----------------
    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: LR | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        wd: float | None = None,
        moms: tuple[float, float, float] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        start_epoch: int = 0,
        resume: str | Path | None = None,
    ) -> None:
        """Leslie Smith's 1cycle: lr warms up from lr_max/div to lr_max, then anneals to lr_max/div_final
        (cosine), while momentum goes the opposite way through `moms`. `resume`: as for `fit`."""
        schedules.fit_one_cycle(
            self, n_epoch, lr_max, div, div_final, pct_start, wd, moms, cbs, reset_opt, start_epoch, resume
        )

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        resume: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        """Transfer learning: one frozen cycle on the head, then unfreeze and train every group with
        discriminative learning rates `slice(base_lr / 2 / lr_mult, base_lr / 2)`. `resume` continues
        whichever of the two cycles the checkpoint was saved in (a finished frozen one is not redone)."""
        schedules.fine_tune(self, epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, resume, **kwargs)

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10,
        num_it: int = 100,
        stop_div: bool = True,
        show_plot: bool = True,
        suggest_funcs: Sequence[Callable] = (valley,),
    ) -> SuggestedLRs:
        """The learning-rate range test: train with an exponentially growing lr until the loss diverges,
        restore the model and optimizers, and suggest learning rates from the loss curve."""
        return schedules.lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot, suggest_funcs)

    def get_preds(
        self,
        ds_idx: int = 1,
        dl: LoaderLike | None = None,
        with_input: bool = False,
        with_decoded: bool = False,
        with_loss: bool = False,
        act: Callable[[Any], Any] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> tuple:
        """Predictions and targets for a whole loader, `(preds, targs)`, with the loss's activation
        (softmax, sigmoid) applied unless `act` says otherwise. Extras, in this order when asked:
        `(inputs, preds, targs, decoded, losses)`. A model returning a tuple gives a tuple of predictions.

        >>> probs, targs = learn.get_preds()  # doctest: +SKIP
        """
        return preds.get_preds(self, ds_idx, dl, with_input, with_decoded, with_loss, act, cbs)

    def predict(self, item: Any) -> tuple[Any, Tensor, Tensor]:
        """One item (a file, an image, a value: whatever the input block takes) through the validation
        transforms and the model: `(decoded, decoded_tensor, probabilities)`. The prediction goes back
        through the batch transforms' decodes first, so an image target comes back denormalised:
        `(PIL image, floats (c, h, w) in [0, 1], raw output)`; a mask `(mask (h, w), mask, probs)`.

        >>> label, idx, probs = learn.predict("images/cat_1.jpg")  # doctest: +SKIP
        """
        require(self.dls, CanMakeTestLoader, "learn.predict", "use get_preds(dl=...) with your own loader")
        require(self.dls, HasBlocks, "learn.predict")
        require(self.dls, CanDecodePreds, "learn.predict")
        dl = self.dls.test_dl([item], with_getters=False)
        xb, probs, _, dec = self.get_preds(dl=dl, with_input=True, with_decoded=True)
        target = self.dls.datasets.blocks[-1]
        value = target.decoded_tensor(item_of(self.dls.decode_preds(xb, dec), 0))
        return target.decode(value), value, item_of(probs, 0)

    def tta(
        self, ds_idx: int = 1, n: int = 4, beta: float | None = 0.25, use_max: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Test-time augmentation: predictions for split `ds_idx` averaged (or maxed) over `n` passes
        with the training augmentations, then mixed with the plain predictions:
        `(1 - beta) * augmented + beta * plain`. `beta=None` returns the augmented average alone.

        >>> preds, targs = learn.tta()  # doctest: +SKIP
        """
        return preds.tta(self, ds_idx, n, beta, use_max)

    def show_results(
        self, ds_idx: int = 1, dl: LoaderLike | None = None, max_n: int = 9, **kwargs: Any
    ) -> Any:
        """The first batch of split `ds_idx` (or `dl`): inputs, targets and the model's decoded predictions.

        >>> learn.show_results(max_n=6)  # doctest: +SKIP
        """
        return preds.show_learner_results(self, ds_idx, dl, max_n, **kwargs)

    def gradcam(self, item: Any, target: Any = None, layer: Any = None, show: bool = False) -> Tensor:
        """Grad-CAM heatmap (h, w) in [0, 1] of `item` for `target` (default: the predicted class)."""
        from ember.interpret.gradcam import gradcam  # lazily: training never needs it

        return gradcam(self, item, target, layer, show=show)

    def validate(
        self, ds_idx: int = 1, dl: LoaderLike | None = None, cbs: Callback | Sequence[Callback] | None = None
    ):
        """The loss and metrics on a loader (the validation set by default): `[valid_loss, *metrics]`.
        Only a pass over the validation set updates `recorder.final_metrics`, which export and report show."""
        with self._one_call(cbs):
            self._do_validate(self.dls[ds_idx] if dl is None else dl)
        return self.recorder.valid_values
