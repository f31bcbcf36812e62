// Columns of the result list and the field details. The columns between level and message are
// fields the person chose; the URL keeps them (`cols`), so a shared link shows the same layout.
// A header moves (buttons, or drag) and drops its column; a field's details show its top values
// (the facets API) and offer to chart them over time.

import { post } from "./api.js";
import { fmtNumber, h, icon, openDialog, replace } from "./dom.js";

export const DEFAULT_COLUMNS = ["service"];
const MAX_COLUMNS = 12;
const TOP_VALUES = 10;

export function readColumns(params) {
  const raw = params.get("cols");
  if (raw === null) return DEFAULT_COLUMNS;
  const names = raw.split(",").map((name) => name.trim());
  return [...new Set(names.filter((n) => n && n.length <= 256))].slice(0, MAX_COLUMNS);
}

// The URL says nothing while the layout is the default one.
export function columnsParam(columns) {
  return columns.join(",") === DEFAULT_COLUMNS.join(",") ? undefined : columns.join(",");
}

// What a query field reads from an event (see astralog/query/language.py).
export function fieldValue(event, field, sourceName = () => "") {
  const direct = {
    service: event.service,
    level: event.level,
    severity: event.level,
    host: event.resource?.["host.name"],
    source: sourceName(event.source_id) || event.source_id,
    trace_id: event.trace_id,
    span_id: event.span_id,
    event_id: event.event_id,
    scope: event.scope?.name,
    message: event.body,
    body: event.body,
  };
  const value =
    field in direct ? direct[field] : (event.attributes?.[field] ?? event.resource?.[field]);
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function applyLayout(target, columns) {
  const middle = columns.map(() => "minmax(72px, 160px)").join(" ");
  target.style.setProperty("--ev-cols", `172px 62px ${middle} minmax(0, 1fr)`);
}

// The header row: Time, Level, the chosen columns (each a menu of its own), Message.
export function columnHeader(columns, { onOpen, onMove, onRemove }) {
  const cells = columns.map((field, index) => {
    const name = h(
      "button",
      { type: "button", class: "col-name", title: `${field}: top values, chart, remove` },
      field,
    );
    name.addEventListener("click", () => onOpen(field));
    const move = (by, label, iconName, flip = "") =>
      h(
        "button",
        {
          type: "button",
          class: "icon-btn icon-btn-xs",
          "aria-label": `Move column ${field} ${label}`,
          disabled: index + by < 0 || index + by >= columns.length,
          onclick: () => onMove(field, by),
        },
        icon(iconName, `icon-sm ${flip}`),
      );
    const cell = h(
      "div",
      { class: "col-head", draggable: "true", dataset: { field } },
      name,
      h(
        "span",
        { class: "col-tools" },
        move(-1, "left", "chevron", "flip"),
        move(1, "right", "chevron"),
        h(
          "button",
          {
            type: "button",
            class: "icon-btn icon-btn-xs",
            "aria-label": `Remove column ${field}`,
            onclick: () => onRemove(field),
          },
          icon("x", "icon-sm"),
        ),
      ),
    );
    cell.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/x-astralog-column", field);
      event.dataTransfer.effectAllowed = "move";
    });
    cell.addEventListener("dragover", (event) => event.preventDefault());
    cell.addEventListener("drop", (event) => {
      event.preventDefault();
      const from = event.dataTransfer.getData("text/x-astralog-column");
      if (from && from !== field) onMove(from, index - columns.indexOf(from));
    });
    return cell;
  });
  return h(
    "div",
    // The rows are list items, not a grid's rows: the head is a labelled group, not a row.
    { class: "results-head", role: "group", "aria-label": "Columns" },
    h("span", {}, "Time"),
    h("span", {}, "Level"),
    cells,
    h("span", {}, "Message"),
  );
}

export function moveColumn(columns, field, by) {
  const from = columns.indexOf(field);
  const to = Math.max(0, Math.min(columns.length - 1, from + by));
  if (from < 0 || from === to) return columns;
  const next = columns.filter((c) => c !== field);
  next.splice(to, 0, field);
  return next;
}

// The fields of the loaded events, most common first: the field list of the side panel.
export function fieldsOf(events) {
  const counts = new Map();
  for (const event of events) {
    const names = new Set([
      ...Object.keys(event.attributes || {}),
      ...Object.keys(event.resource || {}).filter((k) => k !== "host.name" && k !== "service.name"),
    ]);
    if (event.resource?.["host.name"]) names.add("host");
    if (event.service) names.add("service");
    for (const name of names) counts.set(name, (counts.get(name) || 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 50);
}

export function fieldList(events, { columns, onOpen, onToggle }) {
  const fields = fieldsOf(events);
  return h(
    "section",
    { class: "facet field-list", "aria-label": "Fields" },
    h("h3", {}, "Fields"),
    fields.length
      ? h(
          "ul",
          {},
          fields.map(([field, n]) => {
            const shown = columns.includes(field);
            return h(
              "li",
              { class: "facet-item", dataset: { field } },
              h(
                "button",
                {
                  type: "button",
                  class: "facet-btn",
                  title: `${field}: top values and chart`,
                  onclick: () => onOpen(field),
                },
                h("span", { class: "fv" }, field),
                h("span", { class: "fc" }, fmtNumber(n)),
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "icon-btn icon-btn-sm facet-col",
                  "aria-pressed": String(shown),
                  "aria-label": `${shown ? "Remove" : "Add"} column ${field}`,
                  title: shown ? "Remove the column" : "Add as a column",
                  onclick: () => onToggle(field),
                },
                icon(shown ? "minus" : "plus", "icon-sm"),
              ),
            );
          }),
        )
      : h("p", { class: "facet-empty" }, "No fields in the loaded events"),
  );
}

// A field's details: its top values over the search (each a filter), a column toggle and a
// chart of the top values over time.
export function openFieldDetails(field, { filters, isColumn, onToggle, onFilter, onVisualise }) {
  const values = h("div", { class: "field-values", "aria-live": "polite" }, "Loading values…");
  const toggle = h(
    "button",
    { type: "button", class: "btn btn-sm", id: "field-toggle-column" },
    icon(isColumn ? "minus" : "plus", "icon-sm"),
    isColumn ? "Remove column" : "Add as column",
  );
  const chart = h(
    "button",
    { type: "button", class: "btn btn-sm", id: "field-visualise", disabled: true },
    icon("chart", "icon-sm"),
    "Visualise over time",
  );
  const { close } = openDialog({
    title: field,
    description: "Top values among the events that match the search.",
    body: [values],
    actions: [toggle, chart],
  });
  toggle.addEventListener("click", () => {
    close();
    onToggle(field);
  });
  let top = [];
  chart.addEventListener("click", () => {
    close();
    onVisualise(field, top);
  });
  post("/v1/search/facets", { ...filters, fields: [field], size: TOP_VALUES }).then(
    (response) => {
      top = (response.facets || {})[field] || [];
      chart.disabled = !top.length;
      replace(values, topValues(field, top, (value, negate) => (close(), onFilter(value, negate))));
    },
    (error) => replace(values, h("p", { class: "field-error" }, error.detail || String(error))),
  );
}

function topValues(field, top, onFilter) {
  if (!top.length) return h("p", { class: "facet-empty" }, `No event of the search has ${field}.`);
  const max = Math.max(...top.map((v) => v.count));
  return h(
    "ul",
    { class: "top-values" },
    top.map((item) => {
      const bar = h("i", {});
      bar.style.transform = `scaleX(${item.count / max})`;
      return h(
        "li",
        { class: "facet-item" },
        h(
          "button",
          {
            type: "button",
            class: "facet-btn",
            "aria-label": `Filter ${field}:${item.value}, ${fmtNumber(item.count)} events`,
            onclick: (event) => onFilter(item.value, event.altKey || event.shiftKey),
          },
          h("span", { class: "fv" }, item.value),
          h("span", { class: "fc" }, fmtNumber(item.count)),
          h("span", { class: "facet-bar", "aria-hidden": "true" }, bar),
        ),
        h(
          "button",
          {
            type: "button",
            class: "icon-btn icon-btn-sm",
            "aria-label": `Exclude ${field}:${item.value}`,
            onclick: () => onFilter(item.value, true),
          },
          icon("minus", "icon-sm"),
        ),
      );
    }),
  );
}
