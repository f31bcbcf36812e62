// A refused form, told next to the field at fault. A 422 names its fields (`errors[].field`,
// like "body.window_seconds"); a 400 says in words what it refused, so `words` maps phrases of
// the API's messages to the form's fields. What names no field of the form shows under it.

import { h } from "./dom.js";

// One message slot under an input: `{ el, input }`, `el` placed by the caller.
export function errorSlot(input) {
  const id = `${input.id || Math.random().toString(36).slice(2)}-error`;
  const el = h("p", { class: "field-error", id, role: "alert" });
  input.setAttribute("aria-describedby", id);
  return { el, input };
}

export function clearErrors(slots, general) {
  for (const slot of Object.values(slots)) {
    slot.el.textContent = "";
    slot.input.removeAttribute("aria-invalid");
  }
  general.textContent = "";
}

// Which field a problem names: its 422 field list, a syntax error's position (the query), or the
// first of `words` ([RegExp, field]) its detail matches.
export function problemFields(error, words = []) {
  const listed = error.problem?.errors;
  if (Array.isArray(listed) && listed.length) {
    return listed.map((e) => [fieldName(e.field), `${e.message}`]);
  }
  const detail = error.detail || String(error);
  if (typeof error.problem?.position === "number") return [["query", detail]];
  const found = words.find(([pattern]) => pattern.test(detail));
  return [[found ? found[1] : null, detail]];
}

function fieldName(path) {
  const parts = String(path || "").split(".");
  return parts[0] === "body" ? parts[1] || null : parts[0] || null;
}

// Shows `error` next to its fields (or in `general`), and focuses the first field at fault.
export function showProblem(error, slots, general, words = []) {
  clearErrors(slots, general);
  let first = null;
  for (const [name, message] of problemFields(error, words)) {
    const slot = name ? slots[name] : null;
    const target = slot ? slot.el : general;
    target.textContent = target.textContent ? `${target.textContent} ${message}` : message;
    if (!slot) continue;
    slot.input.setAttribute("aria-invalid", "true");
    first = first || slot.input;
  }
  if (first && typeof first.focus === "function") first.focus();
  else general.scrollIntoView?.({ block: "nearest" });
}
