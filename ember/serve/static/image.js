async function send(file) {
  if (!accept(file)) return;
  $("label").hidden = true;
  $("bars").replaceChildren();
  $("timing").textContent = "";
  say(`Classifying ${file.name}…`);
  result.setAttribute("aria-busy", "true");
  try {
    show(await post("predict?top=__TOP_K__", file));
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
