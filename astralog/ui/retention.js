// Retention: the plan's limit and per-source overrides inside it.

import { get, invalidate, put } from "./api.js";
import { errorState, fmtDateTime, h, icon, replace, toast } from "./dom.js";

export async function mount(main) {
  const page = h("div", { class: "page" });
  replace(main, page);

  async function load() {
    let data;
    try {
      data = await get("/v1/retention");
    } catch (error) {
      replace(page, head(), errorState(error, load));
      return;
    }
    render(data);
  }

  function head() {
    return h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Retention"),
        h(
          "p",
          {},
          "How long events stay searchable. Changes apply to searches at once; older data is purged from storage on the next run. Every change is recorded in the audit log.",
        ),
      ),
    );
  }

  function render(data) {
    const max = data.plan_retention_days;
    const rows = (data.sources || []).map((source) => sourceRow(source, max));
    replace(
      page,
      head(),
      h(
        "div",
        { class: "stack-lg" },
        h(
          "section",
          { class: "card", "aria-labelledby": "plan-title" },
          h(
            "div",
            { class: "card-body destination" },
            h("div", { class: "dest-icon" }, icon("clock")),
            h(
              "div",
              {},
              h(
                "div",
                { class: "row" },
                h("h2", { id: "plan-title" }, `${max} days`),
                h("span", { class: "plan-pill" }, data.plan),
              ),
              h(
                "p",
                { class: "muted" },
                `Your plan keeps events for up to ${max} days. A source can keep them for less.`,
              ),
            ),
          ),
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "src-ret-title" },
          h(
            "div",
            { class: "card-head" },
            h(
              "div",
              {},
              h("h2", { id: "src-ret-title" }, "Per source"),
              h("p", {}, "Leave empty to follow the plan."),
            ),
          ),
          h(
            "div",
            { class: "card-body table-wrap" },
            h(
              "table",
              { class: "table responsive", id: "retention-table" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  h("th", { scope: "col" }, "Source"),
                  h("th", { scope: "col" }, "Override (days)"),
                  h("th", { scope: "col" }, "Effective"),
                  h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
                ),
              ),
              h("tbody", {}, rows),
            ),
          ),
        ),
      ),
    );
  }

  function sourceRow(source, max) {
    const id = `ret-${source.source_id}`;
    const input = h("input", {
      class: "input days-input num",
      id,
      type: "number",
      min: "1",
      max: String(max),
      step: "1",
      inputmode: "numeric",
      value: source.retention_days ?? "",
      placeholder: `plan (${max})`,
      "aria-label": `Retention override for ${source.name}, in days`,
    });
    const error = h("div", { class: "field-error", role: "alert" });
    // What the change would delete, and when, shown before it is saved.
    const preview = h("div", { class: "muted retention-preview", "aria-live": "polite" });
    const effective = h(
      "td",
      { "data-label": "Effective", class: "num" },
      `${source.effective_days} days`,
    );
    const save = h(
      "button",
      { type: "button", class: "btn btn-sm btn-primary", disabled: true },
      "Save",
    );
    const reset = h(
      "button",
      { type: "button", class: "btn btn-sm btn-ghost", hidden: source.retention_days === null },
      "Use plan",
    );
    const dirty = () => {
      const value = input.value === "" ? null : Number(input.value);
      save.disabled = value === source.retention_days;
      return !save.disabled;
    };
    let previewTimer;
    async function showPreview() {
      const days = input.value === "" ? max : Number(input.value);
      preview.textContent = "";
      if (!Number.isInteger(days) || days < 1 || days > max) return;
      const path = `/v1/sources/${encodeURIComponent(source.source_id)}/retention/preview`;
      try {
        const p = await get(`${path}?days=${days}`);
        if (dirty()) preview.textContent = previewText(p);
      } catch (err) {
        preview.textContent = err.detail || String(err);
      }
    }
    input.addEventListener("input", () => {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
      preview.textContent = "";
      clearTimeout(previewTimer);
      if (dirty()) previewTimer = setTimeout(showPreview, 250);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !save.disabled) save.click();
    });
    async function store(days) {
      if (days !== null && (!Number.isInteger(days) || days < 1 || days > max)) {
        error.textContent = `Choose 1 to ${max} days, or leave empty for the plan's ${max}.`;
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      save.disabled = true;
      try {
        const result = await put(`/v1/sources/${encodeURIComponent(source.source_id)}/retention`, {
          days,
        });
        source.retention_days = result?.retention_days ?? days;
        source.effective_days = result?.effective_days ?? days ?? max;
        input.value = source.retention_days ?? "";
        effective.textContent = `${source.effective_days} days`;
        reset.hidden = source.retention_days === null;
        preview.textContent = "";
        invalidate("/v1/sources");
        toast(`${source.name}: events kept for ${source.effective_days} days`);
      } catch (err) {
        error.textContent = err.detail || String(err);
        input.setAttribute("aria-invalid", "true");
        dirty();
      }
    }
    save.addEventListener("click", () => store(input.value === "" ? null : Number(input.value)));
    reset.addEventListener("click", () => store(null));
    return h(
      "tr",
      { dataset: { source: source.source_id } },
      h(
        "td",
        { "data-label": "Source" },
        h("strong", {}, source.name),
        h("div", { class: "ln-sub" }, source.source_id),
      ),
      h("td", { "data-label": "" }, input, error, preview),
      effective,
      h("td", { class: "actions" }, reset, save),
    );
  }

  await load();
  return {};
}

function previewText(p) {
  const when = fmtDateTime(p.next_purge_at); // 24-hour, in the chosen zone, named
  const hidden = `Searches stop showing events before ${fmtDateTime(p.hidden_before)} at once.`;
  if (!p.objects) return `${hidden} Nothing is deleted from storage yet.`;
  const range = `${fmtDateTime(p.oldest_hour)} to ${fmtDateTime(p.newest_hour)}`;
  return (
    `${hidden} The purge at ${when} deletes ${p.objects} objects ` +
    `(${p.rows.toLocaleString()} events, ${sizeText(p.bytes)}) from the hours ${range}.`
  );
}

function sizeText(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}
