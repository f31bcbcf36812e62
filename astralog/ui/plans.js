// Plans, for the operator: every plan with its limits, a new plan based on another, and edits
// that take effect at once. A retention cut below what some sources keep is refused (409) with
// those sources named, and saved only when the operator chooses to clamp them.
//
// The web UI has no operator sign-in: browser sessions belong to an org. This page therefore
// takes the operator token itself (the one `astralog init` prints, or `astralog tokens issue
// --operator`), keeps it in this tab's memory only and sends it as a Bearer header, never the
// org's session cookie. A reload forgets it.

import { ApiError } from "./api.js";
import { actionTable, addButton, card, errorState, fmtBytes, fmtNumber, h, openDialog, pageHead, replace, toast } from "./dom.js";

// Labels and units of the limits the API knows; a limit not listed here still shows, by its name.
const LIMITS = {
  retention_days: ["Retention", "days"],
  max_sources: ["Sources at most", "count"],
  ingest_events_per_second: ["Org ingest", "events/s"],
  ingest_bytes_per_second: ["Org ingest bytes", "bytes/s"],
  source_events_per_second: ["Source ingest", "events/s"],
  source_bytes_per_second: ["Source ingest bytes", "bytes/s"],
  ingest_burst_seconds: ["Ingest burst", "s"],
  byob: ["Own bucket or ClickHouse", "bool"],
  max_query_range_days: ["Query range", "days"],
  query_timeout_seconds: ["Query timeout", "s"],
  max_scan_bytes: ["Scan per query", "bytes"],
};
const COLUMNS = [
  ["Retention", ["retention_days"]],
  ["Sources", ["max_sources"]],
  ["Ingest", ["ingest_events_per_second", "ingest_bytes_per_second"]],
  ["Per source", ["source_events_per_second", "source_bytes_per_second"]],
  ["Queries", ["max_query_range_days", "query_timeout_seconds", "max_scan_bytes"]],
  ["BYOB", ["byob"]],
];

let token = ""; // this tab's memory only

// ------------------------------------------------------------------ the operator's requests

async function call(method, path, body) {
  const headers = { Accept: "application/json, application/problem+json", Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // the operator's token, never an org's session
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { title: "Cannot reach Astralog", detail: "The server did not answer." });
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

// ------------------------------------------------------------------ the page

export function mount(main) {
  const page = h("div", { class: "page", id: "plans-page" });
  replace(main, page);
  if (token) showPlans(page);
  else showTokenForm(page);
  return {};
}

function head(...actions) {
  return pageHead(
    "Plans",
    "What each plan allows its orgs. Changes apply at once to every org on the plan and are recorded in the audit log.",
    ...actions,
  );
}

function showTokenForm(page, message = "") {
  const input = h("input", {
    class: "input input-mono",
    id: "operator-token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "alo_…",
  });
  const error = h("p", { class: "field-error", id: "operator-error", role: "alert" }, message);
  const form = h(
    "form",
    { class: "card-body stack", id: "operator-form", novalidate: true },
    h(
      "p",
      { class: "muted" },
      "Plans belong to the operator of this Astralog, and the web UI has no operator sign-in. Paste the operator token (alo_…, printed by astralog init or astralog tokens issue --operator). It stays in this tab's memory and is forgotten when you reload or close it.",
    ),
    h("div", { class: "field" }, h("label", { for: "operator-token" }, "Operator token"), input),
    error,
    h("div", { class: "row" }, h("button", { type: "submit", class: "btn btn-primary" }, "Open plans")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const text = input.value.trim();
    if (!text.startsWith("alo_")) {
      error.textContent = "That is not an operator token: operator tokens start with alo_.";
      return;
    }
    token = text;
    try {
      const who = await call("GET", "/v1/session");
      if (who.kind !== "operator") throw new ApiError(403, { detail: "That token is not the operator's." });
    } catch (err) {
      token = "";
      error.textContent = err.detail || String(err);
      return;
    }
    showPlans(page);
  });
  replace(page, head(), card({ id: "operator-title", title: "Operator token", body: form }));
  input.focus();
}

function forget(page) {
  token = "";
  showTokenForm(page, "");
  toast("Operator token forgotten");
}

async function showPlans(page) {
  const actions = [
    h("button", { type: "button", class: "btn btn-ghost", id: "operator-forget", onclick: () => forget(page) }, "Forget token"),
  ];
  let plans;
  try {
    plans = await call("GET", "/v1/plans");
  } catch (error) {
    if (error.status === 401 || error.status === 404) return showTokenForm(page, error.detail);
    replace(page, head(...actions), errorState(error, () => showPlans(page)));
    return;
  }
  const reload = () => showPlans(page);
  const rows = plans.map((plan) => planRow(plan, plans, reload));
  replace(
    page,
    head(...actions),
    card({
      id: "plans-title",
      title: "Plans",
      lede: "Orgs on an enterprise plan may carry their own limits; sources keep at most their plan's retention.",
      action: addButton("define-plan", "New plan", () => definePlan(plans, reload)),
      body: h("div", { class: "card-body table-wrap" }, actionTable("plans-table", ["Plan", ...COLUMNS.map((c) => c[0])], rows)),
    }),
  );
}

function planRow(plan, plans, reload) {
  const cells = COLUMNS.map(([label, names]) =>
    h(
      "td",
      { "data-label": label },
      names.map((name, i) => (i ? h("div", { class: "ln-sub" }, show(name, plan.limits[name])) : show(name, plan.limits[name]))),
    ),
  );
  const edit = h("button", { type: "button", class: "btn btn-sm", onclick: () => editPlan(plan, reload) }, "Edit");
  return h(
    "tr",
    { dataset: { plan: plan.name } },
    h(
      "td",
      { "data-label": "Plan" },
      h("strong", {}, plan.name),
      h("div", { class: "ln-sub" }, `${fmtNumber(plan.orgs)} ${plan.orgs === 1 ? "org" : "orgs"}`),
    ),
    cells,
    h("td", { class: "actions" }, edit),
  );
}

function unit(name) {
  return (LIMITS[name] || [name, "count"])[1];
}

function show(name, value) {
  if (value === undefined) return "—";
  const kind = unit(name);
  if (kind === "bool") return value ? "yes" : "no";
  if (kind === "bytes") return fmtBytes(value);
  if (kind === "bytes/s") return `${fmtBytes(value)}/s`;
  if (kind === "count") return fmtNumber(value);
  return `${fmtNumber(value)} ${kind}`;
}

// ------------------------------------------------------------------ the limits form

// One input a limit, filled from `values`; `read()` answers the limits that differ from `base`.
function limitFields(values) {
  const names = [...Object.keys(LIMITS), ...Object.keys(values).filter((n) => !(n in LIMITS))];
  const inputs = new Map();
  const fields = names.map((name) => {
    const id = `plan-limit-${name}`;
    const label = (LIMITS[name] || [name])[0];
    const kind = unit(name);
    if (kind === "bool") {
      const box = h("input", { type: "checkbox", id });
      inputs.set(name, box);
      return h("label", { class: "check" }, box, ` ${label}`);
    }
    const step = kind === "s" ? "any" : "1";
    const input = h("input", { class: "input num", id, type: "number", min: "0", step, inputmode: "decimal" });
    const hint = h("p", { class: "field-hint" });
    input.addEventListener("input", () => {
      hint.textContent = kind.startsWith("bytes") && input.value ? `= ${show(name, Number(input.value))}` : "";
    });
    inputs.set(name, input);
    const text = kind === "count" ? label : `${label} (${kind})`;
    return h("div", { class: "field" }, h("label", { for: id }, text), input, hint);
  });
  function fill(from) {
    for (const [name, input] of inputs) {
      if (input.type === "checkbox") input.checked = Boolean(from[name]);
      else input.value = from[name] ?? "";
      input.dispatchEvent(new Event("input"));
    }
  }
  function read(base) {
    const changed = {};
    for (const [name, input] of inputs) {
      const value = input.type === "checkbox" ? input.checked : input.value === "" ? null : Number(input.value);
      if (value === null) throw { detail: `${(LIMITS[name] || [name])[0]}: enter a value.` };
      if (value !== base[name]) changed[name] = value;
    }
    return changed;
  }
  fill(values);
  return { el: h("div", { class: "plan-limits" }, fields), fill, read };
}

function planDialog({ id, title, description, top = [], limits, submitLabel, onSubmit }) {
  const error = h("p", { class: "field-error", role: "alert" });
  const clampBox = h("div", { id: "plan-clamp", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary", form: id }, submitLabel);
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h("form", { id, class: "stack", novalidate: true }, top, limits.el, error, clampBox);
  const { close } = openDialog({ title, description, body: [form], actions: [cancel, submit] });
  cancel.addEventListener("click", () => close());
  // A clamp accepted for some values is not accepted for others: any change asks again.
  form.addEventListener("input", () => {
    clampBox.hidden = true;
    replace(clampBox);
  });
  async function send(clamp) {
    error.textContent = "";
    submit.disabled = true;
    try {
      await onSubmit(clamp, close);
    } catch (err) {
      if (err.problem?.code === "clamp_required") showClamp(clampBox, err.problem, () => send(true));
      else error.textContent = err.detail || String(err);
    } finally {
      submit.disabled = false;
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(false);
  });
  return close;
}

// The API's detail speaks to API callers ("send again with clamp"); here the button says it.
function showClamp(box, problem, accept) {
  const sources = problem.clamped_sources || [];
  const count = problem.clamped_count || sources.length;
  const more = count - sources.length;
  const days = sources[0]?.effective_days;
  const headline = sources.length
    ? `A retention of ${days} days is shorter than what ${count === 1 ? "1 source keeps" : `${fmtNumber(count)} sources keep`}. Once saved, their events older than that stop being searchable at once and are purged on schedule.`
    : problem.detail;
  replace(
    box,
    h(
      "div",
      { class: "callout callout-warn plan-clamp", role: "alert" },
      h("p", {}, headline),
      h(
        "ul",
        { class: "plan-clamped" },
        sources.map((s) => h("li", {}, h("strong", {}, `${s.org}/${s.source}`), ` keeps ${s.retention_days} days: ${s.effective_days} days once saved`)),
        more > 0 ? h("li", {}, `and ${fmtNumber(more)} more`) : null,
      ),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "btn btn-danger-solid", id: "plan-clamp-save", onclick: accept }, "Clamp these sources and save"),
      ),
    ),
  );
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function clampedToast(name, saved) {
  const clamped = saved.clamped_sources || [];
  const what = clamped.length === 1 ? "1 source" : `${fmtNumber(clamped.length)} sources`;
  toast(clamped.length ? `${name} saved; ${what} clamped` : `${name} saved`);
}

function editPlan(plan, reload) {
  const limits = limitFields(plan.limits);
  planDialog({
    id: "plan-form",
    title: `Edit plan ${plan.name}`,
    description: `${fmtNumber(plan.orgs)} ${plan.orgs === 1 ? "org is" : "orgs are"} on this plan; they get the new limits at once.`,
    limits,
    submitLabel: "Save",
    async onSubmit(clamp, close) {
      const changed = limits.read(plan.limits);
      if (!Object.keys(changed).length) throw { detail: "Nothing changed." };
      const saved = await call("PUT", `/v1/plans/${encodeURIComponent(plan.name)}`, { limits: changed, clamp });
      close();
      clampedToast(plan.name, saved);
      reload();
    },
  });
}

function definePlan(plans, reload) {
  const name = h("input", { class: "input", id: "plan-name", maxlength: "63", autocomplete: "off", placeholder: "team" });
  const base = h(
    "select",
    { class: "input", id: "plan-based-on" },
    plans.map((p) => h("option", { value: p.name }, p.name)),
  );
  const limitsOf = (n) => (plans.find((p) => p.name === n) || plans[0] || { limits: {} }).limits;
  const limits = limitFields(limitsOf(base.value));
  base.addEventListener("change", () => limits.fill(limitsOf(base.value)));
  planDialog({
    id: "plan-form",
    title: "New plan",
    description: "Starts as a copy of another plan's limits; change what differs.",
    top: [
      h("div", { class: "field" }, h("label", { for: "plan-name" }, "Name"), name),
      h("div", { class: "field" }, h("label", { for: "plan-based-on" }, "Based on"), base),
    ],
    limits,
    submitLabel: "Create plan",
    async onSubmit(_clamp, close) {
      if (!name.value.trim()) throw { detail: "Enter the plan's name." };
      const body = { name: name.value.trim(), based_on: base.value, limits: limits.read(limitsOf(base.value)) };
      await call("POST", "/v1/plans", body);
      close();
      toast(`Plan ${body.name} created`);
      reload();
    },
  });
  name.focus();
}
