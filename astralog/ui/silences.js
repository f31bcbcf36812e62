// Silences: label matchers (=, !=, and the globs =~, !~) over a time range mute the messages of
// matching alert instances. While the form changes, a debounced preview asks the server which
// instances it would mute now, so nobody silences more (or less) than they meant to. Below, the
// silences in force and those that ended, each ended early with one click. Creating and ending
// need alerts:write; viewers see the lists.

import { get, post } from "./api.js";
import { fmtInput, getZone, onZoneChange, readTime, zoneLabel } from "./timefmt.js";
import {
  actionTable,
  card,
  confirmAndRun,
  errorState,
  fmtDateTime,
  h,
  icon,
  pageHead,
  replace,
  toast,
} from "./dom.js";

const OPS = [
  ["=", "= equals"],
  ["!=", "!= not equal"],
  ["=~", "=~ glob"],
  ["!~", "!~ not glob"],
];
const DURATIONS = [
  [1, "1 h"],
  [2, "2 h"],
  [8, "8 h"],
  [24, "1 day"],
  [168, "1 week"],
];
const PREVIEW_DELAY_MS = 300;
const RELIST_MS = 30_000;
const HOUR_MS = 3_600_000;

export async function mount(main, app) {
  const canWrite = (app.session?.scopes || []).includes("alerts:write");
  const page = h("div", { class: "page" });
  replace(main, page);
  const activeBox = h("div", { class: "card-body table-wrap" });
  const endedBox = h("div", { class: "card-body table-wrap" });
  const lists = { reload: () => loadLists(activeBox, endedBox, canWrite, lists) };
  const form = canWrite ? silenceForm(lists) : null;
  replace(
    page,
    pageHead(
      "Silences",
      "Mute the notifications of matching alert instances for a while. Alerts keep evaluating; every silence is in the audit log.",
    ),
    h(
      "div",
      { class: "stack-lg" },
      form ? form.el : null,
      card({ id: "silences-active-title", title: "Active and upcoming", body: activeBox }),
      card({ id: "silences-ended-title", title: "Ended", lede: "Expired, or ended early.", body: endedBox }),
    ),
  );
  await lists.reload();
  // A silence expires by the clock alone: the lists are sorted again now and then.
  const timer = setInterval(() => lists.reload(), RELIST_MS);
  return {
    unmount() {
      clearInterval(timer);
      if (form) form.stop();
    },
  };
}

// ------------------------------------------------------------------ the form and its preview

function silenceForm(lists) {
  const matchers = h("div", { class: "stack", id: "silence-matchers" });
  const names = h("datalist", { id: "silence-label-names" });
  const starts = timeBox("silence-starts", "now");
  const ends = timeBox("silence-ends", "2026-01-31 14:00");
  const zoneHint = h("p", { class: "field-hint", id: "silence-zone" });
  const zone = followZone([starts, ends], zoneHint);
  const comment = h("input", { class: "input", id: "silence-comment", maxlength: "1000", autocomplete: "off", placeholder: "Maintenance of the db cluster" });
  const error = h("p", { class: "field-error", role: "alert", id: "silence-error" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: "create-silence" }, "Create silence");
  const previewBox = h("div", { class: "silence-preview", id: "silence-preview", "aria-live": "polite" });
  const preview = livePreview(previewBox, () => body());

  function addMatcher(name = "", op = "=", value = "") {
    matchers.append(matcherRow(name, op, value, preview.schedule));
    renumber(matchers);
  }

  function body() {
    const rows = [...matchers.querySelectorAll(".matcher-row")].map((row) => ({
      name: row.querySelector(".matcher-name").value.trim(),
      op: row.querySelector(".matcher-op").value,
      value: row.querySelector(".matcher-value").value,
    }));
    const used = rows.filter((m) => m.name);
    if (!used.length) return { empty: "Add a label matcher to see which alert instances it mutes." };
    const start = starts.value.trim() ? readTime(starts.value) : { value: null };
    if (start.error) return { empty: `Starts: ${start.error}` };
    if (!ends.value.trim()) return { empty: "Choose when the silence ends." };
    const end = readTime(ends.value);
    if (end.error) return { empty: `Ends: ${end.error}` };
    const iso = (read) => (read.date ? read.date.toISOString() : null);
    return { matchers: used, starts_at: iso(start), ends_at: iso(end), comment: comment.value.trim() };
  }

  const durations = DURATIONS.map(([hours, label]) =>
    h(
      "button",
      {
        type: "button",
        class: "btn btn-xs",
        onclick: () => {
          const from = readTime(starts.value).date || new Date();
          ends.value = boxTime(new Date(from.getTime() + hours * HOUR_MS));
          preview.schedule();
        },
      },
      label,
    ),
  );
  const el = h(
    "form",
    { class: "card", id: "silence-form", novalidate: true, "aria-labelledby": "silence-form-title" },
    h(
      "div",
      { class: "card-head" },
      h(
        "div",
        {},
        h("h2", { id: "silence-form-title" }, "New silence"),
        h("p", {}, "An instance is muted when every matcher holds. Labels: alertname, alert_id and the alert's group-by fields. Globs take * ? [...]."),
      ),
    ),
    h(
      "div",
      { class: "card-body silence-layout" },
      h(
        "div",
        { class: "stack" },
        h("fieldset", { class: "field bare" }, h("legend", { class: "field-label" }, "Label matchers"), matchers, names),
        h(
          "div",
          {},
          h(
            "button",
            { type: "button", class: "btn btn-sm", id: "add-matcher", onclick: () => { addMatcher(); preview.schedule(); } },
            icon("plus", "icon-sm"),
            "Add matcher",
          ),
        ),
        h(
          "div",
          { class: "form-grid" },
          h("div", { class: "field" }, h("label", { for: "silence-starts" }, "Starts"), starts, h("p", { class: "field-hint" }, "Empty: now.")),
          h("div", { class: "field" }, h("label", { for: "silence-ends" }, "Ends"), ends, h("div", { class: "row", role: "group", "aria-label": "Ends after" }, durations)),
        ),
        zoneHint,
        h("div", { class: "field" }, h("label", { for: "silence-comment" }, "Comment"), comment),
        error,
        h("div", { class: "form-actions" }, submit),
      ),
      h("div", { class: "stack" }, h("h3", { class: "field-label" }, "Would mute now"), previewBox),
    ),
  );
  el.addEventListener("input", () => preview.schedule());
  el.addEventListener("change", () => preview.schedule());
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const sent = body();
    if (sent.empty) {
      error.textContent = sent.empty;
      return;
    }
    submit.disabled = true;
    try {
      await post("/v1/silences", sent);
      toast(`Silence created: ${sent.matchers.map(matcherText).join(", ")}`);
      replace(matchers);
      addMatcher();
      starts.value = "";
      comment.value = "";
      ends.value = boxTime(new Date(Date.now() + 2 * HOUR_MS));
      preview.schedule();
      lists.reload();
    } catch (err) {
      error.textContent = err.detail || String(err);
    } finally {
      submit.disabled = false;
    }
  });

  addMatcher();
  ends.value = boxTime(new Date(Date.now() + 2 * HOUR_MS));
  fillLabelNames(names);
  preview.schedule();
  return {
    el,
    stop() {
      preview.stop();
      zone.stop();
    },
  };
}

function matcherRow(name, op, value, changed) {
  const row = h(
    "div",
    { class: "matcher-row" },
    h("input", { class: "input input-mono matcher-name", value: name, list: "silence-label-names", autocomplete: "off", placeholder: "label, e.g. service", "aria-label": "Label" }),
    h("select", { class: "select matcher-op", "aria-label": "Operator" }, OPS.map(([v, text]) => h("option", { value: v, selected: v === op }, text))),
    h("input", { class: "input input-mono matcher-value", value, autocomplete: "off", placeholder: "value or glob", "aria-label": "Value" }),
  );
  row.append(
    h(
      "button",
      {
        type: "button",
        class: "icon-btn",
        "aria-label": "Remove matcher",
        onclick: () => {
          const list = row.parentElement;
          row.remove();
          renumber(list);
          changed();
        },
      },
      icon("x"),
    ),
  );
  return row;
}

// Stable ids per position, so a label and a test can name "the second matcher's value".
function renumber(list) {
  [...list.children].forEach((row, i) => {
    row.querySelector(".matcher-name").id = `silence-name-${i}`;
    row.querySelector(".matcher-op").id = `silence-op-${i}`;
    row.querySelector(".matcher-value").id = `silence-value-${i}`;
  });
}

// Label names to suggest: the ones every instance has, and the alerts' group-by fields.
async function fillLabelNames(datalist) {
  const names = new Set(["alertname", "alert_id"]);
  try {
    for (const alert of await get("/v1/alerts")) {
      for (const field of alert.spec?.group_by || []) names.add(field);
    }
  } catch {
    /* suggestions only */
  }
  replace(datalist, [...names].map((n) => h("option", { value: n })));
}

// Asks /v1/silences/preview once the form has been still for a moment; a newer form state
// aborts the older request, and an answer that arrives late is dropped.
function livePreview(box, read) {
  let timer = null;
  let inflight = null;
  let seq = 0;
  async function run() {
    const mine = ++seq;
    if (inflight) inflight.abort();
    const sent = read();
    if (sent.empty) {
      replace(box, h("p", { class: "muted" }, sent.empty));
      return;
    }
    inflight = new AbortController();
    box.setAttribute("aria-busy", "true");
    try {
      const result = await post("/v1/silences/preview", sent, { signal: inflight.signal });
      if (mine === seq) replace(box, previewView(result));
    } catch (error) {
      if (error.name === "AbortError" || mine !== seq) return;
      replace(box, h("p", { class: "field-error", role: "alert" }, error.detail || String(error)));
    } finally {
      if (mine === seq) box.removeAttribute("aria-busy");
    }
  }
  return {
    schedule() {
      clearTimeout(timer);
      timer = setTimeout(run, PREVIEW_DELAY_MS);
    },
    stop() {
      clearTimeout(timer);
      if (inflight) inflight.abort();
    },
  };
}

function previewView(result) {
  if (!result.count) {
    return h("p", { class: "muted", id: "silence-preview-count" }, "No alert instance matches now. The silence still mutes any that match while it lasts.");
  }
  const noun = result.count === 1 ? "instance" : "instances";
  return h(
    "div",
    { class: "stack" },
    h("p", { id: "silence-preview-count" }, h("strong", {}, `${result.count} ${noun}`), " would be muted"),
    h(
      "ul",
      { class: "silence-instances", id: "silence-preview-list" },
      result.instances.map((i) =>
        h(
          "li",
          { dataset: { alert: i.alert_id } },
          h("div", { class: "row" }, h("strong", {}, i.alert), stateBadge(i.state)),
          labelChips(i.labels),
        ),
      ),
    ),
  );
}

function stateBadge(state) {
  const cls = { firing: "badge-danger", pending: "badge-warn", normal: "badge-ok" }[state];
  return h("span", { class: ["badge", cls] }, state);
}

function labelChips(labels) {
  const shown = Object.entries(labels).filter(([name]) => name !== "alert_id");
  return h(
    "div",
    { class: "chips" },
    shown.map(([name, value]) => h("span", { class: "chip mono" }, `${name}=${value}`)),
  );
}

// ------------------------------------------------------------------ the lists

function phase(silence, now = Date.now()) {
  if (silence.ended_at) return "ended";
  if (Date.parse(silence.ends_at) <= now) return "expired";
  if (Date.parse(silence.starts_at) > now) return "upcoming";
  return "active";
}

async function loadLists(activeBox, endedBox, canWrite, lists) {
  let silences;
  try {
    silences = await get("/v1/silences");
  } catch (error) {
    replace(activeBox, errorState(error, lists.reload));
    replace(endedBox);
    return;
  }
  const live = silences.filter((s) => ["active", "upcoming"].includes(phase(s)));
  const done = silences.filter((s) => !live.includes(s)).reverse();
  const columns = ["Matchers", "From", "Until", "State", "Comment"];
  replace(
    activeBox,
    live.length
      ? actionTable("silences-active", columns, live.map((s) => silenceRow(s, canWrite, lists)))
      : h("p", { class: "muted" }, "No silence is in force: every alert notifies."),
  );
  replace(
    endedBox,
    done.length
      ? actionTable("silences-ended", columns, done.map((s) => silenceRow(s, false, lists)))
      : h("p", { class: "muted" }, "None yet."),
  );
}

function matcherText(m) {
  return `${m.name}${m.op}${m.op.includes("~") || m.value ? m.value : '""'}`;
}

function silenceRow(silence, canEnd, lists) {
  const state = phase(silence);
  const badges = { active: "badge-warn", upcoming: "badge-accent", ended: "badge-plain", expired: "badge-plain" };
  const until = silence.ended_at
    ? h("span", {}, fmtDateTime(silence.ended_at), h("div", { class: "ln-sub" }, `ended early (planned ${fmtDateTime(silence.ends_at)})`))
    : fmtDateTime(silence.ends_at);
  return h(
    "tr",
    { dataset: { silence: silence.id } },
    h("td", { "data-label": "Matchers" }, h("div", { class: "chips" }, silence.matchers.map((m) => h("span", { class: "chip mono" }, matcherText(m))))),
    h("td", { "data-label": "From" }, fmtDateTime(silence.starts_at)),
    h("td", { "data-label": "Until" }, until),
    h("td", { "data-label": "State" }, h("span", { class: ["badge", badges[state]] }, state)),
    h("td", { "data-label": "Comment" }, silence.comment || h("span", { class: "muted" }, "—"), h("div", { class: "ln-sub" }, `by ${silence.created_by}`)),
    h(
      "td",
      { class: "actions" },
      canEnd
        ? h(
            "button",
            {
              type: "button",
              class: "btn btn-sm",
              onclick: () =>
                confirmAndRun(
                  {
                    title: "End this silence now?",
                    text: "Matching alert instances notify again from their next change.",
                    confirm: "End silence",
                  },
                  async () => {
                    await post(`/v1/silences/${encodeURIComponent(silence.id)}/end`, {});
                    toast("Silence ended");
                    lists.reload();
                  },
                ),
            },
            "End now",
          )
        : null,
    ),
  );
}

// ------------------------------------------------------------------ times

// Times are typed as in the time picker (timefmt.js): 24-hour "2026-01-31 14:00" in the zone
// chosen there (UTC or local, named under the boxes), or relative ("now+2h"); a browser's
// datetime-local box would follow its locale (12-hour in en-US) and hide the zone.
function timeBox(id, placeholder) {
  return h("input", {
    class: "input mono",
    type: "text",
    id,
    autocomplete: "off",
    spellcheck: "false",
    placeholder,
    "aria-describedby": "silence-zone",
  });
}

// What a box shows for an instant: to the minute, in the chosen zone.
function boxTime(date) {
  return fmtInput(date).slice(0, 16);
}

// The hint names the zone; a switch keeps typed absolute times on the same instants.
function followZone(boxes, hint) {
  let zone = getZone();
  const describe = () => {
    hint.textContent = `Times are 24-hour, ${zone === "utc" ? "in UTC" : `in local time (${zoneLabel()})`}; or relative: now+2h (s, m, h, d, w).`;
  };
  const stop = onZoneChange(() => {
    for (const box of boxes) {
      const read = box.value.trim() && !/^now/i.test(box.value.trim()) ? readTime(box.value, zone) : {};
      if (read.date) box.value = boxTime(read.date);
    }
    zone = getZone();
    describe();
  });
  describe();
  return { stop };
}
