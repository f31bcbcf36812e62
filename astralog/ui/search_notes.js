// What the search page says instead of (or above) results: the retention clamp, a destination
// that could not be read, and the empty states with the next step to take.

import { fmtDateTime, fmtNumber, h, icon, stateView } from "./dom.js";
import { describeRange } from "./pickers.js";

export function clampNote(range) {
  return h(
    "div",
    { class: "callout callout-info clamp-note", role: "note" },
    icon("clock"),
    h(
      "span",
      {},
      `The range starts at your retention limit: data older than ${range.retention_days} days is not kept.`,
    ),
  );
}

// A destination that could not be read: the results are the rest, and the note says what is
// missing, so a quiet stretch is never mistaken for no events.
export function partialNote(warning) {
  const when = `${fmtDateTime(warning.start, { seconds: true })} to ${fmtDateTime(warning.end, { seconds: true })}`;
  const next = warning.retryable
    ? "Search again in a moment."
    : "An admin should check this destination on the Storage page.";
  return h(
    "div",
    { class: "callout callout-warn partial-note", role: "alert" },
    icon("alert"),
    h(
      "span",
      {},
      h("strong", {}, "Incomplete results. "),
      `Destination ${warning.destination} could not be read, so up to ${fmtNumber(warning.rows)} events from ${when} are missing. ${next}`,
      h(
        "details",
        { class: "partial-detail" },
        h("summary", {}, "What the destination answered"),
        warning.detail,
      ),
    ),
  );
}

export function emptyState(state, update) {
  const range = describeRange(state.start, state.end, { sentence: true });
  const widen = (start, label) =>
    h("button", { type: "button", class: "btn", onclick: () => update({ start, end: "now" }) }, label);
  if (state.query || state.sources.length) {
    return stateView({
      iconName: "search",
      title: `No events match in ${range}`,
      text: "Remove a filter from the query, choose more sources, or widen the time range.",
      actions: [
        state.query
          ? h(
              "button",
              { type: "button", class: "btn", onclick: () => update({ query: "" }) },
              "Clear the query",
            )
          : null,
        widen("now-24h", "Last 24 hours"),
        widen("now-7d", "Last 7 days"),
      ].filter(Boolean),
    });
  }
  return stateView({
    iconName: "inbox",
    title: `No events in ${range}`,
    text: "Widen the range, or check that your shipper sends to this Astralog with an ingest key of the right source.",
    actions: [
      widen("now-24h", "Last 24 hours"),
      widen("now-7d", "Last 7 days"),
      h("a", { class: "btn btn-ghost", href: "/sources", "data-nav": "" }, "Ingest snippets"),
    ],
  });
}
