// Draw-a-digit page: pointer events (mouse, pen, touch) on a white canvas with black ink; the canvas is sent
// as a PNG to /api/predict, which does the MNIST-style normalisation server-side. No external assets.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const statusLine = document.getElementById("status");
const labelEl = document.getElementById("label");
const barsEl = document.getElementById("bars");
const votesEl = document.getElementById("votes");
const THROTTLE_MS = 150; // at most one request in flight and one per 150 ms while drawing
const INK_WIDTH = 18; // px on the 280 px canvas: about MNIST's stroke after scaling to 20 px

let drawing = false;
let hasInk = false;
let inFlight = false;
let pending = false;
let lastSent = 0;
let timer = null;
let last = null;

// ---- probability bars -----------------------------------------------------------------------------------
for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.dataset.digit = String(d);
  li.dataset.p = "0";
  li.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span><span class="pct">0.0 %</span>`;
  barsEl.appendChild(li);
}

function showPrediction(result) {
  const probs = result.probabilities;
  barsEl.querySelectorAll("li").forEach((li, d) => {
    li.dataset.p = String(probs[d]);
    li.querySelector(".fill").style.width = `${(100 * probs[d]).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * probs[d]).toFixed(1)} %`;
    li.classList.toggle("top", d === result.label);
  });
  labelEl.textContent = String(result.label);
  labelEl.dataset.label = String(result.label);
  showVotes(result.members, result.label);
  const img = seen.createImageData(28, 28);
  result.input_28x28.forEach((row, y) => row.forEach((v, x) => {
    const i = 4 * (28 * y + x);
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    img.data[i + 3] = 255;
  }));
  seen.putImageData(img, 0, 0);
}

// A committee's answer carries each member's vote: "members' votes: 7 7 7 1 7 (4 of 5 say 7)".
function showVotes(members, label) {
  if (!members) { votesEl.hidden = true; return; }
  const agree = members.filter((m) => m.label === label).length;
  votesEl.textContent = `members' votes: ${members.map((m) => m.label).join(" ")} ` +
    `(${agree} of ${members.length} say ${label})`;
  votesEl.title = members.map((m, k) => `member ${k}: ${m.label} (${(100 * m.probability).toFixed(1)} %)`).join("\n");
  votesEl.hidden = false;
}

function resetPrediction() {
  votesEl.hidden = true;
  barsEl.querySelectorAll("li").forEach((li) => {
    li.dataset.p = "0";
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "0.0 %";
    li.classList.remove("top");
  });
  labelEl.textContent = "–";
  labelEl.dataset.label = "";
  seen.clearRect(0, 0, 28, 28);
}

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", Boolean(isError));
}

// ---- talking to the API ------------------------------------------------------------------------------------
async function postForm(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const response = await fetch("/api/predict", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

// Incremented by each Clear: answers to requests sent for an earlier drawing are ignored.
let generation = 0;

async function sendCanvas() {
  if (!hasInk) return;
  if (inFlight) { pending = true; return; }
  inFlight = true;
  lastSent = performance.now();
  const sentFor = generation;  // a Clear while this request is in flight makes its answer stale
  try {
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const result = await postForm(blob, "canvas.png");
    if (sentFor === generation) { showPrediction(result); setStatus(""); }
  } catch (err) {
    if (sentFor === generation) setStatus(err.message, true);
  } finally {
    inFlight = false;
    if (pending) { pending = false; schedule(); }
  }
}

function schedule() {
  // Throttle: send now if the last request was long enough ago, else once the interval has passed.
  if (timer !== null) return;
  const wait = Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
  timer = setTimeout(() => { timer = null; sendCanvas(); }, wait);
}

// ---- drawing -----------------------------------------------------------------------------------------------
function clearPad() {
  generation += 1;
  pending = false;
  if (timer !== null) { clearTimeout(timer); timer = null; }
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  resetPrediction();
  setStatus("Draw with the mouse, a pen or a finger.");
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (pad.width / box.width), y: (event.clientY - box.top) * (pad.height / box.height) };
}

function stroke(from, to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = INK_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  hasInk = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  stroke(last, last);
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = point(event);
  stroke(last, p);
  last = p;
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (!drawing) return;
    drawing = false;
    schedule();
  });
}

document.getElementById("clear").addEventListener("click", clearPad);

document.getElementById("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  if (file.size > 2 * 1024 * 1024) { setStatus("file larger than 2 MB", true); return; }
  setStatus(`predicting ${file.name}…`);
  try {
    showPrediction(await postForm(file, "upload"));
    setStatus(`uploaded ${file.name}`);
  } catch (err) {
    setStatus(err.message, true);
  }
});

fetch("/api/model").then((r) => r.json()).then((m) => {
  const acc = m.test_accuracy == null ? "n/a" : `${(100 * m.test_accuracy).toFixed(2)} %`;
  document.getElementById("model-info").textContent =
    `model ${m.name}${m.members > 1 ? ` committee of ${m.members}` : ""} ` +
    `(${m.parameters.toLocaleString()} parameters), test accuracy ${acc}`;
}).catch(() => setStatus("cannot reach the model API", true));

clearPad();
