"""Choosing the precision: float16 + scaler on CUDA, bfloat16 on a CPU that has it, else float32."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import blobs_dls, mlp

from ember.basics import Callback, CrossEntropyLossFlat, Learner, accuracy
from ember.callbacks import mixed_precision
from ember.callbacks.mixed_precision import cpu_has_native_bf16

# Shortened /proc/cpuinfo flag lines: this test machine's AVX2 EPYC, an AVX512-BF16 Zen 4, a Sapphire
# Rapids (AMX), and an Arm Neoverse V1 (its line is called Features).
AVX2 = "flags\t\t: fpu sse sse2 avx f16c fma avx2 bmi2 sha_ni\n"
ZEN4 = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SPR = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
ARM = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm\n"


class DtypeSpy(Callback):
    """Records the prediction's dtype and whether CPU autocast was on during the forward pass."""

    def __init__(self):
        self.seen = set()

    def after_pred(self):
        self.seen.add((self.learn.pred.dtype, torch.is_autocast_enabled("cpu")))


@pytest.mark.parametrize(
    "text, expected",
    [(AVX2, False), (ZEN4, True), (SPR, True), (ARM, True), ("", False)],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, text, expected):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: some cpu with bf16 in its name\n" + text)
    assert cpu_has_native_bf16(str(tmp_path / "cpuinfo")) is expected


def test_native_bfloat16_is_false_where_there_is_no_cpuinfo(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is False


def test_to_fp16_on_a_cpu_without_bfloat16_stays_in_float32_and_warns_once(monkeypatch):
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: False)
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_fp16()
    spy = DtypeSpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count every warning, not once per place
        learn.fit_one_cycle(2, 1e-2, cbs=spy)
        learn.fit(1, cbs=spy)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "no bfloat16 instructions" in messages[0] and "force=True" in messages[0]
    assert spy.seen == {(torch.float32, False)}
    assert learn.grad_scaler is None and learn.recorder.value("accuracy") > 0.9


def test_to_fp16_on_a_cpu_with_bfloat16_trains_in_bfloat16_and_says_so(monkeypatch):
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: True)
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_fp16()
    spy = DtypeSpy()
    with pytest.warns(UserWarning, match="using bfloat16"):
        learn.fit_one_cycle(2, 1e-2, cbs=spy)
    assert spy.seen == {(torch.bfloat16, True)}
    assert learn.grad_scaler is None and learn.recorder.value("accuracy") > 0.9
    learn.to_fp32()
    spy.seen.clear()
    learn.fit(1, cbs=spy)
    assert spy.seen == {(torch.float32, False)}


def test_to_fp16_force_and_to_bf16_use_bfloat16_on_any_cpu(monkeypatch):
    monkeypatch.setattr(mixed_precision, "cpu_has_native_bf16", lambda: False)
    forced = Learner(blobs_dls(n=200), mlp(), CrossEntropyLossFlat(), quiet=True).to_fp16(force=True)
    spy = DtypeSpy()
    with pytest.warns(UserWarning, match="using bfloat16"):
        forced.fit(1, cbs=spy)
    assert spy.seen == {(torch.bfloat16, True)}
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_bf16()
    spy.seen.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # to_bf16 is the user saying "I know": nothing to warn about
        learn.fit_one_cycle(2, 1e-2, cbs=spy)
    assert spy.seen == {(torch.bfloat16, True)}
    assert learn.recorder.value("accuracy") > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_fp16_on_cuda_uses_float16_and_a_grad_scaler():
    from ember.basics import DataLoaders

    dls = blobs_dls()
    dls = DataLoaders(dls.train, dls.valid, device="cuda")
    learn = Learner(dls, mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_fp16()
    seen = []

    class Spy(Callback):
        def after_pred(self):
            seen.append((self.learn.pred.dtype, self.learn.grad_scaler is not None))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit_one_cycle(2, 1e-2, cbs=Spy())
    assert set(seen) == {(torch.float16, True)}
    assert learn.recorder.value("accuracy") > 0.9
