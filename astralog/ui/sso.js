// Sign-in & security: the org's policy (require MFA, enforce SSO, session lifetimes), its OIDC
// connections (client secret write-only, claim → role rules, strict mode, a test sign-in) with the
// last sign-in's claims beside the role and sources they produced, and its verified domains.

import { cached, del, get, post, put } from "./api.js";
import {
  addButton,
  card,
  codeBlock,
  confirmAndRun,
  fillPage,
  fmtRelative,
  formDialog,
  h,
  icon,
  pageHead,
  replace,
  stateView,
  toast,
} from "./dom.js";
import { list, loadRoles, roleLabel } from "./members.js";
import { withReauth } from "./mfa.js";

export async function mount(main) {
  const page = h("div", { class: "page" });
  replace(main, page);
  let roles = [];
  let sources = [];

  function load() {
    return fillPage(page, head, fetchAll, ([policy, connections, domains]) => [
      policyCard(policy, connections),
      connectionsCard(connections),
      domainsCard(domains),
    ]);
  }

  async function fetchAll() {
    let rest;
    [roles, sources, ...rest] = await Promise.all([
      loadRoles(),
      cached("/v1/sources"),
      get("/v1/org/security-policy"),
      // The policy stays usable when the connections cannot be listed.
      get("/v1/sso/connections")
        .then((d) => list(d, "connections"))
        .catch((error) => ({ error })),
      get("/v1/org/domains")
        .then((d) => list(d, "domains"))
        .catch(() => []),
    ]);
    return rest;
  }

  function head() {
    return pageHead(
      "Sign-in & security",
      "How people of this org sign in, and for how long. Every change is recorded in the audit log.",
    );
  }

  // ---- policy
  function policyCard(policy, connections) {
    const mfa = h("input", { type: "checkbox", id: "policy-mfa", checked: policy.require_mfa });
    const sso = h("input", { type: "checkbox", id: "policy-sso", checked: policy.enforce_sso });
    const idle = h("input", {
      class: "input num",
      id: "policy-idle",
      type: "number",
      min: "5",
      max: "1440",
      value: String(policy.session_idle_minutes),
    });
    const absolute = h("input", {
      class: "input num",
      id: "policy-absolute",
      type: "number",
      min: "1",
      max: "720",
      value: String(policy.session_absolute_hours),
    });
    const error = h("div", { class: "field-error", id: "policy-error", role: "alert" });
    const save = h("button", { type: "submit", class: "btn btn-primary" }, "Save policy");
    const form = h(
      "form",
      { class: "card-body stack", id: "policy-form", novalidate: true },
      h(
        "label",
        { class: "check" },
        mfa,
        h(
          "span",
          {},
          h("strong", {}, "Require MFA"),
          h(
            "span",
            { class: "field-hint block" },
            "People with a password set up an authenticator app at their next sign-in.",
          ),
        ),
      ),
      h(
        "label",
        { class: "check" },
        sso,
        h(
          "span",
          {},
          h("strong", {}, "Enforce SSO"),
          h(
            "span",
            { class: "field-hint block" },
            connections.length > 0
              ? "Passwords stop working, except the break-glass owner's (every use audited). Run a test sign-in in this session first."
              : "Needs an SSO connection below, and a test sign-in with it.",
          ),
        ),
      ),
      h(
        "div",
        { class: "form-grid" },
        h(
          "div",
          { class: "field" },
          h("label", { for: "policy-idle" }, "Idle timeout (minutes)"),
          idle,
        ),
        h(
          "div",
          { class: "field" },
          h("label", { for: "policy-absolute" }, "Longest session (hours)"),
          absolute,
        ),
      ),
      error,
      h("div", { class: "form-actions" }, save),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      save.disabled = true;
      try {
        await withReauth(() =>
          put("/v1/org/security-policy", {
            require_mfa: mfa.checked,
            enforce_sso: sso.checked,
            session_idle_minutes: Number(idle.value),
            session_absolute_hours: Number(absolute.value),
          }),
        );
        toast("Sign-in policy saved");
      } catch (err) {
        error.textContent = err.detail || String(err);
      }
      save.disabled = false;
    });
    return card({ id: "policy-title", title: "Policy", lede: "Applies to new sign-ins.", body: form });
  }

  // ---- connections
  function connectionsCard(connections) {
    const failed = connections.error;
    return card(
      {
        id: "conn-title",
        title: "Single sign-on (OpenID Connect)",
        lede: "Register Astralog at your identity provider with this redirect URI:",
        action: addButton("add-connection", "Add connection", () => connectionDialog(null)),
      },
      codeBlock(`${location.origin}/v1/auth/sso/callback`, {
        label: "Redirect URI",
        what: "Redirect URI copied",
      }),
      failed
        ? h("p", { class: "field-error", role: "alert" }, failed.detail || String(failed))
        : connections.length
        ? h("ul", { class: "conn-list", id: "connections" }, connections.map(connectionItem))
        : stateView({
            iconName: "shield",
            title: "No SSO connection",
            text: "People sign in with a password until you add one.",
          }),
    );
  }

  function connectionItem(c) {
    const rules = c.role_rules || c.rules || [];
    const test = h(
      "a",
      {
        class: "btn btn-sm",
        href: `/v1/auth/sso/${encodeURIComponent(c.id)}/start?mode=test&return_to=${encodeURIComponent("/security")}`,
      },
      "Test sign-in",
    );
    const preview = h("div", { class: "preview", id: `preview-${c.id}` });
    const showPreview = h(
      "button",
      { type: "button", class: "btn btn-sm", "aria-expanded": "false" },
      "Claim mapping",
    );
    showPreview.addEventListener("click", async () => {
      const open = showPreview.getAttribute("aria-expanded") === "true";
      showPreview.setAttribute("aria-expanded", String(!open));
      if (open) return replace(preview);
      await renderPreview(preview, c);
    });
    const edit = h("button", { type: "button", class: "btn btn-sm", onclick: () => connectionDialog(c) }, "Edit");
    const remove = h("button", { type: "button", class: "btn btn-sm btn-danger" }, "Remove");
    remove.addEventListener("click", () => removeConnection(c));
    return h(
      "li",
      { class: "conn-item", dataset: { connection: c.id } },
      h(
        "div",
        { class: "row" },
        h("div", {}, h("strong", {}, c.name), h("div", { class: "ln-sub mono" }, c.issuer)),
        h("span", { class: "spacer" }),
        c.strict === false
          ? h("span", { class: "badge badge-warn" }, `Unmatched → ${roleLabel(c.default_role || "none")}`)
          : h("span", { class: "badge badge-ok" }, "Strict"),
        h("span", { class: "badge badge-plain" }, `${rules.length} rule${rules.length === 1 ? "" : "s"}`),
      ),
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "Client ID"),
        h("dd", { class: "mono" }, c.client_id),
        h("dt", {}, "Client secret"),
        h("dd", {}, icon("lock", "icon-sm"), " Set · hidden"),
        h("dt", {}, "Back-channel logout"),
        h(
          "dd",
          { class: "mono" },
          c.backchannel_logout_uri || `${location.origin}/v1/auth/sso/${c.id}/backchannel-logout`,
        ),
        h("dt", {}, "Last sign-in"),
        h("dd", {}, c.last_sign_in ? fmtRelative(c.last_sign_in) : "Never"),
      ),
      h("div", { class: "row" }, test, showPreview, edit, remove),
      preview,
    );
  }

  // The debug view people ask for: what the IdP sent (redacted) beside what it produced here.
  async function renderPreview(box, c) {
    replace(box, h("p", { class: "muted" }, "Loading the last sign-in…"));
    let data;
    try {
      data = await get(`/v1/sso/connections/${encodeURIComponent(c.id)}/preview`);
    } catch (error) {
      replace(box, h("p", { class: "field-error", role: "alert" }, error.detail || String(error)));
      return;
    }
    if (!data || !data.claims) {
      replace(box, h("p", { class: "muted" }, "Nobody has signed in with this connection yet. Run a test sign-in."));
      return;
    }
    const claims = Object.entries(data.claims).map(([name, value]) =>
      h(
        "tr",
        {},
        h("th", { scope: "row", class: "mono" }, name),
        h("td", { class: "mono" }, typeof value === "string" ? value : JSON.stringify(value)),
      ),
    );
    replace(
      box,
      h(
        "div",
        { class: "preview-split" },
        h(
          "div",
          {},
          h("h3", {}, "Claims of the last sign-in"),
          h(
            "p",
            { class: "field-hint" },
            data.last_sign_in ? fmtRelative(data.last_sign_in) : "",
            // What idp.redact_claims keeps: the claims the rules read and the protocol's own.
            " · shown: the claims your rules read and the sign-in protocol's own (iss, sub, aud, amr, email_verified…); the email is masked; every other value is redacted",
          ),
          h("table", { class: "table claims" }, h("tbody", {}, claims)),
        ),
        h("div", { class: "stack" }, h("h3", {}, "What the rules make of them"), outcome(data)),
      ),
    );
  }

  function outcome(data) {
    const result = data.result || {};
    const names = (ids) =>
      ids === null || ids === undefined
        ? "all sources"
        : ids.map((id) => sources.find((s) => s.id === id)?.name || id).join(", ") || "no sources";
    const matched = result.matched_rules || [];
    return [
      result.refused || !result.role
        ? h("p", { class: "field-error", id: "preview-result" }, "No rule matches: sign-in refused (strict).")
        : h(
            "p",
            { id: "preview-result" },
            h("strong", {}, roleLabel(result.role)),
            ` with ${names(result.sources)}`,
            result.refused === false ? " (no rule matched: the default role)" : "",
          ),
      h(
        "p",
        { class: "field-hint" },
        matched.length ? `Matched rules: ${matched.map((m) => (typeof m === "number" ? `#${m + 1}` : JSON.stringify(m))).join(", ")}` : "",
      ),
      data.person
        ? h(
            "p",
            { class: "field-hint" },
            `${data.person.email} holds ${roleLabel(data.person.role)} with ${names(data.person.sources)} now.`,
          )
        : null,
    ];
  }

  function removeConnection(c) {
    return confirmAndRun(
      {
        title: `Remove ${c.name}?`,
        text: "People who sign in with it can no longer do so, and their sessions from it end.",
        confirm: "Remove",
      },
      async () => {
        await withReauth(() => del(`/v1/sso/connections/${encodeURIComponent(c.id)}`));
        toast(`${c.name} removed`);
        load();
      },
    );
  }

  function roleSelect(id, value, { none = false } = {}) {
    return h(
      "select",
      { class: "select", id, "aria-label": "Role" },
      none ? h("option", { value: "" }, "Refuse") : null,
      roles
        .filter((r) => r.people !== false)
        .map((r) => h("option", { value: r.name, selected: r.name === value }, roleLabel(r.name))),
    );
  }

  // One claim → role rule: claim name, value, role, and the sources it grants.
  function ruleRow(rule, index, remove) {
    const n = index + 1;
    const claim = h("input", { class: "input input-mono", value: rule.claim || "groups", "aria-label": `Rule ${n} claim` });
    const value = h("input", { class: "input input-mono", value: rule.value || "", "aria-label": `Rule ${n} value` });
    const role = roleSelect(`rule-${n}-role`, rule.role || "viewer");
    role.setAttribute("aria-label", `Rule ${n} role`);
    const sourcesSelect = h(
      "select",
      { class: "select", multiple: true, "aria-label": `Rule ${n} sources (none chosen: all)`, size: "3" },
      sources.map((s) => h("option", { value: s.id, selected: (rule.sources || []).includes(s.id) }, s.name)),
    );
    const drop = h("button", { type: "button", class: "icon-btn", "aria-label": `Remove rule ${n}` }, icon("x"));
    const row = h("li", { class: "rule-row" }, claim, h("span", { class: "muted" }, "="), value, role, sourcesSelect, drop);
    drop.addEventListener("click", () => remove(row));
    row.read = () => {
      const picked = [...sourcesSelect.selectedOptions].map((o) => o.value);
      return { claim: claim.value.trim(), value: value.value.trim(), role: role.value, sources: picked.length ? picked : null };
    };
    return row;
  }

  function connectionDialog(existing) {
    const c = existing || { scopes: ["openid", "email", "profile"], role_rules: [], strict: true, jit: true };
    const input = (id, value, attrs = {}) =>
      h("input", { class: "input", id, value: value || "", autocomplete: "off", spellcheck: "false", ...attrs });
    const name = input("sso-name", c.name, { placeholder: "Okta" });
    const issuer = input("sso-issuer", c.issuer, { class: "input input-mono", placeholder: "https://login.example.com" });
    const clientId = input("sso-client-id", c.client_id, { class: "input input-mono" });
    const secret = input("sso-secret", "", { type: "password", class: "input input-mono", autocomplete: "new-password" });
    const scopes = input("sso-scopes", (c.scopes || []).join(" "), { class: "input input-mono" });
    const strict = h("input", { type: "checkbox", id: "sso-strict", checked: c.strict !== false });
    const jit = h("input", { type: "checkbox", id: "sso-jit", checked: c.jit !== false });
    const fallback = roleSelect("sso-default-role", c.default_role || "viewer");
    const fallbackField = h(
      "div",
      { class: "field" },
      h("label", { for: "sso-default-role" }, "Role when no rule matches"),
      fallback,
    );
    const syncStrict = () => (fallbackField.hidden = strict.checked);
    strict.addEventListener("change", syncStrict);
    syncStrict();
    const rules = h("ol", { class: "rules", id: "sso-rules" });
    const removeRow = (row) => row.remove();
    (c.role_rules || c.rules || []).forEach((r, i) => rules.append(ruleRow(r, i, removeRow)));
    const addRule = h("button", { type: "button", class: "btn btn-sm", id: "add-rule" }, icon("plus", "icon-sm"), "Add rule");
    addRule.addEventListener("click", () => {
      const row = ruleRow({}, rules.children.length, removeRow);
      rules.append(row);
      row.querySelector("input").focus();
    });
    // Write-only: an existing secret is never sent to the browser; replacing it is explicit.
    const secretField = existing
      ? h(
          "div",
          { class: "secret-set", role: "group", "aria-labelledby": "sso-secret-label" },
          icon("lock", "icon-sm"),
          "Set · hidden",
          h("span", { class: "spacer" }),
          h("button", {
            type: "button",
            class: "btn btn-xs",
            onclick: (event) => event.currentTarget.parentElement.replaceWith(secret),
          }, "Replace"),
        )
      : secret;
    const field = (id, label, control, hint) =>
      h("div", { class: "field" }, h("label", { for: id, id: `${id}-label` }, label), control, hint ? h("p", { class: "field-hint" }, hint) : null);
    const fields = [
      h(
        "div",
        { class: "form-grid" },
        field("sso-name", "Name", name, "Shown on the sign-in button."),
        field("sso-issuer", "Issuer URL", issuer, "Exactly as the provider's discovery document says."),
        field("sso-client-id", "Client ID", clientId),
        field("sso-secret", "Client secret", secretField),
        h("div", { class: "span-2" }, field("sso-scopes", "Scopes", scopes)),
      ),
      h(
        "fieldset",
        { class: "field" },
        h("legend", { class: "field-label" }, "Claim → role rules"),
        h("p", { class: "field-hint" }, "In order; when several match, the most powerful role wins and their sources add up. Checked at every sign-in."),
        rules,
        h("div", {}, addRule),
      ),
      h("label", { class: "check" }, strict, "Strict: refuse a sign-in that no rule matches"),
      fallbackField,
      h("label", { class: "check" }, jit, "Create accounts at first sign-in (verified domains only)"),
    ];
    formDialog({
      id: "sso-form",
      title: existing ? `Edit ${existing.name}` : "Add an SSO connection",
      fields,
      submitLabel: existing ? "Save" : "Add connection",
      async onSubmit(close) {
        const body = {
          name: name.value.trim(),
          issuer: issuer.value.trim(),
          client_id: clientId.value.trim(),
          scopes: scopes.value.split(/[\s,]+/).filter(Boolean),
          role_rules: [...rules.children].map((row) => row.read()),
          strict: strict.checked,
          default_role: strict.checked ? null : fallback.value,
          jit: jit.checked,
        };
        if (secret.isConnected || !existing) body.client_secret = secret.value;
        const path = existing ? `/v1/sso/connections/${encodeURIComponent(existing.id)}` : "/v1/sso/connections";
        await withReauth(() => (existing ? put(path, body) : post(path, body)));
        close();
        toast(`${body.name} saved`);
        load();
      },
    });
  }

  function domainsCard(domains) {
    return card(
      {
        id: "domains-title",
        title: "Verified domains",
        lede: "SSO creates accounts at first sign-in only for email addresses in these domains. The operator of this installation verifies them.",
        body: "card-body",
      },
      domains.length
        ? h("ul", { class: "chips", id: "domains" }, domains.map((d) => h("li", { class: "chip mono" }, d.domain || d)))
        : h("p", { class: "muted" }, "None yet."),
    );
  }

  await load();
  return {};
}
