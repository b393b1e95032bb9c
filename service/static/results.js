// One panel's answer area: a placeholder, "classifying…", the top-k as labelled bars with the
// latency, or an error message. The area's data-state says which (idle, busy, done, error).

export function percent(fraction) {
  const value = fraction * 100;
  return value > 0 && value < 0.1 ? "<0.1 %" : `${value.toFixed(1)} %`;
}

export function showPlaceholder(area, text) {
  setState(area, "idle");
  area.replaceChildren(element("p", "placeholder", text));
}

export function showBusy(area) {
  setState(area, "busy"); // the previous answer stays, dimmed, until the new one arrives
  if (!area.querySelector(".answer, .error")) area.replaceChildren(element("p", "placeholder", "Classifying…"));
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
  answer.append(headline, bars, element("p", "latency", latencyLine(prediction)));
  area.replaceChildren(answer);
}

export function showError(area, title, detail) {
  setState(area, "error");
  const message = element("div", "error");
  message.setAttribute("role", "alert");
  message.append(element("p", "error-title", title), element("p", "error-detail", detail));
  area.replaceChildren(message);
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
