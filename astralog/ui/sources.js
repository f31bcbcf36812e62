// Sources and their ingest keys: create, rotate with a chosen grace period, revoke; a new key is
// shown once. Each source has ready-to-paste shipper snippets.

import { cached, get, invalidate, post, qs } from "./api.js";
import {
  codeBlock,
  confirmDialog,
  copyButton,
  errorState,
  fmtDateTime,
  fmtDuration,
  fmtRelative,
  h,
  icon,
  openDialog,
  replace,
  stateView,
  tabs,
  toast,
} from "./dom.js";
import { snippets } from "./snippets.js";

const STATE_BADGE = {
  active: "badge-ok",
  rotating: "badge-warn",
  rotated: "",
  revoked: "badge-danger",
  expired: "",
};
const GRACE = [
  [0, "Stop at once", "The old key fails immediately."],
  [60, "1 hour", "Time for a quick redeploy."],
  [1440, "24 hours", "The default: a day to roll out."],
  [10080, "7 days", "The longest overlap allowed."],
];

export async function mount(main, app) {
  const page = h("div", { class: "page" });
  replace(main, page);
  let sources = [];
  let keyLoad = 0;
  // Buttons the signed-in role cannot use are hidden (a member reads sources, never writes).
  const can = (scope) => (app.session?.scopes || []).includes(scope);

  async function load({ refresh = false } = {}) {
    try {
      sources = await cached("/v1/sources", { refresh });
    } catch (error) {
      replace(
        page,
        errorState(error, () => load({ refresh: true })),
      );
      return;
    }
    render();
  }

  function selectedId() {
    const wanted = new URLSearchParams(location.search).get("source");
    return sources.some((s) => s.id === wanted) ? wanted : sources[0]?.id;
  }

  function render() {
    const current = sources.find((s) => s.id === selectedId());
    const newButton = h(
      "button",
      { type: "button", class: "btn btn-primary", id: "new-source", hidden: !can("sources:write") },
      icon("plus"),
      "New source",
    );
    newButton.addEventListener("click", createSource);
    const nav = h(
      "nav",
      { class: "card list-nav", "aria-label": "Sources" },
      sources.map((source) =>
        h(
          "a",
          {
            href: `/sources${qs({ source: source.id })}`,
            "data-nav": "",
            "aria-current": source.id === current?.id ? "page" : null,
          },
          h("span", { class: "ln-title" }, source.name),
          h("span", { class: "ln-sub" }, source.id),
        ),
      ),
    );
    replace(
      page,
      h(
        "div",
        { class: "page-head" },
        h(
          "div",
          {},
          h("h1", {}, "Sources & keys"),
          h(
            "p",
            {},
            "A source is one stream of logs. Each shipper sends with an ingest key of its source; a key can do nothing else.",
          ),
        ),
        newButton,
      ),
      sources.length
        ? h("div", { class: "split" }, nav, current ? detail(current) : null)
        : stateView({
            iconName: "database",
            title: "No sources yet",
            text: "Create a source, then give its key to your shipper.",
            actions: [],
          }),
    );
  }

  function detail(source) {
    const keysBody = h("div", { class: "card-body" }, h("span", { class: "skeleton" }));
    const newKey = h(
      "button",
      { type: "button", class: "btn btn-sm", id: "new-key", hidden: !can("keys:write") },
      icon("key", "icon-sm"),
      "New key",
    );
    newKey.addEventListener("click", () => issueKey(source, keysBody));
    const examples = snippets();
    const snippetTabs = tabs(
      examples.map((s) => ({
        label: s.label,
        content: () =>
          h(
            "div",
            { class: "stack" },
            h("p", { class: "field-hint" }, s.note),
            codeBlock(s.code, {
              label: `${s.label} configuration`,
              what: `${s.label} snippet copied`,
            }),
          ),
      })),
      { label: "Shipper" },
    );
    const section = h(
      "div",
      { class: "stack-lg" },
      h(
        "section",
        { class: "card", "aria-labelledby": "source-title" },
        h(
          "div",
          { class: "card-body stack" },
          h(
            "div",
            { class: "row" },
            h("h2", { id: "source-title" }, source.name),
            source.retention_days
              ? h("span", { class: "badge badge-plain" }, `${source.retention_days} days retention`)
              : null,
          ),
          source.description ? h("p", { class: "muted" }, source.description) : null,
          h(
            "dl",
            { class: "kv" },
            h("dt", {}, "Source id"),
            h(
              "dd",
              { class: "row" },
              h("code", {}, source.id),
              copyButton(source.id, { label: "Copy", what: "Source id copied", cls: "btn btn-xs" }),
            ),
            h("dt", {}, "Created"),
            h("dd", {}, fmtDateTime(source.created_at)),
            h("dt", {}, "Search it"),
            h(
              "dd",
              {},
              h(
                "a",
                { href: `/${qs({ sources: source.id })}`, "data-nav": "" },
                `Events of ${source.name} →`,
              ),
            ),
          ),
        ),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "keys-title" },
        h(
          "div",
          { class: "card-head" },
          h(
            "div",
            {},
            h("h2", { id: "keys-title" }, "Ingest keys"),
            h(
              "p",
              {},
              "Shown once when created. Rotate with an overlap so shippers can switch without losing events.",
            ),
          ),
          newKey,
        ),
        keysBody,
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "ship-title" },
        h(
          "div",
          { class: "card-head" },
          h(
            "div",
            {},
            h("h2", { id: "ship-title" }, "Send logs"),
            h(
              "p",
              {},
              `Point your shipper at ${location.origin}. Put the key in the ASTRALOG_INGEST_KEY environment variable.`,
            ),
          ),
        ),
        h("div", { class: "card-body" }, snippetTabs.el),
      ),
    );
    loadKeys(source, keysBody);
    return section;
  }

  async function loadKeys(source, box) {
    const seq = ++keyLoad;
    try {
      const keys = await get(`/v1/sources/${encodeURIComponent(source.id)}/keys`);
      if (seq !== keyLoad) return;
      renderKeys(source, box, keys);
    } catch (error) {
      if (seq === keyLoad)
        replace(
          box,
          errorState(error, () => loadKeys(source, box)),
        );
    }
  }

  function renderKeys(source, box, keys) {
    if (!keys.length) {
      replace(
        box,
        h("p", { class: "muted" }, "No keys yet. Create one and give it to your shipper."),
      );
      return;
    }
    const order = { active: 0, rotating: 1, rotated: 2, expired: 3, revoked: 4 };
    keys.sort((a, b) => order[a.state] - order[b.state] || (a.created_at < b.created_at ? 1 : -1));
    const rows = keys.map((key) => {
      const live = key.state === "active" || key.state === "rotating";
      const rotate = h(
        "button",
        {
          type: "button",
          class: "btn btn-xs",
          "aria-label": `Rotate key ${key.prefix}`,
          hidden: !can("keys:write"),
        },
        "Rotate",
      );
      const revoke = h(
        "button",
        {
          type: "button",
          class: "btn btn-xs btn-danger",
          "aria-label": `Revoke key ${key.prefix}`,
          hidden: !can("keys:write"),
        },
        "Revoke",
      );
      rotate.addEventListener("click", () => rotateKey(source, key, box));
      revoke.addEventListener("click", () => revokeKey(source, key, box));
      const until = key.revoked_at
        ? `revoked ${fmtRelative(key.revoked_at)}`
        : key.valid_until
          ? fmtDateTime(key.valid_until)
          : "—";
      return h(
        "tr",
        { dataset: { key: key.id, state: key.state } },
        h("td", { "data-label": "Key" }, h("code", {}, `${key.prefix}…`)),
        h(
          "td",
          { "data-label": "State" },
          h("span", { class: ["badge", STATE_BADGE[key.state]] }, key.state),
        ),
        h(
          "td",
          { "data-label": "Created", class: "nowrap", title: key.created_at },
          fmtDateTime(key.created_at),
        ),
        h("td", { "data-label": "Valid until" }, until),
        h(
          "td",
          { "data-label": "Last used" },
          key.last_used_at ? fmtRelative(key.last_used_at) : "—",
        ),
        h("td", { class: "actions" }, key.state === "active" ? rotate : null, live ? revoke : null),
      );
    });
    replace(
      box,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table responsive", id: "keys-table" },
          h("caption", { class: "sr-only" }, `Ingest keys of ${source.name}`),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Key", "State", "Created", "Valid until", "Last used"].map((t) =>
                h("th", { scope: "col" }, t),
              ),
              h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
            ),
          ),
          h("tbody", {}, rows),
        ),
      ),
    );
  }

  // ---------------------------------------------------------------- actions
  function createSource() {
    const name = h("input", {
      class: "input",
      id: "source-name",
      name: "name",
      required: true,
      maxlength: "100",
      autocomplete: "off",
      placeholder: "checkout-api",
    });
    const description = h("input", {
      class: "input",
      id: "source-desc",
      name: "description",
      maxlength: "500",
      autocomplete: "off",
      placeholder: "Production checkout service, eu-west-1",
    });
    const error = h("p", { class: "field-error", role: "alert" });
    const submit = h(
      "button",
      { type: "submit", class: "btn btn-primary", form: "source-form" },
      "Create source",
    );
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const form = h(
      "form",
      { id: "source-form", class: "stack" },
      h(
        "div",
        { class: "field" },
        h("label", { for: "source-name" }, "Name"),
        name,
        h(
          "p",
          { class: "field-hint" },
          "Letters, digits, dots and dashes work best; it shows up in search.",
        ),
      ),
      h(
        "div",
        { class: "field" },
        h(
          "label",
          { for: "source-desc" },
          "Description ",
          h("span", { class: "muted" }, "(optional)"),
        ),
        description,
      ),
      error,
    );
    const { close } = openDialog({
      title: "New source",
      description: "A source groups the events of one service or shipper.",
      body: [form],
      actions: [cancel, submit],
    });
    cancel.addEventListener("click", () => close());
    name.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!name.value.trim()) {
        error.textContent = "Give the source a name.";
        name.focus();
        return;
      }
      submit.disabled = true;
      try {
        const created = await post("/v1/sources", {
          name: name.value.trim(),
          description: description.value.trim(),
        });
        close();
        invalidate("/v1/sources");
        toast(`Source ${created.name} created`);
        history.pushState(null, "", `/sources${qs({ source: created.id })}`);
        await load({ refresh: true });
        const issue = await confirmDialog({
          title: "Create an ingest key now?",
          text: `Shippers need a key of ${created.name} to send events.`,
          confirm: "Create key",
        });
        if (issue) document.getElementById("new-key")?.click();
      } catch (err) {
        error.textContent = err.detail || String(err);
        submit.disabled = false;
      }
    });
  }

  async function issueKey(source, box) {
    try {
      const issued = await post(`/v1/sources/${encodeURIComponent(source.id)}/keys`, {});
      revealKey(issued.key, { title: "New ingest key", source });
      loadKeys(source, box);
    } catch (error) {
      toast(error.detail || String(error), { error: true });
    }
  }

  function rotateKey(source, key, box) {
    const name = "grace";
    const cards = GRACE.map(([minutes, label, hint]) =>
      h(
        "label",
        { class: "radio-card" },
        h("input", { type: "radio", name, value: String(minutes), checked: minutes === 1440 }),
        h("span", {}, h("b", {}, label), h("small", {}, hint)),
      ),
    );
    const custom = h("input", {
      class: "input days-input",
      type: "number",
      min: "0",
      max: "10080",
      step: "1",
      id: "grace-custom",
      placeholder: "minutes",
      "aria-label": "Custom grace period in minutes",
    });
    const error = h("p", { class: "field-error", role: "alert" });
    const submit = h(
      "button",
      { type: "submit", class: "btn btn-primary", form: "rotate-form" },
      "Rotate key",
    );
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const form = h(
      "form",
      { id: "rotate-form", class: "stack" },
      h(
        "fieldset",
        { class: "stack" },
        h("legend", { class: "field-label" }, `How long should ${key.prefix}… keep working?`),
        h("div", { class: "radio-cards" }, cards),
        h(
          "div",
          { class: "row" },
          h("label", { for: "grace-custom", class: "field-hint" }, "Or a custom overlap:"),
          custom,
          h("span", { class: "field-hint" }, "minutes (0–10080)"),
        ),
      ),
      error,
    );
    form.querySelector("fieldset").classList.add("bare");
    const { close } = openDialog({
      title: "Rotate ingest key",
      description:
        "A new key is issued now. The old one keeps working for the overlap you choose, then stops.",
      body: [form],
      actions: [cancel, submit],
    });
    cancel.addEventListener("click", () => close());
    custom.addEventListener("input", () => {
      form.querySelectorAll(`input[name=${name}]`).forEach((r) => (r.checked = false));
    });
    form.addEventListener("change", (event) => {
      if (event.target.name === name) custom.value = "";
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const picked = form.querySelector(`input[name=${name}]:checked`);
      const minutes =
        custom.value !== "" ? Number(custom.value) : picked ? Number(picked.value) : NaN;
      if (!Number.isInteger(minutes) || minutes < 0 || minutes > 10080) {
        error.textContent = "Choose an overlap between 0 minutes and 7 days (10080 minutes).";
        return;
      }
      submit.disabled = true;
      try {
        const issued = await post(
          `/v1/sources/${encodeURIComponent(source.id)}/keys/${encodeURIComponent(key.id)}/rotate`,
          { grace_minutes: minutes },
        );
        close();
        revealKey(issued.key, {
          title: "Key rotated",
          source,
          note: minutes
            ? `The old key ${key.prefix}… keeps working for ${fmtDuration(minutes)}.`
            : `The old key ${key.prefix}… has stopped working.`,
        });
        loadKeys(source, box);
      } catch (err) {
        error.textContent = err.detail || String(err);
        submit.disabled = false;
      }
    });
  }

  async function revokeKey(source, key, box) {
    const ok = await confirmDialog({
      title: `Revoke ${key.prefix}…?`,
      text: "Shippers using this key get 401 from their next request on. This cannot be undone; issue a new key to send again.",
      confirm: "Revoke key",
      danger: true,
    });
    if (!ok) return;
    try {
      await post(
        `/v1/sources/${encodeURIComponent(source.id)}/keys/${encodeURIComponent(key.id)}/revoke`,
        {},
      );
      toast(`Key ${key.prefix}… revoked`);
      loadKeys(source, box);
    } catch (error) {
      toast(error.detail || String(error), { error: true });
    }
  }

  await load();
  return {
    onUrlChange() {
      render();
    },
  };
}

// The one time a key is visible: a read-only field, a copy button, and a warning.
export function revealKey(key, { title, source, note }) {
  const field = h("input", {
    class: "input",
    id: "revealed-key",
    readonly: true,
    value: key,
    "aria-label": "The new ingest key",
    spellcheck: "false",
  });
  const done = h("button", { type: "button", class: "btn btn-primary" }, "I have stored it");
  const { close } = openDialog({
    title,
    description: source ? `For source ${source.name}.` : undefined,
    body: [
      h(
        "div",
        { class: "callout callout-warn", role: "note" },
        icon("alert"),
        h(
          "span",
          {},
          h("strong", {}, "Copy this key now. "),
          "It is shown only once: Astralog keeps a hash, not the key. If you lose it, rotate the key.",
        ),
      ),
      h(
        "div",
        { class: "secret-box" },
        field,
        copyButton(key, { label: "Copy", what: "Key copied", cls: "btn" }),
      ),
      note ? h("p", { class: "field-hint" }, note) : null,
      h(
        "p",
        { class: "field-hint" },
        "Give it to your shipper as ",
        h("code", {}, "ASTRALOG_INGEST_KEY"),
        "; the snippets on this page read it from there.",
      ),
    ],
    actions: [done],
  });
  done.addEventListener("click", () => close());
  field.focus();
  field.select();
}
