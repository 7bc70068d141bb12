"use strict";
// The sliders page: z = z0 + sum_i (c_i - c0_i) * sigma_i * d_i, where z0 is where the image started (a
// seed's vector, or an uploaded image's code) and c0 its slider positions. The server decodes z to a PNG.
const $ = (id) => document.getElementById(id);
const image = $("image");
const state = {
  info: null,       // GET /directions
  z0: null, c0: null, coords: [],
  want: null,       // the latest z not yet sent
  wantSince: null,  // when the oldest change it holds happened (performance.now())
  busy: false,      // a request in flight: at most one, so the image never lags behind the sliders
};
// ms from a slider event to its image on screen, one per image shown (read by the browser test)
window.sliderTimings = [];

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "meta error" : "meta";
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function buildSliders() {
  const { labels, range } = state.info;
  const rows = labels.map((label, i) => {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label for="s${i}"></label><input type="range" id="s${i}" step="0.05">` +
      `<output for="s${i}" id="o${i}"></output>`;
    row.querySelector("label").textContent = label;
    const input = row.querySelector("input");
    input.min = String(-range);
    input.max = String(range);
    input.setAttribute("aria-valuetext", "0 sigma");
    input.addEventListener("input", () => {
      state.coords[i] = Number(input.value);
      showValue(i);
      request(zOf(state.coords));
    });
    return row;
  });
  $("sliders").replaceChildren(...rows);
}

function showValue(i) {
  const text = `${state.coords[i] >= 0 ? "+" : "−"}${Math.abs(state.coords[i]).toFixed(2)}σ`;
  $(`o${i}`).textContent = text;
  $(`s${i}`).setAttribute("aria-valuetext", text);
}

function zOf(coords) {
  const { directions, sigmas } = state.info;
  const z = state.z0.slice();
  coords.forEach((c, i) => {
    const step = (c - state.c0[i]) * sigmas[i];
    if (step !== 0) directions[i].forEach((d, j) => { z[j] += step * d; });
  });
  return z;
}

// A new starting point (a seed's or an upload's {z, coords}): the sliders jump to it, its image is shown.
function startFrom(data) {
  state.z0 = data.z;
  state.c0 = data.coords;
  reset();
}

function reset() {
  state.coords = state.c0.slice();
  state.coords.forEach((c, i) => { $(`s${i}`).value = String(c); showValue(i); });
  request(state.z0);  // z0 itself, not z0 + 0: the first image again, byte for byte
}

// Coalescing: a change while a request is in flight only replaces `want`; when the answer arrives the
// latest `want` is sent, so slow answers skip intermediate positions instead of queueing them.
function request(z) {
  state.want = z;
  if (state.wantSince === null) state.wantSince = performance.now();
  document.body.dataset.busy = "true";
  pump();
}

async function pump() {
  if (state.busy) return;
  if (state.want === null) {
    document.body.dataset.busy = "false";  // the image shows the sliders' positions
    return;
  }
  const z = state.want, since = state.wantSince;
  state.want = state.wantSince = null;
  state.busy = true;
  try {
    const response = await fetch("decode", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ z }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || `the server answered ${response.status}`);
    }
    await show(await response.blob());
    window.sliderTimings.push(performance.now() - since);
    document.body.dataset.state = "ready";
    document.body.dataset.shown = String(window.sliderTimings.length);
  } catch (err) {
    say(`Could not draw the image: ${err.message}`, true);
  } finally {
    state.busy = false;
  }
  pump();
}

function show(blob) {
  const old = image.src;
  return new Promise((resolve, reject) => {
    image.onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); resolve(); };
    image.onerror = () => reject(new Error("the answer is not an image"));
    image.src = URL.createObjectURL(blob);
  });
}

async function fromSeed(seed) {
  say(`Seed ${seed}.`);
  try {
    startFrom(await getJSON(`sample?seed=${seed}`));
  } catch (err) {
    say(`Could not sample seed ${seed}: ${err.message}`, true);
  }
}

async function upload(file) {
  say(`Encoding ${file.name}…`);
  const body = new FormData();
  body.append("file", file);
  try {
    const data = await getJSON("encode?fit=true", { method: "POST", body });
    const original = $("original");
    if (original.src.startsWith("blob:")) URL.revokeObjectURL(original.src);
    original.src = URL.createObjectURL(file);
    $("original-box").hidden = false;
    startFrom(data);
    say(`Started from ${file.name}${data.fitted ? ` (${data.fitted})` : ""}: its reconstruction is shown.`);
  } catch (err) {
    say(`Could not encode ${file.name}: ${err.message}`, true);
  }
}

$("random").addEventListener("click", () => {
  const seed = Math.floor(Math.random() * 2 ** 31);
  $("seed").value = String(seed);
  fromSeed(seed);
});
$("reset").addEventListener("click", () => { if (state.z0) reset(); });
$("seed").addEventListener("change", () => {
  const seed = Number($("seed").value);
  if (Number.isSafeInteger(seed) && seed >= 0) fromSeed(seed);
  else say(`A seed is a whole number from 0 to ${Number.MAX_SAFE_INTEGER}.`, true);
});
$("upload").addEventListener("change", () => { if ($("upload").files.length) upload($("upload").files[0]); });

(async () => {
  try {
    state.info = await getJSON("directions");
  } catch (err) {
    say(`Could not load the model's directions: ${err.message}`, true);
    return;
  }
  buildSliders();
  $("upload-box").hidden = !state.info.can_encode;
  await fromSeed(Number($("seed").value) || 0);
})();
