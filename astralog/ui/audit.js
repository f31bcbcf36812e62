// The audit trail: the control-plane event log itself, its hash chain verified by the server.

import { get, qs } from "./api.js";
import { announce, errorState, fmtDateTime, fmtNumber, h, icon, replace } from "./dom.js";

const PAGE = 1000;
const MAX_EVENTS = 20000;

// "IngestKeyRotated" -> "Ingest key rotated" (the action filter's labels; records carry theirs)
function humanize(type) {
  const words = type.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export async function mount(main, app) {
  const verifyBox = h(
    "section",
    { class: "card card-body", "aria-label": "Chain verification" },
    h("span", { class: "skeleton" }),
  );
  const filter = h("input", {
    class: "input",
    type: "search",
    id: "audit-filter",
    placeholder: "Filter by action, actor, address or id",
    autocomplete: "off",
  });
  const typeSelect = h(
    "select",
    { class: "select", id: "audit-type", "aria-label": "Action" },
    h("option", { value: "" }, "All actions"),
  );
  const count = h("p", { class: "field-hint", id: "audit-count", "aria-live": "polite" });
  const tableBox = h(
    "div",
    { class: "table-wrap" },
    h("div", { class: "card-body" }, h("span", { class: "skeleton" })),
  );
  const exportLink = h(
    "a",
    {
      class: "btn",
      href: `/v1/audit${qs({ format: "ndjson" })}`,
      download: "astralog-audit.ndjson",
    },
    icon("download", "icon-sm"),
    "Export NDJSON",
  );
  let events = [];

  replace(
    main,
    h(
      "div",
      { class: "page" },
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          {},
          h("h1", {}, "Audit"),
          h(
            "p",
            {},
            "Every change to sources, keys, tokens, members, storage and retention, every sign-in and role change, and every log read: who, what, when and from where. The log is hash-chained and signed, so an edit or a gap shows.",
          ),
        ),
        exportLink,
      ),
      h(
        "div",
        { class: "stack-lg" },
        verifyBox,
        h(
          "section",
          { class: "card", "aria-labelledby": "audit-title" },
          h(
            "div",
            { class: "card-head" },
            h("h2", { id: "audit-title" }, "Events"),
            h(
              "div",
              { class: "row" },
              h("label", { for: "audit-filter", class: "sr-only" }, "Filter events"),
              filter,
              typeSelect,
            ),
          ),
          h("div", { class: "card-body" }, count),
          tableBox,
        ),
      ),
    ),
  );

  async function verify() {
    replace(
      verifyBox,
      h("div", { class: "verify" }, h("span", { class: "muted" }, "Verifying the hash chain…")),
    );
    try {
      const report = await get("/v1/audit/verify");
      const again = h(
        "button",
        { type: "button", class: "btn btn-sm" },
        icon("refresh", "icon-sm"),
        "Verify again",
      );
      again.addEventListener("click", verify);
      const ok = report.ok;
      replace(
        verifyBox,
        h(
          "div",
          {
            class: ["verify", ok ? "ok" : "bad"],
            role: ok ? "status" : "alert",
            id: "audit-verify",
          },
          h("div", { class: "vicon" }, icon(ok ? "shield" : "shieldX")),
          h(
            "div",
            {},
            h("h2", {}, ok ? "Chain intact" : "Chain broken"),
            h(
              "p",
              {},
              ok
                ? `${fmtNumber(report.records)} records, ${fmtNumber(report.checkpoints)} signed checkpoint${report.checkpoints === 1 ? "" : "s"}, head #${report.head_seq}. Every hash and signature checks out.`
                : `The first bad record is #${report.first_bad_seq}. ${(report.problems || []).join(" ")}`,
            ),
          ),
          h("span", { class: "spacer" }),
          again,
        ),
      );
    } catch (error) {
      replace(verifyBox, errorState(error, verify));
    }
  }

  async function loadEvents() {
    events = [];
    let after = 0;
    try {
      while (events.length < MAX_EVENTS) {
        const pageData = await get(`/v1/audit${qs({ after, limit: PAGE })}`);
        events.push(...pageData.events);
        if (pageData.next_after === null || pageData.next_after === undefined) break;
        after = pageData.next_after;
      }
    } catch (error) {
      replace(tableBox, errorState(error, loadEvents));
      return;
    }
    events.reverse();
    const types = [...new Set(events.map((e) => e.type))].sort();
    replace(
      typeSelect,
      h("option", { value: "" }, "All actions"),
      types.map((t) => h("option", { value: t }, humanize(t))),
    );
    renderTable();
  }

  function matches(event, text, type) {
    if (type && event.type !== type) return false;
    if (!text) return true;
    const d = event.display;
    const haystack = [
      event.type,
      d.action,
      d.summary,
      d.actor.name,
      d.actor.detail,
      event.actor,
      event.client,
      d.target.name,
      event.aggregate_id,
      `#${event.seq}`,
      String(event.seq),
    ]
      .join(" ")
      .toLowerCase();
    return text.split(/\s+/).every((word) => haystack.includes(word));
  }

  function renderTable() {
    const text = filter.value.trim().toLowerCase();
    const shown = events.filter((e) => matches(e, text, typeSelect.value));
    count.textContent = `${fmtNumber(shown.length)} of ${fmtNumber(events.length)} events, newest first${events.length >= MAX_EVENTS ? " (the most recent are shown; export for all)" : ""}`;
    if (!shown.length) {
      replace(
        tableBox,
        h(
          "p",
          { class: "card-body muted" },
          events.length ? "No event matches the filter." : "No events yet.",
        ),
      );
      return;
    }
    const rows = shown.slice(0, 1000).flatMap(eventRows);
    replace(
      tableBox,
      h(
        "table",
        { class: "table responsive audit-table", id: "audit-table" },
        h("caption", { class: "sr-only" }, "Audit events, newest first"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Details")),
            ["#", "Time", "Action", "Actor", "Client address", "Target"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
    announce(`${shown.length} audit events shown`);
  }

  filter.addEventListener("input", renderTable);
  typeSelect.addEventListener("change", renderTable);
  app.setTitle("Audit");
  verify();
  await loadEvents();
  return {};
}

// One record: its row, and the detail row its toggle opens.
function eventRows(event) {
  const d = event.display;
  const detailId = `audit-detail-${event.seq}`;
  const toggle = h(
    "button",
    {
      type: "button",
      class: "icon-btn icon-btn-sm",
      "aria-expanded": "false",
      "aria-controls": detailId,
      "aria-label": `Details of record ${event.seq}`,
    },
    icon("chevron", "icon-sm chev"),
  );
  const detailRow = h(
    "tr",
    { class: "payload", id: detailId, hidden: true },
    h("td", { colspan: "7" }, detail(event)),
  );
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    detailRow.hidden = !open;
  });
  const row = h(
    "tr",
    { dataset: { seq: String(event.seq), type: event.type } },
    h("td", { class: "expand" }, toggle),
    h("td", { class: "seq num muted", "data-label": "#" }, String(event.seq)),
    h("td", { class: "time", title: event.at }, fmtDateTime(event.at, { seconds: true })),
    h(
      "td",
      { class: "action" },
      d.action,
      d.summary ? h("span", { class: "audit-sub" }, d.summary) : null,
    ),
    h("td", { class: "actor", "data-label": "Actor" }, named(d.actor, event.actor)),
    h("td", { class: "client", "data-label": "Client" }, h("code", {}, event.client)),
    h("td", { class: "target", "data-label": "Target" }, named(d.target, event.aggregate_id)),
  );
  return [row, detailRow];
}

// A name with its detail line; the id it stands for shows on hover (and in the detail).
function named(thing, id) {
  return h(
    "span",
    { class: "audit-name", title: id, dataset: { kind: thing.kind } },
    h("span", { class: "audit-main" }, thing.name),
    thing.detail ? h("span", { class: "audit-sub" }, thing.detail) : null,
  );
}

function detail(event) {
  const d = event.display;
  return h(
    "div",
    { class: "audit-detail" },
    d.changes.length ? changesList(d.changes) : null,
    d.fields.length ? dl("audit-fields", d.fields.map((f) => [f.label, f.value])) : null,
    !d.changes.length && !d.fields.length && !d.summary
      ? h("p", { class: "muted" }, "Nothing more was recorded.")
      : null,
    h(
      "details",
      { class: "audit-record" },
      h("summary", {}, "Record in the chain"),
      dl("audit-fields", [
        [chainLabel(event.chain), `#${event.seq}`],
        ["Actor id", h("code", {}, event.actor)],
        ["Target id", h("code", {}, event.aggregate_id)],
        ["Recorded at", h("code", {}, event.at)],
        ["Hash", h("code", { class: "audit-hash" }, event.hash)],
        ["Previous hash", h("code", { class: "audit-hash" }, event.prev_hash)],
      ]),
    ),
  );
}

// An org's records are numbered in its own chain; the operator reads the global one.
function chainLabel(chain) {
  return chain === "org" ? "Record (this org's chain)" : "Sequence (global chain)";
}

// Before → after per setting; the arrow is read out as "from … to …".
function changesList(changes) {
  return h(
    "dl",
    { class: "audit-fields audit-changes", "aria-label": "What changed" },
    changes.map((c) =>
      h(
        "div",
        { dataset: { field: c.field } },
        h("dt", {}, c.label),
        h(
          "dd",
          {},
          h("span", { class: "sr-only" }, "from "),
          h("span", { class: "before" }, c.before),
          h("span", { class: "arrow", "aria-hidden": "true" }, " → "),
          h("span", { class: "sr-only" }, " to "),
          h("span", { class: "after" }, c.after),
        ),
      ),
    ),
  );
}

function dl(cls, pairs) {
  return h(
    "dl",
    { class: cls },
    pairs.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
  );
}
