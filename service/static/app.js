// The page: two panels (draw a digit, classify a photo), each with its model picker, its
// input and its answer area, talking to this server's API.

import { listModels, predict, ServiceError } from "./api.js";
import { DrawingPad } from "./drawing.js";
import { describeModel, fillPicker, kindOf } from "./models.js";
import { percent, showBusy, showError, showPlaceholder, showPrediction } from "./results.js";

const RELOAD_WHILE_LOADING_MS = 1500;
const $ = (id) => document.getElementById(id);

// One panel's requests: the newest input wins; an older request still running is aborted.
class Classifier {
  constructor(area, announcer) {
    this.area = area;
    this.announcer = announcer;
    this.controller = null;
  }

  async send(modelId, image, filename) {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    if (!modelId) {
      showError(this.area, "No model to ask.", "No model of this kind is ready: see the note at the top of the page.");
      return;
    }
    showBusy(this.area);
    try {
      const prediction = await predict(modelId, image, filename, { signal: controller.signal });
      if (controller !== this.controller) return;
      showPrediction(this.area, prediction);
      this.announcer.textContent = `${prediction.model} says ${prediction.label}, ${percent(prediction.probability)}`;
    } catch (error) {
      if (error.name === "AbortError" || controller !== this.controller) return;
      const [title, detail] = error instanceof ServiceError
        ? [`The service could not classify this (${error.code}, HTTP ${error.status}).`, error.detail]
        : ["The service did not answer.", `${error.message}. Is the server still running?`];
      showError(this.area, title, detail); // role="alert": read out as it appears
    }
  }

  reset(text) {
    this.controller?.abort();
    this.controller = null;
    showPlaceholder(this.area, text);
  }
}

const digit = {
  picker: $("digit-model"),
  info: $("digit-model-info"),
  classifier: new Classifier($("digit-result"), $("digit-announce")),
};
const photo = {
  picker: $("photo-model"),
  info: $("photo-model-info"),
  classifier: new Classifier($("photo-result"), $("photo-announce")),
  file: null,
};
let models = new Map();

const pad = new DrawingPad($("digit-canvas"), () => sendDrawing());

function sendDrawing() {
  if (!pad.isEmpty) digit.classifier.send(digit.picker.value, pad.pngBlob(), "drawing.png");
}

function sendPhoto() {
  if (photo.file) photo.classifier.send(photo.picker.value, photo.file, photo.file.name);
}

$("digit-clear").addEventListener("click", () => {
  pad.clear();
  digit.classifier.reset("The model's top guesses for your drawing appear here.");
});

// --- the photo: file picker, drag and drop, preview of what was sent

function choosePhoto(file) {
  if (!file) return;
  photo.file = file;
  const preview = $("photo-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = false;
  preview.src = URL.createObjectURL(file);
  $("photo-file").textContent = `${file.name} · ${formatBytes(file.size)}`;
  sendPhoto();
}

$("photo-preview").addEventListener("error", (event) => {
  event.target.hidden = true; // the browser cannot show it either; the file name stays
});
$("photo-input").addEventListener("change", (event) => {
  choosePhoto(event.target.files[0]);
  event.target.value = ""; // so choosing the same file again sends it again
});

const dropzone = $("photo-drop");
for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  choosePhoto(event.dataTransfer.files[0]);
});
// A file dropped beside the zone must not make the browser leave the page to open it.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

// --- the models

digit.picker.addEventListener("change", () => {
  showInfo(digit);
  sendDrawing();
});
photo.picker.addEventListener("change", () => {
  showInfo(photo);
  sendPhoto();
});

function showInfo(panel) {
  panel.info.textContent = describeModel(models.get(panel.picker.value));
}

async function refreshModels() {
  let list;
  try {
    list = await listModels();
  } catch (error) {
    notice(`The service did not list its models (${error.message}). Reload the page to try again.`);
    return;
  }
  models = new Map(list.map((model) => [model.id, model]));
  const ofKind = (kind) => list.filter((model) => kindOf(model) === kind);
  fillPicker(digit.picker, [{ label: "Digit models", models: ofKind("digit") }]);
  fillPicker(photo.picker, [{ label: "Photo models", models: ofKind("photo") },
                            { label: "Digit models: a picture of one digit", models: ofKind("digit") }]);
  showInfo(digit);
  showInfo(photo);

  const loading = list.filter((model) => model.status === "loading");
  const unavailable = list.filter((model) => model.status === "unavailable");
  const notes = [];
  if (!list.length) notes.push("The service has no models: publish some into its model repository.");
  if (loading.length) notes.push(`Loading ${loading.map((model) => model.id).join(", ")}…`);
  if (unavailable.length) {
    notes.push(`Unavailable: ${unavailable.map((model) => `${model.id} (${model.error ?? "no reason given"})`).join("; ")}.`);
  }
  notice(notes.join(" "));
  if (loading.length) setTimeout(refreshModels, RELOAD_WHILE_LOADING_MS);
}

function notice(text) {
  const element = $("service-notice");
  element.textContent = text;
  element.hidden = !text;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

refreshModels();
