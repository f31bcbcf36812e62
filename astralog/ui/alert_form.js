// The alert form: what it watches (a saved search, or a query and sources), when it runs (an
// interval, or cron in a time zone, over a look-back window), when it fires (count above or below
// a threshold, any new match, absence; per group-by value; after N hits; for how long) and whom
// it tells. "Backtest" replays the definition over the last 24 h before anything is saved; "Send
// test" sends a test event to the chosen endpoints. A refusal shows next to the field it names.

import { cached, get, post, put } from "./api.js";
import { card, errorState, fmtDateTime, fmtNumber, h, icon, pageHead, replace, toast } from "./dom.js";
import { clearErrors, errorSlot, showProblem } from "./field_errors.js";

const UNITS = [
  ["seconds", 1],
  ["minutes", 60],
  ["hours", 3600],
  ["days", 86400],
];
const DEFAULTS = {
  name: "",
  query: "",
  sources: null,
  condition: "count_above",
  threshold: 0,
  window_seconds: 300,
  interval_seconds: 60,
  cron: null,
  timezone: "UTC",
  group_by: [],
  pending_for: 1,
  keep_firing_for_seconds: 0,
  endpoint_ids: [],
};
// Kept as they are when an alert is edited: the form does not show them.
const CARRIED = ["flap_window_seconds", "flap_max_changes", "evaluation_delay_seconds"];
// Phrases of the API's 400 answers, and the field each one is about (first match wins).
const WORDS = [
  [/saved search/i, "saved_search_id"],
  [/group_by/i, "group_by"],
  [/sources/i, "sources"],
  [/window/i, "window_seconds"],
  [/cron/i, "cron"],
  [/time zone/i, "timezone"],
  [/interval|schedule runs every/i, "interval_seconds"],
  [/pending_for/i, "pending_for"],
  [/keep_firing/i, "keep_firing_for_seconds"],
  [/endpoint/i, "endpoint_ids"],
  [/threshold/i, "threshold"],
  [/\bname\b/i, "name"],
  [/query/i, "query"],
];
const CONDITIONS = [
  ["count_above", "The count is above"],
  ["count_below", "The count is below"],
  ["new_match", "Any new event matches"],
  ["absence", "No event matches (absence)"],
];

// ------------------------------------------------------------------ small inputs

function field(id, label, input, slot, hint) {
  return h(
    "div",
    { class: "field", id: `${id}-field` },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "field-hint" }, hint) : null,
    slot.el,
  );
}

function numberInput(id, value, min = "0") {
  return h("input", { class: "input num", type: "number", id, min, step: "1", inputmode: "numeric", value: String(value) });
}

// A length of time as a number and a unit; `read()` answers seconds, or NaN.
function duration(id, label, value, hint) {
  const input = numberInput(id, 0);
  const unit = h("select", { class: "select", id: `${id}-unit`, "aria-label": `${label}: unit` }, UNITS.map(([name, size]) => h("option", { value: String(size) }, name)));
  const [, size] = value === 0 ? UNITS[1] : [...UNITS].reverse().find(([, s]) => value % s === 0);
  unit.value = String(size);
  input.value = String(value / size);
  const slot = errorSlot(input);
  const el = h("div", { class: "field", id: `${id}-field` }, h("label", { for: id }, label), h("div", { class: "duration" }, input, unit), hint ? h("p", { class: "field-hint" }, hint) : null, slot.el);
  const read = () => (input.value.trim() === "" ? NaN : Math.round(Number(input.value) * Number(unit.value)));
  return { el, slot, read };
}

function segmented(name, options, value, label) {
  const el = h(
    "div",
    { class: "segmented", role: "radiogroup", "aria-label": label },
    options.map(([v, text]) => h("label", {}, h("input", { type: "radio", name, value: v, id: `${name}-${v}`, checked: v === value }), text)),
  );
  return { el, value: () => el.querySelector("input:checked").value };
}

function zones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC"];
  }
}

// ------------------------------------------------------------------ the form

export async function mountForm(ctx, params) {
  const { page, app, current } = ctx;
  const editId = params.get("edit");
  let data;
  try {
    data = await loadForm(editId);
  } catch (error) {
    if (current()) replace(page, errorState(error, () => mountForm(ctx, params)));
    return;
  }
  if (!current()) return;
  const spec = { ...DEFAULTS, ...(data.alert?.spec || {}) };
  if (!editId) {
    spec.query = params.get("q") || "";
    spec.sources = (params.get("sources") || "").split(",").filter(Boolean);
    if (!spec.sources.length) spec.sources = null;
    spec.saved_search_id = params.get("saved") || null;
    const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zones().includes(local)) spec.timezone = local;
  }
  app.setTitle(editId ? `Edit ${spec.name}` : "New alert");
  const form = buildForm(spec, data, app, editId);
  const back = editId ? `/alerts?id=${encodeURIComponent(editId)}` : "/alerts";
  replace(
    page,
    h("a", { href: back, "data-internal": "", class: "btn btn-ghost btn-sm back-link" }, "← Back"),
    pageHead(editId ? `Edit ${spec.name}` : "New alert", "Backtest it before saving: the replay runs the same condition over the last 24 hours."),
    form,
  );
  form.querySelector("#alert-name").focus();
}

async function loadForm(editId) {
  const [sources, saved, endpoints, alert] = await Promise.all([
    cached("/v1/sources").catch(() => []),
    get("/v1/saved-searches").catch(() => []),
    // Endpoints hold secrets: only admins may list them. Others choose none (an admin can add).
    get("/v1/alert-endpoints").catch((error) => (error.status === 403 ? null : Promise.reject(error))),
    editId ? get(`/v1/alerts/${encodeURIComponent(editId)}`) : null,
  ]);
  return { sources, saved, endpoints, alert };
}

function buildForm(spec, data, app, editId) {
  const general = h("p", { class: "field-error", id: "alert-form-error", role: "alert" });
  const what = watchSection(spec, data);
  const schedule = scheduleSection(spec);
  const fire = conditionSection(spec);
  const notify = endpointSection(spec, data.endpoints);
  const name = h("input", { class: "input", id: "alert-name", maxlength: "200", autocomplete: "off", value: spec.name, placeholder: "API 5xx burst" });
  const nameSlot = errorSlot(name);
  const backtestBox = h("div", { id: "alert-backtest-result", role: "status", "aria-live": "polite" });
  const backtest = h("button", { type: "button", class: "btn", id: "alert-backtest" }, icon("history", "icon-sm"), "Backtest");
  const save = h("button", { type: "submit", class: "btn btn-primary", id: "alert-save" }, editId ? "Save changes" : "Create alert");
  const form = h(
    "form",
    { id: "alert-form", class: "stack-lg", novalidate: true },
    card({ id: "alert-what-title", title: "What it watches" }, field("alert-name", "Name", name, nameSlot), what.el),
    card({ id: "alert-when-title", title: "When it runs" }, schedule.el),
    card({ id: "alert-fire-title", title: "When it fires" }, fire.el),
    card({ id: "alert-notify-title", title: "Whom it tells" }, notify.el),
    h("div", { class: "card" }, h("div", { class: "card-body stack" }, backtestBox, general, h("div", { class: "form-actions" }, backtest, save))),
  );
  const slots = () => ({ name: nameSlot, ...what.slots, ...schedule.slots(), ...fire.slots, ...notify.slots });
  const carried = Object.fromEntries(CARRIED.filter((k) => k in spec).map((k) => [k, spec[k]]));
  function body() {
    const parts = [what.read(), schedule.read(), fire.read(), notify.read()];
    return Object.assign({ ...carried, name: name.value.trim() }, ...parts);
  }
  // Refused here when a number is missing: the API would name the field less kindly.
  function checked() {
    const b = body();
    const missing = Object.entries(b).find(([k, v]) => typeof v === "number" && Number.isNaN(v) && k);
    if (!b.name) return showProblem({ detail: "Give the alert a name." }, slots(), general, [[/name/, "name"]]);
    if (missing) return showProblem({ problem: { errors: [{ field: missing[0], message: "Enter a number." }] } }, slots(), general);
    if (b.saved_search_id === "") return showProblem({ detail: "Choose a saved search." }, slots(), general, [[/saved/, "saved_search_id"]]);
    clearErrors(slots(), general);
    return b;
  }
  backtest.addEventListener("click", async () => {
    const b = checked();
    if (!b) return;
    backtest.disabled = true;
    replace(backtestBox, h("p", { class: "muted" }, "Replaying the last 24 hours…"));
    try {
      showBacktest(backtestBox, await post("/v1/alerts/backtest", { ...b, hours: 24 }));
    } catch (error) {
      replace(backtestBox);
      showProblem(error, slots(), general, WORDS);
    } finally {
      backtest.disabled = false;
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const b = checked();
    if (!b) return;
    save.disabled = true;
    try {
      const saved = editId ? await put(`/v1/alerts/${encodeURIComponent(editId)}`, b) : await post("/v1/alerts", b);
      toast(`${saved.name} ${editId ? "saved" : "created"}`);
      app.navigate(`/alerts?id=${encodeURIComponent(saved.id)}`);
    } catch (error) {
      showProblem(error, slots(), general, WORDS);
      save.disabled = false;
    }
  });
  return form;
}

function showBacktest(box, result) {
  const times = result.fired === 1 ? "once" : `${fmtNumber(result.fired)} times`;
  const span = `${fmtNumber(result.evaluations)} evaluations from ${fmtDateTime(result.start)} to ${fmtDateTime(result.end)}`;
  replace(
    box,
    h(
      "div",
      { class: ["callout", "backtest", result.fired ? "callout-warn" : "callout-info"] },
      h("p", {}, h("strong", { id: "alert-backtest-fired" }, `Would have fired ${times} in the last 24 h`)),
      h("p", { class: "field-hint" }, span),
      result.firings?.length
        ? h("ul", { class: "backtest-firings" }, result.firings.slice(0, 5).map((f) => h("li", {}, `${fmtDateTime(f.at)}: ${fmtNumber(f.value)} events${Object.keys(f.labels).length ? ` (${Object.entries(f.labels).map(([k, v]) => `${k}=${v}`).join(", ")})` : ""}`)))
        : null,
    ),
  );
}

// ------------------------------------------------------------------ sections

function watchSection(spec, { sources, saved }) {
  const fromSaved = Boolean(spec.saved_search_id) && saved.some((s) => s.id === spec.saved_search_id);
  const mode = segmented("alert-from", [["query", "A query"], ["saved", "A saved search"]], fromSaved ? "saved" : "query", "The alert watches");
  const select = h(
    "select",
    { class: "select", id: "alert-saved" },
    h("option", { value: "" }, saved.length ? "Choose a saved search…" : "No saved search yet"),
    saved.map((s) => h("option", { value: s.id, selected: s.id === spec.saved_search_id }, `${s.name}: ${s.query || "(every event)"}`)),
  );
  const query = h("input", { class: "input input-mono", id: "alert-query", value: spec.query, autocomplete: "off", spellcheck: "false", placeholder: 'level:error service:api "timeout"' });
  const all = h("input", { type: "checkbox", id: "alert-src-all", checked: !spec.sources });
  const boxes = sources.map((s) => h("input", { type: "checkbox", name: "alert-sources", value: s.id, id: `alert-src-${s.id}`, checked: (spec.sources || []).includes(s.id) }));
  const picker = h(
    "fieldset",
    { class: "field source-grants", id: "alert-sources" },
    h("legend", { class: "field-label" }, "Sources"),
    h("label", { class: "check" }, all, "Every source I can read"),
    h("div", { class: "grant-list" }, sources.map((s, i) => h("label", { class: "check" }, boxes[i], s.name))),
  );
  const slots = { saved_search_id: errorSlot(select), query: errorSlot(query), sources: errorSlot(picker) };
  picker.append(slots.sources.el);
  const savedBox = h("div", { id: "alert-saved-box" }, field("alert-saved", "Saved search", select, slots.saved_search_id, "The alert keeps a copy of its query and sources: editing the search later leaves the alert as it is."));
  const queryBox = h("div", { class: "stack", id: "alert-query-box" }, field("alert-query", "Query", query, slots.query), picker);
  const sync = () => {
    savedBox.hidden = mode.value() !== "saved";
    queryBox.hidden = mode.value() === "saved";
    boxes.forEach((b) => (b.disabled = all.checked));
  };
  mode.el.addEventListener("change", sync);
  all.addEventListener("change", sync);
  sync();
  const read = () => {
    if (mode.value() === "saved") return { saved_search_id: select.value };
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    return { saved_search_id: null, query: query.value.trim(), sources: all.checked ? null : chosen };
  };
  // In saved mode, what the API says of the sources or query is about the chosen search.
  const modeSlots = () => (mode.value() === "saved" ? { ...slots, sources: slots.saved_search_id, query: slots.saved_search_id } : slots);
  return {
    el: h("div", { class: "stack" }, h("div", { class: "field" }, h("span", { class: "field-label" }, "Watch"), mode.el), savedBox, queryBox),
    read,
    get slots() {
      return modeSlots();
    },
  };
}

function scheduleSection(spec) {
  const mode = segmented("alert-schedule", [["interval", "Every"], ["cron", "Cron"]], spec.cron ? "cron" : "interval", "Schedule");
  const interval = duration("alert-interval", "Runs every", spec.interval_seconds || 60);
  const cron = h("input", { class: "input input-mono", id: "alert-cron", value: spec.cron || "", placeholder: "*/5 * * * *", autocomplete: "off", spellcheck: "false" });
  const list = h("datalist", { id: "alert-zones" }, zones().map((z) => h("option", { value: z })));
  const zone = h("input", { class: "input", id: "alert-timezone", value: spec.timezone, list: "alert-zones", autocomplete: "off" });
  const cronSlot = errorSlot(cron);
  const zoneSlot = errorSlot(zone);
  const cronBox = h("div", { class: "form-grid" }, field("alert-cron", "Cron", cron, cronSlot, "minute hour day month weekday"), field("alert-timezone", "Time zone", zone, zoneSlot, "The cron's times are in this zone."), list);
  const window = duration("alert-window", "Look-back window", spec.window_seconds, "Each run counts the events of this much time before it.");
  const sync = () => {
    interval.el.hidden = mode.value() !== "interval";
    cronBox.hidden = mode.value() !== "cron";
  };
  mode.el.addEventListener("change", sync);
  sync();
  const read = () => {
    const base = { window_seconds: window.read(), timezone: zone.value.trim() || "UTC" };
    if (mode.value() === "cron") return { ...base, cron: cron.value.trim(), interval_seconds: null };
    return { ...base, cron: null, interval_seconds: interval.read() };
  };
  const slots = () => ({
    window_seconds: window.slot,
    interval_seconds: mode.value() === "cron" ? cronSlot : interval.slot,
    cron: cronSlot,
    timezone: zoneSlot,
  });
  return { el: h("div", { class: "stack" }, mode.el, interval.el, cronBox, window.el), read, slots };
}

function conditionSection(spec) {
  const condition = h("select", { class: "select", id: "alert-condition" }, CONDITIONS.map(([v, text]) => h("option", { value: v, selected: v === spec.condition }, text)));
  const threshold = numberInput("alert-threshold", spec.threshold);
  const groupBy = h("input", { class: "input input-mono", id: "alert-group-by", value: spec.group_by.join(", "), placeholder: "service, host", autocomplete: "off" });
  const pending = numberInput("alert-pending", spec.pending_for, "1");
  const keep = duration("alert-keep", "Keep firing for", spec.keep_firing_for_seconds, "After the last hit, before it resolves: a brief dip does not resolve it.");
  const slots = { condition: errorSlot(condition), threshold: errorSlot(threshold), group_by: errorSlot(groupBy), pending_for: errorSlot(pending), keep_firing_for_seconds: keep.slot };
  const thresholdField = field("alert-threshold", "Threshold", threshold, slots.threshold);
  const groupField = field("alert-group-by", "Group by", groupBy, slots.group_by, "Optional fields, comma-separated: each value is an instance with its own state.");
  const sync = () => {
    thresholdField.hidden = !condition.value.startsWith("count_");
    groupField.hidden = condition.value === "new_match";
  };
  condition.addEventListener("change", sync);
  sync();
  const read = () => ({
    condition: condition.value,
    threshold: condition.value.startsWith("count_") ? Number(threshold.value || NaN) : 0,
    group_by: condition.value === "new_match" ? [] : groupBy.value.split(",").map((s) => s.trim()).filter(Boolean),
    pending_for: Number(pending.value || NaN),
    keep_firing_for_seconds: keep.read(),
  });
  const el = h(
    "div",
    { class: "form-grid" },
    field("alert-condition", "Fires when", condition, slots.condition),
    thresholdField,
    groupField,
    field("alert-pending", "Hits before firing", pending, slots.pending_for, "Consecutive runs the condition must hold; pending until then."),
    keep.el,
  );
  return { el, read, slots };
}

function endpointSection(spec, endpoints) {
  const result = h("div", { id: "alert-test-result", role: "status", "aria-live": "polite" });
  const test = h("button", { type: "button", class: "btn btn-sm", id: "alert-send-test" }, "Send test");
  if (endpoints === null) {
    const note = h("p", { class: "muted", id: "alert-endpoints-note" }, "Only org admins see the endpoints: an admin can choose whom this alert tells.");
    return { el: note, slots: {}, read: () => ({ endpoint_ids: spec.endpoint_ids }) };
  }
  const boxes = endpoints.map((e) => h("input", { type: "checkbox", id: `alert-ep-${e.id}`, value: e.id, checked: spec.endpoint_ids.includes(e.id) }));
  const fieldset = h(
    "fieldset",
    { class: "field", id: "alert-endpoints" },
    h("legend", { class: "field-label" }, "Endpoints"),
    endpoints.length
      ? h("div", { class: "grant-list" }, endpoints.map((e, i) => h("label", { class: "check" }, boxes[i], h("span", {}, e.name, h("small", { class: "muted" }, `${e.kind}${e.enabled === false ? ", disabled" : ""}`)))))
      : h("p", { class: "muted" }, "No endpoint yet: add a webhook or e-mail address on the Endpoints page."),
  );
  const slot = errorSlot(fieldset);
  fieldset.append(slot.el, h("div", { class: "row" }, test), result);
  const chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  test.addEventListener("click", async () => {
    slot.el.textContent = "";
    const ids = chosen();
    if (!ids.length) {
      slot.el.textContent = "Choose the endpoints to send the test to.";
      return;
    }
    test.disabled = true;
    const lines = await Promise.all(ids.map((id) => sendTest(endpoints.find((e) => e.id === id))));
    replace(result, h("ul", { class: "test-results" }, lines));
    test.disabled = false;
  });
  return { el: fieldset, slots: { endpoint_ids: slot }, read: () => ({ endpoint_ids: chosen() }) };
}

async function sendTest(endpoint) {
  try {
    const sent = await post(`/v1/alert-endpoints/${encodeURIComponent(endpoint.id)}/test`);
    return h("li", { dataset: { endpoint: endpoint.id } }, icon("check", "icon-sm"), `${endpoint.name}: test sent (delivery ${sent.delivery?.state || "queued"}; see its delivery log)`);
  } catch (error) {
    return h("li", { class: "field-error", dataset: { endpoint: endpoint.id } }, `${endpoint.name}: ${error.detail || String(error)}`);
  }
}
