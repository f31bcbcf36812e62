// The Alerts page: every alert with its state (normal, pending or firing; paused and why; the
// last evaluation's error), one alert's instances and history, and pause, resume and delete.
// The view follows the URL: /alerts, /alerts?id=… (one alert), /alerts?new=1 or ?edit=… (the
// form, in alert_form.js). States refresh every few seconds while the page is open.

import { cached, del, get, post, qs } from "./api.js";
import {
  actionTable,
  addButton,
  card,
  confirmAndRun,
  errorState,
  fmtDateTime,
  fmtNumber,
  fmtRelative,
  h,
  icon,
  pageHead,
  replace,
  stateView,
  toast,
} from "./dom.js";

const REFRESH_MS = 3000;
const RANK = { firing: 3, pending: 2, normal: 1 };

export async function mount(main, app) {
  const page = h("div", { class: "page", id: "alerts-page" });
  replace(main, page);
  let timer = null;
  let seq = 0;

  async function show() {
    clearInterval(timer);
    const mine = ++seq;
    const current = () => mine === seq && page.isConnected;
    const params = new URLSearchParams(location.search);
    const ctx = { page, app, current, refresh: (fn) => (timer = setInterval(fn, REFRESH_MS)) };
    if (params.has("new") || params.has("edit")) {
      const { mountForm } = await import("./alert_form.js");
      if (current()) await mountForm(ctx, params);
    } else if (params.get("id")) {
      await showAlert(ctx, params.get("id"));
    } else {
      await showList(ctx);
    }
  }

  await show();
  return {
    onUrlChange: show,
    unmount() {
      clearInterval(timer);
      seq += 1;
    },
  };
}

const canWrite = (app) => (app.session?.scopes || []).includes("alerts:write");

// ------------------------------------------------------------------ shared pieces

// The list answer's per-alert summary, made from the instances on the alert's own page.
function summarize(instances) {
  const counts = { firing: 0, pending: 0, normal: 0 };
  for (const i of instances) counts[i.state] = (counts[i.state] || 0) + 1;
  const worst = Object.keys(RANK).reduce((a, s) => (counts[s] && (RANK[s] || 0) > (RANK[a] || 0) ? s : a), null);
  return { instances: counts, worst };
}

// The alert's overall state: paused, else its worst instance, else "not run yet".
export function overall(alert, summary) {
  if (alert.state === "paused") return { name: "paused", cls: "" };
  const worst = summary?.worst;
  if (!worst) return { name: alert.last_run ? "normal" : "not run yet", cls: alert.last_run ? "badge-ok" : "" };
  const cls = { firing: "badge-danger", pending: "badge-warn", normal: "badge-ok" }[worst];
  const total = Object.values(summary.instances).reduce((a, n) => a + n, 0);
  const many = total > 1 && worst !== "normal";
  return { name: many ? `${worst} (${summary.instances[worst]} of ${total})` : worst, cls };
}

function stateCell(alert, summary) {
  const state = overall(alert, summary);
  return [
    h("span", { class: ["badge", state.cls], "data-state": state.name.split(" ")[0] }, state.name),
    alert.state === "paused" && alert.paused_reason ? h("div", { class: "ln-sub alert-reason" }, alert.paused_reason) : null,
    alert.last_error ? h("div", { class: "field-error alert-error" }, `Last run failed: ${alert.last_error}`) : null,
  ];
}

export function describeCondition(spec) {
  const window = seconds(spec.window_seconds);
  const by = spec.group_by?.length ? ` per ${spec.group_by.join(", ")}` : "";
  if (spec.condition === "count_above") return `more than ${fmtNumber(spec.threshold)} in ${window}${by}`;
  if (spec.condition === "count_below") return `fewer than ${fmtNumber(spec.threshold)} in ${window}${by}`;
  if (spec.condition === "new_match") return "any new match";
  return `no events in ${window}${by}`;
}

export function describeSchedule(spec) {
  if (spec.cron) return `cron ${spec.cron} (${spec.timezone})`;
  return `every ${seconds(spec.interval_seconds)}`;
}

export function seconds(n) {
  for (const [size, unit] of [[86400, "day"], [3600, "hour"], [60, "minute"]]) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}${n === size ? "" : "s"}`;
  }
  return `${n} second${n === 1 ? "" : "s"}`;
}

function when(iso) {
  return iso ? h("time", { datetime: iso, title: fmtDateTime(iso, { seconds: true }) }, fmtRelative(iso)) : "—";
}

function searchLink(spec) {
  return `/${qs({ q: spec.query, start: `now-${Math.max(1, Math.round(spec.window_seconds / 60))}m`, end: "now", sources: spec.sources || [] })}`;
}

function actions(alert, app, after) {
  if (!canWrite(app)) return [];
  const paused = alert.state === "paused";
  const toggle = h("button", { type: "button", class: "btn btn-sm", "data-action": paused ? "resume" : "pause" }, paused ? "Resume" : "Pause");
  toggle.addEventListener("click", async () => {
    try {
      await post(`/v1/alerts/${alert.id}/${paused ? "resume" : "pause"}`);
      toast(`${alert.name} ${paused ? "resumed" : "paused"}`);
      after();
    } catch (error) {
      toast(error.detail || String(error), { error: true });
    }
  });
  const edit = h("a", { class: "btn btn-sm", href: `/alerts?edit=${encodeURIComponent(alert.id)}`, "data-internal": "" }, "Edit");
  const remove = h("button", { type: "button", class: "btn btn-sm btn-danger", "data-action": "delete" }, "Delete");
  remove.addEventListener("click", () =>
    confirmAndRun({ title: `Delete the alert ${alert.name}?`, text: "It stops at once; its instances and history go with it.", confirm: "Delete alert" }, async () => {
      await del(`/v1/alerts/${alert.id}`);
      toast(`${alert.name} deleted`);
      app.navigate("/alerts");
    }),
  );
  return [toggle, edit, remove];
}

// ------------------------------------------------------------------ the list

function listHead(app) {
  return pageHead(
    "Alerts",
    "Each alert runs a search on a schedule and tells its endpoints when its condition holds, and again when it resolves.",
    canWrite(app) ? addButton("new-alert", "New alert", () => app.navigate("/alerts?new=1")) : null,
  );
}

async function showList(ctx) {
  const { page, app, current } = ctx;
  let alerts;
  try {
    alerts = await get("/v1/alerts");
  } catch (error) {
    if (current()) replace(page, listHead(app), errorState(error, () => showList(ctx)));
    return;
  }
  if (!current()) return;
  if (!alerts.length) {
    const create = canWrite(app) ? [h("a", { class: "btn btn-primary", href: "/alerts?new=1", "data-internal": "" }, "New alert")] : [];
    replace(page, listHead(app), stateView({ iconName: "alert", title: "No alerts yet", text: "Start one here, or from a search with Saved → Alert on this search.", actions: create }));
    return;
  }
  const tbody = () => alerts.map((a) => alertRow(a, app, () => showList(ctx)));
  const table = actionTable("alerts-table", ["Alert", "State", "Condition", "Schedule", "Last run"], tbody());
  replace(page, listHead(app), card({ id: "alerts-title", title: "Alerts", body: h("div", { class: "card-body table-wrap" }, table) }));
  ctx.refresh(() => refreshStates(ctx, table));
}

function alertRow(alert, app, after) {
  const spec = alert.spec;
  return h(
    "tr",
    { dataset: { alert: alert.id } },
    h("td", { "data-label": "Alert" }, h("a", { href: `/alerts?id=${encodeURIComponent(alert.id)}`, "data-internal": "", class: "ln-title" }, alert.name), h("div", { class: "ln-sub mono" }, spec.query || "(every event)")),
    h("td", { "data-label": "State", class: "alert-state" }, stateCell(alert, alert.summary)),
    h("td", { "data-label": "Condition" }, describeCondition(spec)),
    h("td", { "data-label": "Schedule" }, describeSchedule(spec)),
    h("td", { "data-label": "Last run", class: "alert-last-run" }, when(alert.last_run)),
    h("td", { class: "actions" }, h("div", { class: "row" }, actions(alert, app, after))),
  );
}

// Only the state and last-run cells change: buttons and focus stay where they are. One call
// whatever the number of alerts: the list carries each alert's instance counts.
async function refreshStates(ctx, table) {
  let alerts;
  try {
    alerts = await get("/v1/alerts");
  } catch {
    return; // the next refresh tries again; the table shows what was last known
  }
  if (!ctx.current()) return;
  const known = new Set([...table.querySelectorAll("tr[data-alert]")].map((r) => r.dataset.alert));
  if (alerts.length !== known.size || alerts.some((a) => !known.has(a.id))) return showList(ctx);
  for (const alert of alerts) {
    const row = table.querySelector(`tr[data-alert="${CSS.escape(alert.id)}"]`);
    replace(row.querySelector(".alert-state"), stateCell(alert, alert.summary));
    replace(row.querySelector(".alert-last-run"), when(alert.last_run));
  }
}

// ------------------------------------------------------------------ one alert

async function showAlert(ctx, id) {
  const { page, app, current } = ctx;
  const back = h("a", { href: "/alerts", "data-internal": "", class: "btn btn-ghost btn-sm back-link" }, "← All alerts");
  let data;
  try {
    data = await loadAlert(id);
  } catch (error) {
    if (current()) replace(page, back, errorState(error, () => showAlert(ctx, id)));
    return;
  }
  if (!current()) return;
  const { alert } = data;
  app.setTitle(alert.name);
  const reload = () => showAlert(ctx, id);
  const stateBox = h("div", { class: "card-body", id: "alert-summary" });
  const instBox = h("div", { class: "card-body table-wrap", id: "alert-instances" });
  const histBox = h("div", { class: "card-body table-wrap", id: "alert-history" });
  const open = h("a", { class: "btn", href: searchLink(alert.spec), "data-internal": "" }, icon("search", "icon-sm"), "Open search");
  replace(
    page,
    back,
    pageHead(alert.name, `${describeCondition(alert.spec)}, ${describeSchedule(alert.spec)}`, h("div", { class: "row" }, open, actions(alert, app, reload))),
    h(
      "div",
      { class: "stack-lg" },
      card({ id: "alert-state-title", title: "State", body: stateBox }),
      card({ id: "alert-inst-title", title: "Instances", lede: "One per group of the alert's group-by fields, each with its own state.", body: instBox }),
      card({ id: "alert-hist-title", title: "History", lede: "Transitions, held messages and errors, newest first.", body: histBox }),
    ),
  );
  const fill = (d) => {
    replace(stateBox, summary(d.alert, d.instances, d.sources));
    replace(instBox, instanceTable(d.instances));
    replace(histBox, historyTable(d.history));
  };
  fill(data);
  ctx.refresh(async () => {
    try {
      const next = await loadAlert(id);
      if (!ctx.current()) return;
      if (next.alert.state !== alert.state) return reload(); // pause/resume buttons follow it
      fill(next);
    } catch {
      /* shown again on the next refresh */
    }
  });
}

async function loadAlert(id) {
  const path = `/v1/alerts/${encodeURIComponent(id)}`;
  const [alert, instances, history, sources] = await Promise.all([
    get(path),
    get(`${path}/instances`),
    get(`${path}/history`),
    cached("/v1/sources").catch(() => []),
  ]);
  return { alert, instances, history, sources };
}

function summary(alert, instances, sources) {
  const spec = alert.spec;
  const names = (spec.sources || []).map((s) => sources.find((x) => x.id === s)?.name || s);
  const rows = [
    ["State", stateCell(alert, summarize(instances))],
    ["Watches", [h("span", { class: "mono" }, spec.query || "(every event)"), ` in ${names.length ? names.join(", ") : "every source its owner can read"}`]],
    ["Fires on", describeCondition(spec)],
    ["Runs", describeSchedule(spec)],
    ["Fires after", `${spec.pending_for} consecutive hit${spec.pending_for === 1 ? "" : "s"}${spec.keep_firing_for_seconds ? `, keeps firing ${seconds(spec.keep_firing_for_seconds)} after the last` : ""}`],
    ["Last run", when(alert.last_run)],
    ["Next run", alert.state === "paused" ? "paused" : when(alert.next_due)],
    ["Notifies", spec.endpoint_ids.length ? `${spec.endpoint_ids.length} endpoint${spec.endpoint_ids.length === 1 ? "" : "s"}` : "nobody (no endpoint chosen)"],
  ];
  return h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function labelsText(labels) {
  const pairs = Object.entries(labels || {}).filter(([k]) => k !== "alertname" && k !== "alert_id");
  return pairs.length ? pairs.map(([k, v]) => `${k}=${v}`).join(", ") : "the whole alert";
}

// A history row's group: the JSON list of its group-by values ("[]" for the whole alert).
function keyText(key) {
  try {
    const values = JSON.parse(key || "[]");
    return Array.isArray(values) && values.length ? values.join(", ") : "the whole alert";
  } catch {
    return key;
  }
}

function instanceTable(instances) {
  if (!instances.length) return h("p", { class: "muted" }, "Not evaluated yet.");
  const badge = (s) => h("span", { class: ["badge", { firing: "badge-danger", pending: "badge-warn", normal: "badge-ok" }[s]] }, s);
  return h(
    "table",
    { class: "table responsive" },
    h("thead", {}, h("tr", {}, ["Group", "State", "Last count", "Told", ""].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      instances.map((i) =>
        h(
          "tr",
          { dataset: { instance: i.key } },
          h("td", { "data-label": "Group", class: "mono" }, labelsText(i.labels)),
          h("td", { "data-label": "State" }, badge(i.state)),
          h("td", { "data-label": "Last count", class: "num" }, i.value ?? "—"),
          h("td", { "data-label": "Told" }, i.notified),
          h("td", {}, i.flapping ? h("span", { class: "badge badge-warn" }, "flapping") : null),
        ),
      ),
    ),
  );
}

function historyTable(history) {
  if (!history.length) return h("p", { class: "muted" }, "Nothing has happened yet.");
  const cls = { firing: "badge-danger", resolved: "badge-ok", error: "badge-danger", paused: "badge-warn" };
  return h(
    "table",
    { class: "table responsive", id: "alert-history-table" },
    h("thead", {}, h("tr", {}, ["When", "Event", "Group", "Count", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      history.map((e) =>
        h(
          "tr",
          { dataset: { event: e.event } },
          h("td", { "data-label": "When" }, fmtDateTime(e.at, { seconds: true })),
          h("td", { "data-label": "Event" }, h("span", { class: ["badge", cls[e.event] || ""] }, e.event)),
          h("td", { "data-label": "Group", class: "mono" }, keyText(e.key)),
          h("td", { "data-label": "Count", class: "num" }, e.value ?? "—"),
          h("td", { "data-label": "Detail" }, e.detail || ""),
        ),
      ),
    ),
  );
}
