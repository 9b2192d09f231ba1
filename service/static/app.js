// Draw-a-digit page: pointer drawing (mouse, touch, pen), upload / drop / paste a picture,
// POST /predict?variant=all&return_input=true, show each variant's answer and the 28x28 input.
"use strict";

const VARIANTS = ["group", "instance", "layer"];
const STROKE = 20; // px on the 280 px pad: MNIST strokes are 2-3 of its 28 pixels
// Photos are scaled down to this many pixels a side before uploading: a phone's 12 megapixels
// take seconds to send on a mobile link, and the service reads a digit from far fewer.
const UPLOAD_SIDE = 1600;
const MESSAGES = {
  422: "Draw a digit first: the picture has no ink the models could find.",
  413: "That picture is too large. Try a smaller photo.",
  415: "That file is not a picture the service reads (PNG, JPEG, WebP, HEIC, AVIF, TIFF, BMP or GIF).",
  503: "The models are still loading. Try again in a few seconds.",
};

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const overlay = document.getElementById("boxes"); // the boxes of the digits a number holds
const marks = overlay.getContext("2d");
const numberMode = document.getElementById("number-mode");
let drawing = false;
let drawn = false;
let last = null;
let lastUpload = null; // the picture on the pad, when it came from a file (not drawn)

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  marks.clearRect(0, 0, overlay.width, overlay.height);
  drawn = false;
}

// Reading a number: a pad twice as wide, answered by POST /read.
function setMode() {
  const wide = numberMode.checked;
  pad.width = overlay.width = wide ? 560 : 280;
  document.getElementById("drop").classList.toggle("wide", wide);
  document.getElementById("predictions").hidden = wide;
  document.getElementById("reading").hidden = !wide;
  pad.setAttribute("aria-label", `Drawing pad: draw ${wide ? "a number" : "one digit"} here`);
  clearPad();
  showError("");
}
numberMode.addEventListener("change", setMode);

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (pad.width / box.width),
           y: (event.clientY - box.top) * (pad.height / box.height) };
}

function strokeTo(p) {
  ink.strokeStyle = "#000";
  ink.lineWidth = STROKE;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(last.x, last.y);
  ink.lineTo(p.x, p.y);
  ink.stroke();
  last = p;
  drawn = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  lastUpload = null;
  last = point(event);
  strokeTo(last); // a dot for a tap
});
pad.addEventListener("pointermove", (event) => {
  if (drawing) strokeTo(point(event));
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    predictPad(); // predict after each stroke
  });
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text;
  box.hidden = !text;
}

function render(body, milliseconds) {
  const results = body.results || { [body.variant]: body };
  let preview = null;
  for (const variant of VARIANTS) {
    const card = document.getElementById(`result-${variant}`);
    const result = results[variant];
    if (!result) continue;
    const prediction = result.predictions[0];
    preview = preview || prediction.input;
    // The digit check: a letter, a scribble or several digits get no confident digit.
    const notADigit = prediction.looks_like_digit === false;
    card.classList.toggle("not-a-digit", notADigit);
    card.querySelector(".digit").textContent = notADigit ? "?" : String(prediction.digit);
    card.querySelector(".confidence").textContent = notADigit
      ? `this does not look like a digit (the model would guess ${prediction.digit})`
      : `${(prediction.confidence * 100).toFixed(1)}% sure`;
    card.querySelector(".version").textContent =
      `(version ${result.model_version}, ${result.precision})`;
    const bars = card.querySelector(".bars");
    bars.replaceChildren(...prediction.probabilities.map((p, digit) => {
      const bar = document.createElement("div");
      bar.className = digit === prediction.digit ? "bar top" : "bar";
      bar.style.height = `${Math.max(2, p * 100)}%`;
      bar.title = `${digit}: ${(p * 100).toFixed(1)}%`;
      const label = document.createElement("span");
      label.textContent = String(digit);
      bar.append(label);
      return bar;
    }));
  }
  const image = document.getElementById("preview");
  if (preview) {
    image.src = `data:image/png;base64,${preview}`;
    image.hidden = false;
  }
  const versions = Object.fromEntries(
    Object.entries(results).map(([variant, result]) => [variant, result.model_version]));
  offerCorrection(preview, body.variant, versions);
  document.getElementById("latency").textContent =
    `Answered in ${milliseconds.toFixed(0)} ms (${body.backend || "onnx"} backend).`;
}

function showReading(body, milliseconds) {
  const reading = body.readings[0];
  if (reading.error) {
    showError(reading.error);
    return;
  }
  document.getElementById("number").textContent = reading.number;
  document.getElementById("number-confidence").textContent =
    `${(reading.confidence * 100).toFixed(1)}% sure (${body.precision})`;
  marks.clearRect(0, 0, overlay.width, overlay.height);
  marks.strokeStyle = "#2f6fdb";
  marks.fillStyle = "#2f6fdb";
  marks.lineWidth = 3;
  marks.font = "bold 18px system-ui, sans-serif";
  const seen = reading.digits.map((found) => {
    const [x, y, width, height] = found.box;
    marks.strokeRect(x, y, width, height);
    marks.fillText(String(found.digit), x + 2, Math.max(16, y - 4));
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = `data:image/png;base64,${found.input}`;
    image.alt = `What the model saw for digit ${found.digit}`;
    const caption = document.createElement("figcaption");
    caption.textContent = found.looks_like_digit === false
      ? `${found.digit}? does not look like a digit`
      : `${found.digit} · ${(found.confidence * 100).toFixed(0)}%`;
    figure.append(image, caption, correctionSelect(found.input, body.variant,
      { [body.variant]: body.model_version }));
    return figure;
  });
  document.getElementById("number-digits").replaceChildren(...seen);
  document.getElementById("latency").textContent =
    `Answered in ${milliseconds.toFixed(0)} ms (${body.backend} backend).`;
}

// Corrections (POST /feedback, kept only where the server's operator turned it on): the 28x28
// picture the model read and the right digit, for retraining. The photo is never sent.
let feedbackOn = false;
let seen = null;
fetch("/models").then((r) => r.json()).then((body) => { feedbackOn = body.feedback === true; });

async function sendCorrection(input, label, variant, versions) {
  const response = await fetch("/feedback", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ input, label: Number(label), variant, versions }),
  });
  if (response.ok) return "Thank you: kept for the next training.";
  const body = await response.json().catch(() => ({}));
  return body.error || `The service answered ${response.status}.`;
}

function offerCorrection(input, variant, versions) {
  seen = input ? { input, variant, versions } : null;
  const form = document.getElementById("correct");
  form.hidden = !(feedbackOn && seen);
  document.getElementById("correct-status").textContent = "";
  document.getElementById("correct-digit").value = "";
}

document.getElementById("correct").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = document.getElementById("correct-digit").value;
  if (!seen || label === "") return;
  document.getElementById("correct-status").textContent =
    await sendCorrection(seen.input, label, seen.variant, seen.versions);
});

function correctionSelect(input, variant, versions) {
  const select = document.createElement("select");
  select.className = "correct-digit";
  select.title = "Wrong? Choose the right digit";
  select.hidden = !feedbackOn;
  select.append(...["right digit?", ..."0123456789"].map((text, index) => {
    const option = document.createElement("option");
    option.value = index ? text : "";
    option.textContent = text;
    return option;
  }));
  select.addEventListener("change", async () => {
    if (select.value === "") return;
    select.title = await sendCorrection(input, select.value, variant, versions);
    select.disabled = true;
  });
  return select;
}

async function predict(blob, name) {
  const reading = numberMode.checked;
  const form = new FormData();
  form.append("file", blob, name);
  const started = performance.now();
  try {
    const query = new URLSearchParams({ variant: reading ? "group" : "all", return_input: "true" });
    const precision = document.getElementById("precision").value;
    if (precision) query.set("precision", precision);
    const path = reading ? "/read" : "/predict";
    const response = await fetch(`${path}?${query}`, { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      showError(MESSAGES[response.status] || body.error || `The service answered ${response.status}.`);
      return;
    }
    showError("");
    if (reading) showReading(body, performance.now() - started);
    else {
      render(body, performance.now() - started);
      offerReading(body);
    }
  } catch (error) {
    showError(`The service could not be reached (${error.message}).`);
  }
}

// A picture of a number sent as one digit (the service counts the digits beside the one it
// framed): an upload is read again as a number; a drawing, which the wider pad would wipe,
// gets a hint instead.
function offerReading(body) {
  const first = (body.results ? Object.values(body.results)[0] : body).predictions[0];
  const count = first && first.digits_in_picture;
  if (!count) return;
  if (!lastUpload) {
    showError(`This holds ${count} digits side by side: tick “Read a number” to read them all.`);
    return;
  }
  const file = lastUpload;
  numberMode.checked = true;
  setMode();
  predictFile(file);
}

function predictPad() {
  if (!drawn) {
    showError(MESSAGES[422]);
    return;
  }
  pad.toBlob((blob) => predict(blob, "drawing.png"), "image/png");
}

// The photo upright (its EXIF orientation applied), shown on the pad, and scaled down for
// the upload. A format this browser cannot decode (HEIC, on most) is sent as it is: the
// service reads it.
async function uploadable(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return file;
  }
  const fit = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
  clearPad();
  ink.drawImage(bitmap, (pad.width - bitmap.width * fit) / 2,
                (pad.height - bitmap.height * fit) / 2, bitmap.width * fit, bitmap.height * fit);
  drawn = true;
  const scale = Math.min(1, UPLOAD_SIDE / Math.max(bitmap.width, bitmap.height));
  if (scale === 1) return file;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob || file), "image/jpeg", 0.9));
}

async function predictFile(file) {
  if (!file) return;
  // Some browsers give HEIC files no type: let the service judge those.
  if (file.type && !file.type.startsWith("image/")) {
    showError(MESSAGES[415]);
    return;
  }
  lastUpload = file;
  const upload = await uploadable(file);
  // A number is read from the pad the photo was drawn on, so that its boxes land on it.
  if (numberMode.checked && drawn) predictPad();
  else predict(upload, file.name || "picture");
}

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  showError("");
});
document.getElementById("predict").addEventListener("click", predictPad);
document.getElementById("file").addEventListener("change", (event) => {
  predictFile(event.target.files[0]);
  event.target.value = "";
});

const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
});
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  predictFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) predictFile(item.getAsFile());
});
pad.addEventListener("keydown", (event) => {
  if (event.key === "Enter") predictPad();
  if (event.key === "Escape" || event.key === "Delete") clearPad();
});

clearPad();
