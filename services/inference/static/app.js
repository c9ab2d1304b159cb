// The service's web page: upload images to /v1/predict and draw the top-k classes as bars;
// with "explain" on, each image's occlusion map from /v1/explain is shown beside its result.
// Same origin only; no external scripts, fonts or images.
"use strict";

const $ = (id) => document.getElementById(id);

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    const select = $("which");
    select.innerHTML = "";
    for (const m of body.details) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.ready ? `${m.name} (version ${m.version})` : `${m.name} (loading)`;
      select.appendChild(option);
    }
    const main = body.details.find((m) => m.name === body.default) || body.details[0];
    $("model").textContent = main && main.ready
      ? `${main.name} · version ${main.version} · ${main.arch} · ${main.classes.length} classes`
      : "model is loading…";
  } catch (err) {
    $("model").textContent = "model information unavailable: " + err.message;
  }
}

function renderResult(file, prediction) {
  const card = document.createElement("div");
  card.className = "result";
  const img = document.createElement("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  const scores = document.createElement("div");
  scores.className = "scores";
  const title = document.createElement("div");
  title.innerHTML = "<strong></strong> <span class='muted'></span>";
  title.firstChild.textContent = prediction.top_class;
  title.lastChild.textContent = `${file.name}, ${prediction.width}×${prediction.height}`;
  scores.appendChild(title);
  prediction.top_k.forEach((item, rank) => {
    const row = document.createElement("div");
    row.className = rank === 0 ? "row top" : "row";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = item.class;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = (100 * item.probability).toFixed(1) + "%";
    track.appendChild(bar);
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = (100 * item.probability).toFixed(1) + "%";
    row.append(name, track, num);
    scores.appendChild(row);
  });
  card.append(img, scores);
  return card;
}

async function explain(file, card, params) {
  const note = document.createElement("div");
  note.className = "muted explain-note";
  note.textContent = "explaining…";
  card.querySelector(".scores").appendChild(note);
  try {
    const response = await fetch("/v1/explain?" + params, {
      method: "POST", body: file, headers: { ...headers(), "Content-Type": file.type || "application/octet-stream" },
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    const overlay = document.createElement("img");
    overlay.className = "overlay";
    overlay.alt = `occlusion map of ${body.top_class}`;
    overlay.src = "data:image/png;base64," + body.overlay_png;
    card.insertBefore(overlay, card.querySelector(".scores"));
    note.textContent = `occlusion map of ${body.top_class}: ${body.forwards} forwards, ` +
      `patch ${body.patch} px, ${body.latency_ms.toFixed(0)} ms`;
  } catch (err) {
    note.textContent = "explain: " + err.message;
    note.classList.add("error");
  }
}

async function predict(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const params = new URLSearchParams({ top_k: $("topk").value || "5" });
  if ($("which").value) params.set("model", $("which").value);
  setStatus(`classifying ${files.length} image(s)…`);
  try {
    const response = await fetch("/v1/predict?" + params, {
      method: "POST", body: form, headers: headers(),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    const results = $("results");
    results.innerHTML = "";
    const cards = body.predictions.map((p, i) => results.appendChild(renderResult(files[i], p)));
    setStatus(`${body.model} version ${body.version} · ${body.latency_ms.toFixed(1)} ms`);
    if ($("explain").checked) {
      const only = new URLSearchParams();
      if ($("which").value) only.set("model", $("which").value);
      for (let i = 0; i < files.length; i++) await explain(files[i], cards[i], only);
    }
  } catch (err) {
    setStatus("error: " + err.message, true);
  }
}

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("file").click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  predict([...e.dataTransfer.files]);
});
$("file").addEventListener("change", (e) => predict([...e.target.files]));
$("token").addEventListener("change", loadModels);
loadModels();
