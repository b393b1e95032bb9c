// One panel's answer area: a placeholder, "classifying…", the top-k as labelled bars with the
// latency and the image the model saw, or an error message. The area's data-state says which
// (idle, busy, done, error).

// The model's input comes as a base64 PNG; it is shown through a blob: URL, which the page's
// Content-Security-Policy already allows for the photo preview (no data: images needed).
const seenUrls = new WeakMap(); // area -> the object URL it shows, revoked when replaced

export function percent(fraction) {
  const value = fraction * 100;
  return value > 0 && value < 0.1 ? "<0.1 %" : `${value.toFixed(1)} %`;
}

export function showPlaceholder(area, text) {
  setState(area, "idle");
  replaceContent(area, element("p", "placeholder", text));
}

export function showBusy(area) {
  setState(area, "busy"); // the previous answer stays, dimmed, until the new one arrives
  if (!area.querySelector(".answer, .error")) replaceContent(area, element("p", "placeholder", "Classifying…"));
}

export function showPrediction(area, prediction) {
  setState(area, "done");
  const answer = element("div", "answer");
  const headline = element("p", "headline");
  headline.append(element("span", "answer-label", prediction.label),
                  element("span", "answer-probability", percent(prediction.probability)));
  const bars = element("ol", "bars");
  bars.setAttribute("aria-label", `Top ${prediction.top_k.length} classes`);
  prediction.top_k.forEach((score, rank) => bars.append(bar(score, rank === 0)));
  const scores = element("div", "scores");
  scores.append(headline, bars);
  const url = prediction.input_png ? URL.createObjectURL(pngBlob(prediction.input_png)) : null;
  if (url) answer.append(seenFigure(url));
  answer.append(scores, element("p", "latency", latencyLine(prediction)));
  replaceContent(area, answer, url);
}

export function showError(area, title, detail) {
  setState(area, "error");
  const message = element("div", "error");
  message.setAttribute("role", "alert");
  message.append(element("p", "error-title", title), element("p", "error-detail", detail));
  replaceContent(area, message);
}

// "What the model saw": its input, a few pixels scaled up with crisp edges (image-rendering:
// pixelated in style.css), its size read once it has loaded.
function seenFigure(url) {
  const figure = element("figure", "seen");
  const image = document.createElement("img");
  image.className = "seen-image";
  image.alt = "The image the model saw: its input after preprocessing";
  const caption = element("figcaption", "seen-caption", "What the model saw");
  const size = element("span", "seen-size");
  image.addEventListener("load", () => { size.textContent = `${image.naturalWidth}×${image.naturalHeight} px`; });
  image.src = url;
  caption.append(size);
  figure.append(image, caption);
  return figure;
}

function pngBlob(base64) {
  return new Blob([Uint8Array.from(atob(base64), (char) => char.charCodeAt(0))], { type: "image/png" });
}

function replaceContent(area, content, seenUrl = null) {
  const previous = seenUrls.get(area);
  if (previous) URL.revokeObjectURL(previous);
  if (seenUrl) seenUrls.set(area, seenUrl);
  else seenUrls.delete(area);
  area.replaceChildren(content);
}

function bar(score, isTop) {
  const item = element("li", isTop ? "bar top" : "bar");
  const track = element("span", "bar-track");
  const fill = element("span", "bar-fill");
  fill.style.width = `${Math.max(0, Math.min(1, score.probability)) * 100}%`;
  track.setAttribute("aria-hidden", "true");
  track.append(fill);
  item.append(element("span", "bar-label", score.label), track, element("span", "bar-value", percent(score.probability)));
  return item;
}

function latencyLine({ roundTripMs, timings_ms: timings, model, provider }) {
  const device = provider.replace(/ExecutionProvider$/, "");
  return `${Math.round(roundTripMs)} ms round trip · server ${timings.total.toFixed(1)} ms ` +
         `(inference ${timings.inference.toFixed(1)} ms) · ${model} on ${device}`;
}

function setState(area, state) {
  area.dataset.state = state;
  area.setAttribute("aria-busy", String(state === "busy"));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
