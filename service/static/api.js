// The service's public API, as the page uses it: the list of models and one prediction.
// Errors come back as {"error": code, "detail": sentence}; they become ServiceErrors here.

export class ServiceError extends Error {
  constructor(detail, code, status) {
    super(detail);
    this.name = "ServiceError";
    this.detail = detail;
    this.code = code;
    this.status = status;
  }
}

export async function listModels() {
  const response = await fetch("/models", { headers: { Accept: "application/json" } });
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()).models;
}

// One image (a Blob or File) to one model, as the multipart field "file". Resolves to the
// service's Prediction (with input_png, the model's input, since the page shows it) plus
// roundTripMs, the latency as this page saw it.
export async function predict(modelId, image, filename, { signal, topK = 5 } = {}) {
  const form = new FormData();
  form.append("file", image, filename);
  const started = performance.now();
  const response = await fetch(`/predict/${encodeURIComponent(modelId)}?top_k=${topK}&include=input`,
                               { method: "POST", body: form, signal });
  if (!response.ok) throw await errorFrom(response);
  const prediction = await response.json();
  return { ...prediction, roundTripMs: performance.now() - started };
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not the service's JSON (a proxy's error page, say): the status line is all we know
  }
  const detail = typeof body?.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
  return new ServiceError(detail, body?.error ?? "http_error", response.status);
}
