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
