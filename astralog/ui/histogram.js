// The event-count histogram: SVG bars stacked by level, or by the top values of one field (a
// "visualise"). Dragging across it selects a new range, clicking a bar narrows to that bucket;
// arrow keys and Enter do the same from the keyboard. Live tail adds events as they arrive.

import { fmtCompact, fmtNumber, h, parseTime, replace, svg } from "./dom.js";
import { LEVEL_ORDER, levelOf } from "./events.js";
import { fmtDateTime, fmtTick, offsetMinutes, onZoneChange, zoneShort } from "./timefmt.js";

const MARGIN = { top: 8, right: 4, bottom: 20, left: 38 };
const TICKS_MS = [
  1e3,
  5e3,
  10e3,
  30e3,
  60e3,
  300e3,
  600e3,
  900e3,
  1800e3,
  3600e3,
  3 * 3600e3,
  6 * 3600e3,
  12 * 3600e3,
  86400e3,
  2 * 86400e3,
  7 * 86400e3,
];

// A round axis maximum whose half is a whole number too (the middle grid line is labelled).
function niceMax(value) {
  if (value <= 10) return [4, 6, 8, 10].find((n) => n >= value);
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// In the zone the person chose (timefmt.js), with the zone named.
const tickLabel = fmtTick;
const timeText = (ms, spanMs) => fmtDateTime(ms, { seconds: spanMs < 3600e3 });

export function createHistogram({ onRange }) {
  const el = h("div", {
    class: "histogram",
    tabindex: "0",
    role: "img",
    "aria-label": "Event histogram",
  });
  const tip = h("div", { class: "hist-tip", hidden: true, "aria-hidden": "true" });
  let data = null; // { buckets: [{ from, to, total, levels }], from, to }
  let geometry = null;
  let drag = null;
  let hoverIndex = -1;
  let keyIndex = -1;
  let groups = [];
  let selection = null;
  let series = null; // [{ key, label }] when the bars are a field's values, not levels
  let interval = 0;

  // Levels fold into the fixed order; a field's values keep the order they were given in.
  function stackOf(bucket) {
    if (series) return [series.map((s) => s.key), { ...bucket.levels }];
    const counts = {};
    for (const [level, count] of Object.entries(bucket.levels)) {
      const key = levelOf(level);
      counts[key] = (counts[key] || 0) + count;
    }
    const known = Object.values(counts).reduce((a, b) => a + b, 0);
    if (bucket.total > known) counts.OTHER = (counts.OTHER || 0) + bucket.total - known;
    return [LEVEL_ORDER, counts];
  }
  const labelOf = (key) =>
    series ? series.find((s) => s.key === key)?.label : key === "OTHER" ? "other" : key.toLowerCase();

  function render(response, options = {}) {
    series = options.series || null;
    interval = response.interval_ms || 0;
    const buckets = (response.buckets || []).map((b) => ({
      from: parseTime(b.start).date.getTime(),
      to: parseTime(b.end).date.getTime(),
      total: b.total || 0,
      levels: b.levels || {},
    }));
    data = buckets.length
      ? { buckets, from: buckets[0].from, to: buckets[buckets.length - 1].to }
      : null;
    keyIndex = -1;
    draw();
  }

  function draw() {
    const width = el.clientWidth;
    const height = el.clientHeight || 128;
    if (!data || width < 50) {
      replace(el);
      return;
    }
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const n = data.buckets.length;
    const highest = Math.max(...data.buckets.map((b) => b.total));
    const max = niceMax(Math.max(highest, 1));
    const span = data.to - data.from;
    const x = (ms) => MARGIN.left + ((ms - data.from) / span) * plotW;
    const y = (count) => MARGIN.top + plotH - (count / max) * plotH;
    geometry = { plotW, plotH, x, span, n };

    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      "aria-hidden": "true",
      focusable: "false",
    });
    const grid = svg("g", { class: "grid" });
    const axis = svg("g", { class: "axis" });
    // Nothing counted: a baseline only, never a made-up 0-4 scale.
    for (const value of highest > 0 ? [0, max / 2, max] : [0]) {
      const yy = Math.round(y(value)) + 0.5;
      grid.append(svg("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: yy, y2: yy }));
      axis.append(
        svg("text", { x: MARGIN.left - 6, y: yy + 3.5, "text-anchor": "end" }, fmtCompact(value)),
      );
    }
    const interval =
      TICKS_MS.find((t) => span / t <= Math.max(2, plotW / 110)) || TICKS_MS[TICKS_MS.length - 1];
    const offset = -offsetMinutes(new Date(data.from)) * 60e3;
    const aligned = interval >= 3600e3 ? (ms) => ms - offset : (ms) => ms;
    let tick = Math.ceil(aligned(data.from) / interval) * interval;
    for (; tick <= aligned(data.to); tick += interval) {
      const ms = interval >= 3600e3 ? tick + offset : tick;
      const xx = x(ms);
      if (xx < MARGIN.left + 24 || xx > width - 14) continue; // clear of the zone's label
      axis.append(
        svg("text", { x: xx, y: height - 5, "text-anchor": "middle" }, tickLabel(ms, interval)),
      );
      grid.append(
        svg("line", { x1: xx, x2: xx, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }),
      );
    }
    axis.append(svg("text", { x: 2, y: height - 5, class: "tz" }, zoneShort(new Date(data.to))));
    root.append(grid, axis);

    const bars = svg("g", { class: "bars" });
    groups = data.buckets.map((bucket) => {
      const x0 = x(bucket.from);
      const w = Math.max(x(bucket.to) - x0, 1);
      const gap = w > 6 ? 1.5 : w > 3 ? 0.75 : 0;
      const g = svg("g", { class: "bucket" });
      g.append(svg("rect", { class: "bar-bg", x: x0, y: MARGIN.top, width: w, height: plotH }));
      const [order, counts] = stackOf(bucket);
      let base = 0;
      for (const level of order) {
        const count = counts[level];
        if (!count) continue;
        const top = y(base + count);
        const bottom = y(base);
        g.append(
          svg("rect", {
            class: `fill-${level}`,
            x: x0 + gap / 2,
            y: top,
            width: Math.max(w - gap, 0.8),
            height: Math.max(bottom - top, 0.8),
          }),
        );
        base += count;
      }
      bucket.counts = counts;
      bars.append(g);
      return g;
    });
    root.append(bars);
    selection = svg("rect", {
      class: "selection",
      y: MARGIN.top,
      height: plotH,
      x: 0,
      width: 0,
      visibility: "hidden",
    });
    root.append(selection);
    replace(el, root, tip);
    tip.hidden = true;
    const total = data.buckets.reduce((sum, b) => sum + b.total, 0);
    el.setAttribute(
      "aria-label",
      `Histogram: ${fmtNumber(total)} events from ${timeText(data.from, span)} to ${timeText(data.to, span)}. ` +
        "Drag to zoom. Arrow keys pick a bar, Enter narrows the range to it.",
    );
    if (keyIndex >= 0) mark(keyIndex, "kbd");
  }

  function indexAt(px) {
    if (!geometry) return -1;
    const ms = data.from + ((px - MARGIN.left) / geometry.plotW) * geometry.span;
    return data.buckets.findIndex((b) => ms >= b.from && ms < b.to);
  }

  function localX(event) {
    const rect = el.getBoundingClientRect();
    return event.clientX - rect.left;
  }

  function timeAt(px) {
    const clamped = Math.max(MARGIN.left, Math.min(MARGIN.left + geometry.plotW, px));
    return data.from + ((clamped - MARGIN.left) / geometry.plotW) * geometry.span;
  }

  function mark(index, cls) {
    groups.forEach((g, i) => g.classList.toggle(cls, i === index));
  }

  function showTip(index, px) {
    if (index < 0) {
      tip.hidden = true;
      return;
    }
    const bucket = data.buckets[index];
    const rows = stackOf(bucket)[0].filter((l) => bucket.counts[l]).reverse();
    replace(
      tip,
      h(
        "strong",
        {},
        `${timeText(bucket.from, geometry.span)} – ${timeText(bucket.to, geometry.span).split(", ").pop()}`,
      ),
      h("div", {}, "Events", h("b", {}, fmtNumber(bucket.total))),
      rows.map((level) =>
        h(
          "div",
          {},
          h("i", { class: `fill-${level}` }),
          labelOf(level),
          h("b", {}, fmtNumber(bucket.counts[level])),
        ),
      ),
    );
    tip.hidden = false;
    const width = tip.offsetWidth;
    const left = px + 14 + width > el.clientWidth ? px - 14 - width : px + 14;
    tip.style.left = `${Math.max(0, left)}px`;
  }

  el.addEventListener("pointerdown", (event) => {
    if (!data || event.button !== 0) return;
    el.setPointerCapture(event.pointerId);
    drag = { x0: localX(event), moved: false };
    tip.hidden = true;
  });
  el.addEventListener("pointermove", (event) => {
    if (!data) return;
    const px = localX(event);
    if (drag) {
      if (Math.abs(px - drag.x0) >= 4) drag.moved = true;
      if (drag.moved) {
        const a = Math.max(MARGIN.left, Math.min(drag.x0, px));
        const b = Math.min(MARGIN.left + geometry.plotW, Math.max(drag.x0, px));
        selection.setAttribute("x", a);
        selection.setAttribute("width", Math.max(b - a, 0));
        selection.setAttribute("visibility", "visible");
      }
      return;
    }
    const index = indexAt(px);
    if (index !== hoverIndex) {
      hoverIndex = index;
      mark(index, "hover");
    }
    showTip(index, px);
  });
  el.addEventListener("pointerup", (event) => {
    if (!drag || !data) return;
    const px = localX(event);
    const { x0, moved } = drag;
    drag = null;
    if (moved) {
      const from = Math.round(timeAt(Math.min(x0, px)));
      const to = Math.round(timeAt(Math.max(x0, px)));
      if (to - from >= 1) onRange(new Date(from).toISOString(), new Date(to).toISOString());
      else selection.setAttribute("visibility", "hidden");
      return;
    }
    const index = indexAt(px);
    if (index >= 0) narrow(index);
  });
  el.addEventListener("pointercancel", () => {
    drag = null;
    if (selection) selection.setAttribute("visibility", "hidden");
  });
  el.addEventListener("pointerleave", () => {
    if (drag) return;
    hoverIndex = -1;
    mark(-1, "hover");
    tip.hidden = true;
  });
  el.addEventListener("keydown", (event) => {
    if (!data) return;
    const n = data.buckets.length;
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -n, End: n };
    if (event.key in moves) {
      event.preventDefault();
      keyIndex =
        keyIndex < 0
          ? moves[event.key] > 0
            ? 0
            : n - 1
          : Math.max(0, Math.min(n - 1, keyIndex + moves[event.key]));
      mark(keyIndex, "kbd");
      const b = data.buckets[keyIndex];
      showTip(keyIndex, geometry.x((b.from + b.to) / 2));
    } else if (event.key === "Enter" && keyIndex >= 0) {
      event.preventDefault();
      narrow(keyIndex);
    } else if (event.key === "Escape") {
      keyIndex = -1;
      mark(-1, "kbd");
      tip.hidden = true;
    }
  });
  el.addEventListener("blur", () => {
    keyIndex = -1;
    mark(-1, "kbd");
    tip.hidden = true;
  });

  function narrow(index) {
    const bucket = data.buckets[index];
    onRange(new Date(bucket.from).toISOString(), new Date(bucket.to).toISOString());
  }

  const observer = new ResizeObserver(() => draw());
  observer.observe(el);
  const stopZone = onZoneChange(() => draw());

  // Live tail: count events into their buckets. With `slide`, a range that ends now moves on:
  // buckets are added at the end and as many dropped at the start.
  function add(events, { slide = false } = {}) {
    if (!data || series || !interval) return 0;
    let added = 0;
    for (const event of events) {
      const ms = parseTime(event.timestamp).date.getTime();
      while (slide && ms >= data.to) {
        data.buckets.push({ from: data.to, to: data.to + interval, total: 0, levels: {} });
        data.buckets.shift();
        data.from = data.buckets[0].from;
        data.to += interval;
      }
      const bucket = data.buckets.find((b) => ms >= b.from && ms < b.to);
      if (!bucket) continue;
      const level = event.level || "UNSET";
      bucket.levels[level] = (bucket.levels[level] || 0) + 1;
      bucket.total += 1;
      added += 1;
    }
    if (added || slide) draw();
    return added;
  }

  return {
    el,
    render,
    add,
    buckets: () => data?.buckets || [],
    isSeries: () => Boolean(series),
    clear() {
      data = null;
      replace(el);
    },
    destroy() {
      observer.disconnect();
      stopZone();
    },
  };
}
