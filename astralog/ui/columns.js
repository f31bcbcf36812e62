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

// Fields every event has, or that the list shows anyway: not worth a place in the field list.
const IMPLIED = new Set(["body", "message", "event_id", "level"]);

// The side panel's field list: the fields of the whole range (GET /v1/search/fields, a bounded
// sample, as the search box suggests them), most common first, with how many sampled events
// hold each; not just the fields of the events loaded so far.
export function fieldsOf(found) {
  return (found?.fields || [])
    .filter((f) => f.count > 0 && !IMPLIED.has(f.name))
    .sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : 1))
    .slice(0, 50)
    .map((f) => [f.name, f.count]);
}

// found: the fields answer, null while it loads, or an Error.
export function fieldList(found, { columns, onOpen, onToggle }) {
  const fields = found instanceof Error ? [] : fieldsOf(found);
  const sampled = found?.sampled ?? 0;
  const hint =
    found && !(found instanceof Error) && sampled >= (found.sample_limit ?? Infinity)
      ? h("p", { class: "field-hint" }, `Counts from ${fmtNumber(sampled)} sampled events`)
      : null;
  return h(
    "section",
    { class: "facet field-list", "aria-label": "Fields", "aria-busy": String(!found) },
    h("h3", {}, "Fields"),
    hint,
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
      : h("p", { class: "facet-empty" }, fieldsEmpty(found)),
  );
}

function fieldsEmpty(found) {
  if (found instanceof Error) return `Fields could not be read: ${found.detail || found.message}`;
  return found ? "No fields in this range" : "Loading fields…";
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
            onclick: (event) => onFilter(item.value, event.altKey || event.shiftKey),
          },
          // Named by its visible text (what speech control users say), hidden words around it.
          h("span", { class: "sr-only" }, `Filter ${field} `),
          h("span", { class: "fv" }, item.value),
          h("span", { class: "sr-only" }, ": "),
          h("span", { class: "fc" }, fmtNumber(item.count)),
          h("span", { class: "sr-only" }, " events"),
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
