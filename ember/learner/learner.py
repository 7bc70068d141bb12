"""The Learner: a model, its data, a loss and an optimizer, trained by a loop with callbacks.

The loop reads top to bottom: `fit` -> `_do_epoch` -> `_do_train` / `_do_validate` -> `_do_one_batch`.
Each stage is wrapped by `_with_events`, which emits `before_X`, then `after_cancel_X` if a callback
cancelled it, then `after_X`. Customise in stages: keyword arguments, then callbacks, then override one
of the step methods (`forward`, `get_loss`, `backward`, `step`, `zero_grad`) in a subclass.
(`predict(item)` is the course's one-item inference, so the model's step is called `forward`.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ember.callbacks.channels_last import ChannelsLast
from ember.callbacks.core import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelException,
    CancelFitException,
    CancelTrainException,
    CancelValidException,
    widest_cancel,
)
from ember.callbacks.lr_finder import LRFinder, LRFindResult, SuggestedLRs, suggest_lrs, valley
from ember.callbacks.mixed_precision import MixedPrecision
from ember.callbacks.progress import ProgressCallback
from ember.callbacks.recorder import Recorder
from ember.callbacks.schedule import ParamScheduler, combined_cos
from ember.callbacks.training import TerminateOnNaN
from ember.core.optimizer import Adam, OptFunc, default_splitter, lrs_for, param_groups, set_hyper
from ember.core.utils import listify
from ember.learner.checkpoint import load_checkpoint, save_checkpoint
from ember.learner.preds import GatherPreds
from ember.learner.resume import ResumeCallback, checkpoint_file, read_run
from ember.metrics import Metric, check_metrics, to_metric

__all__ = ["Learner"]

LR = float | slice | Sequence[float]


class Learner:
    """Train `model` on `dls` with `loss_func`, the course's way.

    What it writes (`export`, `report`, `save`) goes under `path`: by default the working folder when
    the Learner is made, never the data's folder.

    >>> learn = Learner(dls, model, loss_func=MSELossFlat(), metrics=rmse)  # doctest: +SKIP
    >>> learn.fit_one_cycle(3, 1e-2)  # doctest: +SKIP
    """

    def __init__(
        self,
        dls: Any,
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
        loss_func = loss_func if loss_func is not None else getattr(dls, "loss_func", None)
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
        self.opt: torch.optim.Optimizer | None = None
        self.grad_scaler: torch.amp.GradScaler | None = None  # set by MixedPrecision for float16
        self.epoch, self.n_epoch, self.train_iter, self.training = 0, 1, 0, False
        self.epochs_trained = 0  # over every fit of this learner (fine_tune's two); lr_find's are undone
        self._in_call = False  # inside fit / validate / get_preds (which may call one another)
        self.cbs: list[Callback] = []
        self.recorder = Recorder()
        self.progress = ProgressCallback(show_table=not quiet, show_bar=not quiet)
        self.add_cbs([self.recorder, self.progress, TerminateOnNaN(), *listify(cbs)])
        self.model.to(self.dls.device)

    # ---- callbacks -------------------------------------------------------------------------------
    def add_cbs(self, cbs: Sequence[Callback]) -> Learner:
        for cb in cbs:
            if isinstance(cb, type):
                raise TypeError(f"got the class {cb.__name__}, not an instance: pass {cb.__name__}()")
            cb.learn = self
            self.cbs.append(cb)
        self._index_hooks()
        return self

    def add_cb(self, cb: Callback) -> Learner:
        return self.add_cbs([cb])

    def remove_cbs(self, cbs: Sequence[Callback]) -> Learner:
        for cb in cbs:
            self.cbs.remove(cb)
        self._index_hooks()
        return self

    def remove_cb(self, cb: Callback) -> Learner:
        return self.remove_cbs([cb])

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[Learner]:
        """Add callbacks for the duration of a `with` block."""
        cbs = listify(cbs)
        self.add_cbs(cbs)
        try:
            yield self
        finally:
            self.remove_cbs(cbs)

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

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Callback | Sequence[Callback]) -> Iterator[Learner]:
        """Leave callbacks out for the duration of a `with` block."""
        cbs = listify(cbs)
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    def _index_hooks(self) -> None:
        # Resolved once per change of callbacks, so emitting an event is a list walk.
        ordered = sorted(self.cbs, key=lambda cb: cb.order)
        self._hooks = {e: [(cb, getattr(cb, e)) for cb in ordered if hasattr(cb, e)] for e in EVENTS}

    def __call__(self, event: str) -> None:
        """Emit `event`: run every callback's hook for it, in order. A cancel of the fit, epoch, training
        or validation is raised once all of the event's hooks have run (the widest, if several cancel), so
        every callback sees the epoch that early stopping ended, whichever was listed first. A batch's
        cancel is raised at once: it skips the rest of the batch, the later hooks of its event included
        (GradientAccumulation keeps the unscale and the clipping off a partial sum that way)."""
        hooks = self._hooks.get(event)
        if hooks is None:
            raise ValueError(f"unknown event {event!r}. Events are: {', '.join(EVENTS)}")
        cancels = None
        for cb, hook in hooks:
            try:
                hook()
            except CancelBatchException:
                raise
            except CancelException as e:
                cancels = [*(cancels or []), e]
            except Exception as e:
                e.add_note(f"(raised in callback {type(cb).__name__}, event {event})")
                raise
        if cancels:
            raise widest_cancel(cancels)

    def show_loop(self) -> None:
        """Print the loop's events and the callbacks hooked to each."""
        for e in EVENTS:
            names = ", ".join(type(cb).__name__ for cb, _ in self._hooks[e])
            print(f"{e:<22} {names}")

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
        if reset_opt or self.opt is None:
            self.create_opt()
        self.set_lr(self.lr if lr is None else lr)
        wd = self.wd if wd is None else wd
        if wd is not None:
            set_hyper(self.opt, "wd", [wd] * self.n_groups)
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

    def _do_validate(self, dl: Any = None) -> None:
        self.dl, self.training = (self.dls.valid if dl is None else dl), False
        self.model.eval()
        with torch.no_grad():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _all_batches(self) -> None:
        n_inp = getattr(self.dl, "n_inp", 1)
        # A pass resumed mid-epoch (ember.learner.resume) starts at the batch where it stopped.
        for i, batch in enumerate(self.dl, getattr(self.dl, "first_batch", 0)):
            self.iter, self.batch = i, batch
            self.xb, self.yb = tuple(self.batch[:n_inp]), tuple(self.batch[n_inp:])
            self.pred = self.loss = self.loss_grad = None  # None until computed: a cancel may come first
            self._with_events(self._do_one_batch, "batch", CancelBatchException)
            if self.training:
                self.train_iter += 1

    def _do_one_batch(self) -> None:
        self.pred = self.forward()
        self("after_pred")
        if self.yb:  # batches without targets (test sets) have no loss
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
        if self.grad_scaler is None:
            self.opt.step()
        else:  # skips the step when the float16 gradients overflowed
            self.grad_scaler.step(self.opt)
            self.grad_scaler.update()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    # ---- optimizer, learning rates, freezing -----------------------------------------------------
    def create_opt(self) -> None:
        """Build `self.opt` from the splitter's layer groups, with lr, wd and the first momentum set."""
        self.layer_groups = self.splitter(self.model)
        groups = param_groups(self.layer_groups, self.model, self.wd_bn_bias)
        self.opt = self.opt_func(groups, lr=lrs_for(self.lr, 1)[0])
        for g in self.opt.param_groups:
            if g["no_wd"]:
                g["weight_decay"] = 0.0
        self.set_lr(self.lr)
        if self.wd is not None:
            set_hyper(self.opt, "wd", [self.wd] * self.n_groups)

    @property
    def n_groups(self) -> int:
        return len(self.layer_groups)

    def set_lr(self, lr: LR) -> None:
        """Set each layer group's learning rate; `lr` may be a float, `slice(hi)` or `slice(lo, hi)`."""
        set_hyper(self.opt, "lr", lrs_for(lr, self.n_groups))

    def freeze_to(self, n: int) -> None:
        """Train only layer groups `n` and after (BatchNorm layers stay trainable when `train_bn`)."""
        if self.opt is None:
            self.create_opt()
        bn = {id(p) for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              for p in m.parameters(recurse=False)}  # fmt: skip
        frozen = range(len(self.layer_groups))[:n]
        for i, params in enumerate(self.layer_groups):
            for p in params:
                p.requires_grad_(i not in frozen or (self.train_bn and id(p) in bn))

    def freeze(self) -> None:
        """Train only the last layer group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    # ---- schedules -------------------------------------------------------------------------------
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
        if reset_opt or self.opt is None:
            self.create_opt()
        lrs = lrs_for(self.lr if lr_max is None else lr_max, self.n_groups)
        m = self.moms if moms is None else moms
        scheds = {
            "lr": [combined_cos(pct_start, lr / div, lr, lr / div_final) for lr in lrs],
            "mom": [combined_cos(pct_start, *m)] * self.n_groups,
        }
        cbs = [ParamScheduler(scheds), *listify(cbs)]
        self.fit(n_epoch, wd=wd, cbs=cbs, start_epoch=start_epoch, resume=resume)

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
        frozen_stage = resume is not None and read_run(checkpoint_file(self, resume))["frozen"]
        self.freeze()
        if resume is None or frozen_stage:
            self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, resume=resume, **kwargs)
        base_lr /= 2
        self.unfreeze()
        lrs = slice(base_lr / lr_mult, base_lr)
        later = None if frozen_stage else resume
        self.fit_one_cycle(epochs, lrs, pct_start=pct_start, div=div, resume=later, **kwargs)

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
        restore the model and optimizer, and suggest learning rates from the loss curve."""
        n_epoch = math.ceil(num_it / len(self.dls.train))
        with self.no_logging():
            self.fit(n_epoch, cbs=LRFinder(start_lr, end_lr, num_it, stop_div))
        lrs, losses = self.recorder.lrs, self.recorder.losses
        suggestions = suggest_lrs(lrs, losses, num_it, suggest_funcs)
        self.lr_find_result = LRFindResult(list(lrs), list(losses), suggestions)
        if show_plot:
            self.recorder.plot_lr_find(suggestions=suggestions)
        return suggestions

    # ---- predictions -----------------------------------------------------------------------------
    def get_preds(
        self,
        ds_idx: int = 1,
        dl: Any = None,
        with_input: bool = False,
        with_decoded: bool = False,
        with_loss: bool = False,
        act: Callable[[Tensor], Tensor] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> tuple:
        """Predictions and targets for a whole loader, `(preds, targs)`, with the loss's activation
        (softmax, sigmoid) applied unless `act` says otherwise. Extras, in this order when asked:
        `(inputs, preds, targs, decoded, losses)`.

        >>> probs, targs = learn.get_preds()  # doctest: +SKIP
        """
        gather = GatherPreds(with_input=with_input, with_loss=with_loss)
        # Predictions are not a score: the Recorder sits out, so the last validation's metrics stay.
        with self._one_call([gather, *listify(cbs)]), self.removed_cbs(self.recorder):
            self._do_validate(self.dls[ds_idx] if dl is None else dl)
        act = act if act is not None else getattr(self.loss_func, "activation", None)
        preds = act(gather.preds) if act is not None else gather.preds
        res: list = [preds, gather.targs]
        if with_decoded:
            decodes = getattr(self.loss_func, "decodes", None)
            res.append(decodes(preds) if decodes is not None else preds)
        if with_loss:
            res.append(gather.losses)
        if with_input:
            res.insert(0, gather.inputs)
        return tuple(res)

    def predict(self, item: Any) -> tuple[Any, Tensor, Tensor]:
        """One item (a file, an image, a value: whatever the input block takes) through the validation
        transforms and the model: `(decoded, decoded_tensor, probabilities)`.

        >>> label, idx, probs = learn.predict("images/cat_1.jpg")  # doctest: +SKIP
        """
        test_dl = getattr(self.dls, "test_dl", None)
        if test_dl is None:
            raise TypeError(
                "learn.predict needs DataLoaders built by a DataBlock (or a factory such as "
                "ImageDataLoaders), which know how to transform a new item; use get_preds(dl=...) otherwise"
            )
        preds, _, dec = self.get_preds(dl=test_dl([item], with_getters=False), with_decoded=True)
        return self.dls.datasets.blocks[-1].decode(dec[0]), dec[0], preds[0]

    def tta(
        self, ds_idx: int = 1, n: int = 4, beta: float | None = 0.25, use_max: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Test-time augmentation: predictions for split `ds_idx` averaged (or maxed) over `n` passes
        with the training augmentations, then mixed with the plain predictions:
        `(1 - beta) * augmented + beta * plain`. `beta=None` returns the augmented average alone.

        >>> preds, targs = learn.tta()  # doctest: +SKIP
        """
        aug_dl = getattr(self.dls, "tta_dl", None)
        if aug_dl is None:
            raise TypeError("learn.tta needs DataLoaders built by a DataBlock, which know the augmentations")
        dl = aug_dl(ds_idx)
        passes = torch.stack([self.get_preds(dl=dl)[0] for _ in range(n)])  # (n, items, ...)
        aug = passes.max(0).values if use_max else passes.mean(0)
        preds, targs = self.get_preds(ds_idx)
        return (aug if beta is None else torch.lerp(aug, preds, beta)), targs

    def show_results(self, ds_idx: int = 1, dl: Any = None, max_n: int = 9, **kwargs: Any) -> Any:
        """The first batch of split `ds_idx` (or `dl`): inputs, targets and the model's decoded predictions.

        >>> learn.show_results(max_n=6)  # doctest: +SKIP
        """
        if not hasattr(self.dls, "show_results"):
            raise TypeError("learn.show_results needs DataLoaders built by a DataBlock, which can draw items")
        batch = (self.dls[ds_idx] if dl is None else dl).one_batch()
        n_inp = getattr(self.dls.datasets, "n_inp", 1)
        training = self.model.training
        try:
            self.model.eval()
            with torch.inference_mode():
                out = self.model(*batch[:n_inp]).float()
        finally:
            self.model.train(training)
        act = getattr(self.loss_func, "activation", None)
        decodes = getattr(self.loss_func, "decodes", None)
        preds = act(out) if act is not None else out
        return self.dls.show_results(batch, decodes(preds) if decodes is not None else preds, max_n, **kwargs)

    def validate(self, ds_idx: int = 1, dl: Any = None, cbs: Callback | Sequence[Callback] | None = None):
        """The loss and metrics on a loader (the validation set by default): `[valid_loss, *metrics]`.
        Only a pass over the validation set updates `recorder.final_metrics`, which export and report show."""
        with self._one_call(cbs):
            self._do_validate(self.dls[ds_idx] if dl is None else dl)
        return self.recorder.valid_values

    # ---- mixed precision -------------------------------------------------------------------------
    def to_fp16(self, force: bool = False) -> Learner:
        """Mixed precision: float16 with a gradient scaler on CUDA. On a CPU, bfloat16 where the CPU has
        bfloat16 instructions; on one without (emulated bfloat16 is several times slower) training stays in
        float32 and a warning says so. `force=True` trains in bfloat16 anyway.

        >>> learn.to_fp16().fit_one_cycle(1)  # doctest: +SKIP
        """
        return self._set_precision(torch.float16, force)

    def to_bf16(self) -> Learner:
        """Mixed precision in bfloat16 (CPU and CUDA), no gradient scaler needed, whatever the CPU."""
        return self._set_precision(torch.bfloat16)

    def to_fp32(self) -> Learner:
        """Back to full precision."""
        return self._set_precision(None)

    def _set_precision(self, dtype: torch.dtype | None, force: bool = False) -> Learner:
        self.remove_cbs([cb for cb in self.cbs if isinstance(cb, MixedPrecision)])
        if dtype is not None:
            self.add_cb(MixedPrecision(dtype, force))
        return self

    def to_channelslast(self) -> Learner:
        """Channels-last layout for the model and its image batches (faster convolutions)."""
        self.to_contiguous()
        return self.add_cb(ChannelsLast())

    def to_contiguous(self) -> Learner:
        """Back to the default layout."""
        self.remove_cbs([cb for cb in self.cbs if isinstance(cb, ChannelsLast)])
        self.model.to(memory_format=torch.contiguous_format)
        return self

    # ---- output ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_bar(self) -> Iterator[Learner]:
        """Hide the progress bar inside a `with` block (the epoch table still prints)."""
        old, self.progress.show_bar = self.progress.show_bar, False
        try:
            yield self
        finally:
            self.progress.show_bar = old

    @contextlib.contextmanager
    def no_logging(self) -> Iterator[Learner]:
        """Hide the epoch table inside a `with` block."""
        old, self.progress.show_table = self.progress.show_table, False
        try:
            yield self
        finally:
            self.progress.show_table = old

    # ---- saving ----------------------------------------------------------------------------------
    def save(self, file: str, with_opt: bool = True) -> Path:
        """Write the model (and optimizer) state to `path/model_dir/file.safetensors`, atomically."""
        path = self.path / self.model_dir / f"{file}.safetensors"
        opt = self.opt if with_opt else None
        save_checkpoint(path, self.model, opt, epoch=self.epoch)
        return path

    def export(self, fname: str | Path = "export.pkl") -> Path:
        """Write the model and what inference needs (vocabulary, resize, normalisation, decoding) to
        `path/fname` for `load_learner`: safetensors and JSON, no pickle (the course's file name is
        kept; the content is not a pickle). Prints and returns the file's absolute path.

        >>> learn.export("models/pets.pkl")  # doctest: +SKIP
        wrote /home/me/work/models/pets.pkl
        """
        from ember.learner.export import export_learner

        return self._wrote(export_learner(self, self.path / fname))

    def report(self, fname: str | Path = "report.html") -> Path:
        """Write one self-contained HTML page to `path/fname`: the data, the last lr_find, the loss and
        metric curves of every fit, and for a classifier its confusion matrix and worst predictions.
        Prints and returns the file's absolute path.

        >>> learn.report("pets.html")  # doctest: +SKIP
        """
        from ember.learner.report import write_report

        return self._wrote(write_report(self, self.path / fname))

    def _wrote(self, path: Path) -> Path:
        path = path.absolute()
        if not self.quiet:
            print(f"wrote {path}")
        return path

    def load(self, file: str, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load a state written by `save`; sets `self.epoch` to the epoch it was saved at."""
        path = self.path / self.model_dir / f"{file}.safetensors"
        if with_opt and self.opt is None:
            self.create_opt()
        meta = load_checkpoint(path, self.model, self.opt if with_opt else None, self.dls.device, strict)
        self.epoch = meta["epoch"]
        return self
