// What sign-in and "My account" share: TOTP enrolment (QR code, secret, first code), the
// recovery codes shown once, and re-authentication before a sensitive action.

import { ApiError, get, post, setCsrf } from "./api.js";
import { copyButton, h, icon, openDialog, replace, toast } from "./dom.js";
import { passkeyAnswer, supported as passkeysSupported } from "./passkeys.js";
import { ssoErrorText } from "./sso_errors.js";

// The QR code arrives as SVG text. It goes into an <img> as a data: URL: an image's SVG cannot
// run scripts or reach the page, and the policy allows `img-src data:`. It is never parsed as
// markup into the document.
export function qrImage(svgText, label) {
  // SVG made for inline HTML may lack its namespace; as an image document it needs one.
  const standalone = /^<svg\b[^>]*\sxmlns=/.test(svgText)
    ? svgText
    : svgText.replace(/^<svg\b/, '<svg xmlns="http://www.w3.org/2000/svg"');
  const bytes = new TextEncoder().encode(standalone);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return h("img", {
    class: "totp-qr",
    id: "totp-qr",
    src: `data:image/svg+xml;base64,${btoa(binary)}`,
    alt: label,
    width: "180",
    height: "180",
  });
}

export function codeInput(id, { recovery = false } = {}) {
  return h("input", {
    class: "input input-mono code-input",
    id,
    name: recovery ? "recovery_code" : "code",
    type: "text",
    inputmode: recovery ? "text" : "numeric",
    autocomplete: "one-time-code",
    spellcheck: "false",
    maxlength: recovery ? "40" : "6",
    placeholder: recovery ? "xxxx-xxxx" : "123456",
    required: true,
  });
}

// Start TOTP enrolment (POST /v1/me/totp), then confirm the first code. `onDone` gets the
// recovery codes after they were shown and acknowledged.
export async function enrolTotp(box, { onDone, onCancel } = {}) {
  replace(box, h("p", { class: "muted" }, "Preparing a secret for your authenticator app…"));
  let started;
  try {
    started = await withReauth(() => post("/v1/me/totp", {}));
  } catch (error) {
    replace(box, h("p", { class: "field-error", role: "alert" }, error.detail || String(error)));
    return;
  }
  const code = codeInput("totp-code");
  const error = h("p", { class: "field-error", id: "totp-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Turn on");
  const secret = h("input", {
    class: "input input-mono",
    id: "totp-secret",
    readonly: true,
    value: started.secret,
    "aria-label": "Secret for manual entry",
    spellcheck: "false",
  });
  const form = h(
    "form",
    { class: "stack", novalidate: true, "aria-labelledby": "totp-step-title" },
    h(
      "div",
      { class: "totp-setup" },
      qrImage(started.qr_svg, "QR code to scan with an authenticator app"),
      h(
        "div",
        { class: "stack" },
        h("h3", { id: "totp-step-title" }, "Scan the code"),
        h(
          "p",
          { class: "field-hint" },
          "Scan it with an authenticator app (1Password, Google Authenticator, Aegis…), or type the secret:",
        ),
        h("div", { class: "secret-box" }, secret, copyButton(() => secret.value, { what: "Secret copied", cls: "btn" })),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "totp-code" }, "The 6-digit code the app shows"),
      code,
      error,
    ),
    h(
      "div",
      { class: "form-actions" },
      onCancel
        ? h("button", { type: "button", class: "btn", onclick: () => onCancel() }, "Cancel")
        : null,
      submit,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!/^\d{6}$/.test(code.value.trim())) {
      fail(code, error, "Enter the 6 digits your app shows now.");
      return;
    }
    submit.disabled = true;
    try {
      const confirmed = await post("/v1/me/totp/confirm", { code: code.value.trim() });
      showRecoveryCodes(box, confirmed.recovery_codes || [], () => onDone && onDone());
    } catch (err) {
      fail(code, error, err.detail || String(err));
      submit.disabled = false;
    }
  });
  replace(box, form);
  code.focus();
}

export function fail(input, error, text) {
  error.textContent = text;
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

// The one time recovery codes are visible: Astralog keeps only their hashes.
export function showRecoveryCodes(box, codes, onDone) {
  const text = codes.join("\n");
  const done = h("button", { type: "button", class: "btn btn-primary" }, "I have stored them");
  done.addEventListener("click", () => onDone());
  const download = h(
    "a",
    {
      class: "btn",
      download: "astralog-recovery-codes.txt",
      href: URL.createObjectURL(new Blob([`${text}\n`], { type: "text/plain" })),
    },
    icon("download", "icon-sm"),
    "Download",
  );
  replace(
    box,
    h(
      "div",
      { class: "stack", role: "group", "aria-labelledby": "recovery-title" },
      h("h3", { id: "recovery-title" }, "Recovery codes"),
      h(
        "div",
        { class: "callout callout-warn", role: "note" },
        icon("alert"),
        h(
          "span",
          {},
          h("strong", {}, "Store these codes now. "),
          "Each signs you in once if you lose your authenticator. They are shown only once.",
        ),
      ),
      h(
        "ol",
        { class: "recovery-codes mono", id: "recovery-codes", tabindex: "0" },
        codes.map((c) => h("li", {}, c)),
      ),
      h(
        "div",
        { class: "row" },
        copyButton(text, { label: "Copy all", what: "Recovery codes copied", cls: "btn" }),
        download,
        h("span", { class: "spacer" }),
        done,
      ),
    ),
  );
  done.focus();
}

// ------------------------------------------------------------------ re-authentication

// Run `action`; when the server answers 403 reauth_required (a sensitive action long after
// sign-in), ask for the password (and a code or a passkey) again, then run it once more.
export async function withReauth(action) {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ApiError && error.problem?.code === "reauth_required")) throw error;
    const byToken = error.problem.signed_in_with === "token";
    const confirmed = await (byToken ? reauthenticateWithToken() : reauthenticate());
    if (!confirmed) throw error;
    return action();
  }
}

// A session opened with the admin token has no person, password or code behind it: the token is
// the proof, so signing in with it again (POST /v1/session) gives a fresh session to retry in.
async function reauthenticateWithToken() {
  let before = null;
  try {
    before = (await get("/v1/session")).principal;
  } catch {
    /* compared below only when known */
  }
  return new Promise((resolve) => {
    let confirmed = false;
    const token = h("input", {
      class: "input input-mono",
      id: "reauth-token",
      type: "password",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "alt_…",
      required: true,
    });
    const error = h("p", { class: "field-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary", form: "reauth-token-form" }, "Confirm");
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const form = h(
      "form",
      { id: "reauth-token-form", class: "stack", novalidate: true },
      h("div", { class: "field" }, h("label", { for: "reauth-token" }, "Admin token"), token),
      error,
    );
    const { close } = openDialog({
      title: "Confirm it is you",
      description: "This session was opened with an admin token. Enter it again to continue.",
      body: [form],
      actions: [cancel, submit],
      onClose: () => resolve(confirmed),
    });
    cancel.addEventListener("click", () => close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!token.value.trim()) return fail(token, error, "Enter the admin token (alt_…).");
      submit.disabled = true;
      try {
        const answer = await post("/v1/session", { token: token.value.trim() }, { quiet401: true });
        setCsrf(answer.csrf_token);
        // Another token is another identity (maybe another org): show it, never retry as it.
        if (before && answer.principal !== before) return location.reload();
        confirmed = true;
        close();
      } catch (err) {
        fail(token, error, err.detail || String(err));
        submit.disabled = false;
      }
    });
    token.focus();
  });
}

async function reauthenticate() {
  let me = {};
  try {
    me = await get("/v1/me");
  } catch {
    /* the dialog still offers the password */
  }
  return new Promise((resolve) => {
    let confirmed = false;
    const password = h("input", {
      class: "input",
      id: "reauth-password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    const code = codeInput("reauth-code");
    const error = h("p", { class: "field-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "btn btn-primary", form: "reauth-form" }, "Confirm");
    const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    const withPassword = passwordWorks(me);
    const sso = ssoChoices(me.identities || []);
    const passkey = me.passkeys > 0 && passkeysSupported()
      ? h("button", { type: "button", class: "btn", id: "reauth-passkey" }, icon("shield", "icon-sm"), "Use a passkey")
      : null;
    const form = h(
      "form",
      { id: "reauth-form", class: "stack", novalidate: true },
      h("div", { class: "field" }, h("label", { for: "reauth-password" }, "Password"), password),
      me.totp === false
        ? null
        : h("div", { class: "field" }, h("label", { for: "reauth-code" }, "Authenticator code"), code),
      passkey ? h("div", { class: "row" }, passkey) : null,
      error,
    );
    const body = [
      withPassword ? form : null,
      withPassword && sso ? h("p", { class: "reauth-or muted" }, "or") : null,
      sso,
      withPassword || sso ? null : h("p", {}, "Sign out and sign in again, then retry."),
    ];
    const { close } = openDialog({
      title: "Confirm it is you",
      description: "This action needs a recent sign-in.",
      body,
      actions: withPassword ? [cancel, submit] : [cancel],
      onClose: () => resolve(confirmed),
    });
    cancel.addEventListener("click", () => close());
    const buttons = [submit, passkey].filter(Boolean);
    const confirm = async (second) => {
      if (!password.value) return fail(password, error, "Enter your password.");
      buttons.forEach((b) => (b.disabled = true));
      try {
        const answer = await post("/v1/auth/reauth", { password: password.value, ...(await second()) }, { quiet401: true });
        if (answer?.csrf_token) setCsrf(answer.csrf_token); // a step-up may rotate the session
        confirmed = true;
        close();
      } catch (err) {
        fail(password, error, err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : err.detail || err.message || String(err));
        buttons.forEach((b) => (b.disabled = false));
      }
    };
    const withPasskey = async () => ({ passkey: await passkeyAnswer() });
    passkey?.addEventListener("click", () => confirm(withPasskey));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const typed = code.isConnected ? code.value.trim() : "";
      // With a passkey and no authenticator app, Enter (or Confirm) asks for the passkey.
      confirm(typed ? async () => ({ code: typed }) : passkey && !code.isConnected ? withPasskey : async () => ({}));
    });
    (withPassword ? password : cancel).focus();
  });
}

// A password confirms it is you unless the org enforces SSO (the break-glass owner excepted).
function passwordWorks(me) {
  if (me.password === false) return false;
  return !(me.policy?.enforce_sso && !me.break_glass);
}

// "Confirm with <IdP>": a fresh login there (mode=reauth) brings the browser back to this page,
// where the action is run again; the note says so once the page is back.
function ssoChoices(identities) {
  const here = location.pathname + location.search;
  const seen = new Set();
  const links = identities
    .filter((i) => i.connection_id && !seen.has(i.connection_id) && seen.add(i.connection_id))
    .map((i) => {
      const name = i.connection_name || "SSO";
      const href = `/v1/auth/sso/${encodeURIComponent(i.connection_id)}/start?mode=reauth&return_to=${encodeURIComponent(here)}`;
      const link = h("a", { class: "btn", href }, icon("shield", "icon-sm"), `Confirm with ${name}`);
      link.addEventListener("click", () => remember(REAUTH_NOTE, name));
      return link;
    });
  return links.length ? h("div", { class: "row reauth-sso" }, links) : null;
}

const REAUTH_NOTE = "astralog.reauth";

function remember(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch {
    /* no note after the round trip; the action still works when retried */
  }
}

// Back from the identity provider to a signed-in page (link or reauth mode): a failure arrives as
// ?signin_error= and is shown once; a re-authentication that worked says the action awaits.
export function noteSsoReturn() {
  let name = null;
  try {
    name = sessionStorage.getItem(REAUTH_NOTE);
    sessionStorage.removeItem(REAUTH_NOTE);
  } catch {
    /* no note to show */
  }
  const params = new URLSearchParams(location.search);
  const reason = params.get("signin_error");
  if (reason) {
    params.delete("signin_error");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    toast(ssoErrorText(reason), { error: true, timeout: 8000 });
  } else if (name) {
    toast(`Confirmed with ${name}. Run the action again.`, { timeout: 6000 });
  }
}
