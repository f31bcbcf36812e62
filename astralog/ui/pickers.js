// Time range and source pickers for the search page.

import { fmtDateTime, h, icon, popover, replace } from "./dom.js";

export const PRESETS = [
  ["now-5m", "Last 5 minutes"],
  ["now-15m", "Last 15 minutes"],
  ["now-1h", "Last 1 hour"],
  ["now-4h", "Last 4 hours"],
  ["now-24h", "Last 24 hours"],
  ["now-7d", "Last 7 days"],
  ["now-30d", "Last 30 days"],
];
const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };
const UNIT_NAME = { s: "second", m: "minute", h: "hour", d: "day", w: "week" };
const RELATIVE = /^now-(\d+)([smhdw])$/;

export function isRelative(start, end) {
  return end === "now" && RELATIVE.test(start);
}

// A short phrase for a range: "the last 15 minutes", or "Nov 26, 01:00 – 01:15".
export function describeRange(start, end, { sentence = false } = {}) {
  if (isRelative(start, end)) {
    const preset = PRESETS.find(([value]) => value === start);
    if (preset)
      return sentence ? preset[1].replace("Last", "the last").replace(" 1 ", " ") : preset[1];
    const [, amount, unit] = RELATIVE.exec(start);
    const text = `${amount} ${UNIT_NAME[unit]}${amount === "1" ? "" : "s"}`;
    return sentence ? `the last ${text}` : `Last ${text}`;
  }
  const from = toDate(start);
  const to = toDate(end);
  if (!from || !to) return `${start} → ${end}`;
  const seconds =
    from.getSeconds() || to.getSeconds() || from.getMilliseconds() || to.getMilliseconds();
  const a = fmtDateTime(from, { seconds: Boolean(seconds) });
  const sameDay = from.toDateString() === to.toDateString();
  const b = fmtDateTime(to, { seconds: Boolean(seconds) });
  return `${a} – ${sameDay ? b.split(", ").pop() : b}`;
}

export function toDate(value, now = Date.now()) {
  if (value === "now") return new Date(now);
  const rel = RELATIVE.exec(value);
  if (rel) return new Date(now - Number(rel[1]) * UNIT_MS[rel[2]]);
  if (/^\d+$/.test(value)) return new Date(Number(value));
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

// Twice as wide around the same middle; "now-15m" becomes "now-30m" so it keeps following now.
export function zoomOut(start, end) {
  const rel = isRelative(start, end) && RELATIVE.exec(start);
  if (rel) return [`now-${Number(rel[1]) * 2}${rel[2]}`, "now"];
  const from = toDate(start).getTime();
  const to = toDate(end).getTime();
  const half = (to - from) / 2;
  const newEnd = Math.min(Date.now(), to + half);
  return [new Date(newEnd - 4 * half).toISOString(), new Date(newEnd).toISOString()];
}

function toLocalInput(date) {
  const offset = date.getTimezoneOffset() * 60000;
  return new Date(date.getTime() - offset).toISOString().slice(0, 19);
}

export function createTimePicker({ getRange, onChange }) {
  const label = h("span", {});
  const button = h(
    "button",
    { type: "button", class: "btn picker-btn", id: "time-picker", "aria-label": "Time range" },
    icon("clock"),
    label,
    icon("down", "icon-sm"),
  );
  const wrap = h("div", { class: "picker" }, button);
  const pop = popover(
    wrap,
    button,
    (panel, close) => {
      const [start, end] = getRange();
      panel.setAttribute("role", "dialog");
      panel.setAttribute("aria-label", "Choose a time range");
      const presets = h("div", { class: "presets" });
      for (const [value, text] of PRESETS) {
        const item = h(
          "button",
          {
            type: "button",
            class: "menu-item",
            "aria-current": String(start === value && end === "now"),
          },
          text,
        );
        item.addEventListener("click", () => {
          close();
          button.focus();
          onChange(value, "now");
        });
        presets.append(item);
      }
      const fromDate = toDate(start) || new Date(Date.now() - 900e3);
      const toDateValue = toDate(end) || new Date();
      const from = h("input", {
        class: "input",
        type: "datetime-local",
        step: "1",
        id: "range-from",
        value: toLocalInput(fromDate),
      });
      const to = h("input", {
        class: "input",
        type: "datetime-local",
        step: "1",
        id: "range-to",
        value: toLocalInput(toDateValue),
      });
      const error = h("p", { class: "field-error", role: "alert" });
      const form = h(
        "form",
        {},
        h("div", { class: "menu-label" }, "Absolute range (local time)"),
        h("div", { class: "field" }, h("label", { for: "range-from" }, "From"), from),
        h("div", { class: "field" }, h("label", { for: "range-to" }, "To"), to),
        error,
        h("button", { type: "submit", class: "btn btn-primary btn-sm" }, "Apply range"),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const a = new Date(from.value);
        const b = new Date(to.value);
        if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) {
          error.textContent = "Enter both times.";
          return;
        }
        if (a >= b) {
          error.textContent = "“From” must be before “To”.";
          return;
        }
        close();
        button.focus();
        onChange(a.toISOString(), b.toISOString());
      });
      panel.append(
        h("div", { class: "menu-label" }, "Relative"),
        presets,
        h("div", { class: "menu-sep" }),
        form,
      );
    },
    { cls: "time-popover", align: "right" },
  );
  function update() {
    const [start, end] = getRange();
    const text = describeRange(start, end);
    label.textContent = text;
    button.title = text;
    button.setAttribute("aria-label", `Time range: ${text}`);
  }
  update();
  return { el: wrap, update, close: pop.close };
}

export function createSourcePicker({ getSelected, getSources, onChange }) {
  const label = h("span", {});
  const button = h(
    "button",
    { type: "button", class: "btn picker-btn", id: "source-picker" },
    icon("database"),
    label,
    icon("down", "icon-sm"),
  );
  const wrap = h("div", { class: "picker" }, button);
  const pop = popover(
    wrap,
    button,
    (panel, close) => {
      panel.setAttribute("role", "dialog");
      panel.setAttribute("aria-label", "Choose sources");
      const sources = getSources();
      const selected = new Set(getSelected());
      const list = h("div", { class: "source-list", role: "group", "aria-label": "Sources" });
      const boxes = sources.map((source) => {
        const box = h("input", {
          type: "checkbox",
          value: source.id,
          checked: selected.has(source.id),
        });
        list.append(
          h(
            "label",
            { class: "check" },
            box,
            h("span", {}, source.name),
            h("span", { class: "muted mono" }, ""),
          ),
        );
        return box;
      });
      if (!sources.length) list.append(h("p", { class: "facet-empty" }, "No sources yet."));
      const apply = h("button", { type: "button", class: "btn btn-primary btn-sm" }, "Apply");
      const all = h("button", { type: "button", class: "btn btn-ghost btn-sm" }, "All sources");
      apply.addEventListener("click", () => {
        const ids = boxes.filter((b) => b.checked).map((b) => b.value);
        close();
        button.focus();
        onChange(ids.length === sources.length ? [] : ids);
      });
      all.addEventListener("click", () => {
        close();
        button.focus();
        onChange([]);
      });
      panel.append(
        h("div", { class: "menu-label" }, "Sources"),
        list,
        h("div", { class: "menu-sep" }),
        h("div", { class: "row" }, all, h("span", { class: "spacer" }), apply),
      );
    },
    { align: "left" },
  );
  function update() {
    const ids = getSelected();
    const sources = getSources();
    let text = "All sources";
    if (ids.length === 1) text = sources.find((s) => s.id === ids[0])?.name || ids[0];
    else if (ids.length > 1) text = `${ids.length} sources`;
    replace(label, text);
    button.setAttribute("aria-label", `Sources: ${text}`);
  }
  update();
  return { el: wrap, update, close: pop.close };
}
