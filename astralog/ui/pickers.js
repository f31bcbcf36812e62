// Time range and source pickers for the search page. Times are typed as text: relative ones as
// the server reads them (now-2h, now-7d/d), absolute ones ISO-like and 24-hour in the zone the
// person chose (UTC or local, switched here; see timefmt.js).

import { h, icon, popover, replace } from "./dom.js";
import {
  fmtDateTime,
  fmtInput,
  getZone,
  onZoneChange,
  RELATIVE,
  readTime,
  relativeDate,
  setZone,
  zoneLabel,
  zoneName,
  zoneShort,
} from "./timefmt.js";

export const PRESETS = [
  ["now-5m", "Last 5 minutes"],
  ["now-15m", "Last 15 minutes"],
  ["now-1h", "Last 1 hour"],
  ["now-4h", "Last 4 hours"],
  ["now-24h", "Last 24 hours"],
  ["now-7d", "Last 7 days"],
  ["now-30d", "Last 30 days"],
];
const UNIT_NAME = { s: "second", m: "minute", h: "hour", d: "day", w: "week" };
const LAST = /^now-(\d+)([smhdw])$/; // a window that ends now and keeps following it

export function isRelative(start, end) {
  return end === "now" && LAST.test(start);
}

// A short phrase for a range: "the last 15 minutes", "now-2h → now-1h", or
// "Nov 26, 01:00 – 01:15 UTC".
export function describeRange(start, end, { sentence = false } = {}) {
  if (isRelative(start, end)) {
    const preset = PRESETS.find(([value]) => value === start);
    if (preset)
      return sentence ? preset[1].replace("Last", "the last").replace(" 1 ", " ") : preset[1];
    const [, amount, unit] = LAST.exec(start);
    const text = `${amount} ${UNIT_NAME[unit]}${amount === "1" ? "" : "s"}`;
    return sentence ? `the last ${text}` : `Last ${text}`;
  }
  const from = toDate(start);
  const to = toDate(end);
  if (!from || !to || RELATIVE.test(start) || RELATIVE.test(end)) return `${start} → ${end}`;
  const seconds =
    from.getSeconds() || to.getSeconds() || from.getMilliseconds() || to.getMilliseconds();
  const a = fmtDateTime(from, { seconds: Boolean(seconds), zone: false });
  const b = fmtDateTime(to, { seconds: Boolean(seconds), zone: false });
  const sameDay = a.split(", ").slice(0, -1).join() === b.split(", ").slice(0, -1).join();
  return `${a} – ${sameDay ? b.split(", ").pop() : b} ${zoneShort(to)}`;
}

export function toDate(value, now = Date.now()) {
  const text = String(value);
  const relative = relativeDate(text, now);
  if (relative) return relative;
  if (/^\d+$/.test(text)) return new Date(Number(text));
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

// Twice as wide around the same middle; "now-15m" becomes "now-30m" so it keeps following now.
export function zoomOut(start, end) {
  const rel = isRelative(start, end) && LAST.exec(start);
  if (rel) return [`now-${Number(rel[1]) * 2}${rel[2]}`, "now"];
  const from = toDate(start).getTime();
  const to = toDate(end).getTime();
  const half = (to - from) / 2;
  const newEnd = Math.min(Date.now(), to + half);
  return [new Date(newEnd - 4 * half).toISOString(), new Date(newEnd).toISOString()];
}

// What a time box shows for a range bound: relative text as it is, else the time in the zone.
function boxValue(value) {
  if (RELATIVE.test(String(value))) return String(value);
  const date = toDate(value);
  return date ? fmtInput(date) : String(value);
}

function zoneSwitch(onSwitch) {
  const group = h("div", {
    class: "segmented tz-switch",
    role: "group",
    "aria-label": "Show times in",
  });
  for (const [zone, text] of [
    ["utc", "UTC"],
    ["local", "Local"],
  ]) {
    const button = h(
      "button",
      { type: "button", id: `tz-${zone}`, "aria-pressed": String(getZone() === zone) },
      text,
    );
    button.addEventListener("click", () => {
      if (getZone() !== zone) setZone(zone);
      group
        .querySelectorAll("button")
        .forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      onSwitch();
    });
    group.append(button);
  }
  return group;
}

function rangeForm(getRange, apply) {
  const [start, end] = getRange();
  const box = (id, value) =>
    h("input", {
      class: "input mono",
      type: "text",
      id,
      value: boxValue(value),
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "now-2h or 2026-01-31 14:00",
      "aria-describedby": "range-hint",
    });
  const from = box("range-from", start);
  const to = box("range-to", end);
  const hint = h("p", { class: "field-hint", id: "range-hint" });
  const error = h("p", { class: "field-error", role: "alert" });
  const form = h(
    "form",
    { class: "range-form", novalidate: true },
    h("div", { class: "menu-label" }, "Range"),
    h("div", { class: "field" }, h("label", { for: "range-from" }, "From"), from),
    h("div", { class: "field" }, h("label", { for: "range-to" }, "To"), to),
    hint,
    error,
    h("button", { type: "submit", class: "btn btn-primary btn-sm" }, "Apply range"),
  );
  function describeZone() {
    hint.textContent =
      `24-hour, ${getZone() === "utc" ? "in UTC" : `in local time (${zoneLabel()})`}; ` +
      "or relative: now-2h, now-7d (s, m, h, d, w).";
  }
  // Absolute times stay the same instants when the zone changes: re-read, re-write.
  function rezone(previous) {
    for (const input of [from, to]) {
      const read = readTime(input.value, previous);
      if (read.value && !RELATIVE.test(input.value.trim())) input.value = fmtInput(read.date);
    }
    describeZone();
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const a = readTime(from.value);
    const b = readTime(to.value);
    const bad = a.error ? from : b.error ? to : null;
    if (bad) {
      error.textContent = `${bad === from ? "From" : "To"}: ${(a.error || b.error)}`;
      bad.setAttribute("aria-invalid", "true");
      bad.focus();
      return;
    }
    if (a.date >= b.date) {
      error.textContent = "“From” must be before “To”.";
      from.focus();
      return;
    }
    apply(a.value, b.value);
  });
  describeZone();
  return { form, rezone };
}

export function createTimePicker({ getRange, onChange }) {
  const label = h("span", {});
  const zoneBadge = h("span", { class: "tz-badge", "aria-hidden": "true" });
  const button = h(
    "button",
    { type: "button", class: "btn picker-btn", id: "time-picker", "aria-label": "Time range" },
    icon("clock"),
    label,
    " ", // the text reads "Last 15 minutes UTC", not "minutesUTC" (a flex gap is no space)
    zoneBadge,
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
      const choose = (a, b) => {
        close();
        button.focus();
        onChange(a, b);
      };
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
        item.addEventListener("click", () => choose(value, "now"));
        presets.append(item);
      }
      const range = rangeForm(getRange, choose);
      let zone = getZone();
      const switcher = zoneSwitch(() => {
        range.rezone(zone);
        zone = getZone();
      });
      panel.append(
        h("div", { class: "menu-label" }, "Relative"),
        presets,
        h("div", { class: "menu-sep" }),
        range.form,
        h("div", { class: "menu-sep" }),
        h("div", { class: "tz-row" }, h("span", { class: "menu-label" }, "Time zone"), switcher),
      );
    },
    { cls: "time-popover", align: "right" },
  );
  function update() {
    const [start, end] = getRange();
    const text = describeRange(start, end);
    const absolute = !RELATIVE.test(String(start)) || !RELATIVE.test(String(end));
    label.textContent = absolute ? text.replace(/ UTC[+-]?[\d:]*$/, "") : text;
    zoneBadge.textContent = zoneShort(toDate(end) || new Date());
    button.title = `${text} (times in ${zoneName()})`;
    // The name starts with what the button shows, so speech control ("click Last 15 minutes") works.
    const shown = `${label.textContent} ${zoneBadge.textContent}`;
    button.setAttribute("aria-label", `${shown}: time range, times in ${zoneName()}`);
  }
  const stop = onZoneChange(() => (wrap.isConnected ? update() : stop()));
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
      // No selection means every source: every box is ticked, as the button says.
      const chosen = getSelected();
      const selected = new Set(chosen.length ? chosen : sources.map((s) => s.id));
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
      const error = h("p", { class: "field-error", role: "alert" });
      list.addEventListener("change", () => {
        error.textContent = "";
      });
      apply.addEventListener("click", () => {
        const ids = boxes.filter((b) => b.checked).map((b) => b.value);
        if (sources.length && !ids.length) {
          error.textContent = "Tick at least one source, or choose All sources.";
          return;
        }
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
        error,
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
