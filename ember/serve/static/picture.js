async function send(file) {
  if (!accept(file)) return;
  for (const id of ["picture", "download"]) $(id).hidden = true;
  $("legend").replaceChildren();
  $("timing").textContent = "";
  say(`Predicting ${file.name}…`);
  result.setAttribute("aria-busy", "true");
  try {
    show(await post("predict", file), file.name);
  } catch (err) {
    say(`Could not predict ${file.name}: ${err.message}`, true);
  } finally {
    result.setAttribute("aria-busy", "false");
  }
}

// The answer's picture; its legend when it names classes (`classes`: name -> share, `colors`: name -> colour).
function show(data, name) {
  say("Prediction:");
  const picture = $("picture");
  picture.onload = () => picture.classList.toggle("small", picture.naturalWidth < picture.clientWidth);
  picture.src = data.image;
  picture.alt = `The model's picture for ${name}`;
  picture.hidden = false;
  $("download").href = data.image;
  $("download").download = name.replace(/\.[^.]*$/, "") + ".prediction.png";
  $("download").hidden = false;
  const rows = Object.entries(data.classes || {}).map(([k, share]) => item(k, share, (data.colors || {})[k]));
  $("legend").replaceChildren(...rows);
  $("timing").textContent = `${data.ms.toFixed(0)} ms on the server`;
}

function item(name, share, colour) {
  const li = document.createElement("li");
  li.innerHTML = '<span class="swatch" aria-hidden="true"></span><span class="name"></span>' +
    '<span class="pct"></span>';
  if (colour) li.querySelector(".swatch").style.background = colour;
  li.querySelector(".name").textContent = name;
  li.querySelector(".name").title = name;
  li.querySelector(".pct").textContent = `${(100 * share).toFixed(1)}%`;
  return li;
}
