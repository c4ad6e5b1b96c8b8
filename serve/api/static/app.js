// The digit page: draw on the canvas or choose a file, POST it to /predict, show the answer.
"use strict";

(() => {
  const STROKE_WIDTH = 20; // In canvas pixels: about MNIST's stroke once scaled to 28x28.
  const form = document.getElementById("digit-form");
  const pad = document.getElementById("pad");
  const pen = pad.getContext("2d");
  const fileInput = document.getElementById("file");
  const modelSelect = document.getElementById("model");
  const recogniseButton = document.getElementById("recognise");
  const clearButton = document.getElementById("clear");
  const resultSection = document.getElementById("result");
  const statusLine = document.getElementById("status");
  const errorLine = document.getElementById("error");
  const answer = document.getElementById("answer");
  const labelOutput = document.getElementById("label");
  const confidenceText = document.getElementById("confidence");
  const classifierText = document.getElementById("classifier");
  const seenImage = document.getElementById("seen");
  const chart = document.getElementById("chart");

  let hasInk = false;
  let activePointer = null;
  let lastPoint = null;
  let lastImage = null; // The last image sent, sent again when the model changes.
  let pending = null; // The AbortController of the request in flight.

  // Drawing: dark strokes on white, with any pointer (mouse, pen or finger).
  function clearPad() {
    pen.fillStyle = "#fff";
    pen.fillRect(0, 0, pad.width, pad.height);
    pen.strokeStyle = "#111";
    pen.lineWidth = STROKE_WIDTH;
    pen.lineCap = "round";
    pen.lineJoin = "round";
    hasInk = false;
  }

  function padPoint(event) {
    const box = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * pad.width) / box.width,
      y: ((event.clientY - box.top) * pad.height) / box.height,
    };
  }

  function strokeTo(point) {
    pen.beginPath();
    pen.moveTo(lastPoint.x, lastPoint.y);
    pen.lineTo(point.x, point.y);
    pen.stroke();
    lastPoint = point;
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || activePointer !== null) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    activePointer = event.pointerId;
    lastPoint = padPoint(event);
    strokeTo(lastPoint); // A tap leaves a dot.
    hasInk = true;
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of coalesced.length ? coalesced : [event]) strokeTo(padPoint(sample));
  });

  function endStroke(event) {
    if (event.pointerId === activePointer) activePointer = null;
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  // Talking to the server.
  function setBusy(busy) {
    recogniseButton.disabled = busy;
    resultSection.setAttribute("aria-busy", String(busy));
    if (busy) statusLine.textContent = "Reading…";
  }

  function percent(probability) {
    return `${(probability * 100).toFixed(1)}%`;
  }

  // On a phone the result is below the drawing: bring it into view when it is out of sight.
  function revealResult() {
    if (resultSection.getBoundingClientRect().top > window.innerHeight * 0.8) {
      resultSection.scrollIntoView({ block: "start" });
    }
  }

  function showError(title, description) {
    answer.hidden = true;
    statusLine.textContent = "No result.";
    errorLine.textContent = description ? `${title}: ${description}` : title;
    errorLine.hidden = false;
    revealResult();
  }

  function drawChart(probabilities, label) {
    chart.replaceChildren(
      ...probabilities.map((probability, digit) => {
        const row = document.createElement("li");
        row.className = digit === label ? "bar top" : "bar";
        row.dataset.digit = String(digit);
        row.dataset.probability = String(probability);
        const name = document.createElement("span");
        name.className = "digit";
        name.textContent = String(digit);
        const track = document.createElement("span");
        track.className = "track";
        const fill = document.createElement("span");
        fill.className = "fill";
        fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
        track.append(fill);
        const value = document.createElement("span");
        value.className = "value";
        value.textContent = percent(probability);
        row.append(name, track, value);
        return row;
      }),
    );
  }

  function showResult(result) {
    errorLine.hidden = true;
    labelOutput.value = String(result.label);
    confidenceText.textContent = percent(result.confidence);
    classifierText.textContent = `${result.model} (${result.classifier})`;
    seenImage.parentElement.hidden = !result.input_image;
    if (result.input_image) seenImage.src = result.input_image;
    drawChart(result.probabilities, result.label);
    answer.hidden = false;
    statusLine.textContent =
      `The ${result.model} model reads ${result.label} (${percent(result.confidence)} sure).`;
    revealResult();
  }

  async function predict(blob, filename) {
    lastImage = { blob, filename };
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    const body = new FormData();
    body.append("file", blob, filename);
    const url = `/predict?model=${encodeURIComponent(modelSelect.value)}&debug=1`;
    setBusy(true);
    try {
      const response = await fetch(url, { method: "POST", body, signal: controller.signal });
      const payload = await response.json().catch(() => null);
      if (response.ok && payload) {
        showResult(payload);
      } else {
        showError(
          (payload && payload.title) || `Error ${response.status}`,
          (payload && payload.description) || response.statusText,
        );
      }
    } catch (error) {
      if (error.name !== "AbortError") showError("Could not reach the server", error.message);
    } finally {
      if (pending === controller) {
        pending = null;
        setBusy(false);
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!hasInk) {
      showError("Nothing drawn", "draw a digit in the box first, or choose a file.");
      return;
    }
    fileInput.value = ""; // The drawing, not the file chosen before, is what gets read.
    pad.toBlob((blob) => predict(blob, "drawing.png"), "image/png");
  });

  clearButton.addEventListener("click", clearPad);

  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    if (file) predict(file, file.name);
  });

  modelSelect.addEventListener("change", () => {
    if (lastImage) predict(lastImage.blob, lastImage.filename);
  });

  clearPad();
})();
