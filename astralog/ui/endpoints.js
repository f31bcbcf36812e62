// Alert endpoints (admins): the org's webhooks and e-mail addresses, their state (a receiver's
// 410 disables one, with the reason), the `whsec_` signing secret shown once at creation and at
// rotation, a test event, and each endpoint's delivery log with replay. `?id=` picks the endpoint
// whose log shows, so a log is a link. Lists refresh while the page is open: deliveries and a 410
// happen in the background.

import { del, get, patch, post } from "./api.js";
import {
  actionTable,
  addButton,
  card,
  confirmAndRun,
  copyButton,
  errorState,
  fmtDateTime,
  fmtRelative,
  formDialog,
  h,
  icon,
  openDialog,
  pageHead,
  replace,
  toast,
} from "./dom.js";

const BASE = "/v1/alert-endpoints";
const POLL_MS = 1500;
const DELIVERY_BADGES = {
  pending: "badge-warn",
  delivering: "badge-accent",
  delivered: "badge-ok",
  failed: "badge-danger",
};

export async function mount(main, app) {
  const page = h("div", { class: "page" });
  replace(main, page);
  const state = { endpoints: null, shown: "", logShown: "", timer: null, alive: true, seq: 0 };
  const listBox = h("div", { class: "card-body table-wrap" });
  const logBox = h("div", { class: "card-body table-wrap", id: "deliveries" });
  const logCard = h("div");
  replace(
    page,
    pageHead(
      "Alert endpoints",
      "Where alerts are sent: webhooks signed with Standard Webhooks, or e-mail. Every change is in the audit log.",
      addButton("new-endpoint", "New endpoint", () => createEndpoint(refresh)),
    ),
    h(
      "div",
      { class: "stack-lg" },
      card(
        {
          id: "endpoints-title",
          title: "Endpoints",
          lede: "A receiver that answers 410 Gone disables its endpoint; enable it again once it is fixed.",
          body: listBox,
        },
      ),
      logCard,
    ),
  );

  const selected = () => new URLSearchParams(location.search).get("id") || "";
  const select = (id) => app.navigate(`/alert-endpoints${id ? `?id=${encodeURIComponent(id)}` : ""}`);
  const actions = { select, refresh: () => refresh(), testSent: (id) => sentTest(id) };

  async function loadList() {
    let items;
    try {
      items = await get(BASE);
    } catch (error) {
      state.shown = "";
      replace(listBox, errorState(error, refresh));
      return;
    }
    state.endpoints = items;
    // Rebuilt only when something changed: a poll never swaps a button under the pointer.
    const key = JSON.stringify([items, selected()]);
    if (key === state.shown) return;
    state.shown = key;
    replace(
      listBox,
      items.length
        ? actionTable(
            "endpoints-table",
            ["Endpoint", "Kind", "State", "Secret"],
            items.map((e) => endpointRow(e, e.id === selected(), actions)),
          )
        : h("p", { class: "muted" }, "No endpoints yet. Add a webhook or an e-mail address, then pick it in an alert."),
    );
  }

  async function loadLog() {
    const endpoint = (state.endpoints || []).find((e) => e.id === selected());
    if (!endpoint) {
      state.logShown = "";
      replace(logCard);
      return;
    }
    if (!logCard.firstChild || logCard.dataset.endpoint !== endpoint.id) {
      state.logShown = "";
      logCard.dataset.endpoint = endpoint.id;
      replace(logCard, logCardFor(endpoint, logBox));
    }
    let rows;
    try {
      rows = await get(`${BASE}/${encodeURIComponent(endpoint.id)}/deliveries?limit=50`);
    } catch (error) {
      state.logShown = "";
      replace(logBox, errorState(error, refresh));
      return;
    }
    const key = JSON.stringify(rows);
    if (key === state.logShown) return;
    state.logShown = key;
    replace(logBox, deliveryTable(rows, refresh));
  }

  // Only the latest round schedules the next one, so clicks never start a second poll loop.
  async function refresh() {
    const seq = ++state.seq;
    clearTimeout(state.timer);
    await loadList();
    await loadLog();
    if (state.alive && seq === state.seq) state.timer = setTimeout(refresh, POLL_MS);
  }

  async function sentTest(id) {
    if (selected() !== id) select(id);
    else await refresh();
  }

  await refresh();
  return {
    onUrlChange() {
      refresh();
    },
    unmount() {
      state.alive = false;
      clearTimeout(state.timer);
    },
  };
}

// ------------------------------------------------------------------ the endpoints

function stateBadge(endpoint) {
  return endpoint.enabled
    ? h("span", { class: "badge badge-ok" }, "active")
    : h("span", { class: "badge badge-danger" }, "disabled");
}

function endpointRow(endpoint, isSelected, actions) {
  const id = encodeURIComponent(endpoint.id);
  const buttons = [
    h(
      "button",
      { type: "button", class: "btn btn-sm", "aria-pressed": String(isSelected), onclick: () => actions.select(isSelected ? "" : endpoint.id) },
      isSelected ? "Hide log" : "Delivery log",
    ),
  ];
  if (endpoint.enabled) {
    buttons.push(
      h("button", { type: "button", class: "btn btn-sm", onclick: () => sendTest(endpoint, actions) }, "Send test"),
    );
  } else {
    buttons.push(
      h("button", { type: "button", class: "btn btn-sm btn-primary", onclick: () => enable(endpoint, actions) }, "Enable"),
    );
  }
  if (endpoint.kind === "webhook") {
    buttons.push(
      h("button", { type: "button", class: "btn btn-sm", onclick: () => rotateSecret(endpoint, actions) }, "Rotate secret"),
    );
  }
  buttons.push(
    h(
      "button",
      {
        type: "button",
        class: "btn btn-sm btn-ghost",
        onclick: () =>
          confirmAndRun(
            {
              title: `Delete ${endpoint.name}?`,
              text: "Nothing more is sent to it, and alerts that name it stop telling it. Its delivery log stays.",
              confirm: "Delete endpoint",
            },
            async () => {
              await del(`${BASE}/${id}`);
              toast(`Endpoint ${endpoint.name} deleted`);
              actions.select("");
            },
          ),
      },
      "Delete",
    ),
  );
  return h(
    "tr",
    { dataset: { endpoint: endpoint.id }, class: isSelected ? "is-selected" : null },
    h(
      "td",
      { "data-label": "Endpoint" },
      h("strong", {}, endpoint.name),
      h("div", { class: "ln-sub mono endpoint-target" }, endpoint.target),
      endpoint.headers_set.length
        ? h("div", { class: "ln-sub" }, `extra headers: ${endpoint.headers_set.join(", ")} (write-only)`)
        : null,
    ),
    h("td", { "data-label": "Kind" }, endpoint.kind === "webhook" ? "Webhook" : "E-mail"),
    h(
      "td",
      { "data-label": "State" },
      stateBadge(endpoint),
      endpoint.disabled_reason
        ? h("div", { class: "ln-sub endpoint-reason" }, endpoint.disabled_reason)
        : null,
      errorsToggle(endpoint, actions),
    ),
    h(
      "td",
      { "data-label": "Secret" },
      endpoint.kind !== "webhook"
        ? "—"
        : endpoint.secret_rotated_at
          ? `rotated ${fmtRelative(endpoint.secret_rotated_at)}`
          : `set ${fmtRelative(endpoint.created_at)}`,
    ),
    h("td", { class: "actions" }, buttons),
  );
}

// Whether the endpoint also gets every alert error of the org, not only its own alerts' messages.
function errorsToggle(endpoint, actions) {
  const box = h("input", {
    type: "checkbox",
    class: "endpoint-errors",
    checked: Boolean(endpoint.errors),
    onchange: () => setErrors(endpoint, box, actions),
  });
  return h("label", { class: "check", title: "Also receives the errors of alerts that do not name it" }, box, h("span", {}, "Every alert error in the org"));
}

async function setErrors(endpoint, box, actions) {
  const errors = box.checked;
  box.disabled = true;
  try {
    await patch(`${BASE}/${encodeURIComponent(endpoint.id)}`, { errors });
    toast(errors ? `${endpoint.name} now receives every alert error` : `${endpoint.name} no longer receives every alert error`);
  } catch (error) {
    box.checked = !errors;
    toast(error.detail || String(error), { error: true });
  } finally {
    box.disabled = false;
    actions.refresh();
  }
}

function field(id, label, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "field-hint", id: `${id}-hint` }, hint) : null,
  );
}

// "Name: value" lines as a header object; a bad line is refused before anything is sent.
function parseHeaders(text) {
  const headers = {};
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw { detail: `Header line ${i + 1}: write it as "Name: value".` };
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function createEndpoint(refresh) {
  const name = h("input", { class: "input", id: "endpoint-name", maxlength: "63", autocomplete: "off", placeholder: "oncall-webhook" });
  const kind = h(
    "select",
    { class: "select", id: "endpoint-kind" },
    h("option", { value: "webhook" }, "Webhook (HTTPS POST, signed)"),
    h("option", { value: "email" }, "E-mail"),
  );
  const target = h("input", { class: "input input-mono", id: "endpoint-target", maxlength: "2048", autocomplete: "off", placeholder: "https://hooks.example.com/astralog" });
  const headers = h("textarea", { class: "textarea input-mono", id: "endpoint-headers", rows: "2", placeholder: "Authorization: Bearer …", spellcheck: "false" });
  const headersField = field(
    "endpoint-headers",
    "Extra headers (optional)",
    headers,
    "One \"Name: value\" a line, e.g. the receiver's own token. Write-only: never shown again.",
  );
  const errors = h("input", { type: "checkbox", id: "endpoint-errors", "aria-describedby": "endpoint-errors-hint" });
  const errorsField = h(
    "div",
    { class: "field" },
    h("label", { class: "check" }, errors, h("span", {}, "Also send every alert error in the org")),
    h("p", { class: "field-hint", id: "endpoint-errors-hint" }, "An alert that cannot run (its query fails, its owner lost access) says so here, whichever endpoints it names."),
  );
  const targetLabel = h("label", { for: "endpoint-target" }, "URL");
  kind.addEventListener("change", () => {
    const mail = kind.value === "email";
    targetLabel.textContent = mail ? "E-mail address" : "URL";
    target.placeholder = mail ? "oncall@example.com" : "https://hooks.example.com/astralog";
    headersField.hidden = mail;
  });
  formDialog({
    id: "endpoint-form",
    title: "New alert endpoint",
    description: "A webhook gets its own signing secret, shown once when it is created.",
    fields: [
      field("endpoint-name", "Name", name),
      field("endpoint-kind", "Kind", kind),
      h("div", { class: "field" }, targetLabel, target),
      headersField,
      errorsField,
    ],
    submitLabel: "Create endpoint",
    async onSubmit(close) {
      if (!name.value.trim() || !target.value.trim()) throw { detail: "Enter a name and where to send." };
      const body = { name: name.value.trim(), kind: kind.value, target: target.value.trim(), errors: errors.checked };
      if (kind.value === "webhook") body.headers = parseHeaders(headers.value);
      const made = await post(BASE, body);
      close();
      if (made.secret) {
        revealSecret(made.secret, {
          title: `Endpoint ${made.name} created`,
          note: "Your receiver verifies each delivery's webhook-signature header with it (Standard Webhooks).",
        });
      } else {
        toast(`Endpoint ${made.name} created`);
      }
      refresh();
    },
  });
}

function rotateSecret(endpoint, actions) {
  const hours = h("input", { class: "input days-input", id: "rotate-overlap", type: "number", min: "0", max: "168", step: "any", value: "24" });
  formDialog({
    id: "rotate-secret-form",
    title: `Rotate the secret of ${endpoint.name}`,
    description: "A new secret signs from now on. During the overlap each delivery carries both signatures, so the receiver can switch without missing one.",
    fields: [field("rotate-overlap", "Overlap in hours", hours, "0 to 168; 0 stops the current secret at once.")],
    submitLabel: "Rotate secret",
    async onSubmit(close) {
      const overlap = Number(hours.value);
      if (hours.value === "" || !(overlap >= 0 && overlap <= 168)) throw { detail: "Choose an overlap from 0 to 168 hours." };
      const rotated = await post(`${BASE}/${encodeURIComponent(endpoint.id)}/rotate-secret`, { overlap_hours: overlap });
      close();
      revealSecret(rotated.secret, {
        title: `New secret for ${endpoint.name}`,
        note: overlap
          ? `The previous secret still signs until ${fmtDateTime(rotated.previous_valid_until)} (${rotated.previous_valid_until}); give the receiver the new one before then.`
          : "The previous secret has stopped signing: deliveries from now on carry only the new signature.",
      });
      actions.refresh();
    },
  });
}

// The one time a secret is visible: a read-only field, a copy button, and a warning.
function revealSecret(secret, { title, note }) {
  const input = h("input", { class: "input", id: "revealed-secret", readonly: true, value: secret, "aria-label": "The signing secret", spellcheck: "false" });
  const done = h("button", { type: "button", class: "btn btn-primary" }, "I have stored it");
  const { close } = openDialog({
    title,
    body: [
      h(
        "div",
        { class: "callout callout-warn", role: "note" },
        icon("alert"),
        h(
          "span",
          {},
          h("strong", {}, "Copy this signing secret now: you won't see it again. "),
          "Astralog keeps it sealed and never shows it after this dialog. If it is lost, rotate it.",
        ),
      ),
      h("div", { class: "secret-box" }, input, copyButton(secret, { label: "Copy", what: "Secret copied", cls: "btn" })),
      note ? h("p", { class: "field-hint", id: "secret-note" }, note) : null,
    ],
    actions: [done],
  });
  done.addEventListener("click", () => close());
  input.focus();
  input.select();
}

async function sendTest(endpoint, actions) {
  try {
    const sent = await post(`${BASE}/${encodeURIComponent(endpoint.id)}/test`, {});
    toast(`Test event sent to ${endpoint.name}`);
    await actions.testSent(endpoint.id);
  } catch (error) {
    toast(error.detail || String(error), { error: true });
  }
}

async function enable(endpoint, actions) {
  try {
    await patch(`${BASE}/${encodeURIComponent(endpoint.id)}`, { enabled: true });
    toast(`Endpoint ${endpoint.name} enabled`);
    actions.refresh();
  } catch (error) {
    toast(error.detail || String(error), { error: true });
  }
}

// ------------------------------------------------------------------ the delivery log

function logCardFor(endpoint, box) {
  return card({
    id: "deliveries-title",
    title: `Delivery log: ${endpoint.name}`,
    lede: "Newest first. The message id is the webhook-id header, the same on every retry and replay.",
    body: box,
  });
}

function deliveryTable(rows, refresh) {
  if (!rows.length) {
    return h("p", { class: "muted" }, "Nothing sent yet. Send a test event to see one here.");
  }
  return actionTable(
    "deliveries-table",
    ["Message", "Event", "Attempts", "Last answer", "Next retry", "State"],
    rows.map((row) => deliveryRow(row, refresh)),
  );
}

function deliveryRow(row, refresh) {
  const last = row.attempts[row.attempts.length - 1];
  const status = row.last_status ? `HTTP ${row.last_status}` : "";
  const next = row.next_attempt_ns ? new Date(row.next_attempt_ns / 1e6) : null;
  const canReplay = row.state === "delivered" || row.state === "failed";
  return h(
    "tr",
    { dataset: { delivery: row.id, message: row.message_id } },
    h(
      "td",
      { "data-label": "Message" },
      h("code", { class: "delivery-id" }, row.message_id),
      h("div", { class: "ln-sub" }, fmtDateTime(new Date(row.created_ns / 1e6), { seconds: true })),
    ),
    h("td", { "data-label": "Event" }, row.event),
    h("td", { "data-label": "Attempts", class: "num" }, attemptsView(row.attempts)),
    h(
      "td",
      { "data-label": "Last answer" },
      status || (last ? "" : "—"),
      row.last_error ? h("div", { class: "ln-sub delivery-error" }, row.last_error) : null,
    ),
    h("td", { "data-label": "Next retry" }, next ? fmtDateTime(next, { seconds: true }) : "—"),
    h("td", { "data-label": "State" }, h("span", { class: ["badge", DELIVERY_BADGES[row.state]] }, row.state)),
    h(
      "td",
      { class: "actions" },
      canReplay
        ? h("button", { type: "button", class: "btn btn-sm", onclick: () => replay(row, refresh) }, "Replay")
        : null,
    ),
  );
}

function attemptsView(attempts) {
  if (!attempts.length) return "0";
  return h(
    "details",
    { class: "attempts" },
    h("summary", {}, String(attempts.length)),
    h(
      "ol",
      {},
      attempts.map((a) =>
        h(
          "li",
          {},
          `${fmtDateTime(new Date(a.at_ns / 1e6), { seconds: true })}: ${a.outcome}`,
          a.status ? ` (HTTP ${a.status})` : "",
          a.error ? ` ${a.error}` : "",
          a.duration_ms != null ? `, ${Math.round(a.duration_ms)} ms` : "",
        ),
      ),
    ),
  );
}

async function replay(row, refresh) {
  try {
    await post(`/v1/alert-deliveries/${encodeURIComponent(row.id)}/replay`, {});
    toast(`Replaying ${row.message_id}`);
    refresh();
  } catch (error) {
    toast(error.detail || String(error), { error: true });
  }
}
