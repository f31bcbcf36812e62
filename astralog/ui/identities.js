// My account's single sign-on card: the org's identity providers, which of them hold an identity
// linked to this account, "Link" (a round trip through the provider in mode=link) and "Unlink"
// (after a recent sign-in; refused when it is the last way in).

import { del, get } from "./api.js";
import { card, confirmAndRun, errorState, fmtRelative, h, replace, toast } from "./dom.js";
import { withReauth } from "./mfa.js";

export function identitiesCard() {
  const box = h("div", { class: "stack", id: "identities" }, h("p", { class: "muted" }, "Loading…"));
  const section = card(
    {
      id: "identities-title",
      title: "Single sign-on",
      lede: "Link your account at your org's identity provider, then sign in with it instead of a password.",
    },
    box,
  );
  render(box, section);
  return section;
}

async function render(box, section) {
  let data;
  try {
    data = await get("/v1/me/identities");
  } catch (error) {
    replace(box, errorState(error, () => render(box, section)));
    return;
  }
  const connections = data.connections || [];
  // An org without SSO has nothing to link: the card would only be noise.
  section.hidden = connections.length === 0;
  const linked = new Map((data.identities || []).map((i) => [i.connection_id, i]));
  replace(
    box,
    h(
      "ul",
      { class: "conn-list identity-list" },
      connections.map((c) => item(c, linked.get(c.id), () => render(box, section))),
    ),
  );
}

function item(connection, identity, reload) {
  const action = identity ? unlinkButton(connection, reload) : linkButton(connection);
  return h(
    "li",
    { class: "conn-item identity-item", dataset: { connection: connection.id, linked: String(Boolean(identity)) } },
    h(
      "div",
      { class: "identity-name" },
      h("strong", {}, connection.name),
      h(
        "div",
        { class: "field-hint" },
        identity
          ? [h("span", { class: "badge badge-ok" }, "Linked"), ` ${fmtRelative(identity.linked_at)}`]
          : "Not linked",
      ),
    ),
    action,
  );
}

function linkButton(connection) {
  const back = encodeURIComponent(location.pathname);
  return h(
    "a",
    {
      class: "btn btn-sm btn-primary",
      href: `/v1/auth/sso/${encodeURIComponent(connection.id)}/start?mode=link&return_to=${back}`,
      "aria-label": `Link your ${connection.name} identity`,
    },
    "Link",
  );
}

function unlinkButton(connection, reload) {
  const button = h(
    "button",
    { type: "button", class: "btn btn-sm btn-danger", "aria-label": `Unlink ${connection.name}` },
    "Unlink",
  );
  button.addEventListener("click", () =>
    confirmAndRun(
      {
        title: `Unlink ${connection.name}?`,
        text: "You can no longer sign in with it until you link it again. Your current session stays.",
        confirm: "Unlink",
      },
      async () => {
        await withReauth(() => del(`/v1/me/identities/${encodeURIComponent(connection.id)}`));
        toast(`${connection.name} unlinked`);
        reload();
      },
    ),
  );
  return button;
}
