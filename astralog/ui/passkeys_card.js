// The "Passkeys" card of My account: list, add (after a recent sign-in) and remove passkeys.
// Apart from passkeys.js, which the re-authentication dialog (mfa.js) itself uses: no cycle.
import { del, get, post } from "./api.js";
import { actionTable, card, confirmAndRun, errorState, fmtDateTime, formDialog, h, icon, replace, toast } from "./dom.js";
import { withReauth } from "./mfa.js";
import { createPasskey, supported } from "./passkeys.js";

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
