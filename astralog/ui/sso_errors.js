// What a person reads when single sign-on sends them back with ?signin_error=<reason>. The
// server sends only the short reason (its full text, which may name hosts and claims, goes to
// the audit log), so every reason any SsoFailure raises has its sentence here; the test
// tests/test_ui_sso_errors.py fails when a new reason has none.

const ASK_ADMIN = "Ask an org admin to check the identity provider's settings under Security.";
const AGAIN = "Start the sign-in again from this page.";

const MESSAGES = {
  // the sign-in itself
  state_missing: `This sign-in expired, was already used, or was started in another browser. ${AGAIN}`,
  state_mismatch: `This answer from the identity provider belongs to another sign-in (another tab?). ${AGAIN}`,
  nonce_mismatch: `The identity provider's answer does not belong to this sign-in. ${AGAIN}`,
  code_missing: `The identity provider sent no sign-in code back. ${AGAIN}`,
  code_rejected: `The identity provider refused the sign-in code (it works once and expires quickly). ${AGAIN}`,
  idp_refused: "The identity provider did not sign you in (you cancelled, or it refused you). Try again, or ask your IT team.",
  token_expired: `The identity provider's answer has expired (is this computer's or the provider's clock off?). ${AGAIN}`,
  session_ended: "Your session here ended while you were at the identity provider. Sign in again.",
  reauth_stale: "The identity provider did not ask for your login again, so this cannot count as a fresh confirmation. Try again and sign in at the provider.",
  reauth_required: "Linking an identity provider needs a recent sign-in. Confirm it is you (re-authenticate), then link it again.",
  connection_removed: "This identity provider was removed from your organization meanwhile. Use another way to sign in.",
  // who you are here
  no_role: "Your identity provider's groups grant no role in this organization. Ask an org admin to map your group to a role.",
  not_provisioned: "No account here is linked to your identity provider account, and accounts are not created automatically. Ask an org admin to invite you.",
  email_unverified: "Your identity provider did not vouch for your email address, so no account could be created. Ask an org admin to invite you.",
  domain_not_verified: "Accounts are created at first sign-in only for your organization's verified email domains. Ask an org admin to invite you.",
  email_in_use: "An account with your email already exists. Sign in with your password, then link this identity provider under My account.",
  identity_in_use: "This identity provider account is already linked to another account here. Sign in at the provider as yourself.",
  identity_mismatch: "That identity provider account is not the one linked to the person signed in here. Sign in at the provider as yourself.",
  deprovisioned: "This account was deprovisioned. Ask an org admin if you need access again.",
  invitation_invalid: "This invitation is unknown, already used or expired. Ask an org admin for a new one.",
  invitation_email_mismatch: "The identity provider account you used does not have the invited, verified email address. Sign out at the provider and sign in there as the person the invitation was sent to.",
  // the provider's set-up
  provider_unreachable: `The identity provider could not be reached. Try again in a moment. ${ASK_ADMIN}`,
  provider_error: `The identity provider answered in a way that could not be used. ${ASK_ADMIN}`,
  issuer_mismatch: `The identity provider's answer came from an issuer other than the configured one. ${ASK_ADMIN}`,
  iss_missing: `The identity provider's answer does not say which provider sent it, which is required when an organization has several. ${ASK_ADMIN}`,
  no_id_token: `The identity provider returned no ID token (is "openid" among the scopes?). ${ASK_ADMIN}`,
  unknown_key: `The identity provider signed with a key it does not publish. ${ASK_ADMIN}`,
  bad_algorithm: `The identity provider signs with an algorithm this installation does not accept. ${ASK_ADMIN}`,
  bad_token: `The identity provider's token could not be verified. ${ASK_ADMIN}`,
  bad_claims: `The identity provider's token is not meant for this installation or lacks required claims. ${ASK_ADMIN}`,
  bad_endpoint: `The identity provider publishes an address this installation does not accept (plain http?). ${ASK_ADMIN}`,
  unsafe_endpoint: `The identity provider's address is on a private or local network, which this installation does not allow. ${ASK_ADMIN}`,
  replayed: `The identity provider sent a message that was already used. ${AGAIN}`,
};

// A known reason's sentence; anything else (an older or hand-made link) says so without echoing
// more than a short code, so a crafted link cannot put its own words on the sign-in page.
export function ssoErrorText(reason) {
  const code = String(reason || "").slice(0, 60);
  if (Object.hasOwn(MESSAGES, code)) return MESSAGES[code];
  return /^[a-z_]+$/.test(code)
    ? `Single sign-on failed (${code.replaceAll("_", " ")}). ${AGAIN}`
    : `Single sign-on failed. ${AGAIN}`;
}
