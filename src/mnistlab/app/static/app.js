// Draw-a-digit page: pointer events (mouse, pen, touch) on a white canvas with black ink; the canvas is sent
// as a PNG to /api/predict, which does the MNIST-style normalisation server-side. No external assets.
// "A whole number" widens the canvas and asks /api/predict?number=1, which answers each digit with its box.
// "Take a photo" opens the phone's camera; the photo is shrunk here (longest side PHOTO_SIDE) before it is sent.
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
const WIDE = 840; // canvas width in number mode, px: room for 4-6 digits as tall as one
const PHOTO_SIDE = 1280; // a phone photo is shrunk to this longest side before upload (the server works at 640)
const boxesCtx = document.getElementById("boxes").getContext("2d");
const numberEl = document.getElementById("number");
const numberResult = document.getElementById("number-result");
const digitsEl = document.getElementById("digits");
const seenDigits = document.getElementById("seen-digits");
const seenDigitsFigure = document.getElementById("seen-digits-figure");
let numberMode = false;

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

function paint28(context, rows) {
  const img = context.createImageData(28, 28);
  rows.forEach((row, y) => row.forEach((v, x) => {
    const i = 4 * (28 * y + x);
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    img.data[i + 3] = 255;
  }));
  context.putImageData(img, 0, 0);
}

// A number: the string, each digit with its probability, its 28x28, and (for the canvas) its box on the pad.
function showNumber(result, onPad) {
  numberEl.textContent = result.number;
  numberEl.dataset.number = result.number;
  digitsEl.replaceChildren(...result.digits.map((d) => {
    const li = document.createElement("li");
    li.dataset.label = String(d.label);
    li.textContent = `${d.label} (${(100 * d.probability).toFixed(1)} %)`;
    return li;
  }));
  seenDigits.replaceChildren(...result.digits.map((d) => {
    const c = document.createElement("canvas");
    c.width = c.height = 28;
    paint28(c.getContext("2d"), d.input_28x28);
    return c;
  }));
  numberResult.hidden = false;
  seenDigitsFigure.hidden = false;
  boxesCtx.clearRect(0, 0, boxesCtx.canvas.width, boxesCtx.canvas.height);
  if (!onPad) return;
  const scale = pad.width / result.size[0]; // boxes come in the server's working copy of the image
  boxesCtx.strokeStyle = "#d9822b";
  boxesCtx.lineWidth = 3;
  boxesCtx.font = "bold 22px system-ui, sans-serif";
  boxesCtx.fillStyle = "#d9822b";
  result.digits.forEach((d) => {
    const [x0, y0, x1, y1] = d.box.map((v) => v * scale);
    boxesCtx.strokeRect(x0 - 4, y0 - 4, x1 - x0 + 8, y1 - y0 + 8);
    boxesCtx.fillText(String(d.label), x0, Math.max(20, y0 - 8));
  });
}

function showResult(result, onPad) {
  if (result.number !== undefined) showNumber(result, onPad); else showPrediction(result);
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
  paint28(seen, result.input_28x28);
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
  numberEl.textContent = "";
  numberEl.dataset.number = "";
  digitsEl.replaceChildren();
  seenDigits.replaceChildren();
  numberResult.hidden = true;
  seenDigitsFigure.hidden = true;
  boxesCtx.clearRect(0, 0, boxesCtx.canvas.width, boxesCtx.canvas.height);
}

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", Boolean(isError));
}

// ---- talking to the API ------------------------------------------------------------------------------------
async function postForm(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const response = await fetch(numberMode ? "/api/predict?number=1" : "/api/predict", { method: "POST", body: form });
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
    if (sentFor === generation) { showResult(result, true); setStatus(""); }
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
  setStatus(numberMode ? "Write a number in one row, digits side by side." : "Draw with the mouse, a pen or a finger.");
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

// A photo, shrunk so that its longest side is PHOTO_SIDE (a phone's 12 MP JPEG is over the 2 MB limit);
// createImageBitmap applies the photo's EXIF rotation. Small files are sent as they are.
async function shrunk(file) {
  if (file.size <= 2 * 1024 * 1024 && !file.type.startsWith("image/jpeg")) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function sendFile(event, what) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  generation += 1; // a drawing's answer still in flight must not overwrite this one
  setStatus(`reading ${what}…`);
  try {
    const blob = await shrunk(file);
    if (blob.size > 2 * 1024 * 1024) { setStatus("file larger than 2 MB", true); return; }
    resetPrediction();
    showResult(await postForm(blob, "upload"), false);
    setStatus(`${what}: ${file.name}`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

document.getElementById("upload").addEventListener("change", (event) => sendFile(event, "uploaded"));
document.getElementById("camera").addEventListener("change", (event) => sendFile(event, "photo"));

document.getElementById("number-mode").addEventListener("change", (event) => {
  numberMode = event.target.checked;
  document.body.classList.toggle("number-mode", numberMode);
  pad.width = boxesCtx.canvas.width = numberMode ? WIDE : 280;
  pad.setAttribute("aria-label", numberMode ? "drawing area: write a number, digits side by side" : "drawing area: draw one digit 0-9");
  clearPad();
});

fetch("/api/model").then((r) => r.json()).then((m) => {
  const acc = m.test_accuracy == null ? "n/a" : `${(100 * m.test_accuracy).toFixed(2)} %`;
  document.getElementById("model-info").textContent =
    `model ${m.name}${m.members > 1 ? ` committee of ${m.members}` : ""} ` +
    `(${m.parameters.toLocaleString()} parameters), test accuracy ${acc}`;
}).catch(() => setStatus("cannot reach the model API", true));

clearPad();
