// The search page's histogram card: the bars, the total and legend they add up to, "Zoom out",
// and the chart of one field's top values over time ("visualise"). Live tail counts into it.

import { ApiError, post } from "./api.js";
import { announce, fmtNumber, h, icon, replace } from "./dom.js";
import { LEVEL_ORDER, levelOf } from "./events.js";
import { createHistogram } from "./histogram.js";
import { addTerm } from "./querybar.js";

const SERIES = 5; // top values charted by "visualise"

// describe() -> the range in words; changed() after the totals moved.
export function createHistCard({ onRange, onZoomOut, onLevels, describe, changed }) {
  const histogram = createHistogram({ onRange });
  const histTotal = h("div", { class: "hist-total", id: "hist-total" });
  const legend = h("div", { class: "legend", "aria-hidden": "true" });
  const zoomOutButton = h(
    "button",
    { type: "button", class: "btn btn-ghost btn-xs", title: "Twice the range" },
    icon("zoomOut", "icon-sm"),
    "Zoom out",
  );
  zoomOutButton.addEventListener("click", onZoomOut);
  const levelsButton = h(
    "button",
    { type: "button", class: "btn btn-ghost btn-xs", id: "hist-levels", hidden: true },
    "Back to levels",
  );
  levelsButton.addEventListener("click", onLevels);
  const histMessage = h("div", { class: "hist-msg", hidden: true });
  const histCard = h(
    "section",
    { class: "card hist-card", "aria-label": "Events over time" },
    h(
      "div",
      { class: "hist-head" },
      histTotal,
      legend,
      h("span", { class: "hist-hint" }, "Drag to zoom · click a bar to narrow"),
      levelsButton,
      zoomOutButton,
    ),
    histogram.el,
    histMessage,
  );

  // Events that match, as the level bars count them; null while they say something else.
  function total() {
    if (!histogram.buckets().length || histogram.isSeries() || !histMessage.hidden) return null;
    return histogram.buckets().reduce((n, b) => n + b.total, 0);
  }

  function render(response) {
    histMessage.hidden = true;
    histogram.el.hidden = false;
    levelsButton.hidden = true;
    histogram.render(response);
    summarise();
    announce(`${fmtNumber(total())} events match`);
  }

  // The total and legend from the bars as drawn (live tail adds to them).
  function summarise(series = null) {
    const totals = {};
    let sum = 0;
    for (const bucket of histogram.buckets()) {
      sum += bucket.total || 0;
      for (const [key, n] of Object.entries(bucket.levels || {})) {
        const name = series ? key : levelOf(key);
        totals[name] = (totals[name] || 0) + n;
      }
    }
    const what = series
      ? ` events of the top ${series.length} values in ${describe()}`
      : ` event${sum === 1 ? "" : "s"} in ${describe()}`;
    replace(histTotal, fmtNumber(sum), h("span", { class: "muted" }, what));
    const keys = series ? series.map((s) => s.key) : LEVEL_ORDER;
    const name = (key) =>
      series
        ? series.find((s) => s.key === key).label
        : key === "OTHER"
          ? "other"
          : key.toLowerCase();
    replace(
      legend,
      keys
        .filter((k) => totals[k])
        .map((k) => h("span", {}, h("i", { class: `fill-${k}` }), `${name(k)} ${fmtNumber(totals[k])}`)),
    );
    changed();
  }

  // A field's top values over time: one histogram per value, drawn as stacked series.
  async function visualise(field, top, state, signal) {
    const values = top.slice(0, SERIES);
    const ask = (value) => ({
      query: addTerm(state.query, field, value, false),
      start: state.start,
      end: state.end,
      sources: state.sources.length ? state.sources : null,
      buckets: bucketCount(),
    });
    let answers;
    try {
      answers = await Promise.all(
        values.map((v) => post("/v1/search/histogram", ask(v.value), { signal })),
      );
    } catch (err) {
      if (err.name !== "AbortError") error(err);
      return;
    }
    if (signal.aborted) return;
    const series = values.map((v, i) => ({ key: `s${i}`, label: `${field}:${v.value}` }));
    const merged = answers[0].buckets.map((bucket, i) => {
      const levels = Object.fromEntries(answers.map((a, j) => [`s${j}`, a.buckets[i]?.total || 0]));
      return { ...bucket, levels, total: Object.values(levels).reduce((a, b) => a + b, 0) };
    });
    histogram.render({ ...answers[0], buckets: merged }, { series });
    levelsButton.hidden = false;
    summarise(series);
    announce(`Histogram of ${field}: top ${values.length} values over time`);
  }

  function error(err) {
    histogram.clear();
    histogram.el.hidden = true;
    replace(histTotal);
    replace(legend);
    histMessage.hidden = false;
    const syntax = err instanceof ApiError && err.problem?.position !== undefined;
    replace(
      histMessage,
      syntax
        ? "Fix the query to see the histogram."
        : `Histogram unavailable: ${err.detail || err.message}`,
    );
  }

  function bucketCount() {
    return Math.max(24, Math.min(80, Math.floor((histogram.el.clientWidth || 600) / 12)));
  }

  // Live tail: new events count into the level bars (a field's chart stays as it was asked).
  function add(events, options) {
    if (histogram.isSeries() || !histMessage.hidden) return;
    histogram.add(events, options);
    summarise();
  }

  return { histogram, histCard, zoomOutButton, render, error, total, visualise, add, bucketCount };
}
