"""The served model's web page: drop or pick an image, see its preview, the label and a bar per class.

Plain HTML, CSS and JavaScript in one response, with no external asset (it works offline). The drop zone
is a button, so the keyboard opens the file picker with Enter or Space; results are announced from an
`aria-live` region. The model's name, vocabulary and input size are written in by the server.

>>> html = render_page({"arch": "resnet18", "vocab": ["cat", "dog"], "input_size": [224, 224]}, 10)
>>> "resnet18" in html
True
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

__all__ = ["content_security_policy", "render_page"]

TOP_K = 5  # bars shown when the model has more classes than this
VOCAB_IN_SUMMARY = 8  # up to this many classes are named under the title
VOCAB_SHOWN = 50  # classes listed in "About the model"; the rest are counted

STYLE = """
:root { color-scheme: light dark; --accent: #c2410c; --bg: #fff; --fg: #1c1917; --muted: #57534e;
        --panel: #f5f5f4; --track: #e7e5e4; }
@media (prefers-color-scheme: dark) {
  :root { --accent: #fb923c; --bg: #1c1917; --fg: #f5f5f4; --muted: #a8a29e; --panel: #292524;
          --track: #44403c; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header, main, footer, .model { max-width: 60rem; margin: 0 auto; padding: 0 1rem; }
header h1 { margin: 1.5rem 0 0; font-size: 1.6rem; overflow-wrap: anywhere; }
.meta { color: var(--muted); margin: 0.25rem 0 1rem; }
main { display: grid; gap: 1.5rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 18rem), 1fr)); }
.drop { display: flex; flex-direction: column; align-items: center; justify-content: center; gap: 0.25rem;
        width: 100%; min-height: 11rem; padding: 1rem; border: 2px dashed var(--muted);
        border-radius: 0.75rem; background: var(--panel); color: inherit; font: inherit; cursor: pointer;
        text-align: center; }
.drop:hover, .drop.over { border-color: var(--accent); }
.drop:focus-visible { outline: 3px solid var(--accent); outline-offset: 3px; }
.drop strong { font-size: 1.15rem; }
figure { margin: 1rem 0 0; }
#preview { display: block; max-width: 100%; max-height: 22rem; margin: 0 auto; border-radius: 0.5rem; }
figcaption { color: var(--muted); text-align: center; overflow-wrap: anywhere; }
.label { font-size: 2rem; font-weight: 700; margin: 0; overflow-wrap: anywhere; }
.bars { list-style: none; padding: 0; margin: 1rem 0; }
.bars li { display: grid; grid-template-columns: minmax(4rem, 9rem) 1fr 4.5rem; gap: 0.5rem;
           align-items: center; margin: 0.35rem 0; }
.bars .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { height: 0.9rem; background: var(--track); border-radius: 0.45rem; overflow: hidden; }
.fill { display: block; height: 100%; background: var(--muted); }
.top .fill { background: var(--accent); }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #dc2626; font-weight: 600; }
.model { margin-top: 1.5rem; }
.model dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
.model dd { margin: 0; overflow-wrap: anywhere; }
footer { color: var(--muted); margin-top: 1.5rem; padding-bottom: 2rem; }
@media (max-width: 30rem) {
  .bars li { grid-template-columns: 5rem 1fr 3.75rem; }
  .label { font-size: 1.6rem; }
}
"""

SCRIPT = """
const $ = (id) => document.getElementById(id);
const drop = $("drop"), input = $("file"), preview = $("preview"), result = $("result");
const maxBytes = Number(drop.dataset.maxBytes);

drop.addEventListener("click", () => input.click());
input.addEventListener("change", () => { if (input.files.length) send(input.files[0]); input.value = ""; });
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) send(f); });
// A file dropped beside the zone must not make the browser navigate away to it.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
window.addEventListener("paste", (e) => { const f = e.clipboardData.files[0]; if (f) send(f); });

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function send(file) {
  if (file.size > maxBytes) {
    say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; this server takes at most ` +
        `${(maxBytes / 2 ** 20).toFixed(1)} MB.`, true);
    return;
  }
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `The image sent: ${file.name}`;
  preview.hidden = false;
  $("filename").textContent = file.name;
  $("label").hidden = true;
  $("bars").replaceChildren();
  $("timing").textContent = "";
  say(`Classifying ${file.name}…`);
  result.setAttribute("aria-busy", "true");
  try {
    const body = new FormData();
    body.append("file", file);
    const response = await fetch("predict?top=__TOP_K__", { method: "POST", body });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    show(data);
  } catch (err) {
    say(`Could not classify ${file.name}: ${err.message}`, true);
  } finally {
    result.setAttribute("aria-busy", "false");
  }
}

function show(data) {
  const n = Number(result.dataset.nClasses);
  say(n > __TOP_K__ ? `Prediction (top __TOP_K__ of ${n} classes):` : "Prediction:");
  $("label").textContent = data.label;
  $("label").hidden = false;
  const rows = Object.entries(data.probabilities).map(([name, p]) => bar(name, p, data.label));
  $("bars").replaceChildren(...rows);
  $("timing").textContent = `${data.ms.toFixed(0)} ms on the server`;
}

function bar(name, p, label) {
  const li = document.createElement("li");
  if (name === label) li.className = "top";
  const pct = `${(100 * p).toFixed(1)}%`;
  li.innerHTML = '<span class="name"></span><span class="track" aria-hidden="true">' +
    '<span class="fill"></span></span><span class="pct"></span>';
  li.querySelector(".name").textContent = name;
  li.querySelector(".name").title = name;
  li.querySelector(".fill").style.width = pct;
  li.querySelector(".pct").textContent = pct;
  return li;
}
""".replace("__TOP_K__", str(TOP_K))

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{style}</style>
</head>
<body>
<header>
  <h1>{arch}</h1>
  <p class="meta">{summary}</p>
</header>
<main>
  <section aria-label="Image">
    <button type="button" id="drop" class="drop" data-max-bytes="{max_bytes}" aria-describedby="drop-help">
      <strong>Drop an image here</strong>
      <span id="drop-help">or press Enter to choose one (JPEG, PNG, WebP…, up to {max_mb} MB);
        pasting works too</span>
    </button>
    <input type="file" id="file" accept="image/*" hidden>
    <figure><img id="preview" alt="" hidden><figcaption id="filename"></figcaption></figure>
  </section>
  <section id="result" aria-live="polite" aria-busy="false" aria-label="Prediction"
           data-n-classes="{n_classes}">
    <p id="status">Choose an image to see what the model says.</p>
    <p id="label" class="label" hidden></p>
    <ol id="bars" class="bars"></ol>
    <p id="timing" class="meta"></p>
  </section>
</main>
<section class="model" aria-label="Model">
  <details>
    <summary>About the model</summary>
    <dl>{details}</dl>
  </details>
</section>
<footer>JSON API: <code>POST /predict</code>, <code>POST /predict/batch</code>, <code>GET /model</code>;
  described at <a href="docs">/docs</a>.</footer>
<script>{script}</script>
</body>
</html>
"""


def render_page(info: dict[str, Any], max_upload_mb: float) -> str:
    """The page for a model described by `info` (an export's metadata); every value is HTML-escaped."""
    arch, vocab = str(info.get("arch") or "model"), [str(v) for v in info.get("vocab") or []]
    size = _size(info.get("input_size"))
    classes = f"{len(vocab)} classes" + (f" ({', '.join(vocab)})" if len(vocab) <= VOCAB_IN_SUMMARY else "")
    summary = f"{classes} · input {size}" + (f" · {info['task']}" if info.get("task") else "")
    return PAGE.format(
        title=html.escape(f"{arch} · ember"),
        arch=html.escape(arch),
        summary=html.escape(summary),
        max_bytes=int(max_upload_mb * 2**20),
        max_mb=f"{max_upload_mb:g}",
        n_classes=len(vocab),
        details=_details(info, arch, vocab, size),
        style=STYLE,
        script=SCRIPT,
    )


def content_security_policy() -> str:
    """Only this page's own script and style, images from the file picked, requests to this server."""
    return (
        f"default-src 'none'; script-src '{_sha256(SCRIPT)}'; style-src '{_sha256(STYLE)}'; "
        "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
    )


def _details(info: dict[str, Any], arch: str, vocab: list[str], size: str) -> str:
    shown = ", ".join(vocab[:VOCAB_SHOWN]) + (
        f", … ({len(vocab)} in all)" if len(vocab) > VOCAB_SHOWN else ""
    )
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (info.get("metrics") or {}).items())
    rows = [
        ("Architecture", arch),
        ("Task", info.get("task") or "—"),
        ("Input size", size),
        ("Vocabulary", shown or "—"),
        ("Metrics", metrics or "—"),
        ("Exported", f"{info.get('created', '—')} with ember {info.get('ember_version', '?')}"),
    ]
    return "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)


def _size(input_size: Any) -> str:
    if not input_size:
        return "any size"
    h, w = input_size if isinstance(input_size, list | tuple) else (input_size, input_size)
    return f"{w}×{h} px"


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
