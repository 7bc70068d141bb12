"""Serving throughput: concurrent clients posting real images to `ember serve` on 127.0.0.1.

An EfficientNet-Lite0 (its offline ImageNet weights, a new 2-class head trained one frozen epoch at 224 px
on the 200 LFW faces/non-faces of `skimage.data.lfw_subset()`) is exported once to --data-dir. Each
configuration then gets a fresh server process (`create_app` under uvicorn, as `run_server` starts it),
a warm-up, and `--clients` concurrent clients posting 250x250 JPEGs of the LFW images (multipart, as
`curl -F file=@...` does) for `--duration` seconds. Printed per configuration: requests/s, p50 and p99
latency seen by the clients, errors (any non-200 answer or failed request), and the server's resident
memory after start-up and after the load. The configurations differ only in micro-batching:

    off     max_batch=1: one forward per request, queued for the one forward thread
    on      max_batch=16, max_wait_ms=2 (create_app's defaults): a forward takes every request waiting
    nowait  max_batch=16, max_wait_ms=0: only what queued up during the previous forward

Then the overload run (`overload` in --configs): `--overload-clients` (40) clients against a queue of 8
images (max_queue=8, timeout_s=5) for `--overload-duration` (10) seconds, each client posting again as
soon as it is answered, 503 or not (the worst case: no client honours Retry-After). It counts every
answer by status: each request must get a 200 or a 503 (no other status, no failed connection, no lost
answer), the server must still be alive and healthy afterwards, and its memory should stay flat.

The clients (one asyncio process with httpx) share the CPUs with the server: on 2 cores they take a
visible share, so the figures are for this whole set-up, not for the server alone.

    .venv/bin/python bench/serve.py [--duration 20] [--clients 20] [--configs off,on,overload] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import warn_if_busy
from PIL import Image

DATA_DIR = Path.home() / ".cache" / "ember-bench"
CONFIGS = {
    "off": {"max_batch": 1},
    "on": {"max_batch": 16, "max_wait_ms": 2.0},
    "nowait": {"max_batch": 16, "max_wait_ms": 0.0},
}
OVERLOAD = {"max_batch": 16, "max_queue": 8, "timeout_s": 5.0}
SERVER = """
import sys, json, uvicorn
from ember.serve import create_app
app = create_app(sys.argv[1], **json.loads(sys.argv[3]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]))
"""


def make_export(data_dir: Path) -> Path:
    """The EfficientNet-Lite0 export the server loads, made once (about a minute on 2 CPU cores)."""
    out = data_dir / "serve" / "efficientnet_lite0.pkl"
    if out.exists():
        return out
    from ember.data import URLs, untar_data
    from ember.vision.all import ImageDataLoaders, Resize, get_image_files, vision_learner

    path = untar_data(URLs.LFW_FACES)
    files = get_image_files(path)
    dls = ImageDataLoaders.from_name_func(path, files, lambda x: x[0].isupper(), item_tfms=Resize(224), bs=32,
                                          seed=42)  # fmt: skip
    learn = vision_learner(dls, "efficientnet_lite0")  # pretrained: the weights from the pip package
    learn.fit(1, 1e-3)  # frozen body: trains the head only
    out.parent.mkdir(parents=True, exist_ok=True)
    return learn.export(out)


def request_images(n: int = 40) -> list[bytes]:
    """LFW images upscaled to LFW's own 250x250 and encoded as JPEG, like a photo being uploaded."""
    from skimage.data import lfw_subset

    imgs = lfw_subset()[:: max(1, 200 // n)][:n]  # (n, 25, 25) in [0, 1], faces and non-faces
    out = []
    for a in imgs:
        img = (
            Image.fromarray((a * 255).round().astype("uint8"))
            .convert("RGB")
            .resize((250, 250), Image.BICUBIC)
        )
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


# ---- the server ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(export: Path, settings: dict, log: Path) -> Iterator[tuple[str, int]]:
    """A server process for `export` with create_app's `settings`; yields (url, pid)."""
    port = _free_port()
    args = [sys.executable, "-c", SERVER, str(export), str(port), json.dumps(settings)]
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.25)
    raise RuntimeError(f"the server did not answer within {timeout} s:\n{log.read_text()}")


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (psutil when installed, else /proc/<pid>/status)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


# ---- the clients -----------------------------------------------------------------------------------
@dataclass
class Load:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # of the 200 answers
    errors: list[str] = field(default_factory=list)  # every answer but a 200, and every failed request
    statuses: Counter[int | str] = field(default_factory=Counter)  # 200, 503, ..., or "failed"

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1] if len(self.latencies_ms) > 1 else 0.0


async def run_load(url: str, images: list[bytes], clients: int, duration: float) -> Load:
    """`clients` concurrent loops, each posting one image after another until `duration` has passed."""
    load = Load()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        rng = random.Random(0)
        await asyncio.gather(*(_post(client, images[i % len(images)], Load()) for i in range(2 * clients)))
        start = time.perf_counter()
        end = start + duration
        await asyncio.gather(*(_client(client, images, rng.randrange(len(images)), end, load)
                               for _ in range(clients)))  # fmt: skip
        load.seconds = time.perf_counter() - start
    return load


async def _client(client: httpx.AsyncClient, images: list[bytes], first: int, end: float, load: Load) -> None:
    i = first
    while time.perf_counter() < end:
        await _post(client, images[i % len(images)], load)
        i += 1


async def _post(client: httpx.AsyncClient, image: bytes, load: Load) -> None:
    t = time.perf_counter()
    try:
        r = await client.post("/predict", files={"file": ("face.jpg", image, "image/jpeg")})
    except httpx.HTTPError as e:
        load.statuses["failed"] += 1
        load.errors.append(f"{type(e).__name__}: {e}")
        return
    load.statuses[r.status_code] += 1
    if r.status_code != 200:
        retry = f" (Retry-After: {r.headers['Retry-After']})" if "Retry-After" in r.headers else ""
        load.errors.append(f"{r.status_code}{retry}: {r.text[:80]}")
        return
    load.latencies_ms.append((time.perf_counter() - t) * 1000)


# ---- main ------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per configuration")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--configs", default="off,on,overload",
                        help=f"comma-separated, from {', '.join(CONFIGS)}, overload")  # fmt: skip
    parser.add_argument("--overload-clients", type=int, default=40, help="clients in the overload run")
    parser.add_argument("--overload-duration", type=float, default=10, help="seconds of the overload run")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads in the server (default: one per CPU, as run_server)",
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the export is kept")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    export = make_export(args.data_dir)
    images = request_images()
    threads = args.threads or os.cpu_count() or 1
    configs = args.configs.split(",")
    print(f"{export} ({export.stat().st_size / 2**20:.1f} MB); {len(images)} JPEGs of 250x250, "
          f"{sum(map(len, images)) // len(images)} bytes on average")  # fmt: skip
    print(f"server: {threads} torch threads, {os.cpu_count()} CPUs shared with the clients")
    with tempfile.TemporaryDirectory() as tmp:
        batching = [c for c in configs if c != "overload"]
        if batching:
            print(f"{args.clients} clients for {args.duration:g} s per configuration")
            print("\n".join(batching_rows(export, images, batching, threads, args, Path(tmp))))
        if "overload" in configs:
            print("\n".join(overload_rows(export, images, threads, args, Path(tmp))))


def batching_rows(
    export: Path, images: list[bytes], names: list[str], threads: int, args: argparse.Namespace, tmp: Path
) -> list[str]:
    head = (
        f"  {'batching':<9}{'settings':<34}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
    )
    rows = [head + f"{'RSS start -> end MiB':>24}"]
    for name in names:
        settings = {**CONFIGS[name], "threads": threads}
        with served(export, settings, tmp / f"{name}.log") as (url, pid):
            rss0 = rss_mb(pid)
            load = asyncio.run(run_load(url, images, args.clients, args.duration))
            rss1 = rss_mb(pid)
        shown = ", ".join(f"{k}={v}" for k, v in CONFIGS[name].items())
        rows.append(f"  {name:<9}{shown:<34}{len(load.latencies_ms):>9}{load.rps:>8.1f}"
                    f"{load.percentile(50):>8.0f}{load.percentile(99):>8.0f}{len(load.errors):>7}"
                    f"{rss0:>13.0f} -> {rss1:.0f}")  # fmt: skip
        for e in sorted(set(load.errors))[:5]:
            rows.append(f"      error: {e}")
    return rows


def overload_rows(
    export: Path, images: list[bytes], threads: int, args: argparse.Namespace, tmp: Path
) -> list[str]:
    """More clients than the queue holds: every request answered 200 or 503, the server alive after."""
    settings = {**OVERLOAD, "threads": threads}
    with served(export, settings, tmp / "overload.log") as (url, pid):
        rss0 = rss_mb(pid)
        asyncio.run(run_load(url, images, args.overload_clients, 3))  # the allocator's first growth
        rss_warm = rss_mb(pid)
        load = asyncio.run(run_load(url, images, args.overload_clients, args.overload_duration))
        rss1 = rss_mb(pid)
        alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    answered = load.statuses[200] + load.statuses[503]
    lost = sum(load.statuses.values()) - answered  # failed requests and any other status
    shown = ", ".join(f"{k}={v}" for k, v in OVERLOAD.items())
    return [
        f"\noverload: {args.overload_clients} clients for {args.overload_duration:g} s, {shown}",
        f"  requests {sum(load.statuses.values())}: 200 x {load.statuses[200]}, 503 x {load.statuses[503]}, "
        f"lost (failed or other status) {lost}; server crashed: {'no' if alive else 'YES'}",
        f"  the 200s: {load.statuses[200] / load.seconds:.1f}/s, p50 {load.percentile(50):.0f} ms, "
        f"p99 {load.percentile(99):.0f} ms; server RSS {rss0:.0f} at start, {rss_warm:.0f} after 3 s of "
        f"warm-up, {rss1:.0f} MiB at the end",
        *(f"      {n} x {e}" for e, n in Counter(e[:60] for e in load.errors).most_common(3)),
    ]


if __name__ == "__main__":
    main()
