// Passkeys (WebAuthn): the "Passkeys" card of My account (add, list, remove) and the "Use a
// passkey" button of the sign-in's second step. The server sends WebAuthn options as JSON with
// base64url binary fields; the browser's API takes and returns ArrayBuffers, converted here.

import { del, get, post } from "./api.js";
import { actionTable, card, confirmAndRun, errorState, fmtDateTime, formDialog, h, icon, replace, toast } from "./dom.js";
import { withReauth } from "./mfa.js";

export const supported = () => typeof window.PublicKeyCredential === "function" && Boolean(navigator.credentials);

function fromB64url(text) {
  const b64 = text.replaceAll("-", "+").replaceAll("_", "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0)).buffer;
}

function toB64url(buffer) {
  let binary = "";
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

function creationOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), user: { ...o.user, id: fromB64url(o.user.id) }, excludeCredentials: withIds(o.excludeCredentials) };
}

function requestOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), allowCredentials: withIds(o.allowCredentials) };
}

// The credential as the server reads it (the WebAuthn JSON shape).
function credentialJson(cred) {
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  const id = toB64url(cred.rawId);
  return { id, rawId: id, type: cred.type, response, clientExtensionResults: cred.getClientExtensionResults?.() || {} };
}

// A passkey answer to this session's challenge: what POST /v1/auth/mfa and /v1/auth/reauth take.
export async function passkeyAnswer() {
  const options = await post("/v1/auth/passkeys/options", {});
  const cred = await navigator.credentials.get({ publicKey: requestOptions(options.public_key) });
  return { ceremony: options.ceremony, credential: credentialJson(cred) };
}

// "Use a passkey" for the sign-in's second step; `onDone` runs once the session is complete.
export function passkeyStep(onDone, onError) {
  if (!supported()) return null;
  const button = h("button", { type: "button", class: "btn", id: "signin-passkey" }, icon("shield", "icon-sm"), "Use a passkey");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await post("/v1/auth/mfa", { passkey: await passkeyAnswer() }, { quiet401: true });
      onDone();
    } catch (err) {
      button.disabled = false;
      onError(err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : err.detail || err.message || String(err));
    }
  });
  return button;
}

// "Use a passkey" at the sign-in's MFA enrolment (the org requires MFA): registering one
// completes the sign-in, as confirming an authenticator app does.
export function passkeyEnrolment(onDone, onError) {
  if (!supported()) return null;
  const button = h("button", { type: "button", class: "btn btn-block", id: "enrol-passkey" }, icon("shield", "icon-sm"), "Use a passkey");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await createPasskey(await post("/v1/me/passkeys/options", {}), "");
      onDone();
    } catch (err) {
      button.disabled = false;
      onError(err.detail || err.message || String(err));
    }
  });
  return button;
}

// The browser's own dialog for the creation options, then the server keeps the new passkey.
async function createPasskey(options, name) {
  let cred;
  try {
    cred = await navigator.credentials.create({ publicKey: creationOptions(options.public_key) });
  } catch (err) {
    throw new Error(err.name === "NotAllowedError" ? "The passkey was not created (cancelled or timed out)." : err.message);
  }
  return post("/v1/me/passkeys", { ceremony: options.ceremony, name, credential: credentialJson(cred) });
}

// ---- My account

export function passkeysCard() {
  const box = h("div", { class: "stack", id: "passkeys-box" });
  render(box);
  return card(
    {
      id: "passkeys-title",
      title: "Passkeys",
      lede: "A security key, phone or this device's screen lock as your second step, instead of a code.",
    },
    box,
  );
}

async function render(box) {
  let passkeys;
  try {
    passkeys = await get("/v1/me/passkeys");
  } catch (error) {
    replace(box, errorState(error, () => render(box)));
    return;
  }
  const add = h("button", { type: "button", class: "btn btn-primary", id: "passkey-add" }, icon("plus", "icon-sm"), "Add a passkey");
  add.addEventListener("click", () => addPasskey(box));
  if (!supported()) add.disabled = true;
  const table = passkeys.length
    ? actionTable("passkeys-table", ["Name", "Added", "Last used"], passkeys.map((p) => row(p, box)))
    : h("p", { class: "muted", id: "passkeys-state" }, supported() ? "No passkeys." : "This browser cannot use passkeys.");
  replace(box, table, h("div", {}, add));
}

// A recent sign-in first (the options need it), then a name, then the browser's own dialog.
async function addPasskey(box) {
  let options;
  try {
    options = await withReauth(() => post("/v1/me/passkeys/options", {}));
  } catch (err) {
    toast(err.detail || String(err), { error: true });
    return;
  }
  const name = h("input", { class: "input", id: "passkey-name", autocomplete: "off", maxlength: "64", placeholder: "Work laptop" });
  formDialog({
    id: "passkey-form",
    title: "Add a passkey",
    description: "Your browser then asks for a security key, your phone or this device's screen lock.",
    fields: [h("div", { class: "field" }, h("label", { for: "passkey-name" }, "Name"), name)],
    submitLabel: "Continue",
    async onSubmit(close) {
      await createPasskey(options, name.value.trim());
      close();
      toast("Passkey added");
      render(box);
    },
  });
}

function row(p, box) {
  const remove = h("button", { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Remove passkey ${p.name}` }, "Remove");
  remove.addEventListener("click", () =>
    confirmAndRun({ title: `Remove ${p.name}?`, text: "It will no longer sign you in.", confirm: "Remove", danger: true }, async () => {
      await withReauth(() => del(`/v1/me/passkeys/${encodeURIComponent(p.id)}`));
      toast(`${p.name} removed`);
      render(box);
    }),
  );
  const seconds = (t) => (t ? fmtDateTime(new Date(t * 1000)) : "Never");
  return h(
    "tr",
    { dataset: { passkey: p.id } },
    h("td", { "data-label": "Name" }, h("strong", {}, p.name), h("div", { class: "ln-sub" }, (p.transports || []).join(" · "))),
    h("td", { "data-label": "Added" }, seconds(p.created_at)),
    h("td", { "data-label": "Last used" }, seconds(p.last_used_at)),
    h("td", { class: "actions" }, remove),
  );
}
