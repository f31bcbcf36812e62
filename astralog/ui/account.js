// My account: password, the authenticator app (TOTP) and recovery codes, where I am signed in,
// and personal access tokens with an expiry.

import { del, get, post } from "./api.js";
import {
  actionTable,
  addButton,
  card,
  confirmAndRun,
  errorState,
  fillPage,
  fmtDateTime,
  fmtRelative,
  formDialog,
  h,
  icon,
  pageHead,
  replace,
  toast,
} from "./dom.js";
import { list, roleLabel, showOnce } from "./members.js";
import { identitiesCard } from "./identities.js";
import { enrolTotp, fail, showRecoveryCodes, withReauth } from "./mfa.js";
import { passkeysCard } from "./passkeys_card.js";

export async function mount(main, app) {
  const page = h("div", { class: "page" });
  replace(main, page);
  let me;

  function load() {
    return fillPage(
      page,
      () => pageHead("My account", "How you sign in, and what can act for you."),
      async () => (me = await get("/v1/me")),
      () => [profileCard(), passwordCard(), totpCard(), passkeysCard(), identitiesCard(), sessionsCard(), tokensCard()],
    );
  }

  function profileCard() {
    return card(
      { id: "profile-title", title: me.name || me.email },
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "Email"),
        h("dd", { id: "me-email" }, me.email),
        h("dt", {}, "Role"),
        h("dd", { id: "me-role" }, roleLabel(me.role || app.session.role)),
        h("dt", {}, "Sources"),
        h(
          "dd",
          {},
          me.sources === null || me.sources === undefined
            ? "All sources"
            : `${me.sources.length} granted`,
        ),
      ),
    );
  }

  // ---- password
  function passwordCard() {
    const current = pw("pw-current", "current-password");
    const next = pw("pw-new", "new-password");
    const error = h("p", { class: "field-error", role: "alert", id: "pw-error" });
    const save = h("button", { type: "submit", class: "btn btn-primary" }, "Change password");
    const form = h(
      "form",
      { class: "stack", id: "password-change", novalidate: true },
      h(
        "div",
        { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "pw-current" }, "Current password"), current),
        h(
          "div",
          { class: "field" },
          h("label", { for: "pw-new" }, "New password"),
          next,
          h("p", { class: "field-hint" }, "At least 8 characters; common and breached passwords are refused."),
        ),
      ),
      error,
      h("div", { class: "form-actions" }, save),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      if (next.value.length < 8) return fail(next, error, "Use at least 8 characters.");
      save.disabled = true;
      try {
        const body = { current_password: current.value, new_password: next.value };
        await post("/v1/me/password", body, { quiet401: true }); // 401: a wrong current one
        current.value = next.value = "";
        toast("Password changed; your other sessions were signed out");
      } catch (err) {
        fail(err.status === 400 || err.status === 422 ? next : current, error, err.detail || String(err));
      }
      save.disabled = false;
    });
    const sso = me.password === false;
    const lede = sso ? "You sign in with SSO; a password is not used." : null;
    return card({ id: "pw-title", title: "Password", lede }, sso ? null : form);
  }

  function pw(id, autocomplete) {
    return h("input", { class: "input", id, type: "password", autocomplete, required: true });
  }

  // ---- TOTP
  function totpCard() {
    const box = h("div", { class: "stack", id: "totp-box" });
    renderTotp(box);
    return card({ id: "totp-title", title: "Authenticator app", lede: "A 6-digit code at every sign-in with your password." }, box);
  }

  function renderTotp(box) {
    if (!me.totp) {
      const start = h("button", { type: "button", class: "btn btn-primary", id: "totp-start" }, icon("shield", "icon-sm"), "Set up");
      start.addEventListener("click", () =>
        enrolTotp(box, {
          onDone: () => {
            me.totp = true;
            renderTotp(box);
            toast("Two-step verification is on");
          },
          onCancel: () => renderTotp(box),
        }),
      );
      replace(box, h("p", { class: "muted", id: "totp-state" }, "Not set up."), h("div", {}, start));
      return;
    }
    const codes = h("button", { type: "button", class: "btn", id: "new-recovery-codes" }, "New recovery codes");
    codes.addEventListener("click", async () => {
      try {
        const data = await withReauth(() => post("/v1/me/recovery-codes", {}));
        showRecoveryCodes(box, data.recovery_codes || [], () => renderTotp(box));
      } catch (err) {
        toast(err.detail || String(err), { error: true });
      }
    });
    const remove = h("button", { type: "button", class: "btn btn-danger", id: "totp-remove" }, "Turn off");
    remove.addEventListener("click", () =>
      confirmAndRun(
        {
          title: "Turn off two-step verification?",
          text: "Your password alone will sign you in. Your recovery codes stop working.",
          confirm: "Turn off",
        },
        async () => {
          await withReauth(() => del("/v1/me/totp"));
          me.totp = false;
          renderTotp(box);
          toast("Two-step verification is off");
        },
      ),
    );
    replace(
      box,
      h("p", { id: "totp-state" }, h("span", { class: "badge badge-ok" }, "On"), " Codes from your authenticator app are required."),
      h("div", { class: "row" }, codes, remove),
    );
  }

  // ---- sessions
  function sessionsCard() {
    const box = h("div", {});
    renderSessions(box);
    return card({ id: "sessions-title", title: "Where you are signed in", lede: "Revoking a session signs that browser out at once." }, box);
  }

  async function renderSessions(box) {
    let sessions;
    try {
      sessions = list(await get("/v1/me/sessions"), "sessions");
    } catch (error) {
      replace(box, errorState(error, () => renderSessions(box)));
      return;
    }
    replace(
      box,
      actionTable(
        "sessions-table",
        ["Browser", "Signed in", "Last active"],
        sessions.map((s) => sessionRow(s, box)),
      ),
    );
  }

  function sessionRow(s, box) {
    const revoke = h(
      "button",
      {
        type: "button",
        class: "btn btn-sm btn-danger",
        "aria-label": s.current
          ? `Sign out this session (${browserName(s.user_agent)})`
          : `Revoke session from ${browserName(s.user_agent)}`,
      },
      s.current ? "Sign out" : "Revoke",
    );
    revoke.addEventListener("click", async () => {
      try {
        await post(`/v1/me/sessions/${encodeURIComponent(s.id)}/revoke`, {});
      } catch (err) {
        toast(err.detail || String(err), { error: true });
        return;
      }
      if (s.current) {
        location.assign("/");
        return;
      }
      toast("Session revoked");
      renderSessions(box);
    });
    return h(
      "tr",
      { dataset: { session: s.id, current: String(Boolean(s.current)) } },
      h(
        "td",
        { "data-label": "Browser" },
        h("strong", {}, browserName(s.user_agent)),
        s.current ? h("span", { class: "badge badge-accent" }, "This browser") : null,
        h("div", { class: "ln-sub" }, [s.client, s.method, (s.amr || []).join("+")].filter(Boolean).join(" · ")),
      ),
      h("td", { "data-label": "Signed in" }, fmtDateTime(epoch(s.created))),
      h("td", { "data-label": "Last active" }, fmtRelative(epoch(s.last_seen))),
      h("td", { class: "actions" }, revoke),
    );
  }

  // ---- personal access tokens
  function tokensCard() {
    const box = h("div", {});
    const issue = addButton("new-token", "New token", () => tokenDialog(() => renderTokens(box)));
    renderTokens(box);
    return card(
      {
        id: "tokens-title",
        title: "Personal access tokens",
        lede: "For scripts acting as you. A token can do at most what your role allows now; deprovisioning revokes it.",
      },
      h("div", {}, issue),
      box,
    );
  }

  async function renderTokens(box) {
    let tokens;
    try {
      tokens = list(await get("/v1/me/tokens"), "tokens");
    } catch (error) {
      replace(box, errorState(error, () => renderTokens(box)));
      return;
    }
    if (!tokens.length) {
      replace(box, h("p", { class: "muted" }, "No tokens."));
      return;
    }
    replace(box, actionTable("tokens-table", ["Name", "Scopes", "Expires"], tokens.map((t) => tokenRow(t, box))));
  }

  function tokenRow(t, box) {
    const revoked = Boolean(t.revoked_at || t.revoked || t.state === "revoked");
    const revoke = h("button", { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Revoke token ${t.name}` }, "Revoke");
    revoke.addEventListener("click", () =>
      confirmAndRun({ title: `Revoke ${t.name}?`, text: "Scripts using it stop working at once.", confirm: "Revoke" }, async () => {
        await post(`/v1/me/tokens/${encodeURIComponent(t.id)}/revoke`, {});
        toast(`${t.name} revoked`);
        renderTokens(box);
      }),
    );
    return h(
      "tr",
      { dataset: { token: t.id } },
      h("td", { "data-label": "Name" }, h("strong", {}, t.name), h("div", { class: "ln-sub mono" }, t.prefix ? `${t.prefix}…` : t.id)),
      h("td", { "data-label": "Scopes" }, h("ul", { class: "chips" }, (t.scopes || []).map((s) => h("li", { class: "chip mono" }, s)))),
      h("td", { "data-label": "Expires" }, t.expires_at ? fmtDateTime(t.expires_at) : "Never"),
      h("td", { class: "actions" }, revoked ? h("span", { class: "badge badge-danger" }, "Revoked") : revoke),
    );
  }

  function tokenDialog(reload) {
    const name = h("input", { class: "input", id: "token-name", autocomplete: "off", required: true, placeholder: "laptop-scripts" });
    const days = h("input", { class: "input num", id: "token-days", type: "number", min: "1", max: "365", value: "30" });
    const mine = (app.session.scopes || []).filter((s) => s !== "owners:write");
    const boxes = mine.map((scope) =>
      h("input", { type: "checkbox", value: scope, id: `token-scope-${scope}`, checked: scope.endsWith(":read") }),
    );
    formDialog({
      id: "token-form",
      title: "New personal access token",
      fields: [
        h("div", { class: "field" }, h("label", { for: "token-name" }, "Name"), name),
        h("div", { class: "field" }, h("label", { for: "token-days" }, "Expires after (days, 1–365)"), days),
        h(
          "fieldset",
          { class: "field" },
          h("legend", { class: "field-label" }, "Scopes"),
          mine.map((scope, i) => h("label", { class: "check" }, boxes[i], h("code", {}, scope))),
        ),
      ],
      submitLabel: "Issue token",
      check(error) {
        const n = Number(days.value);
        if (!name.value.trim()) return fail(name, error, "Name the token after where it is used.");
        if (!Number.isInteger(n) || n < 1 || n > 365) return fail(days, error, "Choose 1 to 365 days.");
        return true;
      },
      async onSubmit(close) {
        const n = Number(days.value);
        const issued = await withReauth(() =>
          post("/v1/me/tokens", {
            name: name.value.trim(),
            scopes: boxes.filter((b) => b.checked).map((b) => b.value),
            expires_in_days: n,
          }),
        );
        close();
        showOnce({
          title: "Personal access token",
          what: `${name.value.trim()}, expires in ${n} day${n === 1 ? "" : "s"}`,
          value: issued.token,
          id: "revealed-token",
          warning: "Copy it now: Astralog keeps a hash, not the token. It is shown only once.",
        });
        reload();
      },
    });
  }

  await load();
  return {};
}

// Sessions report times in seconds since the epoch; other times arrive as ISO text.
function epoch(value) {
  return typeof value === "number" ? new Date(value * 1000) : value;
}

function browserName(agent) {
  if (!agent) return "Unknown browser";
  const match = /(Firefox|Edg|Chrome|Chromium|Safari|curl|python-httpx)\/[\d.]+/.exec(agent);
  const os = /(Windows|Mac OS X|Linux|Android|iPhone)/.exec(agent);
  const browser = match ? match[1].replace("Edg", "Edge") : agent.slice(0, 40);
  return os ? `${browser} on ${os[1].replace("Mac OS X", "macOS")}` : browser;
}
