// The search page's side panel: top values of level, service, host and source over the matching
// events (the facets API), each a filter; live tail counts new events into them as they arrive.

import { ApiError } from "./api.js";
import { fmtNumber, h, icon, replace } from "./dom.js";
import { fieldValue } from "./columns.js";
import { levelOf } from "./events.js";

export const FACETS = [
  ["level", "Level"],
  ["service", "Service"],
  ["host", "Host"],
  ["source", "Source"],
];
const SHOWN = 8;

// ctx: { sourceName(id), filter(field, value, negate) }
export function createFacets(ctx) {
  const el = h("div", { class: "facet-groups" });
  let facets = null; // { field: [{ value, count }] } as the API answered, then counted into

  function render(response) {
    facets = structuredClone(response.facets || {});
    draw();
  }

  function draw() {
    replace(
      el,
      FACETS.map(([field, title]) => {
        const values = (facets?.[field] || []).slice(0, SHOWN);
        const max = Math.max(1, ...values.map((v) => v.count));
        return h(
          "section",
          { class: "facet", "aria-label": title, dataset: { facet: field } },
          h("h3", {}, title),
          values.length
            ? h(
                "ul",
                {},
                values.map((item) => facetItem(field, item, max)),
              )
            : h("p", { class: "facet-empty" }, "No values"),
        );
      }),
    );
  }

  // New events from live tail: their values count in, and the order follows the counts.
  function count(events) {
    if (!facets) return;
    for (const [field] of FACETS) {
      const values = (facets[field] ||= []);
      for (const event of events) {
        const value = fieldValue(event, field);
        if (!value) continue;
        const item = values.find((v) => v.value === value);
        if (item) item.count += 1;
        else values.push({ value, count: 1 });
      }
      values.sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : 1));
    }
    draw();
  }

  function facetItem(field, item, max) {
    const value = String(item.value);
    const label =
      field === "source"
        ? ctx.sourceName(value) || value
        : field === "level"
          ? value.toLowerCase()
          : value;
    const bar = h("i", {});
    bar.style.transform = `scaleX(${item.count / max})`;
    const include = h(
      "button",
      {
        type: "button",
        class: "facet-btn",
        title: `${field}:${value}`,
      },
      // Named by its own text (what speech control users say), with the hidden words around it.
      h("span", { class: "sr-only" }, `Filter ${title(field)} `),
      h(
        "span",
        { class: "fv" },
        field === "level"
          ? h("span", { class: `lvl lvl-${levelOf(value)}` }, value.toUpperCase())
          : label,
      ),
      h("span", { class: "sr-only" }, ": "),
      h("span", { class: "fc" }, fmtNumber(item.count)),
      h("span", { class: "sr-only" }, " events"),
      h("span", { class: "facet-bar", "aria-hidden": "true" }, bar),
    );
    include.addEventListener("click", (event) =>
      ctx.filter(field, value, event.altKey || event.shiftKey),
    );
    const exclude = h(
      "button",
      {
        type: "button",
        class: "icon-btn icon-btn-sm facet-not",
        "aria-label": `Exclude ${title(field)} ${label}`,
        title: `Exclude ${field}:${value}`,
      },
      icon("minus", "icon-sm"),
    );
    exclude.addEventListener("click", () => ctx.filter(field, value, true));
    return h("li", { class: "facet-item" }, include, exclude);
  }

  function error(err) {
    facets = null;
    const syntax = err instanceof ApiError && err.problem?.position !== undefined;
    replace(
      el,
      h(
        "p",
        { class: "facet-empty" },
        syntax
          ? "Fix the query to see field values."
          : `Field values unavailable: ${err.detail || err.message}`,
      ),
    );
  }

  return { el, render, count, error };
}

function title(field) {
  return FACETS.find(([f]) => f === field)?.[1].toLowerCase() || field;
}
