"""The microscope page's HTML: a button per layer, and per channel its activation-maximising image beside
the dataset images that excite it most. Everything inline (PNG data URIs, CSS, a few lines of script)."""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass
from string import Template
from typing import Any

from torch import Tensor

from ember.vision.inside._plot import png_bytes

THUMB = 96  # the longest side, in pixels, of a dataset image on the page: keeps big photos' pages light


@dataclass
class LayerView:
    name: str
    n_channels: int
    channels: list[int]
    vis: Tensor  # (len(channels), c, h, w) in [0, 1]
    top: Any  # TopImages: values (channels, k), images (channels, k, c, h, w) uint8, labels


def page_html(model_name: str, views: list[LayerView], n_images: int) -> str:
    nav = "\n".join(
        f'<button type="button" data-layer="layer-{i}" aria-pressed="{str(i == 0).lower()}">'
        f"{html.escape(v.name)} <small>{v.n_channels} ch</small></button>"
        for i, v in enumerate(views)
    )
    sections = "\n".join(_section(i, v) for i, v in enumerate(views))
    when = datetime.datetime.now().isoformat(timespec="seconds")
    about = (
        f"For each channel: the image that excites it most (activation maximisation), then the "
        f"{n_images} validation images that excite it most (highest mean activation), best first."
    )
    return _PAGE.substitute(model=html.escape(model_name), about=html.escape(about), nav=nav,
                            sections=sections, meta=html.escape(f"Written by ember on {when}"))  # fmt: skip


def _section(i: int, v: LayerView) -> str:
    shown = f"channels {v.channels[0]} to {v.channels[-1]} of {v.n_channels}" if v.channels else "no channels"
    cards = "\n".join(_card(v, j, c) for j, c in enumerate(v.channels))
    empty = len(v.top.values) == 0
    note = '<p class="note">No dataset images: the loader gave no batch (pass <code>dl=</code>).</p>'
    return (
        f'<section class="layer" id="layer-{i}" data-name="{html.escape(v.name)}"{" hidden" if i else ""}>\n'
        f"<h2>{html.escape(v.name)} <small>{shown}</small></h2>\n{note if empty else ''}"
        f'<div class="channels">\n{cards}\n</div>\n</section>'
    )


def _card(v: LayerView, j: int, c: int) -> str:
    alt = f"{v.name} channel {c}: the image that excites it most"
    tops = []
    if j < len(v.top.values):
        for r, (val, img) in enumerate(zip(v.top.values[j].tolist(), v.top.images[j])):
            label = v.top.labels[j][r] if v.top.labels else ""
            what = f"{label + ', ' if label else ''}mean activation {val:.3g}"
            tops.append(_img(img.float() / 255, f"{v.name} channel {c}, top {r + 1}: {what}", "ex", what))
    return (
        f'<figure class="channel" data-channel="{c}"><figcaption>channel {c}</figcaption>'
        f'{_img(v.vis[j], alt, "vis", alt)}<div class="top">{"".join(tops)}</div></figure>'
    )


def _img(img: Tensor, alt: str, cls: str, title: str) -> str:
    small = max(img.shape[-2:]) < 64  # digits: draw the pixels as squares, not blurred
    data = base64.b64encode(png_bytes(img, THUMB if cls == "ex" else None)).decode("ascii")
    return (
        f'<img class="{cls}{" px" if small else ""}" alt="{html.escape(alt)}" title="{html.escape(title)}" '
        f'src="data:image/png;base64,{data}">'
    )


_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Microscope: $model</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem; color: #222; }
h1 { margin: 0 0 0.3rem; } h2 small, nav small { color: #666; font-weight: normal; }
.meta, .about { color: #555; margin: 0.2rem 0; }
nav { display: flex; flex-wrap: wrap; gap: 0.4rem; margin: 0.8rem 0; position: sticky; top: 0;
      background: #fff; padding: 0.4rem 0; border-bottom: 1px solid #ddd; }
nav button { font: inherit; padding: 0.3rem 0.7rem; border: 1px solid #bbb; border-radius: 4px;
             background: #f6f6f6; cursor: pointer; }
nav button[aria-pressed="true"] { background: #24527a; color: #fff; border-color: #24527a; }
nav button[aria-pressed="true"] small { color: #dde; }
.channels { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 0.8rem; }
figure.channel { margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; }
figcaption { font-weight: 600; margin-bottom: 0.3rem; }
img.vis { width: 100%; max-width: 14rem; display: block; margin-bottom: 0.4rem; }
.top { display: flex; flex-wrap: wrap; gap: 3px; }
img.ex { width: 3.2rem; height: 3.2rem; object-fit: cover; }
img.px { image-rendering: pixelated; }
.note { color: #8a5a00; }
</style>
</head>
<body>
<header>
<h1>Microscope <small>$model</small></h1>
<p class="about">$about</p>
<p class="meta">$meta</p>
</header>
<nav aria-label="layers">
$nav
</nav>
<main>
$sections
</main>
<script>
const buttons = Array.from(document.querySelectorAll("nav button"));
function show(id) {
  for (const s of document.querySelectorAll("section.layer")) s.hidden = s.id !== id;
  for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.layer === id));
}
for (const b of buttons) {
  b.addEventListener("click", () => {
    show(b.dataset.layer);
    history.replaceState(null, "", "#" + b.dataset.layer);  // a reload or a shared link keeps the layer
  });
}
const wanted = location.hash.slice(1);
if (wanted && document.getElementById(wanted)) show(wanted);
</script>
</body>
</html>
""")
