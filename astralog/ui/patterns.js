// The Patterns view of the search page: the matching events grouped into message templates
// (GET /v1/search/patterns). A toggle in the results toolbar swaps the event list for this
// panel; clicking a pattern applies its filter to the query and goes back to the events.
// The search page owns the state: it hands over how to read the filters and how to apply a
// query, and calls refresh() after each search so an open panel follows the query.

import { ApiError, get, qs } from "./api.js";
import { errorState, fmtDateTime, fmtNumber, h, replace, stateView, svg } from "./dom.js";

const LIMIT = 50;
const PARAM = /(<(?:\*|UUID|IP|HEX|NUM)>)/;

export function createPatterns({ filters, apply }) {
  let controller = null;
  let open = false;
  const panel = h("section", { class: "patterns", id: "patterns-panel", "aria-label": "Log patterns", hidden: true });
  const button = h(
    "button",
    { type: "button", class: "btn btn-sm patterns-btn", id: "patterns-toggle", "aria-pressed": "false", "aria-controls": "patterns-panel" },
    "Patterns",
  );
  button.addEventListener("click", () => show(!open));

  function show(next) {
    open = next;
    button.setAttribute("aria-pressed", String(open));
    panel.hidden = !open;
    panel.parentElement?.setAttribute("data-view", open ? "patterns" : "events");
    if (open) refresh();
    else if (controller) controller.abort();
  }

  async function refresh() {
    if (!open) return;
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    const { query, start, end, sources } = filters();
    const params = { query, start, end, sources: sources?.length ? sources : undefined, limit: LIMIT };
    panel.setAttribute("aria-busy", "true");
    try {
      const answer = await get(`/v1/search/patterns${qs(params)}`, { signal });
      if (!signal.aborted) render(answer);
    } catch (error) {
      if (error.name === "AbortError" || signal.aborted) return;
      replace(panel, error instanceof ApiError || error instanceof Error ? errorState(error, refresh) : null);
    } finally {
      if (!signal.aborted) panel.setAttribute("aria-busy", "false");
    }
  }

  function render(answer) {
    const patterns = answer.patterns || [];
    if (!patterns.length) {
      replace(panel, stateView({ title: "No patterns", text: "No matching event has a message in this range." }));
      return;
    }
    const about = answer.estimated ? "about " : "";
    const summary = h(
      "p",
      { class: "patterns-summary", id: "patterns-summary" },
      `${fmtNumber(answer.templates)} patterns in ${about}${fmtNumber(answer.with_body)} events`,
      answer.templates > patterns.length ? ` · the ${patterns.length} largest shown` : "",
    );
    const notes = (answer.notes || []).map((text) => h("p", { class: "patterns-note" }, text));
    const list = h("ol", { class: "patterns-list", "aria-labelledby": "patterns-summary" }, patterns.map((p) => row(p, answer)));
    replace(panel, summary, notes, list);
  }

  function row(pattern, answer) {
    const count = `${answer.estimated ? "≈" : ""}${fmtNumber(pattern.count)}`;
    const pick = h(
      "button",
      {
        type: "button",
        class: "pattern-pick",
        title: pattern.query ? `Filter: ${pattern.filter}` : "The query is too long to add this filter",
        disabled: !pattern.query,
      },
      // Named by its visible text, with hidden words saying what a click does.
      sparkline(pattern.sparkline),
      h("span", { class: "sr-only" }, "Show the "),
      h("span", { class: "pattern-count" }, count),
      h("span", { class: "sr-only" }, " events of pattern "),
      h("code", { class: "pattern-template" }, templateParts(pattern.template)),
      h("span", { class: "sr-only" }, ", "),
      h("span", { class: "pattern-share" }, `${(pattern.share * 100).toFixed(1)}%`),
      h(
        "span",
        { class: "pattern-seen" },
        `${fmtDateTime(pattern.first_seen, { seconds: true })} – ${fmtDateTime(pattern.last_seen, { seconds: true })}`,
      ),
    );
    pick.addEventListener("click", () => {
      show(false);
      apply(pattern.query);
    });
    return h("li", { class: "pattern", dataset: { count: String(pattern.count) } }, pick);
  }

  return { button, panel, refresh, show };
}

function templateParts(template) {
  return template.split(PARAM).map((part, i) => (i % 2 ? h("mark", { class: "pattern-param" }, part) : part));
}

function sparkline(values) {
  const width = 96;
  const height = 22;
  const top = Math.max(1, ...values);
  const step = width / Math.max(1, values.length);
  const bars = values.map((v, i) => {
    const tall = v ? Math.max(1.5, (v / top) * height) : 0;
    return svg("rect", { x: (i * step).toFixed(2), y: (height - tall).toFixed(2), width: Math.max(1, step - 1).toFixed(2), height: tall.toFixed(2) });
  });
  return svg("svg", { class: "pattern-spark", viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true", focusable: "false" }, bars);
}
