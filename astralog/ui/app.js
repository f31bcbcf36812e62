// The shell: session, sign-in, navigation between pages, theme, global keys.

import {
  ApiError,
  cached,
  del,
  get,
  invalidate,
  mayHaveSession,
  onSignedOut,
  setCsrf,
} from "./api.js";
import { announce, h, icon, replace, stateView, toast } from "./dom.js";
import { noteSsoReturn } from "./mfa.js";

// `scope`: what the signed-in role needs for the page (GET /v1/session lists the scopes); a link
// to a page the role cannot use is hidden, and the page itself says so instead of failing later.
const PAGES = {
  "/": { name: "search", title: "Search", scope: "logs:read", load: () => import("./search.js") },
  "/alerts": {
    name: "alerts",
    title: "Alerts",
    scope: "alerts:read",
    load: () => import("./alerts.js"),
  },
  "/sources": {
    name: "sources",
    title: "Sources & keys",
    scope: "sources:read",
    load: () => import("./sources.js"),
  },
  "/storage": {
    name: "storage",
    title: "Storage",
    scope: "connectors:write",
    load: () => import("./storage.js"),
  },
  "/retention": {
    name: "retention",
    title: "Retention",
    scope: "retention:write",
    load: () => import("./retention.js"),
  },
  "/audit": { name: "audit", title: "Audit", scope: "audit:read", load: () => import("./audit.js") },
  "/alert-endpoints": {
    name: "alert-endpoints",
    title: "Alert endpoints",
    scope: "alerts:admin",
    load: () => import("./endpoints.js"),
  },
  "/silences": {
    name: "silences",
    title: "Silences",
    scope: "alerts:read",
    load: () => import("./silences.js"),
  },
  "/data": {
    name: "data",
    title: "Data",
    scope: "erasure:write",
    load: () => import("./lifecycle.js"),
  },
  "/members": {
    name: "members",
    title: "Members",
    scope: "members:write",
    load: () => import("./members.js"),
  },
  "/security": {
    name: "security",
    title: "Sign-in & security",
    scope: "sso:write",
    load: () => import("./sso.js"),
  },
  "/account": {
    name: "account",
    title: "My account",
    person: true,
    load: () => import("./account.js"),
  },
};

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
let session = null;
let current = null; // { path, view }
let renderSeq = 0;

export const app = {
  get session() {
    return session;
  },
  navigate,
  setTitle(title) {
    document.title = title ? `${title} · Astralog` : "Astralog";
  },
};

function navigate(url, { replace: replaceState = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) {
    location.href = target.href;
    return;
  }
  if (target.href !== location.href) {
    history[replaceState ? "replaceState" : "pushState"](
      null,
      "",
      target.pathname + target.search + target.hash,
    );
  }
  render();
}

async function render() {
  if (!session) return;
  const seq = ++renderSeq;
  let path = PAGES[location.pathname] ? location.pathname : "/";
  if (path === "/" && !allowed(PAGES[path])) {
    // A role without search (storage or retention admins) lands on its first page instead.
    path = Object.keys(PAGES).find((key) => allowed(PAGES[key])) || "/";
    history.replaceState(null, "", path);
  }
  const page = PAGES[path];
  markNav(page.name);
  if (!allowed(page)) {
    if (current && current.view.unmount) current.view.unmount();
    current = null;
    app.setTitle(page.title);
    replace(main, h("div", { class: "page" }, forbiddenState(page)));
    return;
  }
  if (current && current.path === path && current.view.onUrlChange) {
    current.view.onUrlChange();
    return;
  }
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  const module = await page.load();
  if (seq !== renderSeq) return;
  replace(main);
  app.setTitle(page.title);
  // ``shown()`` tells a page that awaits before it writes the address bar or starts work whether
  // it is still the page the person is on (another navigation starts a new render at once).
  const view = (await module.mount(main, app, () => seq === renderSeq)) || {};
  if (seq !== renderSeq) {
    if (view.unmount) view.unmount();
    return;
  }
  current = { path, view };
}

function allowed(page) {
  if (!session) return false;
  if (page.person) return session.kind === "person";
  return !page.scope || (session.scopes || []).includes(page.scope);
}

function forbiddenState(page) {
  return stateView({
    iconName: "lock",
    title: `${page.title} is not part of your role`,
    text: `Your role (${session.role || session.kind}) does not include ${page.scope || "this page"}. An org admin can change your role under Members.`,
  });
}

// Links to pages the role cannot open are hidden, not merely refused on click.
function showAllowedNav() {
  for (const link of topbar.querySelectorAll("a[data-page]")) {
    const page = Object.values(PAGES).find((p) => p.name === link.dataset.page);
    if (page) link.hidden = !allowed(page);
  }
}

function markNav(name) {
  const nav = topbar.querySelector(".mainnav");
  for (const link of topbar.querySelectorAll("a[data-page]")) {
    if (link.dataset.page !== name) {
      link.removeAttribute("aria-current");
      continue;
    }
    link.setAttribute("aria-current", "page");
    if (!nav.contains(link)) continue;
    // On a narrow screen the nav scrolls sideways: keep the current page in sight.
    const right = link.offsetLeft + link.offsetWidth;
    if (right > nav.scrollLeft + nav.clientWidth || link.offsetLeft < nav.scrollLeft) {
      nav.scrollLeft = Math.max(0, right - nav.clientWidth + 8);
    }
  }
}

// ------------------------------------------------------------------ sign-in

// The sign-in page lives in signin.js: org → SSO or email + password (+ TOTP), and the admin
// token as the bootstrap path. `stage` resumes a sign-in the server holds at "mfa" or "enrol".
async function showSignIn(message, stage) {
  session = null;
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  invalidate();
  setCsrf("");
  topbar.hidden = true;
  app.setTitle("Sign in");
  const { mountSignIn } = await import("./signin.js");
  mountSignIn(main, { message, stage, onSignedIn: startSession });
}

async function startSession(data) {
  session = data;
  setCsrf(data.csrf_token);
  topbar.hidden = false;
  showAllowedNav();
  const badge = document.getElementById("org-badge");
  replace(badge);
  cached("/v1/org")
    .then((org) => {
      session.org = org;
      replace(
        badge,
        h("span", {}, org.name),
        h(
          "span",
          { class: "plan-pill", title: `${org.limits?.retention_days ?? "?"} days retention` },
          org.plan,
        ),
      );
    })
    .catch(() => {});
  if (data.kind === "person") await loadPerson();
  noteSsoReturn(); // back from the IdP in link, test or reauth mode
  await render();
}

// A person's name on the account link, and how they signed in (SSO signs out at the IdP too).
async function loadPerson() {
  const link = document.getElementById("account-link");
  try {
    const me = await get("/v1/me");
    session.me = me;
    session.method = me.session?.method;
    link.textContent = me.name || me.email;
    link.title = `My account (${me.email})`;
  } catch {
    link.textContent = "My account";
  }
}

async function signOut() {
  if (session && session.method === "sso") {
    // RP-initiated logout: the server ends the session and sends the browser to the IdP.
    location.href = "/v1/auth/sso/logout";
    return;
  }
  try {
    await del("/v1/session");
  } catch {
    /* the session may already be gone; either way the cookie is cleared below */
  }
  showSignIn();
  toast("Signed out");
}

// ------------------------------------------------------------------ theme and keys

function setupTheme() {
  const button = document.getElementById("theme-toggle");
  const label = () => {
    const dark = document.documentElement.dataset.theme === "dark";
    button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
  };
  label();
  button.addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try {
      localStorage.setItem("astralog.theme", next);
    } catch {
      /* not remembered, still applied */
    }
    document.documentElement.dataset.theme = next;
    label();
    announce(`${next === "dark" ? "Dark" : "Light"} theme`);
    window.dispatchEvent(new Event("astralog:theme"));
  });
}

function setupLinks() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav], a[data-internal]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.getAttribute("href"));
    main.focus({ preventScroll: true });
  });
  window.addEventListener("popstate", () => render());
}

async function boot() {
  setupTheme();
  setupLinks();
  document.getElementById("sign-out").addEventListener("click", signOut);
  onSignedOut(() => {
    if (session) showSignIn("Your session ended. Sign in again to continue.");
  });
  if (location.pathname === "/plans") {
    // The operator's page: browser sessions belong to an org, so it takes the operator's token
    // itself (plans.js) and shows nothing of any org's navigation.
    topbar.hidden = true;
    app.setTitle("Plans");
    (await import("./plans.js")).mount(main);
    return;
  }
  if (location.pathname === "/invitation") {
    // An invitation link signs its person in once they chose a password, whoever was signed in.
    showSignIn("", "invitation");
    return;
  }
  if (!mayHaveSession()) {
    showSignIn(); // the server still decides: every API call checks the session cookie itself
    return;
  }
  try {
    const data = await get("/v1/session", { quiet401: true });
    await startSession(data);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      // A password accepted with the TOTP step still to come answers 403 mfa_required.
      const code = error.problem?.code || "";
      showSignIn("", code.endsWith("_required") ? code.replace("_required", "") : undefined);
    } else {
      replace(
        main,
        h(
          "div",
          { class: "state state-error", role: "alert" },
          h("div", { class: "state-icon" }, icon("alert")),
          h("h2", {}, "Astralog is not answering"),
          h("p", {}, error.detail || String(error)),
          h(
            "div",
            { class: "row" },
            h("button", { class: "btn", onclick: () => location.reload() }, "Reload"),
          ),
        ),
      );
    }
  }
}

boot();
