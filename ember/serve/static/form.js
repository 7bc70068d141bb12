const $ = (id) => document.getElementById(id);
const form = $("form"), result = $("result");

// "15" is sent as the number 15 and "Heat" as a string: a name is whatever JSON type the model knows it by.
function value(text) {
  try { return JSON.parse(text); } catch { return text; }
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {};
  for (const input of form.querySelectorAll("input")) body[input.name] = value(input.value);
  $("label").hidden = true;
  $("answer").replaceChildren();
  $("timing").textContent = "";
  say("Predicting…");
  result.setAttribute("aria-busy", "true");
  try {
    const response = await fetch("predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    show(data);
  } catch (err) {
    say(`Could not predict: ${err.message}`, true);
  } finally {
    result.setAttribute("aria-busy", "false");
  }
});

function show(data) {
  say("Prediction:");
  // An answer that is a picture (a generator's) comes as a PNG data URI in `image`: shown, not printed.
  const picture = typeof data.image === "string" && data.image.startsWith("data:image/png;base64,");
  const img = $("picture");
  img.hidden = !picture;
  img.onload = () => img.classList.toggle("small", img.naturalWidth < img.clientWidth);  // crisp pixels
  if (picture) img.src = data.image;
  if (picture) delete data.image;
  const [first] = Object.keys(data);  // an application puts its answer first, e.g. "rating"
  const shown = (v) => (typeof v === "number" ? v.toFixed(3) : typeof v === "string" ? v : JSON.stringify(v));
  $("label").textContent = `${first}: ${shown(data[first])}`;
  $("label").hidden = false;
  const rows = [];
  for (const [k, v] of Object.entries(data)) {
    if (k === first || k === "ms") continue;
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = shown(v);
    rows.push(dt, dd);
  }
  $("answer").replaceChildren(...rows);
  $("timing").textContent = `${data.ms.toFixed(0)} ms on the server`;
}
