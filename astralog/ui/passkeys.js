// Passkeys (WebAuthn): the ceremonies, the "Use a passkey" button of the sign-in's second step
// and of MFA enrolment (My account's card is passkeys_card.js). The server sends WebAuthn options as JSON with
// base64url binary fields; the browser's API takes and returns ArrayBuffers, converted here.

import { post } from "./api.js";
import { h, icon } from "./dom.js";

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
export async function createPasskey(options, name) {
  let cred;
  try {
    cred = await navigator.credentials.create({ publicKey: creationOptions(options.public_key) });
  } catch (err) {
    throw new Error(err.name === "NotAllowedError" ? "The passkey was not created (cancelled or timed out)." : err.message);
  }
  return post("/v1/me/passkeys", { ceremony: options.ceremony, name, credential: credentialJson(cred) });
}
