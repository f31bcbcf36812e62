// One search result: a single line (time, level, service, message) that expands to the whole
// event as a field table and as raw JSON. Field values add filters to the query.

import { copyText, h, icon, replace } from "./dom.js";
import { timeNode } from "./timefmt.js";

// Bottom to top in the histogram, most severe first in legends read in reverse.
export const LEVEL_ORDER = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "OTHER"];
const ALIASES = {
  WARNING: "WARN",
  ERR: "ERROR",
  CRITICAL: "FATAL",
  CRIT: "ERROR",
  EMERG: "FATAL",
  ALERT: "ERROR",
  PANIC: "FATAL",
  NOTICE: "INFO",
  INFORMATION: "INFO",
  INFORMATIONAL: "INFO",
  DBG: "DEBUG",
  TRC: "TRACE",
};
const BY_NUMBER = [
  [21, "FATAL"],
  [17, "ERROR"],
  [13, "WARN"],
  [9, "INFO"],
  [5, "DEBUG"],
  [1, "TRACE"],
];

// The server maps every format's severity words to OpenTelemetry's numbers with one table, so
// the number decides the bucket (syslog "crit" is ERROR2, not FATAL); words only when it is 0.
export function levelOf(text, number = 0) {
  if (number > 0) for (const [min, name] of BY_NUMBER) if (number >= min) return name;
  const upper = String(text || "")
    .toUpperCase()
    .replace(/\d+$/, "");
  if (LEVEL_ORDER.includes(upper) && upper !== "OTHER") return upper;
  if (ALIASES[upper]) return ALIASES[upper];
  for (const [min, name] of BY_NUMBER) if (number >= min) return name;
  return "OTHER";
}

// The query field that reads a value of the event (see astralog/query/language.py).
const WELL_KNOWN = new Set([
  "body",
  "message",
  "level",
  "severity",
  "service",
  "trace_id",
  "span_id",
  "source",
  "event_id",
  "scope",
  "host",
]);
const RESOURCE_ALIASES = { "host.name": "host", "service.name": "service" };

export function queryField(group, key) {
  if (group === "resource") return RESOURCE_ALIASES[key] || (WELL_KNOWN.has(key) ? null : key);
  if (group === "attributes") return WELL_KNOWN.has(key) ? null : key;
  return key;
}

function firstLine(text) {
  const body = String(text ?? "");
  const cut = body.indexOf("\n");
  return cut < 0 ? body : `${body.slice(0, cut)} …`;
}

// The bucket (from the number) colours the badge, but its text is the event's own word, as the
// facets and the API say it: NOTICE stays NOTICE in the INFO colour.
function badge(text, level) {
  const own = String(text || "").toUpperCase();
  const shown = own || (level === "OTHER" ? "—" : level);
  return h(
    "span",
    { class: "lvl", title: own || null },
    shown.length > 7 ? `${shown.slice(0, 6)}…` : shown,
  );
}

let rowSeq = 0;

// ctx: { sourceName(id) -> string, filter(field, value, negate), linkTo(event) -> url }
export function eventRow(event, ctx, { fresh = false } = {}) {
  const level = levelOf(event.level, event.severity_number);
  const id = `ev-${++rowSeq}`;
  const row = h(
    "button",
    { type: "button", class: "ev-row", "aria-expanded": "false", "aria-controls": `${id}-detail` },
    timeNode(event.timestamp, "event", "ev-time"),
    badge(event.level, level),
    (ctx.columns || ["service"]).map((field) => {
      const text = ctx.cell ? ctx.cell(event, field) : event[field];
      const cls = field === "service" ? "ev-svc" : "ev-svc ev-col";
      return h("span", { class: cls, title: text || "", dataset: { col: field } }, text || "—");
    }),
    h("span", { class: "ev-msg" }, firstLine(event.body)),
  );
  const detail = h("div", { class: "ev-detail", id: `${id}-detail`, hidden: true });
  const item = h(
    "li",
    { class: ["ev", `lvl-${level}`, fresh && "fresh"], dataset: { id: event.event_id || "" } },
    row,
    detail,
  );
  row.addEventListener("click", () => {
    const open = row.getAttribute("aria-expanded") !== "true";
    row.setAttribute("aria-expanded", String(open));
    if (open && !detail.childElementCount) replace(detail, eventDetail(event, ctx));
    detail.hidden = !open;
  });
  return item;
}

function eventDetail(event, ctx) {
  const json = JSON.stringify(event, null, 2);
  const fieldsView = fieldTable(event, ctx);
  const jsonView = h(
    "pre",
    { class: "json-view", tabindex: "0", "aria-label": "Event as JSON", hidden: true },
    highlightJson(json),
  );
  const tabFields = h("button", { type: "button", "aria-pressed": "true" }, "Fields");
  const tabJson = h("button", { type: "button", "aria-pressed": "false" }, "JSON");
  const show = (asJson) => {
    tabFields.setAttribute("aria-pressed", String(!asJson));
    tabJson.setAttribute("aria-pressed", String(asJson));
    fieldsView.hidden = asJson;
    jsonView.hidden = !asJson;
  };
  tabFields.addEventListener("click", () => show(false));
  tabJson.addEventListener("click", () => show(true));
  const copy = h(
    "button",
    { type: "button", class: "btn btn-sm" },
    icon("copy", "icon-sm"),
    "Copy JSON",
  );
  copy.addEventListener("click", () => copyText(json, "Event JSON copied"));
  const link = h(
    "button",
    { type: "button", class: "btn btn-sm btn-ghost", "aria-label": "Copy link" },
    icon("link", "icon-sm"),
    h("span", { class: "btn-label" }, "Copy link"),
  );
  link.addEventListener("click", () => copyText(ctx.linkTo(event), "Link to this event copied"));
  // The events around this one, from its source: why it happened is often just before it.
  const around = ctx.showContext
    ? h(
        "button",
        { type: "button", class: "btn btn-sm btn-ghost ctx-open", onclick: () => ctx.showContext(event) },
        icon("history", "icon-sm"),
        h("span", { class: "btn-label" }, "Show context"),
      )
    : null;
  return [
    h(
      "div",
      { class: "ev-detail-bar" },
      h(
        "div",
        { class: "segmented", role: "group", "aria-label": "Show the event as" },
        tabFields,
        tabJson,
      ),
      h("span", { class: "spacer" }),
      around,
      link,
      copy,
    ),
    event.body ? h("pre", { class: "ev-body", "aria-label": "Message" }, String(event.body)) : null,
    fieldsView,
    jsonView,
  ];
}

function fieldTable(event, ctx) {
  const rows = [];
  const add = (label, value, field, display) => {
    if (value === undefined || value === null || value === "") return;
    const text = typeof value === "string" ? value : JSON.stringify(value);
    rows.push(fieldRow(label, text, field, display, ctx));
  };
  for (const key of ["timestamp", "observed_timestamp"]) {
    const when = event[key] && timeNode(event[key], "full", "value-text");
    if (when) rows.push(h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, when), h("td", { class: "fact" })));
  }
  add("level", event.level, "level");
  add("severity_number", event.severity_number || null);
  add("service", event.service, "service");
  add("source", event.source_id, "source", ctx.sourceName(event.source_id));
  add("event_id", event.event_id, "event_id");
  add("trace_id", event.trace_id, "trace_id");
  add("span_id", event.span_id, "span_id");
  add("scope", event.scope?.name, "scope");
  add("scope.version", event.scope?.version);
  const groups = [
    ["Attributes", "attributes", event.attributes],
    ["Resource", "resource", event.resource],
  ];
  for (const [title, group, map] of groups) {
    const keys = Object.keys(map || {}).sort();
    if (!keys.length) continue;
    rows.push(h("tr", { class: "group" }, h("th", { colspan: "3", scope: "colgroup" }, title)));
    for (const key of keys) {
      const value = map[key];
      const field = queryField(group, key);
      const text = typeof value === "string" ? value : JSON.stringify(value);
      rows.push(fieldRow(key, text, field, undefined, ctx));
    }
  }
  return h(
    "table",
    { class: "fields" },
    h(
      "caption",
      { class: "sr-only" },
      "Fields of the event. Click a value to filter on it; Alt-click to exclude it.",
    ),
    h("colgroup", {}, h("col", { class: "c-key" }), h("col", {}), h("col", { class: "c-act" })),
    h("tbody", {}, rows),
  );
}

function fieldRow(label, text, field, display, ctx) {
  const shown = display && display !== text ? `${display} (${text})` : text;
  if (!field) {
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      h("td", {}, h("span", { class: "value-text" }, shown)),
      h("td", { class: "fact" }),
    );
  }
  const value = h(
    "button",
    { type: "button", class: "value-btn", title: `Filter: ${field}:${text} (Alt-click excludes)` },
    shown,
  );
  value.addEventListener("click", (event) =>
    ctx.filter(field, text, event.altKey || event.shiftKey),
  );
  const plus = h(
    "button",
    {
      type: "button",
      class: "icon-btn icon-btn-sm",
      "aria-label": `Filter for ${field}:${text}`,
      title: "Filter for this value",
    },
    icon("plus", "icon-sm"),
  );
  const minus = h(
    "button",
    {
      type: "button",
      class: "icon-btn icon-btn-sm",
      "aria-label": `Exclude ${field}:${text}`,
      title: "Exclude this value",
    },
    icon("minus", "icon-sm"),
  );
  plus.addEventListener("click", () => ctx.filter(field, text, false));
  minus.addEventListener("click", () => ctx.filter(field, text, true));
  const isColumn = Boolean(ctx.columns?.includes(field));
  const column = ctx.toggleColumn
    ? h(
        "button",
        {
          type: "button",
          class: "icon-btn icon-btn-sm col-toggle",
          "aria-label": `${isColumn ? "Remove" : "Add"} column ${field}`,
          "aria-pressed": String(isColumn),
          title: isColumn ? "Remove the column" : "Show as a column",
          onclick: () => ctx.toggleColumn(field),
        },
        icon("columns", "icon-sm"),
      )
    : null;
  return h(
    "tr",
    { dataset: { field } },
    h("th", { scope: "row" }, label),
    h("td", {}, value),
    h("td", { class: "fact" }, plus, minus, column),
  );
}

// JSON.stringify output coloured by token; every piece is a text node.
function highlightJson(json) {
  const out = [];
  const pattern =
    /("(?:\\.|[^"\\])*")(\s*:)?|\b(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)\b/g;
  let last = 0;
  for (const match of json.matchAll(pattern)) {
    out.push(json.slice(last, match.index));
    if (match[1] && match[2]) out.push(h("span", { class: "k" }, match[1]), match[2]);
    else if (match[1]) out.push(h("span", { class: "s" }, match[1]));
    else out.push(h("span", { class: "n" }, match[3]));
    last = match.index + match[0].length;
  }
  out.push(json.slice(last));
  return out;
}
