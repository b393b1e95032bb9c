// The model pickers, filled from GET /models. Which panel offers a model follows its
// `input_method` (the service's table of preprocessing kinds decides it): "draw" models go to
// the drawing pad, "upload" models to the photo panel. Models still loading or unavailable
// are listed but cannot be picked.

import { percent } from "./results.js";

export const kindOf = (model) => ({ draw: "digit", upload: "photo" })[model.input_method] ?? null;

// Only int8 is named: fp32 is what every model computes in unless its card says otherwise.
const isInt8 = (model) => model.precision === "int8";

export function describeOption(model) {
  const accuracy = model.test_accuracy == null ? "accuracy unknown" : percent(model.test_accuracy);
  const status = model.status === "ready" ? "" : ` (${model.status === "loading" ? "loading…" : "unavailable"})`;
  return `${model.id} · ${model.dataset ?? "?"} · ${accuracy}${isInt8(model) ? " · int8" : ""}${status}`;
}

export function describeModel(model) {
  if (!model) return "";
  if (model.status === "unavailable") return `Unavailable: ${model.error ?? "no reason given"}`;
  const classes = model.classes ?? [];
  const accuracy = model.test_accuracy == null ? "unknown" : `${(model.test_accuracy * 100).toFixed(2)} %`;
  const parts = [`${model.arch} trained on ${model.dataset}, ${accuracy} test accuracy`,
                 `${classes.length} classes: ${classes.join(", ")}`];
  if (isInt8(model)) parts.splice(1, 0, "int8: quantized from its fp32 model");
  if (model.provider) parts.push(`runs on ${model.provider.replace(/ExecutionProvider$/, "")}`);
  return parts.join(" · ");
}

// Fill `select` with `groups` ([{label, models}]), keeping the current choice when it can
// still be picked, else choosing the most accurate ready model of the first group.
export function fillPicker(select, groups) {
  const previous = select.value;
  const fragment = document.createDocumentFragment();
  for (const { label, models } of groups) {
    if (!models.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const model of [...models].sort((a, b) => a.id.localeCompare(b.id))) {
      const option = new Option(describeOption(model), model.id);
      option.disabled = model.status !== "ready";
      if (model.error) option.title = model.error;
      group.append(option);
    }
    fragment.append(group);
  }
  select.replaceChildren(fragment);
  const ready = groups.flatMap((group) => group.models).filter((model) => model.status === "ready");
  const best = [...(groups[0]?.models ?? [])].filter((model) => model.status === "ready")
    .sort((a, b) => (b.test_accuracy ?? 0) - (a.test_accuracy ?? 0))[0];
  const keep = ready.some((model) => model.id === previous);
  select.value = keep ? previous : best?.id ?? ready[0]?.id ?? "";
  select.disabled = ready.length === 0;
  if (!select.options.length) select.append(new Option("no model of this kind", ""));
}
