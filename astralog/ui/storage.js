// Bring your own storage: S3-compatible buckets and ClickHouse. Secrets are write-only: the form
// says whether one is set and lets you replace it, never shows it.

import { get, post, put } from "./api.js";
import {
  codeBlock,
  confirmDialog,
  copyButton,
  errorState,
  fmtDateTime,
  fmtRelative,
  h,
  icon,
  openDialog,
  replace,
  stateView,
  toast,
} from "./dom.js";

const KINDS = {
  s3: {
    label: "S3-compatible bucket",
    hint: "AWS S3, Cloudflare R2, GCS (S3 API), MinIO",
    fields: [
      {
        name: "endpoint_url",
        label: "Endpoint URL",
        placeholder: "https://s3.eu-west-1.amazonaws.com",
        hint: "Leave empty for AWS S3. R2: https://<account>.r2.cloudflarestorage.com",
        span: 2,
      },
      {
        name: "region",
        label: "Region",
        placeholder: "us-east-1",
        hint: "'auto' for Cloudflare R2 and GCS.",
      },
      { name: "bucket", label: "Bucket", placeholder: "acme-logs", required: true },
      {
        name: "prefix",
        label: "Prefix",
        placeholder: "astralog",
        hint: "Objects go under <prefix>/org=…/source=…/dt=…/hour=…/",
      },
      {
        name: "addressing_style",
        label: "Addressing style",
        options: [
          ["auto", "Auto"],
          ["virtual", "Virtual host (bucket.host)"],
          ["path", "Path (host/bucket)"],
        ],
      },
      {
        name: "credentials",
        label: "Credentials",
        span: 2,
        options: [
          ["static", "Access key and secret (stored encrypted)"],
          ["assume_role", "Assume a role in your account (cross-account, with an external id)"],
          ["default_chain", "This server's own credentials (self-hosted installs only)"],
        ],
      },
      {
        name: "access_key_id",
        label: "Access key id",
        secret: true,
        when: { credentials: "static" },
      },
      {
        name: "secret_access_key",
        label: "Secret access key",
        secret: true,
        when: { credentials: "static" },
      },
      {
        name: "role_arn",
        label: "Role ARN",
        placeholder: "arn:aws:iam::123456789012:role/astralog-writer",
        hint: "Astralog generates the external id; the policy dialog shows the trust policy to attach.",
        when: { credentials: "assume_role" },
        span: 2,
      },
      {
        name: "sse",
        label: "Server-side encryption",
        options: [
          ["none", "None (bucket default)"],
          ["AES256", "SSE-S3 (AES256)"],
          ["aws:kms", "SSE-KMS"],
        ],
      },
      {
        name: "kms_key_id",
        label: "KMS key id",
        placeholder: "arn:aws:kms:…",
        when: { sse: "aws:kms" },
      },
    ],
    summary: (c) =>
      `s3://${c.bucket || "?"}/${c.prefix ? `${c.prefix}/` : ""}${c.endpoint_url ? ` @ ${c.endpoint_url}` : ""}`,
  },
  clickhouse: {
    label: "ClickHouse",
    hint: "Your server or cluster, over HTTP(S)",
    fields: [
      {
        name: "host",
        label: "Host",
        placeholder: "clickhouse.internal.example.com",
        required: true,
      },
      { name: "port", label: "Port", placeholder: "8443 with TLS, 8123 without", type: "number" },
      { name: "user", label: "User", placeholder: "default" },
      { name: "password", label: "Password", secret: true },
      { name: "database", label: "Database", placeholder: "astralog", hint: "Created if missing." },
      {
        name: "table",
        label: "Table",
        placeholder: "otel_logs",
        hint: "Created with the otel_logs schema if missing.",
      },
      { name: "secure", label: "Use TLS (HTTPS)", type: "checkbox" },
      { name: "verify", label: "Verify the server certificate", type: "checkbox" },
      {
        name: "ca_cert",
        label: "CA certificate (PEM)",
        type: "textarea",
        span: 2,
        placeholder: "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----",
        hint: "With TLS: the CA your server's certificate chains to, as PEM text. Empty: the system CAs.",
      },
    ],
    summary: (c) =>
      `${c.secure ? "https" : "http"}://${c.host || "?"}${c.port ? `:${c.port}` : ""} · ${c.database || "astralog"}.${c.table || "otel_logs"}`,
  },
};
const DEFAULTS = {
  s3: {
    addressing_style: "auto",
    credentials: "static",
    sse: "none",
    prefix: "astralog",
    region: "us-east-1",
  },
  clickhouse: {
    secure: true,
    verify: true,
    database: "astralog",
    table: "otel_logs",
    user: "default",
  },
};

export async function mount(main) {
  const page = h("div", { class: "page" });
  replace(main, page);
  let connectors = [];
  let status = null; // where new logs go now and whether writing there works
  const results = new Map(); // connector id -> last test result

  async function load() {
    try {
      [connectors, status] = await Promise.all([
        get("/v1/connectors"),
        get("/v1/connectors/status"),
      ]);
    } catch (error) {
      replace(page, head(), errorState(error, load));
      return;
    }
    render();
  }

  function head() {
    const add = h(
      "button",
      { type: "button", class: "btn btn-primary", id: "add-storage" },
      icon("plus"),
      "Add storage",
    );
    add.addEventListener("click", () => editor(null));
    return h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Storage"),
        h(
          "p",
          {},
          "Where your logs are written. Bring your own bucket or ClickHouse: the data stays in your account, in open formats.",
        ),
      ),
      add,
    );
  }

  function boundary() {
    return h(
      "section",
      { class: "card", "aria-labelledby": "boundary-title" },
      h("div", { class: "card-head" }, h("h2", { id: "boundary-title" }, "Data boundary")),
      h(
        "div",
        { class: "card-body boundary" },
        h(
          "div",
          {},
          h("b", {}, "Your storage holds the logs"),
          "Parquet (zstd) in Hive-style partitions, or rows in your ClickHouse table. Any engine can read them without Astralog.",
        ),
        h(
          "div",
          {},
          h("b", {}, "Astralog keeps only a buffer"),
          "Events wait in a local write-ahead log until they are committed to your storage, then the log segment is deleted.",
        ),
        h(
          "div",
          {},
          h("b", {}, "Secrets are write-only"),
          "Encrypted with AES-256-GCM, bound to your org and connector. No API returns them; replace them any time.",
        ),
      ),
    );
  }

  function stateBadge() {
    return status?.state === "failing"
      ? h("span", { class: "badge badge-danger" }, "failing")
      : h("span", { class: "badge badge-ok" }, "active");
  }

  function failureNote() {
    const failure = status?.state === "failing" ? status.failure : null;
    if (!failure) return null;
    const tries = `${failure.attempts} attempt${failure.attempts === 1 ? "" : "s"}`;
    return h(
      "div",
      { class: "callout callout-danger", role: "alert", id: "destination-failure" },
      icon("alert"),
      h(
        "span",
        {},
        h("b", {}, `Writes are failing since ${fmtRelative(failure.since)} (${tries}). `),
        `Last error: ${failure.error}: ${failure.message}. `,
        "New events wait safely in the write-ahead log and are retried.",
      ),
    );
  }

  function render() {
    const active = connectors.find((c) => c.active);
    const destination = h(
      "section",
      { class: "card", "aria-labelledby": "dest-title" },
      h("div", { class: "card-head" }, h("h2", { id: "dest-title" }, "Where new logs go")),
      h(
        "div",
        { class: "card-body destination" },
        h(
          "div",
          { class: "dest-icon" },
          icon(active?.kind === "clickhouse" ? "database" : "bucket"),
        ),
        h(
          "div",
          {},
          h(
            "div",
            { class: "row" },
            h("strong", {}, active ? active.name : "Embedded bucket"),
            stateBadge(),
          ),
          h(
            "p",
            { class: "conn-summary" },
            active
              ? KINDS[active.kind].summary(active.config)
              : "A directory on the Astralog server (the default). Fine for trying out; add your own storage for production.",
          ),
          failureNote(),
        ),
        active ? h("span", { class: "spacer" }) : null,
        active ? deactivateButton() : null,
      ),
    );
    const list = connectors.length
      ? h(
          "section",
          { class: "card", "aria-labelledby": "conns-title" },
          h("div", { class: "card-head" }, h("h2", { id: "conns-title" }, "Your storage")),
          h("div", {}, connectors.map(connectorView)),
        )
      : stateView({
          iconName: "bucket",
          title: "No storage of your own yet",
          text: "Add an S3-compatible bucket or a ClickHouse server. Astralog checks the connection and gives you the least-privilege policy to grant.",
        });
    replace(page, head(), h("div", { class: "stack-lg" }, destination, list, boundary()));
  }

  function deactivateButton() {
    const button = h(
      "button",
      { type: "button", class: "btn btn-sm" },
      "Switch back to the embedded bucket",
    );
    button.addEventListener("click", async () => {
      const ok = await confirmDialog({
        title: "Switch back to the embedded bucket?",
        text: "New events are written to the server's local directory. What is already in your storage stays there.",
        confirm: "Switch back",
      });
      if (!ok) return;
      try {
        await post("/v1/connectors/deactivate", {});
        toast("New events now go to the embedded bucket");
        load();
      } catch (error) {
        toast(error.detail || String(error), { error: true });
      }
    });
    return button;
  }

  function connectorView(connector) {
    const kind = KINDS[connector.kind] || { label: connector.kind, summary: () => "" };
    const checks = h("div", { class: "conn-checks", "aria-live": "polite" });
    if (results.has(connector.id)) replace(checks, checkList(results.get(connector.id)));
    else if (connector.last_test) replace(checks, lastTest(connector.last_test));
    const test = h(
      "button",
      { type: "button", class: "btn btn-sm" },
      icon("check", "icon-sm"),
      "Test connection",
    );
    const policy = h(
      "button",
      { type: "button", class: "btn btn-sm" },
      icon("shield", "icon-sm"),
      "Policy",
    );
    const edit = h("button", { type: "button", class: "btn btn-sm btn-ghost" }, "Edit");
    const activate = h("button", { type: "button", class: "btn btn-sm btn-primary" }, "Activate");
    test.addEventListener("click", async () => {
      test.disabled = true;
      replace(checks, h("p", { class: "muted" }, "Checking the connection…"));
      try {
        const result = await post(`/v1/connectors/${encodeURIComponent(connector.id)}/test`, {});
        results.set(connector.id, result);
        replace(checks, checkList(result));
      } catch (error) {
        replace(
          checks,
          h(
            "div",
            { class: "callout callout-danger", role: "alert" },
            icon("alert"),
            error.detail || String(error),
          ),
        );
      } finally {
        test.disabled = false;
      }
    });
    policy.addEventListener("click", () => showPolicy(connector));
    edit.addEventListener("click", () => editor(connector));
    activate.addEventListener("click", async () => {
      const tested = results.get(connector.id);
      const ok = await confirmDialog({
        title: `Write new logs to ${connector.name}?`,
        text: tested?.ok
          ? "New batches go to this storage from now on. What was written before stays searchable where it is."
          : "This storage has not passed a connection test in this session. Activate anyway? Events wait safely in the write-ahead log if writes fail.",
        confirm: "Activate",
      });
      if (!ok) return;
      try {
        await post(`/v1/connectors/${encodeURIComponent(connector.id)}/activate`, {});
        toast(`${connector.name} is now where new logs go`);
        load();
      } catch (error) {
        toast(error.detail || String(error), { error: true });
      }
    });
    return h(
      "article",
      { class: "conn", "aria-label": connector.name, dataset: { id: connector.id } },
      h(
        "div",
        { class: "conn-head" },
        h("h3", {}, connector.name),
        h("span", { class: "badge badge-plain" }, kind.label),
        connector.active ? stateBadge() : null,
        h("span", { class: "spacer" }),
        edit,
        policy,
        test,
        connector.active ? null : activate,
      ),
      h("p", { class: "conn-summary" }, kind.summary(connector.config || {})),
      connector.config?.external_id
        ? h(
            "p",
            { class: "field-hint row" },
            "External id for your role's trust policy: ",
            h("code", {}, connector.config.external_id),
            copyButton(connector.config.external_id, {
              label: "Copy",
              what: "External id copied",
              cls: "btn btn-xs",
            }),
          )
        : null,
      h(
        "p",
        { class: "field-hint" },
        `Added ${fmtDateTime(connector.created_at)}`,
        connector.secrets_set?.length ? ` · secrets set: ${connector.secrets_set.join(", ")}` : "",
      ),
      checks,
    );
  }

  function lastTest(test) {
    return h(
      "div",
      { class: ["callout", test.ok ? "callout-ok" : "callout-warn"] },
      icon(test.ok ? "check" : "alert"),
      h(
        "span",
        {},
        `Last connection test ${fmtRelative(test.at)}: `,
        test.ok
          ? "passed."
          : `failed at ${(test.failed || []).join(", ")}. Test again after fixing it.`,
      ),
    );
  }

  function checkList(result) {
    const items = (result.checks || []).map((check) =>
      h(
        "li",
        { class: check.ok ? "ok" : "bad" },
        h("span", { class: "mark", "aria-hidden": "true" }, check.ok ? "✓" : "✗"),
        h(
          "div",
          {},
          h("strong", {}, check.name),
          h("span", { class: "sr-only" }, check.ok ? " passed" : " failed"),
          check.detail ? h("div", { class: "detail" }, check.detail) : null,
        ),
      ),
    );
    return h(
      "div",
      { class: "stack" },
      h(
        "div",
        { class: ["callout", result.ok ? "callout-ok" : "callout-danger"], role: "status" },
        icon(result.ok ? "check" : "alert"),
        h(
          "span",
          {},
          result.ok
            ? "All checks passed. You can activate this storage."
            : "Some checks failed. Fix them (the policy lists what Astralog needs), then test again.",
        ),
      ),
      h("ul", { class: "checks" }, items),
    );
  }

  async function showPolicy(connector) {
    try {
      const policy = await get(`/v1/connectors/${encodeURIComponent(connector.id)}/policy`);
      const text = policy.text || JSON.stringify(policy.policy, null, 2);
      const done = h("button", { type: "button", class: "btn btn-primary" }, "Done");
      const body = [codeBlock(text, { label: "Permissions policy", what: "Policy copied" })];
      if (policy.trust_policy) {
        body.push(
          h("h3", {}, "Trust policy of the role"),
          h(
            "p",
            { class: "field-hint" },
            "Lets Astralog assume the role, only with your connector's external id.",
          ),
          codeBlock(JSON.stringify(policy.trust_policy, null, 2), {
            label: "Trust policy",
            what: "Trust policy copied",
          }),
        );
      }
      const { close, dialog } = openDialog({
        title: "Least-privilege policy",
        description:
          connector.kind === "s3"
            ? "Attach this to the user or role Astralog uses. It grants nothing outside the prefix."
            : "Run these grants for the Astralog user. They cover only the log table.",
        body,
        actions: [done],
      });
      dialog.classList.add("dialog-wide");
      done.addEventListener("click", () => close());
    } catch (error) {
      toast(error.detail || String(error), { error: true });
    }
  }

  // ---------------------------------------------------------------- create / edit form
  function editor(existing) {
    const values = { kind: existing?.kind || "s3", name: existing?.name || "" };
    const configs = { s3: { ...DEFAULTS.s3 }, clickhouse: { ...DEFAULTS.clickhouse } };
    if (existing) Object.assign(configs[existing.kind], existing.config);
    const secretsSet = new Set(existing?.secrets_set || []);
    const replacing = new Set();
    const secrets = {};
    const error = h("p", { class: "field-error", role: "alert" });
    const fieldsBox = h("div", { class: "form-grid" });
    const name = h("input", {
      class: "input",
      id: "conn-name",
      required: true,
      maxlength: "63",
      value: values.name,
      placeholder: "prod-logs",
      autocomplete: "off",
      readonly: Boolean(existing),
    });
    const kindBox = h(
      "div",
      { class: "radio-cards", role: "radiogroup", "aria-label": "Kind of storage" },
      Object.entries(KINDS).map(([kind, spec]) =>
        h(
          "label",
          { class: "radio-card" },
          h("input", {
            type: "radio",
            name: "kind",
            value: kind,
            checked: values.kind === kind,
            disabled: Boolean(existing) && existing.kind !== kind,
          }),
          h("span", {}, h("b", {}, spec.label), h("small", {}, spec.hint)),
        ),
      ),
    );
    kindBox.addEventListener("change", (event) => {
      values.kind = event.target.value;
      drawFields();
    });

    function visible(field) {
      if (!field.when) return true;
      const config = configs[values.kind];
      return Object.entries(field.when).every(([k, v]) => config[k] === v);
    }

    function drawFields() {
      const config = configs[values.kind];
      replace(
        fieldsBox,
        KINDS[values.kind].fields.filter(visible).map((field) => {
          const id = `conn-${field.name}`;
          const cls = field.span === 2 ? "field span-2" : "field";
          if (field.secret) return secretField(field, id, cls);
          if (field.type === "checkbox") {
            const box = h("input", { type: "checkbox", id, checked: Boolean(config[field.name]) });
            box.addEventListener("change", () => (config[field.name] = box.checked));
            return h("div", { class: cls }, h("label", { class: "check" }, box, field.label));
          }
          let input;
          if (field.options) {
            input = h(
              "select",
              { class: "select", id },
              field.options.map(([v, label]) =>
                h("option", { value: v, selected: config[field.name] === v }, label),
              ),
            );
            input.addEventListener("change", () => {
              config[field.name] = input.value;
              drawFields();
              document.getElementById(id)?.focus();
            });
          } else {
            const area = field.type === "textarea";
            input = h(area ? "textarea" : "input", {
              class: area ? "textarea" : "input",
              id,
              type: area ? undefined : field.type || "text",
              value: config[field.name] ?? "",
              placeholder: field.placeholder || "",
              autocomplete: "off",
              spellcheck: "false",
              required: field.required,
            });
            input.addEventListener("input", () => {
              config[field.name] =
                field.type === "number"
                  ? input.value === ""
                    ? null
                    : Number(input.value)
                  : area && !input.value.trim()
                    ? null
                    : input.value;
            });
          }
          return h(
            "div",
            { class: cls },
            h(
              "label",
              { for: id },
              field.label,
              field.required ? "" : h("span", { class: "muted" }, ""),
            ),
            input,
            field.hint ? h("p", { class: "field-hint" }, field.hint) : null,
          );
        }),
      );
    }

    function secretField(field, id, cls) {
      const box = h("div", { class: cls });
      const draw = () => {
        if (secretsSet.has(field.name) && !replacing.has(field.name)) {
          const change = h("button", { type: "button", class: "btn btn-xs" }, "Replace");
          change.addEventListener("click", () => {
            replacing.add(field.name);
            draw();
            document.getElementById(id)?.focus();
          });
          replace(
            box,
            h("span", { class: "field-label", id: `${id}-label` }, field.label),
            h(
              "div",
              { class: "secret-set", role: "group", "aria-labelledby": `${id}-label` },
              icon("lock", "icon-sm"),
              "Set · hidden",
              h("span", { class: "spacer" }),
              change,
            ),
          );
          return;
        }
        const input = h("input", {
          class: "input input-mono",
          id,
          type: "password",
          autocomplete: "new-password",
          spellcheck: "false",
          value: secrets[field.name] || "",
          placeholder: secretsSet.has(field.name) ? "New value" : "",
        });
        input.addEventListener("input", () => (secrets[field.name] = input.value));
        replace(
          box,
          h("label", { for: id }, field.label, " ", h("span", { class: "muted" }, "(write-only)")),
          input,
          h(
            "p",
            { class: "field-hint" },
            "Stored encrypted. It is never shown again, only replaced.",
          ),
        );
      };
      draw();
      return box;
    }

    drawFields();
    const save = h(
      "button",
      { type: "submit", class: "btn btn-primary", form: "conn-form" },
      existing ? "Save changes" : "Save and test",
    );
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const form = h(
      "form",
      { id: "conn-form", class: "stack", novalidate: true },
      h("div", { class: "field" }, h("label", { for: "conn-name" }, "Name"), name),
      existing ? null : kindBox,
      fieldsBox,
      error,
    );
    const { close, dialog } = openDialog({
      title: existing ? `Edit ${existing.name}` : "Add storage",
      description: existing
        ? "Empty secret fields keep their current value."
        : "Astralog writes new batches here once you activate it.",
      body: [form],
      actions: [cancel, save],
    });
    dialog.classList.add("dialog-wide");
    cancel.addEventListener("click", () => close());
    name.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!name.value.trim()) {
        error.textContent = "Give this storage a name.";
        name.focus();
        return;
      }
      const config = {};
      for (const field of KINDS[values.kind].fields) {
        if (field.secret || !visible(field)) continue;
        const value = configs[values.kind][field.name];
        if (value !== undefined && value !== "" && value !== null) config[field.name] = value;
        if (field.required && (value === undefined || value === "")) {
          error.textContent = `${field.label} is required.`;
          error.scrollIntoView({ block: "nearest" });
          document.getElementById(`conn-${field.name}`)?.focus();
          return;
        }
      }
      const secretValues = Object.fromEntries(Object.entries(secrets).filter(([, v]) => v));
      save.disabled = true;
      try {
        const saved = existing
          ? await put(`/v1/connectors/${encodeURIComponent(existing.id)}`, {
              config: { ...kept(existing), ...config },
              secrets: secretValues,
            })
          : await post("/v1/connectors", {
              name: name.value.trim(),
              kind: values.kind,
              config,
              secrets: secretValues,
            });
        close();
        toast(existing ? "Storage saved" : "Storage added; testing the connection…");
        if (!existing && saved?.id) {
          try {
            results.set(
              saved.id,
              await post(`/v1/connectors/${encodeURIComponent(saved.id)}/test`, {}),
            );
          } catch (err) {
            results.set(saved.id, {
              ok: false,
              checks: [{ name: "connection test", ok: false, detail: err.detail || String(err) }],
            });
          }
        }
        load();
      } catch (err) {
        error.textContent = err.detail || String(err);
        error.scrollIntoView({ block: "nearest" });
        save.disabled = false;
      }
    });
  }

  await load();
  return {};
}

// Settings of an existing connector that the form does not show (timeouts, multipart sizes), kept
// on save; the external id is Astralog's and is never sent back.
function kept(connector) {
  const shown = new Set(KINDS[connector.kind].fields.map((f) => f.name));
  return Object.fromEntries(
    Object.entries(connector.config || {}).filter(
      ([key, value]) => !shown.has(key) && key !== "external_id" && value !== null,
    ),
  );
}
