"""A real training process killed mid-run resumes from its last checkpoint and ends as well."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

SCRIPT = Path(__file__).parent / "scripts" / "resumable_train.py"
N_EPOCH = 8


def run(path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), str(path), str(N_EPOCH), *args], capture_output=True,
                         text=True, check=True, timeout=300)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch_and_reaches_the_same_loss(tmp_path):
    full = run(tmp_path / "full")
    assert full["epochs"] == list(range(N_EPOCH))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed_dir), str(N_EPOCH), "--sleep", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (killed_dir / "models" / "model_3.safetensors").exists():
        assert proc.poll() is None, "the training process ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint for epoch 3 within 2 minutes"
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up runs, as when a machine dies
    proc.wait()
    saved = sorted(
        int(re.search(r"_(\d+)", p.stem).group(1)) for p in (killed_dir / "models").glob("model_*")
    )
    last = saved[-1]
    assert last < N_EPOCH - 1, "the run finished before it was killed"
    for p in (killed_dir / "models").glob("model_*.safetensors"):  # atomic writes: every file is whole
        with safe_open(str(p), framework="pt") as f:
            assert f.metadata()["format"] == "ember.checkpoint"

    resumed = run(killed_dir, "--resume", f"model_{last}")
    assert resumed["epochs"] == list(range(last + 1, N_EPOCH))
    assert resumed["valid_loss"] <= full["valid_loss"] * 1.15 + 0.01
