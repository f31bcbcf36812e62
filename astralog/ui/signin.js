// Sign-in: the org's name, then its SSO connections and/or email + password, then the TOTP (or
// recovery code) step, or MFA enrolment when the org requires it. Accepting an invitation sets a
// password and signs in. The admin token stays as the bootstrap path of a new install.

import { ApiError, get, post, setCsrf } from "./api.js";
import { codeBlock, h, icon, replace } from "./dom.js";
import { codeInput, enrolTotp, fail } from "./mfa.js";
import { passkeyEnrolment, passkeyStep } from "./passkeys.js";
import { ssoErrorText } from "./sso_errors.js";

const ORG_KEY = "astralog.org";
// Every scope, as the first start's admin token has them (astralog/auth/principal.py SCOPES):
// "Lost the token?" prints a whole command to paste, and a test runs it and signs in with it.
const ADMIN_SCOPES = [
  "alerts:admin", "alerts:read", "alerts:write", "audit:read", "connectors:write",
  "erasure:write", "exports:write", "holds:write", "keys:write", "logs:read", "members:write",
  "org:delete", "owners:write", "retention:write", "searches:write", "sources:read",
  "sources:write", "sso:write", "tokens:write",
];

export function mountSignIn(main, { message = "", stage, onSignedIn }) {
  const body = h("div", { class: "signin-body" });
  const alert = h("div", { id: "signin-alert" });
  const card = h(
    "section",
    { class: "card signin-card", "aria-labelledby": "signin-title" },
    h(
      "div",
      { class: "signin-brand" },
      h("img", { src: logoSrc(), alt: "", width: "30", height: "30" }),
      "Astralog",
    ),
    alert,
    body,
  );
  replace(main, h("div", { class: "signin" }, card));
  const flow = new SignIn(body, onSignedIn);
  const reason = takeSigninError();
  if (message || reason) showAlert(alert, message || reason);
  if (stage === "invitation") flow.invitation();
  else if (stage === "mfa") flow.mfa();
  else if (stage === "enrol") flow.enrol();
  else flow.start();
}

function logoSrc() {
  return document.querySelector('link[rel="icon"]').getAttribute("href");
}

// ?signin_error= is read once and removed from the address bar, so a reload does not repeat it.
function takeSigninError() {
  const params = new URLSearchParams(location.search);
  const reason = params.get("signin_error");
  if (!reason) return "";
  params.delete("signin_error");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  return ssoErrorText(reason);
}

function showAlert(box, text) {
  replace(
    box,
    h("div", { class: "callout callout-danger", role: "alert" }, icon("alert"), h("span", {}, text)),
  );
}

function remembered() {
  try {
    return localStorage.getItem(ORG_KEY) || "";
  } catch {
    return "";
  }
}

function remember(org) {
  try {
    localStorage.setItem(ORG_KEY, org);
  } catch {
    /* only a convenience */
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

function passwordInput(id, autocomplete) {
  const input = h("input", {
    class: "input",
    id,
    name: id,
    type: "password",
    autocomplete,
    required: true,
  });
  const reveal = h(
    "button",
    { type: "button", class: "btn btn-ghost btn-xs", "aria-pressed": "false", "aria-label": "Show password" },
    "Show",
  );
  reveal.addEventListener("click", () => {
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    reveal.textContent = shown ? "Show" : "Hide";
    reveal.setAttribute("aria-pressed", String(!shown));
  });
  return { input, wrap: h("div", { class: "password-wrap" }, input, reveal) };
}

function busy(button, text) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = text;
  return () => {
    button.disabled = false;
    button.textContent = label;
  };
}

class SignIn {
  constructor(body, onSignedIn) {
    this.body = body;
    this.onSignedIn = onSignedIn;
    this.org = remembered();
  }

  show(title, lede, ...content) {
    replace(
      this.body,
      h("h1", { id: "signin-title" }, title),
      lede ? h("p", { class: "lede" }, lede) : null,
      content,
    );
    const first = this.body.querySelector("input:not([readonly]), a.btn, button");
    if (first) first.focus();
  }

  // Where to go once the server holds a session: its stage decides the next step.
  async finish() {
    try {
      const data = await get("/v1/session", { quiet401: true });
      this.onSignedIn(data);
    } catch (error) {
      const code = error instanceof ApiError ? error.problem?.code : "";
      if (code === "mfa_required") this.mfa();
      else if (code === "enrol_required") this.enrol();
      else this.start(error.detail || String(error));
    }
  }

  // ---- 1. the org
  async start(message = "") {
    if (this.org && !message) {
      if (await this.methods(this.org, { quiet: true })) return;
    }
    const org = h("input", {
      class: "input",
      id: "signin-org",
      name: "organization",
      autocomplete: "organization",
      spellcheck: "false",
      required: true,
      value: this.org,
      "aria-describedby": "signin-org-hint org-error",
    });
    const error = h("p", { class: "field-error", id: "org-error", role: "alert" }, message);
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Continue");
    const form = h(
      "form",
      { class: "stack", id: "org-form", novalidate: true },
      field("signin-org", "Organization", org, "Your organization's name in Astralog, e.g. acme."),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = org.value.trim();
      if (!name) return fail(org, error, "Enter your organization's name.");
      const done = busy(submit, "Looking it up…");
      const ok = await this.methods(name, { error, input: org });
      if (!ok) done();
    });
    this.show("Sign in", "Search your logs and manage the storage you own.", form, this.tokenPath());
  }

  // ---- 2. the org's ways in: SSO buttons and/or email + password
  async methods(name, { quiet = false, error, input } = {}) {
    let options;
    try {
      options = await get(`/v1/auth/orgs/${encodeURIComponent(name)}`, { quiet401: true });
    } catch (err) {
      if (!quiet) {
        const text = err.status === 404 ? `No organization is named ${name}. Check the spelling.` : err.detail;
        fail(input, error, text);
      }
      return false;
    }
    this.org = options.name || name;
    remember(this.org);
    const connections = options.sso || options.connections || [];
    const returnTo = location.pathname + location.search;
    const buttons = connections.map((c) =>
      h(
        "a",
        {
          class: "btn btn-block sso-btn",
          href: `/v1/auth/sso/${encodeURIComponent(c.id)}/start?return_to=${encodeURIComponent(returnTo)}`,
          dataset: { connection: c.id },
        },
        icon("key", "icon-sm"),
        `Continue with ${c.name}`,
      ),
    );
    // With SSO enforced the password form hides behind a small link: the break-glass owner's
    // way in when the identity provider is down or misconfigured.
    const password = options.password === false ? this.breakGlass() : this.passwordForm();
    const change = h("button", { type: "button", class: "btn btn-ghost btn-xs", id: "change-org" }, "Change");
    change.addEventListener("click", () => {
      this.org = "";
      this.start();
    });
    this.show(
      "Sign in",
      null,
      h("p", { class: "lede org-line" }, "to ", h("strong", { id: "signin-org-name" }, this.org), " ", change),
      buttons.length ? h("div", { class: "stack sso-list" }, buttons) : null,
      buttons.length && options.password !== false ? h("div", { class: "or", role: "separator" }, "or") : null,
      !buttons.length && options.password === false
        ? h("p", { class: "field-error", role: "alert" }, "This organization has no identity provider to sign in with. Ask an org admin.")
        : null,
      password,
      this.tokenPath(this.org),
    );
    return true;
  }

  breakGlass() {
    return h(
      "details",
      { class: "signin-foot break-glass", id: "break-glass" },
      h("summary", { id: "break-glass-toggle" }, "Break-glass owner sign-in"),
      h("p", { class: "field-hint" }, "Only for the owner account kept for when single sign-on is unavailable; every use is audited."),
      this.passwordForm(),
    );
  }

  passwordForm() {
    const email = h("input", {
      class: "input",
      id: "signin-email",
      name: "email",
      type: "email",
      autocomplete: "username",
      spellcheck: "false",
      required: true,
    });
    const password = passwordInput("signin-password", "current-password");
    const error = h("p", { class: "field-error", id: "password-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
    const form = h(
      "form",
      { class: "stack", id: "password-form", novalidate: true },
      field("signin-email", "Email", email),
      field("signin-password", "Password", password.wrap),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!email.value.trim()) return fail(email, error, "Enter your email address.");
      if (!password.input.value) return fail(password.input, error, "Enter your password.");
      const done = busy(submit, "Signing in…");
      let answer;
      try {
        // The answer names the new session's CSRF token, needed by the steps that follow.
        answer = await post(
          "/v1/auth/password",
          { org: this.org, email: email.value.trim(), password: password.input.value },
          { quiet401: true },
        );
      } catch (err) {
        done();
        return fail(password.input, error, err.detail);
      }
      setCsrf(answer.csrf_token);
      this.finish();
    });
    return form;
  }

  // ---- 3. the second factor
  mfa(recovery = false) {
    const input = codeInput(recovery ? "signin-recovery" : "signin-code", { recovery });
    const error = h("p", { class: "field-error", id: "mfa-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Verify");
    const toggle = h(
      "button",
      { type: "button", class: "btn btn-ghost btn-sm", id: "toggle-recovery" },
      recovery ? "Use the authenticator app instead" : "Use a recovery code instead",
    );
    toggle.addEventListener("click", () => this.mfa(!recovery));
    const form = h(
      "form",
      { class: "stack", id: "mfa-form", novalidate: true },
      field(
        input.id,
        recovery ? "Recovery code" : "Authenticator code",
        input,
        recovery ? "One of the codes you stored when you set up MFA; each works once." : null,
      ),
      error,
      submit,
      toggle,
      passkeyStep(() => this.finish(), (text) => fail(input, error, text)),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!recovery && !/^\d{6}$/.test(value)) return fail(input, error, "Enter the 6 digits your app shows now.");
      if (!value) return fail(input, error, "Enter one of your recovery codes.");
      const done = busy(submit, "Checking…");
      try {
        await post("/v1/auth/mfa", recovery ? { recovery_code: value } : { code: value }, { quiet401: true });
      } catch (err) {
        done();
        if (err.status === 401 && !err.problem?.code) return this.start("Your sign-in expired. Start again.");
        return fail(input, error, err.detail);
      }
      this.finish();
    });
    this.show(
      "Two-step verification",
      recovery
        ? "Enter a recovery code."
        : "Enter the 6-digit code from your authenticator app.",
      form,
    );
  }

  // Either factor completes the sign-in: a passkey (where the browser has WebAuthn) or the app.
  enrol() {
    const box = h("div", { class: "stack" });
    const error = h("p", { class: "field-error", id: "enrol-error", role: "alert", hidden: true });
    const passkey = passkeyEnrolment(() => this.finish(), (text) => {
      error.textContent = text;
      error.hidden = false;
    });
    this.show(
      "Set up two-step verification",
      passkey
        ? "Your organization requires a second step at every sign-in: a passkey (a security key, your phone or this device's screen lock) or an authenticator app."
        : "Your organization requires an authenticator app for every sign-in.",
      passkey ? h("div", { class: "stack" }, passkey, error, h("div", { class: "or", role: "separator" }, "or")) : null,
      box,
    );
    enrolTotp(box, { onDone: () => this.finish() });
  }

  // ---- accepting an invitation: continue with one of the org's identity providers, or choose
  // a password (unless the org enforces SSO); either way signed in
  async invitation() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token")
      || new URLSearchParams(location.search).get("token");
    if (!token) {
      history.replaceState(null, "", "/");
      return this.start("That invitation link is incomplete. Ask for a new one.");
    }
    let options;
    try {
      // POST: the token stays out of every URL the server sees.
      options = await post("/v1/auth/invitations/options", { token }, { quiet401: true });
    } catch (err) {
      history.replaceState(null, "", "/");
      return this.start(err.detail || String(err));
    }
    const error = h("p", { class: "field-error", id: "invite-sso-error", role: "alert" });
    const buttons = (options.sso || []).map((c) => this.inviteSso(token, c, error));
    const password = options.password ? this.invitePassword(token) : null;
    this.show(
      "Join your organization",
      password
        ? `Join ${options.org} as ${options.email}: continue with your organization's sign-in or choose a password.`
        : `Join ${options.org} as ${options.email} with your organization's sign-in.`,
      buttons.length ? h("div", { class: "stack sso-list" }, buttons) : null,
      error,
      buttons.length && password ? h("div", { class: "or", role: "separator" }, "or") : null,
      password,
    );
  }

  // The server keeps the token with the attempt's secrets and answers where to go next.
  inviteSso(token, connection, error) {
    const button = h(
      "button",
      { type: "button", class: "btn btn-block sso-btn", dataset: { connection: connection.id } },
      icon("key", "icon-sm"),
      `Continue with ${connection.name}`,
    );
    button.addEventListener("click", async () => {
      const done = busy(button, "Opening…");
      let answer;
      try {
        answer = await post("/v1/auth/invitations/sso", { token, connection_id: connection.id }, { quiet401: true });
      } catch (err) {
        done();
        error.textContent = err.detail || String(err);
        return;
      }
      history.replaceState(null, "", "/invitation");  // the token leaves the address bar and history
      location.assign(answer.authorization_url);
    });
    return button;
  }

  invitePassword(token) {
    const password = passwordInput("invite-password", "new-password");
    const again = passwordInput("invite-password-again", "new-password");
    const error = h("p", { class: "field-error", id: "invite-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Set password and sign in");
    const form = h(
      "form",
      { class: "stack", id: "invite-form", novalidate: true },
      field("invite-password", "New password", password.wrap, "At least 8 characters. A long phrase is easiest to remember; common passwords are refused."),
      field("invite-password-again", "The same password again", again.wrap),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (password.input.value.length < 8) return fail(password.input, error, "Use at least 8 characters.");
      if (password.input.value !== again.input.value) return fail(again.input, error, "The two passwords differ.");
      const done = busy(submit, "Setting up…");
      let answer;
      try {
        const body = { token, password: password.input.value };
        answer = await post("/v1/auth/invitations/accept", body, { quiet401: true });
      } catch (err) {
        done();
        return fail(password.input, error, err.detail);
      }
      setCsrf(answer.csrf_token);
      history.replaceState(null, "", "/");  // the token leaves the address bar and history
      this.finish();
    });
    return form;
  }

  // ---- the bootstrap path: a management token printed by `astralog init`
  tokenPath(org = "") {
    const token = h("input", {
      class: "input input-mono",
      id: "signin-token",
      name: "token",
      type: "password",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "alt_…",
      required: true,
      "aria-describedby": "signin-hint signin-error",
    });
    const error = h("p", { class: "field-error", id: "signin-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn" }, "Sign in with token");
    const form = h(
      "form",
      { class: "stack", id: "token-form", novalidate: true },
      h(
        "div",
        { class: "field" },
        h("label", { for: "signin-token" }, "Admin token"),
        token,
        h(
          "p",
          { class: "field-hint", id: "signin-hint" },
          "The ",
          h("code", {}, "alt_…"),
          " token printed in the terminal when Astralog first started (",
          h("code", {}, "Admin token:"),
          "). Lost it? Issue a new one where Astralog runs:",
        ),
        codeBlock(issueCommand(org), { label: "Command that issues an admin token", what: "Command copied" }),
        error,
      ),
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = token.value.trim();
      if (!value) return fail(token, error, "Paste your admin token to sign in.");
      const done = busy(submit, "Signing in…");
      try {
        const data = await post("/v1/session", { token: value }, { quiet401: true });
        this.onSignedIn(data);
      } catch (err) {
        done();
        fail(
          token,
          error,
          err instanceof ApiError && err.status === 401
            ? "That token was not accepted. Check for a missing character, or issue a new one."
            : err.detail || err.message,
        );
      }
    });
    return h(
      "details",
      { class: "signin-foot token-path", id: "token-path" },
      h("summary", { id: "signin-use-token" }, "Sign in with an admin token"),
      h("p", { class: "field-hint" }, "For setting up a new installation, before anyone has an account."),
      form,
    );
  }
}

// A command a shell takes as it is: the org (the first start's is "demo"), quoted when it needs it.
function issueCommand(org) {
  const name = org || "demo";
  const quoted = /^[\w.@-]+$/.test(name) ? name : `'${name.replaceAll("'", "'\\''")}'`;
  const lines = [`astralog tokens issue --org ${quoted} --name admin`];
  for (let i = 0; i < ADMIN_SCOPES.length; i += 4) {
    lines.push(`  ${ADMIN_SCOPES.slice(i, i + 4).map((s) => `--scope ${s}`).join(" ")}`);
  }
  return lines.join(" \\\n");
}
