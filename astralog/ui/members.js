// Members: people and service accounts of the org, their roles and source grants. Invitations
// and service-account tokens are shown once; deprovisioning and signing out take effect at once.

import { cached, get, invalidate, patch, post } from "./api.js";
import {
  actionTable,
  addButton,
  card,
  confirmAndRun,
  copyButton,
  errorState,
  fmtRelative,
  formDialog,
  h,
  icon,
  openDialog,
  pageHead,
  replace,
  stateView,
  tabs,
  toast,
} from "./dom.js";
import { withReauth } from "./mfa.js";

export function list(data, key) {
  if (Array.isArray(data)) return data;
  return (data && (data[key] || data.items)) || [];
}

// GET /v1/roles, as a list ordered from most to least powerful.
export async function loadRoles() {
  const data = await cached("/v1/roles");
  const roles = Array.isArray(data)
    ? data
    : Array.isArray(data.roles)
      ? data.roles
      : Object.entries(data.roles || data).map(([name, r]) => ({ name, ...r }));
  return [...roles].sort((a, b) => (b.rank || 0) - (a.rank || 0));
}

export function roleLabel(name) {
  return (name || "").replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

export async function mount(main, app) {
  const page = h("div", { class: "page" });
  replace(main, page);
  const canGrantOwner = (app.session.scopes || []).includes("owners:write");
  let roles = [];
  let sources = [];

  function head() {
    const everyone = h(
      "button",
      { type: "button", class: "btn", id: "sign-out-everyone" },
      "Sign out everyone",
    );
    everyone.addEventListener("click", signOutEveryone);
    return pageHead(
      "Members",
      "People sign in with a password or SSO and act with their role. Members and viewers see only the sources they are granted. Every change is recorded in the audit log.",
      everyone,
    );
  }

  async function load() {
    try {
      [roles, sources] = await Promise.all([loadRoles(), cached("/v1/sources")]);
    } catch (error) {
      replace(page, head(), errorState(error, load));
      return;
    }
    const view = tabs(
      [
        { label: "People", content: () => panel(renderPeople) },
        { label: "Service accounts", content: () => panel(renderServices) },
      ],
      { label: "Kinds of member" },
    );
    replace(page, head(), view.el);
  }

  function sourceName(id) {
    return sources.find((s) => s.id === id)?.name || id;
  }

  function grants(member) {
    if (member.sources === null || member.sources === undefined) {
      return h("span", { class: "muted" }, "All sources");
    }
    if (!member.sources.length) return h("span", { class: "muted" }, "No sources");
    return h(
      "ul",
      { class: "chips" },
      member.sources.map((id) => h("li", { class: "chip" }, sourceName(id))),
    );
  }

  // A tab's box, filled by `render` once its list arrives.
  function panel(render) {
    const box = h("div", { class: "stack" }, h("p", { class: "muted" }, "Loading…"));
    render(box);
    return box;
  }

  // ---- people

  async function renderPeople(box) {
    let people;
    try {
      people = list(await get("/v1/members?kind=person"), "members");
    } catch (error) {
      replace(box, errorState(error, () => renderPeople(box)));
      return;
    }
    const invite = addButton("invite-member", "Invite", () => inviteDialog(() => renderPeople(box)));
    replace(
      box,
      card(
        { id: "people-title", title: "People", lede: `${people.length} in this org`, action: invite, body: "card-body table-wrap" },
        people.length
          ? memberTable("members-table", people, () => renderPeople(box))
          : stateView({ title: "Nobody yet", text: "Invite the first person." }),
      ),
    );
  }

  function memberTable(id, rows, reload) {
    return actionTable(id, ["Name", "Role", "Sources", "Last sign-in"], rows.map((m) => memberRow(m, reload)));
  }

  function memberRow(member, reload) {
    const gone = member.state !== "active";
    const actions = [];
    if (!gone) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm",
            "aria-label": `Change role of ${member.email}`,
            onclick: () => accessDialog(member, reload),
          },
          "Change role",
        ),
      );
      if (member.kind === "service") {
        actions.push(
          h(
            "button",
            {
              type: "button",
              class: "btn btn-sm",
              "aria-label": `New token for ${member.email}`,
              onclick: () => serviceTokenDialog(member),
            },
            "New token",
          ),
        );
      } else {
        if (member.invited) {
          actions.push(
            h(
              "button",
              {
                type: "button",
                class: "btn btn-sm",
                "aria-label": `Resend invitation to ${member.email}`,
                onclick: () => resendInvitation(member),
              },
              "Resend invitation",
            ),
          );
        }
        actions.push(
          h(
            "button",
            {
              type: "button",
              class: "btn btn-sm btn-ghost",
              "aria-label": `Sign out ${member.email}`,
              onclick: () => signOutMember(member),
            },
            "Sign out",
          ),
        );
      }
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm btn-danger",
            "aria-label": `Deprovision ${member.email}`,
            onclick: () => deprovision(member, reload),
          },
          "Deprovision",
        ),
      );
    }
    return h(
      "tr",
      { dataset: { member: member.id, email: member.email, state: member.state } },
      h(
        "td",
        { "data-label": "Name" },
        h("strong", {}, member.name || member.email),
        h("div", { class: "ln-sub" }, member.kind === "person" ? member.email : member.id),
      ),
      h(
        "td",
        { "data-label": "Role" },
        h("span", { class: "badge badge-plain badge-accent role" }, roleLabel(member.role)),
        member.mfa ? h("span", { class: "badge badge-ok", title: "Uses an authenticator app" }, "MFA") : null,
        member.break_glass ? h("span", { class: "badge badge-warn" }, "Break-glass") : null,
        gone ? h("span", { class: "badge badge-danger" }, "Deprovisioned") : null,
        member.invited ? h("span", { class: "badge badge-plain", title: "Has not accepted the invitation yet" }, "Invited") : null,
      ),
      h("td", { "data-label": "Sources" }, grants(member)),
      h(
        "td",
        { "data-label": "Last sign-in" },
        member.last_sign_in ? fmtRelative(member.last_sign_in) : h("span", { class: "muted" }, "Never"),
      ),
      h("td", { class: "actions" }, actions),
    );
  }

  // Role select plus source checkboxes, shown when the chosen role can be limited to sources.
  function accessFields(prefix, { kind, role, chosen }) {
    const usable = roles.filter(
      (r) =>
        (kind === "service" ? r.services !== false : r.people !== false) &&
        (r.name !== "owner" || canGrantOwner || role === "owner"),
    );
    const select = h(
      "select",
      { class: "select", id: `${prefix}-role`, name: "role" },
      usable.map((r) =>
        h("option", { value: r.name, selected: r.name === role }, `${roleLabel(r.name)}`),
      ),
    );
    const summary = h("p", { class: "field-hint", id: `${prefix}-role-hint` });
    const allBox = h("input", { type: "checkbox", id: `${prefix}-all`, checked: chosen === null });
    const boxes = sources.map((s) =>
      h("input", {
        type: "checkbox",
        name: "sources",
        value: s.id,
        id: `${prefix}-src-${s.id}`,
        checked: Array.isArray(chosen) && chosen.includes(s.id),
      }),
    );
    const picker = h(
      "fieldset",
      { class: "field source-grants", id: `${prefix}-sources` },
      h("legend", { class: "field-label" }, "Sources they may read"),
      h("label", { class: "check" }, allBox, "All sources, including new ones"),
      h(
        "div",
        { class: "grant-list" },
        sources.map((s, i) => h("label", { class: "check" }, boxes[i], s.name)),
      ),
    );
    function sync() {
      const r = roles.find((x) => x.name === select.value) || {};
      summary.textContent = r.summary || "";
      picker.hidden = !r.source_grants;
      boxes.forEach((b) => (b.disabled = allBox.checked));
    }
    select.addEventListener("change", sync);
    allBox.addEventListener("change", sync);
    sync();
    return {
      el: [
        h("div", { class: "field" }, h("label", { for: `${prefix}-role` }, "Role"), select, summary),
        picker,
      ],
      value() {
        const r = roles.find((x) => x.name === select.value) || {};
        const picked = boxes.filter((b) => b.checked).map((b) => b.value);
        return { role: select.value, sources: !r.source_grants || allBox.checked ? null : picked };
      },
    };
  }

  function inviteDialog(reload) {
    const email = h("input", { class: "input", id: "invite-email", type: "email", autocomplete: "off", required: true });
    const name = h("input", { class: "input", id: "invite-name", autocomplete: "off", maxlength: "200" });
    const access = accessFields("invite", { kind: "person", role: "member", chosen: [] });
    formDialog({
      id: "invite-form",
      title: "Invite a person",
      description: "They get a link to choose a password. Or they sign in with SSO, if your org has it.",
      fields: [
        h("div", { class: "field" }, h("label", { for: "invite-email" }, "Email"), email),
        h("div", { class: "field" }, h("label", { for: "invite-name" }, "Name ", h("span", { class: "muted" }, "(optional)")), name),
        access.el,
      ],
      submitLabel: "Invite",
      async onSubmit(close) {
        if (!email.value.trim()) {
          throw { detail: "Enter their email address." };
        }
        warnNoSources(access.value());
        const created = await post("/v1/members", {
          email: email.value.trim(),
          name: name.value.trim(),
          ...access.value(),
        });
        close();
        showInvitation(created, email.value.trim());
        reload();
      },
    });
  }

  // A member or viewer with an empty grant reads nothing: the first save says so instead of
  // saving; saving the same choice again means it.
  let noSourcesWarned = null;
  function warnNoSources(value) {
    const key = JSON.stringify(value);
    if (!Array.isArray(value.sources) || value.sources.length || noSourcesWarned === key) return;
    noSourcesWarned = key;
    throw {
      detail: `No sources are ticked: as ${roleLabel(value.role).toLowerCase()} they would read nothing until granted some. Tick sources or "All sources", or save again to grant none for now.`,
    };
  }

  function showInvitation(created, email) {
    showOnce({
      title: "Invitation link",
      what: `for ${created.member?.email || email}`,
      value: absolute(created.invitation_url || ""),
      id: "invitation-link",
      warning: "Send this link to them yourself. It works once, for 7 days, and is shown only once.",
    });
  }

  // A lost or expired link: a new one, and the earlier one stops working.
  function resendInvitation(member) {
    return confirmAndRun(
      {
        title: `New invitation for ${member.email}?`,
        text: "The link sent before stops working. You get a new one to send them, valid for 7 days.",
        confirm: "Resend invitation",
      },
      async () => {
        const created = await withReauth(() =>
          post(`/v1/members/${encodeURIComponent(member.id)}/invitation`, {}),
        );
        showInvitation(created, member.email);
      },
    );
  }

  function accessDialog(member, reload) {
    const access = accessFields("access", { kind: member.kind, role: member.role, chosen: member.sources ?? null });
    formDialog({
      id: "access-form",
      title: `Role of ${member.name || member.email}`,
      description:
        member.kind === "person" ? "They are signed out and sign in again with the new role." : undefined,
      fields: access.el,
      submitLabel: "Save",
      async onSubmit(close) {
        warnNoSources(access.value());
        await patch(`/v1/members/${encodeURIComponent(member.id)}`, access.value());
        close();
        toast(`${member.email}: ${roleLabel(access.value().role)}`);
        reload();
      },
    });
  }

  function deprovision(member, reload) {
    return confirmAndRun(
      {
        title: `Deprovision ${member.email}?`,
        text: "Their sessions end and their tokens are revoked now. Their audit history stays.",
        confirm: "Deprovision",
      },
      async () => {
        await withReauth(() => post(`/v1/members/${encodeURIComponent(member.id)}/deprovision`, {}));
        toast(`${member.email} deprovisioned`);
        reload();
      },
    );
  }

  async function signOutMember(member) {
    try {
      await post(`/v1/members/${encodeURIComponent(member.id)}/sign-out`, {});
      toast(`${member.email} is signed out everywhere`);
    } catch (err) {
      toast(err.detail || String(err), { error: true });
    }
  }

  function signOutEveryone() {
    return confirmAndRun(
      {
        title: "Sign out everyone?",
        text: "Every browser session of this org ends, yours included. Tokens keep working.",
        confirm: "Sign out everyone",
      },
      async () => {
        await post("/v1/org/sign-out-everyone", {});
        toast("Everyone is signed out");
      },
    );
  }

  // ---- service accounts
  async function renderServices(box) {
    let accounts;
    try {
      accounts = list(await get("/v1/members?kind=service"), "members");
    } catch (error) {
      replace(box, errorState(error, () => renderServices(box)));
      return;
    }
    const add = addButton("new-service-account", "New service account", () => serviceDialog(() => renderServices(box)));
    replace(
      box,
      card(
        {
          id: "services-title",
          title: "Service accounts",
          lede: "Owned by the org, for automation. They use tokens and never sign in to this UI.",
          action: add,
          body: "card-body table-wrap",
        },
        accounts.length
          ? memberTable("services-table", accounts, () => renderServices(box))
          : stateView({ iconName: "key", title: "No service accounts", text: "Create one for CI or a provisioning job." }),
      ),
    );
  }

  function serviceDialog(reload) {
    const name = h("input", { class: "input input-mono", id: "service-name", autocomplete: "off", placeholder: "ci-deploy", required: true });
    const access = accessFields("service", { kind: "service", role: "ingest", chosen: [] });
    formDialog({
      id: "service-form",
      title: "New service account",
      fields: [
        h(
          "div",
          { class: "field" },
          h("label", { for: "service-name" }, "Name"),
          name,
          h("p", { class: "field-hint" }, "Lowercase letters, digits, '.', '_' or '-'."),
        ),
        access.el,
      ],
      submitLabel: "Create",
      async onSubmit(close) {
        const created = await withReauth(() =>
          post("/v1/service-accounts", { name: name.value.trim(), ...access.value() }),
        );
        close();
        toast(`Service account ${created.name || created.email || name.value} created`);
        reload();
      },
    });
  }

  function serviceTokenDialog(account) {
    const name = h("input", { class: "input", id: "svc-token-name", autocomplete: "off", value: "default", required: true });
    const days = h("input", { class: "input num", id: "svc-token-days", type: "number", min: "1", max: "365", value: "90" });
    const role = roles.find((r) => r.name === account.role) || { scopes: [] };
    const scopeBoxes = (role.scopes || []).map((scope) =>
      h("input", { type: "checkbox", value: scope, checked: true, id: `svc-scope-${scope}` }),
    );
    formDialog({
      id: "svc-token-form",
      title: `New token for ${account.email}`,
      description: "Its rights are these scopes within the account's role, now and later.",
      fields: [
        h("div", { class: "field" }, h("label", { for: "svc-token-name" }, "Token name"), name),
        h("div", { class: "field" }, h("label", { for: "svc-token-days" }, "Expires after (days, 1–365)"), days),
        h(
          "fieldset",
          { class: "field" },
          h("legend", { class: "field-label" }, "Scopes"),
          (role.scopes || []).map((scope, i) => h("label", { class: "check" }, scopeBoxes[i], h("code", {}, scope))),
        ),
      ],
      submitLabel: "Issue token",
      async onSubmit(close) {
        const issued = await withReauth(() =>
          post(`/v1/service-accounts/${encodeURIComponent(account.id)}/tokens`, {
            name: name.value.trim(),
            scopes: scopeBoxes.filter((b) => b.checked).map((b) => b.value),
            expires_in_days: Number(days.value),
          }),
        );
        close();
        showOnce({
          title: "Service account token",
          what: `for ${account.email}`,
          value: issued.token,
          id: "revealed-token",
          warning: "Copy it now: Astralog keeps a hash, not the token. It is shown only once.",
        });
      },
    });
  }

  await load();
  return {};
}

function absolute(url) {
  return url ? new URL(url, location.origin).href : "";
}

// A secret the server hands out once: a read-only field, copy, and a warning.
export function showOnce({ title, what, value, id, warning }) {
  const input = h("input", { class: "input", id, readonly: true, value, spellcheck: "false", "aria-label": title });
  const done = h("button", { type: "button", class: "btn btn-primary" }, "Done");
  const { close } = openDialog({
    title,
    description: what,
    body: [
      h("div", { class: "callout callout-warn", role: "note" }, icon("alert"), h("span", {}, warning)),
      h("div", { class: "secret-box" }, input, copyButton(() => input.value, { what: "Copied", cls: "btn" })),
    ],
    actions: [done],
  });
  done.addEventListener("click", () => close());
  input.focus();
  input.select();
}
