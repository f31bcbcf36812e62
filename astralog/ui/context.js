// "Show context": the events just before and after one event, from its source (optionally the
// same host or service), oldest first, the event itself highlighted. GET /v1/search/context.

import { get, qs } from "./api.js";
import { fmtEventTime, h, openDialog, replace } from "./dom.js";
import { levelOf } from "./events.js";

const STEP = 10;
const MAX_SIDE = 500; // the API's bound per side

export function showContext(event, { sourceName }) {
  let before = STEP;
  let after = STEP;
  let same = "";
  const status = h("p", { class: "muted ctx-status", role: "status" });
  const list = h("ol", { class: "ctx-list", "aria-label": "Events around this one, oldest first" });
  const scope = h(
    "select",
    { class: "select select-sm", id: "ctx-same", "aria-label": "Which events" },
    h("option", { value: "" }, "Same source"),
    event.resource?.["host.name"] ? h("option", { value: "host" }, "Same host") : null,
    event.service ? h("option", { value: "service" }, "Same service") : null,
  );
  const earlier = h("button", { type: "button", class: "btn btn-sm", id: "ctx-earlier" }, "Earlier");
  const later = h("button", { type: "button", class: "btn btn-sm", id: "ctx-later" }, "Later");
  const source = sourceName(event.source_id) || event.source_id;
  const { dialog } = openDialog({
    title: "Events around this one",
    description: `From ${source}, oldest first. The event you opened is highlighted.`,
    body: [
      h("div", { class: "ctx-bar" }, scope, h("span", { class: "spacer" }), earlier, later),
      status,
      list,
    ],
  });
  dialog.classList.add("dialog-wide", "ctx-dialog");
  scope.addEventListener("change", () => {
    same = scope.value;
    load("anchor");
  });
  earlier.addEventListener("click", () => {
    before = Math.min(MAX_SIDE, before * 2);
    load("first");
  });
  later.addEventListener("click", () => {
    after = Math.min(MAX_SIDE, after * 2);
    load("last");
  });

  async function load(focus) {
    status.textContent = "Loading…";
    const at = Date.parse(event.timestamp);
    const range = Number.isFinite(at)
      ? { start: new Date(at - 60e3).toISOString(), end: new Date(at + 60e3).toISOString() }
      : {};
    try {
      const answer = await get(
        `/v1/search/context${qs({ event_id: event.event_id, before, after, same: same || undefined, ...range })}`,
      );
      render(answer, focus);
    } catch (error) {
      replace(list);
      status.textContent = error.detail || String(error);
    }
  }

  function render(answer, focus) {
    const rows = answer.events.map((e) => contextRow(e));
    replace(list, rows);
    earlier.disabled = !answer.more_before || before >= MAX_SIDE;
    later.disabled = !answer.more_after || after >= MAX_SIDE;
    const n = answer.events.length - 1;
    status.textContent = `${answer.anchor_index} before, ${n - answer.anchor_index} after${
      answer.more_before || answer.more_after ? "" : " · everything the source holds around it"
    }`;
    const target =
      focus === "first" ? rows[0] : focus === "last" ? rows[rows.length - 1] : rows[answer.anchor_index];
    target?.scrollIntoView({ block: "center" });
  }

  load("anchor");
}

function contextRow(event) {
  const level = levelOf(event.level, event.severity_number);
  const anchor = event.context === "anchor";
  return h(
    "li",
    {
      class: ["ctx-row", `lvl-${level}`, anchor && "ctx-anchor"],
      "aria-current": anchor ? "true" : null,
      dataset: { id: event.event_id },
    },
    h("time", { class: "ev-time", datetime: event.timestamp }, fmtEventTime(event.timestamp)),
    h("span", { class: "lvl" }, String(event.level || "—").toUpperCase().slice(0, 7)),
    h("span", { class: "ev-svc" }, event.service || "—"),
    h("span", { class: "ev-msg" }, String(event.body ?? "")),
  );
}
