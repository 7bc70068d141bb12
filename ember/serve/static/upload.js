// The drop zone every image page shares: pick (Enter or Space), drop or paste an image; `send(file)` is
// the page's own (image.js, picture.js).
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

// Refuse a file over the server's limit here; otherwise show it as the image sent. False when refused.
function accept(file) {
  if (file.size > maxBytes) {
    say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; this server takes at most ` +
        `${(maxBytes / 2 ** 20).toFixed(1)} MB.`, true);
    return false;
  }
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `The image sent: ${file.name}`;
  preview.hidden = false;
  $("filename").textContent = file.name;
  return true;
}

// POST the file to `url`; the JSON answer, or an Error carrying the server's message.
async function post(url, file) {
  const body = new FormData();
  body.append("file", file);
  const response = await fetch(url, { method: "POST", body });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}
