// Data: what happens to the org's events beyond retention. Legal holds (owner and operator, two
// parties), erasures (two admins, with the preview of what matches), the org export (an owner at
// a fresh browser session) and the org's deletion. Each card shows only with the role's scope.

import { cached, get, post } from "./api.js";
import {
  actionTable,
  addButton,
  card,
  confirmAndRun,
  errorState,
  fmtBytes,
  fmtDateTime,
  fmtNumber,
  formDialog,
  h,
  openDialog,
  pageHead,
  replace,
  stateView,
  toast,
} from "./dom.js";
import { list } from "./members.js";
import { withReauth } from "./mfa.js";
import { getZone, parseAbsolute, zoneLabel } from "./timefmt.js";

const BADGES = {
  proposed: "badge-warn",
  awaiting_approval: "badge-warn",
  releasing: "badge-warn",
  running: "badge-accent",
  active: "badge-danger",
  approved: "badge-accent",
  held: "badge-danger",
  masked: "badge-accent",
  completed: "badge-ok",
  done: "badge-ok",
  failed: "badge-danger",
};
const POLL_MS = 1000;

export async function mount(main, app) {
  const scopes = new Set(app.session?.scopes || []);
  const page = h("div", { class: "page" });
  const timers = new Set();
  replace(main, page);
  let sources = [];
  try {
    sources = list(await cached("/v1/sources"), "sources");
  } catch {
    /* the forms then hold every source */
  }
  const head = () =>
    pageHead(
      "Data",
      "Legal holds, erasure of events, the org export and the org's deletion. Each step is recorded in the audit log.",
    );
  const cards = [];
  if (scopes.has("retention:write")) cards.push(holdsCard(scopes.has("holds:write"), sources));
  if (scopes.has("erasure:write")) cards.push(erasuresCard(sources, app.session?.me?.id));
  if (scopes.has("exports:write")) cards.push(exportCard(timers));
  if (scopes.has("org:delete")) cards.push(deletionCard(main, app));
  replace(page, head(), h("div", { class: "stack-lg" }, cards));
  return {
    unmount() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}

function badge(state) {
  return h("span", { class: ["badge", BADGES[state]] }, state.replaceAll("_", " "));
}

function when(iso) {
  return iso ? fmtDateTime(iso) : "—";
}

function rangeText(start, end) {
  if (!start && !end) return "all time";
  return `${start ? when(start) : "the start"} to ${end ? when(end) : "now"}`;
}

function sourceNames(ids, sources) {
  if (!ids || !ids.length) return "every source";
  const names = new Map(sources.map((s) => [s.id, s.name]));
  return ids.map((id) => names.get(id) || id).join(", ");
}

// A list card whose body reloads in place: `rows(items, reload)` builds the table rows.
function listBody(box, tableId, columns, fetch, rows, empty) {
  async function reload() {
    let items;
    try {
      items = await fetch();
    } catch (error) {
      replace(box, errorState(error, reload));
      return;
    }
    replace(
      box,
      items.length
        ? actionTable(tableId, columns, rows(items, reload))
        : h("p", { class: "muted" }, empty),
    );
  }
  reload();
  return reload;
}

function field(id, label, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "field-hint" }, hint) : null,
  );
}

function textInput(id, attrs = {}) {
  return h("input", { class: "input", id, autocomplete: "off", ...attrs });
}

// Source checkboxes: none ticked means every source.
function sourceBoxes(prefix, sources) {
  const boxes = sources.map((s) =>
    h("input", { type: "checkbox", id: `${prefix}-src-${s.id}`, value: s.id }),
  );
  const el = h(
    "fieldset",
    { class: "field" },
    h("legend", { class: "field-label" }, "Sources ", h("span", { class: "muted" }, "(none ticked: every source)")),
    sources.map((s, i) => h("label", { class: "check" }, boxes[i], ` ${s.name}`)),
  );
  const value = () => {
    const picked = boxes.filter((b) => b.checked).map((b) => b.value);
    return picked.length ? picked : null;
  };
  return { el, value };
}

// A typed 24-hour time (in the zone the person chose, see timefmt.js) as an ISO time, or null
// when empty.
function isoOrNull(input) {
  if (!input.value.trim()) return null;
  const date = parseAbsolute(input.value);
  if (!date) throw { detail: `${input.id}: not a time; write it as 2026-01-31 14:00, 24-hour` };
  return date.toISOString();
}

// ------------------------------------------------------------------ legal holds

function holdsCard(canAct, sources) {
  const box = h("div", { class: "card-body table-wrap" });
  const reload = listBody(
    box,
    "holds-table",
    ["Case", "Scope", "State", "Proposed"],
    async () => list(await get("/v1/holds"), "holds"),
    (holds, again) => holds.map((hold) => holdRow(hold, canAct, sources, again)),
    "No legal holds. A hold keeps matching data from purge and erasure until it is released.",
  );
  return card(
    {
      id: "holds-title",
      title: "Legal holds",
      lede: "The owner and the operator each approve what the other proposes: placing a hold, and releasing it.",
      action: canAct ? addButton("propose-hold", "Propose a hold", () => proposeHold(sources, reload)) : null,
      body: box,
    },
  );
}

function holdRow(hold, canAct, sources, reload) {
  const pending = hold.pending;
  const actions = [];
  if (canAct && pending && pending.side === "operator") {
    actions.push(holdButton(hold, "approve", "Approve", reload));
  }
  if (canAct && pending && pending.side === "owner") {
    actions.push(holdButton(hold, "withdraw", "Withdraw", reload));
  }
  if (canAct && hold.state === "active" && !pending) {
    actions.push(
      h("button", { type: "button", class: "btn btn-sm", onclick: () => releaseHold(hold, reload) }, "Release"),
    );
  }
  const waiting = pending ? `${pending.action} asked by the ${pending.side}` : "";
  return h(
    "tr",
    { dataset: { hold: hold.id } },
    h("td", { "data-label": "Case" }, h("strong", {}, hold.case_id), h("div", { class: "ln-sub" }, hold.reason)),
    h(
      "td",
      { "data-label": "Scope" },
      sourceNames(hold.sources, sources),
      h("div", { class: "ln-sub" }, rangeText(hold.start, hold.end)),
    ),
    h("td", { "data-label": "State" }, badge(hold.state), h("div", { class: "ln-sub" }, waiting)),
    h("td", { "data-label": "Proposed" }, when(hold.proposed_at)),
    h("td", { class: "actions" }, actions),
  );
}

function holdButton(hold, action, label, reload) {
  const run = async () => {
    try {
      await withReauth(() => post(`/v1/holds/${encodeURIComponent(hold.id)}/${action}`, {}));
      toast(`Hold ${hold.case_id}: ${label.toLowerCase()}d`);
      reload();
    } catch (err) {
      toast(err.detail || String(err), { error: true });
    }
  };
  return h("button", { type: "button", class: "btn btn-sm", onclick: run }, label);
}

function proposeHold(sources, reload) {
  const reason = textInput("hold-reason", { maxlength: "2000", required: true });
  const caseId = textInput("hold-case", { maxlength: "100", required: true });
  const start = h("input", { class: "input mono", id: "hold-start", placeholder: "2026-01-31 14:00" });
  const end = h("input", { class: "input mono", id: "hold-end", placeholder: "2026-02-28 00:00" });
  const picked = sourceBoxes("hold", sources);
  formDialog({
    id: "hold-form",
    title: "Propose a legal hold",
    description: "The hold is in force once the operator approves it.",
    fields: [
      field("hold-reason", "Reason", reason),
      field("hold-case", "Case id", caseId),
      picked.el,
      field("hold-start", "From (optional)", start),
      field("hold-end", "Until (optional)", end, `24-hour, ${getZone() === "utc" ? "UTC" : `local time (${zoneLabel()})`}. Leave both empty to hold all time.`),
    ],
    submitLabel: "Propose",
    async onSubmit(close) {
      if (!reason.value.trim() || !caseId.value.trim()) throw { detail: "Enter a reason and a case id." };
      const body = {
        reason: reason.value.trim(),
        case_id: caseId.value.trim(),
        sources: picked.value(),
        start: isoOrNull(start),
        end: isoOrNull(end),
      };
      await withReauth(() => post("/v1/holds", body));
      close();
      toast(`Hold ${body.case_id} proposed`);
      reload();
    },
  });
}

function releaseHold(hold, reload) {
  const reason = textInput("release-reason", { maxlength: "2000", required: true });
  formDialog({
    id: "release-form",
    title: `Release hold ${hold.case_id}?`,
    description: "The operator approves the release; until then the hold stays in force.",
    fields: [field("release-reason", "Reason", reason)],
    submitLabel: "Propose release",
    async onSubmit(close) {
      if (!reason.value.trim()) throw { detail: "Enter why the hold ends." };
      const path = `/v1/holds/${encodeURIComponent(hold.id)}/release`;
      await withReauth(() => post(path, { reason: reason.value.trim() }));
      close();
      toast(`Release of ${hold.case_id} proposed`);
      reload();
    },
  });
}

// ------------------------------------------------------------------ erasures

function erasuresCard(sources, me) {
  const box = h("div", { class: "card-body table-wrap" });
  const reload = listBody(
    box,
    "erasures-table",
    ["Query", "Matches", "State", "Asked"],
    async () => list(await get("/v1/erasures"), "erasures"),
    (items, again) => items.map((item) => erasureRow(item, me, again)),
    "No erasure requests.",
  );
  return card({
    id: "erasures-title",
    title: "Erasures",
    lede: "Events matching a query are hidden and then rewritten out of storage, once a second admin approves.",
    action: addButton("request-erasure", "Request an erasure", () => requestErasure(sources, reload)),
    body: box,
  });
}

function erasureRow(item, me, reload) {
  const open = !["masked", "completed", "cancelled"].includes(item.state);
  const actions = [];
  // The second-admin rule: whoever asked cannot approve, so they are not offered it.
  if (item.state === "awaiting_approval" && item.requested_by !== me) {
    actions.push(
      h("button", { type: "button", class: "btn btn-sm", onclick: () => approveErasure(item, reload) }, "Approve"),
    );
  }
  if (open) {
    actions.push(
      h("button", { type: "button", class: "btn btn-sm btn-ghost", onclick: () => cancelErasure(item, reload) }, "Cancel"),
    );
  }
  return h(
    "tr",
    { dataset: { erasure: item.id } },
    h(
      "td",
      { "data-label": "Query" },
      h("code", {}, item.query || "*"),
      h("div", { class: "ln-sub" }, rangeText(item.start, item.end)),
    ),
    h("td", { "data-label": "Matches", class: "num" }, fmtNumber(item.events ?? item.preview?.count)),
    h(
      "td",
      { "data-label": "State" },
      badge(item.state),
      h("div", { class: "ln-sub" }, item.due_at && open ? `due ${when(item.due_at)}` : item.waiting || ""),
    ),
    h("td", { "data-label": "Asked" }, when(item.requested_at)),
    h("td", { class: "actions" }, actions),
  );
}

// Preview and request are two steps in one dialog: "Preview" asks the server what the form
// matches now and creates nothing; "Request erasure" asks for exactly what was previewed, and is
// offered again only after a fresh preview once any field changes.
function requestErasure(sources, reload) {
  const query = textInput("erasure-query", { class: "input input-mono", maxlength: "4096" });
  const start = textInput("erasure-start", { value: "now-30d" });
  const end = textInput("erasure-end", { value: "now" });
  const picked = sourceBoxes("erasure", sources);
  const error = h("p", { class: "field-error", role: "alert" });
  const result = h("div", { class: "stack", id: "erasure-preview", "aria-live": "polite" });
  const previewButton = h("button", { type: "submit", class: "btn", form: "erasure-form" }, "Preview");
  const ask = h("button", { type: "button", class: "btn btn-danger-solid", id: "erasure-ask", disabled: true }, "Request erasure");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { id: "erasure-form", class: "stack", novalidate: true },
    field("erasure-query", "Query", query, 'As in search, e.g. user.email:"ana@example.com"'),
    field("erasure-start", "From", start, "now-30d, or an ISO time"),
    field("erasure-end", "Until", end),
    picked.el,
    error,
  );
  const { close } = openDialog({
    title: "Request an erasure",
    description: "Preview what matches first: nothing is asked for until you request it, and a second admin approves.",
    body: [form, result],
    actions: [cancel, previewButton, ask],
  });
  let previewed = null; // the body the shown preview answers
  const stale = () => {
    previewed = null;
    ask.disabled = true;
    replace(result);
  };
  form.addEventListener("input", stale);
  cancel.addEventListener("click", () => close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    stale();
    const body = erasureBody(query, start, end, picked);
    if (!body) {
      error.textContent = "Enter the query of the events to erase.";
      return;
    }
    previewButton.disabled = true;
    try {
      const [preview, holds] = await Promise.all([post("/v1/erasures/preview", body), holdNames()]);
      replace(result, previewView(preview, holds));
      previewed = body;
      ask.disabled = false;
    } catch (err) {
      error.textContent = err.detail || String(err);
    } finally {
      previewButton.disabled = false;
    }
  });
  ask.addEventListener("click", async () => {
    if (!previewed) return;
    ask.disabled = true;
    try {
      await post("/v1/erasures", previewed);
      close();
      toast("Erasure requested: another admin approves it");
      reload();
    } catch (err) {
      error.textContent = err.detail || String(err);
      ask.disabled = false;
    }
  });
  query.focus();
}

function erasureBody(query, start, end, picked) {
  if (!query.value.trim()) return null;
  return {
    query: query.value.trim(),
    start: start.value.trim() || "now-30d",
    end: end.value.trim() || "now",
    sources: picked.value(),
  };
}

const OBJECTS_SHOWN = 20;

function objectList(objects) {
  const more = objects.length - OBJECTS_SHOWN;
  return h(
    "div",
    { id: "erasure-objects", class: "stack" },
    h("p", { class: "muted" }, "Objects rewritten without these events:"),
    h(
      "ul",
      { class: "erasure-objects" },
      objects.slice(0, OBJECTS_SHOWN).map((o) =>
        h("li", {}, h("code", {}, o.key), h("span", { class: "ln-sub" }, ` ${fmtNumber(o.rows)} rows, ${fmtBytes(o.bytes)}`)),
      ),
      more > 0 ? h("li", { class: "muted" }, `and ${fmtNumber(more)} more`) : null,
    ),
  );
}

// Hold ids as the case ids people know them by; the ids alone when the holds cannot be read.
async function holdNames() {
  try {
    return new Map(list(await get("/v1/holds"), "holds").map((hold) => [hold.id, hold.case_id]));
  } catch {
    return new Map();
  }
}

function previewView(preview, holds) {
  const objects = preview.objects || [];
  const held = preview.held_by || [];
  const sample = (preview.sample || []).map((event) =>
    h("pre", { class: "code erasure-sample", tabindex: "0" }, JSON.stringify(event, null, 2)),
  );
  const pending = preview.pending_rows ? ` (${fmtNumber(preview.pending_rows)} not yet in storage)` : "";
  return [
    h(
      "p",
      { id: "erasure-count" },
      h("strong", {}, fmtNumber(preview.count)),
      ` ${preview.count === 1 ? "event matches" : "events match"}, in ${fmtNumber(objects.length)} ${objects.length === 1 ? "object" : "objects"}${pending}.`,
    ),
    sample.length ? h("div", { class: "stack" }, h("p", { class: "muted" }, "A few of them:"), sample) : null,
    objects.length ? objectList(objects) : null,
    h(
      "p",
      { id: "erasure-holds", class: held.length ? "field-error" : "muted" },
      held.length
        ? `Legal holds in force cover these events: ${held.map((id) => holds.get(id) || id).join(", ")}. The erasure waits until they are released.`
        : "No legal hold covers these events.",
    ),
  ];
}

async function cancelNow(item, reason) {
  try {
    await post(`/v1/erasures/${encodeURIComponent(item.id)}/cancel`, { reason });
    toast("Erasure cancelled");
  } catch (err) {
    toast(err.detail || String(err), { error: true });
  }
}

function approveErasure(item, reload) {
  return confirmAndRun(
    {
      title: "Approve this erasure?",
      text: `${fmtNumber(item.preview?.count)} events matching ${item.query} are hidden once the cancel window has passed, then rewritten out of storage.`,
      confirm: "Approve",
    },
    async () => {
      await withReauth(() => post(`/v1/erasures/${encodeURIComponent(item.id)}/approve`, {}));
      toast("Erasure approved");
      reload();
    },
  );
}

function cancelErasure(item, reload) {
  return confirmAndRun(
    { title: "Cancel this erasure?", text: "Nothing it matches is erased.", confirm: "Cancel erasure" },
    async () => {
      await cancelNow(item, "");
      reload();
    },
  );
}

// ------------------------------------------------------------------ export

function exportCard(timers) {
  const box = h("div", { class: "card-body stack", id: "export-status", "aria-live": "polite" });
  const button = h("button", { type: "button", class: "btn btn-primary", id: "start-export", onclick: start }, "Export the org");
  async function follow(id) {
    let state;
    try {
      state = await get(`/v1/exports/${encodeURIComponent(id)}`);
    } catch (error) {
      replace(box, errorState(error, () => follow(id)));
      return;
    }
    replace(box, exportView(state));
    if (state.state === "running") {
      const timer = setTimeout(() => {
        timers.delete(timer);
        follow(id);
      }, POLL_MS);
      timers.add(timer);
    }
  }
  async function latest() {
    try {
      const items = list(await get("/v1/exports"), "exports");
      if (!items.length) {
        replace(box, h("p", { class: "muted" }, "No export yet."));
        return;
      }
      follow(items[items.length - 1].id);
    } catch (error) {
      if (error.status === 403) {
        // Not an owner signed in: say who can export, rather than an error with "Try again".
        button.disabled = true;
        replace(box, h("p", { class: "muted", id: "export-not-allowed" }, sentence(error.detail)));
        return;
      }
      replace(box, errorState(error, latest));
    }
  }
  async function start() {
    try {
      const created = await withReauth(() => post("/v1/exports", {}));
      toast("Export started");
      follow(created.id);
    } catch (err) {
      toast(err.detail || String(err), { error: true });
    }
  }
  latest();
  return card({
    id: "export-title",
    title: "Export",
    lede: "An archive of everything the org keeps here, with a signed manifest to verify offline.",
    action: button,
    body: box,
  });
}

function exportView(state) {
  const done = state.state === "done";
  const progress = `${fmtNumber(state.objects_done)} of ${fmtNumber(state.objects_total)} objects, ${fmtBytes(state.bytes_done)}`;
  return [
    h("div", { class: "row" }, badge(state.state), h("span", {}, `Started ${when(state.created_at)}`)),
    h("div", { class: "progress", "data-active": String(state.state === "running") }),
    h("p", { class: "muted" }, progress),
    state.error ? h("p", { class: "field-error" }, state.error) : null,
    done
      ? h(
          "p",
          {},
          h(
            "a",
            {
              class: "btn",
              id: "export-download",
              href: `/v1/exports/${encodeURIComponent(state.id)}/download`,
              download: "",
            },
            `Download (${fmtBytes(state.archive_bytes)})`,
          ),
          h("span", { class: "ln-sub" }, ` manifest sha256 ${state.manifest_sha256}`),
        )
      : null,
  ];
}

// ------------------------------------------------------------------ org deletion

function deletionCard(main, app) {
  const reason = textInput("delete-reason", { maxlength: "2000" });
  const confirmName = textInput("delete-confirm", { maxlength: "200" });
  const error = h("p", { class: "field-error", role: "alert" });
  const button = h("button", { type: "submit", class: "btn btn-danger-solid", id: "delete-org" }, "Delete this org");
  const form = h(
    "form",
    { class: "card-body stack danger-zone", id: "delete-form", novalidate: true },
    field("delete-reason", "Reason", reason),
    field("delete-confirm", "Type the org's name to confirm", confirmName),
    error,
    h("div", { class: "row" }, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const org = await cached("/v1/org").catch(() => app.session?.org || {});
    if (!reason.value.trim()) {
      error.textContent = "Enter why the org is deleted.";
      return;
    }
    if (confirmName.value !== org.name) {
      error.textContent = "Type the org's name exactly as it is spelled.";
      return;
    }
    await confirmAndRun(
      {
        title: `Delete ${org.name}?`,
        text: "Everyone is signed out now, and every event and destination of the org is purged after the grace period unless an operator restores it.",
        confirm: "Delete the org",
      },
      async () => {
        const state = await withReauth(() =>
          post("/v1/org/deletion", { reason: reason.value.trim(), confirm: confirmName.value }),
        );
        showPending(main, org.name, state);
      },
    );
  });
  return card({
    id: "delete-title",
    title: "Delete this org",
    lede: "Stops the org at once; its data is gone after the grace period. Legal holds in force keep it.",
    body: form,
  });
}

// The server ended every session of the org with the request: what is left to show is what
// happens next, and the way back to the sign-in page (which answers the same when and why).
function showPending(main, name, state) {
  replace(
    main,
    h(
      "div",
      { class: "page", id: "org-pending" },
      stateView({
        iconName: "lock",
        title: `${name} is pending deletion`,
        text: `Reason: ${state.reason}. Everyone is signed out and nothing is accepted or served. Its data is purged after ${when(state.purge_after)}; until then an operator can restore the org.`,
        actions: [h("button", { type: "button", class: "btn", onclick: () => location.assign("/") }, "Sign in")],
      }),
    ),
  );
}

function sentence(text) {
  const line = String(text || "");
  return line ? `${line[0].toUpperCase()}${line.slice(1)}${/[.)]$/.test(line) ? "" : "."}` : "";
}
